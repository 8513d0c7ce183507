"""MLflow wiring shared by the stages: tracking URI, experiment, the pipeline run and its tags.

One MLflow run per pipeline run: the train stage opens it (params, data version, git commit, dvc.lock)
and records its id in ``<train.out_dir>/run.json``; evaluate, report and register log into that same
run (register logs dvc.lock again, with every stage before it recorded).
mlflow is imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tasks.core import MokuflowError, flatten, public, read_json, resolve, root

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
FLOW_RUN_ENV = "MOKUFLOW_PREFECT_FLOW_RUN"


def tracking_uri(params: dict) -> str:
    """``mlflow.tracking_uri`` with a relative local store made absolute against the repo, so every
    process (DVC stage, Prefect runner, Lightning's logger) writes to the same one whatever its cwd."""
    uri = str(params["mlflow"]["tracking_uri"])
    for prefix in ("sqlite:///", "file:"):
        if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
            return prefix + str(resolve(params, uri[len(prefix):]))
    if "://" not in uri and not uri.startswith(("databricks", "file:")):  # a plain folder path
        return resolve(params, uri).as_uri()
    return uri


def setup(params: dict):
    """Point mlflow at the configured store; returns the mlflow module."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(params))
    return mlflow


def experiment_id(params: dict, study: str) -> str:
    """The study's experiment, created with an absolute artifact location on first use."""
    mlflow = setup(params)
    exp = mlflow.get_experiment_by_name(study)
    if exp is not None:
        return exp.experiment_id
    loc = str(params["mlflow"].get("artifact_location") or "mlartifacts")
    if "://" not in loc:
        loc = resolve(params, loc).joinpath(study).as_uri()
    return mlflow.create_experiment(study, artifact_location=loc)


def git_commit(repo: Path) -> tuple[str, bool]:
    """(commit, dirty) of the repo, or ('unknown', False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return sha, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def run_tags(params: dict, study: str) -> dict[str, str]:
    """Tags that make a run traceable and restorable: the data version from DVC's md5 of the raw and
    clean data (:mod:`tasks.core.provenance`), the data source and the git commit."""
    from tasks.core.provenance import provenance

    sha, dirty = git_commit(root(params))
    return {
        "mokuflow.study": study,
        **provenance(params, study),
        "data_path": str(params[study]["data"]["clean_dir"]),
        "data_source": str(params[study]["data"]["source"]),
        "git_commit": sha,
        "git_dirty": str(dirty).lower(),
        "mlflow.source.git.commit": sha,
        # set by the Prefect flow for the stages it runs through DVC: the MLflow run links to it
        **({"prefect.flow_run_id": os.environ[FLOW_RUN_ENV]} if os.environ.get(FLOW_RUN_ENV) else {}),
    }


def log_provenance(params: dict, study: str, run_id: str, *, tags: bool = True) -> dict[str, str]:
    """Set the run's provenance tags (when the run opens: the data it trains on) and log ``dvc.lock``
    as the artifact ``dvc/dvc.lock`` (what ``mokuflow <study> restore --run ID`` reads). Register
    calls it again with ``tags=False``: the artifact then holds every stage DVC had recorded."""
    from tasks.core.provenance import lock_file

    found = run_tags(params, study) if tags else {}
    with resume_run(params, run_id) as mlflow:
        if found:
            mlflow.set_tags(found)
        lock = lock_file(params)
        if lock.is_file():
            mlflow.log_artifact(str(lock), artifact_path="dvc")
    return found


def finite(metrics: dict) -> dict[str, float]:
    """The entries MLflow can store as metrics: numbers that are not None / NaN / inf (or bools)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)}


def loggable_params(params: dict, study: str) -> dict[str, str]:
    """Flattened ``mlflow.*`` and ``<study>.*`` keys, as strings (what the MLflow UI compares)."""
    p = public(params)
    flat = flatten({"mlflow": p.get("mlflow", {}), study: p.get(study, {})})
    return {k: ("null" if v is None else str(v))[:6000] for k, v in flat.items()}


def start_run(params: dict, study: str, run_name: str | None = None,
              tags: dict[str, str] | None = None) -> str:
    """Create the pipeline's MLflow run with params and tags (``run_tags`` unless given); returns its
    id (the run is left ended)."""
    mlflow = setup(params)
    exp = experiment_id(params, study)
    with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
        mlflow.log_params(loggable_params(params, study))
        mlflow.set_tags(tags if tags is not None else run_tags(params, study))
        return run.info.run_id


@contextlib.contextmanager
def resume_run(params: dict, run_id: str) -> Iterator:
    """Re-open an existing run to log more into it: ``with resume_run(p, rid) as mlflow: ...``."""
    mlflow = setup(params)
    with mlflow.start_run(run_id=run_id):
        yield mlflow


def current_run_id(params: dict, study: str, *, required: bool = True) -> str | None:
    """The run id the train stage recorded in ``<train.out_dir>/run.json`` (None if absent and not
    ``required``)."""
    run_file = resolve(params, params[study]["train"]["out_dir"]) / "run.json"
    if not required and not run_file.is_file():
        return None
    info = read_json(run_file)
    if "mlflow_run_id" not in info:
        raise MokuflowError(f"{run_file}: no mlflow_run_id (re-run the train stage)")
    return info["mlflow_run_id"]


if __name__ == "__main__":  # `python -m tasks.core.tracking`: print the resolved tracking URI (make ui)
    from tasks.core import load_params

    print(tracking_uri(load_params()))


def log_evaluation(params: dict, run_id: str, metrics: dict[str, float], files=()) -> None:
    """An evaluate stage's flat metrics (NaN dropped: MLflow rejects it) and files (under ``evaluate/``)
    to the pipeline's MLflow run."""
    from tasks.core import log

    with resume_run(params, run_id) as mlflow:
        mlflow.log_metrics(finite(metrics))
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="evaluate")
    log(f"evaluate: logged to MLflow run {run_id}")
