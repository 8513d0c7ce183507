"""tasks.detection.evaluate without a model: IoU calibration by bin, paired gains over ``none`` and
the verdicts on the paper's two ideas, on made-up detections."""
import numpy as np
import pytest

from tasks.detection import evaluate


def _gt():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(1, 7)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [20.0, 20.0, 100.0, 100.0], "area": 1e4,
             "iscrowd": 0} for i in range(1, 7)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}


def _dets(shift: float, iou: float = np.nan) -> list[dict]:
    """Per image: the truth shifted right by ``shift`` px (score 0.9) and a far false positive (0.5)."""
    return [{"bbox": np.array([[20.0 + shift, 20, 100, 100], [150.0, 150, 30, 30]]), "category_id": np.array([1, 1]),
             "score": np.array([0.9, 0.5]), "iou": np.full(2, iou), "purity": np.full(2, np.nan),
             "integrity": np.full(2, np.nan), "rank": np.array([0.9, 0.5])} for _ in range(6)]


def test_iou_bins_analytic():
    truth = [0.05, 0.15, 0.15, 0.95, 1.0, 0.4, 0.39999]
    pred = [0.5, 0.2, 0.4, 0.9, 1.0, 0.7, np.nan]  # the NaN prediction is left out
    bins = evaluate.iou_bins(truth, pred)
    assert len(bins) == 10 and [b["lo"] for b in bins] == pytest.approx([0.1 * k for k in range(10)])
    assert [b["n"] for b in bins] == [1, 2, 0, 0, 1, 0, 0, 0, 0, 2]  # 0.4 opens [0.4, 0.5); 1.0 closes the last
    assert bins[1]["mean_pred"] == pytest.approx(0.3) and bins[1]["mean_true"] == pytest.approx(0.15)
    assert bins[2]["mean_pred"] is None and bins[9]["mean_pred"] == pytest.approx(0.95)


def test_candidate_calibration_measures_true_iou_of_every_candidate():
    gt = _gt()
    ids = [im["id"] for im in gt["images"]]
    # per image: the exact truth (IoU 1), the truth shifted 50 px (IoU 50/150 = 1/3) and an empty-class box
    cands = [{"bbox": np.array([[20.0, 20, 100, 100], [70.0, 20, 100, 100], [150.0, 150, 30, 30]]),
              "category_id": np.array([1, 1, 1]), "score": np.array([0.9, 0.6, 0.3]),
              "iou_direct": np.array([0.8, 0.6, 0.2])} for _ in ids]
    cal = evaluate.candidate_calibration(gt, ids, cands, min_target=0.4, score_threshold=0.05)
    assert cal["n"] == 18 and cal["trained_min_iou"] == 0.4
    assert cal["share_below_min_iou"] == pytest.approx(2 / 3)  # the shifted box and the far one
    b = cal["heads"]["direct"]
    assert [x["n"] for x in b] == [6, 0, 0, 6, 0, 0, 0, 0, 0, 6]
    assert b[3]["mean_true"] == pytest.approx(1 / 3) and b[3]["mean_pred"] == pytest.approx(0.6)
    assert b[9]["mean_pred"] == pytest.approx(0.8) and b[0]["mean_pred"] == pytest.approx(0.2)
    # every head on these same candidates: the matches (IoU 1) have no spread; the overlapping ones
    # (IoU 1 -> 0.8, IoU 1/3 -> 0.6) lie on a line
    r = cal["correlation"]["direct"]
    assert r["n"] == 6 and r["pearson"] is None and r["spearman"] is None
    assert r["n_overlapping"] == 12 and r["pearson_overlapping"] == pytest.approx(1.0)
    assert r["spearman_overlapping"] == pytest.approx(1.0)


def test_gains_over_none_and_claims():
    gt = _gt()
    ids = [im["id"] for im in gt["images"]]
    # none: the truth shifted 30 px (IoU 70/130 = 0.54: a hit at .50 only); direct the same boxes;
    # decoupled and dir: 5 px (IoU 0.905: a hit up to .90); iou_nms: 8 px (IoU 0.85)
    dets = {"none": _dets(30), "direct": _dets(30, 0.5), "decoupled": _dets(5, 0.9), "dir": _dets(5, 0.9),
            "iou_nms": _dets(8, 0.8)}
    metrics, _, _ = evaluate.score_variants(gt, ids, dets, n_boot=8, seed=0)
    assert metrics["none"]["AP50"]["value"] == pytest.approx(1) and metrics["none"]["AP75"]["value"] == 0
    assert metrics["dir"]["AP90"]["value"] == pytest.approx(1) and metrics["iou_nms"]["AP90"]["value"] == 0
    assert metrics["iou_nms"]["AP75"]["value"] == pytest.approx(1)
    for v in ("direct", "decoupled", "dir", "iou_nms"):
        g = metrics["gain"][f"{v}-none"]
        assert set(g) == set(evaluate.CLAIM_STATS)
        for s in evaluate.CLAIM_STATS:
            assert g[s]["value"] == pytest.approx(metrics[v][s]["value"] - metrics["none"][s]["value"])
            assert g[s]["ci_low"] <= g[s]["value"] + 1e-12 <= g[s]["ci_high"] + 2e-12
    assert {"dir-direct", "dir-decoupled", "dir-iou_nms", "decoupled-direct"} <= set(metrics["gain"])
    c = metrics["claims"]
    # every image gains the same: a zero-width interval above 0 for decoupling, exactly 0 for hindsight
    assert c["decoupling"]["verdict"] == "holds" and c["decoupling"]["comparison"] == "decoupled-direct"
    assert c["decoupling"]["ci_low"] > 0
    assert c["hindsight"]["verdict"] == "not shown" and c["hindsight"]["value"] == pytest.approx(0)
    reversed_ = evaluate.score_variants(gt, ids, {"direct": _dets(5, 0.9), "decoupled": _dets(30, 0.5)},
                                        n_boot=4, seed=0)[0]["claims"]
    assert reversed_["decoupling"]["verdict"] == "reversed" and reversed_["hindsight"]["verdict"] == "not measured"
    unmeasured = evaluate.score_variants(gt, ids, dets, n_boot=0, seed=0)[0]
    assert unmeasured["gain"] == {} and {c["verdict"] for c in unmeasured["claims"].values()} == {"not measured"}
