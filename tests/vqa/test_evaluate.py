"""The baseline and evaluate stages end to end on a tiny project (real videos, STDAM file, MLflow run)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core import MokuflowError, load_params, write_json
from tests.conftest import write_tiny_params

SPLITS = ["train"] * 4 + ["val"] * 2 + ["test"] * 6


def write_video(path: Path, *, level: int, blur: float, noise: float, seed: int) -> None:
    """A small textured pan with a given blur / noise, so videos differ in measurable ways."""
    import cv2

    rng = np.random.default_rng(seed)
    canvas = cv2.resize(rng.random((8, 12, 3), dtype=np.float32), (60, 32), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(canvas * 120 + level, 0, 255).astype(np.uint8)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (40, 32))
    assert vw.isOpened()
    for t in range(8):
        f = canvas[:, 2 * t:2 * t + 40].copy()
        if blur:
            f = cv2.GaussianBlur(f, (5, 5), blur)
        f = np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        vw.write(f)
    vw.release()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """acquire / clean / train outputs per the contracts, then the baseline and evaluate stages run."""
    import torch

    import models.vqa.inference  # noqa: F401  (declared dependency: a broken import must fail)
    from models.vqa.inference import save_model
    from models.vqa.stdam import STDAM
    from tasks.core.tracking import start_run
    from tasks.vqa import baseline, evaluate

    root = tmp_path_factory.mktemp("proj")
    params = load_params(write_tiny_params(root))
    raw, clean = root / "data/vqa/raw", root / "data/vqa/clean"
    (raw / "videos").mkdir(parents=True)
    clean.mkdir(parents=True)
    ids = [f"v{i:02d}" for i in range(len(SPLITS))]
    rng = np.random.default_rng(0)
    blur, noise = rng.uniform(0, 2, len(ids)), rng.uniform(0, 15, len(ids))
    for i, vid in enumerate(ids):
        write_video(raw / "videos" / f"{vid}.mp4", level=40 + 10 * i, blur=blur[i], noise=noise[i], seed=i)
    pd.DataFrame({"video_id": ids, "path": [f"videos/{v}.mp4" for v in ids], "content_id": ids,
                  "split": SPLITS}).to_csv(raw / "videos.csv", index=False)
    quality = 5.0 - blur - noise / 10
    pd.DataFrame({"video_id": ids, "quality": quality, "quality_std": 0.1}).to_csv(clean / "scores.csv", index=False)

    torch.manual_seed(0)
    model = STDAM(backbone_channels=[4, 8], gcn_layers=1, gcn_dim=8, attention_heads=2,
                  motion_channels=4, lstm_hidden=8, dropout=0.0)
    frames = {k: params["vqa"]["frames"][k] for k in ("n_clips", "clip_len", "height", "width", "motion")}
    train_dir = root / params["vqa"]["train"]["out_dir"]
    save_model(train_dir / "model.pt", model, frames, {"mean": 3.0, "std": 0.5})
    run_id = start_run(params, "vqa")
    write_json(train_dir / "run.json", {"mlflow_run_id": run_id})

    fit = baseline.run(params)
    summary = evaluate.run(params)
    return {"params": params, "root": root, "ids": ids, "quality": quality, "frames": frames,
            "run_id": run_id, "fit": fit, "summary": summary}


def outputs(project) -> tuple[dict, pd.DataFrame]:
    out = project["root"] / "metrics/vqa"
    return json.loads((out / "metrics.json").read_text()), pd.read_csv(out / "predictions.csv", dtype={"video_id": str})


# ------------------------------------------------------------------------------------- baseline

def test_baseline_json(project):
    from models.vqa.baseline import FEATURE_NAMES, BaselineRegressor

    d = json.loads((project["root"] / "artifacts/vqa/baseline/baseline.json").read_text())
    assert d["feature_names"] == list(FEATURE_NAMES)
    assert d["frames"] == project["frames"]
    assert d["n_train"] == 6 and d["alpha"] == project["params"]["vqa"]["baseline"]["ridge_alpha"]
    assert set(d["train_fit"]) == {"srcc", "krcc", "plcc", "rmse"}
    assert d["val_fit_trained_on_train"] is None  # only 2 val videos: too few to score
    assert len(BaselineRegressor.from_dict(d).coef_) == len(FEATURE_NAMES)


def test_baseline_errors_name_the_file(project, tmp_path):
    from tasks.vqa import baseline

    p = copy.deepcopy(project["params"])
    p["vqa"]["data"]["clean_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(MokuflowError, match=r"nowhere/scores.csv: not found"):
        baseline.run(p)
    p = copy.deepcopy(project["params"])
    p["vqa"]["baseline"]["ridge_alpha"] = -1
    with pytest.raises(MokuflowError, match="ridge_alpha"):
        baseline.run(p)


# ------------------------------------------------------------------------------------- evaluate

def test_test_items(project):
    from tasks.vqa.data import test_items

    items = test_items(project["params"])
    assert list(items.columns) == ["video_id", "path", "quality", "content_id"]
    test_ids = [v for v, s in zip(project["ids"], SPLITS) if s == "test"]
    assert list(items["video_id"]) == test_ids
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in items["path"])
    np.testing.assert_allclose(items["quality"], project["quality"][[project["ids"].index(v) for v in test_ids]])


def test_metrics_json_structure(project):
    metrics, _ = outputs(project)
    assert set(metrics) == {"stdam", "baseline", "n_test", "sensitivity"}
    assert metrics["n_test"] == SPLITS.count("test")
    for model in ("stdam", "baseline"):
        assert set(metrics[model]) == {"srcc", "krcc", "plcc", "rmse"}
        for name, m in metrics[model].items():
            assert set(m) == {"value", "ci_low", "ci_high"}
            assert np.isfinite(m["value"]), (model, name)
            assert m["ci_low"] <= m["ci_high"], (model, name)


def test_predictions_match_the_models(project):
    from models.vqa.inference import load_model, predict_paths
    from models.vqa.metrics import score_all
    from tasks.vqa.data import clip_features, load_baseline, test_items

    params, root = project["params"], project["root"]
    metrics, pred = outputs(project)
    assert list(pred.columns) == ["video_id", "split", "quality", "stdam", "baseline"]
    items = test_items(params)
    assert list(pred["video_id"]) == list(items["video_id"]) and set(pred["split"]) == {"test"}

    model, frames = load_model(root / "artifacts/vqa/train/model.pt")
    np.testing.assert_allclose(pred["stdam"], predict_paths(model, frames, list(items["path"])), rtol=1e-5)
    ridge, bframes = load_baseline(root / "artifacts/vqa/baseline/baseline.json")
    x = clip_features(list(items["path"]), frames=bframes, cache_dir=root / "fresh-cache")
    np.testing.assert_allclose(pred["baseline"], ridge.predict(x), rtol=1e-9)

    cfg = params["vqa"]["evaluate"]
    for name in ("stdam", "baseline"):
        again = score_all(pred["quality"], pred[name], n_boot=cfg["bootstrap"], seed=cfg["seed"])
        for m in again:
            assert metrics[name][m]["value"] == pytest.approx(again[m]["value"], abs=1e-6)


def test_mlflow_run_has_test_metrics_and_artifacts(project):
    from mlflow import MlflowClient

    from tasks.core.tracking import setup

    setup(project["params"])
    metrics, _ = outputs(project)
    client = MlflowClient()
    logged = client.get_run(project["run_id"]).data.metrics
    assert project["summary"]["mlflow_run_id"] == project["run_id"]
    for m in ("srcc", "krcc", "plcc", "rmse"):
        assert logged[f"test_{m}"] == pytest.approx(metrics["stdam"][m]["value"])
        assert logged[f"test_{m}_ci_low"] == pytest.approx(metrics["stdam"][m]["ci_low"])
        assert logged[f"test_{m}_ci_high"] == pytest.approx(metrics["stdam"][m]["ci_high"])
        assert logged[f"baseline_test_{m}"] == pytest.approx(metrics["baseline"][m]["value"])
    files = {f.path for f in client.list_artifacts(project["run_id"], "evaluate")}
    assert files == {"evaluate/metrics.json", "evaluate/predictions.csv", "evaluate/sensitivity.json"}
    for kind, v in metrics["sensitivity"].items():
        assert logged[f"test_sensitivity_{kind}"] == pytest.approx(v["value"])


def test_sensitivity_probes(project):
    """Per-kind probes: on the best-rated test videos (one per content), the undistorted member of each
    series scores what the model gives the file itself, and each kind's figure is the mean of its
    per-video Spearman's rho."""
    from scipy import stats

    params, root = project["params"], project["root"]
    metrics, pred = outputs(project)
    probes = json.loads((root / "metrics/vqa/sensitivity.json").read_text())
    cfg = params["vqa"]["evaluate"]["sensitivity"]
    assert set(metrics["sensitivity"]) == set(cfg["kinds"]) == set(probes["kinds"])
    assert probes["severities"] == [0.0, *cfg["severities"]]
    best = pred.sort_values("quality", ascending=False)["video_id"][:cfg["n_videos"]].tolist()
    assert sorted(probes["scores"]) == sorted(best) and probes["n_videos"] == cfg["n_videos"]
    for vid, by_kind in probes["scores"].items():
        own = float(pred.loc[pred["video_id"] == vid, "stdam"].iloc[0])
        for kind, scores in by_kind.items():
            assert scores[0] == pytest.approx(own, abs=1e-4)  # the series starts at the video itself
            rho = probes["kinds"][kind]["per_video"][vid]
            want = 0.0 if np.ptp(scores) == 0 else stats.spearmanr(probes["severities"], -np.array(scores))[0]
            assert rho == pytest.approx(want, abs=1e-3)
    for kind, v in probes["kinds"].items():
        assert v["value"] == pytest.approx(np.mean(list(v["per_video"].values())))
        assert metrics["sensitivity"][kind]["value"] == pytest.approx(v["value"])


def test_failures_keep_previous_outputs(project, tmp_path):
    from tasks.cli import main
    from tasks.vqa import evaluate

    metrics_file = project["root"] / "metrics/vqa/metrics.json"
    before = metrics_file.read_bytes()

    p = copy.deepcopy(project["params"])
    p["vqa"]["train"]["out_dir"] = str(tmp_path / "no-train")
    with pytest.raises(MokuflowError, match=r"no-train/run.json: not found"):
        evaluate.run(p)
    (tmp_path / "no-train").mkdir()
    shutil.copy(project["root"] / "artifacts/vqa/train/run.json", tmp_path / "no-train/run.json")
    with pytest.raises(MokuflowError, match=r"no-train/model.pt: not found"):
        evaluate.run(p)

    p = copy.deepcopy(project["params"])
    p["vqa"]["baseline"]["out_dir"] = str(tmp_path / "no-baseline")
    with pytest.raises(MokuflowError, match=r"no-baseline/baseline.json: not found"):
        evaluate.run(p)

    raw = tmp_path / "raw"  # a truncated test video
    shutil.copytree(project["root"] / "data/vqa/raw", raw)
    (raw / "videos/v11.mp4").write_bytes(b"\x00\x00 not a video")
    p = copy.deepcopy(project["params"])
    p["vqa"]["data"]["raw_dir"] = str(raw)
    with pytest.raises(MokuflowError, match=r"v11.mp4"):
        evaluate.run(p)

    # through the CLI: a clean error and exit status 2, not a traceback
    bad = tmp_path / "params.yaml"
    bad.write_text((project["root"] / "params.yaml").read_text())
    assert main(["vqa", "evaluate", "--params", str(bad)]) == 2  # no run.json under tmp_path
    assert metrics_file.read_bytes() == before


# ------------------------------------------------------------------------------------- ablation

def test_ablation_off_by_default_says_how_to_run_it(project, tmp_path):
    from tasks.vqa import ablation

    p = copy.deepcopy(project["params"])
    assert p["vqa"]["ablation"]["enabled"] is False  # the default: make run stays in its budget
    p["vqa"]["ablation"]["out_dir"] = str(tmp_path / "abl")
    out = ablation.run(p)
    info = json.loads((tmp_path / "abl/ablation.json").read_text())
    assert out["enabled"] is False and info["enabled"] is False and info["variants"] == {}
    assert "vqa.ablation.enabled: true" in info["note"]
    assert not (tmp_path / "abl/models").exists()  # nothing trained


def test_ablation_trains_each_variant_like_stdam(project, tmp_path):
    """Enabled: each variant is trained by the train stage's code with only its switch changed, and
    scored beside STDAM with a paired interval; its MLflow run is tagged; the report shows the table."""
    from mlflow import MlflowClient

    from models.vqa.inference import load_model
    from models.vqa.metrics import srcc
    from tasks.core.tracking import setup
    from tasks.vqa import ablation, report

    p = copy.deepcopy(project["params"])
    p["vqa"]["ablation"].update(enabled=True, variants=["no_motion", "mean_pool"],
                                out_dir=str(tmp_path / "abl"), runs_dir=str(tmp_path / "abl-runs"))
    ablation.run(p)
    info = json.loads((tmp_path / "abl/ablation.json").read_text())
    pred = pd.read_csv(tmp_path / "abl/predictions.csv", dtype={"video_id": str})
    _, stdam_pred = outputs(project)
    assert info["enabled"] and set(info["variants"]) == {"no_motion", "mean_pool"}
    np.testing.assert_allclose(pred["stdam"], stdam_pred["stdam"], rtol=1e-5)  # the evaluated champion
    setup(p)
    for name, switch in (("no_motion", {"motion_branch": False}), ("mean_pool", {"temporal": "mean"})):
        v = info["variants"][name]
        model, frames = load_model(tmp_path / "abl/models" / name / "model.pt")
        assert model.stdam.config | switch == model.stdam.config  # trained with its switch
        assert frames == project["frames"]  # the same sampling as STDAM
        want = srcc(pred["quality"], pred["stdam"]) - srcc(pred["quality"], pred[name])
        assert v["stdam_minus_variant_srcc"]["value"] == pytest.approx(want)
        lo, hi = v["stdam_minus_variant_srcc"]["ci_low"], v["stdam_minus_variant_srcc"]["ci_high"]
        assert lo <= want <= hi and v["verdict"] in ("holds", "not shown", "reversed")
        assert set(v["sensitivity"]) == set(p["vqa"]["evaluate"]["sensitivity"]["kinds"])
        run = MlflowClient().get_run(v["mlflow_run_id"])
        assert run.data.tags["mokuflow.ablation"] == name
        assert run.data.metrics["test_srcc"] == pytest.approx(v["metrics"]["srcc"]["value"])
    p["vqa"]["report"]["out_dir"] = str(tmp_path / "report")
    report.run(p)
    page = (tmp_path / "report/index.html").read_text()
    assert "Ablations: which modules matter" in page and "mean_pool" in page and "no_motion" in page
    assert "Sensitivity per distortion kind" in page and "freeze" in page
