"""nhl: the Nested Hash Layer, multi-length hash codes from one model (see METHOD.md).

Public API, by METHOD.md section:
- 1 :class:`NestedHashLayer`, :func:`binarize`
- 2 :mod:`nhl.losses` (eight base objectives)
- 3 :mod:`nhl.weighting` (dominance-aware dynamic weighting)
- 4 :mod:`nhl.distill` (long-short cascade self-distillation)
- 1-4 together: :class:`NestedObjective`
- 5 :mod:`nhl.data`, :mod:`nhl.models`, :mod:`nhl.train`, :mod:`nhl.metrics`,
  :mod:`nhl.retrieval`, :mod:`nhl.experiments`, :mod:`nhl.plots`, :mod:`nhl.recipes`
  (per-method learning rates and loss hyper-parameters)
- 6 :mod:`nhl.studies`, :mod:`nhl.results` (the committed result tables) and
  :mod:`nhl.summaries`, :mod:`nhl.grid`, :mod:`nhl.comparisons`, :mod:`nhl.weighting_effect`,
  :mod:`nhl.timing`, :mod:`nhl.diagnostics`, :mod:`nhl.recording`, :mod:`nhl.distill_probe`,
  :mod:`nhl.search_eval`, :mod:`nhl.interleaved`, the widgets :mod:`nhl.explorer` and
  :mod:`nhl.ablation_explorer`
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
    "experiments": ("nhl.experiments", None),
    "studies": ("nhl.studies", None),
    "diagnostics": ("nhl.diagnostics", None),
    "recording": ("nhl.recording", None),
    "recipes": ("nhl.recipes", None),
    "results": ("nhl.results", None),
    "grid": ("nhl.grid", None),
    "timing": ("nhl.timing", None),
    "summaries": ("nhl.summaries", None),
    "comparisons": ("nhl.comparisons", None),
    "weighting_effect": ("nhl.weighting_effect", None),
    "distill_probe": ("nhl.distill_probe", None),
    "search_eval": ("nhl.search_eval", None),
    "interleaved": ("nhl.interleaved", None),
    "ablation_explorer": ("nhl.ablation_explorer", None),
    "explorer": ("nhl.explorer", None),
    "plots": ("nhl.plots", None),
    "tutorial": ("nhl.tutorial", None),
    "load_splits": ("nhl.data", "load_splits"),
    "fit": ("nhl.train", "fit"),
    "run": ("nhl.experiments", "run"),
    "mean_average_precision": ("nhl.metrics", "mean_average_precision"),
    "map_per_length": ("nhl.metrics", "map_per_length"),
    "precision_recall_by_radius": ("nhl.metrics", "precision_recall_by_radius"),
    "HammingIndex": ("nhl.retrieval", "HammingIndex"),
    "funnel_search": ("nhl.retrieval", "funnel_search"),
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
