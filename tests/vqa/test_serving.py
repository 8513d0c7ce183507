"""The served pyfunc: ``load_model("models:/vqa@champion").predict(DataFrame(video_path=...))``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vqa"
FRAMES = {"n_clips": 4, "clip_len": 1, "height": 32, "width": 32, "motion": "diff"}


# ------------------------------------------------------------------------------------ helpers

def write_video(path: Path, *, n_frames: int, height: int, width: int, level: int, fps: int = 10) -> Path:
    """A small mp4 whose brightness is ``level`` with moving noise, so frames and motion differ."""
    import cv2

    rng = np.random.default_rng(level)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert vw.isOpened()
    for t in range(n_frames):
        img = np.full((height, width, 3), level, np.uint8)
        noise = rng.integers(0, 40, size=(height, width, 1), dtype=np.uint8)
        img = cv2.add(img, np.roll(noise, t, axis=1).repeat(3, axis=2))
        vw.write(img)
    vw.release()
    return path


def make_videos(folder: Path) -> list[Path]:
    """Videos of different resolutions, aspect ratios and lengths."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = [(40, 64, 3), (72, 128, 12), (96, 96, 7), (50, 30, 20)]
    return [write_video(folder / f"v{i}.mp4", n_frames=n, height=h, width=w, level=30 + 45 * i)
            for i, (h, w, n) in enumerate(shapes)]


def make_model_pt(path: Path, *, seed: int = 0) -> Path:
    """A tiny untrained STDAM saved the way the train stage saves it."""
    import torch

    from models.vqa.inference import save_model
    from models.vqa.stdam import STDAM

    torch.manual_seed(seed)
    model = STDAM(backbone_channels=[4, 8], gcn_layers=1, gcn_dim=8, attention_heads=2,
                  motion_channels=4, lstm_hidden=8, dropout=0.0)
    save_model(path, model, dict(FRAMES), {"mean": 3.0, "std": 0.5})
    return path


def set_store(tmp_path: Path, monkeypatch) -> tuple[str, str]:
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("vqa-test", artifact_location=(tmp_path / "art").as_uri())
    return uri, exp


@pytest.fixture(scope="module")
def inference():
    """The real models.vqa.inference (skip the module's tests until it exists)."""
    import models.vqa.inference as module

    return module


@pytest.fixture()
def registered(tmp_path, monkeypatch, inference):
    """model.pt logged + registered as ``vqa`` v1 with alias champion; returns (uri, model_pt)."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.core.serving import log_pyfunc
    from tasks.vqa.study import STUDY

    uri, exp = set_store(tmp_path, monkeypatch)
    model_pt = make_model_pt(tmp_path / "model.pt")
    with mlflow.start_run(experiment_id=exp):
        mv = log_pyfunc({}, STUDY, model_pt, registered_model_name="vqa")
    MlflowClient().set_registered_model_alias("vqa", "champion", mv.version)
    return uri, model_pt, mv


# -------------------------------------------------------------------------------------- tests

def test_pip_requirements_pin_installed_versions():
    import importlib.metadata

    from tasks.core.serving import BASE_PACKAGES, pip_requirements

    reqs = dict(r.split("==") for r in pip_requirements(BASE_PACKAGES))
    assert set(reqs) >= {"torch", "lightning", "numpy", "opencv-python-headless", "pandas", "pyyaml"}
    assert reqs["torch"] == importlib.metadata.version("torch").split("+")[0]
    assert "+" not in "".join(reqs.values())


def test_input_forms_and_missing_column(tmp_path):
    """DataFrame, dict of lists, list of dicts and a plain list are accepted; a missing column is a
    ValueError naming it; a bad row gets an error message, not an exception."""
    from tasks.core.serving import ServingInputError
    from tasks.vqa.serving import VQAPyfunc

    model = VQAPyfunc()
    v = str(write_video(tmp_path / "ok.mp4", n_frames=3, height=16, width=16, level=50))
    for given in (pd.DataFrame({"video_path": [v]}), {"video_path": [v]}, {"video_path": v},
                  [{"video_path": v}], [v]):
        assert model.input_rows(given) == [{"video_path": v}]
    with pytest.raises(ValueError, match="video_path"):
        model.input_rows(pd.DataFrame({"path": ["a.mp4"]}))
    with pytest.raises(ServingInputError, match="video_path"):
        model.input_rows([{"path": "a.mp4"}])


def test_champion_alias_scores_videos_of_any_size(registered, tmp_path, inference):
    import mlflow

    uri, model_pt, mv = registered
    videos = make_videos(tmp_path / "videos")
    served = mlflow.pyfunc.load_model("models:/vqa@champion")
    out = served.predict(pd.DataFrame({"video_path": [str(v) for v in videos]}))
    assert list(out.columns) == ["quality", "error"] and len(out) == len(videos)
    assert np.isfinite(out["quality"]).all() and out["error"].isna().all()
    # same numbers as the model-side API on model.pt: the pyfunc adds nothing but plumbing
    model, frames = inference.load_model(model_pt)
    direct = inference.predict_paths(model, frames, [str(v) for v in videos])
    np.testing.assert_allclose(out["quality"].to_numpy(), np.asarray(direct, float), rtol=1e-4, atol=1e-5)
    # the batch_size param changes nothing but batching
    out1 = served.predict(pd.DataFrame({"video_path": [str(v) for v in videos]}), params={"batch_size": 1})
    np.testing.assert_allclose(out1["quality"].to_numpy(), out["quality"].to_numpy(), rtol=1e-4, atol=1e-5)
    # the logged requirements are the pinned ones (no slow inference, reproducible env)
    reqs = Path(mlflow.artifacts.download_artifacts(f"models:/vqa/{mv.version}/requirements.txt")).read_text()
    assert "torch==" in reqs and "opencv-python-headless==" in reqs


def test_bad_rows_answer_every_other_row(registered, tmp_path):
    """One corrupt, one missing, one empty path: each gets a message in ``error``; the rest are scored."""
    import mlflow

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    good = write_video(tmp_path / "good.mp4", n_frames=4, height=24, width=32, level=90)
    served = mlflow.pyfunc.load_model("models:/vqa@champion")
    rows = [str(good), str(bad), str(tmp_path / "nope.mp4"), "", str(good)]
    out = served.predict(pd.DataFrame({"video_path": rows}))
    assert len(out) == len(rows)
    assert np.isfinite(out["quality"][[0, 4]]).all() and out["error"][[0, 4]].isna().all()
    assert out["quality"][0] == pytest.approx(out["quality"][4])
    assert out["quality"][[1, 2, 3]].isna().all()
    assert "broken.mp4" in out["error"][1] and "nope.mp4" in out["error"][2] and "not found" in out["error"][2]
    assert "video_path" in out["error"][3]
    with pytest.raises(Exception, match="video_path"):
        served.predict(pd.DataFrame({"file": [str(good)]}))


def test_loads_and_predicts_from_another_cwd(registered, tmp_path):
    """A fresh process, elsewhere, with the repo off sys.path: the model brings its own code."""
    uri, _, _ = registered
    videos = [str(v) for v in make_videos(tmp_path / "videos")]
    videos += [str(p) for p in sorted(FIXTURES.glob("*.mp4"))]  # real videos when present
    script = textwrap.dedent(f"""
        import json, sys, mlflow, pandas as pd
        mlflow.set_tracking_uri({uri!r})
        m = mlflow.pyfunc.load_model("models:/vqa@champion")
        out = m.predict(pd.DataFrame({{"video_path": {videos!r}}}))
        import tasks
        print(json.dumps({{"quality": out["quality"].tolist(), "tasks": tasks.__file__}}))
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(got["quality"]) == len(videos)
    assert np.isfinite(got["quality"]).all()
    # the code came from the logged model, not from the working tree
    repo = Path(__file__).resolve().parents[2]
    assert not Path(got["tasks"]).resolve().is_relative_to(repo)


def test_empty_input_gives_empty_output(registered):
    import mlflow

    served = mlflow.pyfunc.load_model("models:/vqa@champion")
    out = served.predict(pd.DataFrame({"video_path": pd.Series([], dtype=str)}))
    assert len(out) == 0 and list(out.columns) == ["quality", "error"]
