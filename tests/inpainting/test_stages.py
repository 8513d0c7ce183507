"""The inpainting pipeline's stages on tiny params, once per session (the ``project`` fixture in
conftest.py, shared with the web page's tests): acquire -> clean -> train -> evaluate
-> report -> register, then the served model as users load it (``models:/inpainting@champion``) on a
real fixture video, the CLI's cloak, a folder source on the real DAVIS fixture and resume after a kill."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FIXTURES, REPO, kill_after_first_checkpoint, write_tiny_params

BMX = FIXTURES / "inpainting" / "object_removal" / "bmx-trees"


def test_acquire_and_clean_write_one_davis_layout_with_splits(project):
    params, s = project
    root = Path(params["_root"])
    raw, clean = root / "data/inpainting/raw", root / "data/inpainting/clean"
    acquired = json.loads((raw / "acquire.json").read_text())
    names = sorted(acquired["sequences"])
    assert len(names) == 8 and s["acquire"]["n_sequences"] == 8
    splits = acquired["splits"]
    assert sorted(sum(splits.values(), [])) == names and all(splits[k] for k in ("train", "val", "test"))
    assert not set(splits["train"]) & set(splits["test"])
    for sub in ("JPEGImages", "Annotations", "Backgrounds", "Scribbles"):
        assert sorted(p.name for p in (clean / sub).iterdir()) == names, sub
    report = json.loads((clean / "clean.json").read_text())
    assert report["splits"] == splits and report["refused_scribbles"] == [] and report["left_out"] == {}
    assert report["totals"]["n_masks"] == 8 * 6


def test_clean_refuses_a_bad_scribble_file_and_leaves_out_a_partly_annotated_sequence(project, tmp_path):
    import shutil

    from tasks.core import load_params
    from tasks.inpainting import clean

    params, _ = project
    raw = Path(params["_root"]) / "data/inpainting/raw"
    work = tmp_path / "proj"
    shutil.copytree(raw, work / "data/inpainting/raw")
    p = load_params(write_tiny_params(work))
    seqs = json.loads((work / "data/inpainting/raw/acquire.json").read_text())["splits"]["train"]
    bad = work / "data/inpainting/raw/Scribbles" / seqs[0] / "001.json"
    data = json.loads(bad.read_text())
    data["scribbles"] = data["scribbles"][:2]  # fewer frame lists than frames
    bad.write_text(json.dumps(data))
    (work / "data/inpainting/raw/Annotations" / seqs[1] / "00003.png").unlink()
    out = clean.run(p)
    report = json.loads((work / "data/inpainting/clean/clean.json").read_text())
    assert out["refused_scribbles"] == 1 and report["refused_scribbles"][0]["sequence"] == seqs[0]
    assert "001.json" in report["refused_scribbles"][0]["reason"]
    assert not (work / "data/inpainting/clean/Scribbles" / seqs[0] / "001.json").exists()
    assert report["left_out"] == {seqs[1]: "5 of 6 frames have a mask"}
    assert seqs[1] not in report["splits"]["train"] and seqs[0] in report["splits"]["train"]


def test_train_writes_a_loadable_model_with_its_session_settings(project):
    from models.inpainting.inference import load_model

    params, s = project
    out = Path(params["_root"]) / "artifacts/inpainting/train"
    net, meta = load_model(out / "model.pt")
    assert meta == {"internal_size": [32, 48], "max_memory": 3}
    assert net.config["width"] == 8
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0] and history["val_j"].between(0, 1).all()
    assert s["train"]["mlflow_run_id"] and s["train"]["epochs"] == 1


def test_evaluate_scores_rounds_restoration_and_claims_with_intervals(project):
    params, s = project
    folder = Path(params["_root"]) / "metrics/inpainting"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["rounds"] == 2 and m["n_test"] == len(json.loads(
        (Path(params["_root"]) / "data/inpainting/clean/clean.json").read_text())["splits"]["test"])
    assert len(m["per_round"]["JF"]) == 2 and m["jf_last"] == m["jf_round_2"]
    for k in ("jf_round_1", "jf_last", "auc_jf"):
        assert 0 <= m[k]["value"] <= 1 and m[k]["ci_low"] <= m[k]["value"] <= m[k]["ci_high"]
    assert set(m["restoration"]) == {"model", "telea_true_mask", "telea_pred_mask", "temporal_true_mask",
                                     "temporal_pred_mask"}
    assert math.isfinite(m["restoration"]["model"]["hole_psnr"]["value"])
    # the true-mask temporal copy sees the truth in other frames: it must beat Telea on the true mask
    assert m["restoration"]["temporal_true_mask"]["hole_psnr"]["value"] > m["restoration"]["telea_true_mask"]["hole_psnr"]["value"]
    assert {"shared_memory_vs_per_frame", "corrections_raise_jf"} <= set(m["claim"])
    assert m["claim"]["shared_memory_vs_per_frame"]["verdict"] == "not shown"  # fewer than 5 test videos
    per_video = pd.read_csv(folder / "per_video.csv")
    assert len(per_video) == m["n_test"] and "model_hole_psnr" in per_video
    with np.load(folder / "examples" / "best.npz") as z:
        assert z["frames"].shape[0] == len(z["index"]) and z["masks"].shape == z["frames"].shape[:3]
    from mlflow import MlflowClient

    from tasks.core.tracking import setup

    setup(params)
    logged = MlflowClient().get_run(s["evaluate"]["mlflow_run_id"]).data.metrics
    assert logged["test_jf_round_1"] == pytest.approx(m["jf_round_1"]["value"])
    assert logged["test_telea_pred_mask_hole_psnr"] == pytest.approx(m["restoration"]["telea_pred_mask"]["hole_psnr"]["value"])


def test_report_shows_rounds_restoration_strips_and_verdicts(project):
    params, s = project
    folder = Path(params["_root"]) / "reports/inpainting"
    page = (folder / "index.html").read_text()
    for needle in ("J&amp;F", "Telea per frame, predicted mask", "corrective rounds raise J&amp;F", "not shown",
                   'src="rounds.png"', 'src="best.png"', 'src="worst.png"', "Cleanup"):
        assert needle in page, needle
    for img in ("rounds.png", "best.png", "worst.png", "training.png"):
        assert (folder / img).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", img


def test_register_rescored_the_served_model_on_round_1(project):
    params, s = project
    d = s["register"]
    assert d["decision"] == "promoted" and d["metric"] == "jf_round_1"
    m = json.loads((Path(params["_root"]) / "metrics/inpainting/metrics.json").read_text())
    # the served model answers one scribble round exactly as the evaluate stage's round 1
    assert d["challenger_score"] == pytest.approx(m["jf_round_1"]["value"], abs=1e-6)


@pytest.fixture(scope="module")
def served(project):
    import mlflow

    from tasks.core.tracking import setup

    setup(project[0])
    return mlflow.pyfunc.load_model("models:/inpainting@champion")


@pytest.fixture(scope="module")
def bmx_scribbles(tmp_path_factory):
    """The real bmx-trees clip's first mask turned into a DAVIS scribble file (a stroke on frame 0)."""
    if not BMX.is_dir():
        pytest.skip(f"real fixtures not found at {BMX.parent} (../shared absent)")
    from models.common.frames import read_mask
    from models.inpainting.robot import Robot

    masks = sorted((BMX.parent / "bmx-trees_mask").glob("*.png"))
    gt = np.stack([(read_mask(masks[0]) > 0).astype(np.uint8)] + [np.zeros_like(read_mask(masks[0]), np.uint8)] * 79)
    path = tmp_path_factory.mktemp("bmx") / "bmx.json"
    path.write_text(json.dumps(Robot(seed=0).first(gt, frame=0, sequence="bmx-trees")))
    return path


def test_served_model_on_a_real_video_folder_with_bad_rows(served, bmx_scribbles, tmp_path):
    """One served batch: the real 80-frame 432x240 clip, a missing video, a broken scribble file and an
    inline-JSON row; the bad rows get an error, the good ones their folders, at the input's size."""
    from models.common.frames import read_mask

    broken = tmp_path / "broken.json"
    broken.write_text('{"scribbles": 3}')
    rows = pd.DataFrame({"video": [str(BMX), str(tmp_path / "missing.mp4"), str(BMX), str(BMX)],
                         "scribbles": [str(bmx_scribbles), str(bmx_scribbles), str(broken), bmx_scribbles.read_text()]})
    out = served.predict(rows, params={"out_dir": str(tmp_path / "out"), "max_memory": 2})
    assert list(out.columns) == ["masks_dir", "result_dir", "n_frames", "error"]
    assert out["error"].isna().tolist() == [True, False, False, True]
    assert "missing.mp4" in out["error"][1] and "not found" in out["error"][1]
    assert "broken.json" in out["error"][2]
    assert out["n_frames"].tolist()[0] == 80 and out["n_frames"].tolist()[3] == 80
    assert out["masks_dir"][0] != out["masks_dir"][3]  # each row its own folder
    stems = sorted(p.stem for p in BMX.glob("*.jpg"))
    for i in (0, 3):
        masks = sorted(Path(out["masks_dir"][i]).glob("*.png"))
        assert [p.stem for p in masks] == stems
        m = read_mask(masks[0])
        assert m.shape == (240, 432) and set(np.unique(m)) <= {0, 255}
        results = sorted(Path(out["result_dir"][i]).glob("*.png"))
        assert [p.stem for p in results] == stems
        assert (Path(out["result_dir"][i]).parent / "result.mp4").stat().st_size > 0
    assert not (tmp_path / "out" / "missing").exists()


def test_served_model_refuses_a_request_without_out_dir_and_a_bad_device(served, bmx_scribbles):
    from tasks.core.serving import ServingInputError

    rows = pd.DataFrame({"video": [str(BMX)], "scribbles": [str(bmx_scribbles)]})
    with pytest.raises(Exception, match="out_dir is required"):
        served.predict(rows)
    with pytest.raises(ServingInputError, match="no CUDA GPU|not a device"):
        served.unwrap_python_model().predict(None, rows, params={"out_dir": "/tmp/x", "device": "cuda:7"})


def test_cli_cloak_on_the_trained_model_and_a_bad_scribble_file(project, tmp_path):
    params, _ = project
    root = Path(params["_root"])
    seq = json.loads((root / "data/inpainting/clean/clean.json").read_text())["splits"]["test"][0]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    mokuflow = [sys.executable, "-m", "tasks.cli", "inpainting", "cloak", "--params", str(root / "params.yaml")]
    ok = subprocess.run([*mokuflow, "--video", str(root / "data/inpainting/clean/JPEGImages" / seq),
                         "--scribbles", str(root / "data/inpainting/clean/Scribbles" / seq / "001.json"),
                         "--out", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 6 and (tmp_path / "out" / "result.mp4").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    fail = subprocess.run([*mokuflow, "--video", str(root / "data/inpainting/clean/JPEGImages" / seq),
                           "--scribbles", str(bad), "--out", str(tmp_path / "out2")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert fail.returncode == 2
    lines = fail.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and lines[0].startswith("mokuflow inpainting cloak: error:")
    assert not (tmp_path / "out2").exists()


def test_folder_source_reads_the_real_davis_fixture(tmp_path):
    davis = FIXTURES / "inpainting" / "DAVIS"
    if not davis.is_dir():
        pytest.skip(f"real fixtures not found at {davis} (../shared absent)")
    from tasks.core import load_params
    from tasks.inpainting import acquire, clean

    p = load_params(write_tiny_params(tmp_path, {"inpainting.data.source": "folder",
                                                 "inpainting.data.folder.root": str(davis),
                                                 "inpainting.data.split.val_fraction": 0.5,
                                                 "inpainting.data.split.test_fraction": 0.0}))
    out = acquire.run(p)
    # bear and tennis have frames (2 each); blackswan has annotations and scribbles only: not a sequence
    assert out["layout"] == "davis" and out["n_sequences"] == 2 and (out["n_train"], out["n_val"]) == (1, 1)
    raw = tmp_path / "data/inpainting/raw"
    assert sorted(p.name for p in (raw / "JPEGImages").iterdir()) == ["bear", "tennis"]
    assert (raw / "JPEGImages/bear/00000.jpg").read_bytes() == (davis / "JPEGImages/480p/bear/00000.jpg").read_bytes()
    c = clean.run(p)
    report = json.loads((tmp_path / "data/inpainting/clean/clean.json").read_text())
    assert c["n_masks"] == 4 and set(report["sequences"]) == {"bear", "tennis"}
    assert all(r["kinds"] == {"palette": 2} for r in report["sequences"].values())
    # the real scribble files (cut to these 2-frame excerpts, one list a frame) pass the check and are kept
    assert report["refused_scribbles"] == []
    assert {k: r["scribbles_kept"] for k, r in report["sequences"].items()} == {"bear": 2, "tennis": 1}
    assert sorted(p.name for p in (tmp_path / "data/inpainting/clean/Scribbles/bear").iterdir()) == ["001.json", "002.json"]
    assert report["left_out"] == {}


def test_folder_source_needs_a_root(tmp_path):
    from tasks.core import MokuflowError, load_params

    with pytest.raises(MokuflowError, match="inpainting.data.*folder.root"):
        load_params(write_tiny_params(tmp_path, {"inpainting.data.source": "folder"}), study="inpainting")


def test_resume_after_kill(project, tmp_path):
    """A train killed after its first checkpoint resumes in the same run folder and MLflow run."""
    import shutil

    params, _ = project
    root = Path(params["_root"])
    shutil.copytree(root / "data/inpainting", tmp_path / "data/inpainting")
    write_tiny_params(tmp_path)
    epochs = 6
    cmd = [sys.executable, "-m", "tasks.cli", "inpainting", "train", "--params", str(tmp_path / "params.yaml"),
           "--set", "inpainting.train.checkpoint_every_n_steps=1", "--set", f"inpainting.train.max_epochs={epochs}"]
    kill_after_first_checkpoint(cmd, tmp_path / "runs/inpainting", timeout=180, settle=0.2)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert not (tmp_path / "artifacts/inpainting/train/model.pt").exists()
    (run_dir,) = (tmp_path / "runs/inpainting").iterdir()
    first = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "artifacts/inpainting/train/run.json").read_text())
    assert info["resumed_from_step"] > 0 and info["mlflow_run_id"] == first
    assert info["global_step"] == epochs * 2  # 4 clips / batch 2, as an uninterrupted run
    assert pd.read_csv(tmp_path / "artifacts/inpainting/train/history.csv")["epoch"].tolist() == list(range(epochs))
