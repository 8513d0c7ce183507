"""Synthetic generator: determinism, severity -> quality, content visibility, simulated raters."""
from __future__ import annotations

import cv2  # noqa: F401  (declared dependency: a broken import must fail)
import numpy as np
import pandas as pd
import pytest

from models.vqa.video import read_clip  # noqa: E402
from tasks.vqa import synthetic  # noqa: E402

SMALL = dict(n_contents=2, versions_per_content=3, n_frames=6, height=32, width=48, fps=8)


def test_generation_is_deterministic(tmp_path):
    a = synthetic.generate(tmp_path / "a", seed=3, **SMALL)
    b = synthetic.generate(tmp_path / "b", seed=3, **SMALL)
    c = synthetic.generate(tmp_path / "c", seed=4, **SMALL)
    pd.testing.assert_frame_equal(a, b)
    assert not a["true_quality"].equals(c["true_quality"])
    assert len(a) == 6 and a["content_id"].nunique() == 2
    assert a["true_quality"].between(1, 5).all()
    for vid in a["video_id"]:
        fa, _ = read_clip(tmp_path / "a" / f"{vid}.mp4", n_clips=6, clip_len=1, height=32, width=48)
        fb, _ = read_clip(tmp_path / "b" / f"{vid}.mp4", n_clips=6, clip_len=1, height=32, width=48)
        assert np.array_equal(fa, fb)


def _traits(rng):
    return {"texture": rng.uniform(), "motion": rng.uniform(), "brightness": rng.uniform()}


@pytest.mark.parametrize("name", synthetic.DISTORTIONS)
def test_severity_lowers_true_quality(name):
    rng = np.random.default_rng(0)
    for _ in range(20):
        traits, sev = _traits(rng), synthetic.draw_severities(rng)
        qs = [synthetic.true_quality(sev | {name: s}, traits, 4.7) for s in (0.0, 0.3, 0.6, 1.0)]
        assert all(x > y for x, y in zip(qs, qs[1:])), qs
        assert 1 <= min(qs) and max(qs) <= 5


def test_visibility_depends_on_content():
    sev = dict.fromkeys(synthetic.DISTORTIONS, 0.0) | {"blur": 0.7}
    flat = {"texture": 0.1, "motion": 0.5, "brightness": 0.5}
    textured = flat | {"texture": 0.9}
    assert synthetic.true_quality(sev, textured, 4.7) < synthetic.true_quality(sev, flat, 4.7)
    still, moving = flat | {"motion": 0.0}, flat | {"motion": 1.0}
    for kind in ("fps", "drops", "freeze", "judder"):  # delivery faults are seen on moving scenes
        sev = dict.fromkeys(synthetic.DISTORTIONS, 0.0) | {kind: 0.7}
        assert synthetic.true_quality(sev, moving, 4.7) < synthetic.true_quality(sev, still, 4.7)


def test_duplicate_heavy_video_loses_quality():
    """A low frame rate shown as duplicates costs quality, more the lower the rate (the issue's case)."""
    moving = {"texture": 0.5, "motion": 0.8, "brightness": 0.5}
    none = dict.fromkeys(synthetic.DISTORTIONS, 0.0)
    q = [synthetic.true_quality(none | {"fps": s}, moving, 4.7) for s in (0.0, 1 / 7, 3 / 7, 1.0)]
    assert q == sorted(q, reverse=True) and q[0] - q[-1] > 1.5


def test_distortions_change_the_pixels():
    rng = np.random.default_rng(1)
    clean, _ = synthetic.make_content(rng, n_frames=6, height=32, width=48)
    none = dict.fromkeys(synthetic.DISTORTIONS, 0.0)
    sharp = synthetic.distort(clean, none, rng).astype(np.float32)
    blurred = synthetic.distort(clean, none | {"blur": 1.0}, rng).astype(np.float32)
    assert np.abs(np.diff(blurred, axis=2)).mean() < np.abs(np.diff(sharp, axis=2)).mean()
    assert not any(np.array_equal(sharp[t], sharp[t - 1]) for t in range(1, 6))
    for kind in ("fps", "drops", "freeze", "judder"):
        out = synthetic.distort(clean, none | {kind: 1.0}, rng)
        repeats = sum(np.array_equal(out[t], out[t - 1]) for t in range(1, 6))
        assert out.shape == sharp.shape and repeats >= 1, kind


def _truth(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"video_id": [f"v{i}" for i in range(n)],
                         "content_id": [f"c{i // 4}" for i in range(n)],
                         "true_quality": rng.uniform(1, 5, n)})


def test_raters_track_truth_and_careless_ones_are_noisier():
    truth = _truth()
    scores, raters, contents = synthetic.simulate_ratings(
        truth, seed=1, n_raters=20, careless_fraction=0.1, missing_fraction=0.0)
    assert raters["careless"].sum() == 2 and len(contents) == 100
    assert scores["score"].isin([1, 2, 3, 4, 5]).all()
    merged = scores.merge(truth[["video_id", "true_quality"]], on="video_id")
    corr = merged.groupby("rater_id").apply(
        lambda d: np.corrcoef(d["score"], d["true_quality"])[0, 1], include_groups=False)
    careless = set(raters.loc[raters["careless"], "rater_id"])
    careful = corr[~corr.index.isin(careless)]
    assert careful.min() > 0.6
    assert corr[list(careless)].max() < careful.min()
    # the mean opinion is closer to the truth than any single rater
    mos = merged.groupby("video_id")["score"].mean()
    assert np.corrcoef(mos, truth.set_index("video_id").loc[mos.index, "true_quality"])[0, 1] > careful.max()


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5])
def test_missing_fraction_respected(fraction):
    truth = _truth(300)
    scores, _, _ = synthetic.simulate_ratings(
        truth, seed=2, n_raters=10, careless_fraction=0.0, missing_fraction=fraction)
    observed = 1 - len(scores) / (300 * 10)
    assert abs(observed - fraction) < 0.03
    assert scores["video_id"].nunique() == 300  # every video keeps a rating
    assert not scores.duplicated(["video_id", "rater_id"]).any()


def test_rater_bias_shifts_scores():
    truth = _truth(600)
    scores, raters, _ = synthetic.simulate_ratings(
        truth, seed=3, n_raters=12, careless_fraction=0.0, missing_fraction=0.0, bias_std=0.6)
    merged = scores.merge(truth[["video_id", "true_quality"]], on="video_id")
    offset = (merged["score"] - merged["true_quality"]).groupby(merged["rater_id"]).mean()
    assert np.corrcoef(offset[raters["rater_id"]], raters["bias"])[0, 1] > 0.8
