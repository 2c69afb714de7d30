"""How hard the distillation term pulls on the hash layer during training, recorded and cached.

METHOD.md section 4: every shorter code k gets ``lambda_D SP(h_k, sg(h_{k+1}))`` next to its own
base loss. Whether that term helps or hurts depends on how its gradient on the shared weight ``W``
compares with the base loss's: :func:`nhl.diagnostics.term_gradients` measures, for one batch,
both gradient norms, their ratio and their cosine. :func:`record_terms` trains a config with a
step callback that calls it on a fixed probe batch every ``every`` steps (the objective being
trained, so memory banks are real) and keeps the small table as a CSV next to the config's run
folder in the run cache: the first call trains (only :func:`nhl.train.fit`, no database
encoding), later calls read the CSV. :func:`term_summary` condenses it per method and length.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from . import experiments
from .config import TrainConfig
from .diagnostics import term_gradients
from .utils import atomic_write_text
from .validation import check_positive_int

#: Columns of a recording: where in training, which length, and the four measurements.
COLUMNS = ("method", "epoch", "step", "iteration", "bits", "base", "distill", "ratio", "cosine")
PROBE_SIZE = 64


def recording_path(config: TrainConfig, every: int, probe_size: int = PROBE_SIZE,
                   root: str | Path | None = None, data_root: str | Path | None = None) -> Path:
    """Where :func:`record_terms` keeps the table of ``config`` (next to its run folder)."""
    splits = experiments.get_splits(config, data_root)
    folder = experiments.run_path(config, splits.fingerprint, root)
    return folder / f"term-gradients-every{every}-probe{probe_size}.csv"


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
    from .train import build, fit

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
    probe = splits.train.get_batch(torch.arange(min(probe_size, len(splits.train))))
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
