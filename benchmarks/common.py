"""Shared helpers for the benchmark scripts: timing, codes, tables, JSON results.

* :func:`median_times` times several callables interleaved (so a change of machine load hits
  all of them alike) and reports the median of the repeats.
* :func:`load_codes` reads trained codes from ``--codes PATH.npz`` or makes synthetic clustered
  codes of the same shape, labelled as such in every table and JSON file.
* :func:`print_table`, :func:`write_json` (to ``benchmarks/results/NAME.json``) and
  :func:`machine` (what the numbers were measured on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- timing


def timings(
    fns: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Median wall-clock and CPU seconds of each callable over ``repeats`` interleaved rounds
    after ``warmup`` untimed rounds: ``{name: {"wall": s, "cpu": s, "wall_min": s}}``.

    CPU time (``time.process_time``, all threads of this process) is less affected by other
    jobs on a shared machine than wall time; for multi-threaded contenders it sums the threads.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "wall": statistics.median(wall[name]),
            "cpu": statistics.median(cpu[name]),
            "wall_min": min(wall[name]),
        }
        for name in fns
    }


def set_threads(threads: int) -> dict[str, int]:
    """Use ``threads`` threads in torch, faiss and numba (nhl's compiled search and funnel
    spread their queries over numba's threads); returns what each library reports back."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    out = {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        out["numba"] = numba.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return out


def with_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``n`` faiss (OpenMP) and numba threads, the previous counts restored
    afterwards (nhl's compiled search and funnel spread their queries over numba's threads,
    :func:`nhl.retrieval.search_threads`)."""
    import faiss
    import numba

    def run():
        old, old_nb = faiss.omp_get_max_threads(), numba.get_num_threads()
        faiss.omp_set_num_threads(n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        try:
            return fn()
        finally:
            faiss.omp_set_num_threads(old)
            numba.set_num_threads(old_nb)

    return run


def median_times(
    fns: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall-clock seconds of each callable over ``repeats`` interleaved rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of one callable."""
    return median_times({"fn": fn}, repeats, warmup)["fn"]


# --------------------------------------------------------------------------- machine, output


def machine() -> dict[str, object]:
    """Where the numbers come from: CPU, cores, load, library versions, the code's commit."""
    import faiss
    import scipy
    import torch

    import nhl
    from nhl.utils import code_state

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        load = None
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": load,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": getattr(faiss, "__version__", "unknown"),
        "faiss_threads": faiss.omp_get_max_threads(),
        "nhl": nhl.__version__,
        "code": {k: v for k, v in code_state().items() if k != "diff"},  # the commit measured
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(title: str, table: pd.DataFrame | Mapping | list) -> None:
    """Print a titled table (a DataFrame, or anything DataFrame() accepts)."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    print(f"\n== {title}")
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def write_json(name: str, payload: Mapping) -> Path:
    """Write ``payload`` to ``benchmarks/results/NAME.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"\nwrote {path}")
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# --------------------------------------------------------------------------- codes


@dataclass
class Codes:
    """+-1 ``int8`` codes (N x 128) with multi-hot ``uint8`` labels, and where they came from."""

    query_codes: np.ndarray
    db_codes: np.ndarray
    query_labels: np.ndarray
    db_labels: np.ndarray
    source: str  # "synthetic ..." or the .npz path

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic")

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "synthetic": self.synthetic,
            "n_query": int(self.query_codes.shape[0]),
            "n_db": int(self.db_codes.shape[0]),
            "bits": int(self.db_codes.shape[1]),
            "n_classes": int(self.db_labels.shape[1]),
        }


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--codes``, ``--quick``, ``--repeats``, ``--seed``: the options every script takes."""
    parser.add_argument(
        "--codes",
        type=Path,
        default=None,
        help="npz with query_codes, db_codes, query_labels, db_labels (+-1 int8 codes), or a "
        "run folder / codes.npz of nhl.experiments; default: synthetic clustered codes",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and faiss threads on both sides (default 1)"
    )
    return parser


def synthetic_codes(
    n_query: int = 1000,
    n_db: int = 69_000,
    bits: int = 128,
    n_classes: int = 10,
    seed: int = 0,
) -> Codes:
    """Clustered codes: one random +-1 centre per class; every item flips each bit of its
    class centre with a class-specific probability in [0.1, 0.3] (so classes are unequally
    easy, and short prefixes tie heavily, as trained codes do)."""
    rng = np.random.default_rng(seed)
    centres = rng.choice(np.array([-1, 1], np.int8), size=(n_classes, bits))
    flip = rng.uniform(0.1, 0.3, size=n_classes)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, n)
        codes = centres[y].copy()
        codes[rng.random((n, bits)) < flip[y, None]] *= -1
        return codes, np.eye(n_classes, dtype=np.uint8)[y]

    q, ql = draw(n_query)
    db, dl = draw(n_db)
    source = f"synthetic ({n_classes} class centres, per-class bit flips 0.1-0.3, seed {seed})"
    return Codes(q, db, ql, dl, source)


def load_codes(args: argparse.Namespace, n_query: int = 1000, n_db: int = 69_000) -> Codes:
    """Codes from ``args.codes`` if given, else :func:`synthetic_codes` of the same shape.

    ``args.codes``: an npz with ``query_codes, db_codes`` (+-1 or 0/1) and ``query_labels,
    db_labels``; or a run folder / ``codes.npz`` of ``nhl.experiments`` (packed ``query,
    database, bits`` and labels). Labels may be multi-hot (N x C) or integer class ids (N,).
    """
    path = getattr(args, "codes", None)
    if path is None:
        return synthetic_codes(n_query, n_db, seed=getattr(args, "seed", 0))
    path = Path(path)
    if path.is_dir():  # a run folder of nhl.experiments
        path = path / "codes.npz"
    with np.load(path) as data:
        files = set(data.files)
        if {"query", "database", "bits"} <= files:  # packed codes as nhl.experiments stores them
            bits = int(data["bits"])
            q = np.unpackbits(data["query"], axis=1, count=bits)
            db = np.unpackbits(data["database"], axis=1, count=bits)
            ql, dl = data["query_labels"], data["database_labels"]
        else:
            missing = {"query_codes", "db_codes", "query_labels", "db_labels"} - files
            if missing:
                raise SystemExit(f"{path} lacks the arrays {sorted(missing)}")
            q, db = data["query_codes"], data["db_codes"]
            ql, dl = data["query_labels"], data["db_labels"]
    if ql.ndim == 1:
        n_classes = int(max(ql.max(), dl.max())) + 1
        ql, dl = np.eye(n_classes, dtype=np.uint8)[ql], np.eye(n_classes, dtype=np.uint8)[dl]
    q = np.where(np.asarray(q) > 0, 1, -1).astype(np.int8)
    db = np.where(np.asarray(db) > 0, 1, -1).astype(np.int8)
    return Codes(q, db, ql.astype(np.uint8), dl.astype(np.uint8), str(path))


def flipped_centre_codes(
    n_query: int = 1000,
    n_db: int = 69_000,
    bits: int = 128,
    n_classes: int = 10,
    flip: float = 0.3,
    seed: int = 0,
) -> Codes:
    """Codes that do not collapse: one random +-1 centre per class, every item flips each bit
    of its centre independently with probability ``flip`` (30 %: ties are rare at 128 bits)."""
    rng = np.random.default_rng(seed)
    centres = rng.choice(np.array([-1, 1], np.int8), size=(n_classes, bits))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, n)
        codes = centres[y].copy()
        codes[rng.random((n, bits)) < flip] *= -1
        return codes, np.eye(n_classes, dtype=np.uint8)[y]

    q, ql = draw(n_query)
    db, dl = draw(n_db)
    source = f"class centres with {flip:.0%} of bits flipped ({n_classes} classes, seed {seed})"
    return Codes(q, db, ql, dl, source)


#: Trained runs the benchmarks use (loaded from the run cache, trained there if missing).
TRAINED = {
    "csq": {"method": "csq"},  # Fashion-MNIST, nested CSQ, 15 epochs (collapses: many ties)
    "dhn": {"method": "dhn"},  # Fashion-MNIST, nested DHN, 15 epochs
    "csq100": {"dataset": "fashion-mnist-100", "method": "csq", "epochs": 5},  # 100 classes
}


def trained_codes(name: str) -> Codes:
    """Codes of a trained run of :data:`TRAINED` (``nhl.experiments.run``: cached or trained
    once, sharing the run cache and its lock with any other job)."""
    from nhl import experiments
    from nhl.config import TrainConfig

    config = TrainConfig(**TRAINED[name])
    result = experiments.run(config, progress=False)
    c = result.codes
    source = f"trained {config.dataset} {config.method} ({name}): runs/{'/'.join(result.path.parts[-3:])}"
    ql, dl = c["query_labels"], c["database_labels"]
    if ql.ndim == 1:
        n_classes = int(max(ql.max(), dl.max())) + 1
        ql, dl = np.eye(n_classes, dtype=np.uint8)[ql], np.eye(n_classes, dtype=np.uint8)[dl]
    return Codes(c["query"], c["database"], ql.astype(np.uint8), dl.astype(np.uint8), source)


def code_set(name: str, args: argparse.Namespace, n_query: int, n_db: int) -> Codes:
    """``centres`` (:func:`flipped_centre_codes`), ``synthetic``, ``file`` (``--codes``) or a
    trained run of :data:`TRAINED`."""
    if name == "centres":
        return flipped_centre_codes(n_query, n_db, seed=getattr(args, "seed", 0))
    if name == "synthetic":
        return synthetic_codes(n_query, n_db, seed=getattr(args, "seed", 0))
    if name == "file":
        return load_codes(args, n_query, n_db)
    return trained_codes(name)


def nearest_ties(codes: Codes, n: int = 200) -> float:
    """Mean number of database items tied at the nearest distance (first ``n`` queries): how
    much the codes collapse (counting is cheap when it is large)."""
    from nhl.metrics import hamming_distances

    d = hamming_distances(codes.query_codes[:n], codes.db_codes)
    return float(np.mean((d == d.min(axis=1, keepdims=True)).sum(axis=1)))
