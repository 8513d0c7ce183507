"""Plumbing shared by every stage: params, paths, atomic writes, errors, progress.

Nothing here imports torch, prefect, mlflow or dvc, so the CLI starts fast.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml


class MokuflowError(Exception):
    """A user-facing error: bad input or bad params. The message names the file and the problem."""


# ----------------------------------------------------------------------------------------- params

def find_params(path: str | os.PathLike | None = None) -> Path:
    """params.yaml: the given path, $MOKUFLOW_PARAMS, the nearest one from the cwd upwards, or the
    project's own."""
    if path is None:
        path = os.environ.get("MOKUFLOW_PARAMS")
    if path is not None:
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise MokuflowError(f"{p}: params file not found")
        return p
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "params.yaml").is_file():
            return d / "params.yaml"
    # outside the project (e.g. `mokuflow vqa clean --scores x.csv --out y` elsewhere): its defaults
    packaged = Path(__file__).resolve().parents[1] / "params.yaml"
    if packaged.is_file():
        return packaged
    raise MokuflowError(f"no params.yaml in {here} or its parents (pass --params)")


def set_key(params: dict, dotted: str, value: Any) -> None:
    """Set params['a']['b'] for 'a.b'; the key must already exist (catches typos)."""
    node = params
    *parents, leaf = dotted.split(".")
    for k in parents:
        if not isinstance(node.get(k), dict):
            raise MokuflowError(f"params: unknown key {dotted!r}")
        node = node[k]
    if leaf not in node:
        raise MokuflowError(f"params: unknown key {dotted!r}")
    node[leaf] = value


def load_params(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Load params.yaml, apply dotted overrides, and remember where it lives (``_root``).

    Relative paths in params are relative to the params file's folder: see :func:`resolve`.
    """
    p = find_params(path)
    try:
        params = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise MokuflowError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise MokuflowError(f"{p}: expected a mapping at the top level")
    for k, v in (overrides or {}).items():
        set_key(params, k, v)
    params["_root"] = str(p.parent)
    params["_file"] = str(p)
    return params


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise MokuflowError(f"--set expects key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def root(params: dict) -> Path:
    return Path(params.get("_root") or Path.cwd())


def resolve(params: dict, path: str | os.PathLike | None) -> Path | None:
    """A params path made absolute against the params file's folder."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else root(params) / p


def public(params: dict) -> dict:
    """Params without the bookkeeping keys (what gets logged)."""
    return {k: v for k, v in params.items() if not k.startswith("_")}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: how params are logged to MLflow, one key each."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------------------- writing

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


# ---------------------------------------------------------------------------------------- hashing

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


# --------------------------------------------------------------------------------------- progress

LOGGER = logging.getLogger("mokuflow")


def log(msg: str) -> None:
    """One line to the ``mokuflow`` logger: stderr in the terminal and in `dvc repro`; in Prefect's
    flow-run logs too (prefect.toml lists it under ``logging.extra_loggers``)."""
    if not LOGGER.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[mokuflow] %(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.info(msg)


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterator:
    """tqdm when on a terminal, a log line every ~10% otherwise (CI, DVC, Prefect logs)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=n)
        return
    step = max(1, n // 10)
    t0 = time.perf_counter()
    for i, x in enumerate(items, 1):
        yield x
        if i % step == 0 or i == n:
            log(f"{desc}: {i}/{n} ({time.perf_counter() - t0:.1f} s)")
