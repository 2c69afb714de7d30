"""LCDSH: Locality-Constrained Deep Supervised Hashing (IJCAI 2017); docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, code_sign, pairwise_similarity
from .prefix import padded_gradients, prefix_columns_mask


class LCDSHLoss(HashLoss):
    """Pairwise logistic loss with +-1 similarity, plus a sigmoid-space quantisation term.

    Over in-batch pairs i != j, with s~_ij = 2 s_ij - 1, theta = 1/2 u u^T on the raw outputs and
    b = sign(u) (sign(0) = +1):

        mean log(1 + e^{-s~ theta}) + lambda * mean (sigma(theta) - sigma(1/2 b b^T))^2

    log(1 + e^x) is computed as softplus, so theta needs no clamping. Hyper-parameter: ``lam``
    (lambda, default 3).
    """

    name = "lcdsh"
    defaults = {"lam": 3.0}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.lam = check_nonnegative(self.hyper["lam"], "lam")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        n = u.shape[0]
        others = 1.0 - torch.eye(n, dtype=u.dtype, device=u.device)
        n_pairs = others.sum().clamp_min(1)
        s = 2 * pairwise_similarity(y, y) - 1
        theta = 0.5 * u @ u.T
        likelihood = (F.softplus(-s * theta) * others).sum() / n_pairs
        b = code_sign(u)
        quant = ((torch.sigmoid(theta) - torch.sigmoid(0.5 * b @ b.T)).pow(2) * others).sum()
        return likelihood + self.lam * quant / n_pairs

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h``, batched.

        The loss written over a leading length dimension on the zero-padded prefixes of ``h``
        (their Gram matrices are the prefixes' own), differentiated in one backward pass
        (:func:`~nhl.losses.prefix.padded_gradients`; docs/method.md §5).
        """
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        n = h.shape[0]
        others = 1.0 - torch.eye(n, dtype=h.dtype, device=h.device)
        n_pairs = others.sum().clamp_min(1)
        s = 2 * pairwise_similarity(y, y) - 1
        lam = h.new_tensor([f.lam for f in losses])
        b = code_sign(h) * prefix_columns_mask(bits, h)  # the codes' prefixes, zero-padded
        target = torch.sigmoid(0.5 * b @ b.transpose(1, 2))

        def terms(H):
            theta = 0.5 * H @ H.transpose(1, 2)
            likelihood = (F.softplus(-s * theta) * others).sum((1, 2)) / n_pairs
            quant = ((torch.sigmoid(theta) - target).pow(2) * others).sum((1, 2))
            return likelihood + lam * quant / n_pairs

        return padded_gradients(terms, h, bits)
