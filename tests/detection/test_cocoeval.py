"""COCO scoring: the 12 stats equal pycocotools (recorded and live) on real fixtures, per-class AP and
curves agree with them, bootstrap intervals behave, empty / bad inputs, and the score stage."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.core import MokuflowError
from tasks.detection import cocoeval
from tasks.detection import score as score_stage

REPO = Path(__file__).resolve().parents[2]
PAIRS = ("val2014_100", "tiny")
TOL = 1e-12


def _pair(fixtures_dir, key):
    exp = json.loads((fixtures_dir / "detection" / "expected_pycocotools.json").read_text())[key]
    assert tuple(exp["stats_names"]) == cocoeval.STAT_NAMES
    return fixtures_dir / "detection" / exp["gt"], fixtures_dir / "detection" / exp["detections"], exp["stats"]


def _pycocotools(gt: Path, dt: Path) -> list:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        G = COCO(str(gt))
        D = G.loadRes(str(dt))
        E = COCOeval(G, D, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return [float(v) for v in E.stats]


@pytest.mark.parametrize("key", PAIRS)
def test_stats_equal_recorded_and_live_pycocotools(fixtures_dir, key):
    gt, dt, expected = _pair(fixtures_dir, key)
    stats = cocoeval.score(gt, dt)
    assert list(stats) == list(cocoeval.STAT_NAMES)
    np.testing.assert_allclose([stats[n] for n in cocoeval.STAT_NAMES], expected, rtol=0, atol=TOL)
    import pycocotools  # noqa: F401  (declared dependency: a broken import must fail)
    np.testing.assert_allclose([stats[n] for n in cocoeval.STAT_NAMES], _pycocotools(gt, dt), rtol=0, atol=TOL)


def test_in_memory_inputs_score_the_same_and_are_not_modified(fixtures_dir):
    gt_path, dt_path, expected = _pair(fixtures_dir, "val2014_100")
    gt, dt = json.loads(gt_path.read_text()), json.loads(dt_path.read_text())
    gt0, dt0 = copy.deepcopy(gt), copy.deepcopy(dt)
    stats = cocoeval.score(gt, dt)
    np.testing.assert_allclose([stats[n] for n in cocoeval.STAT_NAMES], expected, rtol=0, atol=TOL)
    assert gt == gt0 and dt == dt0
    # numpy values, as a detector hands them over, are fine
    dt_np = [{**d, "bbox": np.asarray(d["bbox"], np.float64), "score": np.float32(d["score"]),
              "image_id": np.int64(d["image_id"])} for d in dt]
    assert cocoeval.score(gt, dt_np)["AP"] == pytest.approx(stats["AP"], abs=1e-6)


def test_per_class_ap_and_curves_agree_with_the_stats(fixtures_dir):
    gt, dt, _ = _pair(fixtures_dir, "val2014_100")
    stats, per_class, curves = cocoeval.evaluate(gt, dt)
    names = [c["name"] for c in json.loads(gt.read_text())["categories"]]
    assert set(per_class) == set(names)
    defined = [v for v in per_class.values() if v != -1]
    assert 0 < len(defined) < len(per_class)  # some of the 80 classes have no ground truth here
    assert np.mean(defined) == pytest.approx(stats["AP"], abs=TOL)
    assert len(curves["recall"]) == 101 and curves["recall"][0] == 0 and curves["recall"][-1] == 1
    for key, stat in (("iou50", "AP50"), ("iou75", "AP75")):
        mean = np.asarray(curves[key]["mean"])
        assert mean.shape == (101,) and np.all(np.diff(mean) <= 1e-12)  # interpolated: non-increasing
        assert mean.mean() == pytest.approx(stats[stat], abs=TOL)
        per = curves[key]["per_class"]
        assert sum(v is not None for v in per.values()) == len(defined)
        assert all(v is None for k, v in per.items() if per_class[k] == -1)


def test_empty_detections_score_zero(fixtures_dir):
    gt, _, _ = _pair(fixtures_dir, "tiny")
    stats = cocoeval.score(gt, [])
    truth = json.loads(gt.read_text())
    # zero where the ground truth has objects; -1 (undefined) for an empty area range, as in COCO
    assert stats["AP"] == stats["AP50"] == stats["AR100"] == stats["APm"] == 0
    assert all(v in (0.0, -1.0) for v in stats.values())
    assert len(truth["annotations"]) > 0
    stats, per_class, curves = cocoeval.evaluate(gt, [])
    assert all(v == 0 for v in per_class.values()) and all(v == 0 for v in curves["iou50"]["mean"])


def test_detection_for_an_unknown_image_is_an_error_naming_it(fixtures_dir, tmp_path):
    gt, dt, _ = _pair(fixtures_dir, "tiny")
    dets = json.loads(dt.read_text())
    dets.append({**dets[0], "image_id": 424242})
    path = tmp_path / "dt.json"
    path.write_text(json.dumps(dets))
    with pytest.raises(MokuflowError, match="image 424242") as err:
        cocoeval.score(gt, path)
    assert str(path) in str(err.value) and str(gt) in str(err.value) and "\n" not in str(err.value)


BAD_DT = {
    "not json": ("[{", "not JSON"),
    "an instances file": ('{"images": []}', "expected a JSON list"),
    "no score": ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "detection 0: no 'score'"),
    "short bbox": ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]', "detection 0: bbox must be 4"),
    "NaN score": ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]', "score must be a finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_DT))
def test_bad_detections_are_one_line_errors_naming_the_file(fixtures_dir, tmp_path, case):
    gt, _, _ = _pair(fixtures_dir, "tiny")
    text, message = BAD_DT[case]
    path = tmp_path / "dt.json"
    path.write_text(text)
    with pytest.raises(MokuflowError, match=message) as err:
        cocoeval.score(gt, path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def boot():
    fixtures = REPO.parent / "shared" / "fixtures"  # what conftest's fixtures_dir points at (function scope)
    if not fixtures.is_dir():
        pytest.skip(f"real fixtures not found at {fixtures} (../shared absent)")
    gt, dt, _ = _pair(fixtures, "val2014_100")
    gt, dt = json.loads(gt.read_text()), json.loads(dt.read_text())
    return gt, dt, cocoeval.bootstrap(gt, dt, n_boot=30, seed=0)


def test_bootstrap_contains_the_estimate_and_is_deterministic(boot):
    gt, dt, ci = boot
    point = cocoeval.score(gt, dt)
    assert set(ci) == set(cocoeval.STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "AR10", "AR100"):
        lo, hi = ci[name]
        assert lo < point[name] < hi, (name, lo, point[name], hi)
        assert hi - lo < 0.2
    sub = {**gt, "images": gt["images"][:30]}
    keep = {im["id"] for im in sub["images"]}
    sub["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    sub_dt = [d for d in dt if d["image_id"] in keep]
    a = cocoeval.bootstrap(sub, sub_dt, n_boot=8, seed=3)
    assert a == cocoeval.bootstrap(sub, sub_dt, n_boot=8, seed=3)
    assert a != cocoeval.bootstrap(sub, sub_dt, n_boot=8, seed=4)


def _made_up(n_images: int, seed: int) -> tuple[dict, list]:
    """GT with 2 classes, 4 objects an image; detections: the objects moved a little (IoU ~0.5 - 1),
    scored by their quality plus noise, and 3 false positives an image."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200})
        for _ in range(4):
            x, y, w, h = rng.uniform(0, 120), rng.uniform(0, 120), rng.uniform(20, 80), rng.uniform(20, 80)
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            shift = rng.uniform(0, 0.25)
            dets.append({"image_id": i, "category_id": cat, "bbox": [x + shift * w, y, w, h],
                         "score": float(np.clip(1 - shift * 2 + rng.normal(0, 0.3), 0.01, 1))})
        for _ in range(3):
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 3)),
                         "bbox": [float(v) for v in rng.uniform(0, 150, 2)] + [30.0, 30.0],
                         "score": float(rng.uniform(0, 0.8))})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, dets


def test_bootstrap_narrows_with_more_images():
    widths = {}
    for n in (30, 240):
        gt, dt = _made_up(n, seed=n)
        ci = cocoeval.bootstrap(gt, dt, n_boot=30, seed=0)
        widths[n] = {k: ci[k][1] - ci[k][0] for k in ("AP", "AP50", "AR100")}
    for k in ("AP", "AP50", "AR100"):  # 8x the images: ~2.8x narrower in theory; 30 resamples are noisy
        assert widths[30][k] > 1.4 * widths[240][k] > 0, (k, widths)


def test_bootstrap_samples_are_paired_across_detection_sets():
    gt, dt = _made_up(60, seed=1)
    rng = np.random.default_rng(0)
    worse = [{**d, "score": float(d["score"] * rng.uniform(0.6, 1))} for d in dt]  # a re-ranked variant
    a = cocoeval.bootstrap_samples(gt, dt, n_boot=25, seed=9)
    b = cocoeval.bootstrap_samples(gt, worse, n_boot=25, seed=9)
    assert a.shape == b.shape == (25, 12)
    assert cocoeval.intervals(a) == cocoeval.bootstrap(gt, dt, n_boot=25, seed=9)
    paired, alone = cocoeval.intervals(a - b), cocoeval.intervals(a)
    for s in ("AP", "AP50", "AP75"):  # the same resamples: the difference varies far less than either
        assert paired[s][1] - paired[s][0] < 0.6 * (alone[s][1] - alone[s][0]), s
    assert cocoeval.intervals(a - a)["AP"] == (0.0, 0.0)


def test_bootstrap_scoring_path_equals_score(fixtures_dir):
    """bootstrap() skips COCO.loadRes (it builds the same detection records itself): same stats."""
    gt, dt, _ = _pair(fixtures_dir, "val2014_100")
    truth, dets = json.loads(gt.read_text()), json.loads(dt.read_text())
    ready = [{**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(dets, 1)]
    assert cocoeval._stats(cocoeval._evaluator_direct(truth, ready)) == cocoeval.score(gt, dt)


def test_bootstrap_undefined_stat_is_nan(fixtures_dir):
    gt, dt, _ = _pair(fixtures_dir, "tiny")  # no small objects: APs is -1
    ci = cocoeval.bootstrap(gt, dt, n_boot=5, seed=0)
    assert all(np.isnan(v) for v in ci["APs"]) and all(np.isfinite(v) for v in ci["AP"])


# -------------------------------------------------------------------------------------- stage

def test_score_stage_writes_metrics_in_coco_order(fixtures_dir, tmp_path):
    gt, dt, expected = _pair(fixtures_dir, "val2014_100")
    out = tmp_path / "scored"
    out.mkdir()
    (out / "other.txt").write_text("kept")
    summary = score_stage.run({}, gt=str(gt), dt=str(dt), out=str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(cocoeval.STAT_NAMES)
    np.testing.assert_allclose([metrics[n] for n in cocoeval.STAT_NAMES], expected, rtol=0, atol=TOL)
    assert summary["AP"] == metrics["AP"] and (out / "other.txt").read_text() == "kept"
    before = (out / "metrics.json").read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    for kwargs in ({"gt": str(bad), "dt": str(dt)}, {"gt": str(gt), "dt": str(bad)}):
        with pytest.raises(MokuflowError) as err:
            score_stage.run({}, out=str(out), **kwargs)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MokuflowError, match="--dt"):
        score_stage.run({}, gt=str(gt), out=str(out))
    assert (out / "metrics.json").read_bytes() == before


def test_score_stage_imports_no_torch(fixtures_dir, tmp_path):
    gt, dt, _ = _pair(fixtures_dir, "tiny")
    code = ("import sys; from tasks.detection.score import run; "
            f"run({{}}, gt={str(gt)!r}, dt={str(dt)!r}, out={str(tmp_path)!r}); "
            "heavy = [m for m in ('torch', 'mlflow', 'lightning', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["AP"] == pytest.approx(0.6947194719471946, abs=TOL)


def test_ap90_is_zero_when_every_iou_lies_between_075_and_090():
    """Detections = the truth shifted 8 px on 100 px boxes: IoU 92/108 = 0.852 for each, so every one
    matches at IoU .50-.85 and none at .90-.95: AP50 = AP75 = 1, AP90 = 0, AP = 8/10."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 300, "height": 300} for i in (1, 2, 3)]
    anns, dets = [], []
    for i in (1, 2, 3):
        for k, cat in enumerate((1, 2)):
            x, y = 20.0 + 120 * k, 30.0
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, 100.0, 100.0],
                         "area": 1e4, "iscrowd": 0})
            dets.append({"image_id": i, "category_id": cat, "bbox": [x + 8, y, 100.0, 100.0], "score": 0.9 - 0.1 * k})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    stats, _, _ = cocoeval.evaluate(gt, dets)
    assert list(stats) == list(cocoeval.EXTENDED_NAMES)
    assert stats["AP50"] == pytest.approx(1) and stats["AP75"] == pytest.approx(1)
    assert stats["AP90"] == pytest.approx(0) and stats["AP"] == pytest.approx(0.8)
    s = cocoeval.bootstrap_samples(gt, dets, n_boot=5, seed=0, extended=True)
    assert s.shape == (5, 13)
    ci = cocoeval.intervals(s)
    assert ci["AP90"] == (0.0, 0.0) and ci["AP75"] == pytest.approx((1.0, 1.0))
    np.testing.assert_array_equal(s[:, :12], cocoeval.bootstrap_samples(gt, dets, n_boot=5, seed=0))


def test_ap_at_reproduces_cocos_ap50_and_ap75(fixtures_dir):
    gt_path, dt_path, _ = _pair(fixtures_dir, "val2014_100")
    gt, dt = json.loads(gt_path.read_text()), json.loads(dt_path.read_text())
    E = cocoeval._evaluator(gt, dt)
    assert cocoeval.ap_at(E, 0.5) == pytest.approx(E.stats[1], abs=TOL)
    assert cocoeval.ap_at(E, 0.75) == pytest.approx(E.stats[2], abs=TOL)
    assert 0 <= cocoeval.ap_at(E, 0.9) <= cocoeval.ap_at(E, 0.75)
    with pytest.raises(ValueError, match="thresholds"):
        cocoeval.ap_at(E, 0.42)
