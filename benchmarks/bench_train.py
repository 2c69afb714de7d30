"""Training cost (issue 12, target 1): one backward per step, a nested step close to a single one,
and the speed-up of one nested model over the K single-length models.

Part 1, step cost: one optimiser step (forward, objective, backward, Adam) on the default CNN,
batch 64, for the K single-length models and the nested variants plain / weighting (A) /
distillation (D) / full NHL (A + D), on the same batches, interleaved in a shuffled order in
every repeat (``nhl.studies.timing.measure_steps``), medians after a warm-up. Goal: A + D at most 1.10x
the single 128-bit step (CSQ, the default method); DHN (a memory-bank loss, the tutorial's
standard) is measured beside it.

Part 2, speed-up at equal epochs: the nested model and the K single-length models each train
the same epochs with the same selection rule, in alternating rounds (the six trainings of a
round in a rotated order), so both sides share the machine's load; the speed-up is
``sum_k t(single_k) / t(nested)`` of training seconds (median over rounds; also with the
per-epoch validation). Goal: at least 4.5x. Beside it the time-to-target speed-up: the time the
nested model needs until every length's validation mAP reaches the final (selected) validation
mAP of that length's single model, against the five models' total time; and the test mAP per
length of both sides.

    python -m benchmarks.bench_train [--quick] [--epochs N] [--rounds N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch

from benchmarks.common import machine, print_table, set_threads, write_json
from nhl import experiments
from nhl.config import TrainConfig
from nhl.data import map_topk
from nhl.studies import timing
from nhl.train import fit

NESTED = ("plain", "weighting", "distill", "nhl")


def step_costs(config: TrainConfig, splits, steps: int, repeats: int) -> pd.DataFrame:
    """Median ms per step of every single-length model and nested variant (interleaved)."""
    variants = [*timing.single_variants(config), *NESTED]
    times = timing.measure_steps(config, splits, variants=variants, n_steps=steps, repeats=repeats,
                                 warmup=3, refresh=True)
    table = times.table
    single = float(table.loc[table["variant"] == f"single-{config.bit_list[-1]}", "step ms"].iloc[0])
    table["x single 128"] = table["step ms"] / single
    return table


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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small split and short runs")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the speed-up comparison (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the six trainings")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 5)
    protocol = "quick" if args.quick else None
    t_start = time.perf_counter()

    steps = {}
    for method in ("csq", "dhn"):
        config = TrainConfig(method=method, protocol=protocol, device="cpu")
        splits = experiments.get_splits(config)
        steps[method] = step_costs(config, splits, args.steps, 2 if args.quick else args.repeats)
        print_table(f"Step cost, {method.upper()} (default CNN, batch 64, {threads['torch']} torch threads)",
                    steps[method])
    csq = steps["csq"].set_index("variant")
    ratio = float(csq.loc["nhl", "x single 128"])
    print(f"CSQ full NHL step / single 128-bit step = {ratio:.3f} (goal <= 1.10): "
          f"{'met' if ratio <= 1.10 else 'not met'}")

    config = TrainConfig(method="csq", protocol=protocol, epochs=epochs, device="cpu")
    splits = experiments.get_splits(config)
    alt = alternate_training(config, splits, 1 if args.quick else args.rounds)
    singles = [n for n in alt["seconds"] if n.startswith("single")]
    per_round = [sum(alt["seconds"][n][r] for n in singles) / alt["seconds"]["nested"][r]
                 for r in range(len(alt["seconds"]["nested"]))]
    with_eval = [
        sum(alt["seconds"][n][r] + alt["eval"][n][r] for n in singles)
        / (alt["seconds"]["nested"][r] + alt["eval"]["nested"][r])
        for r in range(len(per_round))
    ]
    speedup = statistics.median(per_round)
    hist = alt["histories"]
    ttt = time_to_target(hist["nested"], {int(n.split("-")[1]): hist[n] for n in singles})
    singles_total = statistics.median(
        [sum(alt["seconds"][n][r] for n in singles) for r in range(len(per_round))])
    ttt_speedup = singles_total / ttt["seconds"] if ttt["reached"] else None
    maps = []
    topk = map_topk(config.dataset)
    nested_metrics = experiments.evaluate(alt["results"]["nested"].model, splits, config.bit_list, topk=topk)[0]
    for n in singles:
        b = int(n.split("-")[1])
        single_metrics = experiments.evaluate(alt["results"][n].model, splits, (b,), topk=topk)[0]
        maps.append({"bits": b, "single mAP": single_metrics["map"][str(b)],
                     "nested mAP": nested_metrics["map"][str(b)],
                     "single train s": statistics.median(alt["seconds"][n])})
    maps = pd.DataFrame(maps)
    maps["gain"] = maps["nested mAP"] - maps["single mAP"]
    print_table(f"One nested CSQ model vs {len(singles)} single-length models, {epochs} epochs (test mAP@ALL)", maps)
    print(f"training seconds (median of {len(per_round)} alternating rounds): singles {singles_total:.1f}, "
          f"nested {statistics.median(alt['seconds']['nested']):.1f}")
    print(f"speed-up at equal epochs: {speedup:.2f}x (rounds: {', '.join(f'{s:.2f}' for s in per_round)}; "
          f"goal >= 4.5x: {'met' if speedup >= 4.5 else 'not met'}); with validation each epoch "
          f"{statistics.median(with_eval):.2f}x")
    if ttt["reached"]:
        print(f"time to target: the nested model reaches every length's single-model validation mAP at epoch "
              f"{ttt['epoch']} ({ttt['seconds']:.1f} s): {ttt_speedup:.2f}x")
    else:
        print(f"time to target: not reached within {epochs} epochs (short by {ttt['short by (best - target)']})")
    result = {
        "machine": machine(),
        "threads": threads,
        "command": "python -m benchmarks.bench_train" + (" " + " ".join(argv) if argv else ""),
        "steps": {m: t.to_dict(orient="records") for m, t in steps.items()},
        "csq_nhl_over_single128": ratio,
        "target_step_met": ratio <= 1.10,
        "dhn_nhl_over_single128": float(steps["dhn"].set_index("variant").loc["nhl", "x single 128"]),
        "epochs": epochs,
        "rounds": len(per_round),
        "train_seconds": alt["seconds"],
        "eval_seconds": alt["eval"],
        "speedup_per_round": per_round,
        "speedup": speedup,
        "speedup_with_eval": statistics.median(with_eval),
        "target_speedup_met": speedup >= 4.5,
        "time_to_target": ttt,
        "time_to_target_speedup": ttt_speedup,
        "map": maps.to_dict(orient="records"),
        "wall_seconds": time.perf_counter() - t_start,
    }
    write_json("bench_train", result)
    return result


if __name__ == "__main__":
    main()
