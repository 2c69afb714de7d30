"""Cached gradient recordings: a training run watched by :class:`~nhl.diagnostics.GradientRecorder`.

Notebooks 02 and 03 look at per-length gradients over a whole training run (METHOD.md section
3). Recording them means training with a step callback, so :func:`record` keeps the recorder's
table (and the gradients of a few chosen steps) next to the run in the experiment cache: the
first call trains (and stores the run as :func:`nhl.experiments.run` would), later calls load.

Files in the run's folder: ``recording-every{N}.csv`` (one row per recorded step, the columns
of :meth:`GradientRecorder.frame`) and ``recording-every{N}.pt`` (the per-length gradients of
the kept steps: the first recorded step, the strongest conflict and a typical one).
:func:`record_many` records several named settings and :func:`summarise` puts them side by side
(how often the lengths' gradients oppose each other and the dominance rule would fire).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import experiments
from .config import TrainConfig
from .diagnostics import GradientRecorder, conflict_rates, pick_conflict
from .utils import atomic_torch_save, atomic_write_text
from .validation import check_positive_int

PROBE_SIZE = 64  # the fixed batch whose backbone gradients are recorded


@dataclass
class Recording:
    """A recorded run: the recorder's table, gradients of chosen steps and the finished run."""

    config: TrainConfig
    frame: pd.DataFrame
    kept: dict[str, dict]  # "first" / "strongest" / "typical" -> {iteration, epoch, step, grads}
    run: experiments.RunResult

    def grads(self, which: str = "typical") -> torch.Tensor:
        """Per-length gradients (K, L_K, d) of a kept step (``first``, ``strongest``, ``typical``)."""
        if which not in self.kept:
            raise KeyError(f"no kept step {which!r}; kept: {', '.join(self.kept) or 'none'}")
        return self.kept[which]["grads"]

    @property
    def firing_rate(self) -> float:
        """Share of recorded steps where the dominance rule fired (any alpha < 1)."""
        return float(self.frame["anti_domination"].mean())


def _paths(run_path: Path, every: int) -> tuple[Path, Path]:
    return run_path / f"recording-every{every}.csv", run_path / f"recording-every{every}.pt"


def record(
    config: TrainConfig,
    every: int = 5,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> Recording:
    """Train ``config`` with a :class:`GradientRecorder` every ``every`` steps (or load it).

    The recorder gets a fixed probe batch (the first :data:`PROBE_SIZE` training items) for the
    backbone's gradients and the objective being trained (so memory-bank losses see their real
    bank). Training with the recorder gives the same model as without it. When the run is in
    the cache but this recording is not, the run is trained again to record it (in a process
    with another thread count the recorded trajectory can differ in the last digits from the
    cached run's).
    """
    from .train import build, fit

    every = check_positive_int(every, "every")
    splits = experiments.get_splits(config, data_root)
    path = experiments.run_path(config, splits.fingerprint, root)
    csv, pt = _paths(path, every)
    if csv.exists() and pt.exists() and (path / "metrics.json").exists():
        try:  # tensors and plain values only: a file carrying pickled objects is not loaded
            kept = torch.load(pt, map_location="cpu", weights_only=True)
            return Recording(config, pd.read_csv(csv), kept, experiments.load(path))
        except Exception as err:  # damaged or unsafe recording (or run): record it again
            import warnings

            warnings.warn(f"recording {pt} cannot be used ({type(err).__name__}: {err}); recording again",
                          stacklevel=2)

    probe = splits.train.get_batch(torch.arange(min(PROBE_SIZE, len(splits.train))))
    model, objective = build(config, splits)
    recorder = GradientRecorder(config.bit_list, every=every, probe=probe, objective=objective,
                                keep_grads=True)
    options = dict(step_callback=recorder, track_gradients=True, prebuilt=(model, objective))
    existing = experiments.cached_or_damaged(path)  # None (with a warning) when damaged
    if existing is not None:  # the run exists: train again only to watch it
        fit(config, splits, progress=progress, **options)
        run = existing
    else:
        run = experiments.run(config, root=root, data_root=data_root, progress=progress,
                              fit_options=options)
    frame = recorder.frame()
    kept = _choose(frame, recorder)
    path.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(kept, pt)
    atomic_write_text(csv, frame.to_csv(index=False))
    return Recording(config, frame, kept, run)


def _choose(frame: pd.DataFrame, recorder: GradientRecorder) -> dict[str, dict]:
    """The gradients worth keeping: the first recorded step, the strongest and a typical conflict."""
    kept: dict[str, dict] = {}

    def keep(name: str, iteration: int, grads: torch.Tensor) -> None:
        row = frame.loc[frame["iteration"] == iteration].iloc[0]
        kept[name] = {"iteration": int(iteration), "epoch": int(row["epoch"]),
                      "step": int(row["step"]), "grads": grads}

    if recorder.first is not None:
        keep("first", recorder.first["iteration"], recorder.first["grads"])
    if recorder.strongest is not None:
        keep("strongest", recorder.strongest["iteration"], recorder.strongest["grads"])
    pick = pick_conflict(frame)
    if pick is not None:
        iteration = int(frame.loc[pick[0], "iteration"])
        if iteration in recorder.kept:
            keep("typical", iteration, recorder.kept[iteration])
    return kept


def record_many(
    settings: Mapping[str, TrainConfig],
    every: int = 5,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Recording]:
    """:func:`record` for several named settings, in order (each trained once, then loaded)."""
    if not settings:
        raise ValueError("settings is empty: pass {name: TrainConfig}")
    return {name: record(cfg, every=every, root=root, data_root=data_root, progress=progress)
            for name, cfg in settings.items()}


def summarise(
    recordings: Mapping[str, Recording],
    first_steps: int | None = None,
    data_root: str | Path | None = None,
) -> pd.DataFrame:
    """One row per named recording: how much its lengths' gradients fight (METHOD.md section 3).

    Columns: ``dataset``, ``classes``, ``method``, ``variant``, ``steps`` (training steps up to
    the last recorded one), ``recorded`` (recorded steps), on the hash layer's shared rows
    ``mean cos (W)`` (over pairs and steps) and ``negative cos (W)`` (share of (step, pair) cases
    with a negative cosine), ``rule fires`` (share of recorded steps where some alpha < 1, i.e.
    the dominance rule would act) and ``min alpha``; on the backbone's last linear layer (probe
    batch) ``mean cos (backbone)`` and ``negative cos (backbone)``. ``first_steps`` keeps only
    the steps before that iteration, to compare runs of different lengths over the same number
    of optimiser steps.
    """
    if not recordings:
        raise ValueError("recordings is empty: pass {name: Recording} (e.g. from record_many)")
    if first_steps is not None:
        first_steps = check_positive_int(first_steps, "first_steps")
    rows = {}
    for name, rec in recordings.items():
        f = rec.frame if first_steps is None else rec.frame[rec.frame["iteration"] < first_steps]
        if f.empty:
            raise ValueError(f"{name!r} has no recorded step before iteration {first_steps}")
        c = rec.config
        w = conflict_rates(f)
        row = {
            "dataset": c.dataset,
            "classes": experiments.get_splits(c, data_root).n_classes,
            "method": c.method,
            "variant": c.kind.removeprefix("nested-"),
            "steps": int(f["iteration"].max()) + 1,
            "recorded": len(f),
            "mean cos (W)": float(w["mean cosine"].mean()),
            "negative cos (W)": float(w["negative cosine"].mean()),
            "rule fires": float(f["anti_domination"].mean()),
            "min alpha": float(f["min_alpha"].min()),
        }
        if any(str(col).startswith("bb_cos_") for col in f.columns):
            b = conflict_rates(f, "bb_cos")
            row["mean cos (backbone)"] = float(b["mean cosine"].mean())
            row["negative cos (backbone)"] = float(b["negative cosine"].mean())
        else:
            row["mean cos (backbone)"] = row["negative cos (backbone)"] = np.nan
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "setting"
    return out
