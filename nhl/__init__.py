"""nhl: the Nested Hash Layer, multi-length hash codes from one model.

The method (docs/method.md §1-5), imported with ``nhl``:

- :class:`NestedHashLayer`, :func:`binarize` (§1); :mod:`nhl.losses`, eight base objectives (§2);
  :mod:`nhl.weighting`, dominance-aware dynamic weighting (§3); :mod:`nhl.distill`, long-short
  cascade self-distillation (§4); :class:`NestedObjective`, all of it in one backward pass (§5).

Training and evaluation, loaded on first use (``nhl.train``, ``nhl.metrics``...):
:mod:`nhl.config`, :mod:`nhl.recipes`, :mod:`nhl.models`, :mod:`nhl.regimes` (scratch,
fine-tune, frozen; the pretrained backbone), :mod:`nhl.train`, :mod:`nhl.experiments` (§6); :mod:`nhl.metrics`, :mod:`nhl.retrieval`, :mod:`nhl.storage` (§7);
:mod:`nhl.data` (§8); :mod:`nhl.devices`, :mod:`nhl.distributed`; :mod:`nhl.diagnostics`
(per-length gradients and their conflicts).

Beside the method, never imported by it: :mod:`nhl.plots` (figures), :mod:`nhl.studies` (the
committed studies and their analysis, §9) and :mod:`nhl.tutorial` (the notebooks' setup and
widgets).
"""

from importlib.metadata import PackageNotFoundError, version

from . import distill, losses, weighting
from .config import TrainConfig
from .layer import DEFAULT_BITS, NestedHashLayer, binarize
from .objective import NestedObjective, NonFiniteLossError, ObjectiveOutput

# Submodules and names loaded on first use (``nhl.metrics``, ``nhl.mean_average_precision``...),
# so ``import nhl`` stays light.
_LAZY = {
    "data": ("nhl.data", None),
    "models": ("nhl.models", None),
    "train": ("nhl.train", None),
    "metrics": ("nhl.metrics", None),
    "retrieval": ("nhl.retrieval", None),
    "storage": ("nhl.storage", None),
    "experiments": ("nhl.experiments", None),
    "diagnostics": ("nhl.diagnostics", None),
    "recipes": ("nhl.recipes", None),
    "regimes": ("nhl.regimes", None),
    "devices": ("nhl.devices", None),
    "distributed": ("nhl.distributed", None),
    "load_splits": ("nhl.data", "load_splits"),
    "fit": ("nhl.train", "fit"),
    "run": ("nhl.experiments", "run"),
    "mean_average_precision": ("nhl.metrics", "mean_average_precision"),
    "map_per_length": ("nhl.metrics", "map_per_length"),
    "precision_recall_by_radius": ("nhl.metrics", "precision_recall_by_radius"),
    "HammingIndex": ("nhl.retrieval", "HammingIndex"),
    "funnel_search": ("nhl.retrieval", "funnel_search"),
    "keyed_search": ("nhl.retrieval", "keyed_search"),
    "rescore": ("nhl.retrieval", "rescore"),
    "inner_product_search": ("nhl.retrieval", "inner_product_search"),
    "build_model": ("nhl.models", "build_model"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        return value if attr is None else getattr(value, attr)
    raise AttributeError(f"module 'nhl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


try:
    __version__ = version("nhl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_BITS",
    "NestedHashLayer",
    "NestedObjective",
    "NonFiniteLossError",
    "ObjectiveOutput",
    "TrainConfig",
    "binarize",
    "distill",
    "losses",
    "weighting",
    "__version__",
    *_LAZY,
]
