"""The base hashing objectives of docs/method.md §2, one loss object per code length.

``build(name, bits, n_classes, n_train, **hyper)`` makes one loss; ``build_nested(name,
bit_list, ...)`` makes one per length of a nested layer, with CSQ centers / DPN targets that are
prefixes of each other by default. ``available()`` lists the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..validation import check_bit_list, check_choice
from . import targets
from .base import HashLoss, MemoryBank, pairwise_similarity
from .csq import CSQLoss
from .dbdh import DBDHLoss
from .dch import DCHLoss
from .dhn import DHNLoss
from .dpn import DPNLoss
from .dsh import DSHLoss
from .dtsh import DTSHLoss
from .lcdsh import LCDSHLoss

__all__ = [
    "CSQLoss",
    "DBDHLoss",
    "DCHLoss",
    "DHNLoss",
    "DPNLoss",
    "DSHLoss",
    "DTSHLoss",
    "HashLoss",
    "LCDSHLoss",
    "MemoryBank",
    "LOSSES",
    "available",
    "build",
    "build_nested",
    "pairwise_similarity",
    "targets",
]

LOSSES: dict[str, type[HashLoss]] = {
    cls.name: cls
    for cls in (DSHLoss, DHNLoss, DPNLoss, CSQLoss, DTSHLoss, DCHLoss, DBDHLoss, LCDSHLoss)
}

# hyper-parameter holding a method's per-class +-1 targets, for the center-based methods
_TARGET_KEY = {"csq": "centers", "dpn": "targets"}


def available() -> list[str]:
    """Names of the implemented objectives, sorted (lowercase)."""
    return sorted(LOSSES)


def _lookup(name: str) -> type[HashLoss]:
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string such as 'csq', got {name!r}")
    key = name.lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are: {', '.join(available())}")
    return LOSSES[key]


def build(name: str, bits: int, n_classes: int, n_train: int, **hyper: Any) -> HashLoss:
    """One loss object for one code length; ``name`` is case-insensitive."""
    return _lookup(name)(bits, n_classes, n_train, **hyper)


def _length_seed(seed: int, bits: int) -> int:
    """Seed for length ``bits`` when targets are drawn independently (same for any bit_list)."""
    return seed * 1_000_003 + bits


def build_nested(
    name: str,
    bit_list: Sequence[int],
    n_classes: int,
    n_train: int,
    nested_targets: bool = True,
    seed: int = 0,
    center_design: str = "auto",
    **hyper: Any,
) -> nn.ModuleList:
    """One loss per length of ``bit_list`` (each with its own bank / centers), as a ModuleList.

    For CSQ and DPN, ``nested_targets`` decides how the per-class targets of the lengths relate:

    * ``True`` (default): they are built once for the longest length
      (:func:`targets.nested_csq_centers`, :func:`targets.nested_dpn_targets`, and one
      multi-label tie-break vector) and each shorter loss gets their prefix. The nested layer's
      short code *is* the prefix of the long one, so prefix targets are the only choice that
      does not ask the shared bits to move towards two different targets at once
      (docs/method.md §2). An explicit ``centers=`` / ``targets=`` of shape (C, L_K) is
      sliced the same way. ``center_design`` picks CSQ's construction (``"auto"``,
      ``"hadamard"``, ``"sylvester"``, ``"random"``; see :func:`targets.nested_csq_centers`).
    * ``False``: each length draws its own (the public reference code's behaviour), from a seed
      derived from ``seed`` and the length. Kept for the comparison in the tutorial.

    Everything is deterministic from ``seed`` (a private ``torch.Generator``; the global RNG is
    not used). Other methods ignore ``nested_targets``; ``hyper`` goes to every loss.
    """
    cls = _lookup(name)
    bits = check_bit_list(bit_list)
    check_choice(center_design, targets.CENTER_DESIGNS, "center_design")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    key = _TARGET_KEY.get(cls.name)
    if key is None:
        return nn.ModuleList(cls(b, n_classes, n_train, **hyper) for b in bits)
    if not nested_targets:
        if hyper.get(key) is not None or hyper.get("tie_break") is not None:
            raise ValueError(
                f"explicit {key}/tie_break with nested_targets=False: build each length with "
                f"build({name!r}, bits, ...) instead, or use nested_targets=True to slice them"
            )
        return nn.ModuleList(
            cls(b, n_classes, n_train, seed=_length_seed(seed, b), **hyper) for b in bits
        )
    gen = targets.make_generator(seed)
    full = hyper.pop(key, None)
    if full is not None:
        full = torch.as_tensor(full)
    else:
        if cls.name == "csq":
            full = targets.nested_csq_centers(n_classes, bits, gen, design=center_design)
        else:
            full = targets.nested_dpn_targets(n_classes, bits, hyper.get("p", 0.5), gen)
    tie = hyper.pop("tie_break", None)
    tie = targets.random_sign_vector(bits[-1], gen) if tie is None else torch.as_tensor(tie)
    if full.shape[-1] != bits[-1] or tie.shape[-1] != bits[-1]:
        raise ValueError(
            f"{key} and tie_break for build_nested must have {bits[-1]} columns (the longest "
            f"length), got {tuple(full.shape)} and {tuple(tie.shape)}"
        )
    return nn.ModuleList(
        cls(b, n_classes, n_train, seed=seed, **{key: full[:, :b], "tie_break": tie[:b]}, **hyper)
        for b in bits
    )
