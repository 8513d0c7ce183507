"""Atomic file writes for models/: a temp file beside the target, renamed over it only on success.

A kill mid-write leaves the previous file whole (os.replace is atomic on one filesystem).
models/ cannot import tasks/, so this is the models-side twin of tasks.core.io.atomic_path.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_atomic(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp_path)`` then rename over ``target``: e.g. ``save_atomic(p, lambda t: torch.save(obj, t))``."""
    with atomic_file(target) as tmp:
        write(tmp)
    return Path(target)


def save_torch(target: str | os.PathLike, obj) -> Path:
    """``torch.save(obj)`` to ``target`` atomically and byte-reproducibly: saved through a buffer, the
    archive's inner folder is always ``archive`` (saved to a path, torch names it after the temp file,
    so the same weights gave a different file, and DVC another hash, on every run)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return save_atomic(target, lambda tmp: tmp.write_bytes(buf.getvalue()))


def load_payload(path: str | os.PathLike, error: type[Exception], *, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a missing or unreadable file raises ``error`` naming it."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: model file not found")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise error(f"{p}: not a readable model file ({e})") from None
