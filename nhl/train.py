"""Training: single-length baselines and nested models with weighting and distillation.

``fit`` follows docs/method.md §6's selection rule: one epoch is chosen for all lengths by the
mean validation mAP (validation queries carved from the training data, retrieving against the
rest of the training data), never on the query set. Each epoch ends with an atomic checkpoint,
so an interrupted run resumes and finishes with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import distributed, regimes
from . import losses as losses_mod
from .config import TrainConfig
from .data import cached_splits
from .devices import autocast, check_amp, grad_scaler, resolve_device, to_device
from .metrics import map_per_length
from .models import HashModel, build_model, encode_dataset, preserved_buffers
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
    #: What evaluation encodes: the trained model and the splits it reads. The frozen regime
    #: trains a view over cached trunk features (:func:`nhl.regimes.head_view`), so its
    #: query and database are encoded from those features; otherwise ``model`` and the images.
    eval_model: HashModel | None = None
    eval_splits: object = None

    @property
    def train_seconds(self) -> float:
        return float(self.history.groupby("epoch")["train_seconds"].first().sum())

    @property
    def eval_seconds(self) -> float:
        return float(self.history.groupby("epoch")["eval_seconds"].first().sum())

    @property
    def epochs_trained(self) -> int:
        """Epochs actually trained: ``config.epochs``, or fewer when early stopping stopped it."""
        return int(self.history["epoch"].max()) + 1 if not self.history.empty else 0


def build(config: TrainConfig, splits) -> tuple[HashModel, NestedObjective]:
    """Model and objective for a config (seeded: the same config gives the same initial weights)."""
    seed_everything(config.seed)
    imagenet = config.backbone == "resnet50" and (config.pretrained or config.regime != "scratch")
    model = build_model(config.backbone, config.bit_list, in_channels=splits.image_shape[0], pretrained=imagenet)
    if config.regime != "scratch" and config.backbone == "cnn":
        state, _ = regimes.pretrained_backbone(splits, progress=False)
        model.backbone.load_state_dict(state)
    per_length = losses_mod.build_nested(
        config.method,
        config.bit_list,
        n_classes=splits.n_classes,
        n_train=len(splits.train),
        nested_targets=config.nested_targets,
        seed=config.seed,
        center_design=config.center_design,
        **config.loss_hyper,
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


@torch.no_grad()
def refresh_banks(model: HashModel, objective: NestedObjective, dataset, batch_size: int) -> bool:
    """Rewrite every memory bank with the current network's outputs on the whole training split.

    The outputs are computed as in a training step (batch-norm layers use batch statistics, in
    batches of ``batch_size`` in split order) but leave no trace: the batch-norm running
    statistics are restored afterwards and nothing is differentiated. Returns False (and does
    nothing) when no loss keeps a bank. Before the first epoch this replaces an empty bank
    (which would make the first batches compare only with themselves and then with outputs of
    an ever older network) by one the network agrees with. Batches go to the model's device.
    """
    banked = [k for k, loss in enumerate(objective.losses) if getattr(loss, "bank", None) is not None]
    if not banked:
        return False
    device = _model_device(model)
    was_training = model.training
    with preserved_buffers(model):
        model.train()
        for pos in torch.arange(len(dataset)).split(batch_size):
            if len(pos) < 2:  # batch norm needs two samples: take the last two items
                pos = torch.arange(max(len(dataset) - 2, 0), len(dataset))
            x, y, idx = to_device(dataset.get_batch(pos), device)
            outputs = model(x.to(_model_dtype(model)))
            for k in banked:
                objective.losses[k].fill_bank(outputs[k].float(), y, idx)
    model.train(was_training)
    return True


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _batches(n: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:  # batch norm needs two samples
        batches.pop()
    return batches


class _Step(nn.Module):
    """What DistributedDataParallel wraps: backbone (under autocast with amp) then the hash
    layer's projection in float32, so every parameter is used inside the wrapped forward."""

    def __init__(self, model: HashModel, amp: bool):
        super().__init__()
        self.model = model
        self.amp = amp

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.model.hash_layer.weight.dtype  # float32, or float64 for numerical checks
        with autocast(x.device, self.amp):
            z = self.model.features(x.to(dtype))
        z = z.to(dtype)
        return z, self.model.hash_layer.project(z)


class _TrainBatches:
    """Training batches on the device: one indexing op per batch for in-memory data (moved to
    the device once), a ``DataLoader`` with worker processes and pinned memory for image lists
    decoded from files."""

    def __init__(self, dataset, device: torch.device, workers: int | None):
        self.dataset, self.device = dataset, device
        self.lazy = not dataset.in_memory
        if not self.lazy and device.type != "cpu":
            self.dataset = copy.copy(dataset).to(device)  # the shared split stays on the CPU
        self.workers = (min(4, os.cpu_count() or 1) if workers is None else workers) if self.lazy else 0

    def __call__(self, batches: list[torch.Tensor]):
        if not self.lazy:
            for pos in batches:
                yield to_device(self.dataset.get_batch(pos.to(self.dataset.device)), self.device)
            return
        loader = DataLoader(
            self.dataset, batch_sampler=[b.tolist() for b in batches], num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y, idx in loader:
            yield to_device((x, y, idx), self.device)


@dataclass
class _Selection:
    """The history so far and the selected epoch: what a checkpoint stores and resumes."""

    rows: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    best_epoch: int = -1
    best_score: float = -np.inf
    best_state: dict | None = None

    def resume(self, ckpt: dict, model, objective, optimizer, scaler) -> None:
        model.load_state_dict(ckpt["model"])
        objective.load_state_dict(ckpt["objective"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        self.rows, self.start_epoch = list(ckpt["history"]), int(ckpt["epoch"]) + 1
        self.best_epoch, self.best_score = int(ckpt["best_epoch"]), float(ckpt["best_score"])
        self.best_state = ckpt["best_state"]

    def patience_spent(self, patience: int | None) -> bool:
        """Whether the last ``patience`` validation checks all came after the best epoch (none
        improved the selection score): early stopping, docs/method.md §6."""
        if patience is None:
            return False
        checked = sorted({int(r["epoch"]) for r in self.rows if np.isfinite(r["val_map"])})
        return sum(e > self.best_epoch for e in checked) >= patience

    def consider(self, epoch: int, score: float, model: nn.Module) -> None:
        """Keep ``model`` (on the CPU) when its validation score is the best so far."""
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = _cpu_state(model)


def fit(
    config: TrainConfig,
    splits=None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    step_callback: StepCallback | None = None,
    track_gradients: bool = False,
    resume: bool = True,
    prebuilt: tuple[HashModel, NestedObjective] | None = None,
    loader_workers: int | None = None,
    dtype: torch.dtype | None = None,
) -> FitResult:
    """Train ``config`` on ``splits`` (loaded from the config when ``None``).

    Args:
        run_dir: where the per-epoch checkpoint lives; with ``resume`` an existing checkpoint of
            the same config is continued from its last finished epoch.
        step_callback: called after every optimiser step as ``cb(epoch, step, output, model)``
            (for diagnostics such as gradient conflicts; see :mod:`nhl.diagnostics`).
        track_gradients: make the objective compute per-length gradients even without the
            dominance weighting (``output.grads`` / ``output.cosines`` for the callback).
        prebuilt: the ``(model, objective)`` of :func:`build` for this config, to train those
            objects instead of building new ones (identical result), so that a step callback
            can hold the objective being trained (its memory banks, e.g.
            :func:`nhl.diagnostics.term_gradients`).
        loader_workers: worker processes decoding image files (image-list datasets; default
            ``min(4, cores)``); in-memory datasets need none.
        dtype: compute in this floating-point type (``torch.float64`` for numerical checks
            such as comparing one process with several); default float32.

    ``config.device`` picks the device (:mod:`nhl.devices`); under ``torchrun`` the run is
    distributed over the processes with DistributedDataParallel (:mod:`nhl.distributed`):
    every process trains on its share of each global batch, rank 0 evaluates and writes the
    checkpoint. Every epoch: refresh the memory banks when due, train one pass
    (:func:`_train_epoch`), evaluate on the validation split when due and keep the best epoch
    (docs/method.md §6), write the checkpoint; with ``config.patience``, stop once that many
    validation checks in a row did not improve on the best. Returns :class:`FitResult` with the model at the
    selected epoch (on the CPU) and a long-format history (one row per epoch and length).
    """
    device = resolve_device(config.device)
    distributed.init_from_env(device)
    device = distributed.local_device(device)
    check_amp(config.amp, device)
    if splits is None:
        splits = cached_splits(config.dataset, protocol=config.protocol, seed=config.split_seed)
    model, objective = build(config, splits) if prebuilt is None else prebuilt
    full_model, image_splits = model, splits
    if config.regime == "frozen":  # train the neck and hash layer on cached trunk features
        if distributed.is_active():
            raise ValueError("the frozen regime trains in one process (its head costs seconds); "
                             "run it without torchrun")
        splits = regimes.frozen_splits(model.backbone, splits, _feature_key(config, splits), progress=progress)
        model = regimes.head_view(model)
    model, step_module = _place(config, model, objective, device, dtype, track_gradients)
    optimizer = torch.optim.Adam(_parameter_groups(config, model), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    scaler = grad_scaler(device, config.amp)
    ckpt_path = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    main = distributed.is_main()
    sel = _Selection()
    if ckpt_path is not None and resume and ckpt_path.exists():
        ckpt = _resumable(ckpt_path, config)
        if ckpt is not None:
            sel.resume(ckpt, model, objective, optimizer, scaler)

    source = _TrainBatches(splits.train, device, loader_workers)
    bar = tqdm(range(sel.start_epoch, config.epochs), desc=f"{config.method} {config.kind}",
               disable=not progress or not main, initial=sel.start_epoch, total=config.epochs)
    for epoch in bar:
        t0 = time.perf_counter()  # the bank refresh is part of the training cost
        if config.bank_refresh == "epoch" or (config.bank_refresh == "start" and epoch == 0):
            refresh_banks(model, objective, splits.train, config.batch_size)
        means, anti = _train_epoch(config, epoch, model, objective, step_module, optimizer, scaler,
                                   source, step_callback, ckpt_path)
        train_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        evaluate = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        val = validation_map(model, splits, config.bit_list) if evaluate and main \
            else dict.fromkeys(config.bit_list, np.nan)
        sel.rows += _history_rows(epoch, config.bit_list, means, anti, val, train_seconds,
                                  time.perf_counter() - t0)
        if evaluate and main:
            score = float(np.mean([val[b] for b in config.bit_list]))
            sel.consider(epoch, score, model)
            bar.set_postfix(loss=f"{means[0].mean():.3f}", val_map=f"{score:.3f}", best=sel.best_epoch)
        stop = distributed.broadcast_object(sel.patience_spent(config.patience)) if evaluate else False
        if ckpt_path is not None and main:
            save_checkpoint(ckpt_path, dict(
                config=_identity_json(config), epoch=int(epoch), model=_cpu_state(model),
                objective=_cpu_state(objective), optimizer=optimizer.state_dict(),
                scaler=scaler.state_dict() if config.amp else {}, history=sel.rows,
                best_epoch=int(sel.best_epoch), best_score=float(sel.best_score),
                best_state=sel.best_state))
        distributed.barrier()
        if stop:  # early stopping: the same rule for single-length and nested models
            break
    bar.close()
    result = _finish(config, model, objective, sel)
    if config.regime == "frozen":  # the view shares the full model's neck and hash layer
        result.eval_model, result.eval_splits = model, splits
        result.model = full_model.eval()
    else:
        result.eval_model, result.eval_splits = result.model, image_splits
    return result


def _feature_key(config: TrainConfig, splits) -> str:
    """Names the frozen trunk's features: the pretrained backbone's key (ImageNet weights for
    ResNet-50)."""
    if config.backbone == "cnn":
        return regimes.pretrain_key(splits, "cnn")
    return f"resnet50-imagenet-{splits.fingerprint[:16]}"


def _parameter_groups(config: TrainConfig, model: HashModel) -> list[dict]:
    """One group (scratch, frozen), or the trunk at ``backbone_lr`` times the learning rate and
    the rest at the learning rate (fine-tune, docs/method.md §6)."""
    if config.regime != "fine-tune":
        return [{"params": list(model.parameters())}]
    trunk, head = regimes.split_parameters(model)
    return [{"params": trunk, "lr": config.learning_rate * config.backbone_lr}, {"params": head}]


def _place(config: TrainConfig, model: HashModel, objective: NestedObjective, device: torch.device,
           dtype: torch.dtype | None, track_gradients: bool) -> tuple[HashModel, nn.Module]:
    """Move model and objective to ``device`` (and ``dtype``); under an active process group,
    convert batch norm and wrap the step in DistributedDataParallel. Returns the model (its
    batch norm possibly converted) and the module whose forward runs a training step."""
    model.to(device)
    objective.to(device)
    if dtype is not None:
        model.to(dtype)
        objective.to(dtype)
    objective.track_gradients = track_gradients
    if not distributed.is_active():
        return model, _Step(model, config.amp)
    model = distributed.convert_batchnorm(model, device)
    objective.layer = model.hash_layer
    return model, DDP(_Step(model, config.amp), device_ids=[device.index] if device.type == "cuda" else None)


def _train_epoch(config, epoch, model, objective, step_module, optimizer, scaler, source,
                 step_callback, ckpt_path) -> tuple[np.ndarray, float]:
    """One pass over the training split in this epoch's seeded order: per batch the objective
    (docs/method.md §5), one backward pass and an Adam step. Returns the (3, K) means of the
    per-length losses, distillation terms and weights, and the share of steps where the
    dominance rule fired."""
    bits = config.bit_list
    model.train()
    objective.train()
    torch.manual_seed(epoch_seed(config.seed, epoch))
    sums = torch.zeros(3, len(bits), dtype=torch.float64)
    anti, steps = 0, 0
    batches = _batches(len(source.dataset), config.batch_size, epoch_seed(config.seed, epoch))
    local = [distributed.local_part(pos) for pos in batches]
    with distributed.bank_gathering(distributed.is_active()):
        for step, (pos, (x, y, idx)) in enumerate(zip(batches, source(local))):
            try:
                z, h = step_module(x)
                out = objective(z, y, idx, h=h, scale=distributed.local_scale(len(idx), len(pos)))
            except NonFiniteLossError as err:
                raise _diverged(err, epoch, step, ckpt_path) from err
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.total).backward()
            scaler.step(optimizer)
            scaler.update()
            sums += torch.stack([out.losses, out.distill, out.weights]).double().cpu()
            anti += int(out.anti_domination)
            steps += 1
            if step_callback is not None:
                step_callback(epoch, step, out, model)
    sums = distributed.all_reduce_mean(sums)  # every process's local losses, averaged
    return (sums / max(steps, 1)).numpy(), anti / max(steps, 1)


def _diverged(err: NonFiniteLossError, epoch: int, step: int, ckpt_path: Path | None) -> TrainingDivergedError:
    if ckpt_path is None or epoch == 0:
        kept = "no checkpoint was written yet" if ckpt_path else "no run_dir, so no checkpoint"
    else:
        kept = f"the last good checkpoint (end of epoch {epoch - 1}) is kept in {ckpt_path}"
    return TrainingDivergedError(f"epoch {epoch} step {step}: {err}. Training stopped; {kept}")


def _history_rows(epoch, bits, means, anti, val, train_seconds, eval_seconds) -> list[dict]:
    """One history row per length of this epoch."""
    return [dict(epoch=int(epoch), bits=int(b), loss=float(means[0, k]), distill=float(means[1, k]),
                 weight=float(means[2, k]), anti_domination=anti, val_map=float(val[b]),
                 train_seconds=float(train_seconds), eval_seconds=float(eval_seconds))
            for k, b in enumerate(bits)]


def _finish(config: TrainConfig, model: HashModel, objective: NestedObjective, sel: _Selection) -> FitResult:
    """The model at the selected epoch (every process agrees on it), on the CPU, in eval mode."""
    model.to("cpu")
    objective.to("cpu")
    if distributed.is_active():
        sel.best_epoch, sel.best_score, sel.best_state = distributed.broadcast_object(
            (sel.best_epoch, sel.best_score, sel.best_state))
    if sel.best_state is not None:
        model.load_state_dict(sel.best_state)
    model.eval()
    history = pd.DataFrame(sel.rows)
    if not history.empty:
        history["selected"] = history["epoch"] == sel.best_epoch
    return FitResult(config, model, objective, history, sel.best_epoch, float(sel.best_score))


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _identity_json(config: TrainConfig) -> str:
    import json

    return json.dumps(config.identity(), sort_keys=True)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be resumed: damaged, or carrying pickled Python objects."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write a checkpoint atomically; it holds only tensors and plain Python values, so
    :func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``."""
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: a file carrying pickled
    objects (code that would run on loading) is rejected, never executed.

    Raises :class:`CheckpointError` naming the file and what is wrong.
    """
    import pickle

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} carries pickled Python objects, which nhl checkpoints never do; it was not "
            "loaded (loading it could run arbitrary code). Delete it to train from scratch"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged or truncated ({type(err).__name__}: {err})") from err


def _resumable(path: Path, config: TrainConfig) -> dict | None:
    """The checkpoint to resume from, or None (with a warning) when it is damaged or unsafe."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        warnings.warn(f"{err}; training from scratch instead", stacklevel=3)
        return None
    if ckpt.get("config") not in (_identity_json(config), config.to_json()):
        raise ValueError(
            f"the checkpoint in {path} belongs to another config; delete it or use another run_dir"
        )
    return ckpt
