"""DCH: Deep Cauchy Hashing (Cao et al., CVPR 2018), docs/method.md §2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import HashLoss, check_nonnegative, pairwise_similarity
from .prefix import padded_gradients, prefix_columns_mask


class DCHLoss(HashLoss):
    """Class-balanced Cauchy cross-entropy on normalised Hamming-like distances.

    d_ij = (L / 2)(1 - cos(u_i, u_j)) over in-batch pairs i != j, shifted by a small ``eps``
    (in bits): d~ = d + eps. Pair loss (the Cauchy likelihood's negative log, stable form):

        s_ij log(1 + d~/gamma) + (1 - s_ij) log(1 + gamma/d~)

    Class balance: the mean over similar pairs plus the mean over dissimilar pairs (the paper's
    weights |S| / |S_1| and |S| / |S_0|); a batch with only one kind of pair uses the plain mean.
    Quantisation: lambda * mean_i log(1 + d(|u_i|, 1) / gamma), 1 the all-ones vector.

    ``eps`` keeps log(1 + gamma/d) finite when two dissimilar codes point the same way. The
    public code clamped cos at 0.99 instead, which leaves no gradient for a nearly collapsed
    dissimilar pair (cos > 0.99), exactly where it is needed; the shift keeps one.
    Cosines use outputs normalised with a 1e-8 floor on the norm. Hyper-parameters: ``gamma``
    (default 20), ``lam`` (lambda, default 0.1), ``eps`` (default 0.01).
    """

    name = "dch"
    defaults = {"gamma": 20.0, "lam": 0.1, "eps": 0.01}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__(bits, n_classes, n_train, **hyper)
        self.gamma = check_nonnegative(self.hyper["gamma"], "gamma")
        self.lam = check_nonnegative(self.hyper["lam"], "lam")
        self.eps = check_nonnegative(self.hyper["eps"], "eps")
        if self.gamma == 0 or self.eps == 0:
            raise ValueError("gamma and eps must be > 0 for DCH (they divide)")

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(a, dim=1, eps=1e-8) @ F.normalize(b, dim=1, eps=1e-8).T
        return (self.bits / 2) * (1 - cos)

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        n = u.shape[0]
        s = pairwise_similarity(y, y)
        others = 1.0 - torch.eye(n, dtype=u.dtype, device=u.device)
        d = self._distance(u, u).clamp_min(0) + self.eps
        pair = s * torch.log1p(d / self.gamma) + (1 - s) * torch.log1p(self.gamma / d)
        pos, neg = s * others, (1 - s) * others
        n_pos, n_neg = pos.sum(), neg.sum()
        balanced = (pair * pos).sum() / n_pos.clamp_min(1) + (pair * neg).sum() / n_neg.clamp_min(1)
        plain = (pair * others).sum() / (n_pos + n_neg).clamp_min(1)
        cauchy = torch.where((n_pos > 0) & (n_neg > 0), balanced, plain)
        ones = torch.ones(1, self.bits, dtype=u.dtype, device=u.device)
        quant = torch.log1p(self._distance(u.abs(), ones) / self.gamma).mean()
        return cauchy + self.lam * quant

    @classmethod
    def nested_gradients(cls, losses, h, y, idx):
        """The K lengths' losses and their gradients with respect to ``h``, batched.

        The loss written over a leading length dimension on the zero-padded prefixes of ``h``
        (their cosines are the prefixes' own), differentiated in one backward pass
        (:func:`~nhl.losses.prefix.padded_gradients`; docs/method.md §5).
        """
        last = losses[-1]
        h, y, idx = last.check_inputs(h, y, idx)
        bits = tuple(f.bits for f in losses)
        n = h.shape[0]
        s = pairwise_similarity(y, y)
        others = 1.0 - torch.eye(n, dtype=h.dtype, device=h.device)
        pos, neg = s * others, (1 - s) * others
        n_pos, n_neg = pos.sum(), neg.sum()

        def per_length(name):
            return h.new_tensor([getattr(f, name) for f in losses])[:, None, None]

        gamma, eps, lam = per_length("gamma"), per_length("eps"), per_length("lam")
        half = h.new_tensor(bits)[:, None, None] / 2
        ones = prefix_columns_mask(bits, h)  # (K, 1, L_K): each length's all-ones vector

        def distance(a, b):
            cos = F.normalize(a, dim=2, eps=1e-8) @ F.normalize(b, dim=2, eps=1e-8).transpose(1, 2)
            return half * (1 - cos)

        def terms(H):
            d = distance(H, H).clamp_min(0) + eps
            pair = s * torch.log1p(d / gamma) + (1 - s) * torch.log1p(gamma / d)
            if n_pos > 0 and n_neg > 0:
                cauchy = (pair * pos).sum((1, 2)) / n_pos + (pair * neg).sum((1, 2)) / n_neg
            else:
                cauchy = (pair * others).sum((1, 2)) / (n_pos + n_neg).clamp_min(1)
            quant = torch.log1p(distance(H.abs(), ones) / gamma).mean((1, 2))
            return cauchy + lam[:, 0, 0] * quant

        return padded_gradients(terms, h, bits)
