"""Hand-crafted features respond to the distortion they measure; the ridge fits and round-trips."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.vqa.baseline import (
    FEATURE_NAMES,
    BaselineFormatError,
    BaselineRegressor,
    FeatureInputError,
    handcrafted_features,
)

T, H, W = 6, 64, 64


def feat(clip: np.ndarray, name: str) -> float:
    return float(handcrafted_features(clip)[FEATURE_NAMES.index(name)])


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """A textured scene (multi-scale noise, mid exposure) panning 2 px per frame."""
    rng = np.random.default_rng(0)
    canvas = np.zeros((H, W + 2 * T, 3), np.float32)
    for cells, amp in ((4, 90.0), (12, 45.0), (32, 30.0), (64, 20.0)):
        grid = rng.random((cells, cells, 3), dtype=np.float32)
        canvas += amp * cv2.resize(grid, (W + 2 * T, H), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(canvas - canvas.mean() + 120.0, 0, 255).astype(np.uint8)
    return np.stack([canvas[:, 2 * t:2 * t + W] for t in range(T)])


def each(clip, fn):
    return np.stack([fn(f) for f in clip])


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def test_vector_shape_and_finiteness(clip):
    f = handcrafted_features(clip)
    assert f.shape == (len(FEATURE_NAMES),) and f.dtype == np.float64
    assert np.isfinite(f).all()
    assert handcrafted_features(clip[:1]).shape == f.shape  # one frame: temporal features are 0


def test_blur_lowers_sharpness(clip):
    blurred = each(clip, lambda f: cv2.GaussianBlur(f, (7, 7), 2.0))
    assert feat(blurred, "sharpness_lapvar") < feat(clip, "sharpness_lapvar") - 0.5
    assert feat(blurred, "sharpness_hf_energy") < 0.7 * feat(clip, "sharpness_hf_energy")


def test_noise_raises_noise(clip):
    rng = np.random.default_rng(1)
    noisy = np.clip(clip + rng.normal(0, 12, clip.shape), 0, 255).astype(np.uint8)
    assert feat(noisy, "noise_sigma") > feat(clip, "noise_sigma") + 3.0
    assert feat(noisy, "noise_residual_energy") > feat(clip, "noise_residual_energy") + 0.5


def test_strong_jpeg_raises_blockiness(clip):
    low = each(clip, lambda f: jpeg(f, 5))
    high = each(clip, lambda f: jpeg(f, 95))
    assert feat(low, "blockiness") > feat(clip, "blockiness") + 0.2
    assert feat(low, "blockiness") > feat(high, "blockiness") + 0.2


def test_blockiness_does_not_depend_on_grid_alignment(clip):
    low = each(clip, lambda f: jpeg(f, 5))
    shifted = low[:, 3:, 5:]                    # a crop moves the 8x8 grid off pixel 0
    assert feat(shifted, "blockiness") > feat(clip[:, 3:, 5:], "blockiness") + 0.2


def test_alternating_brightness_raises_flicker(clip):
    delta = np.array([25 if t % 2 else -25 for t in range(T)])[:, None, None, None]
    flicker = np.clip(clip.astype(int) + delta, 0, 255).astype(np.uint8)
    fade = np.clip(clip.astype(int) + 6 * np.arange(T)[:, None, None, None], 0, 255).astype(np.uint8)
    assert feat(flicker, "temporal_flicker") > feat(clip, "temporal_flicker") + 0.05
    assert feat(flicker, "temporal_flicker") > 5 * feat(fade, "temporal_flicker")  # a steady fade is not flicker


def test_repeated_frames_raise_frozen_fraction(clip):
    frozen = clip[[0, 0, 0, 3, 3, 3]]
    assert feat(clip, "frozen_fraction") == 0.0
    assert feat(frozen, "frozen_fraction") == pytest.approx(4 / 5)
    assert feat(frozen, "temporal_activity") < feat(clip, "temporal_activity")


def test_exposure_features(clip):
    dark = np.clip(clip.astype(int) - 100, 0, 255).astype(np.uint8)   # crushed blacks
    bright = np.clip(clip.astype(int) + 150, 0, 255).astype(np.uint8)
    assert feat(dark, "exposure_mean") < feat(clip, "exposure_mean") < feat(bright, "exposure_mean")
    assert feat(dark, "exposure_dark_clip") > feat(clip, "exposure_dark_clip") + 0.05
    assert feat(bright, "exposure_bright_clip") > feat(clip, "exposure_bright_clip") + 0.05
    assert feat(dark, "contrast_rms") < feat(clip, "contrast_rms")


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((4, 32, 32), np.uint8), "T, H, W, 3"),
    (np.zeros((4, 32, 32, 3), np.float32), "uint8"),
    (np.zeros((0, 32, 32, 3), np.uint8), ">= 1 frame"),
    (np.zeros((2, 4, 32, 3), np.uint8), "8x8"),
])
def test_bad_frames(bad, msg):
    with pytest.raises(FeatureInputError, match=msg):
        handcrafted_features(bad)


# ---------------------------------------------------------------------------------------- ridge

def linear_data(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 50, d) + rng.normal(0, 10, d)  # mixed scales
    w = rng.normal(size=d)
    return x, x @ w + 2.5, w


def test_ridge_recovers_a_linear_relation():
    x, y, w = linear_data()
    m = BaselineRegressor(alpha=1e-8).fit(x, y)
    np.testing.assert_allclose(m.predict(x), y, atol=1e-6)
    np.testing.assert_allclose(m.coef_ / m.scale_, w, rtol=1e-6)  # back in raw feature units


def test_ridge_penalty_shrinks_weights():
    x, y, _ = linear_data()
    norms = [np.linalg.norm(BaselineRegressor(alpha=a).fit(x, y).coef_) for a in (0.0, 10.0, 1000.0)]
    assert norms[0] > norms[1] > norms[2]
    big = BaselineRegressor(alpha=1e9).fit(x, y)
    np.testing.assert_allclose(big.predict(x), y.mean(), atol=1e-3)  # all shrunk: the intercept


def test_constant_feature_is_harmless():
    x, y, _ = linear_data(d=3)
    x = np.hstack([x, np.full((len(x), 1), 7.0)])
    m = BaselineRegressor(alpha=1e-6).fit(x, y)
    assert np.isfinite(m.predict(x)).all()
    np.testing.assert_allclose(m.predict(x), y, atol=1e-4)


def test_json_round_trip_predicts_identically():
    x, y, _ = linear_data(d=len(FEATURE_NAMES))
    m = BaselineRegressor(alpha=3.0, feature_names=FEATURE_NAMES).fit(x, y)
    back = BaselineRegressor.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.feature_names == list(FEATURE_NAMES) and back.alpha == 3.0
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_regressor_errors():
    x, y, _ = linear_data(d=3)
    with pytest.raises(ValueError, match="before fit"):
        BaselineRegressor().predict(x)
    with pytest.raises(ValueError, match="alpha"):
        BaselineRegressor(alpha=-1)
    m = BaselineRegressor(alpha=1.0).fit(x, y)
    with pytest.raises(ValueError, match="3 features, got 2"):
        m.predict(x[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        m.predict(np.full((2, 3), np.nan))
    d = m.to_dict()
    with pytest.raises(BaselineFormatError, match="model.json: missing"):
        BaselineRegressor.from_dict({k: v for k, v in d.items() if k != "coef"}, source="model.json")
    with pytest.raises(BaselineFormatError, match="lengths"):
        BaselineRegressor.from_dict({**d, "coef": d["coef"][:2]})
    with pytest.raises(BaselineFormatError, match="not a standardised_ridge"):
        BaselineRegressor.from_dict({"kind": "svr"})


# ------------------------------------------------------------------------- temporal from motion

def _moving(n: int, *, h: int = 32, w: int = 48, brightness=None) -> np.ndarray:
    """A bright square moving right 3 px per frame over a gradient; optional per-frame offset."""
    base = np.tile(np.linspace(60, 160, w, dtype=np.float32), (h, 1))
    out = []
    for t in range(n):
        f = base.copy()
        f[8:20, 2 + 3 * t:14 + 3 * t] = 230
        f += 0 if brightness is None else brightness[t]
        out.append(np.repeat(np.clip(f, 0, 255)[..., None], 3, axis=2).astype(np.uint8))
    return np.stack(out)


def _sampled(tmp_path, frames, *, n_frames, motion="diff", name="v.mp4"):
    from models.vqa.video import read_clip
    from tasks.vqa.synthetic import write_mp4

    p = tmp_path / name
    write_mp4(p, frames, fps=10)
    return read_clip(p, n_clips=n_frames, clip_len=1, height=frames.shape[1], width=frames.shape[2], motion=motion)


@pytest.mark.parametrize("motion", ["diff", "flow"])
def test_short_moving_video_is_not_frozen(tmp_path, motion):
    # 3 frames sampled as 8: the sampled frames repeat, but the video itself never stands still.
    frames, mot = _sampled(tmp_path, _moving(3), n_frames=8, motion=motion)
    i = FEATURE_NAMES.index("frozen_fraction")
    assert handcrafted_features(frames)[i] > 0.5          # what comparing sampled frames claims
    assert handcrafted_features(frames, motion=mot)[i] == 0.0
    assert handcrafted_features(frames, motion=mot)[FEATURE_NAMES.index("temporal_activity")] > 0


def test_repeated_frames_are_frozen_from_motion(clip):
    # Each sampled frame followed by an exact repeat (diff motion 0) except the last two.
    mot = np.zeros(clip.shape[:3] + (1,), np.float32)
    mot[-2:] = (clip[-1:, ..., :1].astype(np.float32) - clip[-2:-1, ..., :1]) / 255.0
    f = handcrafted_features(clip, motion=mot)
    assert f[FEATURE_NAMES.index("frozen_fraction")] == pytest.approx((T - 2) / T)
    flow = np.zeros(clip.shape[:3] + (2,), np.float32)
    flow[0, ..., 0] = 2.0 / W  # 2 px to the right
    assert feat_m(clip, flow, "frozen_fraction") == pytest.approx((T - 1) / T)
    assert feat_m(clip, flow, "temporal_activity") == pytest.approx(2.0 / W / T, rel=1e-5)


def feat_m(clip, motion, name):
    return float(handcrafted_features(clip, motion=motion)[FEATURE_NAMES.index(name)])


def test_flicker_seen_at_an_even_sampling_stride(tmp_path):
    # Brightness alternates every frame; 16 frames sampled as 4 (stride 4) see one phase only, so
    # the sampled frames look steady, while each frame's change to its successor shows the flicker.
    n = 16
    alternating = np.array([20.0 if t % 2 else -20.0 for t in range(n)])
    fl_frames, fl_mot = _sampled(tmp_path, _moving(n, brightness=alternating), n_frames=4, name="f.mp4")
    st_frames, st_mot = _sampled(tmp_path, _moving(n), n_frames=4, name="s.mp4")
    assert feat_m(fl_frames, fl_mot, "temporal_flicker") > 0.1                  # ~40 / 255
    assert feat_m(fl_frames, fl_mot, "temporal_flicker") > 5 * feat_m(st_frames, st_mot, "temporal_flicker")
    assert feat(fl_frames, "temporal_flicker") < 0.02                           # sampled frames miss it


def test_bad_motion(clip):
    with pytest.raises(FeatureInputError, match="motion"):
        handcrafted_features(clip, motion=np.zeros(clip.shape[:3] + (3,), np.float32))
    with pytest.raises(FeatureInputError, match="motion"):
        handcrafted_features(clip, motion=np.zeros((T - 1,) + clip.shape[1:3] + (1,), np.float32))
