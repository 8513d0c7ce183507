"""The register stage: challenger / champion aliases, promotion only on a better held-out score."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core import load_params, write_json

REPO = Path(__file__).resolve().parents[2]
FRAMES = {"n_clips": 4, "clip_len": 1, "height": 32, "width": 32, "motion": "diff"}
N_TEST = 6


def write_video(path: Path, *, n_frames: int, height: int, width: int, level: int) -> Path:
    import cv2

    rng = np.random.default_rng(level)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for t in range(n_frames):
        img = np.full((height, width, 3), level, np.uint8)
        vw.write(cv2.add(img, np.roll(rng.integers(0, 40, (height, width, 3), dtype=np.uint8), t, axis=1)))
    vw.release()
    return path


def save_stdam(path: Path, *, seed: int) -> Path:
    import torch

    from models.vqa.inference import save_model
    from models.vqa.stdam import STDAM

    torch.manual_seed(seed)
    model = STDAM(backbone_channels=[4, 8], gcn_layers=1, gcn_dim=8, attention_heads=2,
                  motion_channels=4, lstm_hidden=8, dropout=0.0)
    return save_model(path, model, dict(FRAMES), {"mean": 3.0, "std": 0.5})


@pytest.fixture()
def params(tmp_path, monkeypatch):
    """A tmp project: test-split videos + labels (acquire / clean contracts), model.pt and run.json."""
    import models.vqa.inference  # noqa: F401  (declared dependency: a broken import must fail)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    p = load_params(REPO / "params.yaml")
    p["_root"] = str(tmp_path)
    p["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw, clean = tmp_path / "data/vqa/raw", tmp_path / "data/vqa/clean"
    (raw / "videos").mkdir(parents=True)
    clean.mkdir(parents=True)
    ids = [f"v{i}" for i in range(N_TEST)]
    for i, vid in enumerate(ids):
        write_video(raw / "videos" / f"{vid}.mp4", n_frames=5 + i, height=24 + 8 * i, width=40, level=30 + 35 * i)
    pd.DataFrame({"video_id": ids, "path": [f"videos/{v}.mp4" for v in ids], "content_id": ids,
                  "split": "test"}).to_csv(raw / "videos.csv", index=False)
    truth = np.linspace(1.5, 4.5, N_TEST)
    pd.DataFrame({"video_id": ids, "quality": truth, "quality_std": 0.1}).to_csv(clean / "scores.csv", index=False)
    train = tmp_path / "artifacts/vqa/train"
    save_stdam(train / "model.pt", seed=0)
    from tasks.core.tracking import start_run

    write_json(train / "run.json", {"mlflow_run_id": start_run(p, "vqa")})
    return p


def decision_file(params) -> dict:
    from tasks.core import resolve

    return json.loads((resolve(params, params["vqa"]["register"]["out_dir"]) / "decision.json").read_text())


def aliases(name: str = "vqa") -> dict:
    from mlflow import MlflowClient

    return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


# -------------------------------------------------------------------------------------- tests

def test_first_registration_becomes_champion(params):
    import mlflow
    from mlflow import MlflowClient

    from tasks.vqa import register

    result = register.run(params)
    assert result == decision_file(params)
    assert result["decision"] == "promoted" and result["previous_champion_version"] is None
    assert aliases() == {"champion": "1", "challenger": "1"}
    assert result["n_test"] == N_TEST

    client = MlflowClient()
    run_id = result["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.data.tags["register_decision"] == "promoted" and run.data.tags["champion_version"] == "1"
    assert math.isfinite(result["challenger_score"]), "the served model scored every test video the same"
    assert run.data.metrics["challenger_srcc"] == pytest.approx(result["challenger_score"])
    assert [a.path for a in client.list_artifacts(run_id, "register")] == ["register/decision.json"]
    tags = client.get_model_version("vqa", "1").tags
    assert tags["mlflow_run_id"] == run_id
    assert tags["data_version"] == run.data.tags["data_version"] and tags["git_commit"] == run.data.tags["git_commit"]
    assert "test_srcc" in tags

    # the score recorded is the served model's score on the test split
    from models.vqa.metrics import srcc
    from tasks.vqa.data import test_items

    items = test_items(params)
    served = mlflow.pyfunc.load_model("models:/vqa@champion")
    pred = served.predict(pd.DataFrame({"video_path": list(items["path"])}))["quality"]
    expected = srcc(items["quality"], pred)
    assert result["challenger_score"] == pytest.approx(expected)


def test_worse_challenger_keeps_champion_better_one_is_promoted(params, monkeypatch):
    from tasks.vqa import register

    truth = np.linspace(1.5, 4.5, N_TEST)
    noisy = truth + np.array([0.0, 1.2, -0.9, 0.8, -1.1, 0.0])  # some rank swaps: 0 < SRCC < 1
    by_version = {"1": noisy, "2": -truth, "3": truth}  # 2 is worse than 1, 3 beats 1
    scored: list[str] = []

    def fake_predict(model_uri, paths):
        version = model_uri.rsplit("/", 1)[-1]
        scored.append(version)
        return by_version[version]

    monkeypatch.setattr(register, "_predict", fake_predict)

    first = register.run(params)
    assert first["decision"] == "promoted" and aliases() == {"champion": "1", "challenger": "1"}
    assert 0 < first["challenger_score"] < 1

    save_stdam(Path(params["_root"]) / "artifacts/vqa/train/model.pt", seed=1)
    worse = register.run(params)
    assert sorted(scored[1:]) == ["1", "2"]  # both re-scored on the same test split
    assert worse["decision"] == "kept" and worse["champion_version"] == "1"
    assert worse["previous_champion_score"] == pytest.approx(first["challenger_score"])
    assert aliases() == {"champion": "1", "challenger": "2"}
    assert decision_file(params) == worse

    better = register.run(params)
    assert better["decision"] == "promoted" and better["previous_champion_version"] == "1"
    assert better["challenger_score"] == pytest.approx(1.0)
    assert aliases() == {"champion": "3", "challenger": "3"}
    assert decision_file(params)["champion_version"] == "3"


def test_a_champion_this_code_cannot_load_is_compared_by_its_recorded_score(params, monkeypatch):
    """After a change of network definition the old champion no longer loads: registering goes on."""
    from tasks.vqa import register

    truth = np.linspace(1.5, 4.5, N_TEST)
    noisy = truth + np.array([0.0, 1.2, -0.9, 0.8, -1.1, 0.0])
    calls = {"n": 0}

    def fake_predict(model_uri, paths):
        calls["n"] += 1
        if model_uri.endswith("/1") and calls["n"] > 1:  # v1 scored fine when it was registered
            raise RuntimeError("weights do not match the config (Missing key(s) in state_dict)")
        return {"/1": noisy, "/2": -truth, "/3": truth}[model_uri[-2:]]

    monkeypatch.setattr(register, "_predict", fake_predict)
    first = register.run(params)
    worse = register.run(params)  # v2 (SRCC -1) against v1's recorded score: kept
    assert worse["decision"] == "kept" and worse["previous_champion_score"] == pytest.approx(first["challenger_score"], abs=1e-6)
    assert "cannot be re-scored" in worse["previous_champion_scored"] and "weights do not match" in worse["reason"]
    better = register.run(params)  # v3 (SRCC 1) beats v1's recorded score: promoted
    assert better["decision"] == "promoted" and aliases() == {"champion": "3", "challenger": "3"}


def test_decide_rules():
    from tasks.core.register import decide as core_decide
    from tasks.vqa.study import STUDY

    def decide(new, old, *, metric, min_improvement):  # the direction comes from the declaration
        return core_decide(new, old, metric=metric, higher_is_better=STUDY.higher_is_better(metric),
                           min_improvement=min_improvement)

    assert decide(0.5, None, metric="srcc", min_improvement=0.0)[0]
    assert not decide(0.8, 0.8, metric="srcc", min_improvement=0.0)[0]  # a tie keeps the champion
    assert not decide(0.85, 0.8, metric="srcc", min_improvement=0.1)[0]
    assert decide(0.95, 0.8, metric="srcc", min_improvement=0.1)[0]
    assert decide(0.4, 0.6, metric="rmse", min_improvement=0.0)[0]  # lower RMSE is better
    assert not decide(0.7, 0.6, metric="rmse", min_improvement=0.0)[0]
    assert not decide(float("nan"), 0.6, metric="srcc", min_improvement=0.0)[0]
    assert decide(0.1, float("nan"), metric="srcc", min_improvement=0.0)[0]


def test_bad_inputs(params):
    from tasks.core import MokuflowError
    from tasks.vqa import register

    params["vqa"]["register"]["metric"] = "accuracy"
    with pytest.raises(MokuflowError, match="vqa.register.metric"):
        register.run(params)
    params["vqa"]["register"]["metric"] = "srcc"
    (Path(params["_root"]) / "artifacts/vqa/train/model.pt").unlink()
    with pytest.raises(MokuflowError, match="model.pt"):
        register.run(params)
    with pytest.raises(FileNotFoundError):
        decision_file(params)
