"""Gradient-conflict diagnostics for nested training (docs/method.md §3-4).

The dominance-aware weighting (docs/method.md §3) exists because the per-length objectives
pull the shared rows of the hash layer's weight ``W`` in different directions. This module
measures that:

* :class:`GradientRecorder` - a ``step_callback`` for :func:`nhl.train.fit` that records, every
  ``every`` optimiser steps, the overlap cosines of the per-length gradients, the alphas and
  weights the dominance rule computes (even when the run itself does not use it), the weights
  actually used and whether the rule would fire ("anti-domination").
* :func:`layer_gradients` / :func:`backbone_gradients` - per-length gradients of one batch
  w.r.t. the hash layer's ``W`` or the backbone's last linear layer (the paper only looked at ``W``).
* :func:`weighting_steps` - docs/method.md §3 step by step, as small labelled tables.
* :func:`conflict_rates`, :func:`mean_matrices`, :func:`dominance_margins`,
  :func:`update_shares`, :func:`pair_norms`, :func:`project_pair`, :func:`overlap_pair`.
* :func:`conflict_cases`, :func:`choose_conflicts`, :func:`describe_conflict` - every recorded
  (step, pair) case, a typical and the strongest conflict, and the numbers behind one of them.

Computing diagnostics on a probe batch leaves the model and objective as they were: buffers
(batch-norm statistics, memory banks) are restored afterwards and no parameter gradient is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .distill import cascade_loss
from .models import preserved_buffers
from .validation import check_bit_list, check_choice, check_positive_int
from .weighting import NORMS, dominance_alphas, overlap_cosines, weights_from_alphas

# --------------------------------------------------------------------------------------------
# per-length objectives and gradients of one batch


def per_length_objectives(
    layer: nn.Module, objective: nn.Module, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
) -> list[torch.Tensor]:
    """``loss_k + lambda_D SP_k`` for every length on features ``z`` (docs/method.md §3-4).

    Uses ``objective``'s base losses and distillation settings with the hash ``layer`` given (the
    model's own, so an objective built separately with :func:`nhl.train.build` works too).
    """
    outputs = layer(z)
    base = [loss(u, y, idx) for loss, u in zip(objective.losses, outputs)]
    lam = float(getattr(objective, "distill", 0.0))
    if lam > 0 and len(outputs) > 1:
        sp = cascade_loss(
            outputs,
            mode=getattr(objective, "distill_mode", "adjacent"),
            detach_teacher=getattr(objective, "detach_teacher", True),
        )
        return [b + lam * s for b, s in zip(base, sp)]
    return base


def _grads_wrt(objectives: Sequence[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """Stack ``d objective_k / d weight`` over k (zeros where an objective does not use it)."""
    out = []
    for obj in objectives:
        (g,) = torch.autograd.grad(obj, weight, retain_graph=True, allow_unused=True)
        out.append(torch.zeros_like(weight) if g is None else g)
    return torch.stack(out).detach()


def _check_model(model: nn.Module, objective: nn.Module) -> None:
    if not hasattr(model, "hash_layer") or not hasattr(model, "backbone"):
        raise TypeError(
            f"model must be an nhl HashModel (with .backbone and .hash_layer), got {type(model).__name__}"
        )
    if not hasattr(objective, "losses") or len(objective.losses) != len(model.hash_layer.bit_list):
        raise TypeError(
            "objective must be the model's NestedObjective (one loss per length), e.g. from "
            "nhl.train.build(config, splits) or nhl.train.fit(...).objective"
        )


def layer_gradients(
    model: nn.Module, objective: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """Per-length gradients ``g_k = d(loss_k + lambda_D SP_k)/dW`` of the hash layer (K, L_K, d).

    docs/method.md §3 step 1: the backbone features are detached, so only the hash layer is
    differentiated; rows beyond ``L_k`` of ``g_k`` are zero. The model keeps its train/eval mode
    and its buffers are restored afterwards.
    """
    _check_model(model, objective)
    with preserved_buffers(model, objective):
        with torch.no_grad():
            z = model.features(x)
        objectives = per_length_objectives(model.hash_layer, objective, z, y, idx)
        return _grads_wrt(objectives, model.hash_layer.weight)


def term_gradients(
    model: nn.Module,
    objective: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    lam: float | None = None,
) -> pd.DataFrame:
    """How the distillation term pulls on the hash layer next to the base loss, per length.

    For every length k: ``base`` = ||d loss_k / dW||, ``distill`` = ||lambda_D d SP_k / dW||
    (``lam`` defaults to the objective's lambda_D, or 1 when distillation is off, so a plain
    run can be probed too), ``ratio`` = distill / base and ``cosine`` between the two gradients:
    a negative cosine means the teacher pulls the short code against its own objective.
    docs/method.md §4; features detached, buffers restored as in :func:`layer_gradients`.
    """
    _check_model(model, objective)
    lam = float(objective.distill or 1.0) if lam is None else float(lam)
    with preserved_buffers(model, objective):
        with torch.no_grad():
            z = model.features(x)
        outputs = model.hash_layer(z)
        base = [loss(u, y, idx) for loss, u in zip(objective.losses, outputs)]
        sp = cascade_loss(outputs, mode=objective.distill_mode, detach_teacher=objective.detach_teacher)
        weight = model.hash_layer.weight
        g_base = _grads_wrt(base, weight).flatten(1)
        g_sp = lam * _grads_wrt(sp[:-1], weight).flatten(1)
    rows = []
    for k, bits in enumerate(model.hash_layer.bit_list[:-1]):
        b, d = g_base[k], g_sp[k]
        nb, nd = float(b.norm()), float(d.norm())
        rows.append({"bits": bits, "base": nb, "distill": nd, "ratio": nd / max(nb, 1e-20),
                     "cosine": float(b @ d) / max(nb * nd, 1e-20)})
    return pd.DataFrame(rows)


def last_linear(module: nn.Module) -> nn.Linear:
    """The last :class:`torch.nn.Linear` registered in ``module`` (e.g. ``backbone.fc[0]``)."""
    found = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(
            f"the backbone ({type(module).__name__}) has no nn.Linear layer; pass the layer whose "
            "weight to differentiate as layer=..."
        )
    return found[-1]


def flat_cosines(grads: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity matrix (K x K, diagonal 1) of K gradients flattened to vectors."""
    g = grads.reshape(grads.shape[0], -1).double()
    gram = g @ g.T
    norms = gram.diagonal().sqrt()
    cos = gram / (norms[:, None] * norms[None, :]).clamp_min(eps)
    cos.fill_diagonal_(1.0)
    return cos.to(grads.dtype)


def backbone_gradients(
    model: nn.Module,
    objective: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    layer: nn.Module | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-length gradients w.r.t. a backbone weight and their cosine matrix.

    Args:
        layer: an ``nn.Module`` with a ``weight`` (or the weight tensor itself); default: the last
            ``nn.Linear`` of ``model.backbone`` (:func:`last_linear`). Every length shares all of
            it, so the cosines are over the whole weight (no overlap rows as for ``W``).
    Returns:
        ``(grads, cosines)``: ``grads`` (K, *weight.shape), ``cosines`` (K, K).
    """
    _check_model(model, objective)
    if layer is None:
        layer = last_linear(model.backbone)
    weight = layer if isinstance(layer, torch.Tensor) else getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or not weight.requires_grad:
        raise ValueError("layer must be a module with a trainable .weight (or that weight tensor)")
    with preserved_buffers(model, objective):
        z = model.features(x)
        objectives = per_length_objectives(model.hash_layer, objective, z, y, idx)
        grads = _grads_wrt(objectives, weight)
    return grads, flat_cosines(grads)


# --------------------------------------------------------------------------------------------
# docs/method.md §3, step by step


@dataclass
class WeightingSteps:
    """The dominance rule's intermediate results, labelled by code length (bits)."""

    c: pd.DataFrame  # step 2: <g_i, g_j> on the overlap rows
    tau: pd.Series  # step 3: threshold per shorter code
    conflict: pd.DataFrame  # step 4: where c_ij < 0 and -c_ij > tau_i (i < j)
    alpha_uncapped: pd.DataFrame  # step 4
    alpha: pd.DataFrame  # step 5 (cap)
    raw_weights: pd.Series  # step 6, before normalisation
    weights: pd.Series  # step 6, sum = K

    def tensor(self) -> torch.Tensor:
        """The normalised weights as a float64 tensor."""
        return torch.tensor(self.weights.to_numpy(), dtype=torch.float64)

    def pairs(self) -> pd.DataFrame:
        """One row per pair ``i < j``: ``c_ij``, ``tau_i``, whether the pair opposes (``c < 0``)
        and crosses the threshold (``-c > tau``), ``alpha`` before and after the cap, and
        whether the cap changed it (docs/method.md §3 steps 2-5), as a plain table."""
        bits = list(self.c.index)
        rows = []
        for a, i in enumerate(bits):
            for j in bits[a + 1:]:
                before, after = float(self.alpha_uncapped.loc[i, j]), float(self.alpha.loc[i, j])
                rows.append({
                    "short": i, "long": j, "c_ij": float(self.c.loc[i, j]),
                    "tau_i": float(self.tau.loc[i]), "opposed": bool(self.c.loc[i, j] < 0),
                    "crossed": bool(self.conflict.loc[i, j]), "alpha": before,
                    "alpha after cap": after, "cap changed it": not np.isclose(before, after),
                })
        return pd.DataFrame(rows)


def weighting_steps(
    grads: torch.Tensor, bit_list: Sequence[int], beta: float = 1.0, norm: str = "own"
) -> WeightingSteps:
    """docs/method.md §3 steps 2-6, written out independently of :mod:`nhl.weighting`.

    Gives the same weights as :func:`nhl.weighting.dominance_aware_weights` (a check the
    tutorial asserts) but keeps every intermediate for display.
    """
    bits = check_bit_list(bit_list)
    check_choice(norm, NORMS, "norm")
    g = torch.as_tensor(grads).detach().double()
    K = len(bits)
    if g.shape[:2] != (K, bits[-1]):
        raise ValueError(f"grads must have shape (K={K}, L_K={bits[-1]}, ...), got {tuple(g.shape)}")
    g = g.reshape(K, bits[-1], -1)
    lens = torch.tensor(bits)
    rows = torch.arange(bits[-1])
    shared = rows[None, None, :] < torch.minimum(lens[:, None], lens[None, :])[:, :, None]
    c = (torch.einsum("ird,jrd->ijr", g, g) * shared).sum(-1)  # step 2
    own = c.diagonal()
    ref = own if norm == "own" else own[:1].expand(K)
    tau = beta * ref / max(K - 1, 1)  # step 3
    upper = torch.ones(K, K, dtype=torch.bool).triu(1)
    conflict = upper & (c < 0) & (-c > tau[:, None])
    alpha0 = torch.where(conflict, tau[:, None] / (-c).clamp_min(1e-300), torch.ones_like(c))  # 4
    alpha = alpha0.clone()
    for i in range(K - 2):  # step 5: cap by the adjacent pair (K <= a handful: not a hot path)
        alpha[i, i + 2 :] = torch.minimum(alpha0[i, i + 2 :], alpha0[i, i + 1])
    raw = torch.where(upper, alpha, torch.ones_like(alpha)).prod(dim=0)  # step 6
    weights = K * raw / raw.sum()
    idx = pd.Index(bits, name="bits")

    def frame(t: torch.Tensor) -> pd.DataFrame:
        return pd.DataFrame(t.numpy(), index=idx, columns=pd.Index(bits, name="longer"))

    return WeightingSteps(
        c=frame(c),
        tau=pd.Series(tau.numpy(), index=idx, name="tau"),
        conflict=frame(conflict),
        alpha_uncapped=frame(alpha0),
        alpha=frame(alpha),
        raw_weights=pd.Series(raw.numpy(), index=idx, name="raw weight"),
        weights=pd.Series(weights.numpy(), index=idx, name="weight"),
    )


def dominance_margins(
    grads: torch.Tensor, bit_list: Sequence[int], alphas: torch.Tensor | None = None
) -> torch.Tensor:
    """``<g_i, g_i + sum_{j>i} alpha_ij g_j> / ||g_i||^2`` on each short code's rows (K,).

    docs/method.md §3's guarantee: with the rule's alphas every entry is ``>= 1 - beta``;
    ``alphas=None`` (all ones) gives the unadjusted value (negative: the longer codes' summed
    gradient points against the short code's own descent direction).
    """
    from .weighting import overlap_inner_products

    bits = check_bit_list(bit_list)
    c = overlap_inner_products(torch.as_tensor(grads).double(), bits)
    K = len(bits)
    a = torch.ones(K, K, dtype=c.dtype) if alphas is None else torch.as_tensor(alphas).double()
    upper = torch.ones(K, K, dtype=torch.bool).triu(1)
    own = c.diagonal()
    return (own + (torch.where(upper, a * c, torch.zeros_like(c))).sum(1)) / own.clamp_min(1e-300)


def update_shares(
    grads: torch.Tensor, bit_list: Sequence[int], weights: torch.Tensor | Sequence[float] | None = None
) -> torch.Tensor:
    """``<g_i, sum_k w_k g_k> / ||g_i||^2`` for every length i (K,): what the actual update does.

    The training step moves ``W`` along ``-sum_k w_k g_k``; to first order it lowers length i's
    objective by ``lr <g_i, sum_k w_k g_k>``, so a positive share means the step descends on
    ``f_i`` and a negative one that it climbs. Unlike :func:`dominance_margins` (a statement
    about the alphas, docs/method.md §3), this uses the weights themselves and every length
    (shorter ones included). ``weights=None``: uniform weights (plain training).
    """
    from .weighting import overlap_inner_products

    bits = check_bit_list(bit_list)
    c = overlap_inner_products(torch.as_tensor(grads).double(), bits)
    K = len(bits)
    w = torch.ones(K, dtype=c.dtype) if weights is None else torch.as_tensor(weights).double().reshape(-1)
    if w.shape != (K,):
        raise ValueError(f"weights must hold {K} numbers (one per length), got {tuple(w.shape)}")
    return (c * w[None, :]).sum(1) / c.diagonal().clamp_min(1e-300)


def overlap_pair(
    grads: torch.Tensor, bit_list: Sequence[int], short: int, long: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of the ``short``- and ``long``-bit codes on their shared rows, flattened."""
    bits = check_bit_list(bit_list)
    if short not in bits or long not in bits or short >= long:
        raise ValueError(f"short and long must be lengths in {bits} with short < long, got {short}, {long}")
    i, j = bits.index(short), bits.index(long)
    return grads[i, :short].reshape(-1), grads[j, :short].reshape(-1)


def pair_norms(grads: torch.Tensor, bit_list: Sequence[int]) -> pd.DataFrame:
    """Per pair ``i < j`` of one batch's gradients, on the short code's rows ``1..L_i``:
    ``cosine``, ``norm ratio`` = ||g_j|| / ||g_i|| and ``L_i / L_j``.

    For a loss that is a mean over bits of a per-bit term with nested targets (CSQ, DPN),
    ``g_j = (L_i / L_j) g_i`` on those rows: cosine 1 and norm ratio ``L_i / L_j`` (notebook 02).
    """
    bits = check_bit_list(bit_list)
    g = torch.as_tensor(grads).detach().double()
    if g.shape[:2] != (len(bits), bits[-1]):
        raise ValueError(f"grads must have shape (K={len(bits)}, L_K={bits[-1]}, ...), got {tuple(g.shape)}")
    rows = []
    for i, short in enumerate(bits):
        for long in bits[i + 1:]:
            gi, gj = overlap_pair(g, bits, short, long)
            ni, nj = float(gi.norm()), float(gj.norm())
            rows.append({"short": short, "long": long,
                         "cosine": float(gi @ gj) / max(ni * nj, 1e-300),
                         "norm ratio": nj / max(ni, 1e-300), "L_i / L_j": short / long})
    return pd.DataFrame(rows)


def project_pair(g_i: torch.Tensor | np.ndarray, g_j: torch.Tensor | np.ndarray) -> np.ndarray:
    """2-D coordinates (2 x 2: rows g_i, g_j) in the plane spanned by the two vectors.

    ``g_i`` lies on the positive x axis; ``g_j`` has a non-negative y coordinate. Lengths, inner
    product and angle are preserved, so sums such as ``g_i + alpha g_j`` project linearly.
    """
    a = np.asarray(g_i.detach() if isinstance(g_i, torch.Tensor) else g_i, dtype=np.float64).ravel()
    b = np.asarray(g_j.detach() if isinstance(g_j, torch.Tensor) else g_j, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"g_i and g_j must have the same size, got {a.size} and {b.size}")
    na = np.linalg.norm(a)
    if na == 0:
        raise ValueError("g_i is zero: there is no direction to project onto; pick another pair")
    e1 = a / na
    x = float(b @ e1)
    y = float(np.linalg.norm(b - x * e1))
    return np.array([[na, 0.0], [x, y]])


# --------------------------------------------------------------------------------------------
# recording during training


def _pairs(bits: Sequence[int]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(bits)) for j in range(i + 1, len(bits))]


def _inner_and_overlap_norms(grads: torch.Tensor, bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``c_ij`` and ``||g_j||`` on rows ``1..L_i`` (both K x K; used for i < j)."""
    from .weighting import overlap_inner_products

    g = grads.detach().double().reshape(len(bits), bits[-1], -1)
    c = overlap_inner_products(g, bits).cpu().numpy()
    sq = (g * g).sum(dim=2).cumsum(dim=1)  # (K, L_K): squared norm of rows 1..r
    rows = torch.tensor(bits, device=g.device) - 1
    ov = sq[:, rows].sqrt().T.cpu().numpy()  # ov[i, j] = ||g_j|| on rows 1..L_i
    return c, ov


class GradientRecorder:
    """``step_callback`` for :func:`nhl.train.fit` that records gradient conflicts every few steps.

    Use with ``fit(config, step_callback=rec, track_gradients=True)`` (the per-length gradients
    are needed). Every ``every``-th optimiser step (the first included) stores one row:

    * ``epoch``, ``step`` (within the epoch), ``iteration`` (global step);
    * ``cos_{a}_{b}``: cosine of the a- and b-bit gradients on their shared rows (docs/method.md §3);
    * ``alpha_{a}_{b}``: the dominance rule's alpha at this run's ``beta``/``norm`` (computed here
      when the run does not use the rule), ``min_alpha`` and ``anti_domination`` (any alpha < 1);
    * ``c_{a}_{b}`` (inner product on the shared rows) and ``ovnorm_{a}_{b}`` (norm of the b-bit
      gradient on the a-bit rows): enough to redraw any recorded pair in 2-D (:func:`pair_plane`);
    * ``weight_{b}`` (weights used by the run), ``rule_weight_{b}`` (what the rule would give),
      ``norm_{b}`` (||g_b||), ``loss_{b}``;
    * with ``probe=(x, y, idx)`` and ``objective``: ``bb_cos_{a}_{b}``, the cosines of the
      per-length gradients w.r.t. the backbone's last linear layer on that fixed batch.

    ``first`` keeps the per-length gradients of the first recorded step; ``strongest`` those
    of the recorded step with the strongest conflict (smallest alpha, then most negative cosine). With ``keep_grads=True``, ``kept`` maps
    the ``iteration`` of every recorded step where the rule fires to its gradients (K x L_K x d
    floats each: mind the memory on long runs); pick one with :func:`pick_conflict`.
    """

    def __init__(
        self,
        bit_list: Sequence[int],
        every: int = 10,
        beta: float = 1.0,
        norm: str = "own",
        probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        objective: nn.Module | None = None,
        layer: nn.Module | None = None,
        keep_grads: bool = False,
    ):
        self.bit_list = check_bit_list(bit_list)
        self.every = check_positive_int(every, "every")
        self.beta = float(beta)
        self.norm = check_choice(norm, NORMS, "norm")
        if (probe is None) != (objective is None):
            raise ValueError(
                "pass both probe=(x, y, idx) and objective=... to record backbone cosines, or neither"
            )
        self.probe, self.objective, self.layer = probe, objective, layer
        self.keep_grads = bool(keep_grads)
        self.kept: dict[int, torch.Tensor] = {}
        self.rows: list[dict] = []
        self.calls = 0
        self.strongest: dict | None = None
        self.first: dict | None = None  # the first recorded step's gradients
        self._score = (np.inf, np.inf)

    def __call__(self, epoch: int, step: int, out, model: nn.Module) -> None:
        iteration, self.calls = self.calls, self.calls + 1
        if iteration % self.every:
            return
        bits, K = self.bit_list, len(self.bit_list)
        grads = out.grads
        if grads is None and (out.cosines is None or out.alphas is None):
            raise ValueError(
                "the step output carries no per-length gradients: call "
                "nhl.train.fit(..., track_gradients=True) when using GradientRecorder"
            )
        cos = out.cosines if out.cosines is not None else overlap_cosines(grads, bits)
        alphas = out.alphas
        if alphas is None:
            alphas = dominance_alphas(grads, bits, beta=self.beta, norm=self.norm)
        rule_w = weights_from_alphas(alphas)
        cos_np, a_np = cos.detach().double().cpu().numpy(), alphas.detach().double().cpu().numpy()
        pairs = _pairs(bits)
        row: dict = {"epoch": epoch, "step": step, "iteration": iteration}
        row.update({f"cos_{bits[i]}_{bits[j]}": cos_np[i, j] for i, j in pairs})
        row.update({f"alpha_{bits[i]}_{bits[j]}": a_np[i, j] for i, j in pairs})
        if grads is not None:
            c, ov = _inner_and_overlap_norms(grads, bits)
            row.update({f"c_{bits[i]}_{bits[j]}": c[i, j] for i, j in pairs})
            row.update({f"ovnorm_{bits[i]}_{bits[j]}": ov[i, j] for i, j in pairs})
        min_alpha = float(min((a_np[i, j] for i, j in pairs), default=1.0))
        min_cos = float(min((cos_np[i, j] for i, j in pairs), default=1.0))
        row["min_alpha"] = min_alpha
        row["anti_domination"] = min_alpha < 1.0
        w = out.weights.detach().double().cpu().numpy()
        rw = rule_w.detach().double().cpu().numpy()
        norms = (
            grads.detach().reshape(K, -1).double().norm(dim=1).cpu().numpy()
            if grads is not None
            else np.full(K, np.nan)
        )
        losses = out.losses.detach().double().cpu().numpy()
        for k, b in enumerate(bits):
            row[f"weight_{b}"] = w[k]
            row[f"rule_weight_{b}"] = rw[k]
            row[f"norm_{b}"] = norms[k]
            row[f"loss_{b}"] = losses[k]
        if self.probe is not None:
            _, bb = backbone_gradients(model, self.objective, *self.probe, layer=self.layer)
            bb = bb.double().cpu().numpy()
            row.update({f"bb_cos_{bits[i]}_{bits[j]}": bb[i, j] for i, j in pairs})
        self.rows.append(row)
        if self.keep_grads and grads is not None and row["anti_domination"]:
            self.kept[iteration] = grads.detach().cpu().clone()
        if grads is not None and self.first is None:
            self.first = {"epoch": epoch, "step": step, "iteration": iteration,
                          "grads": grads.detach().cpu().clone()}
        score = (min_alpha, min_cos)
        if grads is not None and score < self._score:
            self._score = score
            self.strongest = {
                "epoch": epoch,
                "step": step,
                "iteration": iteration,
                "grads": grads.detach().cpu().clone(),
                "alphas": alphas.detach().cpu().clone(),
            }

    def frame(self) -> pd.DataFrame:
        """The recorded rows as a DataFrame (one row per recorded step)."""
        return pd.DataFrame(self.rows)


def pair_plane(row: pd.Series, short: int, long: int) -> np.ndarray:
    """2-D coordinates (as :func:`project_pair`) of a recorded pair, from one recorder row.

    Uses ``norm_{short}``, ``c_{short}_{long}`` and ``ovnorm_{short}_{long}``: ``g_i`` on the x axis at
    ``||g_i||``, ``g_j`` at ``(c / ||g_i||, sqrt(||g_j||^2 - (c / ||g_i||)^2))``.
    """
    ni = float(row[f"norm_{short}"])
    if not ni > 0:
        raise ValueError(f"the {short}-bit gradient is zero in this row; pick another step")
    x = float(row[f"c_{short}_{long}"]) / ni
    y = float(np.sqrt(max(float(row[f"ovnorm_{short}_{long}"]) ** 2 - x * x, 0.0)))
    return np.array([[ni, 0.0], [x, y]])


def pick_conflict(frame: pd.DataFrame, alpha: float = 0.5) -> tuple[int, int, int] | None:
    """A representative recorded conflict: ``(row label, short bits, long bits)`` or ``None``.

    Among the (step, pair) cases where the rule fired on the pair itself (``alpha < 1`` and
    ``c < 0``, not only through the cap), the one whose alpha is
    closest to ``alpha`` and whose two gradients have the most similar norms on the shared rows
    (both on a log scale), so a 2-D picture shows both arrows. ``None`` when the rule never fired.
    """
    best, best_score = None, np.inf
    for a, b, col in pair_columns(frame, "alpha"):
        al = frame[col].to_numpy(dtype=float)
        ratio = frame[f"ovnorm_{a}_{b}"].to_numpy(dtype=float) / frame[f"norm_{a}"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.abs(np.log(al / alpha)) + np.abs(np.log(ratio))
        opposed = frame[f"c_{a}_{b}"].to_numpy(dtype=float) < 0  # not merely capped
        score = np.where((al < 1) & opposed & np.isfinite(score), score, np.inf)
        k = int(np.argmin(score))
        if score[k] < best_score:
            best, best_score = (frame.index[k], a, b), score[k]
    return best


def pair_columns(frame: pd.DataFrame, prefix: str = "cos") -> list[tuple[int, int, str]]:
    """``(short bits, long bits, column)`` for every ``{prefix}_{a}_{b}`` column of a frame."""
    pat = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+)$")
    found = [(int(m[1]), int(m[2]), c) for c in frame.columns if (m := pat.match(str(c)))]
    if not found:
        raise ValueError(f"the frame has no '{prefix}_<bits>_<bits>' columns (from GradientRecorder.frame())")
    return sorted(found)


def to_matrices(frame: pd.DataFrame, prefix: str = "cos") -> tuple[np.ndarray, tuple[int, ...]]:
    """The ``{prefix}_{a}_{b}`` columns as (n_rows, K, K) matrices (symmetric, diagonal 1).

    Returns the matrices and the code lengths labelling their rows and columns.
    """
    cols = pair_columns(frame, prefix)
    bits = tuple(sorted({a for a, _, _ in cols} | {b for _, b, _ in cols}))
    pos = {b: k for k, b in enumerate(bits)}
    K = len(bits)
    out = np.tile(np.eye(K), (len(frame), 1, 1))
    for a, b, col in cols:
        vals = frame[col].to_numpy(dtype=float)
        out[:, pos[a], pos[b]] = vals
        out[:, pos[b], pos[a]] = vals
    return out, bits


def mean_matrices(
    frame: pd.DataFrame, prefix: str = "cos", by: str = "epoch"
) -> tuple[np.ndarray, list, tuple[int, ...]]:
    """Mean of the ``{prefix}_{a}_{b}`` matrices per value of ``by`` (default: per epoch).

    Returns ``(matrices (n_groups, K, K), group values, code lengths)``, e.g. for
    :func:`nhl.plots.gradients.cosine_heatmaps`.
    """
    if by not in frame:
        raise ValueError(f"the frame has no column {by!r}")
    mats, bits = to_matrices(frame, prefix)
    groups = sorted(frame[by].unique())
    keys = frame[by].to_numpy()
    return np.stack([mats[keys == g].mean(axis=0) for g in groups]), groups, bits


def conflict_rates(frame: pd.DataFrame, prefix: str = "cos") -> pd.DataFrame:
    """Per pair of lengths: how often their gradients oppose each other over the recorded steps.

    Columns: ``short``, ``long``, ``mean cosine``, ``negative cosine`` (fraction of steps with
    cosine < 0) and, for the hash layer (``prefix="cos"``), ``alpha < 1`` (fraction of steps where
    the dominance rule fires for the pair) and ``min alpha``. ``prefix="bb_cos"`` summarises the
    backbone cosines.
    """
    rows = []
    for a, b, col in pair_columns(frame, prefix):
        v = frame[col].to_numpy(dtype=float)
        row = {"short": a, "long": b, "mean cosine": v.mean(), "negative cosine": (v < 0).mean()}
        acol = f"alpha_{a}_{b}"
        if prefix == "cos" and acol in frame:
            al = frame[acol].to_numpy(dtype=float)
            row["alpha < 1"] = (al < 1).mean()
            row["min alpha"] = al.min()
        rows.append(row)
    return pd.DataFrame(rows)


def conflict_cases(frame: pd.DataFrame) -> pd.DataFrame:
    """Every recorded (step, pair) case of a recorder frame, one row each.

    Columns: ``row`` (the frame's index label), ``epoch``, ``step``, ``iteration``, ``short``,
    ``long``, ``cosine`` and ``c`` on the shared rows, ``alpha`` (the rule's, at the recorder's
    ``beta``), ``ratio`` (norm of the long gradient on the shared rows over the short one's),
    ``opposed`` (``c < 0``) and ``fired`` (opposed and ``alpha < 1``: the rule acted on the pair
    itself, not only through the cap). docs/method.md §3.
    """
    parts = []
    for a, b, _ in pair_columns(frame, "alpha"):
        need = [f"cos_{a}_{b}", f"c_{a}_{b}", f"ovnorm_{a}_{b}", f"norm_{a}"]
        missing = [c for c in need if c not in frame]
        if missing:
            raise ValueError(f"the frame lacks {missing}: record with gradients (GradientRecorder)")
        c = frame[f"c_{a}_{b}"].to_numpy(dtype=float)
        al = frame[f"alpha_{a}_{b}"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = frame[f"ovnorm_{a}_{b}"].to_numpy(dtype=float) / frame[f"norm_{a}"].to_numpy(dtype=float)
        parts.append(pd.DataFrame({
            "row": frame.index, "epoch": frame["epoch"].to_numpy(), "step": frame["step"].to_numpy(),
            "iteration": frame["iteration"].to_numpy(), "short": a, "long": b,
            "cosine": frame[f"cos_{a}_{b}"].to_numpy(dtype=float), "c": c, "alpha": al,
            "ratio": ratio, "opposed": c < 0, "fired": (c < 0) & (al < 1),
        }))
    return pd.concat(parts, ignore_index=True)


def choose_conflicts(
    frame: pd.DataFrame, alpha: float = 0.5, max_ratio: float = 4.0
) -> dict[str, tuple[int, int, int]]:
    """A *typical* and the *strongest* recorded conflict, each ``(row label, short, long)``.

    ``typical``: :func:`pick_conflict` (alpha near ``alpha``, gradients of similar size).
    ``strongest``: the smallest alpha among the cases where the rule fired and the two gradients
    differ in size by at most ``max_ratio`` on the shared rows (so both arrows of a 2-D picture
    are visible; a tiny short-code gradient gives a tiny threshold and an extreme but
    uninformative alpha). Empty when the rule never fired; no ``strongest`` when no fired case
    has comparable norms. docs/method.md §3.
    """
    if not max_ratio >= 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    out: dict[str, tuple[int, int, int]] = {}
    typical = pick_conflict(frame, alpha)
    if typical is None:
        return out
    out["typical"] = typical
    cases = conflict_cases(frame)
    ok = cases[cases["fired"] & (cases["ratio"] <= max_ratio) & (cases["ratio"] >= 1 / max_ratio)]
    if len(ok):
        best = ok.sort_values(["alpha", "cosine"], kind="stable").iloc[0]
        out["strongest"] = (best["row"], int(best["short"]), int(best["long"]))
    return out


def describe_conflict(
    frame: pd.DataFrame, label, short: int, long: int, beta: float = 1.0, norm: str = "own"
) -> dict:
    """The numbers behind one recorded conflict (a row label of ``frame`` and a pair of lengths).

    ``tau_i`` is recomputed from the recorded norms at ``beta`` / ``norm`` (the recorder's
    settings); ``own share`` is the component of ``g_i + g_j`` along ``g_i`` in units of
    ``||g_i||`` (1 + c / ||g_i||^2), ``own share with rule`` that of ``g_i + alpha g_j``, and
    ``floor`` the pairwise guarantee ``1 - beta / (K - 1)`` (docs/method.md §3).
    """
    check_choice(norm, NORMS, "norm")
    cols = pair_columns(frame, "alpha")
    bits = sorted({a for a, _, _ in cols} | {b for _, b, _ in cols})
    if short not in bits or long not in bits or short >= long:
        raise ValueError(f"short and long must be lengths in {bits} with short < long, got {short}, {long}")
    row = frame.loc[label]
    K = len(bits)
    ni = float(row[f"norm_{short}"])
    ref = ni if norm == "own" else float(row[f"norm_{bits[0]}"])
    tau = beta * ref**2 / (K - 1)
    c = float(row[f"c_{short}_{long}"])
    al = float(row[f"alpha_{short}_{long}"])
    return {
        "epoch": int(row["epoch"]), "step": int(row["step"]), "iteration": int(row["iteration"]),
        "short": short, "long": long, "cosine": float(row[f"cos_{short}_{long}"]), "c_ij": c,
        "||g_i||": ni, "||g_j|| (shared rows)": float(row[f"ovnorm_{short}_{long}"]),
        "tau_i": tau, "alpha": al, "own share": 1 + c / ni**2,
        "own share with rule": 1 + al * c / ni**2, "floor": 1 - beta / (K - 1),
    }
