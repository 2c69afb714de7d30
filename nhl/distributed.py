"""Several processes: DistributedDataParallel training launched by ``torchrun``.

``torchrun --nproc_per_node=N -m nhl train ...`` (or any script calling :func:`nhl.train.fit`
under torchrun) trains one model with N processes: NCCL on CUDA (one GPU per process,
``LOCAL_RANK`` picks it), Gloo on the CPU. :func:`init_from_env` joins the process group that
torchrun describes in the environment; nothing here is a home-made engine, it is
``torch.distributed`` and ``torch.nn.parallel.DistributedDataParallel``.

What each process does (docs/method.md §3-6, and what is exact):

* **Batches.** Every epoch has the same global batches as one process (the same seeded
  permutation, the same batch size); process r takes the items ``r, r + N, ...`` of each
  global batch (:func:`local_part`, what ``DistributedSampler`` does within an epoch). Each
  local loss is scaled by ``N * n_r / B`` so that DDP's gradient average equals the gradient
  of the mean over the global batch.
* **Batch norm** statistics are computed over the global batch: ``torch.nn.SyncBatchNorm`` on
  CUDA; on the CPU, where ``SyncBatchNorm`` is not available, :class:`GlobalBatchNorm` does
  the same with a differentiable all-reduce.
* **Dominance weighting**: the K per-length gradients ``g_k`` (K x L_K x d, small) are
  all-reduced before the weights are computed (:func:`all_reduce_mean`), so every process uses
  the same weights, equal to one process's weights on the global batch.
* **Memory banks** (DSH, DHN, DBDH): each training batch's outputs, labels and ids are gathered
  from all processes before the bank is written (:func:`gather_rows`), so every process keeps
  the same bank as one process would.
* Exact, therefore, for losses that are means over samples (CSQ, DPN; DSH, DHN, DBDH against
  their bank) without distillation: a run with N processes ends within float tolerance of one
  process with the same global batch (``tests/test_distributed.py``).
* **Approximate**: in-batch pairwise terms (DTSH's triplets, DCH, LCDSH, the bank losses'
  in-batch part is none) and the SP distillation term see only the local batch of B / N items,
  as in ordinary data-parallel training of such losses.
* Evaluation, checkpoints and the run folder are written by rank 0 only; every rank resumes
  from the same checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...).

    Returns True when a group of more than one process is active afterwards. NCCL when the
    device is CUDA (and ``LOCAL_RANK`` selects the GPU), Gloo otherwise. A group that is
    already initialised is used as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return is_active()
    if not launched_by_torchrun():
        return False
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    # Leave the group before the interpreter tears down: a Gloo group left to the exit-time
    # destructors can abort the process ("terminate called without an active exception").
    atexit.register(shutdown)
    return is_active()


def shutdown() -> None:
    """Leave the process group (``destroy_process_group``) if one is initialised; registered
    to run at exit by :func:`init_from_env`, so a finished torchrun job exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` for CUDA under torchrun, else ``device``."""
    if device.type == "cuda" and is_active():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def local_part(positions: torch.Tensor) -> torch.Tensor:
    """This process's share of a global batch: items ``rank, rank + N, ...``."""
    if not is_active():
        return positions
    return positions[rank() :: world_size()]


def local_scale(n_local: int, n_global: int) -> float:
    """``N n_r / B``: scaling of a local mean so that DDP's average is the global mean."""
    return world_size() * n_local / n_global


def _comm_device(t: torch.Tensor) -> torch.device:
    """NCCL reduces CUDA tensors only; Gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes (a copy on ``t``'s device; ``t`` itself is not modified)."""
    if not is_active():
        return t
    out = t.detach().to(_comm_device(t), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over processes (a copy; ``t`` itself is not modified)."""
    if not is_active():
        return t
    return all_reduce_sum(t) / world_size()


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate the rows of each tensor over all processes, in rank order (detached).

    Local batches may differ in size by one; they are padded for ``all_gather`` and trimmed.
    """
    if not is_active():
        return tuple(t.detach() for t in tensors)
    n = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    out = []
    for t in tensors:
        t = t.detach()
        pad = t.new_zeros((longest - t.shape[0], *t.shape[1:]))
        parts = [torch.empty((longest, *t.shape[1:]), dtype=t.dtype, device=t.device) for _ in sizes]
        dist.all_gather(parts, torch.cat([t, pad]))
        out.append(torch.cat([p[:s] for p, s in zip(parts, sizes)]))
    return tuple(out)


def barrier() -> None:
    if is_active():
        dist.barrier()


def broadcast_object(obj):
    """``obj`` of rank 0 on every process."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): every process gets the sum of the inputs, and the
    gradient of each process's input is the sum of every process's upstream gradient. What
    ``torch.distributed.nn.functional.all_reduce`` computes, without its deprecation warning."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm with statistics over all processes' batches, for the CPU (Gloo).

    ``torch.nn.SyncBatchNorm`` is CUDA-only; this is the same computation written with a
    differentiable all-reduce (:class:`_AllReduceSum`), so the backward pass all-reduces the
    statistics' gradients as SyncBatchNorm does. In eval mode, or with
    one process, it is an ordinary batch norm (running statistics are updated identically on
    every process, with the unbiased global variance).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_active()):
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                self.training or not self.track_running_stats, self.momentum or 0.0, self.eps,
            )
        all_reduce = _AllReduceSum.apply
        dims = [0, *range(2, x.dim())]
        c = x.shape[1]
        count = x.new_tensor([x.numel() / c])
        stats = all_reduce(torch.cat([x.sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        shape = [1, c] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        # two passes (mean, then squared deviations), as accurate as the one-process batch norm
        var = all_reduce(centred.pow(2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
                self.num_batches_tracked += 1
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch-norm layer computes its statistics over the global batch (see above)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        ref = next(iter([*module.parameters(), *module.buffers()]), None)
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype if ref.is_floating_point() else None}
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, **kw)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


@contextlib.contextmanager
def bank_gathering(enabled: bool) -> Iterator[None]:
    """While active, memory-bank losses write the whole global batch into their banks."""
    global _GATHER_BANKS
    previous, _GATHER_BANKS = _GATHER_BANKS, bool(enabled) and is_active()
    try:
        yield
    finally:
        _GATHER_BANKS = previous


_GATHER_BANKS = False


def gathering_banks() -> bool:
    return _GATHER_BANKS
