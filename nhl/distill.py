"""Long-short cascade self-distillation, "D" in the paper (docs/method.md §4).

A similarity-preserving (SP) loss asks a shorter code to reproduce the batch's pairwise similarity
structure of a longer code (the teacher), so knowledge flows from long codes to short ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .layer import prefix_mask
from .validation import check_choice

MODES = ("adjacent", "longest", "all_pairs")


def similarity_matrix(h: torch.Tensor) -> torch.Tensor:
    """``G = H H^T`` (B x B) with each row L2-normalised."""
    if h.dim() != 2:
        raise ValueError(f"expected a (batch, bits) tensor, got shape {tuple(h.shape)}")
    return F.normalize(h @ h.T, p=2, dim=1)


def sp_loss(h_s: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving loss ``||G_t - G_s||_F^2 / B^2`` (docs/method.md §4).

    ``h_s`` (student) and ``h_t`` (teacher) may have different widths; they must share the batch.
    The teacher is used as given: detach it yourself (or use :func:`cascade_loss`) to stop its
    gradient.
    """
    if h_s.shape[0] != h_t.shape[0]:
        raise ValueError(
            f"student and teacher must share the batch dimension, got {h_s.shape[0]} and {h_t.shape[0]}"
        )
    b = h_s.shape[0]
    return (similarity_matrix(h_t) - similarity_matrix(h_s)).pow(2).sum() / (b * b)


def cascade_loss(
    outputs: Sequence[torch.Tensor], mode: str = "adjacent", detach_teacher: bool = True
) -> list[torch.Tensor]:
    """One distillation term per length; the last (longest code, no teacher) is 0.

    Modes:
        ``"adjacent"`` (the method): ``SP_k = SP(h_k, h_{k+1})``.
        ``"longest"``: every shorter code learns from the longest, ``SP_k = SP(h_k, h_K)``.
        ``"all_pairs"``: ``SP_k = sum_{j>k} SP(h_k, h_j)`` (every pair i < j once).
    With ``detach_teacher`` (default) the longer code receives no gradient from the term.
    """
    check_choice(mode, MODES, "distill_mode")
    outputs = list(outputs)
    K = len(outputs)
    if K == 0:
        raise ValueError("cascade_loss needs at least one output")
    zero = outputs[-1].new_zeros(())
    if K == 1:
        return [zero]
    if mode == "all_pairs" or len({h.shape[0] for h in outputs}) != 1:
        return _cascade_loop(outputs, mode, detach_teacher)
    # The K similarity matrices side by side, each from its own output, normalised at once.
    grams = F.normalize(torch.stack([h @ h.T for h in outputs]), p=2, dim=2)  # (K, B, B)
    teachers = grams[1:] if mode == "adjacent" else grams[-1:].expand(K - 1, -1, -1)
    if detach_teacher:
        teachers = teachers.detach()
    b = outputs[0].shape[0]
    terms = (teachers - grams[:-1]).pow(2).sum(dim=(1, 2)) / (b * b)
    return [*terms.unbind(0), zero]


def cascade_gradients(
    h: torch.Tensor, bit_list: Sequence[int], mode: str = "adjacent", eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`cascade_loss` of the prefixes ``h[:, :L_k]`` with detached teachers, and each
    term's gradient with respect to ``h``, in closed form (no autograd).

    Returns ``(terms, dh)``: ``terms`` (K,) with the last 0, ``dh`` (K, B, L_K) with
    ``dh[k] = d SP_k / d h`` (zero beyond column L_k; the teacher gets none). ``None`` for
    ``mode="all_pairs"`` (use :func:`cascade_loss`). With ``A_k = H_k H_k^T``,
    ``G_k = A_k / ||A_k||_row`` and ``E = d SP_k / d G_k = -2 (G_t - G_k) / B^2``, the row
    normalisation gives ``d/dA_k = (E - G_k rowsum(G_k * E)) / ||A_k||_row`` and the Gram
    ``d/dH_k = (dA + dA^T) H_k``. Prefixes are taken by zeroing the columns beyond L_k, so all
    K lengths go through one batched matrix product.
    """
    check_choice(mode, MODES, "distill_mode")
    if h.dim() != 2:
        raise ValueError(f"expected a (batch, bits) tensor, got shape {tuple(h.shape)}")
    bits = tuple(int(b) for b in bit_list)
    B, L = h.shape
    if not bits or bits[-1] != L:
        raise ValueError(f"bit_list {bits} must end with h's width {L}")
    got = student_gradients(h, bits, mode, eps)
    if got is None:
        return None
    terms, dH = got
    return torch.cat([terms, terms.new_zeros(1)]), torch.cat([dH, dH.new_zeros(1, B, L)])


def student_gradients(
    h: torch.Tensor, bits: tuple[int, ...], mode: str, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`cascade_gradients` of the K - 1 students only, ``(terms (K-1,), dh (K-1, B, L_K))``,
    without the input checks (:class:`nhl.NestedObjective` checked them once)."""
    K, (B, L) = len(bits), h.shape
    if mode == "all_pairs":
        return None
    if K == 1:
        return h.new_zeros(0), h.new_zeros(0, B, L)
    mask = prefix_mask(bits, L, h.device, h.dtype)[:, None, :]  # (K, 1, L): 1 on columns < L_k
    H = h.detach().unsqueeze(0) * mask  # (K, B, L): prefix k, zero-padded
    A = torch.bmm(H, H.transpose(1, 2))
    n = torch.linalg.vector_norm(A, dim=2, keepdim=True)
    denom = n.clamp_min(eps)
    G = A.div_(denom)
    teacher = G[1:] if mode == "adjacent" else G[-1:].expand(K - 1, -1, -1)
    Gs = G[:-1]
    D = teacher - Gs
    terms = D.pow(2).sum(dim=(1, 2)) / (B * B)
    E = D.mul_(-2 / (B * B))  # d SP_k / d G_k
    along = (Gs * E).sum(dim=2, keepdim=True)
    if bool((n[:-1] <= eps).any()):  # rows normalised by eps: their scale is a constant
        along = torch.where(n[:-1] > eps, along, 0.0)
    dA = E.sub_(Gs * along).div_(denom[:-1])
    return terms, torch.bmm(dA + dA.transpose(1, 2), H[:-1])


def _cascade_loop(outputs: list[torch.Tensor], mode: str, detach_teacher: bool) -> list[torch.Tensor]:
    """:func:`cascade_loss` term by term with :func:`sp_loss` (any mode; the reference)."""
    K = len(outputs)
    teachers = [h.detach() if detach_teacher else h for h in outputs]
    zero = outputs[-1].new_zeros(())
    terms: list[torch.Tensor] = []
    for k in range(K - 1):
        if mode == "adjacent":
            terms.append(sp_loss(outputs[k], teachers[k + 1]))
        elif mode == "longest":
            terms.append(sp_loss(outputs[k], teachers[-1]))
        else:
            terms.append(torch.stack([sp_loss(outputs[k], teachers[j]) for j in range(k + 1, K)]).sum())
    terms.append(zero)
    return terms
