"""The nested training objective: base losses per length + weighting + distillation.

Ties docs/method.md §1-5 together. For one batch of backbone features it returns the total
``sum_k w_k (loss_k + lambda_D SP_k)`` to backpropagate and a record of what happened (per-length
losses, weights, whether the dominance rule rescaled anything, gradient cosines on overlaps).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from . import distributed
from .distill import MODES, cascade_loss, student_gradients
from .layer import NestedHashLayer
from .losses.base import HashLoss
from .validation import check_choice
from .weighting import (
    NORMS,
    dominance_rule,
    inner_products_from_outputs,
    overlap_cosines,
    overlap_inner_products,
    weights_from_alphas,
)

WEIGHTINGS = ("dominance", "uniform")

#: Use the closed-form per-length gradients of :meth:`NestedObjective.closed_form` where the
#: losses offer them; ``False`` differentiates the losses with autograd (the reference path).
USE_CLOSED_FORM = True


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
    anti_domination: bool = False  # whether any alpha_ij < 1 in this batch
    grads: torch.Tensor | None = field(default=None, repr=False)  # (K, L_K, d) when kept
    bit_list: tuple[int, ...] = ()
    _dh: torch.Tensor | None = field(default=None, repr=False)  # (K, B, L_K) d objective_k / dh
    _z: torch.Tensor | None = field(default=None, repr=False)  # (B, d) detached features
    _cosines: torch.Tensor | None = field(default=None, repr=False)

    @property
    def cosines(self) -> torch.Tensor | None:
        """(K, K) cosines of the per-length gradients on their overlap rows, where they were
        measured (dominance weighting or ``track_gradients``); computed on first access."""
        if self._cosines is None and self._dh is not None:
            grads = self.grads if self.grads is not None else torch.einsum("kbl,bd->kld", self._dh, self._z)
            self._cosines = overlap_cosines(grads, self.bit_list)
        return self._cosines

    def as_dict(self, bit_list: Sequence[int]) -> dict[str, float]:
        """Flat record for logging: ``loss_8``, ``weight_8``, ``distill_8``, ... per length."""
        out: dict[str, float] = {"total": float(self.total.detach()), "anti_domination": float(self.anti_domination)}
        for k, bits in enumerate(bit_list):
            out[f"loss_{bits}"] = float(self.losses[k])
            out[f"distill_{bits}"] = float(self.distill[k])
            out[f"weight_{bits}"] = float(self.weights[k])
        return out


@dataclass
class _Terms:
    """One batch's per-length terms: base losses and distillation terms (K each), their
    detached sums ``values`` (K,), the differentiable ``objectives`` (autograd path only) and
    ``dh`` = d objective_k / dh (K, B, L_K) where computed."""

    base: torch.Tensor | list[torch.Tensor]
    sp: torch.Tensor | list[torch.Tensor]
    values: torch.Tensor
    objectives: list[torch.Tensor] | None
    dh: torch.Tensor | None


class NestedObjective(nn.Module):
    """``sum_k w_k (loss_k + lambda_D SP_k)`` for a :class:`NestedHashLayer`.

    Args:
        layer: the nested hash layer whose ``weight`` is shared by every length.
        losses: one base loss module per length (e.g. ``nhl.losses.build_nested(...)``).
        weighting: ``"dominance"`` (docs/method.md §3), ``"uniform"`` (all ones) or a sequence
            of K fixed weights.
        distill: lambda_D; 0 turns distillation off (docs/method.md §4).
        distill_mode: ``"adjacent"`` (the method), ``"longest"`` or ``"all_pairs"``.
        detach_teacher: stop the teacher's gradient (the method) or not (an ablation).
        beta, norm: parameters of the dominance rule (``norm="shortest"`` is the public code's).
        track_gradients: also compute the per-length gradients (and their overlap cosines) when
            the weighting does not need them, for diagnostics.

    The per-length gradients come from one backward pass through the losses with respect to the
    layer's prefix outputs ``h_k`` (:meth:`output_gradients`) and are turned into gradients for
    ``W`` as ``(dL/dh)^T z`` with detached features: only the hash layer is differentiated,
    whatever the backbone or feature width, and the backbone is backpropagated once per step.
    Wherever the base loss offers them (every built-in loss; docs/method.md §5) they come from
    the loss's own ``nested_gradients`` instead (:meth:`closed_form`): all K lengths at once, by
    formula or one batched backward pass, without a loss graph.
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
        if not (isinstance(beta, (int, float)) and beta >= 0):
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.norm = check_choice(norm, NORMS, "norm")
        self.track_gradients = bool(track_gradients)

    def per_length_gradients(
        self, objectives: Sequence[torch.Tensor], h: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """``g_k = d objective_k / dW`` for every k, stacked (K, L_K, d); rows beyond L_k are 0.

        A reference implementation (one ``torch.autograd.grad`` call per length, keeping the
        graph); :meth:`forward` gets the same numbers from a single backward pass through the
        loss graph (:meth:`output_gradients`). Kept for diagnostics and for the tests that tie
        the two together.
        """
        zd = z.detach()
        grads = []
        for obj in objectives:
            (dh,) = torch.autograd.grad(obj, h, retain_graph=True, allow_unused=True)
            dh = torch.zeros_like(h) if dh is None else dh
            grads.append(dh.T @ zd)
        return torch.stack(grads)

    def base_terms(self, outputs: Sequence[torch.Tensor], y: torch.Tensor, idx: torch.Tensor) -> list[torch.Tensor]:
        """``loss_k(h_k)`` for every length: batched when the loss class offers it
        (:meth:`nhl.losses.HashLoss.nested_terms`), else one call per length."""
        first = type(self.losses[0])
        if (
            isinstance(self.losses[0], HashLoss)
            and _offers(first, "nested_terms")
            and all(type(f) is first and f.bits == u.shape[1] for f, u in zip(self.losses, outputs))
        ):
            terms = first.nested_terms(list(self.losses), outputs, y, idx)
            if terms is not None:
                return terms
        return [loss(u, y, idx) for loss, u in zip(self.losses, outputs)]

    @property
    def _separable(self) -> bool:
        """Whether objective k reaches the model only through ``h_k`` (teacher detached)."""
        return self.detach_teacher or self.distill == 0 or len(self.bit_list) == 1

    def output_gradients(
        self, objectives: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor], h: torch.Tensor
    ) -> torch.Tensor:
        """``d objective_k / d h`` for every k, stacked (K, B, L_K); columns beyond L_k are 0.

        Objective k reaches the model only through its own prefix ``outputs[k]`` (its base loss
        reads ``h_k``; its distillation term reads ``h_k`` and a *detached* teacher), so one
        backward pass of ``sum_k objective_k`` with respect to the K prefix tensors separates
        the K gradients exactly. With a teacher that is not detached (an ablation) objective k
        also reaches the longer prefixes; then each length is differentiated on its own.
        The graph of the losses is freed afterwards: it is traversed once per step.
        """
        K, (B, LK) = len(objectives), h.shape
        out = h.new_zeros(K, B, LK)
        if self._separable:
            dhs = torch.autograd.grad(torch.stack(list(objectives)).sum(), list(outputs), allow_unused=True)
            for k, (dh, bits) in enumerate(zip(dhs, self.bit_list)):
                if dh is not None:
                    out[k, :, :bits] = dh
        else:
            for k, obj in enumerate(objectives):
                (dh,) = torch.autograd.grad(obj, h, retain_graph=k + 1 < K, allow_unused=True)
                if dh is not None:
                    out[k] = dh
        return out

    def closed_form(
        self, h: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(base (K,), sp (K,), d objective_k / dh (K, B, L_K))`` without autograd, or None.

        Available when the base loss offers :meth:`nhl.losses.HashLoss.nested_gradients` (every
        built-in loss, given prefix targets and memory banks that hold prefixes of the longest)
        and the distillation has a closed form
        (:func:`nhl.distill.cascade_gradients`, modes ``"adjacent"`` and ``"longest"`` with a
        detached teacher). Then :meth:`forward` computes the per-length gradients from these
        formulas instead of backpropagating through the losses: the same numbers to float
        rounding (tested against :meth:`output_gradients`), at a fraction of the cost.
        """
        if not USE_CLOSED_FORM or not self._separable:
            return None
        first = self.losses[0]
        cls = type(first)
        if not isinstance(first, HashLoss) or not _offers(cls, "nested_gradients"):
            return None
        if any(type(f) is not cls or f.bits != b for f, b in zip(self.losses, self.bit_list)):
            return None
        with torch.no_grad():
            hd = h.detach()
            got = cls.nested_gradients(list(self.losses), hd, y, idx)
            if got is None:
                return None
            base, dh = got
            sp = torch.zeros_like(base)
            if self.distill > 0 and len(self.bit_list) > 1:
                students = student_gradients(hd, self.bit_list, self.distill_mode)  # checked in __init__
                if students is None:
                    return None
                sp[:-1], dh_sp = students
                dh[:-1].add_(dh_sp, alpha=self.distill)
        return base, sp, dh

    def forward(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        h: torch.Tensor | None = None,
        scale: float = 1.0,
    ) -> ObjectiveOutput:
        """Objective for one batch of features ``z`` (B x d), labels ``y`` (B x C), ids ``idx``.

        ``h``: the layer's output ``layer.project(z)`` when the caller computed it (inside a
        DistributedDataParallel forward); ``scale``: factor on every term of this batch, so
        that the local batches of several processes average to the global batch's objective
        (:func:`nhl.distributed.local_scale`). Under an active process group the per-length
        gradients are averaged over the processes before the weights are computed, so every
        process uses the global batch's weights (:mod:`nhl.distributed`).

        The steps of docs/method.md §5, one method each: the per-length terms and, where the
        weights need them, their gradients ``d objective_k / dh`` (:meth:`_terms`: in closed
        form, :meth:`closed_form`, or by one backward pass through the loss graph); the weights
        (:meth:`_weights`, the dominance rule of §3); the total (:meth:`_total`). When ``z``
        carries a graph, ``output.total.backward()`` backpropagates
        ``sum_k w_k (loss_k + lambda_D SP_k)`` through the whole model once: ``total`` carries
        exactly the weighted gradient into ``h`` (its value is the weighted objective). The
        loss graph is not kept, so ``total`` can be backpropagated once, as usual.
        """
        h = self.layer.project(z) if h is None else h
        differentiable = h.requires_grad and torch.is_grad_enabled()
        measure = self.weighting == "dominance" or self.track_gradients
        terms = self._terms(h, y, idx, differentiable, measure, scale)
        zd = z.detach()
        measured = terms.dh if measure else None  # the per-length gradients, where they are wanted
        grads = self._layer_gradients(measured, zd)
        weights, alphas, anti = self._weights(measured, zd, grads, h)
        return ObjectiveOutput(
            total=self._total(h, terms, weights, differentiable),
            losses=_stacked(terms.base),
            distill=_stacked(terms.sp),
            weights=weights,
            alphas=alphas,
            anti_domination=anti,
            grads=grads if self.track_gradients else None,
            bit_list=self.bit_list,
            _dh=measured,
            _z=zd,
        )

    def _terms(self, h, y, idx, differentiable: bool, measure: bool, scale: float) -> _Terms:
        """The per-length base and distillation terms, and ``d objective_k / dh`` when the step
        is differentiated and the weights (or diagnostics) need them: from :meth:`closed_form`
        where it applies (no loss graph at all), else by autograd through the loss graph."""
        closed = self.closed_form(h, y, idx) if differentiable else None
        if closed is not None:
            base, sp, dh = closed
            values = base + self.distill * sp if self.distill > 0 else base
            if not bool(torch.isfinite(values).all()):  # one check; then find the term
                self._check_finite(base, "base loss")
                self._check_finite(sp, "distillation")
            return _Terms(base, sp, values, None, dh * scale if scale != 1.0 else dh)
        outputs = self.layer.split(h)
        base = self.base_terms(outputs, y, idx)
        if self.distill > 0 and len(self.bit_list) > 1:
            sp = cascade_loss(outputs, mode=self.distill_mode, detach_teacher=self.detach_teacher)
        else:
            sp = [h.new_zeros(()) for _ in outputs]
        self._check_finite(base, "base loss")
        self._check_finite(sp, "distillation")
        objectives = [b + self.distill * s for b, s in zip(base, sp)]
        values = torch.stack([o.detach() for o in objectives])
        if scale != 1.0:
            objectives = [o * scale for o in objectives]
        # Only the weighting (and diagnostics) need the K per-length gradients; otherwise the
        # weights are known up front and the total is backpropagated as it is (one pass too).
        dh = self.output_gradients(objectives, outputs, h) if differentiable and measure else None
        return _Terms(base, sp, values, objectives, dh)

    def _layer_gradients(self, dh: torch.Tensor | None, zd: torch.Tensor) -> torch.Tensor | None:
        """``g_k = (d objective_k / dh)^T z`` (K, L_K, d) where they are kept (``track_gradients``)
        or must be averaged over the processes of a distributed run (the global batch's weights);
        otherwise None: the weighting needs only their inner products."""
        synced = distributed.is_active() and dh is not None
        if dh is None or not (self.track_gradients or synced):
            return None
        grads = torch.einsum("kbl,bd->kld", dh, zd)
        return distributed.all_reduce_mean(grads) if synced else grads

    def _weights(self, dh, zd, grads, h) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """``(weights (K,), alphas or None, whether the rule fired)``: the dominance rule of
        docs/method.md §3 on the overlap inner products of the per-length gradients, the fixed
        weights, or all ones."""
        K = len(self.bit_list)
        alphas, anti = None, False
        if self.weighting == "dominance" and dh is not None:
            # c_ij = <g_i, g_j> on the overlap rows, from dh and z (the g_k are not needed)
            if grads is not None:
                c = overlap_inner_products(grads, self.bit_list)
            else:
                c = inner_products_from_outputs(dh, zd, None if self._separable else self.bit_list)
            # lengths, beta and norm were checked in __init__; alphas all 1 (weights 1) unless it fired
            alphas, anti = dominance_rule(c, self.beta, self.norm)
            weights = weights_from_alphas(alphas) if anti else h.new_ones(K)
        elif self.weighting == "fixed":
            weights = self.fixed_weights.to(h.device, h.dtype)
        else:
            weights = h.new_ones(K)
        return weights.detach(), alphas, anti

    def _total(self, h: torch.Tensor, terms: _Terms, weights: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """``sum_k w_k objective_k`` whose gradient into ``h`` is ``sum_k w_k d objective_k / dh``."""
        value = (terms.values * weights).sum()
        if terms.dh is None:
            return torch.stack(terms.objectives).mul(weights).sum() if differentiable else value
        grad_h = torch.einsum("k,kbl->bl", weights, terms.dh)  # sum_k w_k dL_k/dh
        surrogate = (h * grad_h).sum()  # d surrogate / dh = grad_h
        return value + (surrogate - surrogate.detach())

    def _check_finite(self, terms: Sequence[torch.Tensor] | torch.Tensor, name: str) -> None:
        values = _stacked(terms)
        bad = ~torch.isfinite(values)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise NonFiniteLossError(self.bit_list[k], name, float(values[k]))


@functools.lru_cache(maxsize=64)
def _offers(cls: type, name: str) -> bool:
    """Whether ``cls`` has its own batched ``name`` (``nested_terms``, ``nested_gradients``)
    written for the ``loss`` it computes: not when a subclass overrides ``loss`` and inherits
    the batched method, which would then compute its parent's loss."""
    owner = next(c for c in cls.__mro__ if name in c.__dict__)
    if owner is HashLoss:
        return False
    loss_owner = next(c for c in cls.__mro__ if "loss" in c.__dict__)
    return issubclass(owner, loss_owner)


def _stacked(terms: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """(K,) detached values of per-length terms given as a list of scalars or a tensor."""
    if isinstance(terms, torch.Tensor):
        return terms.detach()
    return torch.stack([t.detach() for t in terms])
