"""Where a run's data comes from, in DVC's terms: the md5 DVC gives the study's raw and clean data
folders (media included), whether ``dvc.lock`` records exactly those (then the data is in DVC's cache
and can be restored), and the ``data_version`` derived from them. No dvc or mlflow import.

Every MLflow run carries these as tags, with ``dvc.lock`` as an artifact (:mod:`tasks.core.tracking`);
``mokuflow <study> restore --run ID`` (:mod:`tasks.core.restore`) brings that data back.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from tasks.core.errors import MokuflowError
from tasks.core.io import dvc_dir_hash
from tasks.core.params import resolve, root

LOCK = "dvc.lock"
DATA_KEYS = ("raw_dir", "clean_dir")  # <study>.data.<key>: what the data version covers, in order


def lock_file(params: dict) -> Path:
    return root(params) / LOCK


def read_lock(path: Path) -> dict:
    """``dvc.lock`` as a dict (``{}`` when there is none yet); a broken one is one error line."""
    if not path.is_file():
        return {}
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MokuflowError(f"{path}: not a DVC lock file ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("stages", {}), dict):
        raise MokuflowError(f"{path}: not a DVC lock file (no 'stages' mapping)")
    return lock


def locked_outs(lock: dict) -> dict[str, tuple[str, str]]:
    """Every stage output recorded in a lock: ``{path: (stage, md5)}``."""
    found = {}
    for stage, entry in (lock.get("stages") or {}).items():
        for out in (entry or {}).get("outs") or []:
            if isinstance(out, dict) and "path" in out and "md5" in out:
                found[str(out["path"])] = (stage, str(out["md5"]))
    return found


def data_paths(params: dict, study: str) -> dict[str, str]:
    """``{key: path relative to the project}`` of the study's data folders, as dvc.yaml names them."""
    data = params[study]["data"]
    return {k: Path(str(data[k])).as_posix() for k in DATA_KEYS if data.get(k)}


def data_hashes(params: dict, study: str) -> dict[str, str]:
    """DVC's md5 of each data folder now on disk (``missing`` when absent)."""
    out = {}
    for rel in data_paths(params, study).values():
        p = resolve(params, rel)
        out[rel] = dvc_dir_hash(p) if p.exists() else "missing"
    return out


def data_version(hashes: dict[str, str]) -> str:
    """One id for the raw + clean data: md5 of their DVC md5s (so a change to any video, image or
    annotation gives a new version), 32 hex digits."""
    return hashlib.md5(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def provenance(params: dict, study: str) -> dict[str, str]:
    """Tags for a run: ``data_version``, ``dvc.md5.<path>`` per data folder, and ``dvc.restorable``
    (dvc.lock records exactly the data on disk, so its cache holds it)."""
    hashes = data_hashes(params, study)
    locked = locked_outs(read_lock(lock_file(params)))
    restorable = all(locked.get(p, ("", ""))[1] == md5 for p, md5 in hashes.items())
    tags = {"data_version": data_version(hashes), "dvc.restorable": str(restorable).lower()}
    tags |= {f"dvc.md5.{p}": md5 for p, md5 in hashes.items()}
    return tags


def dvc_exe() -> str:
    """The ``dvc`` beside this Python (the project's venv), else the one on PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")
