"""All K lengths of a nested layer for the price of one (docs/method.md §5).

A nested code's inner product at length ``L_k`` is the sum of its block products over the first
k blocks of bits, ``u[:, :L_k] @ v[:, :L_k]^T = sum_{j <= k} u[:, B_j] @ v[:, B_j]^T`` with
``B_j`` the bits ``L_{j-1} .. L_j - 1``. So every length's similarity matrix (batch x batch, or
batch x memory bank) comes from one product of the longest codes split into blocks, accumulated
block after block: the arithmetic of a single ``L_K``-bit product (:func:`prefix_products`).

Going back is the same in reverse: length k's gradient with respect to the outputs is
``G_k @ v[:, :L_k]`` for the gradient ``G_k`` of its loss with respect to its similarity matrix;
:func:`prefix_backprop` computes all K of them block by block (block ``j`` serves the lengths
``k >= j``), about ``sum_k L_k / L_K`` (two for the default lengths) products of the single
length. Elementwise terms (quantisation, balance) are averaged per length with
:func:`nhl.losses.base.prefix_means`.

Each base loss turns these into its own closed-form :meth:`~nhl.losses.HashLoss.nested_gradients`
(the K terms and their gradients ``d term_k / dh``, no autograd), tested against autograd in
float64 (tests/test_nested_losses.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch


@functools.lru_cache(maxsize=64)
def blocks(bits: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` of each block of bits: ``(0, L_1), (L_1, L_2), ...``."""
    edges = (0, *bits)
    return tuple(zip(edges[:-1], edges[1:]))


def prefix_products(u: torch.Tensor, v: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """``P`` (K, n_u, n_v) with ``P[k] = u[:, :L_k] @ v[:, :L_k]^T``.

    One product per block of bits, each added to the previous length's (``addmm``): the
    multiplications of a single ``L_K``-bit product, K result matrices. ``u`` (n_u, >= L_K) and
    ``v`` (n_v, >= L_K) need only their first ``L_K`` columns.
    """
    bits = tuple(bits)
    out = u.new_empty(len(bits), u.shape[0], v.shape[0])
    for k, (s, e) in enumerate(blocks(bits)):
        ub, vt = u[:, s:e], v[:, s:e].T
        if k == 0:
            torch.mm(ub, vt, out=out[0])
        else:
            torch.addmm(out[k - 1], ub, vt, out=out[k])
    return out


def prefix_backprop(G: torch.Tensor, v: torch.Tensor, bits: Sequence[int], width: int | None = None) -> torch.Tensor:
    """``dh`` (K, n, width) with ``dh[k][:, :L_k] = G[k] @ v[:, :L_k]`` and zeros beyond ``L_k``.

    ``G`` (K, n, m) holds each length's gradient with respect to its similarity matrix
    ``P[k] = u[:, :L_k] @ v[:, :L_k]^T`` (for a fixed ``v``, such as a memory bank); the result
    is then each length's gradient with respect to ``u``. Block ``j`` of the result is one
    batched product of ``G[j:]`` with ``v``'s block ``j``. ``width`` defaults to ``L_K``.
    """
    bits = tuple(bits)
    K, n, _ = G.shape
    out = G.new_zeros(K, n, width or bits[-1])
    for j, (s, e) in enumerate(blocks(bits)):
        out[j:, :, s:e] = torch.matmul(G[j:], v[:, s:e])
    return out


def symmetric_backprop(G: torch.Tensor, u: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """Each length's gradient with respect to ``u`` of ``sum G[k] * (u[:, :L_k] @ u[:, :L_k]^T)``:
    ``(G[k] + G[k]^T) @ u[:, :L_k]``, zero beyond ``L_k`` (in-batch similarity matrices)."""
    return prefix_backprop(G + G.transpose(1, 2), u, bits, u.shape[1])


def prefix_row_sums(x: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """(K, n): ``x[:, :L_k].sum(1)`` for every length (block sums accumulated)."""
    bits = tuple(bits)
    return torch.stack([x[:, s:e].sum(1) for s, e in blocks(bits)]).cumsum(0)


def prefix_columns_mask(bits: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """(K, 1, L_K) mask, 1 on the first ``L_k`` columns of length k (for broadcasting over a
    batch)."""
    from ..layer import prefix_mask

    bits = tuple(bits)
    return prefix_mask(bits, bits[-1], like.device, like.dtype)[:, None, :]
