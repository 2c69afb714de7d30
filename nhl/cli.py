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
from .train import TrainingDivergedError
from .utils import quick_mode
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
    p.add_argument("--patience", type=_positive, default=None,
                   help="early stopping: stop after this many validation checks without improvement "
                   "(--epochs is then the maximum; default: train every epoch)")
    p.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default: the method's recorded value, see nhl.recipes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="cnn", choices=("cnn", "resnet50"))
    p.add_argument("--regime", default="scratch", choices=("scratch", "fine-tune", "frozen"),
                   help="scratch (default), fine-tune or frozen: the last two start from a pretrained "
                   "backbone (nhl's own for the small CNN; docs/method.md section 6)")
    p.add_argument("--backbone-lr", type=float, default=0.1,
                   help="fine-tune: the trunk's learning rate as a share of --lr (default 0.1)")
    p.add_argument("--distill", type=float, default=None,
                   help="lambda_D (default: the method's recorded value in the regime, nhl.recipes)")
    p.add_argument("--eval-every", type=_positive, default=1, help="validation every N epochs (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny split and 2 epochs (also NHL_QUICK=1)")
    p.add_argument("--runs", default=None, help="run cache folder (default: runs/ or $NHL_RUNS)")
    p.add_argument("--data", default=None, help="dataset folder (default: data/ or $NHL_DATA)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--amp", action="store_true", help="mixed precision for the backbone (CUDA only)")
    p.add_argument("--force", action="store_true", help="train again even if the run is cached")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    quick = args.quick or quick_mode()
    epochs = args.epochs or (QUICK_EPOCHS if quick else TrainConfig.epochs)
    protocol = args.protocol or ("quick" if quick else None)
    config = TrainConfig(
        dataset=args.dataset,
        protocol=protocol,
        method=args.method,
        bit_list=args.bits,
        epochs=epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        eval_every=args.eval_every,
        regime=args.regime,
        backbone_lr=args.backbone_lr,
        lr=args.lr,
        seed=args.seed,
        backbone=args.backbone,
        device=args.device,
        amp=args.amp,
    ).variant(args.variant)
    if args.distill is None:
        return config
    if args.variant not in ("nhl", "distill"):
        raise SystemExit(f"--distill sets lambda_D of the distilling variants (nhl, distill), not of {args.variant!r}")
    return config.replace(distill=args.distill)


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
    from .studies.catalogue import STUDIES

    st = sub.add_parser(
        "study",
        help="train a committed study's runs and write results/NAME.csv (+ .json stamp)",
        description="Train what the named studies need (in parallel) and write their tables. "
        + "; ".join(f"{s.name}: {s.what}" for s in STUDIES.values()),
    )
    st.add_argument("names", nargs="+", choices=[*STUDIES, "all", "verify"],
                    help="studies to run; 'verify NAME' re-trains a sample of a committed table's "
                    "runs from scratch and compares their numbers")
    st.add_argument("--workers", type=_positive, default=None, help="parallel runs (default: cores / threads)")
    st.add_argument("--threads", type=_positive, default=1, help="torch threads per run (default 1)")
    st.add_argument("--runs", default=None, help="run cache folder (default: runs/ or $NHL_RUNS)")
    st.add_argument("--data", default=None, help="dataset folder (default: data/ or $NHL_DATA)")
    st.add_argument("--out", default=None, help="where to write the tables (default: results/)")
    st.add_argument("--allow-dirty", action="store_true",
                    help="run although the package's code differs from its git commit (the stamp "
                    "records the diff)")
    st.add_argument("--sample", type=_positive, default=4, help="verify: runs to re-train (default 4)")
    st.add_argument("--tol", type=float, default=1e-6,
                    help="verify: largest accepted mAP difference (default 1e-6: the tables keep 6 digits)")
    st.add_argument("--datasets", default=None,
                    help="comma-separated datasets: train only their runs and replace their rows in "
                    "the existing tables (default: every dataset of the study)")
    rep = sub.add_parser("report", help="print the committed result tables as Markdown (README)")
    rep.add_argument("--results", default=None, help="results folder (default: results/)")
    rp = sub.add_parser("runs", help="list the cached runs")
    rp.add_argument("--runs", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from . import experiments

    args = parser().parse_args(argv)
    if args.command == "study":
        from .studies import catalogue, results, runner

        if args.names[0] == "verify":
            return _verify(args)
        if "verify" in args.names:
            print("error: 'verify' comes first: python -m nhl study verify NAME", file=sys.stderr)
            return 2
        names = [n for n in catalogue.STUDIES if n != "hparams"] if "all" in args.names else args.names
        command = "python -m nhl study " + " ".join(args.names)
        datasets = None if args.datasets is None else [d.strip() for d in args.datasets.split(",") if d.strip()]
        if datasets is not None:
            command += f" --datasets {','.join(datasets)}"
        try:
            runner.run_study(names, workers=args.workers, threads=args.threads, root=args.runs,
                              data_root=args.data, out=args.out, command=command, datasets=datasets,
                              allow_dirty=args.allow_dirty)
        except runner.DirtyCodeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for n in names:
            print(f"wrote {results.results_dir() if args.out is None else args.out}/{n}.csv")
        return 0
    if args.command == "report":
        from .studies.report import markdown_report

        print(markdown_report(args.results))
        return 0
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


def _verify(args: argparse.Namespace) -> int:
    """``python -m nhl study verify NAME [--sample N] [--tol T]``: exit status 1 on a difference."""
    from .studies import results, runner

    if len(args.names) != 2:
        print("error: name one committed study: python -m nhl study verify NAME", file=sys.stderr)
        return 2
    name = args.names[1]
    try:
        s = results.stamp(name, args.out)
        report = runner.verify(name, sample=args.sample, workers=args.workers, data_root=args.data,
                               folder=args.out, tol=args.tol)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = s.get("code") or {}
    print(f"results/{name}.csv: made by nhl {s.get('package_version')} at commit "
          f"{code.get('commit') or 'unknown (not recorded)'}; runs trained by "
          f"{s.get('runs trained by commit') or 'unknown commits'}")
    print(report.to_string(index=False, float_format=lambda v: f"{v:.6f}"))
    runs = report.drop_duplicates([c for c in report.columns if c not in (
        "bits", "mAP now", "mAP committed", "difference", "same")])
    missing = int(report["mAP committed"].isna().sum())
    differ = int((~report["same"]).sum()) - missing
    print(f"{len(runs)} runs re-trained: {len(report) - differ - missing} of {len(report)} numbers "
          f"reproduced (|difference| <= {args.tol:g}), {differ} differ, {missing} not in the table; "
          f"largest difference {report['difference'].abs().max():.6f}")
    return 0 if differ == 0 and missing == 0 else 1


def _run(args: argparse.Namespace, config: TrainConfig) -> int:
    from . import distributed, experiments, losses
    from .studies import grid

    kw = dict(root=args.runs, data_root=args.data, progress=not args.no_progress)
    if args.force:
        kw["force"] = True
    t0 = time.perf_counter()
    if args.command in ("train", "eval"):
        r = experiments.run(config, **kw)
        if not distributed.is_main():  # under torchrun rank 0 reports
            return 0
        print(f"run: {r.path}{' (cached)' if r.cached else ''}")
        print(r.table().to_string(float_format="{:.4f}".format))
        print(f"training {r.train_seconds:.1f} s, best epoch {r.metrics['best_epoch']}")
    elif args.command == "compare":
        print(grid.compare(config, **kw))
    else:
        methods = losses.available() if args.methods == "all" else [m.strip().lower() for m in args.methods.split(",")]
        unknown = sorted(set(methods) - set(losses.available()))
        if unknown:
            print(f"error: unknown methods {unknown}; valid: {', '.join(losses.available())}", file=sys.stderr)
            return 2
        table = grid.grid(config, methods, **kw)
        print(table.to_string(float_format="{:.4f}".format))
        print(f"average gain of NHL over the baselines: {table['gain'].mean():+.4f} mAP")
        if args.out:
            table.to_csv(args.out, index=False)
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
