"""Measuring training cost fairly: seconds per optimiser step and time to reach a target mAP.

METHOD.md section 6 claims one nested model trains 5 to 8 times faster than K single-length
models. Whether that holds depends on (a) what one nested step costs compared with one
single-length step (the dominance weighting differentiates every length's objective separately,
the distillation adds a B x B similarity per length) and (b) how many epochs each run needs.
:func:`time_steps` measures (a) on identical batches; :func:`time_to_target` reads (b) off a
run's history.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .config import VARIANTS, TrainConfig
from .validation import check_positive_int

#: Variant names :func:`time_steps` understands besides the nested ones in ``VARIANTS``.
SINGLE = "single"


def _variant_config(config: TrainConfig, name: str) -> TrainConfig:
    """``plain/weighting/distill/nhl`` -> nested variant; ``single`` or ``single-<bits>``."""
    if name in VARIANTS:
        return config.variant(name)
    if name == SINGLE:
        return config.baseline(config.bit_list[-1])
    if name.startswith(SINGLE + "-"):
        try:
            bits = int(name.split("-", 1)[1])
        except ValueError:
            bits = -1
        if bits in config.bit_list:
            return config.baseline(bits)
    valid = [*VARIANTS, SINGLE, *(f"{SINGLE}-{b}" for b in config.bit_list)]
    raise ValueError(f"unknown variant {name!r}; valid: {', '.join(valid)}")


def time_steps(
    config: TrainConfig,
    splits,
    variants: Sequence[str] = ("single", "plain", "weighting", "distill", "nhl"),
    n_steps: int = 200,
    repeats: int = 3,
    warmup: int = 5,
) -> pd.DataFrame:
    """Median seconds per training step (forward, objective, backward, Adam) per variant.

    Every variant sees the same ``n_steps`` training batches (drawn once, seeded by
    ``config.seed``) and is built with :func:`nhl.train.build`; ``warmup`` untimed steps come
    first. The variants are interleaved within each repeat, so a slowdown of a shared CPU hits
    all of them alike. Variants: ``plain``, ``weighting``, ``distill``, ``nhl`` (nested, see
    :meth:`TrainConfig.variant`) and ``single`` (the longest length alone) or ``single-<bits>``.

    Returns one row per variant: ``variant``, ``kind``, ``step ms`` (median over repeats of the
    mean step time), ``min ms``, ``max ms`` (over repeats) and ``relative`` (to the first
    variant).
    """
    check_positive_int(n_steps, "n_steps")
    check_positive_int(repeats, "repeats")
    if not variants:
        raise ValueError("variants must name at least one variant, e.g. ('single', 'nhl')")
    configs = {v: _variant_config(config, v) for v in variants}
    from .train import build

    n_train = len(splits.train)
    gen = torch.Generator().manual_seed(config.seed)
    bs = min(config.batch_size, n_train)
    batches = [splits.train.get_batch(torch.randperm(n_train, generator=gen)[:bs]) for _ in range(n_steps)]
    warm = batches[: max(0, min(warmup, n_steps))]
    setups = {}
    for v, c in configs.items():
        model, objective = build(c, splits)
        model.train()
        objective.train()
        opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        setups[v] = (model, objective, opt)
        _steps(model, objective, opt, warm)

    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            t0 = time.perf_counter()
            _steps(*setups[v], batches)
            seconds[v].append((time.perf_counter() - t0) / n_steps)
    rows = []
    for v in variants:
        s = seconds[v]
        rows.append(
            {
                "variant": v,
                "kind": configs[v].kind,
                "step ms": 1000 * statistics.median(s),
                "min ms": 1000 * min(s),
                "max ms": 1000 * max(s),
            }
        )
    table = pd.DataFrame(rows)
    table["relative"] = table["step ms"] / table["step ms"].iloc[0]
    return table


def _steps(model, objective, optimizer, batches) -> None:
    for x, y, idx in batches:
        out = objective(model.features(x), y, idx)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()


def progress_curve(history: pd.DataFrame, bits: int | None = None, include_eval: bool = False) -> pd.DataFrame:
    """Validation mAP after each evaluated epoch against cumulative seconds.

    ``history`` is a run's long-format history (one row per epoch and length). ``bits``: one
    length's ``val_map``; ``None``: the mean over the lengths (the selection score). Seconds are
    cumulative training time, plus the per-epoch evaluation time with ``include_eval``.
    Returns columns ``epoch``, ``seconds``, ``val_map`` (epochs without evaluation dropped).
    """
    for col in ("epoch", "bits", "val_map", "train_seconds", "eval_seconds"):
        if col not in history.columns:
            raise ValueError(f"history lacks column {col!r}; pass a run's .history (nhl.experiments.run)")
    per_epoch = history.groupby("epoch")[["train_seconds", "eval_seconds"]].first().sort_index()
    seconds = per_epoch["train_seconds"] + (per_epoch["eval_seconds"] if include_eval else 0.0)
    if bits is None:
        val = history.groupby("epoch")["val_map"].mean()
    else:
        if bits not in set(history["bits"]):
            raise ValueError(f"bits={bits} is not in this history's lengths {sorted(set(history['bits']))}")
        val = history[history["bits"] == bits].set_index("epoch")["val_map"]
    out = pd.DataFrame({"epoch": per_epoch.index, "seconds": seconds.cumsum().to_numpy()})
    out["val_map"] = val.reindex(per_epoch.index).to_numpy()
    return out.dropna(subset=["val_map"]).reset_index(drop=True)


def time_to_target(
    history: pd.DataFrame,
    target: float | Mapping[int, float],
    bits: int | None = None,
    include_eval: bool = False,
) -> float:
    """Cumulative seconds until the validation mAP first reaches ``target`` (NaN if never).

    ``target`` a number: compared with one length's ``val_map`` (``bits``) or, with
    ``bits=None``, the mean over the lengths. ``target`` a mapping ``{bits: mAP}``: the first
    epoch at which *every* listed length reaches its own target at once (one checkpoint that
    serves all of them). Time is counted to the end of that epoch (see :func:`progress_curve`).
    """
    if isinstance(target, Mapping):
        if not target:
            raise ValueError("target mapping is empty; give {bits: mAP} for at least one length")
        reached = None
        for b, t in target.items():
            curve = progress_curve(history, int(b), include_eval)
            ok = pd.Series(curve["val_map"].to_numpy() >= float(t), index=curve["epoch"])
            reached = ok if reached is None else (reached & ok.reindex(reached.index, fill_value=False))
        seconds = progress_curve(history, None, include_eval).set_index("epoch")["seconds"]
        hits = reached[reached].index
        return float(seconds.loc[hits[0]]) if len(hits) else float("nan")
    curve = progress_curve(history, bits, include_eval)
    hit = np.flatnonzero(curve["val_map"].to_numpy() >= float(target))
    return float(curve["seconds"].iloc[hit[0]]) if len(hit) else float("nan")
