"""Shared machinery of the base hashing objectives (docs/method.md §2).

* :class:`HashLoss`: the base class. ``forward(u, y, idx)`` takes the raw linear-layer output
  ``u`` (B x bits), float multi-hot labels ``y`` (B x C) and sample ids ``idx`` (B,) and returns a
  scalar. Hyper-parameters are keyword arguments checked against the class's ``defaults``.
* :func:`pairwise_similarity`: s_ij = 1 if y_i . y_j > 0 else 0.
* :class:`MemoryBank`: the latest training outputs and labels, indexed by sample id. It is
  written only in training mode, so evaluating a validation loss never leaks other codes into it
  (the public code wrote query codes into its banks every time it computed a test loss).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_rows, gathering_banks
from ..validation import check_positive_int


def pairwise_similarity(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 if the label vectors share a class (y1_i . y2_j > 0), else 0; float (B1 x B2)."""
    return (y1 @ y2.T > 0).to(y1.dtype)


def pairwise_logistic(theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of s under sigma(theta), stable: log(1 + e^theta) - s theta."""
    return F.softplus(theta) - s * theta


def code_sign(u: torch.Tensor) -> torch.Tensor:
    """sign(u) with sign(0) = +1, the package's binarisation (docs/method.md §1); no gradient."""
    return torch.where(u >= 0, 1.0, -1.0).to(u.dtype)


class MemoryBank(nn.Module):
    """Latest training outputs ``U`` (n_train x bits) and labels ``Y`` (n_train x C) by sample id.

    Buffers (saved in ``state_dict``, moved by ``.to``): ``U``, ``Y`` and ``filled`` (bool, which
    ids have been written). Losses average over the filled rows only, so the zero rows of a fresh
    bank do not act as fake dissimilar neighbours early in the first epoch.

    :meth:`write` replaces the buffers by updated copies instead of writing in place, so a graph
    built on the previous bank (e.g. a second backward pass in the same step) stays valid.
    """

    U: torch.Tensor
    Y: torch.Tensor
    filled: torch.Tensor

    def __init__(self, n_train: int, bits: int, n_classes: int):
        super().__init__()
        self.register_buffer("U", torch.zeros(n_train, bits))
        self.register_buffer("Y", torch.zeros(n_train, n_classes))
        self.register_buffer("filled", torch.zeros(n_train, dtype=torch.bool))

    @property
    def n_filled(self) -> int:
        return int(self.filled.sum())

    def write(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, inplace: bool = False) -> None:
        """Store detached outputs and labels at rows ``idx`` (the caller checks the ids).

        ``inplace``: write into the buffers instead of replacing them by updated copies (no
        copy of the whole bank per step); only for callers that keep no graph on the previous
        bank (the closed-form nested gradients; autograd would refuse a graph whose bank was
        modified in place, never use it silently)."""
        idx = idx.to(self.U.device)
        if inplace:
            self.U.index_put_((idx,), u.detach().to(self.U))
            self.Y.index_put_((idx,), y.detach().to(self.Y))
            self.filled.index_put_((idx,), torch.ones_like(idx, dtype=torch.bool))
            return
        self.U = self.U.index_put((idx,), u.detach().to(self.U))
        self.Y = self.Y.index_put((idx,), y.detach().to(self.Y))
        self.filled = self.filled.index_put((idx,), torch.ones_like(idx, dtype=torch.bool))

    def reset(self) -> None:
        """Forget everything (e.g. before re-training the same loss object)."""
        self.U = torch.zeros_like(self.U)
        self.Y = torch.zeros_like(self.Y)
        self.filled = torch.zeros_like(self.filled)


class HashLoss(nn.Module):
    """Base class of the hashing objectives: one instance per code length.

    Args:
        bits: code length L; ``u`` must have this many columns.
        n_classes: number of classes C; ``y`` must have this many columns.
        n_train: size of the training split; sample ids ``idx`` index it (memory banks have
            this many rows). Required for every loss so that all share one constructor.
        **hyper: the method's hyper-parameters; see the subclass's ``defaults``. Unknown names
            raise ``TypeError`` listing the accepted ones.

    Subclasses set ``name``, ``uses_bank``, ``defaults`` and implement :meth:`loss`. Memory-bank
    losses (``uses_bank = True``) own a :class:`MemoryBank` in ``self.bank`` (also reachable as
    ``self.U`` / ``self.Y``) that is written only while ``self.training`` is True. In eval mode
    the loss is still computed against the bank, which stays untouched; if the bank is still
    empty the batch itself stands in for it.
    """

    name: ClassVar[str] = ""
    uses_bank: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, n_classes: int, n_train: int, **hyper: Any):
        super().__init__()
        self.bits = check_positive_int(bits, "bits")
        self.n_classes = check_positive_int(n_classes, "n_classes")
        self.n_train = check_positive_int(n_train, "n_train")
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "(none)"
            raise TypeError(
                f"{type(self).__name__} got unknown hyper-parameter(s) {unknown}; "
                f"accepted: {accepted}"
            )
        self.hyper: dict[str, Any] = {**self.defaults, **hyper}
        self.bank: MemoryBank | None = (
            MemoryBank(self.n_train, self.bits, self.n_classes) if self.uses_bank else None
        )

    # -- memory bank -------------------------------------------------------------------------
    def bank_value(self, u: torch.Tensor) -> torch.Tensor:
        """What the bank stores for raw outputs ``u`` (the outputs themselves by default)."""
        return u

    @torch.no_grad()
    def fill_bank(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        """Write the outputs ``u`` of items ``idx`` (a refresh from the current network).

        :func:`nhl.train.fit` calls this for the whole training split before each epoch, so
        the bank never holds outputs of an older network than the epoch's start (see
        ``TrainConfig.bank_refresh``). Works in any mode; a loss without a bank ignores it.
        """
        if self.bank is None:
            return
        u, y, idx = self.check_inputs(u, y, idx)
        self._check_idx_range(idx)
        self.bank.write(self.bank_value(u), y, idx)

    @property
    def U(self) -> torch.Tensor:
        if self.bank is None:
            raise AttributeError(f"{type(self).__name__} has no memory bank")
        return self.bank.U

    @property
    def Y(self) -> torch.Tensor:
        if self.bank is None:
            raise AttributeError(f"{type(self).__name__} has no memory bank")
        return self.bank.Y

    def bank_reference(
        self, u_store: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None, inplace: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rows the batch is compared with: (U_ref, Y_ref, weight per row).

        Training mode: first write ``u_store`` / ``y`` at ``idx`` (``inplace``: see
        :meth:`MemoryBank.write`), then return the whole bank with weight 1 on filled rows and
        0 elsewhere. Eval mode: the bank as it is, untouched, or the batch itself (weights 1)
        while the bank is empty.
        """
        assert self.bank is not None
        if self.training:
            if idx is None:
                raise ValueError(
                    f"{type(self).__name__} keeps a memory bank and needs the sample ids idx "
                    "(positions in the training split) in training mode"
                )
            self._check_idx_range(idx)
            if gathering_banks():  # several processes: every bank gets the global batch
                self.bank.write(*gather_rows(u_store, y, idx), inplace=inplace)
            else:
                self.bank.write(u_store, y, idx, inplace=inplace)
        elif not bool(self.bank.filled.any()):
            store = u_store.detach()
            return store, y, torch.ones(store.shape[0], dtype=store.dtype, device=store.device)
        bank = self.bank
        return bank.U.to(u_store), bank.Y.to(y), bank.filled.to(u_store)

    def _check_idx_range(self, idx: torch.Tensor) -> None:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.n_train:
            raise ValueError(
                f"idx must hold sample ids in [0, n_train={self.n_train}), got values in "
                f"[{lo}, {hi}]; pass positions in the training split"
            )

    # -- input checks ----------------------------------------------------------------------------
    def check_inputs(
        self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validate shapes; return y as u's float dtype and idx as a long tensor (or None)."""
        if not isinstance(u, torch.Tensor) or not u.is_floating_point():
            raise TypeError(
                f"u must be a floating-point tensor (batch x {self.bits}), got {u!r:.80}"
            )
        if u.dim() != 2 or u.shape[1] != self.bits or u.shape[0] == 0:
            raise ValueError(
                f"u must have shape (batch, {self.bits}) for this {self.bits}-bit "
                f"{self.name} loss, got {tuple(u.shape)}"
            )
        y = torch.as_tensor(y, device=u.device)
        if y.dim() == 1:
            raise ValueError(
                "y must be a 2-D multi-hot matrix (batch x n_classes), got a 1-D tensor; one-hot "
                f"encode class ids first: torch.nn.functional.one_hot(y, {self.n_classes}).float()"
            )
        if y.dim() != 2 or y.shape != (u.shape[0], self.n_classes):
            raise ValueError(
                f"y must have shape (batch, n_classes) = ({u.shape[0]}, {self.n_classes}) to "
                f"match u, got {tuple(y.shape)}"
            )
        y = y.to(u.dtype)
        if idx is not None:
            idx = torch.as_tensor(idx, device=u.device)
            if idx.dim() != 1 or idx.shape[0] != u.shape[0]:
                raise ValueError(
                    f"idx must be a 1-D tensor of {u.shape[0]} sample ids (one per row of u), "
                    f"got shape {tuple(idx.shape)}"
                )
            if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
                raise ValueError(f"idx must hold integer sample ids, got dtype {idx.dtype}")
            idx = idx.long()
        return u, y, idx

    # -- the objective ---------------------------------------------------------------------------
    def forward(
        self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of raw outputs ``u`` (B x bits) for labels ``y`` (B x C); ``idx`` (B,) sample ids.

        ``idx`` is read only by memory-bank losses in training mode; elsewhere it may be None.
        """
        u, y, idx = self.check_inputs(u, y, idx)
        return self.loss(u, y, idx)

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def nested_terms(
        cls, losses: Sequence[HashLoss], outputs: Sequence[torch.Tensor], y: torch.Tensor,
        idx: torch.Tensor | None,
    ) -> list[torch.Tensor] | None:
        """All K losses of a nested layer at once, or ``None`` (then each is called in turn).

        ``losses[k]`` (all of this class) is applied to ``outputs[k]``; the result must equal
        ``[losses[k](outputs[k], y, idx) for k]`` and each term must depend only on its own
        ``outputs[k]``. Subclasses whose loss is a mean of elementwise terms batch the K
        lengths into one computation (:func:`stack_prefixes`), which removes most of the
        per-length overhead of a nested step.
        """
        return None

    @classmethod
    def nested_gradients(
        cls, losses: Sequence[HashLoss], h: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All K losses of a nested layer and their gradients in closed form, or ``None``.

        ``losses[k]`` (all of this class) reads the prefix ``h[:, :L_k]`` of the longest output
        ``h`` (B x L_K). Returns ``(terms, dh)``: ``terms`` (K,) equals the K losses called one
        by one (writing their memory banks alike) and ``dh`` (K, B, L_K) holds
        ``d terms[k] / d h`` (zero beyond column L_k), computed together for all K lengths
        (block products, elementwise passes or one batched backward pass, docs/method.md §5), so
        a nested step never traverses K loss graphs (:class:`nhl.NestedObjective`). ``None``
        (the default, or when its conditions fail) means autograd differentiates the losses one
        by one; every built-in loss offers it, tested against autograd
        (tests/test_nested_losses.py).
        """
        return None

    def extra_repr(self) -> str:
        hyper = ", ".join(
            f"{k}={v}"
            for k, v in self.hyper.items()
            if v is not None and not isinstance(v, torch.Tensor)
        )
        return f"bits={self.bits}, n_classes={self.n_classes}, n_train={self.n_train}" + (
            f", {hyper}" if hyper else ""
        )


@functools.lru_cache(maxsize=64)
def prefix_means(bits: tuple[int, ...], batch: int, device, dtype) -> torch.Tensor:
    """(K, L_K) matrix whose row k averages an elementwise term over ``h[:, :L_k]``:
    ``(term.sum(0) @ W.T)[k]`` is length k's mean, and ``W[k]`` broadcast over the batch is
    the gradient of that mean with respect to the term (cached; do not modify)."""
    lens = torch.tensor(bits, dtype=torch.float64)
    inside = torch.arange(bits[-1])[None, :] < lens[:, None].long()
    return (inside / (batch * lens[:, None])).to(device=device, dtype=dtype)


def concat_prefixes(outputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The K outputs (B x L_k) side by side, ``(B, sum_k L_k)``, and a (sum_k L_k, K) matrix
    whose column k averages length k's block: ``(elementwise.sum(0) @ avg)[k]`` is the mean
    of an elementwise term over ``outputs[k]``. Gradients reach each ``outputs[k]``.
    """
    cat = torch.cat(list(outputs), dim=1)
    lens = tuple(int(o.shape[1]) for o in outputs)
    return cat, _block_means(lens, int(cat.shape[0]), cat.device, cat.dtype)


@functools.lru_cache(maxsize=64)
def _block_means(lens: tuple[int, ...], batch: int, device, dtype) -> torch.Tensor:
    seg = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))
    avg = F.one_hot(seg, len(lens)).double() / (batch * torch.tensor(lens, dtype=torch.float64))
    return avg.to(device=device, dtype=dtype)


def check_nonnegative(value: Any, name: str, allow_none: bool = False) -> float | None:
    """Validate a non-negative real hyper-parameter."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_pm1_matrix(t: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Validate an explicit +1/-1 target tensor (centers, targets, tie-break) of a given shape."""
    t = torch.as_tensor(t).detach().float().cpu()
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if not bool(((t == 1) | (t == -1)).all()):
        raise ValueError(f"{name} must hold only +1/-1 entries")
    return t.clone()
