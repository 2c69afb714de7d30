"""Probes: a training run watched on a fixed probe batch, its measurements cached next to the run.

Two probes of the nested objective's gradients (docs/method.md §3-4):

* :func:`record` - the per-length gradients and the dominance rule over a whole run, with a
  :class:`~nhl.diagnostics.GradientRecorder` (notebooks 02 and 03). Files in the run's folder:
  ``recording-every{N}.csv`` (one row per recorded step) and ``recording-every{N}.pt`` (the
  per-length gradients of the kept steps: the first recorded step, the strongest conflict and a
  typical one). :func:`record_many` records several named settings, :func:`summarise` puts them
  side by side.
* :func:`record_terms` - how hard the distillation term pulls on the hash layer against the base
  loss (:func:`nhl.diagnostics.term_gradients`; notebook 04), kept as a CSV next to the run;
  :func:`term_summary` condenses it per method and length.

Both train with a step callback on the objective being trained (so memory banks are real) and a
probe batch of the first :data:`PROBE_SIZE` training items; watching does not change training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import experiments
from ..config import TrainConfig
from ..diagnostics import GradientRecorder, conflict_rates, pick_conflict, term_gradients
from ..train import build, fit
from ..utils import atomic_torch_save, atomic_write_text
from ..validation import check_positive_int

#: Size of the probe batch every probe measures on: the first training items of the split.
PROBE_SIZE = 64


def probe_batch(splits, size: int = PROBE_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, idx)`` of the first ``size`` training items: the fixed batch of every probe."""
    return splits.train.get_batch(torch.arange(min(size, len(splits.train))))


def _split_and_folder(config: TrainConfig, root, data_root):
    """The split of ``config`` and its run folder in the cache, where a probe keeps its table."""
    splits = experiments.get_splits(config, data_root)
    return splits, experiments.run_path(config, splits.fingerprint, root)


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
    every = check_positive_int(every, "every")
    splits, path = _split_and_folder(config, root, data_root)
    csv, pt = _paths(path, every)
    if csv.exists() and pt.exists() and (path / "metrics.json").exists():
        try:  # tensors and plain values only: a file carrying pickled objects is not loaded
            kept = torch.load(pt, map_location="cpu", weights_only=True)
            return Recording(config, pd.read_csv(csv), kept, experiments.load(path))
        except Exception as err:  # damaged or unsafe recording (or run): record it again
            import warnings

            warnings.warn(f"recording {pt} cannot be used ({type(err).__name__}: {err}); recording again",
                          stacklevel=2)

    model, objective = build(config, splits)
    recorder = GradientRecorder(config.bit_list, every=every, probe=probe_batch(splits),
                                objective=objective,
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
    """One row per named recording: how much its lengths' gradients fight (docs/method.md §3).

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


#: Columns of a recording: where in training, which length, and the four measurements.
COLUMNS = ("method", "epoch", "step", "iteration", "bits", "base", "distill", "ratio", "cosine")


def recording_path(config: TrainConfig, every: int, probe_size: int = PROBE_SIZE,
                   root: str | Path | None = None, data_root: str | Path | None = None) -> Path:
    """Where :func:`record_terms` keeps the table of ``config`` (next to its run folder)."""
    return _split_and_folder(config, root, data_root)[1] / f"term-gradients-every{every}-probe{probe_size}.csv"


def record_terms(
    config: TrainConfig,
    every: int = 25,
    probe_size: int = PROBE_SIZE,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Base-loss and distillation gradients on ``W`` per length, every ``every`` steps (cached).

    Trains ``config`` with :func:`nhl.train.fit` (``prebuilt=nhl.train.build(...)``, so the
    callback holds the objective being trained) and, after step 0 and every ``every``-th
    optimiser step, calls :func:`nhl.diagnostics.term_gradients` on the first ``probe_size``
    training items. The probe does not change the training: buffers are restored by
    ``term_gradients`` and the random number generator's state by this function. Returns one row
    per recorded step and length below the longest (columns :data:`COLUMNS`); ``ratio`` is
    ``||lambda_D dSP_k/dW|| / ||d loss_k/dW||``. The config must distil (``distill > 0``) and be
    nested. A second call with the same arguments reads the CSV written by the first.
    """
    every = check_positive_int(every, "every")
    probe_size = check_positive_int(probe_size, "probe_size")
    if not config.nested:
        raise ValueError("record_terms needs a nested config (more than one code length)")
    if config.distill <= 0:
        raise ValueError(f"record_terms needs distillation (config.distill > 0), got "
                         f"{config.distill}; use config.variant('distill') or .variant('nhl')")
    path = recording_path(config, every, probe_size, root, data_root)
    if path.exists():
        return pd.read_csv(path)

    splits = experiments.get_splits(config, data_root)
    probe = probe_batch(splits, probe_size)
    model, objective = build(config, splits)
    rows: list[pd.DataFrame] = []
    counter = {"iteration": 0}

    def watch(epoch: int, step: int, output, model_) -> None:
        it = counter["iteration"]
        counter["iteration"] += 1
        if it % every:
            return
        with torch.random.fork_rng(devices=[]):
            t = term_gradients(model_, objective, *probe)
        rows.append(t.assign(method=config.method, epoch=epoch, step=step, iteration=it))

    fit(config, splits, progress=progress, step_callback=watch, prebuilt=(model, objective))
    frame = pd.concat(rows, ignore_index=True)[list(COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def term_summary(frame: pd.DataFrame, skip_first: bool = True) -> pd.DataFrame:
    """Per method and length: median gradient norms, ratio and cosine over the recorded steps
    (with the range of the ratio and the cosine).

    ``skip_first`` drops iteration 0 (the untrained network, where the distillation gradient
    of a random code has its own scale) when later steps exist.
    """
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}; pass what record_terms returns")
    if frame.empty:
        raise ValueError("frame has no rows")
    if skip_first and (frame["iteration"] > 0).any():
        frame = frame[frame["iteration"] > 0]
    g = frame.groupby(["method", "bits"])
    out = pd.DataFrame({
        "median base": g["base"].median(),
        "median distill": g["distill"].median(),
        "median ratio": g["ratio"].median(),
        "min ratio": g["ratio"].min(),
        "max ratio": g["ratio"].max(),
        "median cosine": g["cosine"].median(),
        "min cosine": g["cosine"].min(),
        "max cosine": g["cosine"].max(),
        "steps": g["iteration"].nunique(),
    })
    return out
