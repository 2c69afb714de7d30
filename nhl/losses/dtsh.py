"""DTSH: Deep Supervised Hashing with Triplet Labels (ACCV 2016); docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, code_sign, pairwise_similarity, prefix_means
from .prefix import prefix_products, symmetric_backprop


class DTSHLoss(HashLoss):
    """Triplet likelihood over all valid in-batch triplets, plus a quantisation term.

    A triplet (a, p, n) is valid when p != a shares a class with a (s_ap = 1) and n != a does
    not (s_an = 0). With t = u_a . u_p - u_a . u_n - margin on the raw outputs u:

        mean_valid -(t - log(1 + e^t)) + lambda * mean (u - sign u)^2

    where -(t - log(1 + e^t)) = softplus(-t) is computed in that stable form, so no clamping of
    t is needed (the public code clamped t to [-100, 50], which zeroes the gradient of badly
    violated triplets). All B^3 triplets are evaluated at once; a batch without a valid triplet
    gives a triplet term of 0 (still differentiable). Hyper-parameters: ``margin`` (default 5),
    ``lam`` (lambda, default 1).
    """

    name = "dtsh"
    defaults = {"margin": 5.0, "lam": 1.0}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.margin = check_nonnegative(self.hyper["margin"], "margin")
        self.lam = check_nonnegative(self.hyper["lam"], "lam")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        b = u.shape[0]
        s = pairwise_similarity(y, y)
        others = 1.0 - torch.eye(b, dtype=u.dtype, device=u.device)
        pos, neg = s * others, (1 - s) * others
        mask = pos[:, :, None] * neg[:, None, :]  # (a, p, n)
        inner = u @ u.T
        t = inner[:, :, None] - inner[:, None, :] - self.margin
        triplet = (F.softplus(-t) * mask).sum() / mask.sum().clamp_min(1)
        return triplet + self.lam * (u - code_sign(u)).pow(2).mean()

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        Each anchor's positives and negatives are listed once per batch (padded to the
        largest count, with a mask), so only valid triplets are evaluated, for every length at
        once from the prefix Gram matrices ``I_k = u[:, :L_k] u[:, :L_k]^T``
        (:func:`~nhl.losses.prefix.prefix_products`). With ``t = I_ap - I_an - margin`` the
        triplet term's derivative is ``-sigmoid(-t) / count``; it goes to ``I_ap`` and, with
        the opposite sign, to ``I_an``, and to ``h`` through the Gram matrix
        (:func:`~nhl.losses.prefix.symmetric_backprop`). The quantisation term
        ``(u - sign u)^2`` has derivative ``2 (u - sign u)`` (docs/method.md §2, §5).
        """
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        K, b = len(bits), h.shape[0]
        s = pairwise_similarity(y, y) > 0
        eye = torch.eye(b, dtype=torch.bool, device=h.device)
        pidx, pmask = _members(s & ~eye)
        nidx, nmask = _members(~s & ~eye)
        valid = pmask[:, :, None] & nmask[:, None, :]  # (b, P, N): anchor, positive, negative
        count = max(int(valid.sum()), 1)
        gram = prefix_products(h, h, bits)
        margin = h.new_tensor([f.margin for f in losses])[:, None, None, None]
        ip = gram.gather(2, pidx.expand(K, -1, -1))
        im = gram.gather(2, nidx.expand(K, -1, -1))
        t = ip[..., :, None] - im[..., None, :] - margin  # (K, b, P, N)
        triplet = (F.softplus(-t) * valid).sum((1, 2, 3)) / count
        dt = torch.sigmoid(-t).mul_(valid).mul_(-1 / count)
        G = h.new_zeros(K, b, b)
        G.scatter_add_(2, pidx.expand(K, -1, -1), dt.sum(3))
        G.scatter_add_(2, nidx.expand(K, -1, -1), -dt.sum(2))
        dh = symmetric_backprop(G, h, bits)
        gap = h - code_sign(h)
        W = prefix_means(bits, b, h.device, h.dtype)
        lam = h.new_tensor([f.lam for f in losses])
        terms = triplet + lam * (W @ gap.pow(2).sum(0))
        dh += (2 * lam[:, None] * W)[:, None, :] * gap
        return terms, dh


def _members(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a boolean (n, n) matrix: the column indices of its True entries first, padded
    to the largest count (n, C), and which of them are real (n, C)."""
    counts = m.sum(1)
    width = max(int(counts.max()), 1)
    order = torch.argsort((~m).to(torch.int8), dim=1, stable=True)[:, :width]
    return order, torch.arange(width, device=m.device)[None, :] < counts[:, None]
