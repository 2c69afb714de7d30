"""DPN: Deep Polarized Network (Fan et al., IJCAI 2020), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch

from .base import HashLoss, check_nonnegative, check_pm1_matrix, concat_prefixes, prefix_means
from .prefix import prefix_targets
from .targets import (
    check_p,
    concat_label_targets,
    dpn_targets,
    label_targets,
    make_generator,
    random_sign_vector,
)


class DPNLoss(HashLoss):
    """Polarisation (hinge) loss towards random per-class +-1 targets.

        mean max(0, m - u * t)

    on the raw outputs u, t the sample's target: its class's target vector, which has
    int(p * bits) entries -1; for several labels the sign of the sum of their targets, zeros
    filled from the fixed ``tie_break`` vector (the same rule as CSQ).

    Hyper-parameters: ``m`` (margin, default 1), ``p`` (share of -1 entries, default 0.5),
    ``targets`` (C x bits, +-1; default drawn by :func:`~nhl.losses.targets.dpn_targets`),
    ``tie_break`` (bits,) +-1, ``seed`` (default 0). :func:`nhl.losses.build_nested` passes
    prefixes of one long set of targets here. Buffers: ``targets``, ``tie_break``.

    DPN's adaptive target update (which needs a memory bank) is not implemented, so this loss
    has no bank; the public code's bank was written but only read by that variant.
    """

    name = "dpn"
    defaults = {"m": 1.0, "p": 0.5, "targets": None, "tie_break": None, "seed": 0}

    targets: torch.Tensor
    tie_break: torch.Tensor

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.m = check_nonnegative(self.hyper["m"], "m")
        self.p = self.hyper["p"]
        check_p(self.p)
        gen = make_generator(self.hyper["seed"])
        targets = self.hyper["targets"]
        if targets is None:
            targets = dpn_targets(self.n_classes, self.bits, self.p, gen)
        targets = check_pm1_matrix(targets, "targets", (self.n_classes, self.bits))
        tie = self.hyper["tie_break"]
        tie = random_sign_vector(self.bits, gen) if tie is None else tie
        self.register_buffer("targets", targets)
        self.register_buffer("tie_break", check_pm1_matrix(tie, "tie_break", (self.bits,)))

    def targets_for(self, y: torch.Tensor) -> torch.Tensor:
        """Per-sample +-1 targets (B x bits) for multi-hot labels y."""
        return label_targets(y, self.targets.to(y), self.tie_break.to(y))

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return (self.m - u * self.targets_for(y)).clamp_min(0).mean()

    @classmethod
    def nested_terms(cls, losses, outputs, y, idx):
        """The K lengths' losses in one elementwise pass over the outputs side by side."""
        u, y, idx = losses[-1].check_inputs(outputs[-1], y, idx)
        U, avg = concat_prefixes(outputs)
        T = concat_label_targets(y, [f.targets for f in losses], [f.tie_break for f in losses])
        m = torch.cat([U.new_full((o.shape[1],), f.m) for f, o in zip(losses, outputs)])
        return list(((m - U * T).clamp_min(0).sum(0) @ avg).unbind(0))

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        With prefix targets (``build_nested(..., nested_targets=True)``, the default) every
        length's target is a prefix of the longest's, so the hinge ``max(0, m - u t)`` is one
        elementwise pass over ``h``; its derivative is ``-t`` where ``m - u t >= 0``, times
        ``1 / (B L_k)`` on length k's first L_k columns. ``None`` for other targets.
        """
        if not prefix_targets(losses, ("targets", "tie_break")):
            return None
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        t = last.targets_for(y)
        W = prefix_means(bits, h.shape[0], h.device, h.dtype)  # (K, L_K)
        if all(f.m == last.m for f in losses):  # one margin (the usual case)
            margin = last.m - h * t
            g = torch.where(margin >= 0, -t, 0.0)
            return W @ margin.clamp_min(0).sum(0), W[:, None, :] * g
        m = h.new_tensor([f.m for f in losses])[:, None, None]
        margin = m - h * t  # (K, B, L_K)
        return (W[:, None, :] * margin.clamp_min(0)).sum((1, 2)), W[:, None, :] * torch.where(margin >= 0, -t, 0.0)
