"""Command line: ``python -m nhl {train,eval,compare,grid,runs}``.

Every command names runs by their full config and reuses cached results (see
:mod:`nhl.experiments`). ``--quick`` (or ``NHL_QUICK=1``) shrinks data and epochs for smoke runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .config import VARIANTS, TrainConfig
from .layer import DEFAULT_BITS
from .paths import quick_mode
from .train import TrainingDivergedError
from .validation import check_bit_list

QUICK_EPOCHS = 2


def _bits(text: str) -> tuple[int, ...]:
    try:
        return check_bit_list(int(t) for t in text.split(",") if t.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--bits expects comma-separated lengths like 8,16,32: {err}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _config_args(p: argparse.ArgumentParser) -> None:
    from . import losses

    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    p.add_argument("--protocol", default=None, help="split protocol (default: the dataset's)")
    p.add_argument("--method", default="csq", type=str.lower, choices=losses.available(), help="base loss")
    p.add_argument("--bits", type=_bits, default=DEFAULT_BITS, help="code lengths, e.g. 8,16,32,64,128")
    p.add_argument("--variant", default="nhl", choices=sorted(VARIANTS), help="nested ablation variant")
    p.add_argument("--epochs", type=_positive, default=None, help="epochs (default 15; quick: 2)")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="cnn", choices=("cnn", "resnet50"))
    p.add_argument("--quick", action="store_true", help="tiny split and 2 epochs (also NHL_QUICK=1)")
    p.add_argument("--runs", default=None, help="run cache folder (default: runs/ or $NHL_RUNS)")
    p.add_argument("--data", default=None, help="dataset folder (default: data/ or $NHL_DATA)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    quick = args.quick or quick_mode()
    epochs = args.epochs or (QUICK_EPOCHS if quick else TrainConfig.epochs)
    protocol = args.protocol or ("quick" if quick else None)
    return TrainConfig(
        dataset=args.dataset,
        protocol=protocol,
        method=args.method,
        bit_list=args.bits,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        backbone=args.backbone,
    ).variant(args.variant)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nhl", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in [
        ("train", "train (or load) one model and print its mAP per length"),
        ("eval", "print the metrics of a cached run (trains it first if missing)"),
        ("compare", "one nested model against the K single-length baselines"),
        ("grid", "compare for several base methods (the paper's main table)"),
    ]:
        sp = sub.add_parser(name, help=text, description=text)
        _config_args(sp)
        if name == "grid":
            sp.add_argument("--methods", default="all", help="comma-separated methods or 'all'")
            sp.add_argument("--out", default=None, help="also write the table to this CSV file")
    rp = sub.add_parser("runs", help="list the cached runs")
    rp.add_argument("--runs", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from . import experiments

    args = parser().parse_args(argv)
    if args.command == "runs":
        table = experiments.list_runs(args.runs)
        print(table.to_string() if not table.empty else "no cached runs")
        return 0
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, config)
    except (ValueError, TypeError, FileNotFoundError) as err:  # bad input: say what and how to fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, config: TrainConfig) -> int:
    from . import experiments, losses, studies

    kw = dict(root=args.runs, data_root=args.data, progress=not args.no_progress)
    t0 = time.perf_counter()
    if args.command in ("train", "eval"):
        r = experiments.run(config, **kw)
        print(f"run: {r.path}{' (cached)' if r.cached else ''}")
        print(r.table().to_string(float_format="{:.4f}".format))
        print(f"training {r.train_seconds:.1f} s, best epoch {r.metrics['best_epoch']}")
    elif args.command == "compare":
        print(studies.compare(config, **kw))
    else:
        methods = losses.available() if args.methods == "all" else [m.strip().lower() for m in args.methods.split(",")]
        unknown = sorted(set(methods) - set(losses.available()))
        if unknown:
            print(f"error: unknown methods {unknown}; valid: {', '.join(losses.available())}", file=sys.stderr)
            return 2
        table = studies.grid(config, methods, **kw)
        print(table.to_string(float_format="{:.4f}".format))
        print(f"average gain of NHL over the baselines: {table['gain'].mean():+.4f} mAP")
        if args.out:
            table.to_csv(args.out, index=False)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
