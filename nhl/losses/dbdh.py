"""DBDH: Deep Balanced Discrete Hashing (Zheng et al., Neurocomputing 2020), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch

from .base import HashLoss, check_nonnegative, pairwise_logistic, pairwise_similarity
from .prefix import (
    bank_products,
    pairwise_logistic_gradients,
    prefix_backprop,
    prefix_columns_mask,
    prefix_row_sums,
)


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

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        DHN's likelihood on ``v = clamp(u, -1, 1)`` (see :meth:`DHNLoss.nested_gradients`),
        plus the balance penalty ``alpha mean_i r_i^2`` with ``r_i`` the mean of ``v_i``'s first
        ``L_k`` bits, whose derivative is ``2 alpha r_i / (B L_k)``; the clamp passes gradients
        where ``-1 <= u <= 1``. ``None`` when the lengths' banks are not prefixes of the
        longest's (docs/method.md §2, §5).
        """
        got = bank_products(losses, h, y, idx)
        if got is None:
            return None
        h, v, bank_v, weight, bits = got.h, got.store, got.bank, got.weight, got.bits
        B = h.shape[0]
        pair, G = pairwise_logistic_gradients(got.P, pairwise_similarity(got.y, got.bank_y), weight,
                                              B * weight.sum())
        dv = prefix_backprop(G, bank_v, bits)
        lens = h.new_tensor(bits)
        alpha = h.new_tensor([f.alpha for f in losses])
        r = prefix_row_sums(v, bits) / lens[:, None]  # (K, B) mean of each prefix
        terms = pair + alpha * r.pow(2).mean(1)
        dv += (2 * alpha[:, None] * r / (lens[:, None] * B))[:, :, None] * prefix_columns_mask(bits, h)
        return terms, dv * ((h >= -1) & (h <= 1))
