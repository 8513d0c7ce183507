"""The detection pipeline's model stages on tiny params, once per session: train -> evaluate -> report
-> register, then the served model as users load it (``models:/detection@champion``)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_tiny_params

STAGES = ("acquire", "clean", "train", "evaluate", "report", "register")
SERVED = ["image_path", "category_id", "category_name", "x", "y", "width", "height", "score", "iou",
          "purity", "integrity", "error"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project run through every pipeline stage; returns (params, {stage: summary})."""
    from tasks.core import load_params
    from tasks.core.study import get

    root = tmp_path_factory.mktemp("detection")
    params = load_params(write_tiny_params(root))
    study = get("detection")
    summaries = {stage: study.stage_module(stage).run(params) for stage in STAGES}
    return params, summaries


def test_train_writes_a_loadable_model_and_its_run(project):
    from models.detection.inference import load_model

    params, s = project
    out = Path(params["_root"]) / "artifacts/detection/train"
    detector, meta = load_model(out / "model.pt")
    assert detector.variants == ("none", "direct", "decoupled", "dir", "iou_nms")
    assert [c["id"] for c in meta["categories"]] == sorted(int(k) for k in s["train"]["categories"])
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and np.isfinite(history["train_loss"]).all()
    run = json.loads((out / "run.json").read_text())
    assert run["mlflow_run_id"] == s["train"]["mlflow_run_id"] and "best_val_ap50" in run
    assert not Path(run["run_dir"]).is_absolute()  # DVC hashes run.json: no absolute path
    assert (Path(params["_root"]) / run["run_dir"] / "COMPLETED").is_file()


def test_evaluate_scores_every_variant_with_intervals(project):
    from tasks.detection import cocoeval
    from tasks.detection.data import load_split
    from tasks.detection.study import STATS

    params, s = project
    out = Path(params["_root"]) / "metrics/detection"
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_test"] == 8
    for v in ("none", "direct", "decoupled", "dir", "iou_nms"):
        assert set(m[v]) == set(STATS) and "AP90" in STATS
        ap = m[v]["AP"]
        assert 0 <= ap["value"] <= 1 and (ap["ci_low"] is None or ap["ci_low"] <= ap["ci_high"])
        # the stored detections give the stored stats (no re-implemented AP anywhere)
        dets = json.loads((out / "detections" / f"{v}.json").read_text())
        assert cocoeval.score(load_split(params, "test"), dets)["AP"] == pytest.approx(ap["value"], abs=1e-12)
    assert set(m["iou_calibration"]) == {"direct", "decoupled", "dir", "iou_nms"}  # "none" predicts no IoU
    for cal in m["iou_calibration"].values():  # matched (IoU >= 0.5) detections are among the overlapping
        assert cal["n"] <= cal["n_overlapping"]
    assert set(m["gain"]) == {"direct-none", "decoupled-none", "dir-none", "iou_nms-none", "dir-direct",
                              "dir-decoupled", "dir-iou_nms", "decoupled-direct"}
    for v in ("dir", "iou_nms"):
        for stat in ("AP", "AP50", "AP75", "AP90"):
            g = m["gain"][f"{v}-none"][stat]
            assert g["value"] == pytest.approx(m[v][stat]["value"] - m["none"][stat]["value"])
    assert set(m["claims"]) == {"decoupling", "hindsight"}
    assert m["claims"]["hindsight"]["comparison"] == "dir-decoupled"
    for c in m["claims"].values():
        assert c["verdict"] in ("holds", "reversed", "not shown")
    bins = m["iou_calibration_bins"]
    assert set(bins["heads"]) == {"direct", "decoupled", "dir"} and bins["trained_min_iou"] == 0.4
    assert all(sum(b["n"] for b in h) == bins["n"] for h in bins["heads"].values()) and bins["n"] > 0
    assert 0 <= bins["share_below_min_iou"] <= 1
    assert set(bins["correlation"]) == set(bins["heads"])  # every head on the same candidates
    assert all(c["n"] <= c["n_overlapping"] <= bins["n"] for c in bins["correlation"].values())
    iou_nms = json.loads((out / "detections" / "iou_nms.json").read_text())
    assert all(r["score"] == pytest.approx(r["cls_score"]) and r["iou"] is not None for r in iou_nms)
    none = json.loads((out / "detections" / "none.json").read_text())
    assert all(r["iou"] is None for r in none)
    assert all(r["score"] == pytest.approx(r["cls_score"]) for r in none)  # ranked by score alone
    dir_ = json.loads((out / "detections" / "dir.json").read_text())
    assert all(r["score"] == pytest.approx(r["cls_score"] * r["iou"]) for r in dir_)  # score x IoU
    curves = json.loads((out / "curves.json").read_text())
    assert len(curves["dir"]["recall"]) == 101


def test_report_shows_variants_claim_and_plots(project):
    params, s = project
    out = Path(params["_root"]) / "reports/detection"
    page = (out / "index.html").read_text()
    assert "full DIR (P/I, re-pooled)" in page and "no IoU head (score only)" in page
    assert "The paper's claim" in page and s["report"]["verdict"].split(":")[0] in page
    assert "IoU-guided NMS" in page and "AP90" in page and "iou_nms-none" in page
    assert "Decoupling" in page and "Hindsight" in page and "before NMS" in page
    assert "on these same candidates" in page
    for png in s["report"]["images"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"pr.png", "examples.png", "training.png"} <= set(s["report"]["images"])
    assert "http" not in page.replace("http-equiv", "")


def test_register_and_serve_with_a_bad_row(project, tmp_path):
    import mlflow

    from tasks.core.tracking import setup

    params, s = project
    d = s["register"]
    assert d["decision"] == "promoted" and d["metric"] == "AP" and math.isfinite(d["challenger_score"])
    setup(params)
    model = mlflow.pyfunc.load_model("models:/detection@champion")
    images = sorted((Path(params["_root"]) / "data/detection/raw/images").glob("*"))[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + os.urandom(300))
    rows = [str(images[0]), str(bad), str(images[1]), str(tmp_path / "missing.png")]
    out = model.predict(pd.DataFrame({"image_path": rows}))
    assert list(out.columns) == SERVED
    errors = out[out["error"].notna()]
    assert list(errors["image_path"]) == [str(bad), str(tmp_path / "missing.png")]
    assert "broken.jpg" in errors["error"].iloc[0] and "not found" in errors["error"].iloc[1]
    assert errors[["x", "score", "iou"]].isna().all().all()
    good = out[out["error"].isna()]
    assert set(good["image_path"]) <= {rows[0], rows[2]}
    assert (good["iou"] - good["purity"] * good["integrity"]
            / (good["purity"] + good["integrity"] - good["purity"] * good["integrity"])).abs().max() < 1e-5
    plain = model.predict(pd.DataFrame({"image_path": rows[:1]}), params={"use_dir": False})
    assert plain["iou"].isna().all() and list(plain.columns) == SERVED
    ranked = plain["score"].to_numpy()
    assert (np.diff(ranked) <= 1e-9).all()  # ranked by classification score alone
