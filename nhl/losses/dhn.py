"""DHN: Deep Hashing Network (Zhu et al., AAAI 2016), docs/method.md §2."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, pairwise_logistic, pairwise_similarity


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
