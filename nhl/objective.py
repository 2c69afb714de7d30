"""The nested training objective: base losses per length + weighting + distillation.

Ties METHOD.md sections 1-4 together. For one batch of backbone features it returns the total
``sum_k w_k (loss_k + lambda_D SP_k)`` to backpropagate and a record of what happened (per-length
losses, weights, whether the dominance rule rescaled anything, gradient cosines on overlaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .distill import MODES, cascade_loss
from .layer import NestedHashLayer
from .validation import check_choice
from .weighting import NORMS, dominance_alphas, overlap_cosines, weights_from_alphas

WEIGHTINGS = ("dominance", "uniform")


class NonFiniteLossError(FloatingPointError):
    """A per-length loss term became NaN or infinite; names the length and the term."""

    def __init__(self, bits: int, term: str, value: float):
        self.bits, self.term, self.value = bits, term, value
        super().__init__(
            f"the {term} term of the {bits}-bit code became non-finite ({value}); "
            "lower the learning rate, check the inputs for NaN, or lower the loss weights"
        )


@dataclass
class ObjectiveOutput:
    """What :class:`NestedObjective` returns for one batch."""

    total: torch.Tensor
    losses: torch.Tensor  # (K,) base loss per length (detached)
    distill: torch.Tensor  # (K,) SP term per length (detached, last is 0)
    weights: torch.Tensor  # (K,) the constants used
    alphas: torch.Tensor | None = None  # (K, K) pairwise scalings when weighting="dominance"
    cosines: torch.Tensor | None = None  # (K, K) gradient cosines on overlap rows
    anti_domination: bool = False  # whether any alpha_ij < 1 in this batch
    grads: torch.Tensor | None = field(default=None, repr=False)  # (K, L_K, d) when kept

    def as_dict(self, bit_list: Sequence[int]) -> dict[str, float]:
        """Flat record for logging: ``loss_8``, ``weight_8``, ``distill_8``, ... per length."""
        out: dict[str, float] = {"total": float(self.total.detach()), "anti_domination": float(self.anti_domination)}
        for k, bits in enumerate(bit_list):
            out[f"loss_{bits}"] = float(self.losses[k])
            out[f"distill_{bits}"] = float(self.distill[k])
            out[f"weight_{bits}"] = float(self.weights[k])
        return out


class NestedObjective(nn.Module):
    """``sum_k w_k (loss_k + lambda_D SP_k)`` for a :class:`NestedHashLayer`.

    Args:
        layer: the nested hash layer whose ``weight`` is shared by every length.
        losses: one base loss module per length (e.g. ``nhl.losses.build_nested(...)``).
        weighting: ``"dominance"`` (METHOD.md section 3), ``"uniform"`` (all ones) or a sequence
            of K fixed weights.
        distill: lambda_D; 0 turns distillation off (METHOD.md section 4).
        distill_mode: ``"adjacent"`` (the method), ``"longest"`` or ``"all_pairs"``.
        detach_teacher: stop the teacher's gradient (the method) or not (an ablation).
        beta, norm: parameters of the dominance rule (``norm="shortest"`` is the public code's).
        track_gradients: also compute the per-length gradients (and their overlap cosines) when
            the weighting does not need them, for diagnostics.

    The per-length gradients are taken with ``torch.autograd.grad`` with respect to the layer's
    full output ``h_K`` and turned into gradients for ``W`` as ``(dL/dh)^T z`` with detached
    features: only the hash layer is differentiated, whatever the backbone or feature width.
    """

    def __init__(
        self,
        layer: NestedHashLayer,
        losses: Sequence[nn.Module],
        weighting: str | Sequence[float] = "dominance",
        distill: float = 1.0,
        distill_mode: str = "adjacent",
        detach_teacher: bool = True,
        beta: float = 1.0,
        norm: str = "own",
        track_gradients: bool = False,
    ):
        super().__init__()
        if not isinstance(layer, NestedHashLayer):
            raise TypeError(f"layer must be a NestedHashLayer, got {type(layer).__name__}")
        self.layer = layer
        self.bit_list = layer.bit_list
        K = len(self.bit_list)
        losses = list(losses)
        if len(losses) != K:
            raise ValueError(f"need one loss per length: {K} lengths {self.bit_list}, got {len(losses)} losses")
        self.losses = nn.ModuleList(losses)
        if isinstance(weighting, str):
            check_choice(weighting, WEIGHTINGS, "weighting")
            self.fixed_weights = None
        else:
            w = torch.as_tensor(list(weighting), dtype=torch.float32)
            if w.shape != (K,) or not torch.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"fixed weights must be {K} finite non-negative numbers, got {list(weighting)}")
            self.fixed_weights = w
            weighting = "fixed"
        self.weighting = weighting
        if not (isinstance(distill, (int, float)) and distill >= 0):
            raise ValueError(f"distill (lambda_D) must be a number >= 0, got {distill!r}")
        self.distill = float(distill)
        self.distill_mode = check_choice(distill_mode, MODES, "distill_mode")
        self.detach_teacher = bool(detach_teacher)
        self.beta = float(beta)
        self.norm = check_choice(norm, NORMS, "norm")
        self.track_gradients = bool(track_gradients)

    def per_length_gradients(
        self, objectives: Sequence[torch.Tensor], h: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """``g_k = d objective_k / dW`` for every k, stacked (K, L_K, d); rows beyond L_k are 0."""
        zd = z.detach()
        grads = []
        for obj in objectives:
            (dh,) = torch.autograd.grad(obj, h, retain_graph=True, allow_unused=True)
            dh = torch.zeros_like(h) if dh is None else dh
            grads.append(dh.T @ zd)
        return torch.stack(grads)

    def forward(self, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> ObjectiveOutput:
        """Objective for one batch of features ``z`` (B x d), labels ``y`` (B x C), ids ``idx``."""
        h = self.layer.project(z)
        outputs = self.layer.split(h)
        K = len(outputs)
        base = [loss(u, y, idx) for loss, u in zip(self.losses, outputs)]
        if self.distill > 0 and K > 1:
            sp = cascade_loss(outputs, mode=self.distill_mode, detach_teacher=self.detach_teacher)
        else:
            sp = [h.new_zeros(()) for _ in outputs]
        self._check_finite(base, "base loss")
        self._check_finite(sp, "distillation")
        objectives = [b + self.distill * s for b, s in zip(base, sp)]

        need_grads = self.weighting == "dominance" or self.track_gradients
        grads = self.per_length_gradients(objectives, h, z) if need_grads and h.requires_grad else None
        alphas = cosines = None
        if self.weighting == "dominance" and grads is not None:
            alphas = dominance_alphas(grads, self.bit_list, beta=self.beta, norm=self.norm)
            weights = weights_from_alphas(alphas)
        elif self.weighting == "fixed":
            weights = self.fixed_weights.to(h.device, h.dtype)
        else:
            weights = h.new_ones(K)
        if grads is not None:
            cosines = overlap_cosines(grads, self.bit_list)
        weights = weights.detach()
        total = torch.stack(objectives).mul(weights).sum()
        return ObjectiveOutput(
            total=total,
            losses=torch.stack(base).detach(),
            distill=torch.stack(sp).detach(),
            weights=weights,
            alphas=alphas,
            cosines=cosines,
            anti_domination=bool(alphas is not None and (alphas < 1).any()),
            grads=grads if self.track_gradients else None,
        )

    def _check_finite(self, terms: Sequence[torch.Tensor], name: str) -> None:
        values = torch.stack([t.detach() for t in terms])
        bad = ~torch.isfinite(values)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise NonFiniteLossError(self.bit_list[k], name, float(values[k]))
