"""Training cost (issue 22): all K lengths for the price of one, for every base loss.

Part 1, step cost: one optimiser step (forward, objective, backward, Adam) on the default CNN,
batch 64, for the K single-length models and the nested variants plain / weighting (A) /
distillation (D) / full NHL (A + D), on the same batches, interleaved in a shuffled order in
every repeat (``nhl.studies.timing.measure_steps``), medians after a warm-up, for each of the
eight base losses at 1 and at 2 torch threads. Goal: the full NHL step at most 1.15x the single
128-bit step for every loss. From the same repeats, the step speed-up at equal epochs,
``sum_k t(single_k) / t(nested)`` (median over repeats).

Part 2, speed-up at equal epochs, trained: for some losses (default CSQ, DPN and LCDSH; the full
set would take hours) the nested model and the K single-length models each train the same epochs
with the same selection rule, in alternating rounds (the six trainings of a round in a rotated
order), so both sides share the machine's load; the speed-up is ``sum_k t(single_k) / t(nested)``
of training seconds (median over rounds; also with the per-epoch validation). Goal: at least
4.3x for every loss (the others by their step speed-up). Beside it the time to target (the
nested model's time until every length's validation mAP reaches the selected validation mAP of
that length's single model, against the five models' total) and the test mAP per length.

    python -m benchmarks.bench_train [--quick] [--epochs N] [--rounds N] [--threads 1,2]
                                     [--methods all] [--speedup-methods csq,dpn,lcdsh]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from benchmarks.common import machine, print_table, set_threads, write_json
from nhl import experiments, losses
from nhl.config import TrainConfig
from nhl.data import map_topk
from nhl.studies import timing
from nhl.train import fit

NESTED = ("plain", "weighting", "distill", "nhl")
STEP_GOAL = 1.15
SPEEDUP_GOAL = 4.3


def step_costs(config: TrainConfig, splits, steps: int, repeats: int) -> tuple[pd.DataFrame, dict]:
    """Median ms per step of every single-length model and nested variant (interleaved), and
    the step speed-up of each nested variant over the K single-length models."""
    singles = timing.single_variants(config)
    times = timing.measure_steps(config, splits, variants=[*singles, *NESTED], n_steps=steps,
                                 repeats=repeats, warmup=3, refresh=True)
    table = times.table
    single = float(table.loc[table["variant"] == f"single-{config.bit_list[-1]}", "step ms"].iloc[0])
    table["x single 128"] = table["step ms"] / single
    speedup = times.speedup(singles, list(NESTED))
    return table, speedup.to_dict(orient="index")


def alternate_training(config: TrainConfig, splits, rounds: int) -> dict:
    """Train the nested model and its K baselines ``rounds`` times, alternating (no cache)."""
    models = {"nested": config, **{f"single-{b}": config.baseline(b) for b in config.bit_list}}
    names = list(models)
    seconds = {n: [] for n in names}
    evals = {n: [] for n in names}
    histories, results = {}, {}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            result = fit(models[name], splits, progress=False)
            seconds[name].append(result.train_seconds)
            evals[name].append(result.eval_seconds)
            histories[name], results[name] = result.history, result
    return {"seconds": seconds, "eval": evals, "histories": histories, "results": results}


def time_to_target(nested_history: pd.DataFrame, single_histories: dict[int, pd.DataFrame]) -> dict:
    """First epoch (and cumulative training seconds) at which the nested model's validation mAP
    reaches, at every length, the selected validation mAP of that length's single model."""
    targets = {b: float(h.loc[h["selected"], "val_map"].iloc[0]) for b, h in single_histories.items()}
    wide = nested_history.pivot(index="epoch", columns="bits", values="val_map")
    secs = nested_history.groupby("epoch")["train_seconds"].first().cumsum()
    hit = np.all([wide[b].to_numpy() >= t for b, t in targets.items()], axis=0)
    if not hit.any():
        short = {b: round(float(wide[b].max() - t), 4) for b, t in targets.items() if wide[b].max() < t}
        return {"reached": False, "targets": targets, "short by (best - target)": short}
    epoch = int(wide.index[np.argmax(hit)])
    return {"reached": True, "targets": targets, "epoch": epoch, "seconds": float(secs.loc[epoch])}


def trained_speedup(config: TrainConfig, rounds: int) -> dict:
    """Part 2 for one loss: alternating trainings, speed-up, time to target, test mAP."""
    splits = experiments.get_splits(config)
    alt = alternate_training(config, splits, rounds)
    singles = [n for n in alt["seconds"] if n.startswith("single")]
    n_rounds = len(alt["seconds"]["nested"])
    per_round = [sum(alt["seconds"][n][r] for n in singles) / alt["seconds"]["nested"][r]
                 for r in range(n_rounds)]
    with_eval = [
        sum(alt["seconds"][n][r] + alt["eval"][n][r] for n in singles)
        / (alt["seconds"]["nested"][r] + alt["eval"]["nested"][r])
        for r in range(n_rounds)
    ]
    hist = alt["histories"]
    ttt = time_to_target(hist["nested"], {int(n.split("-")[1]): hist[n] for n in singles})
    singles_total = statistics.median([sum(alt["seconds"][n][r] for n in singles) for r in range(n_rounds)])
    topk = map_topk(config.dataset)
    nested_metrics = experiments.evaluate(alt["results"]["nested"].model, splits, config.bit_list, topk=topk)[0]
    maps = []
    for n in singles:
        b = int(n.split("-")[1])
        single_metrics = experiments.evaluate(alt["results"][n].model, splits, (b,), topk=topk)[0]
        maps.append({"bits": b, "single mAP": single_metrics["map"][str(b)],
                     "nested mAP": nested_metrics["map"][str(b)],
                     "single train s": statistics.median(alt["seconds"][n])})
    maps = pd.DataFrame(maps)
    maps["gain"] = maps["nested mAP"] - maps["single mAP"]
    speedup = statistics.median(per_round)
    return {
        "epochs": config.epochs,
        "rounds": n_rounds,
        "train_seconds": alt["seconds"],
        "eval_seconds": alt["eval"],
        "speedup_per_round": per_round,
        "speedup": speedup,
        "speedup_with_eval": statistics.median(with_eval),
        "met": speedup >= SPEEDUP_GOAL,
        "time_to_target": ttt,
        "time_to_target_speedup": singles_total / ttt["seconds"] if ttt["reached"] else None,
        "singles_seconds": singles_total,
        "map": maps.to_dict(orient="records"),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small split and short runs")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the speed-up comparison (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the six trainings")
    p.add_argument("--steps", type=int, default=20, help="batches per variant and repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the step costs")
    p.add_argument("--threads", default="1,2", help="torch thread counts of the step costs")
    p.add_argument("--methods", default="all", help="losses of the step costs ('all' or a list)")
    p.add_argument("--speedup-methods", default="csq,dpn,lcdsh",
                   help="losses trained in alternating rounds (part 2)")
    args = p.parse_args(argv)
    methods = losses.available() if args.methods == "all" else args.methods.split(",")
    trained = [m for m in args.speedup_methods.split(",") if m]
    thread_counts = [int(t) for t in args.threads.split(",")]
    epochs = args.epochs or (2 if args.quick else 5)
    protocol = "quick" if args.quick else None
    repeats = 2 if args.quick else args.repeats
    t_start = time.perf_counter()

    steps, summary = {}, []
    for threads in thread_counts:
        set_threads(threads)
        for method in methods:
            config = TrainConfig(method=method, protocol=protocol, device="cpu")
            splits = experiments.get_splits(config)
            table, speedup = step_costs(config, splits, args.steps, repeats)
            steps[f"{method}, {threads} thread(s)"] = table.to_dict(orient="records")
            ratio = float(table.set_index("variant").loc["nhl", "x single 128"])
            summary.append({"method": method, "threads": threads,
                            "single 128 ms": float(table.set_index("variant").loc["single-128", "step ms"]),
                            "full NHL ms": float(table.set_index("variant").loc["nhl", "step ms"]),
                            "full NHL / single 128": ratio, "step goal met": ratio <= STEP_GOAL,
                            "step speed-up, full NHL": speedup["nhl"]["median"],
                            "step speed-up, plain": speedup["plain"]["median"]})
            print_table(f"Step cost, {method.upper()} (default CNN, batch 64, {threads} torch thread(s))", table)
    print_table("Full NHL step / single 128-bit step, per loss and thread count", summary)

    default_threads = set_threads(max(thread_counts))
    speedups = {}
    for method in trained:
        config = TrainConfig(method=method, protocol=protocol, epochs=epochs, device="cpu")
        speedups[method] = r = trained_speedup(config, 1 if args.quick else args.rounds)
        print_table(f"One nested {method.upper()} model vs 5 single-length models, {epochs} epochs "
                    "(test mAP@ALL)", r["map"])
        print(f"{method}: speed-up at equal epochs {r['speedup']:.2f}x (rounds "
              f"{', '.join(f'{x:.2f}' for x in r['speedup_per_round'])}; goal >= {SPEEDUP_GOAL}x: "
              f"{'met' if r['met'] else 'not met'}); with validation {r['speedup_with_eval']:.2f}x")
    result = {
        "machine": machine(),
        "threads": default_threads,
        "thread_counts": thread_counts,
        "command": "python -m benchmarks.bench_train" + (" " + " ".join(argv) if argv else ""),
        "repeats": repeats,
        "step_goal": STEP_GOAL,
        "speedup_goal": SPEEDUP_GOAL,
        "steps": steps,
        "summary": summary,
        "speedups": speedups,
        "wall_seconds": time.perf_counter() - t_start,
    }
    write_json("bench_train", result)
    return result


if __name__ == "__main__":
    main()
