"""Where training runs: device choice, mixed precision and moving batches (docs/method.md §6).

``TrainConfig.device`` is ``"auto"`` (CUDA when available, then Apple's MPS, then the CPU) or
an explicit torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
``TrainConfig.amp`` runs the backbone under CUDA autocast (float16 with a gradient scaler); the
nested head (hash layer, base losses, the weighting's per-length gradients and the SP Gram
matrices) always runs in float32.

What changes a run's numbers is the device *type* and ``amp``, not the device index, so only
those enter the run cache key (:func:`runtime_key`); a CPU run without amp has the same key as
before these options existed.
"""

from __future__ import annotations

import contextlib

import torch

AUTO = "auto"


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def check_device(spec: str) -> str:
    """Validate a device string (``"auto"`` or anything ``torch.device`` accepts)."""
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {spec!r}")
    spec = spec.strip().lower()
    if spec == AUTO:
        return spec
    try:
        dev = torch.device(spec)
    except RuntimeError as err:
        raise ValueError(f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from err
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device type {dev.type!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'")
    return spec


def resolve_device(spec: str = AUTO) -> torch.device:
    """The torch device for a config's ``device``; explains what to do when it is absent."""
    spec = check_device(spec)
    if spec == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {spec!r} was asked for but torch sees no CUDA device "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dev.type == "mps" and not mps_available():
        raise RuntimeError("device 'mps' was asked for but MPS is not available here; use 'auto' or 'cpu'")
    return dev


def check_amp(amp: bool, device: torch.device) -> None:
    if amp and device.type != "cuda":
        raise ValueError(
            f"amp=True (mixed precision) is supported on CUDA only; this run is on {device.type}. "
            "Use amp=False"
        )


def runtime_key(device_spec: str, amp: bool) -> dict:
    """The part of the run cache key that the device choice contributes (empty on CPU, fp32)."""
    kind = resolve_device(device_spec).type
    return {} if kind == "cpu" and not amp else {"device_type": kind, "amp": bool(amp)}


def autocast(device: torch.device, enabled: bool):
    """CUDA float16 autocast when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def grad_scaler(device: torch.device, enabled: bool):
    """A ``torch.amp.GradScaler`` for float16 training (disabled: a pass-through)."""
    return torch.amp.GradScaler(device.type, enabled=enabled)


def to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Move a batch; asynchronously from pinned memory to CUDA."""
    non_blocking = device.type == "cuda"
    return tuple(t.to(device, non_blocking=non_blocking) for t in batch)
