"""The report stage: reports/vqa/index.html + PNGs, logged to the pipeline run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core import load_params, write_json

REPO = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, *, raters: bool = True, run: bool = True) -> dict:
    """A tmp project with the files evaluate / train / clean / acquire write, per the contracts."""
    params = load_params(REPO / "params.yaml")
    params["_root"] = str(tmp_path)
    params["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    n = 12
    truth = rng.uniform(1, 5, n)
    pred = pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "split": "test", "quality": truth,
                         "stdam": truth + rng.normal(0, 0.3, n), "baseline": truth + rng.normal(0, 1.0, n)})
    metrics = {m: {k: {"value": float(rng.uniform(0.2, 0.9)), "ci_low": 0.1, "ci_high": 0.95}
                   for k in ("srcc", "plcc", "krcc", "rmse")} for m in ("stdam", "baseline")}
    metrics["n_test"] = n
    write_json(tmp_path / "metrics/vqa/metrics.json", metrics)
    pred.to_csv(tmp_path / "metrics/vqa/predictions.csv", index=False)
    train = tmp_path / "artifacts/vqa/train"
    train.mkdir(parents=True)
    pd.DataFrame({"epoch": range(5), "train_loss": np.linspace(1, 0.2, 5), "val_loss": np.linspace(1.2, 0.4, 5),
                  "val_srcc": np.linspace(0.1, 0.8, 5), "val_pearson": np.linspace(0.1, 0.7, 5)}
                 ).to_csv(train / "history.csv", index=False)
    clean = tmp_path / "data/vqa/clean"
    clean.mkdir(parents=True)
    pd.DataFrame({"video_id": pred.video_id, "quality": truth, "quality_std": 0.2}).to_csv(clean / "scores.csv", index=False)
    if raters:
        pd.DataFrame({"rater_id": [f"r{i}" for i in range(8)], "bias": rng.normal(0, 0.3, 8),
                      "inconsistency": rng.uniform(0.2, 1.5, 8)}).to_csv(clean / "raters.csv", index=False)
    raw = tmp_path / "data/vqa/raw"
    raw.mkdir(parents=True)
    splits = ["train"] * 20 + ["val"] * 5 + ["test"] * n
    pd.DataFrame({"video_id": range(len(splits)), "path": "x.mp4", "content_id": 0, "split": splits}
                 ).to_csv(raw / "videos.csv", index=False)
    write_json(raw / "acquire.json", {"source": "folder", "n_videos": len(splits),
                                      "splits": {"train": 20, "val": 5, "test": n},
                                      "unreadable": [{"path": "videos/broken_<1>.mp4", "reason": "no decodable frame"}]})
    if run:
        from tasks.core.tracking import start_run

        # provenance as the train stage recorded it when the run began
        write_json(train / "run.json", {"mlflow_run_id": start_run(params, "vqa"),
                                        "data_version": "0123abcd.dir", "git_commit": "feedbeef", "git_dirty": "true"})
    return params


def test_report_contents_and_artifacts(tmp_path):
    from mlflow import MlflowClient

    from tasks.vqa import report

    params = project(tmp_path)
    keep = tmp_path / "reports/vqa/register/decision.json"  # e.g. another stage's file in the folder
    write_json(keep, {"decision": "kept"})
    summary = report.run(params)

    out = tmp_path / "reports/vqa"
    page = (out / "index.html").read_text()
    metrics = json.loads((tmp_path / "metrics/vqa/metrics.json").read_text())
    for model in ("stdam", "baseline"):
        for m in ("srcc", "plcc", "krcc", "rmse"):
            assert f"{metrics[model][m]['value']:.3f}" in page
    assert "broken_&lt;1&gt;.mp4" in page and "no decodable frame" in page  # escaped, listed
    assert "train: 20" in page and "test: 12" in page
    assert "0123abcd.dir" in page and "feedbeef (dirty)" in page  # what the model was trained on
    for png in ("scatter.png", "training.png", "raters.png"):
        assert f'src="{png}"' in page
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from the network
    assert json.loads(keep.read_text()) == {"decision": "kept"}  # other files in the folder survive
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind

    logged = {Path(a.path).name for a in MlflowClient().list_artifacts(summary["mlflow_run_id"], "report")}
    assert logged == {"index.html", "scatter.png", "training.png", "raters.png"}


def test_mos_only_without_run_and_stale_plot_removed(tmp_path):
    from tasks.vqa import report

    params = project(tmp_path, raters=False, run=False)
    stale = tmp_path / "reports/vqa/raters.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    summary = report.run(params)
    page = (tmp_path / "reports/vqa/index.html").read_text()
    assert "raters.png" not in page and "MOS-only" in page
    assert not stale.exists()
    assert summary["mlflow_run_id"] is None and summary["images"] == ["scatter.png", "training.png"]


def test_missing_metrics_is_a_clear_error_and_keeps_old_report(tmp_path):
    from tasks.core import MokuflowError
    from tasks.vqa import report

    params = project(tmp_path, run=False)
    report.run(params)
    index = tmp_path / "reports/vqa/index.html"
    before = index.read_text()
    (tmp_path / "metrics/vqa/predictions.csv").unlink()
    with pytest.raises(MokuflowError, match="predictions.csv"):
        report.run(params)
    assert index.read_text() == before
