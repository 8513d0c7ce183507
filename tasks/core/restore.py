"""``mokuflow <study> restore --run RUN_ID [--remote NAME]``: bring back the raw and clean data an MLflow
run was trained on, byte for byte, from DVC's cache (or a DVC remote).

The run's ``dvc/dvc.lock`` artifact records the md5 of those folders; its entries for the stages that
produced them replace the workspace's in ``dvc.lock``, and ``dvc checkout`` (``dvc pull -r NAME``)
writes the data back. Afterwards ``dvc status`` shows what differs from the run (params, code);
``git checkout dvc.lock && dvc checkout`` returns to the committed state.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from tasks.core import MokuflowError, atomic_path, dvc_dir_hash, log, resolve, root
from tasks.core.provenance import LOCK, dvc_exe, lock_file, locked_outs, read_lock

TAG_PREFIX = "dvc.md5."


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_ID", help="the MLflow run id (MLflow UI, run.json)")
    parser.add_argument("--remote", default=None, metavar="NAME",
                        help="a DVC remote to pull from when the local cache lacks the data")


def run(params: dict, *, run: str, study: str, remote: str | None = None) -> dict:
    tags, run_lock = _run_record(params, run, study)
    wanted = {k[len(TAG_PREFIX):]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
    if not wanted:
        raise MokuflowError(f"MLflow run {run}: no {TAG_PREFIX}* tags (trained before runs recorded their DVC data)")
    outs = locked_outs(run_lock)
    unrecorded = [p for p, md5 in wanted.items() if outs.get(p, ("", ""))[1] != md5]
    if unrecorded:
        raise MokuflowError(f"MLflow run {run}: its dvc.lock does not record {', '.join(unrecorded)} as trained on "
                            "(the data was not produced through dvc repro or the Prefect flow), so DVC cannot restore it")
    stages = sorted({outs[p][0] for p in wanted})
    _checkout(params, run_lock, stages, remote)
    for p, md5 in wanted.items():  # DVC said it is done; check it, as the promise is byte for byte
        got = dvc_dir_hash(resolve(params, p))
        if got != md5:
            raise MokuflowError(f"{p}: restored data has md5 {got}, the run recorded {md5}")
    log(f"restore: {', '.join(f'{p} ({md5})' for p, md5 in wanted.items())} as in MLflow run {run}; "
        f"{LOCK} now records {', '.join(stages)} as that run did (git checkout {LOCK} && dvc checkout to go back)")
    return {"run": run, "restored": wanted, "stages": stages, "git_commit": tags.get("git_commit")}


def _run_record(params: dict, run_id: str, study: str) -> tuple[dict, dict]:
    """The run's tags and its dvc.lock artifact."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tasks.core import tracking

    mlflow = tracking.setup(params)
    try:
        info = MlflowClient().get_run(run_id)
    except MlflowException:
        raise MokuflowError(f"MLflow run {run_id!r} not found in {tracking.tracking_uri(params)}") from None
    owner = info.data.tags.get("mokuflow.study")
    if owner != study:
        raise MokuflowError(f"MLflow run {run_id} belongs to study {owner!r}, not {study!r}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"dvc/{LOCK}", dst_path=tmp)
        except (MlflowException, OSError):
            raise MokuflowError(f"MLflow run {run_id}: no dvc/{LOCK} artifact (the run predates it)") from None
        return info.data.tags, read_lock(Path(path))


def _checkout(params: dict, run_lock: dict, stages: list[str], remote: str | None) -> None:
    """The run's entries for ``stages`` into dvc.lock, then DVC writes their outputs; on failure the
    workspace dvc.lock is put back as it was."""
    lock_path = lock_file(params)
    before = lock_path.read_bytes() if lock_path.is_file() else None
    current = read_lock(lock_path) or {"schema": run_lock.get("schema", "2.0"), "stages": {}}
    current.setdefault("stages", {}).update({s: run_lock["stages"][s] for s in stages})
    with atomic_path(lock_path) as tmp:
        tmp.write_text(yaml.safe_dump(current, sort_keys=False))
    cmd = [dvc_exe(), *(["pull", "-r", remote] if remote else ["checkout"]), *stages]
    proc = subprocess.run(cmd, cwd=root(params), capture_output=True, text=True)
    if proc.returncode != 0:
        if before is None:
            lock_path.unlink(missing_ok=True)
        else:
            with atomic_path(lock_path) as tmp:
                tmp.write_bytes(before)
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        hint = "" if remote else " (not in the local cache? pass --remote NAME)"
        raise MokuflowError(f"dvc {cmd[1]} {' '.join(stages)} failed: {lines[-1] if lines else proc.returncode}{hint}")
