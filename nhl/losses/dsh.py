"""DSH: Deep Supervised Hashing (Liu et al., CVPR 2016), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch

from .base import HashLoss, check_nonnegative, pairwise_similarity, prefix_means
from .prefix import bank_products, prefix_backprop, prefix_columns_mask, prefix_row_sums


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

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h`` in closed form.

        ``D = |u|^2 + |U|^2 - 2 u U^T`` per length from prefix sums of squares and one block
        product (:func:`~nhl.losses.prefix.prefix_products`); the contrastive term's derivative
        with respect to ``D`` is ``1/2 s - 1/2 (1 - s) [m - D >= 0]`` (zero where ``D`` was
        clamped at 0), and ``dD_ij / du_i = 2 u_i - 2 U_j``; the quantisation term
        ``|1 - |u||`` has derivative ``sign(|u| - 1) sign(u)``. ``None`` when the lengths' banks
        are not prefixes of the longest's (docs/method.md §2, §5).
        """
        got = bank_products(losses, h, y, idx)
        if got is None:
            return None
        h, bank_u, weight, bits, P = got.h, got.bank, got.weight, got.bits, got.P
        B = h.shape[0]
        s = pairwise_similarity(got.y, got.bank_y)
        norm = B * weight.sum()
        hh, uu = prefix_row_sums(h * h, bits), prefix_row_sums(bank_u * bank_u, bits)
        pair = h.new_empty(len(bits))
        similar = s > 0  # s is 0 or 1: each pair takes one of the two branches
        wn = weight / norm
        for k, f in enumerate(losses):
            raw = P[k].mul_(-2).add_(hh[k][:, None]).add_(uu[k][None, :])  # ||u_i - U_j||^2
            dist = raw.clamp_min(0)
            near = dist <= f.m  # where the hinge m - D is >= 0
            value = torch.where(similar, dist, (f.m - dist).clamp_min_(0))
            pair[k] = 0.5 * value.mv(weight).sum() / norm
            # d pair / d raw: 1/2 on similar pairs, -1/2 on dissimilar ones inside the margin,
            # 0 where D was clamped at 0; written over P[k]
            d = near.to(h.dtype).mul_(-0.5).masked_fill_(similar, 0.5)
            raw.copy_(d.mul_(raw >= 0).mul_(wn))
        G = P
        dh = 2 * G.sum(2)[:, :, None] * h * prefix_columns_mask(bits, h) - 2 * prefix_backprop(G, bank_u, bits)
        W = prefix_means(bits, B, h.device, h.dtype)
        alpha = h.new_tensor([f.alpha for f in losses])
        terms = pair + alpha * (W @ (1 - h.abs()).abs().sum(0))
        dh += (alpha[:, None] * W)[:, None, :] * (torch.sign(h.abs() - 1) * torch.sign(h))
        return terms, dh
