"""params.yaml: find it, load it, apply ``--set`` overrides, resolve its relative paths.

Validation against each study's schema lives in :mod:`tasks.core.schema`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tasks.core.errors import MokuflowError


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
    packaged = Path(__file__).resolve().parents[2] / "params.yaml"
    if packaged.is_file():
        return packaged
    raise MokuflowError(f"no params.yaml in {here} or its parents (pass --params)")


def set_key(params: dict, dotted: str, value: Any, *, declared: bool = False) -> None:
    """Set params['a']['b'] for 'a.b'; the key must already exist (catches typos), unless
    ``declared`` (a study schema declares it with a default): then missing levels are created."""
    node = params
    *parents, leaf = dotted.split(".")
    for k in parents:
        if declared and isinstance(node, dict) and k not in node:
            node[k] = {}
        if not isinstance(node, dict) or not isinstance(node.get(k), dict):
            raise MokuflowError(f"params: unknown key {dotted!r}")
        node = node[k]
    if leaf not in node and not declared:
        raise MokuflowError(f"params: unknown key {dotted!r}")
    node[leaf] = value


def load_params(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, *,
                validate: bool = True, study: str | None = None) -> dict:
    """Load params.yaml, apply dotted overrides, and remember where it lives (``_root``).

    Relative paths in params are relative to the params file's folder: see :func:`resolve`. Every
    declared study's section is checked against its schema (:mod:`tasks.core.schema`), or only
    ``study``'s (a stage reads no other study's settings, so no other schema is one of its inputs).
    """
    p = find_params(path)
    try:
        params = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MokuflowError(f"{p}: not a text file (expected YAML)") from None
    except yaml.YAMLError as e:
        raise MokuflowError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(params, dict):
        raise MokuflowError(f"{p}: expected a mapping at the top level")
    for k, v in (overrides or {}).items():
        try:
            set_key(params, k, v)
        except MokuflowError:
            if not validate or not _declared(k):
                raise
            set_key(params, k, v, declared=True)  # a schema key the file leaves at its default
    params["_root"] = str(p.parent)
    params["_file"] = str(p)
    if validate:
        from tasks.core.schema import validate as check
        from tasks.core.study import studies

        check(params, studies(), only=study)
    return params


def _declared(dotted: str) -> bool:
    from tasks.core.schema import declares
    from tasks.core.study import studies

    return declares(dotted, studies())


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise MokuflowError(f"--set expects key=value, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError:
        raise MokuflowError(f"--set {text}: the value is not valid YAML (quote a string, e.g. k='[x')") from None


def root(params: dict) -> Path:
    return Path(params.get("_root") or Path.cwd())


def resolve(params: dict, path: str | os.PathLike | None) -> Path | None:
    """A params path made absolute against the params file's folder."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else root(params) / p


def relative(params: dict, path: str | os.PathLike) -> str:
    """``path`` relative to the project folder when inside it, else as given: what outputs record, so
    that no file DVC hashes holds an absolute path (two clones of one commit must agree)."""
    p = Path(path)
    try:
        return p.resolve().relative_to(root(params).resolve()).as_posix()
    except ValueError:
        return str(path)


def portable(params: dict, obj: Any) -> Any:
    """``obj`` (a summary about to be written) with every absolute path inside the project, as a
    string or Path anywhere in it, made relative (:func:`relative`)."""
    if isinstance(obj, dict):
        return {k: portable(params, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(params, v) for v in obj]
    if isinstance(obj, (str, Path)) and os.path.isabs(str(obj)):
        return relative(params, obj)
    return obj


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

