"""The device a model runs on, from a user's setting: ``auto`` (or empty) is the GPU when there is one."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device setting that names no device, or a GPU this machine does not have."""


def resolve_device(value=None) -> torch.device:
    """``auto`` / None / "" -> cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:1``... as given."""
    if isinstance(value, torch.device):
        name = str(value)
    else:
        name = str(value or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"{value!r} is not a device (auto, cpu, cuda, cuda:1...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{value!r} asked for, but this machine has no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"{value!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return dev
