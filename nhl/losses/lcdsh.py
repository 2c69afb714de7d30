"""LCDSH: Locality-Constrained Deep Supervised Hashing (IJCAI 2017); docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, code_sign, pairwise_similarity
from .prefix import prefix_products, symmetric_backprop


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
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        Every length's ``theta = 1/2 u u^T`` and ``1/2 b b^T`` come from block products
        (:func:`~nhl.losses.prefix.prefix_products`). Per pair, the likelihood's derivative with
        respect to ``theta`` is ``-s sigmoid(-s theta)`` and the quantisation term's
        ``2 lambda (sigma(theta) - sigma(b b^T / 2)) sigma(theta) (1 - sigma(theta))``, both over
        the number of pairs; ``theta``'s Gram matrix takes them to ``h``
        (:func:`~nhl.losses.prefix.symmetric_backprop`; docs/method.md §2, §5).
        """
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        n = h.shape[0]
        others = 1.0 - torch.eye(n, dtype=h.dtype, device=h.device)
        n_pairs = others.sum().clamp_min(1)
        s = 2 * pairwise_similarity(y, y) - 1
        lam = h.new_tensor([f.lam for f in losses])[:, None, None]
        theta = prefix_products(h, h, bits).mul_(0.5)
        b = code_sign(h)
        target = torch.sigmoid(prefix_products(b, b, bits).mul_(0.5))
        x = -s * theta
        likelihood = (F.softplus(x) * others).sum((1, 2)) / n_pairs
        sig = torch.sigmoid(theta)
        gap = sig - target
        quant = (gap.pow(2) * others).sum((1, 2)) / n_pairs
        dtheta = (-s * torch.sigmoid(x) + 2 * lam * gap * sig * (1 - sig)) * (others / n_pairs)
        dh = symmetric_backprop(0.5 * dtheta, h, bits)
        return likelihood + lam[:, 0, 0] * quant, dh
