"""Files: JSON / CSV writers (atomic, through :mod:`tasks.core.outputs`), the JSON reader that names
the file, and file hashes (incl. DVC's directory md5)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tasks.core.errors import MokuflowError
from tasks.core.outputs import MANIFEST, atomic_dir, atomic_path

__all__ = ["MANIFEST", "atomic_dir", "atomic_path", "write_json", "write_csv", "read_json", "file_hash",
           "file_md5", "dvc_dir_hash", "link_or_copy"]


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


def read_json(path: str | os.PathLike, *, missing: str = "has the stage that writes it run?") -> Any:
    """The JSON value in ``path``; a missing file, a folder, non-UTF-8 or invalid JSON is one
    MokuflowError line naming the file (``missing`` is the hint for a missing file)."""
    p = Path(path)
    if not p.exists():
        raise MokuflowError(f"{p}: not found" + (f" ({missing})" if missing else ""))
    if not p.is_file():
        raise MokuflowError(f"{p}: not a file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MokuflowError(f"{p}: not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise MokuflowError(f"{p}: not JSON: {e}") from None


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



def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Put ``src`` at ``dst`` as a hard link (no second copy of a large dataset), else a copy (another
    file system, or links not allowed); parent folders are made. A ``dst`` already there is kept:
    several rows of a manifest may name one source file."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return dst
    try:
        os.link(src, dst)
    except OSError:  # other filesystem, or not allowed (protected_hardlinks)
        shutil.copy2(src, dst)
    return dst
