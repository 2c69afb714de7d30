"""Cached experiments: a run is named by everything that determines its result.

``run(config)`` trains (or resumes) and evaluates a :class:`~nhl.config.TrainConfig` once, then
stores the selected weights, the codes of the query and database items, the training history and
the metrics in a run folder; asking again loads them instead of retraining. The folder's key is a
hash of the config, the data split's fingerprint and the package version, so any change to those
gives a new run and nothing else does.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import TrainConfig
from .metrics import map_table
from .models import HashModel, build_model, encode_dataset
from .paths import data_dir, runs_dir
from .utils import atomic_torch_save, atomic_write, atomic_write_text

FILES = ("config.json", "model.pt", "codes.npz", "history.csv", "metrics.json")
_SPLITS: dict[tuple, object] = {}


def get_splits(config: TrainConfig, root: str | Path | None = None):
    """The data split of a config, loaded once per process and then reused."""
    from .data import load_splits

    root = Path(root) if root is not None else data_dir()
    key = (config.dataset, config.protocol, config.split_seed, str(root))
    if key not in _SPLITS:
        _SPLITS[key] = load_splits(config.dataset, root=root, protocol=config.protocol, seed=config.split_seed)
    return _SPLITS[key]


def package_version() -> str:
    from . import __version__

    return __version__


def run_key(config: TrainConfig, split_fingerprint: str, version: str | None = None) -> str:
    """Hash of config + split fingerprint + package version (what the cache is keyed on)."""
    payload = json.dumps(
        {"config": config.to_dict(), "split": split_fingerprint, "version": version or package_version()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_path(config: TrainConfig, split_fingerprint: str, root: str | Path | None = None) -> Path:
    root = Path(root) if root is not None else runs_dir()
    key = run_key(config, split_fingerprint)
    return root / config.dataset / config.method / f"{config.kind}-seed{config.seed}-{key}"


@dataclass
class RunResult:
    """A finished run, read back from its folder (codes and model are loaded on first use)."""

    config: TrainConfig
    path: Path
    history: pd.DataFrame
    metrics: dict
    cached: bool = field(default=False)

    @property
    def bit_list(self) -> tuple[int, ...]:
        return self.config.bit_list

    @cached_property
    def codes(self) -> dict[str, np.ndarray]:
        """``query``/``database`` codes (+1/-1 int8, longest length) and their labels (uint8)."""
        with np.load(self.path / "codes.npz") as z:
            bits = int(z["bits"])
            return {
                "query": _unpack(z["query"], bits),
                "database": _unpack(z["database"], bits),
                "query_labels": z["query_labels"],
                "database_labels": z["database_labels"],
            }

    def model(self) -> HashModel:
        """The model at the selected epoch, in eval mode."""
        state = torch.load(self.path / "model.pt", map_location="cpu", weights_only=True)
        in_channels = int(self.metrics["in_channels"])
        model = build_model(self.config.backbone, self.config.bit_list, in_channels=in_channels)
        model.load_state_dict(state)
        return model.eval()

    @property
    def map(self) -> dict[int, float]:
        """Tie-aware mAP@ALL per length on query vs database."""
        return {int(k): v for k, v in self.metrics["map"].items()}

    @property
    def train_seconds(self) -> float:
        return float(self.metrics["train_seconds"])

    def table(self) -> pd.DataFrame:
        """mAP per length (tie-aware and index-order) as a small table."""
        return pd.DataFrame(
            {
                "bits": list(self.bit_list),
                "mAP": [self.metrics["map"][str(b)] for b in self.bit_list],
                "mAP (index ties)": [self.metrics["map_index"][str(b)] for b in self.bit_list],
            }
        ).set_index("bits")


def _pack(codes: np.ndarray) -> np.ndarray:
    return np.packbits(codes > 0, axis=1)


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    return np.where(np.unpackbits(packed, axis=1, count=bits).astype(bool), 1, -1).astype(np.int8)


def load(path: str | Path) -> RunResult:
    """Read a finished run folder."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a finished run (missing {', '.join(missing)})")
    config = TrainConfig.from_dict(json.loads((path / "config.json").read_text()))
    metrics = json.loads((path / "metrics.json").read_text())
    return RunResult(config, path, pd.read_csv(path / "history.csv"), metrics, cached=True)


def evaluate(model: HashModel, splits, bit_list) -> tuple[dict, np.ndarray, np.ndarray]:
    """Encode query and database items and compute mAP@ALL per length in both tie modes."""
    t0 = time.perf_counter()
    q = encode_dataset(model, splits.query)
    db = encode_dataset(model, splits.database)
    encode_seconds = time.perf_counter() - t0
    ql, dbl = splits.query.labels, splits.database.labels
    t0 = time.perf_counter()
    both = map_table(q, db, ql, dbl, bit_list, ties=("average", "index"))  # one pass, two modes
    metrics = {
        "map": {str(b): float(v) for b, v in both["average"].items()},
        "map_index": {str(b): float(v) for b, v in both["index"].items()},
        "encode_seconds": encode_seconds,
        "map_seconds": time.perf_counter() - t0,
        "n_query": len(q),
        "n_database": len(db),
    }
    return metrics, q, db


def run(
    config: TrainConfig,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> RunResult:
    """Train and evaluate ``config`` once; later calls load the cached result.

    An interrupted run resumes from its last per-epoch checkpoint. ``force`` retrains.
    """
    splits = get_splits(config, data_root)
    path = run_path(config, splits.fingerprint, root)
    if not force and (path / "metrics.json").exists():
        return load(path)
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path):  # two processes asking for the same run: one trains, the other waits
        if not force and (path / "metrics.json").exists():
            return load(path)
        return _train_and_store(config, splits, path, force, progress)


@contextmanager
def _locked(path: Path):
    with open(path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_and_store(config: TrainConfig, splits, path: Path, force: bool, progress: bool) -> RunResult:
    from .train import CHECKPOINT, fit

    if force:
        for name in (*FILES, CHECKPOINT):
            (path / name).unlink(missing_ok=True)
    atomic_write_text(path / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))
    result = fit(config, splits, run_dir=path, progress=progress)
    metrics, q, db = evaluate(result.model, splits, config.bit_list)
    metrics.update(
        best_epoch=result.best_epoch,
        val_score=result.best_score,
        train_seconds=result.train_seconds,
        val_eval_seconds=result.eval_seconds,
        in_channels=splits.image_shape[0],
        split_fingerprint=splits.fingerprint,
        version=package_version(),
    )
    atomic_torch_save(result.model.state_dict(), path / "model.pt")
    atomic_write(
        path / "codes.npz",
        lambda f: np.savez_compressed(
            f,
            bits=np.int64(config.bit_list[-1]),
            query=_pack(q),
            database=_pack(db),
            query_labels=np.asarray(splits.query.labels, dtype=np.uint8),
            database_labels=np.asarray(splits.database.labels, dtype=np.uint8),
        ),
    )
    atomic_write_text(path / "history.csv", result.history.to_csv(index=False))
    atomic_write_text(path / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    (path / CHECKPOINT).unlink(missing_ok=True)
    done = load(path)
    done.cached = False
    return done


def list_runs(root: str | Path | None = None) -> pd.DataFrame:
    """One row per finished run under ``root``: its config, mAP per length and seconds."""
    root = Path(root) if root is not None else runs_dir()
    rows = []
    for metrics_file in sorted(root.glob("*/*/*/metrics.json")):
        r = load(metrics_file.parent)
        row = {"path": str(r.path), "kind": r.config.kind, **r.config.to_dict()}
        row.update({f"map_{b}": v for b, v in r.map.items()})
        row["train_seconds"] = r.train_seconds
        rows.append(row)
    return pd.DataFrame(rows)
