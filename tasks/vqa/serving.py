"""The served VQA model: an MLflow pyfunc that takes video paths and returns one quality score each.

Contract (what users rely on)::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/vqa@champion")
    scores = model.predict(pd.DataFrame({"video_path": ["/data/a.mp4", "/data/b.mkv"]}))
    scores["quality"]          # one float per input row, same order; higher = better quality

Any readable video of any resolution / length works: frames are sampled as at training time
(the ``frames`` config stored in model.pt). Relative paths resolve against the caller's cwd.

Errors: a missing ``video_path`` column, an empty / non-string path, a missing file or a video that
cannot be decoded raise :class:`ServingInputError` (a ``ValueError``) naming the row and the file.
We fail loudly rather than return NaN: a silently missing score is easy to overlook in a batch job,
and the caller can drop the bad file and retry.

The logged model carries the ``models`` and ``tasks`` packages (``code_paths``) and pinned pip
requirements, so it loads from any working directory and in a fresh environment. Note: loading in a
process that has already imported ``models`` / ``tasks`` (e.g. the register stage) uses that process's
code, not the copy logged with the model.

This module imports mlflow (to subclass ``PythonModel``) and pandas but not torch; it is not a stage, so the CLI
never imports it.
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

from tasks.common import MokuflowError, log

INPUT_COLUMN = "video_path"
OUTPUT_COLUMN = "quality"
ARTIFACT_KEY = "model"  # context.artifacts[ARTIFACT_KEY] is the path of model.pt

# Distributions the served code imports; pinned to the installed versions so the served
# environment matches training (and MLflow skips its ~8 s requirement inference).
PIP_PACKAGES = ("torch", "lightning", "numpy", "scipy", "opencv-python-headless", "pandas", "pyyaml")


class ServingInputError(MokuflowError, ValueError):
    """A request the served model cannot score; the message names the row and the file."""


class VQAPyfunc(mlflow.pyfunc.PythonModel):
    """``video_path`` column in, ``quality`` column out (higher = better)."""

    def load_context(self, context) -> None:
        from models.vqa.inference import load_model

        self.model, self.frames_cfg = load_model(context.artifacts[ARTIFACT_KEY])

    # The pd.DataFrame hint tells MLflow to skip type-hint validation: the signature does that.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from models.vqa.inference import predict_paths
        from models.vqa.video import VideoReadError

        paths = video_paths(model_input)
        batch_size = int((params or {}).get("batch_size") or 8)
        if not paths:
            return pd.DataFrame({OUTPUT_COLUMN: pd.Series([], dtype="float64")})
        try:
            scores = predict_paths(self.model, self.frames_cfg, paths, batch_size=batch_size)
        except VideoReadError as e:  # already names the file; keep one error type for callers
            raise ServingInputError(str(e)) from e
        return pd.DataFrame({OUTPUT_COLUMN: [float(s) for s in scores]},
                            index=getattr(model_input, "index", None))


def video_paths(model_input) -> list[str]:
    """The ``video_path`` column as absolute path strings; checks every file exists first.

    Accepts a DataFrame (what MLflow passes after schema enforcement), a dict of lists or a list of
    paths (convenient in notebooks).
    """
    if isinstance(model_input, (list, tuple)):
        model_input = pd.DataFrame({INPUT_COLUMN: list(model_input)})
    elif isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame) or INPUT_COLUMN not in model_input.columns:
        cols = list(getattr(model_input, "columns", []))
        raise ServingInputError(f"model input: expected a DataFrame with a {INPUT_COLUMN!r} column "
                                f"(one video file per row), got columns {cols}")
    out = []
    for i, p in enumerate(model_input[INPUT_COLUMN].tolist()):
        if not isinstance(p, (str, os.PathLike)) or not str(p).strip():
            raise ServingInputError(f"model input row {i}: {INPUT_COLUMN} must be a file path, got {p!r}")
        path = Path(p).expanduser().resolve()
        if not path.is_file():
            raise ServingInputError(f"{path}: video file not found (model input row {i})")
        out.append(str(path))
    return out


# -------------------------------------------------------------------------------------- logging

def pip_requirements() -> list[str]:
    """``name==version`` for :data:`PIP_PACKAGES`; local version labels (``+cpu``) are dropped
    because pip cannot resolve them from PyPI."""
    reqs = []
    for name in PIP_PACKAGES:
        try:
            version = importlib.metadata.version(name).split("+")[0]
            reqs.append(f"{name}=={version}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def code_paths() -> list[str]:
    """The ``models`` and ``tasks`` package folders, wherever this code is installed."""
    return [str(Path(importlib.import_module(pkg).__file__).parent) for pkg in ("models", "tasks")]


def signature():
    """``video_path: string`` -> ``quality: double``, with an optional ``batch_size`` param."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
        outputs=Schema([ColSpec("double", OUTPUT_COLUMN)]),
        params=ParamSchema([ParamSpec("batch_size", "long", 8)]),
    )


def log_pyfunc(params: dict, model_pt: str | os.PathLike, *, registered_model_name: str | None = None,
               name: str = "model") -> Any:
    """Log ``model_pt`` as a pyfunc to the active run; register it when a name is given.

    ``params`` (the pipeline params) only adds the data source to the model's metadata.

    Returns the new ``ModelVersion`` (or the ``ModelInfo`` when not registering). No input example:
    MLflow would run the model on it at log time, and an example path would not exist where the
    model is served; the signature documents the input instead.
    """
    model_pt = Path(model_pt)
    if not model_pt.is_file():
        raise MokuflowError(f"{model_pt}: model file not found (run the train stage first)")
    if mlflow.active_run() is None:  # mlflow.pyfunc import binds the top-level package too
        raise MokuflowError("log_pyfunc: no active MLflow run (use tasks.tracking.resume_run)")
    log(f"logging pyfunc model from {model_pt}")
    with warnings.catch_warnings():  # we log no input example on purpose (see the docstring)
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = _log_model(name, model_pt, registered_model_name, params)
    if registered_model_name is None:
        return info
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(registered_model_name, str(info.registered_model_version))


def _log_model(name: str, model_pt: Path, registered_model_name: str | None, params: dict):
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=VQAPyfunc(),
        artifacts={ARTIFACT_KEY: str(model_pt)},
        code_paths=code_paths(),
        pip_requirements=pip_requirements(),
        signature=signature(),
        registered_model_name=registered_model_name,
        metadata={"study": "vqa", "input": INPUT_COLUMN, "output": OUTPUT_COLUMN,
                  "higher_is_better": True,
                  "data_source": str(params.get("vqa", {}).get("data", {}).get("source"))},
    )
