"""nhl: the Nested Hash Layer, multi-length hash codes from one model (see METHOD.md).

Public API, by METHOD.md section:
- 1 :class:`NestedHashLayer`, :func:`binarize`
- 2 :mod:`nhl.losses` (eight base objectives)
- 3 :mod:`nhl.weighting` (dominance-aware dynamic weighting)
- 4 :mod:`nhl.distill` (long-short cascade self-distillation)
- 1-4 together: :class:`NestedObjective`
- 5 :mod:`nhl.data`, :mod:`nhl.models`, :mod:`nhl.train`, :mod:`nhl.metrics`,
  :mod:`nhl.retrieval`, :mod:`nhl.experiments`, :mod:`nhl.plots`
"""

from importlib.metadata import PackageNotFoundError, version

from . import distill, losses, weighting
from .config import TrainConfig
from .layer import DEFAULT_BITS, NestedHashLayer, binarize
from .objective import NestedObjective, NonFiniteLossError, ObjectiveOutput

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
]
