"""Graded distortions (tasks.vqa.distortions) and what the sampling makes of them on a real video."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.vqa import distortions as d
from tests.conftest import FIXTURES

REAL = FIXTURES / "vqa" / "konvid_10053703034.mp4"


def ramp(n: int = 48, h: int = 16, w: int = 24) -> np.ndarray:
    """Frame t is filled with grey level t: which source frame is shown can be read off a pixel."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, h, w, 3)).copy()


def shown(frames: np.ndarray) -> np.ndarray:
    return frames[:, 0, 0, 0].astype(int)


def test_fps_shows_each_frame_f_times():
    for sev, f in ((1 / 7, 2), (3 / 7, 4), (1.0, 8)):
        assert d.fps_factor(sev) == f
        got = shown(d.distort_one(ramp(), "fps", sev, np.random.default_rng(0)))
        assert got.tolist() == [(t // f) * f for t in range(48)]
    assert d.fps_factor(0.0) == 1


def test_judder_is_an_uneven_cadence_of_duplicates():
    got = shown(d.distort_one(ramp(60), "judder", 1.0, np.random.default_rng(0)))  # 0.4 x the rate
    holds = np.diff(np.flatnonzero(np.diff(got) != 0))  # how long each source frame stays on screen
    assert set(holds.tolist()) == {2, 3}  # 3:2 pulldown
    assert (np.diff(got) >= 0).all() and got[-1] >= 55  # in time order, keeps pace with the video


def test_drops_and_freezes_grow_with_severity_and_keep_time():
    for kind in ("drops", "freeze"):
        repeats = []
        for sev in (0.25, 0.5, 1.0):
            got = shown(d.distort_one(ramp(96), kind, sev, np.random.default_rng(3)))
            assert len(got) == 96 and (np.diff(got) >= 0).all()  # same length, never backwards
            repeats.append(int((np.diff(got) == 0).sum()))
            if kind == "freeze":  # after a freeze the video jumps to where it is by then
                assert got[-1] >= 94
        assert repeats == sorted(repeats) and repeats[0] >= 1 and repeats[-1] > repeats[0], kind
    frozen = shown(d.distort_one(ramp(100), "freeze", 1.0, np.random.default_rng(3)))
    assert 0.3 <= (np.diff(frozen) == 0).mean() <= 0.45  # 40 % of the video frozen at severity 1


def test_the_params_schema_knows_exactly_these_kinds():
    from typing import get_args

    from tasks.vqa.schema import DistortionKind

    assert get_args(DistortionKind) == d.KINDS


def test_spatial_kinds_leave_timing_alone_and_unknown_kinds_are_refused():
    rng = np.random.default_rng(0)
    src = np.random.default_rng(1).integers(0, 255, (6, 16, 24, 3), dtype=np.uint8)
    for kind in d.SPATIAL:
        out = d.distort_one(src, kind, 0.8, rng)
        assert out.shape == src.shape and out.dtype == np.uint8 and not np.array_equal(out, src), kind
    assert np.array_equal(d.distort_one(src, "fps", 0.0, rng), src)  # severity 0: untouched
    with pytest.raises(ValueError, match="stutter"):
        d.distort_one(src, "stutter", 0.5, rng)


@pytest.fixture(scope="module")
def konvid():
    from models.vqa.video import read_frames

    if not REAL.is_file():
        pytest.skip(f"fixture {REAL} absent")
    return read_frames(REAL, height=48, width=64)


def _still_steps(motion: np.ndarray) -> np.ndarray:
    """Per motion step: is it (almost) a repeated frame? mean |diff| under half a grey level."""
    return np.abs(motion[..., 0]).mean(axis=(1, 2)) * 255 < 0.5


def test_sampling_sees_duplicates_drops_and_freezes_on_a_real_video(konvid):
    """The motion input of runs of consecutive frames shows each delivery fault of a real KoNViD-1k
    video as a pattern over time; sampled frame pairs far apart (the old sampling) could not."""
    from models.vqa.video import sample_clip

    cfg = dict(n_clips=4, clip_len=8, height=48, width=64, motion="diff")
    _, clean = sample_clip(konvid, **cfg)
    assert _still_steps(clean).mean() < 0.1  # a real, moving video: almost no repeated steps
    for kind, sev in (("fps", 3 / 7), ("fps", 1.0), ("drops", 0.8), ("freeze", 1.0), ("judder", 1.0)):
        _, motion = sample_clip(d.distort_one(konvid, kind, sev, np.random.default_rng(0)), **cfg)
        assert motion.shape == clean.shape and not np.allclose(motion, clean), kind
        assert _still_steps(motion).mean() > _still_steps(clean).mean() + 0.2, (kind, sev)
    _, every4 = sample_clip(d.distort_one(konvid, "fps", 3 / 7, np.random.default_rng(0)), **cfg)
    still = _still_steps(every4).reshape(4, 8)
    assert (still.sum(axis=1) == 6).all()  # each frame shown 4 times: 3 still steps in 4, per run
    _, every8 = sample_clip(d.distort_one(konvid, "fps", 1.0, np.random.default_rng(0)), **cfg)
    assert (_still_steps(every8).reshape(4, 8).sum(axis=1) == 7).all()  # 7 in 8: still visible
