"""Run configuration: everything that determines a training run's result, in one frozen record.

The experiment cache (:mod:`nhl.experiments`) names a run by a hash of this record, the data
split's fingerprint and the package version, so changing any of them means a new run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .devices import check_device, runtime_key
from .layer import DEFAULT_BITS
from .losses import available as available_losses
from .losses.targets import CENTER_DESIGNS
from .recipes import distill_strength, recipe
from .regimes import check_regime
from .validation import check_bit_list, check_choice, check_positive_int

BANK_REFRESH = ("epoch", "start", "none")

VARIANTS = {
    # name: (weighting, distill) -- the paper's ablation grid (docs/method.md §3-4); distill
    # None is the method's recorded lambda_D in the config's regime (nhl.recipes.DISTILL)
    "nhl": ("dominance", None),
    "plain": ("uniform", 0.0),
    "weighting": ("dominance", 0.0),
    "distill": ("uniform", None),
}


#: Fields added to :class:`TrainConfig` after runs were cached, with the default that means
#: "as before": a config at that default keeps the cache key it had.
LATER_FIELDS: dict[str, Any] = {"patience": None, "regime": "scratch", "backbone_lr": 0.1}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that affects a run's numbers.

    ``bit_list`` with one length is the single-length baseline (weighting and distillation then
    have nothing to act on).

    ``lr`` ``None`` (default) and base-loss hyper-parameters not named in ``hyper`` take the
    method's recorded values (:mod:`nhl.recipes`, chosen on the validation split);
    :attr:`learning_rate` and :attr:`loss_hyper` give what training actually uses. ``hyper``
    holds overrides as ``(name, value)`` pairs (a dict is accepted).
    ``center_design``: construction of nested CSQ centres (see
    :func:`nhl.losses.targets.nested_csq_centers`); other methods ignore it.
    ``bank_refresh``: when memory-bank losses (DSH, DHN, DBDH) get their bank written from the
    current network: ``"start"`` (default: the whole bank before the first epoch, so no batch
    ever compares with an empty or foreign bank), ``"epoch"`` (before every epoch) or ``"none"``
    (only as batches are seen, the reference code's behaviour; an empty bank row is ignored).
    ``device``: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string; ``amp``: mixed
    precision for the backbone on CUDA (:mod:`nhl.devices`). Only the device *type* and ``amp``
    are part of a run's identity (:meth:`identity`): a CPU run keeps its cache key.
    ``protocol`` ``None`` is the dataset's default split protocol. ``seed`` drives the model's
    initialisation, the class targets and the batch order; ``split_seed`` the data split, so
    several training seeds can share one split.
    ``patience``: early stopping (docs/method.md §6). ``None`` (default) trains ``epochs``
    epochs; a number stops training once that many validation checks (every ``eval_every``
    epochs) in a row have not improved the selection score, ``epochs`` being the maximum. The
    same rule serves single-length and nested models.
    ``regime``: ``"scratch"`` (default), ``"fine-tune"`` or ``"frozen"`` (:mod:`nhl.regimes`,
    docs/method.md §6): the last two start from a pretrained backbone (nhl's own for the small
    CNN, ImageNet weights for ``resnet50``); fine-tune trains its trunk at ``backbone_lr``
    times the learning rate, frozen trains only the neck and the hash layer on cached features.
    ``distill`` ``None`` (default) is the method's recorded lambda_D in the regime
    (:data:`nhl.recipes.DISTILL`), resolved when the config is made; :meth:`replace` resolves
    it again when the method or regime changes.
    """

    dataset: str = "fashion-mnist"
    protocol: str | None = None
    method: str = "csq"
    bit_list: tuple[int, ...] = DEFAULT_BITS
    weighting: str | tuple[float, ...] = "dominance"
    distill: float | None = None
    distill_mode: str = "adjacent"
    detach_teacher: bool = True
    beta: float = 1.0
    norm: str = "own"
    nested_targets: bool = True
    center_design: str = "auto"
    bank_refresh: str = "start"
    backbone: str = "cnn"
    pretrained: bool = False
    epochs: int = 15
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 1e-5
    seed: int = 0
    split_seed: int = 0
    eval_every: int = 1
    hyper: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    device: str = "auto"
    amp: bool = False
    patience: int | None = None
    regime: str = "scratch"
    backbone_lr: float = 0.1

    def __post_init__(self) -> None:
        check_regime(self.regime)
        if not (isinstance(self.backbone_lr, (int, float)) and 0 < self.backbone_lr <= 1):
            raise ValueError(f"backbone_lr must be a ratio in (0, 1], got {self.backbone_lr!r}")
        object.__setattr__(self, "_distill_default", self.distill is None)
        if self.distill is None:
            method = str(self.method).lower()
            check_choice(method, available_losses(), "method")
            object.__setattr__(self, "distill", distill_strength(method, self.regime))
        if not (isinstance(self.distill, (int, float)) and self.distill >= 0):
            raise ValueError(f"distill must be a number >= 0 (or None for the recipe's), got {self.distill!r}")
        object.__setattr__(self, "distill", float(self.distill))
        object.__setattr__(self, "bit_list", check_bit_list(self.bit_list))
        if isinstance(self.weighting, str):
            check_choice(self.weighting, ("dominance", "uniform"), "weighting")
        else:
            object.__setattr__(self, "weighting", tuple(float(w) for w in self.weighting))
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.eval_every, "eval_every")
        if self.patience is not None:
            check_positive_int(self.patience, "patience")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0 (or None for the method's recorded value), got {self.lr!r}")
        check_choice(self.center_design, CENTER_DESIGNS, "center_design")
        check_choice(self.bank_refresh, BANK_REFRESH, "bank_refresh")
        object.__setattr__(self, "device", check_device(self.device))
        if not isinstance(self.amp, bool):
            raise TypeError(f"amp must be True or False, got {self.amp!r}")
        check_choice(str(self.method).lower(), available_losses(), "method")
        object.__setattr__(self, "method", str(self.method).lower())
        if isinstance(self.hyper, dict):
            object.__setattr__(self, "hyper", tuple(sorted(self.hyper.items())))
        object.__setattr__(self, "hyper", tuple((str(k), v) for k, v in self.hyper))

    @property
    def learning_rate(self) -> float:
        """The learning rate training uses: ``lr``, or the method's recorded one."""
        return float(self.lr) if self.lr is not None else recipe(self.method).lr

    @property
    def loss_hyper(self) -> dict[str, Any]:
        """Base-loss hyper-parameters training uses: the recorded ones updated by ``hyper``."""
        return {**recipe(self.method).hyper_dict, **dict(self.hyper)}

    def resolved(self) -> dict[str, Any]:
        """The recipe values this config trains with (part of the run cache key)."""
        return {"lr": self.learning_rate, "hyper": sorted([k, v] for k, v in self.loss_hyper.items())}

    @property
    def nested(self) -> bool:
        return len(self.bit_list) > 1

    @property
    def kind(self) -> str:
        """Short label: ``nested-<variant>`` or ``single-<bits>``."""
        if not self.nested:
            return f"single-{self.bit_list[0]}"
        for name, (w, d) in VARIANTS.items():
            if d is None:
                d = distill_strength(self.method, self.regime)
            if self.weighting == w and self.distill == d:
                return f"nested-{name}"
        return "nested-custom"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; a recipe lambda_D (``distill`` left at None) follows a new
        method or regime."""
        if getattr(self, "_distill_default", False) and "distill" not in changes:
            changes["distill"] = None
        return dataclasses.replace(self, **changes)

    def baseline(self, bits: int) -> TrainConfig:
        """The single-length baseline of this config at ``bits`` (same everything else)."""
        return self.replace(bit_list=(bits,), weighting="uniform", distill=0.0)

    def variant(self, name: str) -> TrainConfig:
        """One of the ablation variants: ``nhl``, ``plain``, ``weighting``, ``distill``."""
        check_choice(name, VARIANTS, "variant")
        w, d = VARIANTS[name]
        return self.replace(weighting=w, distill=d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bit_list"] = list(self.bit_list)
        d["hyper"] = [list(p) for p in self.hyper]
        if not isinstance(self.weighting, str):
            d["weighting"] = list(self.weighting)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(known)}")
        d = dict(d)
        for key in ("bit_list", "weighting"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        if "hyper" in d:
            d["hyper"] = tuple(tuple(p) for p in d["hyper"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def identity(self) -> dict[str, Any]:
        """What names this run's result: every field but ``device``/``amp``, plus the device
        type and amp where they are not the CPU in float32 (:func:`nhl.devices.runtime_key`).
        Fields added since runs were first cached (:data:`LATER_FIELDS`) count only where they
        differ from their default, so earlier runs keep their cache keys."""
        d = self.to_dict()
        d.pop("device")
        d.pop("amp")
        for name, default in LATER_FIELDS.items():
            if d.get(name) == default:
                d.pop(name)
        runtime = runtime_key(self.device, self.amp)
        if runtime:
            d["runtime"] = runtime
        return d


def baselines(config: TrainConfig, bits: Sequence[int] | None = None) -> list[TrainConfig]:
    """The single-length baselines of a nested config, one per length."""
    return [config.baseline(b) for b in (bits or config.bit_list)]
