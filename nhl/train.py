"""Training: single-length baselines and nested models with weighting and distillation.

``fit`` follows METHOD.md section 5's selection rule: one epoch is chosen for all lengths by the
mean validation mAP (validation queries carved from the training data, retrieving against the
rest of the training data), never on the query set. Each epoch ends with an atomic checkpoint,
so an interrupted run resumes and finishes with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import losses as losses_mod
from .config import TrainConfig
from .metrics import map_per_length
from .models import HashModel, build_model, encode_dataset
from .objective import NestedObjective, NonFiniteLossError, ObjectiveOutput
from .utils import atomic_torch_save, epoch_seed, seed_everything

CHECKPOINT = "checkpoint.pt"
StepCallback = Callable[[int, int, ObjectiveOutput, HashModel], None]


class TrainingDivergedError(RuntimeError):
    """Training stopped because a loss term became NaN or infinite."""


@dataclass
class FitResult:
    """A trained model (at the selected epoch) and its training history."""

    config: TrainConfig
    model: HashModel
    objective: NestedObjective
    history: pd.DataFrame
    best_epoch: int
    best_score: float

    @property
    def train_seconds(self) -> float:
        return float(self.history.groupby("epoch")["train_seconds"].first().sum())

    @property
    def eval_seconds(self) -> float:
        return float(self.history.groupby("epoch")["eval_seconds"].first().sum())


def build(config: TrainConfig, splits) -> tuple[HashModel, NestedObjective]:
    """Model and objective for a config (seeded: the same config gives the same initial weights)."""
    seed_everything(config.seed)
    model = build_model(
        config.backbone, config.bit_list, in_channels=splits.image_shape[0], pretrained=config.pretrained
    )
    per_length = losses_mod.build_nested(
        config.method,
        config.bit_list,
        n_classes=splits.n_classes,
        n_train=len(splits.train),
        nested_targets=config.nested_targets,
        seed=config.seed,
        **dict(config.hyper),
    )
    objective = NestedObjective(
        model.hash_layer,
        per_length,
        weighting=config.weighting if config.nested else "uniform",
        distill=config.distill if config.nested else 0.0,
        distill_mode=config.distill_mode,
        detach_teacher=config.detach_teacher,
        beta=config.beta,
        norm=config.norm,
    )
    return model, objective


def validation_map(model: HashModel, splits, bit_list) -> dict[int, float]:
    """Tie-aware mAP@ALL per length of validation queries against the validation database."""
    q = encode_dataset(model, splits.val)
    db = encode_dataset(model, splits.val_database)
    return map_per_length(q, db, splits.val.labels, splits.val_database.labels, bit_list, ties="average")


def _batches(n: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:  # batch norm needs two samples
        batches.pop()
    return batches


def fit(
    config: TrainConfig,
    splits=None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    step_callback: StepCallback | None = None,
    track_gradients: bool = False,
    resume: bool = True,
) -> FitResult:
    """Train ``config`` on ``splits`` (loaded from the config when ``None``).

    Args:
        run_dir: where the per-epoch checkpoint lives; with ``resume`` an existing checkpoint of
            the same config is continued from its last finished epoch.
        step_callback: called after every optimiser step as ``cb(epoch, step, output, model)``
            (for diagnostics such as gradient conflicts; see :mod:`nhl.diagnostics`).
        track_gradients: make the objective compute per-length gradients even without the
            dominance weighting (``output.grads`` / ``output.cosines`` for the callback).
    Returns:
        :class:`FitResult` with the model at the selected epoch and a long-format history
        (one row per epoch and length).
    """
    if splits is None:
        from .experiments import get_splits

        splits = get_splits(config)
    model, objective = build(config, splits)
    objective.track_gradients = track_gradients
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    bits = config.bit_list
    rows: list[dict] = []
    start_epoch, best_epoch, best_score, best_state = 0, -1, -np.inf, None
    ckpt_path = Path(run_dir) / CHECKPOINT if run_dir is not None else None

    if ckpt_path is not None and resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["config"] != config.to_json():
            raise ValueError(
                f"the checkpoint in {ckpt_path} belongs to another config; delete it or use another run_dir"
            )
        model.load_state_dict(ckpt["model"])
        objective.load_state_dict(ckpt["objective"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rows, start_epoch = ckpt["history"], ckpt["epoch"] + 1
        best_epoch, best_score, best_state = ckpt["best_epoch"], ckpt["best_score"], ckpt["best_state"]

    bar = tqdm(
        range(start_epoch, config.epochs),
        desc=f"{config.method} {config.kind}",
        disable=not progress,
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in bar:
        model.train()
        objective.train()
        torch.manual_seed(epoch_seed(config.seed, epoch))
        sums = torch.zeros(3, len(bits), dtype=torch.float64)
        anti, steps = 0, 0
        t0 = time.perf_counter()
        for step, pos in enumerate(_batches(len(splits.train), config.batch_size, epoch_seed(config.seed, epoch))):
            x, y, idx = splits.train.get_batch(pos)
            try:
                out = objective(model.features(x), y, idx)
            except NonFiniteLossError as err:
                if ckpt_path is None or epoch == 0:
                    kept = "no checkpoint was written yet" if ckpt_path else "no run_dir, so no checkpoint"
                else:
                    kept = f"the last good checkpoint (end of epoch {epoch - 1}) is kept in {ckpt_path}"
                raise TrainingDivergedError(f"epoch {epoch} step {step}: {err}. Training stopped; {kept}") from err
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            optimizer.step()
            sums += torch.stack([out.losses, out.distill, out.weights]).double()
            anti += int(out.anti_domination)
            steps += 1
            if step_callback is not None:
                step_callback(epoch, step, out, model)
        train_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        evaluate = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        val = validation_map(model, splits, bits) if evaluate else dict.fromkeys(bits, np.nan)
        eval_seconds = time.perf_counter() - t0
        means = (sums / max(steps, 1)).numpy()
        for k, b in enumerate(bits):
            rows.append(
                dict(
                    epoch=epoch,
                    bits=b,
                    loss=means[0, k],
                    distill=means[1, k],
                    weight=means[2, k],
                    anti_domination=anti / max(steps, 1),
                    val_map=val[b],
                    train_seconds=train_seconds,
                    eval_seconds=eval_seconds,
                )
            )
        if evaluate:
            score = float(np.mean([val[b] for b in bits]))
            if score > best_score:
                best_epoch, best_score = epoch, score
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{means[0].mean():.3f}", val_map=f"{score:.3f}", best=best_epoch)
        if ckpt_path is not None:
            atomic_torch_save(
                dict(
                    config=config.to_json(),
                    epoch=epoch,
                    model=model.state_dict(),
                    objective=objective.state_dict(),
                    optimizer=optimizer.state_dict(),
                    history=rows,
                    best_epoch=best_epoch,
                    best_score=best_score,
                    best_state=best_state,
                ),
                ckpt_path,
            )
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows)
    if not history.empty:
        history["selected"] = history["epoch"] == best_epoch
    return FitResult(config, model, objective, history, best_epoch, float(best_score))
