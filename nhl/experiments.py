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
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import TrainConfig
from .data import cached_splits, map_topk
from .metrics import map_table
from .models import HashModel, build_model, encode_dataset
from .utils import atomic_torch_save, atomic_write, atomic_write_text, code_state, runs_dir

FILES = ("config.json", "model.pt", "codes.npz", "history.csv", "metrics.json")
_LOADED_CODE: dict | None = None


def loaded_code() -> dict:
    """:func:`nhl.utils.code_state` as it was when this process first asked, i.e. (in a study
    worker, which asks when it loads) the code the process runs: a commit made while a long study
    is training does not relabel the runs of code loaded before it."""
    global _LOADED_CODE
    if _LOADED_CODE is None:
        _LOADED_CODE = code_state()
    return _LOADED_CODE


def get_splits(config: TrainConfig, root: str | Path | None = None):
    """The data split of a config, loaded once per process and then reused
    (:func:`nhl.data.cached_splits`)."""
    return cached_splits(config.dataset, root=root, protocol=config.protocol, seed=config.split_seed)


def package_version() -> str:
    from . import __version__

    return __version__


def run_key(config: TrainConfig, split_fingerprint: str, version: str | None = None) -> str:
    """Hash of config + the recipe values it resolves to + split fingerprint + package version.

    The recipe values are included so that a config with ``lr=None`` names a new run when the
    recorded learning rate (:mod:`nhl.recipes`) changes.
    """
    payload = json.dumps(
        {
            "config": config.identity(),
            "recipe": config.resolved(),
            "split": split_fingerprint,
            "version": version or package_version(),
        },
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

    @property
    def topk(self) -> int | None:
        """The dataset's mAP cut-off K (``None`` when only mAP@ALL is reported)."""
        return self.metrics.get("topk")

    @property
    def map_at(self) -> dict[int, float]:
        """Tie-aware mAP@K per length (K = :attr:`topk`); mAP@ALL when there is no cut-off."""
        if self.topk is None:
            return self.map
        return {int(k): v for k, v in self.metrics["map_at"].items()}

    def table(self) -> pd.DataFrame:
        """mAP per length (tie-aware and index-order; also @K where the dataset has a K)."""
        cols = {
            "bits": list(self.bit_list),
            "mAP": [self.metrics["map"][str(b)] for b in self.bit_list],
            "mAP (index ties)": [self.metrics["map_index"][str(b)] for b in self.bit_list],
        }
        if self.topk is not None:
            k = self.topk
            cols[f"mAP@{k}"] = [self.metrics["map_at"][str(b)] for b in self.bit_list]
            cols[f"mAP@{k} (index ties)"] = [self.metrics["map_at_index"][str(b)] for b in self.bit_list]
        return pd.DataFrame(cols).set_index("bits")


def _pack(codes: np.ndarray) -> np.ndarray:
    return np.packbits(codes > 0, axis=1)


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    return np.where(np.unpackbits(packed, axis=1, count=bits).astype(bool), 1, -1).astype(np.int8)


class DamagedRunError(ValueError):
    """A run folder whose files are missing, truncated or unreadable; names the folder and file."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"run folder {path} is damaged: {problem}")


def _check_codes(path: Path) -> None:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"bits", "query", "database", "query_labels", "database_labels"} - set(z.files)
            if missing:
                raise DamagedRunError(path.parent, f"codes.npz lacks {sorted(missing)}")
            bits, q, db = int(z["bits"]), z["query"], z["database"]
            width = (bits + 7) // 8
            if q.ndim != 2 or db.ndim != 2 or q.shape[1] != width or db.shape[1] != width:
                raise DamagedRunError(path.parent, f"codes.npz holds codes of the wrong shape for {bits} bits")
            if len(z["query_labels"]) != len(q) or len(z["database_labels"]) != len(db):
                raise DamagedRunError(path.parent, "codes.npz: labels and codes have different lengths")
    except DamagedRunError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as err:
        raise DamagedRunError(path.parent, f"codes.npz cannot be read ({type(err).__name__}: {err})") from err


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise DamagedRunError(path.parent, f"{path.name} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise DamagedRunError(path.parent, f"{path.name} does not hold a JSON object")
    return value


def load(path: str | Path) -> RunResult:
    """Read a finished run folder, checking every file.

    Raises ``FileNotFoundError`` when the folder holds no finished run (no ``metrics.json``)
    and :class:`DamagedRunError` (naming the folder and what is wrong) when a file is missing,
    truncated or unreadable: unreadable JSON, a truncated ``codes.npz`` or ``model.pt``, a
    history that does not parse. :func:`run` retrains such a run with a warning.
    """
    path = Path(path)
    if not (path / "metrics.json").exists():
        raise FileNotFoundError(f"{path} is not a finished run (no metrics.json)")
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise DamagedRunError(path, f"missing {', '.join(missing)}")
    try:
        config = TrainConfig.from_dict(_read_json(path / "config.json"))
    except (TypeError, ValueError) as err:
        if isinstance(err, DamagedRunError):
            raise
        raise DamagedRunError(path, f"config.json does not describe a run ({err})") from err
    metrics = _read_json(path / "metrics.json")
    needed = {"map", "map_index", "train_seconds", "in_channels", "best_epoch"}
    if needed - set(metrics):
        raise DamagedRunError(path, f"metrics.json lacks {sorted(needed - set(metrics))}")
    try:
        history = pd.read_csv(path / "history.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DamagedRunError(path, f"history.csv cannot be read ({err})") from err
    if history.empty or not {"epoch", "bits"} <= set(history.columns):
        raise DamagedRunError(path, "history.csv holds no training history")
    _check_codes(path / "codes.npz")
    try:
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickled objects, ...: all mean "do not trust it"
        raise DamagedRunError(path, f"model.pt cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DamagedRunError(path, "model.pt does not hold a model state")
    return RunResult(config, path, history, metrics, cached=True)


def evaluate(
    model: HashModel, splits, bit_list, topk: int | None = None, device: str | torch.device | None = None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Encode query and database items and compute mAP@ALL per length in both tie modes.

    ``device``: where the codes are computed (the model is moved there and back).
    With ``topk`` (the dataset's convention, :func:`nhl.data.map_topk`: 1000 for
    ``fashion-mnist-100``, 5000 for ``fashion-mnist-multilabel``) mAP@topk is computed too and
    stored as ``map_at`` / ``map_at_index`` with ``topk`` beside it.
    """
    t0 = time.perf_counter()
    home = next(model.parameters()).device
    if device is not None:  # codes on the device, metrics on the CPU
        model.to(device)
    q = encode_dataset(model, splits.query)
    db = encode_dataset(model, splits.database)
    model.to(home)
    encode_seconds = time.perf_counter() - t0
    ql, dbl = splits.query.labels, splits.database.labels
    t0 = time.perf_counter()
    both = map_table(q, db, ql, dbl, bit_list, ties=("average", "index"))  # one pass, two modes
    metrics = {
        "map": {str(b): float(v) for b, v in both["average"].items()},
        "map_index": {str(b): float(v) for b, v in both["index"].items()},
        "topk": topk,
    }
    if topk is not None:
        at = map_table(q, db, ql, dbl, bit_list, topk=topk, ties=("average", "index"))
        metrics["map_at"] = {str(b): float(v) for b, v in at["average"].items()}
        metrics["map_at_index"] = {str(b): float(v) for b, v in at["index"].items()}
    metrics.update({
        "encode_seconds": encode_seconds,
        "map_seconds": time.perf_counter() - t0,
        "n_query": len(q),
        "n_database": len(db),
    })
    return metrics, q, db


def run(
    config: TrainConfig,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    fit_options: dict | None = None,
) -> RunResult:
    """Train and evaluate ``config`` once; later calls load the cached result.

    An interrupted run resumes from its last per-epoch checkpoint. ``force`` retrains.
    ``fit_options`` (e.g. ``step_callback``, ``track_gradients``, ``prebuilt``) go to
    :func:`nhl.train.fit` when the run is trained here; they must not change the result.
    """
    from . import distributed

    splits = get_splits(config, data_root)
    path = run_path(config, splits.fingerprint, root)
    if distributed.launched_by_torchrun() or distributed.is_active():
        return _run_distributed(config, splits, path, force, progress, fit_options or {})
    if not force:
        cached = cached_or_damaged(path)
        if cached is not None:
            return cached
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path):  # two processes asking for the same run: one trains, the other waits
        damaged = False
        if not force:
            cached = cached_or_damaged(path)
            if cached is not None:
                return cached
            damaged = (path / "metrics.json").exists()  # cached_or_damaged warned about it
        return _train_and_store(config, splits, path, force or damaged, progress, fit_options or {})


def _run_distributed(config, splits, path: Path, force: bool, progress: bool, fit_options: dict) -> RunResult:
    """:func:`run` under torchrun: rank 0 decides (cached or not) and writes the run folder,
    every process trains its share (:mod:`nhl.distributed`); all return the stored run.

    The run folder must be on a file system every process sees (one machine, or a shared
    ``runs/``)."""
    from . import distributed
    from .devices import resolve_device

    distributed.init_from_env(resolve_device(config.device))
    cached = None if force or not distributed.is_main() else cached_or_damaged(path)
    state = distributed.broadcast_object(
        "cached" if cached is not None else ("damaged" if (path / "metrics.json").exists() else "train")
    )
    if state == "cached":
        distributed.barrier()
        return cached if cached is not None else load(path)
    if distributed.is_main():
        path.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    result = _train_and_store(config, splits, path, force or state == "damaged", progress, fit_options)
    distributed.barrier()  # rank 0 has written the folder
    return result if distributed.is_main() else load(path)


def cached_run(
    config: TrainConfig, root: str | Path | None = None, data_root: str | Path | None = None
) -> RunResult | None:
    """The finished run of ``config`` in the cache at ``root``, or None; never trains.

    A damaged run folder counts as missing, with a warning (:func:`run` trains it again)."""
    splits = get_splits(config, data_root)
    return cached_or_damaged(run_path(config, splits.fingerprint, root))


def cached_or_damaged(path: Path) -> RunResult | None:
    """The finished run at ``path``; None when there is none or it is damaged (with a warning:
    the caller retrains it)."""
    if not (path / "metrics.json").exists():
        return None
    try:
        return load(path)
    except DamagedRunError as err:
        warnings.warn(f"{err}; training it again", stacklevel=3)
        return None


@contextmanager
def _locked(path: Path):
    with open(path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_and_store(
    config: TrainConfig, splits, path: Path, force: bool, progress: bool, fit_options: dict
) -> RunResult:
    from . import distributed
    from .train import CHECKPOINT, fit

    main = distributed.is_main()
    if force and main:
        for name in (*FILES, CHECKPOINT):
            (path / name).unlink(missing_ok=True)
    if main:
        atomic_write_text(path / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))
    distributed.barrier()
    result = fit(config, splits, run_dir=path, progress=progress, **fit_options)
    if not main:  # rank 0 evaluates and writes the folder
        return None
    from .devices import resolve_device

    device = distributed.local_device(resolve_device(config.device))
    metrics, q, db = evaluate(result.eval_model, result.eval_splits, config.bit_list,
                              topk=map_topk(config.dataset), device=device)
    metrics.update(
        best_epoch=result.best_epoch,
        epochs_trained=result.epochs_trained,
        val_score=result.best_score,
        train_seconds=result.train_seconds,
        val_eval_seconds=result.eval_seconds,
        in_channels=splits.image_shape[0],
        split_fingerprint=splits.fingerprint,
        version=package_version(),
        code=loaded_code(),  # the commit that trained it, and whether the code differed from it
        regime=config.regime,
    )
    if config.regime != "scratch":
        metrics["pretrain"] = _pretrain_info(config, splits)
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


def _pretrain_info(config: TrainConfig, splits) -> dict:
    """Where a pretrained regime's backbone comes from (recorded in the run's metrics)."""
    if config.backbone != "cnn":
        return {"source": "ImageNet (torchvision ResNet50_Weights.IMAGENET1K_V2)"}
    from .regimes import pretrained_backbone

    return pretrained_backbone(splits, progress=False)[1]


def list_runs(root: str | Path | None = None) -> pd.DataFrame:
    """One row per finished run under ``root``: its config, mAP per length and seconds."""
    root = Path(root) if root is not None else runs_dir()
    rows = []
    for metrics_file in sorted(root.glob("*/*/*/metrics.json")):
        try:
            r = load(metrics_file.parent)
        except DamagedRunError as err:
            warnings.warn(f"{err}; skipped", stacklevel=2)
            continue
        row = {"path": str(r.path), "kind": r.config.kind, **r.config.to_dict()}
        row.update({f"map_{b}": v for b, v in r.map.items()})
        row["train_seconds"] = r.train_seconds
        rows.append(row)
    return pd.DataFrame(rows)
