"""All K lengths of a nested layer for the price of one (docs/method.md §5).

A nested code's inner product at length ``L_k`` is the sum of its block products over the first
k blocks of bits, ``u[:, :L_k] @ v[:, :L_k]^T = sum_{j <= k} u[:, B_j] @ v[:, B_j]^T`` with
``B_j`` the bits ``L_{j-1} .. L_j - 1``. So every length's similarity matrix (batch x batch, or
batch x memory bank) comes from one product of the longest codes split into blocks, accumulated
block after block: the arithmetic of a single ``L_K``-bit product (:func:`prefix_products`).

Going back: length k's gradient with respect to the outputs is ``G_k @ v[:, :L_k]`` for the
gradient ``G_k`` of its loss with respect to its similarity matrix; :func:`prefix_backprop`
computes all K of them, ``sum_k L_k / L_K`` (about two for the default lengths) times the
multiplications of one ``L_K``-bit product. Elementwise terms (quantisation, balance) are
averaged per length with :func:`nhl.losses.base.prefix_means`.

Each base loss turns these into its own :meth:`~nhl.losses.HashLoss.nested_gradients` (the K
terms and their gradients ``d term_k / dh``, by formula or one batched backward pass), tested
against autograd in float64 (tests/test_nested_losses.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def blocks(bits: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` of each block of bits: ``(0, L_1), (L_1, L_2), ...``."""
    edges = (0, *bits)
    return tuple(zip(edges[:-1], edges[1:]))


def prefix_products(u: torch.Tensor, v: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """``P`` (K, n_u, n_v) with ``P[k] = u[:, :L_k] @ v[:, :L_k]^T``.

    One product per block of bits, each added to the previous length's (``addmm``): the
    multiplications of a single ``L_K``-bit product, K result matrices. ``u`` (n_u, >= L_K) and
    ``v`` (n_v, >= L_K) need only their first ``L_K`` columns. Differentiable where an input
    requires a gradient (block products stacked and summed).
    """
    bits = tuple(bits)
    if torch.is_grad_enabled() and (u.requires_grad or v.requires_grad):  # differentiable
        return torch.stack([u[:, s:e] @ v[:, s:e].T for s, e in blocks(bits)]).cumsum(0)
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
    is then each length's gradient with respect to ``u``: ``sum_k L_k / L_K`` times the
    multiplications of one ``L_K``-bit product, one product per length (measured faster on a
    CPU than one product per block of bits, whose outputs are a few columns wide).
    ``width`` defaults to ``L_K``.
    """
    bits = tuple(bits)
    K, n, _ = G.shape
    out = G.new_zeros(K, n, width or bits[-1])
    for k, b in enumerate(bits):
        out[k, :, :b] = G[k] @ v[:, :b]
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


def padded_prefixes(h: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """(K, B, L_K): ``h``'s prefix of every length, zero beyond ``L_k``. A Gram matrix of a
    zero-padded prefix is the prefix's own, so batched formulas over the leading K dimension
    give every length's value at once."""
    return h.unsqueeze(0) * prefix_columns_mask(bits, h)


def padded_gradients(terms, h: torch.Tensor, bits: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(terms (K,), dh (K, B, L_K))`` from ``terms(H)``, a function of the zero-padded prefixes
    ``H`` (:func:`padded_prefixes`) whose k-th value reads only ``H[k]``: one backward pass
    through the batched formulas separates the K gradients (a batched vector-Jacobian
    product). For losses whose similarity matrices are small (in-batch pairs or triplets)."""
    with torch.enable_grad():
        H = padded_prefixes(h.detach(), bits).requires_grad_()
        values = terms(H)
        (dH,) = torch.autograd.grad(values.sum(), H)
    return values.detach(), dH * prefix_columns_mask(bits, h)


def prefix_targets(losses, names: Sequence[str]) -> bool:
    """Whether every loss's buffers ``names`` (class targets, tie-break) are prefixes of the
    longest loss's along their last dimension. The answer is kept on the longest loss, keyed on
    the losses and their buffers' identity and version, so it is checked again whenever a
    buffer is replaced or modified in place."""
    last = losses[-1]
    key = []
    for f in losses:  # the buffers through _buffers: Module.__getattr__ is slow on a hot path
        for name in names:
            b = f._buffers[name]
            key.append((id(f), f.bits, id(b), b.data_ptr(), b._version))
    key = tuple(key)
    cached = last.__dict__.get("_prefix_check")
    if cached is not None and cached[0] == key:
        return cached[1]
    ok = all(
        f.bits <= last.bits and all(
            f._buffers[n].shape[-1] == f.bits
            and torch.equal(f._buffers[n], last._buffers[n][..., : f.bits]) for n in names)
        for f in losses
    )
    last.__dict__["_prefix_check"] = (key, ok)
    return ok


def nested_bank_reference(losses, store: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None):
    """Every length's memory bank written as its own loss would (``bank_reference`` of the
    prefix ``store[:, :L_k]``), and the longest's reference ``(U, Y, weight)``, which serves
    every length through its prefixes; or ``None`` when the banks do not hold prefixes of the
    longest bank (then each length must use its own: the caller falls back to autograd).

    The banks are written together, from the same outputs, by every nested step and every
    refresh; whether they still agree is checked in full only when a bank buffer was replaced
    or modified by anything else since this function last wrote them (a refresh, a
    checkpoint, a user)."""
    if not _banks_in_step(losses):
        return None
    for f in losses[:-1]:
        f.bank_reference(store[:, : f.bits], y, idx, inplace=True)
    ref = losses[-1].bank_reference(store, y, idx, inplace=True)
    losses[-1].__dict__["_banks_seen"] = _bank_state(losses)  # holds the tensors: no id reuse
    return ref


def _bank_state(losses) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
    tensors = tuple(f.bank._buffers[n] for f in losses for n in ("U", "Y", "filled"))
    return tensors, tuple(t._version for t in tensors)


def _banks_in_step(losses) -> bool:
    """Whether every bank holds the prefix of the longest bank (same rows filled, same labels)."""
    last = losses[-1]
    seen = last.__dict__.get("_banks_seen")
    tensors, versions = _bank_state(losses)
    if seen is not None and len(seen[0]) == len(tensors) and seen[1] == versions \
            and all(a is b for a, b in zip(seen[0], tensors)):
        return True
    U, Y, filled = tensors[-3:]
    ok = all(
        torch.equal(tensors[3 * k + 2], filled) and torch.equal(tensors[3 * k + 1], Y)
        and torch.equal(tensors[3 * k], U[:, : f.bits])
        for k, f in enumerate(losses)
    )
    if ok:
        last.__dict__["_banks_seen"] = (tensors, versions)
    return ok


def pairwise_logistic_gradients(
    P: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, norm: torch.Tensor, scale: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """DHN's likelihood ``sum_ij w_j [log(1 + e^theta) - s theta] / norm`` with
    ``theta = scale P[k]`` for every length, and its gradient with respect to ``P``,
    ``scale w_j (sigmoid(theta) - s) / norm``.

    Returns ``(values (K,), G (K, n, m))``; ``G`` is written over ``P`` (which is consumed),
    one length at a time, so each length's matrices stay in the cache."""
    values = P.new_empty(P.shape[0])
    wn = weight * (scale / norm)
    for k in range(P.shape[0]):
        theta = P[k].mul_(scale)
        values[k] = (F.softplus(theta).mv(weight).sum() - (s * theta).mv(weight).sum()) / norm
        torch.sigmoid(theta, out=theta).sub_(s).mul_(wn)
    return values, P


@dataclass
class BankProducts:
    """What every memory-bank loss's nested gradients start from: the checked outputs ``h`` and
    labels ``y``, what the banks store (``store``: ``h`` or its clamp), the longest bank's
    reference ``(bank, bank_y, weight)`` and the prefix products ``P`` (K, B, N) of ``store``
    with the bank."""

    h: torch.Tensor
    y: torch.Tensor
    store: torch.Tensor
    bank: torch.Tensor
    bank_y: torch.Tensor
    weight: torch.Tensor
    bits: tuple[int, ...]
    P: torch.Tensor


def bank_products(losses, h: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> BankProducts | None:
    """Inputs checked, every length's bank written (:func:`nested_bank_reference`) and the
    prefix products of the stored outputs with the longest bank; ``None`` when the banks are
    not prefixes of the longest's."""
    last = losses[-1]
    h, y, idx = last.check_inputs(h, y, idx)
    store = last.bank_value(h)
    ref = nested_bank_reference(losses, store, y, idx)
    if ref is None:
        return None
    bits = tuple(f.bits for f in losses)
    return BankProducts(h, y, store, *ref, bits, prefix_products(store, ref[0], bits))
