"""Interleaved wall-clock timing: compare competing callables on a shared, noisy CPU.

Timing one method after the other lets a burst of background load land on one of them only.
:func:`interleaved_timings` runs every callable once per *round*, in a fresh random order each
round, so a slow spell hits all of them alike; :func:`summarize_timings` reports the median over
rounds with its spread (minimum and maximum), and compares each method with a reference through
the per-round ratio (the rounds are paired): a difference counts as real only when every round
agrees on its direction, otherwise it is reported as "within noise".

Used by notebook 08 (search latency, METHOD.md section 1: nested codes make every length and the
coarse-to-fine funnel available from one stored code).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from .validation import check_positive_int

__all__ = ["interleaved_timings", "summarize_timings", "verdict"]


def interleaved_timings(
    functions: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds per call of each callable, measured in ``repeats`` interleaved rounds.

    Each callable first runs ``warmup`` times untimed (caches, lazy tables). Then, in every
    round, each one runs once, in an order shuffled per round (seeded by ``seed``).

    Returns a long table with columns ``name``, ``round`` and ``seconds`` (one row per call).
    """
    if not isinstance(functions, Mapping) or not functions:
        raise ValueError("functions must be a non-empty {name: callable} mapping")
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"functions[{name!r}] must be callable, got {type(fn).__name__}")
    repeats = check_positive_int(repeats, "repeats")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    names = list(functions)
    for name in names:
        for _ in range(int(warmup)):
            functions[name]()
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(repeats):
        for j in rng.permutation(len(names)):
            name = names[j]
            t0 = time.perf_counter()
            functions[name]()
            rows.append({"name": name, "round": r, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def verdict(low: float, high: float) -> str:
    """``"faster"`` when every round's speed-up ``t_ref / t`` exceeds 1, ``"slower"`` when every
    one is below 1, else ``"within noise"``."""
    if low > 1.0:
        return "faster"
    if high < 1.0:
        return "slower"
    return "within noise"


def summarize_timings(
    times: pd.DataFrame, reference: str | None = None, per: int = 1, scale: float = 1e3
) -> pd.DataFrame:
    """Median time per call (divided by ``per``, e.g. the number of queries) and its spread.

    Columns (index ``name``, in first-seen order): ``median`` / ``low`` / ``high`` (median,
    minimum and maximum over rounds, times ``scale``: milliseconds by default) and ``rounds``.
    With a ``reference`` name also ``speed-up`` (median over rounds of ``t_reference / t`` in
    the same round), ``speed-up low`` / ``speed-up high`` (its minimum and maximum) and
    ``vs reference`` (:func:`verdict`).
    """
    missing = {"name", "round", "seconds"} - set(times.columns)
    if missing:
        raise ValueError(f"times lacks column(s) {sorted(missing)}; use interleaved_timings")
    per = check_positive_int(per, "per")
    names = list(dict.fromkeys(times["name"]))
    wide = times.pivot_table(index="round", columns="name", values="seconds")[names]
    per_call = wide * (scale / per)
    out = pd.DataFrame({
        "median": per_call.median(),
        "low": per_call.min(),
        "high": per_call.max(),
        "rounds": per_call.count(),
    })
    if reference is not None:
        if reference not in wide.columns:
            raise ValueError(f"reference {reference!r} is not one of the timed names: {names}")
        ratio = wide.rdiv(wide[reference], axis=0)  # t_ref / t per round: > 1 means faster
        out["speed-up"] = ratio.median()
        out["speed-up low"] = ratio.min()
        out["speed-up high"] = ratio.max()
        out["vs reference"] = [verdict(lo, hi) if name != reference else "reference"
                               for name, lo, hi in zip(out.index, out["speed-up low"],
                                                       out["speed-up high"])]
    out.index.name = "name"
    return out
