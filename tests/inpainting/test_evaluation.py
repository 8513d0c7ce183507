"""The evaluate stage's functions on 2 tiny synthetic videos: rounds with the robot, restoration of the
model and the baselines against the truth, intervals, the claim section."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.inpainting.network import InpaintingNet
from tasks.inpainting import evaluation, synthetic

torch.set_num_threads(1)
ROUNDS = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    synthetic.generate(out, seed=7, n_videos=2, n_frames=6, height=32, width=48)
    return out


@pytest.fixture(scope="module")
def metrics(root):
    torch.manual_seed(0)
    net = InpaintingNet(width=8, key_dim=16, value_dim=16).eval()
    return evaluation.evaluate_videos(net, root, rounds=ROUNDS, max_memory=4, n_boot=200, seed=0)


def finite(stat) -> bool:
    return all(stat[k] is not None and math.isfinite(stat[k]) for k in ("value", "ci_low", "ci_high"))


def test_rounds_scores_and_intervals(metrics):
    assert metrics["n_videos"] == 2 and metrics["rounds"] == ROUNDS
    for key in ("J", "F", "JF"):
        assert len(metrics["per_round"][key]) == ROUNDS
        for s in metrics["per_round"][key]:
            assert finite(s) and 0 <= s["value"] <= 1 and s["ci_low"] <= s["value"] <= s["ci_high"]
    jf = [s["value"] for s in metrics["per_round"]["JF"]]
    assert metrics["jf_round_1"]["value"] == pytest.approx(jf[0])
    assert metrics[f"jf_round_{ROUNDS}"]["value"] == pytest.approx(jf[-1])
    assert finite(metrics["auc_jf"]) and min(jf) - 1e-9 <= metrics["auc_jf"]["value"] <= max(jf) + 1e-9
    assert set(metrics["per_video"]) == {"synth0000", "synth0001"}


def test_restoration_of_the_model_and_every_baseline(metrics):
    rest = metrics["restoration"]
    assert set(rest) == set(evaluation.METHODS)
    for m in evaluation.METHODS:
        for k in evaluation.RESTORATION:
            assert finite(rest[m][k]), (m, k)
        assert 0 < rest[m]["hole_psnr"]["value"] < 100 and -1 <= rest[m]["hole_ssim"]["value"] <= 1
    # Telea on the true hole sees the truth's border; an oracle copy from aligned frames does better still
    assert rest["temporal_true_mask"]["hole_psnr"]["value"] > rest["telea_true_mask"]["hole_psnr"]["value"]
    for b in evaluation.BASELINES:
        d = metrics["gain"][f"model-{b}"]["hole_psnr"]
        assert d["value"] == pytest.approx(rest["model"]["hole_psnr"]["value"] - rest[b]["hole_psnr"]["value"])


def test_claim_section(metrics):
    claim = metrics["claim"]
    c = claim["shared_memory_vs_per_frame"]
    assert c["metric"] == "hole_psnr" and finite(c["difference"]) and finite(c["hole_ssim_difference"])
    assert c["baseline"] == metrics["restoration"][evaluation.PER_FRAME_BASELINE]["hole_psnr"]
    r = claim["corrections_raise_jf"]
    assert finite(r["difference"]) and r["difference"]["value"] == pytest.approx(
        metrics[f"jf_round_{ROUNDS}"]["value"] - metrics["jf_round_1"]["value"])
    # 2 videos are too few for a verdict either way
    assert c["verdict"] == r["verdict"] == "not shown" and c["holds"] is r["holds"] is False


def test_verdicts_follow_the_interval():
    base = {"name": "v", "n_frames": 3, "per_round": [], "peak_memory_frames": 1}
    recs = []
    for k in range(6):
        rest = {m: {"hole_psnr": 20.0 + (3 if m == "model" else 0) + 0.1 * k, "hole_ssim": 0.5, "frame_psnr": 30.0,
                    "frame_ssim": 0.9} for m in evaluation.METHODS}
        recs.append({**base, "name": f"v{k}", "J": [0.5, 0.6], "F": [0.5, 0.6], "JF": [0.5, 0.6 + 0.01 * k],
                     "auc_jf": 0.55, "jf_first": 0.5, "jf_last": 0.6 + 0.01 * k, "restoration": rest})
    m = evaluation.summarise(recs, n_boot=300, seed=1)
    assert m["claim"]["shared_memory_vs_per_frame"]["verdict"] == "holds"
    assert m["claim"]["corrections_raise_jf"]["holds"] is True
    for r in recs:
        r["jf_last"] = 0.4
    assert evaluation.summarise(recs, n_boot=300, seed=1)["claim"]["corrections_raise_jf"]["verdict"] == "reversed"
    for r in recs:
        r["restoration"] = None
    m = evaluation.summarise(recs, n_boot=0)
    assert m["restoration"] is None and m["claim"]["shared_memory_vs_per_frame"]["holds"] is False


def test_baselines_and_scores_on_a_known_case():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 255, (4, 24, 32, 3)).astype(np.uint8)
    holes = np.zeros((4, 24, 32), bool)
    holes[:, 8:14, 10:18] = True
    frames = truth.copy()
    frames[holes] = 0
    assert evaluation.restoration_scores(truth, truth, holes)["hole_psnr"] > 100
    filled = evaluation.telea(frames, holes, dilation=0)
    assert np.array_equal(filled[~holes], frames[~holes]) and filled[holes].mean() > 0
    import cv2

    texture = cv2.GaussianBlur(rng.integers(0, 255, (48, 120, 3)).astype(np.uint8), (5, 5), 0)
    moving = np.stack([texture[:, 4 * t:4 * t + 64] for t in range(5)])  # a camera panning 4 px a frame
    hole_t = np.zeros(moving.shape[:3], bool)
    hole_t[:, 16:30, 24:36] = True  # fixed in the frame: other frames saw what it hides
    seen = moving.copy()
    seen[hole_t] = 0
    copied = evaluation.temporal_fill(seen, hole_t, dilation=0)
    s_copy = evaluation.restoration_scores(copied, moving, hole_t)["hole_psnr"]
    s_telea = evaluation.restoration_scores(evaluation.telea(seen, hole_t, dilation=0), moving, hole_t)["hole_psnr"]
    assert s_copy > 40 > s_telea + 10  # copying the aligned truth beats smearing the border
