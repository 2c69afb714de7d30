"""Baselines a sceptical reader asks for, as rows beside a study's runs (docs/method.md §9).

* ``truncated``: the single-length model at the longest length, its codes cut to each shorter
  length (what one long model gives for free; a nested model must beat it to be worth training).
* ``classifier``: a cross-entropy classifier on the same training split whose prediction is
  written as a code: the CSQ centre of the predicted class (multi-label: the sign of the sum of
  the predicted labels' centres), prefixes for the shorter lengths. Sablayrolles et al.
  ("How should we evaluate supervised hashing?", ICASSP 2017) show such codes beat many
  supervised hashing methods on classes seen in training. It is trained on the frozen regime's
  cached features (the pretrained trunk, then a trainable copy of the pretrained neck and a
  linear classifier) under the same early-stopping rule as the hashing runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import experiments, regimes
from ..config import TrainConfig
from ..data import map_topk
from ..layer import DEFAULT_BITS
from ..losses.targets import nested_csq_centers
from ..metrics import map_per_length, map_table
from ..utils import seed_everything
from .tables import runs_table


def with_baselines(runs: Sequence[experiments.RunResult]) -> pd.DataFrame:
    """:func:`~nhl.studies.tables.runs_table` plus ``truncated`` rows for every single-length run
    at the longest length and ``classifier`` rows for every (dataset, seed) of the runs."""
    table = runs_table(runs)
    extra = [row for r in runs if not r.config.nested and r.config.bit_list[0] == DEFAULT_BITS[-1]
             for row in truncated_rows(r)]
    seen = sorted({(r.config.dataset, r.config.seed, r.config.split_seed) for r in runs})
    for dataset, seed, split_seed in seen:
        extra += classifier_rows(dataset, seed, split_seed)
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True)


def _scores(q, db, ql, dbl, bits: Sequence[int], topk: int | None) -> dict[str, dict[int, float]]:
    both = map_table(q, db, ql, dbl, bits, ties=("average", "index"))
    out = {"mAP": both["average"], "mAP index": both["index"], "mAP@K": both["average"]}
    if topk is not None:
        out["mAP@K"] = map_per_length(q, db, ql, dbl, bits, topk=topk, ties="average")
    return out


def truncated_rows(run: experiments.RunResult) -> list[dict]:
    """Rows of a single-length run's codes cut to every shorter default length."""
    c = run.config
    bits = [b for b in DEFAULT_BITS if b < c.bit_list[0]]
    codes = run.codes
    s = _scores(codes["query"], codes["database"], codes["query_labels"], codes["database_labels"], bits, run.topk)
    return [{"dataset": c.dataset, "regime": c.regime, "method": c.method, "variant": "truncated", "seed": c.seed,
             "bits": b, "mAP": s["mAP"][b], "mAP index": s["mAP index"][b], "topk": run.topk,
             "mAP@K": s["mAP@K"][b], "epochs": c.epochs, "epochs trained": run.metrics.get("epochs_trained"),
             "best epoch": run.metrics["best_epoch"]} for b in bits]


class _Classifier(nn.Module):
    def __init__(self, neck: nn.Module, width: int, n_classes: int):
        super().__init__()
        self.neck, self.out = neck, nn.Linear(width, n_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.out(self.neck(f))


def _codes(logits: torch.Tensor, centres: torch.Tensor, multi_label: bool) -> np.ndarray:
    """+1/-1 codes of the predicted class (or labels) from the centres (C x L)."""
    if not multi_label:
        return centres[logits.argmax(1)].numpy().astype(np.int8)
    on = logits > 0
    on[torch.arange(len(on)), logits.argmax(1)] = True  # at least the most likely label
    s = on.float() @ centres.float()
    return np.where(s.numpy() >= 0, 1, -1).astype(np.int8)


def classifier_rows(dataset: str, seed: int = 0, split_seed: int = 0, epochs: int = 40, eval_every: int = 2,
                    patience: int = 3, lr: float = 1e-3, batch_size: int = 64) -> list[dict]:
    """Train the classifier baseline on the frozen features of ``dataset`` and score its codes
    like a run (query against database, every default length). Seeded: the same call gives the
    same rows."""
    splits = experiments.get_splits(TrainConfig(dataset=dataset, split_seed=split_seed))
    fs, backbone = regimes.pretrained_frozen_splits(splits, progress=False)
    seed_everything(seed)
    model = _Classifier(backbone.neck, backbone.out_features, splits.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    centres = nested_csq_centers(splits.n_classes, DEFAULT_BITS)
    multi = bool(splits.multi_label)
    loss_fn = nn.BCEWithLogitsLoss() if multi else nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    x, y = fs.train.features, fs.train.labels
    target = y if multi else y.argmax(1)

    def encode(part) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = _codes(model(part.features), centres, multi)
        model.train()
        return out

    best, best_epoch, best_state, since = -np.inf, -1, None, 0
    for epoch in range(epochs):
        for pos in torch.randperm(len(x), generator=gen).split(batch_size):
            if len(pos) < 2:
                continue
            loss = loss_fn(model(x[pos]), target[pos])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (epoch + 1) % eval_every and epoch + 1 != epochs:
            continue
        val = map_per_length(encode(fs.val), encode(fs.train), fs.val.labels.numpy(), fs.train.labels.numpy(),
                             DEFAULT_BITS)
        score = float(np.mean(list(val.values())))
        if score > best:
            best, best_epoch, since = score, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    topk = map_topk(dataset)
    s = _scores(encode(fs.query), encode(fs.database), fs.query.labels.numpy(), fs.database.labels.numpy(),
                DEFAULT_BITS, topk)
    return [{"dataset": dataset, "regime": "frozen", "method": "classifier", "variant": "classifier", "seed": seed,
             "bits": b, "mAP": s["mAP"][b], "mAP index": s["mAP index"][b], "topk": topk, "mAP@K": s["mAP@K"][b],
             "val mAP": best, "epochs": epochs, "epochs trained": epoch + 1, "best epoch": best_epoch, "lr": lr}
            for b in DEFAULT_BITS]
