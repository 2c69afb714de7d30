"""DSH: Deep Supervised Hashing (Liu et al., CVPR 2016), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch

from .base import HashLoss, check_nonnegative, pairwise_similarity


class DSHLoss(HashLoss):
    """Contrastive loss on squared Euclidean distances to the memory bank, plus a pull to +-1.

    With D_ij = ||u_i - U_j||^2 over the filled bank rows j (the batch itself included):

        mean_ij [ 1/2 s_ij D_ij + 1/2 (1 - s_ij) max(m - D_ij, 0) ] + alpha * mean |1 - |u||

    on the raw outputs u (no tanh). Hyper-parameters: ``m`` (margin, default None = 2 * bits),
    ``alpha`` (default 0.1). The quantisation term pulls every output towards +-1, the same as
    the public reference code computes (docs/method.md §2).
    """

    name = "dsh"
    uses_bank = True
    defaults = {"m": None, "alpha": 0.1}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        m = check_nonnegative(self.hyper["m"], "m", allow_none=True)
        self.m = 2.0 * self.bits if m is None else m
        self.hyper["m"] = self.m
        self.alpha = check_nonnegative(self.hyper["alpha"], "alpha")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        bank_u, bank_y, weight = self.bank_reference(u, y, idx)
        s = pairwise_similarity(y, bank_y)
        sq = u.pow(2).sum(1, keepdim=True) + bank_u.pow(2).sum(1)
        dist = (sq - 2 * u @ bank_u.T).clamp_min(0)  # ||u_i - U_j||^2
        pair = 0.5 * s * dist + 0.5 * (1 - s) * (self.m - dist).clamp_min(0)
        pair = (pair * weight).sum() / (u.shape[0] * weight.sum())
        return pair + self.alpha * (1 - u.abs()).abs().mean()
