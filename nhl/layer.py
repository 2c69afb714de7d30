"""The Nested Hash Layer (docs/method.md §1).

One linear map ``W`` (L_K x d) and bias ``b`` produce the longest code's real-valued output;
every shorter length is a prefix of it. A short code is literally the first bits of every
longer code, so a database stores the longest code once and reads any shorter one off it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from .validation import check_bit_list

DEFAULT_BITS: tuple[int, ...] = (8, 16, 32, 64, 128)


class NestedHashLayer(nn.Module):
    """Shared linear hash head whose outputs for each length are prefixes of the longest.

    Args:
        in_features: width ``d`` of the backbone features.
        bit_list: strictly increasing code lengths ``L_1 < ... < L_K``. A single length is the
            ordinary single-length hash layer (the baseline).

    ``forward(z)`` returns a list of K tensors; the k-th has shape (B, bit_list[k]) and equals
    the first ``bit_list[k]`` columns of the last. Parameters: ``weight`` (L_K x d), initialised
    N(0, 0.01^2), and ``bias`` (L_K), initialised 0: no more than a single L_K-bit layer.
    """

    def __init__(self, in_features: int, bit_list: Sequence[int] = DEFAULT_BITS):
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
        self.bit_list: tuple[int, ...] = check_bit_list(bit_list)
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(self.bit_list[-1], in_features))
        self.bias = nn.Parameter(torch.zeros(self.bit_list[-1]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W ~ N(0, 0.01^2), b = 0 (docs/method.md §1)."""
        nn.init.normal_(self.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.bias)

    @property
    def max_bits(self) -> int:
        return self.bit_list[-1]

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The longest code's real-valued output ``h_K = z W^T + b`` (B x L_K), one matmul."""
        if z.dim() != 2 or z.shape[1] != self.in_features:
            raise ValueError(
                f"NestedHashLayer expects features of shape (batch, {self.in_features}), "
                f"got {tuple(z.shape)}"
            )
        return nn.functional.linear(z, self.weight, self.bias)

    def split(self, h: torch.Tensor) -> list[torch.Tensor]:
        """Prefixes ``h[:, :L_k]`` of the longest output, one per length."""
        return [h[:, :bits] for bits in self.bit_list]

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        return self.split(self.project(z))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, bit_list={self.bit_list}"


def binarize(h: torch.Tensor) -> torch.Tensor:
    """Hash codes from real-valued outputs: +1 where h >= 0, -1 elsewhere (sign(0) -> +1)."""
    if not isinstance(h, torch.Tensor):
        h = torch.as_tensor(h)
    if h.is_floating_point() and not torch.isfinite(h).all():
        raise ValueError("binarize got NaN or infinite values; the network output is not finite")
    return torch.where(h >= 0, torch.ones_like(h), -torch.ones_like(h))


@functools.lru_cache(maxsize=64)
def prefix_mask(
    bits: tuple[int, ...], width: int, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(K, width) mask of the nested prefixes: row k is 1 on the first ``L_k`` positions (the
    bits, or rows of ``W``, that the ``L_k``-bit code owns) and 0 beyond. Cached per argument
    set, so do not modify the result in place."""
    lens = torch.tensor(bits, device=device)
    return (torch.arange(width, device=device)[None, :] < lens[:, None]).to(dtype)
