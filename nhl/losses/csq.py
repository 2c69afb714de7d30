"""CSQ: Central Similarity Quantization (Yuan et al., CVPR 2020), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, check_pm1_matrix, concat_prefixes, prefix_means
from .prefix import prefix_targets
from .targets import (
    concat_label_targets,
    csq_centers,
    label_targets,
    make_generator,
    random_sign_vector,
)


class CSQLoss(HashLoss):
    """Binary cross-entropy towards per-class hash centers, plus a quantisation term.

    With t the sample's target (its class center; for several labels the sign of the sum of
    their centers, zeros filled from the fixed ``tie_break`` vector):

        BCE((tanh u + 1)/2, (t + 1)/2) + lambda * mean (|tanh u| - 1)^2

    Since (tanh u + 1)/2 = sigmoid(2u), the BCE is evaluated as
    ``binary_cross_entropy_with_logits(2u, (t + 1)/2)``: exact and stable even where tanh
    saturates (the public code's BCE on tanh clips the log at -100 instead).

    Hyper-parameters: ``lam`` (lambda, default 1e-4); ``centers`` (C x bits, +-1; default
    :func:`~nhl.losses.targets.csq_centers`: Hadamard rows when 2 * bits >= C, random balanced
    centers otherwise); ``tie_break`` (bits,) +-1; ``seed`` (default 0) for whatever is drawn.
    :func:`nhl.losses.build_nested` passes prefixes of one long set of centers here. Buffers:
    ``centers``, ``tie_break``.
    """

    name = "csq"
    defaults = {"lam": 1e-4, "centers": None, "tie_break": None, "seed": 0}

    centers: torch.Tensor
    tie_break: torch.Tensor

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.lam = check_nonnegative(self.hyper["lam"], "lam")
        gen = make_generator(self.hyper["seed"])
        centers = self.hyper["centers"]
        if centers is None:
            centers = csq_centers(self.n_classes, self.bits, gen)
        centers = check_pm1_matrix(centers, "centers", (self.n_classes, self.bits))
        tie = self.hyper["tie_break"]
        tie = random_sign_vector(self.bits, gen) if tie is None else tie
        self.register_buffer("centers", centers)
        self.register_buffer("tie_break", check_pm1_matrix(tie, "tie_break", (self.bits,)))

    def targets_for(self, y: torch.Tensor) -> torch.Tensor:
        """Per-sample +-1 targets (B x bits) for multi-hot labels y."""
        return label_targets(y, self.centers.to(y), self.tie_break.to(y))

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        t = self.targets_for(y)
        center = F.binary_cross_entropy_with_logits(2 * u, (t + 1) / 2)
        return center + self.lam * (torch.tanh(u).abs() - 1).pow(2).mean()

    @classmethod
    def nested_terms(cls, losses, outputs, y, idx):
        """The K lengths' losses in one elementwise pass over the outputs side by side.

        With t = +-1, BCE(2u, (t + 1)/2) = softplus(-2 u t): one transcendental per entry.
        """
        u, y, idx = losses[-1].check_inputs(outputs[-1], y, idx)
        U, avg = concat_prefixes(outputs)
        T = concat_label_targets(y, [f.centers for f in losses], [f.tie_break for f in losses])
        lam = U.new_tensor([f.lam for f in losses])
        center = F.softplus(-2 * U * T).sum(0) @ avg
        quant = (torch.tanh(U).abs() - 1).pow(2).sum(0) @ avg
        return list((center + lam * quant).unbind(0))

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        Needs prefix targets (``build_nested(..., nested_targets=True)``, the default): then
        every length's target is a prefix of the longest's and all terms are elementwise in
        ``h``. With x = -2 h t, BCE = softplus(x), d softplus(x) / dh = -2 t sigmoid(x), and
        d (|tanh h| - 1)^2 / dh = 2 (|tanh h| - 1) sign(tanh h) (1 - tanh^2 h); length k's
        gradient is that elementwise gradient times ``1 / (B L_k)`` on its first L_k columns.
        Returns ``None`` for other targets (autograd then differentiates :meth:`nested_terms`).
        """
        if not prefix_targets(losses, ("centers", "tie_break")):
            return None
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        t = last.targets_for(y)
        x = h * t * -2
        th = torch.tanh(h)
        a = th.abs() - 1
        W = prefix_means(bits, h.shape[0], h.device, h.dtype)  # (K, L_K)
        g_center = torch.sigmoid(x).mul_(t).mul_(-2)
        g_quant = torch.sign(th).mul_(a).mul_(th * th - 1).mul_(-2)
        # softplus(x) = max(x, 0) - log sigmoid(|x|): exact, and several times faster on the CPU
        # than F.softplus (which also replaces log1p(exp(x)) by x above x = 20)
        center = x.clamp_min(0).sub_(torch.sigmoid(x.abs()).log_()).sum(0)
        if all(f.lam == last.lam for f in losses):  # one lambda (the usual case): one product each
            terms = W @ torch.add(center, a.pow_(2).sum(0), alpha=last.lam)
            return terms, g_center.add_(g_quant, alpha=last.lam).unsqueeze(0).mul(W[:, None, :])
        lam = h.new_tensor([f.lam for f in losses])
        terms = W @ center + lam * (W @ a.pow_(2).sum(0))
        dh = W[:, None, :] * (g_center + lam[:, None, None] * g_quant)
        return terms, dh
