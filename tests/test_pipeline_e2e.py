"""The VQA pipeline end to end through each interface users touch: the Prefect flow, `dvc repro`,
and served deployments run with `prefect deployment run --watch`; then the registered model as users load it.

All on tiny params in tmp folders (own MLflow SQLite, own data), so nothing touches the repo's stores.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, write_tiny_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _env(**extra) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GIT_PYTHON_REFRESH": "quiet"}
    env.pop("MOKUFLOW_PARAMS", None)
    env.update(extra)
    return env


def _mlflow(params_file: Path):
    from tasks.core import load_params
    from tasks.core.tracking import setup

    mlflow = setup(load_params(params_file))
    return mlflow, mlflow.MlflowClient()


def _assert_registered_and_servable(params_file: Path, video_paths: list[Path]):
    """The contract: models:/vqa@champion loads and scores any readable video, one number each."""
    mlflow, client = _mlflow(params_file)
    champion = client.get_model_version_by_alias("vqa", "champion")
    challenger = client.get_model_version_by_alias("vqa", "challenger")
    assert int(champion.version) >= 1 and int(challenger.version) >= int(champion.version)
    model = mlflow.pyfunc.load_model("models:/vqa@champion")
    out = model.predict(pd.DataFrame({"video_path": [str(p) for p in video_paths]}))
    scores = out["quality"].to_numpy()
    assert scores.shape == (len(video_paths),) and np.isfinite(scores).all() and out["error"].isna().all()
    return champion, challenger


# ------------------------------------------------------------------------------------------ Prefect

@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_prefect_flow_runs_every_stage_and_logs_a_comparable_run(tmp_path, prefect_harness, monkeypatch):
    from flows.pipeline import vqa_pipeline
    from tasks.core import dvc_dir_hash, load_params, resolve

    params_file = write_tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    summary = vqa_pipeline(params_path=str(params_file))
    assert list(summary) == ["acquire", "clean", "train", "baseline", "evaluate", "report", "register"]

    params = load_params(params_file)
    mlflow, client = _mlflow(params_file)
    run_id = json.loads((resolve(params, params["vqa"]["train"]["out_dir"]) / "run.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    # params flattened, data version = DVC hash of the cleaned data, git commit
    assert run.data.params["vqa.train.max_epochs"] == "2"
    assert run.data.params["mlflow.tracking_uri"] == params["mlflow"]["tracking_uri"]
    assert run.data.tags["data_version"] == dvc_dir_hash(resolve(params, params["vqa"]["data"]["clean_dir"]))
    assert "git_commit" in run.data.tags
    for key in ("test_srcc", "test_plcc", "test_krcc", "test_rmse", "baseline_test_srcc"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(run_id, "train_loss")) >= 1
    artifacts = {a.path for a in client.list_artifacts(run_id, "report")}
    assert "report/index.html" in artifacts and any(p.endswith(".png") for p in artifacts)

    videos = sorted((tmp_path / "data/vqa/raw/videos").glob("*.mp4"))[:3]
    first_champion, _ = _assert_registered_and_servable(params_file, videos)

    # The retrain deployment's path: no new acquisition, a new version, champion only if it wins.
    raw_before = dvc_dir_hash(tmp_path / "data/vqa/raw")
    summary = vqa_pipeline(params_path=str(params_file), acquire=False,
                           overrides={"vqa.train.max_epochs": 1})
    assert "acquire" not in summary
    assert dvc_dir_hash(tmp_path / "data/vqa/raw") == raw_before
    champion, challenger = _assert_registered_and_servable(params_file, videos)
    decision = json.loads((tmp_path / "reports/vqa-register/decision.json").read_text())
    assert int(challenger.version) == int(first_champion.version) + 1
    promoted = int(champion.version) == int(challenger.version)
    assert promoted == (decision["decision"] == "promoted")


# ---------------------------------------------------------------------------------------------- DVC

def _project_copy(dest: Path) -> Path:
    """The project's tracked and not-ignored files in a fresh git repo, without dvc.lock."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if rel == "dvc.lock" or not src.is_file() or rel.startswith(("tests/", "benchmarks/")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def _repro(project: Path) -> list[str]:
    out = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project, env=_env(), capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr)


def test_dvc_repro_reruns_only_what_changed(tmp_path):
    project = _project_copy(tmp_path / "proj")
    write_tiny_params(project)
    from tasks.core.study import studies

    stages = [f"{name}-{stage}" for name, st in studies().items() for stage in st.pipeline]
    assert {s.split("-")[0] for s in stages} >= {"vqa", "detection"}
    assert sorted(_repro(project)) == sorted(stages)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    assert _repro(project) == []                      # nothing changed: nothing runs

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["vqa"]["train"]["max_epochs"] = 3          # a training key: train and what follows
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # only VQA's train and what follows: no other study's stage
    assert sorted(_repro(project)) == sorted(["vqa-train", "vqa-evaluate", "vqa-report", "vqa-register"])
    metrics = json.loads((project / "metrics/vqa/metrics.json").read_text())
    assert {"stdam", "baseline"} <= set(metrics)
    _assert_registered_and_servable(project / "params.yaml",
                                    sorted((project / "data/vqa/raw/videos").glob("*.mp4"))[:2])
    mlflow, _ = _mlflow(project / "params.yaml")
    detections = mlflow.pyfunc.load_model("models:/detection@champion").predict(
        pd.DataFrame({"image_path": [str(p) for p in sorted((project / "data/detection/raw/images").glob("*"))[:2]]}))
    assert detections["error"].isna().all()

    # a change in the core's code re-runs every study's stages that list it
    core = project / "tasks/core/logs.py"
    core.write_text(core.read_text() + "\n# touched\n")
    assert sorted(_repro(project)) == sorted(stages)


# ---------------------------------------------------------------------------- served deployments

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_deployments_run_and_retrain_is_scheduled(tmp_path):
    """What `make serve` does, on a private port and PREFECT_HOME; then the user's CLI command."""
    params_file = write_tiny_params(tmp_path)
    port = _free_port()
    env = _env(PREFECT_HOME=str(tmp_path / ".prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    prefect = str(BIN / "prefect")

    def sh(*args, timeout=300):
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)

    started = sh(prefect, "server", "start", "--background", "--port", str(port), timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        assert sh(prefect, "server", "status", "--wait", "--timeout", "120", timeout=150).returncode == 0
        up = sh(sys.executable, "-m", "flows.serve", "start", "--params", str(params_file), timeout=200)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "ready" in up.stdout

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from tasks.core.study import studies

        declared = yaml.safe_load(params_file.read_text())
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                for name in studies():  # every declared study: on demand + scheduled retrain
                    client.read_deployment_by_name(f"{name}-pipeline/{name}")
                    retrain = client.read_deployment_by_name(f"{name}-pipeline/{name}-retrain")
                    crons = [s.schedule.cron for s in retrain.schedules]
                    assert crons == [declared[name]["schedule"]["retrain_cron"]]
                    assert retrain.parameters["acquire"] is False

        run = sh(prefect, "deployment", "run", "vqa-pipeline/vqa", "--watch", timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Completed" in run.stdout
        _assert_registered_and_servable(params_file, sorted((tmp_path / "data/vqa/raw/videos").glob("*.mp4"))[:2])

        run = sh(prefect, "deployment", "run", "detection-pipeline/detection", "--watch", timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Completed" in run.stdout
        mlflow, client = _mlflow(params_file)
        assert int(client.get_model_version_by_alias("detection", "champion").version) == 1
        images = [str(p) for p in sorted((tmp_path / "data/detection/raw/images").glob("*.jpg"))[:2]]
        out = mlflow.pyfunc.load_model("models:/detection@champion").predict(pd.DataFrame({"image_path": images}))
        assert out["error"].isna().all() and set(out["image_path"]) <= set(images)
    finally:
        down = sh(sys.executable, "-m", "flows.serve", "stop", "--params", str(params_file), timeout=60)
        sh(prefect, "server", "stop", timeout=60)
    assert down.returncode == 0
    pid_file = tmp_path / ".run" / "serve.pid"
    assert not pid_file.exists()


def test_work_pool_deployment_runs_on_a_worker(tmp_path):
    """The README's scale-out route: a process work pool, the deployments on it, a worker that runs a
    flow run to completion (the work pool, not `make serve`'s in-process runner)."""
    params_file = write_tiny_params(tmp_path)
    port = _free_port()
    env = _env(PREFECT_HOME=str(tmp_path / ".prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_WORKER_QUERY_SECONDS="2")
    prefect = str(BIN / "prefect")

    def sh(*args, timeout=300):
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)

    assert sh(prefect, "server", "start", "--background", "--port", str(port), timeout=120).returncode == 0
    try:
        assert sh(prefect, "server", "status", "--wait", "--timeout", "120", timeout=150).returncode == 0
        dep = sh(sys.executable, "-m", "flows.serve", "deploy", "--pool", "cpu-pool", "--params", str(params_file))
        assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
        assert "vqa-pipeline/vqa-retrain" in dep.stdout
        queued = sh(prefect, "deployment", "run", "vqa-pipeline/vqa")
        assert queued.returncode == 0, queued.stdout[-2000:] + queued.stderr[-2000:]
        worker = sh(prefect, "worker", "start", "--pool", "cpu-pool", "--run-once", timeout=600)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                pool = client.read_work_pool("cpu-pool")
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["vqa"])))
        assert pool.type == "process"
        assert [r.state.type.value for r in runs] == ["COMPLETED"]
        _assert_registered_and_servable(params_file, sorted((tmp_path / "data/vqa/raw/videos").glob("*.mp4"))[:2])
    finally:
        sh(prefect, "server", "stop", timeout=60)
