"""DTSH: Deep Supervised Hashing with Triplet Labels (ACCV 2016); docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, code_sign, pairwise_similarity
from .prefix import padded_gradients, prefix_columns_mask


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
        """The K lengths' losses and their gradients with respect to ``h``, batched.

        Only the valid triplets are evaluated (their indices, once per batch, instead of all
        B^3 with a mask: the same sum), for every length at once on the zero-padded prefixes
        of ``h``, differentiated in one backward pass
        (:func:`~nhl.losses.prefix.padded_gradients`; docs/method.md §5).
        """
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        b = h.shape[0]
        s = pairwise_similarity(y, y)
        others = 1.0 - torch.eye(b, dtype=h.dtype, device=h.device)
        a, p, n = ((s * others)[:, :, None] * ((1 - s) * others)[:, None, :]).nonzero(as_tuple=True)
        count = max(len(a), 1)
        margin = h.new_tensor([f.margin for f in losses])[:, None]
        lam = h.new_tensor([f.lam for f in losses])
        mask = prefix_columns_mask(bits, h)
        per_bit = mask / (b * mask.sum(2, keepdim=True))  # length k's mean over its own bits
        sign = code_sign(h) * mask

        def terms(H):
            inner = H @ H.transpose(1, 2)
            t = inner[:, a, p] - inner[:, a, n] - margin
            return F.softplus(-t).sum(1) / count + lam * ((H - sign).pow(2) * per_bit).sum((1, 2))

        return padded_gradients(terms, h, bits)
