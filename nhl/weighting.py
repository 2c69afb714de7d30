"""Dominance-aware dynamic weighting, "A" in the paper (docs/method.md §3).

Given the gradient ``g_k`` of each length's objective with respect to the shared hash-layer weight
``W`` (L_K x d; rows beyond L_k are zero), find weights ``w_k`` that keep every short code's
objective dominant on the rows it shares with longer codes, so long codes cannot cancel the short
code's descent direction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .layer import prefix_mask
from .validation import check_bit_list, check_choice

NORMS = ("own", "shortest")


def _stack(grads: Sequence[torch.Tensor] | torch.Tensor, bit_list: tuple[int, ...]) -> torch.Tensor:
    g = grads if isinstance(grads, torch.Tensor) else torch.stack([t.detach() for t in grads])
    g = g.detach()
    if g.dim() < 2 or g.shape[0] != len(bit_list):
        raise ValueError(
            f"grads must hold one gradient per length ({len(bit_list)} for bit_list {bit_list}), "
            f"got {tuple(g.shape[:1])}"
        )
    if g.shape[1] != bit_list[-1]:
        raise ValueError(
            f"each gradient must have L_K = {bit_list[-1]} rows (the shape of the layer's weight), "
            f"got {g.shape[1]}"
        )
    return g.reshape(g.shape[0], g.shape[1], -1)


def overlap_inner_products(
    grads: Sequence[torch.Tensor] | torch.Tensor, bit_list: Sequence[int]
) -> torch.Tensor:
    """Matrix ``C`` (K x K) with ``C[i, j] = <g_i, g_j>`` over the overlap rows ``1..L_min(i,j)``.

    Rows beyond ``L_k`` of ``g_k`` are treated as zero (they are zero for a gradient of length
    k's objective); then the overlap inner product of a shorter ``i`` and a longer ``j`` is the
    full inner product, so ``C`` is one ``K x K`` Gram matrix of the flattened gradients.
    """
    bits = check_bit_list(bit_list)
    g = _stack(grads, bits)
    g = (g * prefix_mask(bits, g.shape[1], g.device, g.dtype)[:, :, None]).flatten(1)
    return g @ g.T


def overlap_cosines(
    grads: Sequence[torch.Tensor] | torch.Tensor, bit_list: Sequence[int], eps: float = 1e-12
) -> torch.Tensor:
    """Cosine similarity of every pair of gradients on their shared rows (K x K, diagonal 1)."""
    bits = check_bit_list(bit_list)
    g = _stack(grads, bits)
    g = g * prefix_mask(bits, g.shape[1], g.device, g.dtype)[:, :, None]
    c = overlap_inner_products(g, bits)
    sq = (g * g).sum(dim=2).cumsum(dim=1)  # (K, L_K): squared norm of rows 1..r of each g
    lens = torch.tensor(bits, device=g.device)
    overlap = torch.minimum(lens[:, None], lens[None, :]) - 1
    K = len(bits)
    ni = sq.gather(1, overlap)  # ||g_i||^2 on rows shared with j
    nj = sq.gather(1, overlap.T).T  # ||g_j||^2 on the same rows
    cos = c / (ni.sqrt() * nj.sqrt()).clamp_min(eps)
    cos[torch.arange(K), torch.arange(K)] = 1.0
    return cos


def dominance_alphas(
    grads: Sequence[torch.Tensor] | torch.Tensor,
    bit_list: Sequence[int],
    beta: float = 1.0,
    norm: str = "own",
) -> torch.Tensor:
    """Pairwise scaling factors ``alpha_ij`` (K x K, upper triangle used; others 1).

    docs/method.md §3 steps 2-5: ``c_ij`` on the overlap rows, threshold
    ``tau_i = beta ||g_i||^2 / (K - 1)`` (``norm="shortest"`` uses ``||g_1||`` for every ``i``, as
    the public reference code does), ``alpha_ij = tau_i / (-c_ij)`` when ``-c_ij > tau_i``, then the
    cap ``alpha_ij <= alpha_{i,i+1}`` for ``j > i + 1``.
    """
    bits = check_bit_list(bit_list)
    g = _stack(grads, bits)
    return alphas_from_inner_products(overlap_inner_products(g, bits), bits, beta=beta, norm=norm)


def alphas_from_inner_products(
    c: torch.Tensor, bit_list: Sequence[int], beta: float = 1.0, norm: str = "own"
) -> torch.Tensor:
    """:func:`dominance_alphas` from the overlap inner products ``c`` (K x K) of the gradients
    (:func:`overlap_inner_products`; its diagonal holds each ``||g_i||^2``)."""
    bits = check_bit_list(bit_list)
    check_choice(norm, NORMS, "norm")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    K = len(bits)
    if c.shape != (K, K):
        raise ValueError(f"c must be {K} x {K} for bit_list {bits}, got {tuple(c.shape)}")
    return dominance_rule(c, beta, norm)[0]


def dominance_rule(c: torch.Tensor, beta: float, norm: str) -> tuple[torch.Tensor, bool]:
    """:func:`alphas_from_inner_products` without the input checks (the training step's hot
    path: :class:`nhl.NestedObjective` checked its lengths, beta and norm once), and whether
    the rule rescaled anything (some ``alpha_ij < 1``). When nothing conflicts every alpha is
    exactly 1, so the scaling steps are skipped."""
    K = c.shape[0]
    if K == 1:
        return torch.ones(K, K, dtype=c.dtype, device=c.device), False
    own_sq = torch.diagonal(c)  # ||g_i||^2 over its own rows
    ref_sq = own_sq if norm == "own" else own_sq[:1].expand(K)
    tau = beta * ref_sq / (K - 1)
    upper, far, next_col = _triangles(K, c.device)
    neg = c.neg()
    conflict = upper & (neg > tau[:, None].clamp_min(0))  # -c_ij > tau_i >= 0, so c_ij < 0
    if not bool(conflict.any()):
        return torch.ones(K, K, dtype=c.dtype, device=c.device), False
    alphas = torch.where(conflict, tau[:, None] / neg.clamp_min(torch.finfo(c.dtype).tiny), 1.0)
    adjacent = alphas.gather(1, next_col)  # alpha_{i,i+1}; the last row reads its diagonal, 1
    return torch.where(far, torch.minimum(alphas, adjacent), alphas), True


@functools.lru_cache(maxsize=16)
def _triangles(K: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean (K, K) masks above the diagonal and above the first off-diagonal, and the
    (K, 1) column index ``min(i + 1, K - 1)`` of each row's right neighbour (cached)."""
    ones = torch.ones(K, K, dtype=torch.bool, device=device)
    next_col = torch.arange(1, K + 1, device=device).clamp_max(K - 1)[:, None]
    return torch.triu(ones, diagonal=1), torch.triu(ones, diagonal=2), next_col


def inner_products_from_outputs(
    dh: torch.Tensor, z: torch.Tensor, bit_list: Sequence[int] | None = None
) -> torch.Tensor:
    """:func:`overlap_inner_products` of ``g_k = dh_k^T z`` without forming the ``g_k``.

    ``dh`` (K, B, L_K): each length's gradient with respect to the layer output; ``z`` (B, d):
    the features. ``<g_i, g_j> = <dh_i, (z z^T) dh_j>``, which costs ``B^2 (d + K L_K)``
    instead of ``K L_K B d`` multiplications for the gradients themselves. With ``bit_list``
    the columns of ``dh_k`` beyond L_k are ignored (as :func:`overlap_inner_products` ignores
    rows of ``g_k`` beyond L_k); without it they must be zero.
    """
    if bit_list is not None:
        bits = check_bit_list(bit_list)
        dh = dh * prefix_mask(bits, dh.shape[2], dh.device, dh.dtype)[:, None, :]
    zz = z @ z.T
    D = dh.flatten(1)
    return D @ torch.matmul(zz, dh).flatten(1).T


def weights_from_alphas(alphas: torch.Tensor) -> torch.Tensor:
    """Steps 6: ``w_1 = 1``, ``w_n = prod_{j<n} alpha_{j,n}``, normalised so ``sum w = K``."""
    K = alphas.shape[0]
    raw = torch.where(_triangles(K, alphas.device)[0], alphas, 1.0).prod(dim=0)
    return K * raw / raw.sum()


def dominance_aware_weights(
    grads: Sequence[torch.Tensor] | torch.Tensor,
    bit_list: Sequence[int],
    beta: float = 1.0,
    norm: str = "own",
) -> torch.Tensor:
    """Weights ``w`` (K,) of docs/method.md §3; they sum to K and carry no gradient.

    Args:
        grads: ``grads[k]`` is d(loss_k + lambda_D SP_k)/dW, shape (L_K, d), for the layer's
            shared weight ``W``; a list of tensors or one (K, L_K, d) tensor.
        bit_list: the code lengths, increasing.
        beta: tolerance of the threshold ``tau_i``. After scaling,
            ``<g_i, g_i + sum_j alpha_ij g_j> >= (1 - beta) ||g_i||^2`` on the overlap rows: 1 (the
            default) keeps each short objective's direction a descent direction, smaller values
            demand stronger dominance (0 removes any conflicting longer gradient entirely).
        norm: ``"own"`` (the method) or ``"shortest"`` (the public code's variant).
    """
    return weights_from_alphas(dominance_alphas(grads, bit_list, beta=beta, norm=norm)).detach()
