"""Training cost (issue targets 4 and 5).

Target 4 - step cost: one optimiser step on the default CNN, batch 64, for a single 128-bit model,
plain nested training (uniform weights, no distillation), weighting only, distillation only and
full NHL (weighting + distillation). Same batches for all, medians over repeats.
Goals: full NHL <= 1.25x plain nested and <= 1.5x the single 128-bit model.

Target 5 - training speed-up: one nested model against the K single-length models at equal
epochs and the same selection rule (``nhl.studies.compare``), training wall time ratio and mAP per
length of each.

    python -m benchmarks.bench_train [--quick] [--epochs N] [--steps N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from benchmarks.common import machine, print_table, write_json
from nhl import experiments, studies
from nhl.config import TrainConfig
from nhl.train import build

VARIANTS = {
    "single 128-bit": dict(bit_list=(128,), weighting="uniform", distill=0.0),
    "nested plain (uniform, no D)": dict(weighting="uniform", distill=0.0),
    "nested weighting only (A)": dict(weighting="dominance", distill=0.0),
    "nested distillation only (D)": dict(weighting="uniform", distill=1.0),
    "nested full NHL (A + D)": dict(weighting="dominance", distill=1.0),
}


def step_times(config: TrainConfig, splits, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per optimiser step for each variant, on identical batches."""
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(splits.train), generator=gen)[: config.batch_size] for _ in range(steps)]
    data = [splits.train.get_batch(b) for b in batches]
    setups = {}
    for name, changes in VARIANTS.items():
        model, objective = build(config.replace(**changes), splits)
        setups[name] = (model, objective, torch.optim.Adam(model.parameters(), lr=1e-3))

    def one_pass(model, objective, opt) -> float:
        t0 = time.perf_counter()
        for x, y, idx in data:
            out = objective(model.features(x), y, idx)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            opt.step()
        return (time.perf_counter() - t0) / len(data)

    for setup in setups.values():  # warm-up
        one_pass(*setup)
    samples = {name: [] for name in setups}
    for _ in range(repeats):  # interleave the variants so drifts in machine load hit all alike
        for name, setup in setups.items():
            samples[name].append(one_pass(*setup))
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small split and short runs")
    p.add_argument("--epochs", type=int, default=None, help="epochs for the speed-up comparison")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--method", default="csq")
    args = p.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 10)
    config = TrainConfig(method=args.method, protocol="quick" if args.quick else None, epochs=epochs)
    splits = experiments.get_splits(config)

    times = step_times(config, splits, args.steps, 2 if args.quick else args.repeats)
    steps = pd.DataFrame({"variant": list(times), "ms/step": [1e3 * t for t in times.values()]})
    plain, single, full = (times[k] for k in ("nested plain (uniform, no D)", "single 128-bit", "nested full NHL (A + D)"))
    steps["x plain nested"] = [t / plain for t in times.values()]
    steps["x single 128"] = [t / single for t in times.values()]
    print_table("Target 4: one training step (default CNN, batch 64)", steps)
    ok4 = full / plain <= 1.25 and full / single <= 1.5
    print(f"full NHL / plain nested = {full / plain:.3f} (goal <= 1.25), "
          f"full NHL / single 128 = {full / single:.3f} (goal <= 1.5): {'met' if ok4 else 'NOT met'}")

    t0 = time.perf_counter()
    comparison = studies.compare(config, progress=False, force=True)
    table = comparison.table.reset_index()
    print_table(f"Target 5: one nested model vs {len(table)} single-length models, {epochs} epochs", table)
    print(f"training seconds: baselines {comparison.baseline_seconds:.1f}, nested {comparison.nested_seconds:.1f}, "
          f"speed-up {comparison.speedup:.2f}x (paper: 5-8x); compare took {time.perf_counter() - t0:.0f} s")
    result = {
        "machine": machine(),
        "config": config.to_dict(),
        "step_ms": {k: 1e3 * v for k, v in times.items()},
        "full_over_plain": full / plain,
        "full_over_single": full / single,
        "target4_met": ok4,
        "compare": table.to_dict(orient="records"),
        "baseline_seconds": comparison.baseline_seconds,
        "nested_seconds": comparison.nested_seconds,
        "speedup": comparison.speedup,
    }
    write_json("bench_train", result)
    return result


if __name__ == "__main__":
    main()
