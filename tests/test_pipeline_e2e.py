"""One path through the pipeline, end to end, in one project copy (tiny params, its own git repo, DVC
cache, MLflow SQLite and Prefect home): `dvc repro`, then the Prefect flows that run the same stages
through DVC, per-run overrides as DVC experiments, the scheduled retrain picking up a grown source,
restoring a run's data, and the served deployments (on demand, retrain, a work pool).

The tests share the module's project and run in file order: each starts from the state the one before
left (as a user's repository would be).
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
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from tasks.cli import TRACE_ENV
from tasks.core import dvc_dir_hash
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


def _sh(project: Path, *args, timeout=900, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=project, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _git(project: Path, *args) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=project,
                         check=True, capture_output=True, text=True)
    return out.stdout


def _project_copy(dest: Path) -> Path:
    """The project's tracked and not-ignored files (no dvc.lock) with tiny params, committed in a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if rel == "dvc.lock" or not src.is_file() or rel.startswith(("tests/", "benchmarks/")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    # the VQA ablation stage on its full path once (one variant): off by default, it would train nothing
    write_tiny_params(dest, {"vqa.ablation.enabled": True, "vqa.ablation.variants": ["mean_pool"]})
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-qm", "project")
    return dest


def _repro(project: Path, *args, **env) -> list[str]:
    out = _sh(project, BIN / "dvc", "repro", *args, **env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr)


def _lock(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def _locked_md5(project: Path, path: str) -> str:
    for entry in _lock(project).values():
        for out in entry.get("outs", []):
            if out["path"] == path:
                return out["md5"]
    raise AssertionError(f"{path} not in dvc.lock")


def _cached(project: Path, md5: str) -> bool:
    h = md5.removesuffix(".dir")
    return (project / ".dvc/cache/files/md5" / h[:2] / (h[2:] + (".dir" if md5.endswith(".dir") else ""))).is_file()


def _stages() -> list[str]:
    from tasks.core.study import studies

    return [f"{name}-{stage}" for name, st in studies().items() for stage in st.pipeline]


def _mlflow(project: Path):
    from tasks.core import load_params
    from tasks.core.tracking import setup

    mlflow = setup(load_params(project / "params.yaml"))
    return mlflow, mlflow.MlflowClient()


def _run_id(project: Path, study: str) -> str:
    return json.loads((project / f"artifacts/{study}/train/run.json").read_text())["mlflow_run_id"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The copy after one `dvc repro` of every study, with each stage's imports traced."""
    base = tmp_path_factory.mktemp("onepath")
    proj = _project_copy(base / "proj")
    ran = _repro(proj, **{TRACE_ENV: str(base / "trace")})
    return SimpleNamespace(path=proj, trace=base / "trace", ran=ran,
                           first_runs={s: _run_id(proj, s) for s in ("vqa", "detection")},
                           detection_data={d: _files(proj / f"data/detection/{d}") for d in ("raw", "clean")})


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# -------------------------------------------------------------------------------------------- DVC

def test_dvc_repro_runs_every_stage_once_then_nothing(project):
    assert sorted(project.ran) == sorted(_stages())
    assert set(_lock(project.path)) == set(_stages())
    assert _repro(project.path) == []
    for study in ("vqa", "detection"):  # the data is in DVC's cache
        for d in ("raw", "clean"):
            assert _cached(project.path, _locked_md5(project.path, f"data/{study}/{d}"))


def _imported(stage: str, trace: Path) -> set[str]:
    """The project files a stage imported, less package docstring files and other studies' declarations
    (the CLI reads every declaration to build its help)."""
    study = stage.split("-")[0]
    found = set()
    for f in json.loads((trace / f"{stage}.json").read_text()):
        parts = f.split("/")
        if parts[0] not in ("tasks", "models") or parts[-1] == "__init__.py":
            continue
        if parts[0] == "tasks" and len(parts) == 3 and parts[1] not in ("core", study) and parts[2] == "study.py":
            continue
        found.add(f)
    return found


def test_dvc_deps_list_what_each_stage_really_runs(project):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in _stages():
        declared = {d for d in stages[name]["deps"] if d.startswith(("tasks/", "models/"))}
        imported = _imported(name, project.trace)
        core = {f for f in imported if f.startswith("tasks/core/")}
        assert core and "tasks/core" in declared, name     # the core as a whole: its change re-runs all
        code = declared - {"tasks/core"} - {d for d in declared if d.startswith("tasks/templates/")}
        assert code == imported - core, f"{name}: missing {sorted(imported - core - code)}, " \
                                        f"not imported {sorted(code - (imported - core))}"
        pages = {d for d in declared if d.startswith("tasks/templates/")}
        study = name.split("-")[0]
        assert pages == ({"tasks/templates/base.html", f"tasks/templates/{study}.html"}
                         if name.endswith("-report") else set()), name
    for init in [*REPO.glob("tasks/*/__init__.py"), *REPO.glob("models/*/__init__.py"),
                 REPO / "tasks/__init__.py", REPO / "models/__init__.py"]:
        if init.parent.name == "core":
            continue
        import ast

        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), \
            f"{init}: holds code, so dvc.yaml must list it"


def test_an_edit_reruns_only_the_stages_that_use_it(project):
    page = project.path / "tasks/templates/vqa.html"
    page.write_text(page.read_text() + "\n{# touched #}\n")
    assert _repro(project.path) == ["vqa-report"]            # a page: only its report
    params = yaml.safe_load((project.path / "params.yaml").read_text())
    params["vqa"]["train"]["max_epochs"] = 3                  # a training key: train and what follows
    (project.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the ablation trains its variants with STDAM's schedule, so it follows too
    assert sorted(_repro(project.path)) == sorted(["vqa-train", "vqa-evaluate", "vqa-ablation", "vqa-report",
                                                   "vqa-register"])
    _git(project.path, "add", "-A")
    _git(project.path, "commit", "-qm", "three epochs")


def test_deterministic_outputs_agree_across_clones(project, tmp_path):
    other = _project_copy(tmp_path / "elsewhere" / "clone")
    _repro(other, "vqa-clean", "detection-clean")
    for study in ("vqa", "detection"):
        for d in ("raw", "clean"):
            path = f"data/{study}/{d}"
            assert _locked_md5(other, path) == _locked_md5(project.path, path), path
    for f in [*project.path.glob("data/**/*.json"), *project.path.glob("artifacts/*/train/run.json")]:
        assert str(project.path) not in f.read_text(), f"{f} holds an absolute path"


def test_a_fresh_clone_with_the_lock_logs_and_registers_its_own_run(project, tmp_path):
    """A clone of a commit whose dvc.lock was made elsewhere: no outputs, an empty MLflow store. The model
    comes out bit-identical, so only train's run.json (the new MLflow run) tells DVC that evaluate, report
    and register must run again: without it the clone would end with no champion and no page."""
    other = _project_copy(tmp_path / "fresh" / "clone")
    shutil.copy2(project.path / "dvc.lock", other / "dvc.lock")
    ran = _repro(other, "--glob", "detection-*")
    assert sorted(ran) == sorted(s for s in _stages() if s.startswith("detection-"))
    model = "artifacts/detection/train/model.pt"
    assert _locked_md5(other, model) == _locked_md5(project.path, model)  # the scenario: same model
    run_id = _run_id(other, "detection")
    assert run_id != _run_id(project.path, "detection")
    _, client = _mlflow(other)
    assert client.get_model_version_by_alias("detection", "champion").run_id == run_id
    assert "report/index.html" in {a.path for a in client.list_artifacts(run_id, "report")}
    assert client.get_run(run_id).data.metrics["test_n"] > 0  # evaluate logged into it too
    assert _repro(other, "--glob", "detection-*") == []  # and then DVC agrees


# ---------------------------------------------------------------------------------------- Prefect

def test_prefect_runs_through_dvc_skips_what_is_up_to_date_and_versions_overrides(project, prefect_harness,
                                                                                  monkeypatch):
    from flows.pipeline import detection_pipeline, vqa_pipeline
    from tasks.core import load_params
    from tasks.core.provenance import provenance

    proj, params_file = project.path, project.path / "params.yaml"
    monkeypatch.chdir(proj)
    summary = vqa_pipeline(params_path=str(params_file))
    assert [summary[s]["status"] for s in ("acquire", "clean", "train", "register")] == ["skipped"] * 4

    before = params_file.read_bytes()
    summary = detection_pipeline(params_path=str(params_file), overrides={"detection.train.max_epochs": 1})
    assert [summary[s]["status"] for s in ("acquire", "clean")] == ["skipped"] * 2
    assert [summary[s]["status"] for s in ("train", "evaluate", "report", "register")] == ["ran"] * 4
    assert params_file.read_bytes() == before                 # the override was for this run only ...
    shown = json.loads(_sh(proj, BIN / "dvc", "exp", "show", "--json").stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    mine = [e for e in exps if e.get("name") == summary["experiment"]]
    assert mine, exps                                         # ... and saved as a DVC experiment with it
    exp_params = mine[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert exp_params["detection"]["train"]["max_epochs"] == 1

    # the MLflow run: params, provenance from DVC's hashes, dvc.lock, git commit, the flow run
    mlflow, client = _mlflow(proj)
    run = client.get_run(_run_id(proj, "detection"))
    assert run.data.params["detection.train.max_epochs"] == "1"
    expected = provenance(load_params(params_file), "detection")
    assert run.data.tags["data_version"] == expected["data_version"]
    assert run.data.tags["dvc.md5.data/detection/raw"] == _locked_md5(proj, "data/detection/raw")
    assert run.data.tags["dvc.md5.data/detection/clean"] == _locked_md5(proj, "data/detection/clean")
    assert run.data.tags["dvc.restorable"] == "true"
    assert run.data.tags["git_commit"] == _git(proj, "rev-parse", "HEAD").strip()
    assert run.data.tags["prefect.flow_run_id"]
    assert "dvc/dvc.lock" in {a.path for a in client.list_artifacts(run.info.run_id, "dvc")}
    assert "AP" in run.data.metrics or any(k.startswith("test_") for k in run.data.metrics)

    # a plain run afterwards: DVC sees the params back at 2 epochs, re-trains, and then agrees
    summary = detection_pipeline(params_path=str(params_file))
    assert summary["train"]["status"] == "ran" and summary["clean"]["status"] == "skipped"
    status = _sh(proj, BIN / "dvc", "status", "--json", *[s for s in _stages() if s.startswith("detection-")])
    assert json.loads(status.stdout) == {}
    assert _repro(proj, "--glob", "detection-*") == []


def test_scheduled_retrain_picks_up_a_grown_source(project, prefect_harness, monkeypatch, tmp_path):
    """A COCO folder as the source: the retrain re-reads it; one more image re-runs clean ... register,
    an unchanged folder re-runs nothing after acquire and says why."""
    from flows.pipeline import detection_pipeline

    proj, params_file = project.path, project.path / "params.yaml"
    monkeypatch.chdir(proj)
    source = tmp_path / "incoming"
    shutil.copytree(proj / "data/detection/raw/images", source / "images")
    full = json.loads((proj / "data/detection/raw/annotations/instances_train.json").read_text())
    held = full["images"][-1]["id"]
    first = {**full, "images": full["images"][:-1],
             "annotations": [a for a in full["annotations"] if a["image_id"] != held]}
    (source / "train.json").write_text(json.dumps(first))
    for split in ("val", "test"):
        shutil.copy(proj / f"data/detection/raw/annotations/instances_{split}.json", source / f"{split}.json")
    params = yaml.safe_load(params_file.read_text())
    params["detection"]["data"]["source"] = "coco"
    params["detection"]["data"]["coco"] = {"images": str(source / "images"),
                                           "annotations": {s: str(source / f"{s}.json") for s in ("train", "val", "test")}}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    _git(proj, "commit", "-qam", "detection from a COCO folder")

    detection_pipeline(params_path=str(params_file), refresh_source=True)   # the new source: all of it runs
    raw_before = _locked_md5(proj, "data/detection/raw")
    summary = detection_pipeline(params_path=str(params_file), refresh_source=True)
    assert summary["acquire"]["status"] == "ran"
    assert all(summary[s]["status"] == "skipped" for s in ("clean", "train", "evaluate", "report", "register"))
    assert "nothing changed at the source" in summary["reason"]

    (source / "train.json").write_text(json.dumps(full))                   # the folder grew by one image
    summary = detection_pipeline(params_path=str(params_file), refresh_source=True)
    assert all(summary[s]["status"] == "ran" for s in ("acquire", "clean", "train", "evaluate", "register"))
    assert _locked_md5(proj, "data/detection/raw") != raw_before
    assert json.loads((proj / "data/detection/raw/annotations/instances_train.json").read_text())["images"][-1]["id"] == held
    _git(proj, "add", "-A")
    _git(proj, "commit", "-qm", "retrained on the grown source")


def test_restore_brings_back_a_runs_data_byte_for_byte(project):
    proj = project.path
    assert _files(proj / "data/detection/raw") != project.detection_data["raw"]   # the data moved on
    out = _sh(proj, BIN / "mokuflow", "detection", "restore", "--run", project.first_runs["detection"])
    assert out.returncode == 0, out.stderr[-2000:]
    for d in ("raw", "clean"):
        assert _files(proj / f"data/detection/{d}") == project.detection_data[d], d
    bad = _sh(proj, BIN / "mokuflow", "detection", "restore", "--run", "0123456789abcdef")
    assert bad.returncode == 2 and "not found" in bad.stderr
    wrong = _sh(proj, BIN / "mokuflow", "vqa", "restore", "--run", project.first_runs["detection"])
    assert wrong.returncode == 2 and "belongs to study 'detection'" in wrong.stderr
    # back to the committed state, as the restore's message says
    _git(proj, "checkout", "dvc.lock")
    assert _sh(proj, BIN / "dvc", "checkout").returncode == 0
    assert dvc_dir_hash(proj / "data/detection/raw") == _locked_md5(proj, "data/detection/raw")


# ---------------------------------------------------------------------------- served deployments

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_champions_serve(project: Path):
    mlflow, client = _mlflow(project)
    videos = sorted((project / "data/vqa/raw/videos").glob("*.mp4"))[:2]
    assert videos
    out = mlflow.pyfunc.load_model("models:/vqa@champion").predict(pd.DataFrame({"video_path": [str(v) for v in videos]}))
    assert len(out) == 2 and out["error"].isna().all() and out["quality"].notna().all()
    images = [str(p) for p in sorted((project / "data/detection/raw/images").glob("*.jpg"))[:2]]
    assert images
    out = mlflow.pyfunc.load_model("models:/detection@champion").predict(pd.DataFrame({"image_path": images}))
    assert out["error"].isna().all() and set(out["image_path"]) <= set(images)


def test_served_deployments_run_through_dvc(project):
    """What `make serve` does, on a private port and PREFECT_HOME; then the user's CLI commands."""
    proj, params_file = project.path, project.path / "params.yaml"
    port = _free_port()
    env = dict(PREFECT_HOME=str(proj / ".prefect-served"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    prefect = BIN / "prefect"
    assert _sh(proj, prefect, "server", "start", "--background", "--port", port, timeout=120, **env).returncode == 0
    try:
        assert _sh(proj, prefect, "server", "status", "--wait", "--timeout", "120", timeout=150, **env).returncode == 0
        up = _sh(proj, sys.executable, "-m", "flows.serve", "start", "--params", params_file, timeout=200, **env)
        assert up.returncode == 0 and "ready" in up.stdout, up.stdout[-2000:] + up.stderr[-2000:]

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from tasks.core.study import studies

        declared = yaml.safe_load(params_file.read_text())
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                for name in studies():  # every declared study: on demand + scheduled retrain
                    client.read_deployment_by_name(f"{name}-pipeline/{name}")
                    retrain = client.read_deployment_by_name(f"{name}-pipeline/{name}-retrain")
                    assert [s.schedule.cron for s in retrain.schedules] == [declared[name]["schedule"]["retrain_cron"]]
                    assert retrain.parameters["refresh_source"] is True

        for dep in ("vqa-pipeline/vqa", "detection-pipeline/detection-retrain"):
            run = _sh(proj, prefect, "deployment", "run", dep, "--watch", timeout=600, **env)
            assert run.returncode == 0 and "Completed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
        assert _repro(proj) == []                                # DVC agrees with what the deployments ran
        _assert_champions_serve(proj)
    finally:
        down = _sh(proj, sys.executable, "-m", "flows.serve", "stop", "--params", params_file, timeout=60, **env)
        _sh(proj, prefect, "server", "stop", timeout=60, **env)
    assert down.returncode == 0
    assert not (proj / ".run" / "serve.pid").exists()


def test_work_pool_deployment_runs_on_a_worker(project):
    """The README's scale-out route: a process work pool, the deployments on it, a worker that runs a
    flow run to completion (the work pool, not `make serve`'s in-process runner)."""
    proj, params_file = project.path, project.path / "params.yaml"
    port = _free_port()
    env = dict(PREFECT_HOME=str(proj / ".prefect-pool"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_WORKER_QUERY_SECONDS="2")
    prefect = BIN / "prefect"
    assert _sh(proj, prefect, "server", "start", "--background", "--port", port, timeout=120, **env).returncode == 0
    try:
        assert _sh(proj, prefect, "server", "status", "--wait", "--timeout", "120", timeout=150, **env).returncode == 0
        dep = _sh(proj, sys.executable, "-m", "flows.serve", "deploy", "--pool", "cpu-pool", "--params", params_file,
                  **env)
        assert dep.returncode == 0 and "vqa-pipeline/vqa-retrain" in dep.stdout, dep.stdout[-2000:] + dep.stderr[-2000:]
        queued = _sh(proj, prefect, "deployment", "run", "vqa-pipeline/vqa", **env)
        assert queued.returncode == 0, queued.stdout[-2000:] + queued.stderr[-2000:]
        worker = _sh(proj, prefect, "worker", "start", "--pool", "cpu-pool", "--run-once", timeout=600, **env)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                pool = client.read_work_pool("cpu-pool")
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["vqa"])))
        assert pool.type == "process"
        assert [r.state.type.value for r in runs] == ["COMPLETED"]
        assert _repro(proj) == []
        _assert_champions_serve(proj)
    finally:
        _sh(proj, prefect, "server", "stop", timeout=60, **env)
