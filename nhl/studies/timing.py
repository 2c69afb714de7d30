"""Measuring cost fairly: interleaved rounds, seconds per optimiser step, evaluation, time to a
target mAP (docs/method.md §9: "one NHL model trains about 5 to 8 times faster than K
single-length models").

Timing one method after the other lets a burst of background load land on one of them only.
Every measurement here runs its candidates once per *round*, in a freshly shuffled order each
round (:func:`shuffled_rounds`), so a slow spell hits all of them alike:

* :func:`interleaved_timings` / :func:`summarize_timings`: any named callables (search latency
  in notebook 08), medians over rounds with their spread and per-round paired ratios against a
  reference; a difference counts as real only when every round agrees on its direction.
* :func:`measure_steps`: the training steps of many models on the same batches. With equal
  epochs and the same selection rule every run takes the same number of steps, so the training
  speed-up per epoch is ``sum_k t(single L_k) / t(nested)`` for the per-step costs t. Whether
  that is near K depends on how much of a step the shared backbone costs against the per-length
  head, and on what the weighting and the distillation add.
* :func:`time_evaluation`: what each model costs outside the steps (memory-bank refresh,
  validation pass, encoding); :func:`run_costs` puts them together for a number of epochs.

Timings are never cached: they belong to the machine and the moment they were measured. From a
run's history: :func:`progress_curve`, :func:`time_to_target` (seconds recorded while training)
and :func:`epochs_to_target` (epochs, comparable across runs timed at different moments).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..config import VARIANTS, TrainConfig
from ..metrics import map_per_length
from ..models import encode_dataset
from ..train import build, refresh_banks
from ..validation import check_positive_int


def shuffled_rounds(names: Sequence[str], repeats: int, seed: int = 0) -> Iterator[tuple[int, int, str]]:
    """``(round, position, name)`` for ``repeats`` rounds over ``names``, each round in a fresh
    random order (seeded by ``seed``): the one loop behind every interleaved measurement here."""
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        for pos, j in enumerate(rng.permutation(len(names))):
            yield r, pos, names[int(j)]


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
    rows = []
    for r, _, name in shuffled_rounds(names, repeats, seed):
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


def single_variants(config: TrainConfig) -> list[str]:
    """``["single-8", ..., "single-128"]``: the K single-length models of a nested config."""
    return [f"{SINGLE}-{b}" for b in config.bit_list]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of :func:`nhl.train.fit` (a last batch of one is dropped)."""
    n_train = check_positive_int(n_train, "n_train")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = math.ceil(n_train / batch_size)
    return n - 1 if n > 1 and n_train % batch_size == 1 else n


def _check_variants(variants: Sequence[str]) -> list[str]:
    if isinstance(variants, str) or not variants:
        raise ValueError("variants must be a non-empty list of names, e.g. ('single', 'nhl')")
    variants = list(variants)
    if len(set(variants)) != len(variants):
        raise ValueError(f"variants must not repeat a name, got {variants}")
    return variants


def _same_batches(splits, config: TrainConfig, n_steps: int) -> list:
    n_train = len(splits.train)
    gen = torch.Generator().manual_seed(config.seed)
    bs = min(config.batch_size, n_train)
    return [splits.train.get_batch(torch.randperm(n_train, generator=gen)[:bs]) for _ in range(n_steps)]


def _setup(config: TrainConfig, splits, refresh: bool):
    model, objective = build(config, splits)
    if refresh:  # as fit() does before the first epoch: a full bank, as in real training
        refresh_banks(model, objective, splits.train, config.batch_size)
    model.train()
    objective.train()
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    return model, objective, opt


def _steps(model, objective, optimizer, batches) -> None:
    for x, y, idx in batches:
        out = objective(model.features(x), y, idx)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()


def _heads(model, objective, batches, features) -> None:
    """The head alone: hash layer, losses, weighting and distillation, backward to W and z."""
    for (_, y, idx), z in zip(batches, features):
        out = objective(z, y, idx)
        model.zero_grad(set_to_none=True)
        z.grad = None
        out.total.backward()


@dataclass
class StepTimes:
    """Per-repeat step timings of several models on the same batches (:func:`measure_steps`).

    ``raw`` has one row per repeat and variant: ``repeat``, ``order`` (position in that
    repeat's shuffled order), ``variant``, ``kind``, ``step s`` (mean seconds per step over the
    batches) and, when measured, ``head s`` (the same for the head alone).
    """

    raw: pd.DataFrame
    variants: tuple[str, ...]
    n_steps: int
    batch_size: int
    threads: int

    @property
    def repeats(self) -> int:
        return int(self.raw["repeat"].nunique())

    @property
    def table(self) -> pd.DataFrame:
        """One row per variant (in the order given): ``step ms`` (median over repeats),
        ``min ms``, ``max ms``, ``relative`` (to the first variant) and, with head timings,
        ``head ms`` and ``rest ms`` (= step - head: backbone forward/backward and Adam)."""
        rows = []
        for v in self.variants:
            r = self.raw[self.raw["variant"] == v]
            s = r["step s"].to_numpy(float)
            row = {"variant": v, "kind": r["kind"].iloc[0], "step ms": 1000 * statistics.median(s),
                   "min ms": 1000 * s.min(), "max ms": 1000 * s.max()}
            if "head s" in r:
                row["head ms"] = 1000 * statistics.median(r["head s"].to_numpy(float))
                row["rest ms"] = row["step ms"] - row["head ms"]
            rows.append(row)
        table = pd.DataFrame(rows)
        table.insert(5, "relative", table["step ms"] / table["step ms"].iloc[0])
        return table

    def speedup(self, singles: Sequence[str], nested: Sequence[str] | str) -> pd.DataFrame:
        """Training speed-up per epoch: sum of the ``singles``' step costs over each nested one's.

        Computed within every repeat (the models of one repeat ran under the same load), then
        summarised: ``median``, ``min``, ``max`` over repeats, and ``of medians`` (the ratio of
        the median step costs). With equal epochs and batches this is also the speed-up of the
        optimiser steps of a whole run.
        """
        singles = _check_variants(singles)
        nested = [nested] if isinstance(nested, str) else _check_variants(nested)
        unknown = [v for v in [*singles, *nested] if v not in self.variants]
        if unknown:
            raise ValueError(f"not measured: {unknown}; measured: {list(self.variants)}")
        wide = self.raw.pivot(index="repeat", columns="variant", values="step s")
        total = wide[singles].sum(axis=1)
        med = wide.median()
        rows = []
        for v in nested:
            ratio = total / wide[v]
            rows.append({"nested": v, "median": float(ratio.median()), "min": float(ratio.min()),
                         "max": float(ratio.max()), "of medians": float(med[singles].sum() / med[v]),
                         "repeats": int(ratio.size)})
        return pd.DataFrame(rows).set_index("nested")


def measure_steps(
    config: TrainConfig,
    splits,
    variants: Sequence[str] = ("single", "plain", "weighting", "distill", "nhl"),
    n_steps: int = 20,
    repeats: int = 5,
    warmup: int = 2,
    parts: bool = False,
    seed: int = 0,
    refresh: bool = False,
) -> StepTimes:
    """Time training steps (forward, objective, backward, Adam) of several models, interleaved.

    Every variant is built with :func:`nhl.train.build` and sees the same ``n_steps`` training
    batches (drawn once, seeded by ``config.seed``) after ``warmup`` untimed steps. A memory
    bank enters every step whole (unfilled rows with weight 0), so its cost does not depend on
    how full it is; ``refresh`` fills the banks from the network first anyway, as
    :func:`nhl.train.fit` does (one forward pass over the training split per model). In each of ``repeats``
    rounds the variants run one after another in a freshly shuffled order (seeded by ``seed``),
    so neither a slowdown of a shared CPU nor a fixed position favours one of them. With
    ``parts`` the head alone (hash layer, losses, weighting, distillation and their backward
    pass, on fixed backbone features) is timed right after each variant's steps.
    Variants: ``plain``, ``weighting``, ``distill``, ``nhl`` (nested, see
    :meth:`TrainConfig.variant`), ``single`` (the longest length alone) or ``single-<bits>``.
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    repeats = check_positive_int(repeats, "repeats")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    variants = _check_variants(variants)
    configs = {v: _variant_config(config, v) for v in variants}
    batches = _same_batches(splits, config, n_steps)
    warm = batches[:warmup]
    setups, features = {}, {}
    for v, c in configs.items():
        setups[v] = _setup(c, splits, refresh=refresh)
        _steps(*setups[v], warm)
        if parts:
            model = setups[v][0]
            with torch.no_grad():
                features[v] = [model.features(x).requires_grad_(True) for x, _, _ in batches]
    rows = []
    for rep, pos, v in shuffled_rounds(variants, repeats, seed):
        t0 = time.perf_counter()
        _steps(*setups[v], batches)
        row = {"repeat": rep, "order": pos, "variant": v, "kind": configs[v].kind,
               "step s": (time.perf_counter() - t0) / n_steps}
        if parts:
            t0 = time.perf_counter()
            _heads(setups[v][0], setups[v][1], batches, features[v])
            row["head s"] = (time.perf_counter() - t0) / n_steps
        rows.append(row)
    return StepTimes(pd.DataFrame(rows), tuple(variants), n_steps, min(config.batch_size, len(splits.train)),
                     torch.get_num_threads())


def time_steps(
    config: TrainConfig,
    splits,
    variants: Sequence[str] = ("single", "plain", "weighting", "distill", "nhl"),
    n_steps: int = 200,
    repeats: int = 3,
    warmup: int = 5,
    parts: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Median milliseconds per training step per variant: :attr:`StepTimes.table` of
    :func:`measure_steps` (see there). Columns ``variant``, ``kind``, ``step ms``, ``min ms``,
    ``max ms``, ``relative`` (to the first variant); with ``parts`` also ``head ms``, ``rest ms``.
    """
    return measure_steps(config, splits, variants, n_steps, repeats, warmup, parts, seed).table


def time_evaluation(
    config: TrainConfig,
    splits,
    variants: Sequence[str],
    repeats: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """What each model costs outside its optimiser steps, measured interleaved like the steps.

    Per variant (median over ``repeats`` shuffled rounds): ``refresh s`` (writing the memory
    banks from the network over the training split, once per run with the default
    ``bank_refresh="start"``; 0 for losses without a bank), ``val encode s`` (encoding the
    validation queries and validation database, once per epoch), ``val mAP s`` (their mAP at
    each of the model's lengths), ``val s`` (the two together: one epoch's selection cost) and
    ``encode ms / 1000`` (encoding cost per 1,000 images, to scale to the test split).
    """
    repeats = check_positive_int(repeats, "repeats")
    variants = _check_variants(variants)
    configs = {v: _variant_config(config, v) for v in variants}
    built = {v: _setup(c, splits, refresh=False)[:2] for v, c in configs.items()}
    n_val = len(splits.val) + len(splits.val_database)
    seconds: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    for _, _, v in shuffled_rounds(variants, repeats, seed):
        model, objective = built[v]
        t0 = time.perf_counter()
        refreshed = refresh_banks(model, objective, splits.train, configs[v].batch_size)
        t1 = time.perf_counter()
        q = encode_dataset(model, splits.val)
        db = encode_dataset(model, splits.val_database)
        t2 = time.perf_counter()
        map_per_length(q, db, splits.val.labels, splits.val_database.labels, configs[v].bit_list)
        t3 = time.perf_counter()
        seconds[v].append((t1 - t0 if refreshed else 0.0, t2 - t1, t3 - t2))
    rows = []
    for v in variants:
        refresh, enc, mp = (statistics.median(s) for s in zip(*seconds[v]))
        rows.append({"variant": v, "kind": configs[v].kind, "lengths": len(configs[v].bit_list),
                     "refresh s": refresh, "val encode s": enc, "val mAP s": mp, "val s": enc + mp,
                     "encode ms / 1000": 1000 * enc / n_val * 1000})
    return pd.DataFrame(rows)


def run_costs(
    steps: pd.DataFrame,
    evaluation: pd.DataFrame,
    n_steps_per_epoch: int,
    epochs: int,
    n_test: int,
) -> pd.DataFrame:
    """Seconds one run costs, per variant, from measured parts (equal epochs for every run).

    ``steps``: :attr:`StepTimes.table`; ``evaluation``: :func:`time_evaluation` (variants
    missing there take the nested ``nhl`` row or, failing that, the first row with as many
    lengths: a nested variant evaluates like any other). Columns: ``train s / epoch``
    (steps x step cost), ``val s / epoch``, ``refresh s`` (once per run), ``run s`` (epochs x
    the two per-epoch costs + refresh), ``test encode s`` (encoding ``n_test`` query and
    database images once at the end, extrapolated from the measured encoding rate).
    """
    n_steps_per_epoch = check_positive_int(n_steps_per_epoch, "n_steps_per_epoch")
    epochs = check_positive_int(epochs, "epochs")
    n_test = check_positive_int(n_test, "n_test")
    ev = evaluation.set_index("variant")
    rows = []
    for _, s in steps.iterrows():
        v = s["variant"]
        if v in ev.index:
            e = ev.loc[v]
        else:
            nested = str(s["kind"]).startswith("nested")
            same = ev[ev["kind"].astype(str).str.startswith("nested")] if nested else ev.iloc[0:0]
            if not len(same):
                raise ValueError(f"no evaluation timing for {v!r}; time it with time_evaluation")
            e = same.iloc[0]
        train = n_steps_per_epoch * s["step ms"] / 1000
        rows.append({"variant": v, "kind": s["kind"], "train s / epoch": train,
                     "val s / epoch": float(e["val s"]), "refresh s": float(e["refresh s"]),
                     "run s": epochs * (train + float(e["val s"])) + float(e["refresh s"]),
                     "test encode s": float(e["encode ms / 1000"]) * n_test / 1e6})
    return pd.DataFrame(rows).set_index("variant")


def cost_speedups(costs: pd.DataFrame, singles: Sequence[str], nested: str = "nhl") -> pd.Series:
    """Sum over the single-length models over the nested model, for every column of
    :func:`run_costs` (and for training + validation per epoch)."""
    singles = _check_variants(singles)
    missing = [v for v in [*singles, nested] if v not in costs.index]
    if missing:
        raise ValueError(f"costs has no row for {missing}")
    cols = ["train s / epoch", "val s / epoch", "refresh s", "run s", "test encode s"]
    c = costs[cols].copy()
    c["train + val s / epoch"] = c["train s / epoch"] + c["val s / epoch"]
    total = c.loc[singles].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (total / c.loc[nested]).rename(f"{len(singles)} single-length / {nested}")


# ------------------------------------------------------------------------------ from histories
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


def _first_hit(history: pd.DataFrame, target, bits, include_eval: bool, column: str) -> float:
    if isinstance(target, Mapping):
        if not target:
            raise ValueError("target mapping is empty; give {bits: mAP} for at least one length")
        reached = None
        for b, t in target.items():
            curve = progress_curve(history, int(b), include_eval)
            ok = pd.Series(curve["val_map"].to_numpy() >= float(t), index=curve["epoch"])
            reached = ok if reached is None else (reached & ok.reindex(reached.index, fill_value=False))
        curve = progress_curve(history, None, include_eval).set_index("epoch")
        hits = reached[reached].index
        if not len(hits):
            return float("nan")
        return float(hits[0] + 1) if column == "epochs" else float(curve.loc[hits[0], "seconds"])
    curve = progress_curve(history, bits, include_eval)
    hit = np.flatnonzero(curve["val_map"].to_numpy() >= float(target))
    if not len(hit):
        return float("nan")
    return float(curve["epoch"].iloc[hit[0]] + 1) if column == "epochs" else float(curve["seconds"].iloc[hit[0]])


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
    The seconds are those recorded when the run was trained (its machine and load); to compare
    runs trained at different moments use :func:`epochs_to_target`.
    """
    return _first_hit(history, target, bits, include_eval, "seconds")


def epochs_to_target(
    history: pd.DataFrame, target: float | Mapping[int, float], bits: int | None = None
) -> float:
    """Epochs trained (1-based) until the validation mAP first reaches ``target`` (NaN if never).

    Same targets as :func:`time_to_target`; epochs do not depend on the machine's load, so
    runs cached at different moments can be compared, and multiplied by a per-epoch cost
    measured now (:func:`run_costs`).
    """
    return _first_hit(history, target, bits, False, "epochs")


def epochs_to_targets(
    nested_history: pd.DataFrame,
    single_histories: Mapping[int, pd.DataFrame],
    fraction: float = 0.95,
) -> pd.DataFrame:
    """Per length: a target both models reach and the epochs each needs to reach it.

    The target for length L is ``fraction`` times the lower of the two best validation mAPs
    (the single-length model's and the nested model's at L), so both reach it. Columns
    ``target``, ``single epochs`` (the single-length model at L), ``nested epochs`` (the nested
    model's L-bit code alone); the nested model must reach every target at one checkpoint:
    ``epochs_to_target(nested_history, table["target"].to_dict())``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if not single_histories:
        raise ValueError("single_histories is empty: give {bits: history} of the single-length runs")
    rows = []
    for bits, h in sorted(single_histories.items()):
        best_single = progress_curve(h, int(bits))["val_map"].max()
        best_nested = progress_curve(nested_history, int(bits))["val_map"].max()
        target = fraction * min(best_single, best_nested)
        rows.append({"bits": int(bits), "target": target,
                     "single epochs": epochs_to_target(h, target, bits=int(bits)),
                     "nested epochs": epochs_to_target(nested_history, target, bits=int(bits))})
    return pd.DataFrame(rows).set_index("bits")


# ------------------------------------------------------------------------------ converged studies
def converged_speedup(table: pd.DataFrame) -> pd.DataFrame:
    """The training speed-up a converged study recorded, taken apart (docs/method.md §9).

    ``table``: a study table with per-run training seconds and epochs (``results/frozen.csv``,
    ``results/fine-tune.csv``: every run trained to convergence with early stopping). Per
    dataset and method, medians over seeds of the per-seed values:

    * ``speed-up``: the K single-length runs' training seconds together over the full NHL run's
      (:func:`nhl.studies.claims.speedup`, the same runs);
    * ``per epoch``: the same ratio of seconds *per epoch*, i.e. what equal epochs would give.
      It exceeds K only if a single-length epoch cost more than a nested one (the nested model
      does the single models' work and more), so above K it measures differences in load or
      per-run overheads between the recorded runs, not a cheaper model;
    * ``epochs``: ``speed-up / per epoch`` (of the two medians, so that the columns multiply),
      per seed the singles' epochs (weighted by their cost per epoch) over the nested run's:
      above 1 when the nested run stopped earlier, the only way to a speed-up beyond K at equal
      cost per epoch;
    * ``single epochs`` (mean over the K runs), ``nested epochs``, ``K`` and ``seeds``.

    Seconds per epoch include what each run pays once (the memory-bank refresh before its first
    epoch), which the K single-length runs pay K times.
    """
    from .claims import as_recorded, trained_runs

    need = {"dataset", "method", "variant", "seed", "bits", "train s"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table needs columns {sorted(need)} (a study table such as results/frozen.csv)")
    epochs_col = "epochs trained" if "epochs trained" in table.columns else "epochs"
    if epochs_col not in table.columns:
        raise ValueError("table needs the epochs each run trained ('epochs trained' or 'epochs')")
    runs = trained_runs(as_recorded(table))
    runs = runs[runs["variant"].isin(["single", "nhl"])].copy()
    runs["s per epoch"] = runs["train s"] / runs[epochs_col]
    keys = ["dataset", "method", "seed"]
    singles = runs[runs["variant"] == "single"].groupby(keys).agg(
        total=("train s", "sum"), per_epoch=("s per epoch", "sum"),
        epochs=(epochs_col, "mean"), K=("bits", "nunique"))
    nested = runs[runs["variant"] == "nhl"].groupby(keys)[["train s", "s per epoch", epochs_col]].first()
    both = singles.join(nested, how="inner")
    if both.empty:
        raise ValueError("no dataset and method with both single-length and full NHL runs")
    per_seed = pd.DataFrame({
        "speed-up": both["total"] / both["train s"],
        "per epoch": both["per_epoch"] / both["s per epoch"],
        "single epochs": both["epochs"],
        "nested epochs": both[epochs_col],
        "K": both["K"],
    }, index=both.index)
    grouped = per_seed.groupby(["dataset", "method"])
    out = grouped.median()
    out["epochs"] = out["speed-up"] / out["per epoch"]
    out["seeds"] = grouped.size()
    out["K"] = out["K"].astype(int)
    cols = ["K", "speed-up", "per epoch", "epochs", "single epochs", "nested epochs", "seeds"]
    return out[cols].reset_index()
