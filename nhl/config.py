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

from .layer import DEFAULT_BITS
from .validation import check_bit_list, check_choice, check_positive_int

VARIANTS = {
    # name: (weighting, distill) -- the paper's ablation grid (METHOD.md sections 3-4)
    "nhl": ("dominance", 1.0),
    "plain": ("uniform", 0.0),
    "weighting": ("dominance", 0.0),
    "distill": ("uniform", 1.0),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that affects a run's numbers.

    ``bit_list`` with one length is the single-length baseline (weighting and distillation then
    have nothing to act on). ``hyper`` holds base-loss hyper-parameters as ``(name, value)`` pairs.
    ``protocol`` ``None`` is the dataset's default split protocol. ``seed`` drives the model's
    initialisation, the class targets and the batch order; ``split_seed`` the data split, so
    several training seeds can share one split.
    """

    dataset: str = "fashion-mnist"
    protocol: str | None = None
    method: str = "csq"
    bit_list: tuple[int, ...] = DEFAULT_BITS
    weighting: str | tuple[float, ...] = "dominance"
    distill: float = 1.0
    distill_mode: str = "adjacent"
    detach_teacher: bool = True
    beta: float = 1.0
    norm: str = "own"
    nested_targets: bool = True
    backbone: str = "cnn"
    pretrained: bool = False
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    split_seed: int = 0
    eval_every: int = 1
    hyper: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bit_list", check_bit_list(self.bit_list))
        if isinstance(self.weighting, str):
            check_choice(self.weighting, ("dominance", "uniform"), "weighting")
        else:
            object.__setattr__(self, "weighting", tuple(float(w) for w in self.weighting))
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.eval_every, "eval_every")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.hyper, dict):
            object.__setattr__(self, "hyper", tuple(sorted(self.hyper.items())))
        object.__setattr__(self, "hyper", tuple((str(k), v) for k, v in self.hyper))

    @property
    def nested(self) -> bool:
        return len(self.bit_list) > 1

    @property
    def kind(self) -> str:
        """Short label: ``nested-<variant>`` or ``single-<bits>``."""
        if not self.nested:
            return f"single-{self.bit_list[0]}"
        for name, (w, d) in VARIANTS.items():
            if self.weighting == w and self.distill == d:
                return f"nested-{name}"
        return "nested-custom"

    def replace(self, **changes: Any) -> TrainConfig:
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


def baselines(config: TrainConfig, bits: Sequence[int] | None = None) -> list[TrainConfig]:
    """The single-length baselines of a nested config, one per length."""
    return [config.baseline(b) for b in (bits or config.bit_list)]
