"""Files: atomic writes (temp path, then rename), JSON / CSV readers that name the file, hashes."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.errors import MokuflowError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp file beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared data
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; swap it in for ``target`` only if the block succeeds.

    The previous ``target`` survives any failure untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise MokuflowError(f"{p}: not found (has the stage that writes it run?)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise MokuflowError(f"{p}: not valid JSON: {e}") from None



def file_hash(path: str | os.PathLike, algo: str = "md5", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_md5(path: str | os.PathLike) -> str:
    return file_hash(path, "md5")


def dvc_dir_hash(path: str | os.PathLike) -> str:
    """The md5 DVC 3 gives a directory output (``<md5>.dir``), computed without importing dvc.

    It is the md5 of the JSON list of ``{"md5", "relpath"}`` entries sorted by path, the same
    value `dvc.lock` records, so an MLflow run can be traced back to the exact DVC data version.
    """
    base = Path(path)
    if base.is_file():
        return file_md5(base)
    entries = [
        {"md5": file_md5(p), "relpath": p.relative_to(base).as_posix()}
        for p in base.rglob("*")
        if p.is_file()
    ]
    entries.sort(key=lambda e: e["relpath"])
    data = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(data).hexdigest() + ".dir"

