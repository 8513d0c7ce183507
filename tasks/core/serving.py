"""The served model every study shares: an MLflow pyfunc base with the serving contract built in.

Contract (all studies)::

    model = mlflow.pyfunc.load_model("models:/<study>@champion")
    out = model.predict(pd.DataFrame({<input columns>: [...]}), params={...})

- Input: a DataFrame with the study's input columns (extra columns are ignored; a study's
  ``optional_inputs`` are passed on to ``prepare`` when present), a dict of lists
  (or of single values: one row), or a list of dicts (one per row). Through
  ``mlflow.pyfunc.load_model`` MLflow checks the input against the signature first: it passes a
  dict of lists on as one row of list cells, which :meth:`StudyPyfunc.input_rows` spreads back into
  rows, and it refuses a plain list of values (``Model is missing inputs [...]``); a plain list works
  only on the Python model itself (``model.unwrap_python_model().predict(None, [...])``), for a study
  with one input column. A missing input column raises :class:`ServingInputError` (a ``ValueError``)
  naming it.
- Output: a DataFrame with the study's output columns and an ``error`` column. A row that cannot be
  read (missing or corrupt file, empty path...) does not stop the batch: it gets one output row with
  empty outputs and the message in ``error``; every other row is answered (``error`` empty).
  A study may answer a row with several output rows (detection: one per detection) or none; its
  ``echo`` columns repeat the input so rows can be matched.
- Device: every study takes ``params={"device": ...}`` (``auto``, the default: the GPU when there is
  one; ``cpu``, ``cuda``, ``cuda:1``...); :meth:`StudyPyfunc.device` resolves it once per call, and an
  unknown or absent device is a :class:`ServingInputError`.
- Studies that write files (``writes_files = True``, e.g. inpainting's masks and result frames) take
  ``params={"out_dir": D}`` (required; created if missing): the core gives each input row its own folder
  ``D/<stem of the row's first input>`` (``-2``, ``-3``... when two rows share a stem) as
  ``row[OUT_DIR_KEY]``, and the study returns the paths it wrote. Their inputs may be folders
  (``file_path(row, column, folder=True)``), e.g. a folder of frames.

A study subclasses :class:`StudyPyfunc`: ``load`` (the model file), ``prepare`` (one input row ->
an item, raising on bad input; runs per row so one bad row fails alone) and ``infer`` (a batch of
prepared items -> a list of output rows per item). :func:`log_pyfunc` logs any study's model with its
code (``code_paths``) and pinned requirements, so it loads from any working directory.

Imports mlflow and pandas, not torch; it is not a stage, so the CLI never imports it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from tasks.core import MokuflowError, log

ARTIFACT_KEY = "model"  # context.artifacts[ARTIFACT_KEY] is the path of the study's model file
ERROR_COLUMN = "error"
OUT_DIR_KEY = "_out_dir"  # the row's own output folder, for studies that write files
CORE_PARAMS = (("device", "string", "auto"),)  # every study's served model takes these
FILE_PARAMS = (("out_dir", "string", ""),)     # and these when it writes files (out_dir is required)
# What every study's served code imports; pinned to the installed versions so the served environment
# matches training (and MLflow skips its ~8 s requirement inference).
BASE_PACKAGES = ("torch", "lightning", "numpy", "scipy", "opencv-python-headless", "pandas", "pyyaml",
                 "pydantic")


class ServingInputError(MokuflowError, ValueError):
    """A request the served model cannot take as a whole (e.g. a missing input column)."""


class StudyPyfunc(mlflow.pyfunc.PythonModel):
    """Base of every study's served model; see the module docstring for the contract."""

    inputs: tuple[tuple[str, str], ...] = ()       # (column, MLflow type), required
    optional_inputs: tuple[tuple[str, str], ...] = ()  # (column, MLflow type), passed on when present
    outputs: tuple[tuple[str, str], ...] = ()      # (column, MLflow type)
    echo: tuple[str, ...] = ()                     # input columns repeated in every output row
    params: tuple[tuple[str, str, Any], ...] = ()  # (name, MLflow type, default)
    extra_packages: tuple[str, ...] = ()
    batch_size: int = 8
    writes_files: bool = False                     # outputs are files under params["out_dir"]

    # ---- what a study implements
    def load(self, model_file: str) -> None:
        raise NotImplementedError

    def prepare(self, row: dict, params: dict) -> Any:
        """One input row -> an item for :meth:`infer`; raise (naming the file) when it cannot be read."""
        raise NotImplementedError

    def infer(self, items: list, params: dict) -> list[list[dict]]:
        """Prepared items -> for each, its output rows (dicts of output columns)."""
        raise NotImplementedError

    # ---- the contract, shared
    def load_context(self, context) -> None:
        self.load(context.artifacts[ARTIFACT_KEY])

    @classmethod
    def all_params(cls) -> tuple[tuple[str, str, Any], ...]:
        """The study's params, then the core's (device; out_dir for studies that write files)."""
        core = CORE_PARAMS + (FILE_PARAMS if cls.writes_files else ())
        own = {n for n, _, _ in cls.params}
        return (*cls.params, *(c for c in core if c[0] not in own))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        p = {name: default for name, _, default in self.all_params()} | dict(params or {})
        p["device"] = str(resolve_device(p.get("device")))
        rows = self.input_rows(model_input)
        if self.writes_files:
            out_dir = _out_dir(p.get("out_dir"))
            p["out_dir"] = str(out_dir)
            rows = [{**r, OUT_DIR_KEY: str(d)} for r, d in zip(rows, row_dirs(out_dir, rows, self.inputs[0][0]))]
        items: list[tuple[int, Any]] = []
        errors: dict[int, str] = {}
        for i, row in enumerate(rows):
            try:
                items.append((i, self.prepare(row, p)))
            except Exception as e:  # one bad row fails alone; its message says which file and why
                errors[i] = _message(e)
        answers: dict[int, list[dict]] = {}
        bs = max(1, int(p.get("batch_size") or self.batch_size))
        for start in range(0, len(items), bs):
            chunk = items[start:start + bs]
            try:
                outs = self.infer([it for _, it in chunk], p)
            except Exception as e:  # a batch failed as a whole: retry its rows one by one
                if len(chunk) == 1:
                    errors[chunk[0][0]] = _message(e)
                    continue
                outs = []
                for i, it in chunk:
                    try:
                        outs.append(self.infer([it], p)[0])
                    except Exception as e1:
                        errors[i] = _message(e1)
                        outs.append(None)
            for (i, _), out in zip(chunk, outs):
                if out is not None:
                    answers[i] = out
        return self.assemble(rows, answers, errors)

    def input_rows(self, model_input) -> list[dict]:
        """The input (any form the module docstring lists) as a list of row dicts with every input
        column; a missing column is a :class:`ServingInputError`."""
        names = [c for c, _ in self.inputs]
        if isinstance(model_input, dict):
            model_input = pd.DataFrame({k: v if isinstance(v, (list, tuple, pd.Series)) else [v]
                                        for k, v in model_input.items()})
        elif isinstance(model_input, (list, tuple)):
            if all(isinstance(r, dict) for r in model_input):
                model_input = pd.DataFrame(list(model_input))
            elif len(names) == 1:
                model_input = pd.DataFrame({names[0]: list(model_input)})
            else:
                raise ServingInputError(f"model input: a list must hold one dict per row with columns {names}")
        if not isinstance(model_input, pd.DataFrame):
            raise ServingInputError(f"model input: expected a DataFrame with columns {names}, "
                                    f"got {type(model_input).__name__}")
        if len(model_input) == 1 and names and all(c in model_input.columns for c in names):
            given = names + [c for c, _ in self.optional_inputs if c in model_input.columns]
            cells = [model_input[c].iloc[0] for c in given]
            if all(isinstance(v, (list, tuple)) for v in cells) and len({len(v) for v in cells}) == 1:
                # MLflow's schema check turns a dict of lists into one row of list cells: spread it
                model_input = pd.DataFrame({c: list(v) for c, v in zip(given, cells)})
        missing = [c for c in names if c not in model_input.columns]
        if missing:
            raise ServingInputError(f"model input: missing column(s) {missing} (expected {names}, "
                                    f"got {list(model_input.columns)})")
        optional = [c for c, _ in self.optional_inputs if c in model_input.columns]
        return model_input[names + optional].to_dict("records")

    def assemble(self, rows: list[dict], answers: dict[int, list[dict]], errors: dict[int, str]) -> pd.DataFrame:
        out_cols = [c for c, _ in self.outputs]
        records = []
        for i, row in enumerate(rows):
            echo = {c: row.get(c) for c in self.echo}
            if i in errors:
                records.append({**echo, **{c: None for c in out_cols}, ERROR_COLUMN: errors[i]})
            else:
                records.extend({**echo, **{c: r.get(c) for c in out_cols}, ERROR_COLUMN: None}
                               for r in answers.get(i, []))
        frame = pd.DataFrame.from_records(records, columns=[*self.echo, *out_cols, ERROR_COLUMN])
        for c, kind in self.outputs:  # empty outputs stay NaN / None with the declared dtype
            if kind in ("double", "float"):
                frame[c] = frame[c].astype("float64")
            elif kind in ("long", "integer"):
                frame[c] = frame[c].astype("Int64")
        return frame

    # ---- logging helpers
    @classmethod
    def signature(cls):
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

        return ModelSignature(
            inputs=Schema([ColSpec(t, c) for c, t in cls.inputs]
                          + [ColSpec(t, c, required=False) for c, t in cls.optional_inputs]),
            outputs=Schema([ColSpec(t, c) for c, t in cls.outputs]
                           + [ColSpec("string", ERROR_COLUMN, required=False)]),
            # a list default is a list param (e.g. relationship's modalities)
            params=ParamSchema([ParamSpec(n, t, list(d), shape=(-1,)) if isinstance(d, (list, tuple))
                                else ParamSpec(n, t, d) for n, t, d in cls.all_params()]),
        )


def _message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if text else type(e).__name__


def file_path(row: dict, column: str, *, folder: bool = False) -> str:
    """A row's file path (or, with ``folder``, a file or a folder) made absolute; raises naming the
    problem when it is empty or missing."""
    what = "a file or folder path" if folder else "a file path"
    p = row.get(column)
    if not isinstance(p, (str, os.PathLike)) or not str(p).strip():
        raise ServingInputError(f"{column} must be {what}, got {p!r}")
    path = Path(p).expanduser().resolve()
    if not (path.is_file() or (folder and path.is_dir())):
        raise ServingInputError(f"{path}: {'file or folder' if folder else 'file'} not found")
    return str(path)


def resolve_device(value) -> Any:
    """``params["device"]`` as a torch device (:func:`models.common.device.resolve_device`)."""
    from models.common.device import DeviceError
    from models.common.device import resolve_device as resolve

    try:
        return resolve(value)
    except DeviceError as e:
        raise ServingInputError(f"params device: {e}") from None


def _out_dir(value) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ServingInputError("params out_dir is required: the folder the outputs are written to "
                                "(predict(df, params={'out_dir': D}))")
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ServingInputError(f"{path}: params out_dir is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def row_dirs(out_dir: Path, rows: list[dict], column: str) -> list[Path]:
    """Each row's output folder: ``out_dir/<stem of its input>``, ``-2``, ``-3``... for repeated stems."""
    used: set[str] = set()
    dirs = []
    for i, row in enumerate(rows):
        v = row.get(column)
        stem = Path(str(v)).stem if isinstance(v, (str, os.PathLike)) and str(v).strip() else f"row{i}"
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or f"row{i}"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        dirs.append(out_dir / name)
    return dirs


# -------------------------------------------------------------------------------------- logging

def pip_requirements(packages) -> list[str]:
    """``name==version`` for each package; local version labels (``+cpu``) are dropped because pip
    cannot resolve them from PyPI."""
    reqs = []
    for name in packages:
        try:
            reqs.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def code_paths() -> list[str]:
    """The ``models`` and ``tasks`` package folders, wherever this code is installed."""
    return [str(Path(importlib.import_module(pkg).__file__).parent) for pkg in ("models", "tasks")]


def log_pyfunc(params: dict, study, model_file: str | os.PathLike, *,
               registered_model_name: str | None = None, name: str = "model") -> Any:
    """Log ``model_file`` as the study's pyfunc to the active run; register it when a name is given.

    Returns the new ``ModelVersion`` (or the ``ModelInfo`` when not registering). No input example:
    MLflow would run the model on it at log time, and an example file would not exist where the model
    is served; the signature documents the input instead.
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise MokuflowError(f"{model_file}: model file not found (run the train stage first)")
    if mlflow.active_run() is None:
        raise MokuflowError("log_pyfunc: no active MLflow run (use tasks.core.tracking.resume_run)")
    cls = study.load(study.serving)
    log(f"logging {study.name} pyfunc model from {model_file}")
    with warnings.catch_warnings():  # no input example on purpose (see the docstring)
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = mlflow.pyfunc.log_model(
            name=name, python_model=cls(), artifacts={ARTIFACT_KEY: str(model_file)},
            code_paths=code_paths(), pip_requirements=pip_requirements((*BASE_PACKAGES, *cls.extra_packages)),
            signature=cls.signature(), registered_model_name=registered_model_name,
            metadata={"study": study.name, "inputs": [c for c, _ in cls.inputs],
                      "optional_inputs": [c for c, _ in cls.optional_inputs],
                      "outputs": [c for c, _ in cls.outputs],
                      "data_source": str(params.get(study.name, {}).get("data", {}).get("source"))})
    if registered_model_name is None:
        return info
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(registered_model_name, str(info.registered_model_version))
