"""DBDH: Deep Balanced Discrete Hashing (Zheng et al., Neurocomputing 2020), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch

from .base import HashLoss, check_nonnegative, pairwise_logistic, pairwise_similarity


class DBDHLoss(HashLoss):
    """DHN's pairwise likelihood on clamped outputs, plus a bit-balance penalty.

    With v = clamp(u, -1, 1), the bank storing v, and theta_ij = 1/2 v_i . V_j over the filled
    bank rows j (the batch itself included):

        mean_ij [ log(1 + e^theta_ij) - s_ij theta_ij ] + alpha * mean_i (mean_bits v_i)^2

    The penalty pushes each code towards as many +1 as -1 bits. Hyper-parameter: ``alpha``
    (default 0.1).
    """

    name = "dbdh"
    uses_bank = True
    defaults = {"alpha": 0.1}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.alpha = check_nonnegative(self.hyper["alpha"], "alpha")

    def bank_value(self, u: torch.Tensor) -> torch.Tensor:
        return u.clamp(-1, 1)

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        v = self.bank_value(u)
        bank_v, bank_y, weight = self.bank_reference(v, y, idx)
        theta = 0.5 * v @ bank_v.T
        pair = pairwise_logistic(theta, pairwise_similarity(y, bank_y))
        pair = (pair * weight).sum() / (u.shape[0] * weight.sum())
        return pair + self.alpha * v.mean(dim=1).pow(2).mean()
