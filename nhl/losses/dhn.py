"""DHN: Deep Hashing Network (Zhu et al., AAAI 2016), docs/method.md §2."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, pairwise_logistic, pairwise_similarity, prefix_means
from .prefix import bank_products, pairwise_logistic_gradients, prefix_backprop


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log(cosh(x)) without overflow: |x| + log(1 + e^{-2|x|}) - log 2."""
    a = x.abs()
    return a + F.softplus(-2 * a) - math.log(2.0)


class DHNLoss(HashLoss):
    """Pairwise logistic likelihood against the memory bank, plus a log-cosh quantisation term.

    With theta_ij = 1/2 u_i . U_j over the filled bank rows j (the batch itself included):

        mean_ij [ log(1 + e^theta_ij) - s_ij theta_ij ] + alpha * mean log cosh(|u| - 1)

    on the raw outputs u, log(1 + e^x) computed as softplus. Hyper-parameter: ``alpha``
    (default 0.1). The quantisation term is DHN's smooth log cosh, the same as the public
    reference code computes (docs/method.md §2).
    """

    name = "dhn"
    uses_bank = True
    defaults = {"alpha": 0.1}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.alpha = check_nonnegative(self.hyper["alpha"], "alpha")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        bank_u, bank_y, weight = self.bank_reference(u, y, idx)
        theta = 0.5 * u @ bank_u.T
        pair = pairwise_logistic(theta, pairwise_similarity(y, bank_y))
        pair = (pair * weight).sum() / (u.shape[0] * weight.sum())
        return pair + self.alpha * log_cosh(u.abs() - 1).mean()

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        Every length's inner products with the bank come from one block product of the longest
        codes (:func:`~nhl.losses.prefix.prefix_products`); with ``theta = 1/2 P``, the
        likelihood's gradient is ``w_j (sigmoid(theta) - s) / (B sum w)`` per pair, taken back
        to ``h`` block by block (:func:`~nhl.losses.prefix.prefix_backprop`); the log-cosh term's
        derivative is ``tanh(|u| - 1) sign(u)``. ``None`` when the lengths' banks are not
        prefixes of the longest's (docs/method.md §2, §5).
        """
        got = bank_products(losses, h, y, idx)
        if got is None:
            return None
        h, bank_u, weight, bits, P = got.h, got.bank, got.weight, got.bits, got.P
        norm = h.shape[0] * weight.sum()
        pair, G = pairwise_logistic_gradients(P, pairwise_similarity(got.y, got.bank_y), weight, norm)
        dh = prefix_backprop(G, bank_u, bits)
        x = h.abs() - 1
        W = prefix_means(bits, h.shape[0], h.device, h.dtype)
        alpha = h.new_tensor([f.alpha for f in losses])
        terms = pair + alpha * (W @ log_cosh(x).sum(0))
        dh += (alpha[:, None] * W)[:, None, :] * (torch.tanh(x) * torch.sign(h))
        return terms, dh
