"""Video decoding: shapes on real videos, motion semantics, corrupt files, the frame cache."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.vqa import video  # noqa: E402
from models.vqa.video import FrameCache, VideoReadError, probe_video, read_clip  # noqa: E402
from tasks.vqa.synthetic import write_mp4  # noqa: E402
from tests.conftest import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "vqa"
REAL = ["konvid_10053703034.mp4", "vsfa_test.mp4"]


def real(name: str) -> Path:
    p = FIXTURES / name
    if not p.is_file():
        pytest.skip(f"fixture {p} absent")
    return p


def moving_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """A bright square moving right by 3 px per frame over a gradient."""
    base = np.tile(np.linspace(30, 120, w, dtype=np.float32), (h, 1))
    out = []
    for t in range(n):
        f = base.copy()
        f[8:20, 2 + 3 * t: 14 + 3 * t] = 250
        out.append(np.repeat(f[..., None], 3, axis=2).astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("n_clips,clip_len,height,width", [(5, 1, 24, 32), (3, 4, 17, 23)])
def test_read_clip_shapes_real(name, n_clips, clip_len, height, width):
    frames, motion = read_clip(real(name), n_clips=n_clips, clip_len=clip_len, height=height, width=width)
    assert frames.shape == (n_clips, height, width, 3) and frames.dtype == np.uint8
    assert motion.shape == (n_clips * clip_len, height, width, 1) and motion.dtype == np.float32
    assert -1 <= motion.min() and motion.max() <= 1
    assert np.abs(motion).max() > 0  # real footage moves
    assert len({f.tobytes() for f in frames}) == n_clips  # runs spread over the video: distinct frames


def test_flow_motion_real():
    _, motion = read_clip(real("vsfa_test.mp4"), n_clips=2, clip_len=2, height=24, width=32, motion="flow")
    assert motion.shape == (4, 24, 32, 2) and np.isfinite(motion).all()


def test_probe_real():
    info = probe_video(real("konvid_10053703034.mp4"))
    assert info["frames"] == info["frames_meta"] > 0
    assert info["width"] > info["height"] > 0 and info["fps"] > 0


def test_runs_are_consecutive_and_spread_over_the_whole_video():
    idx = video.clip_indices(120, 4, 8)  # 4 runs of 9 consecutive frames (8 motion steps)
    assert idx.shape == (4, 9) and (np.diff(idx, axis=1) == 1).all()
    centres = idx[:, 4]
    assert centres.tolist() == [15, 45, 75, 105]  # the centres of 4 equal segments
    assert video.keyframes(idx).tolist() == [15, 45, 75, 105]
    edge = video.clip_indices(10, 2, 8)  # runs kept inside the video
    assert edge.min() == 0 and edge.max() == 9 and (np.diff(edge, axis=1) == 1).all()
    short = video.clip_indices(3, 2, 4)  # shorter than a run: the last frame repeats
    assert short.tolist() == [[0, 1, 2, 2, 2]] * 2
    old = video.clip_indices(100, 4, 1)  # clip_len 1: the older sampling, a frame and its successor
    assert old[:, 0].tolist() == [12, 37, 62, 87] and (old[:, 1] == old[:, 0] + 1).all()


def test_short_video_repeats_frames(tmp_path):
    p = tmp_path / "short.mp4"
    write_mp4(p, moving_frames(3), fps=10)
    frames, motion = read_clip(p, n_clips=8, clip_len=2, height=16, width=24)
    assert frames.shape == (8, 16, 24, 3) and motion.shape == (16, 16, 24, 1)
    assert len({f.tobytes() for f in frames}) <= 3


def test_sample_clip_in_memory_equals_the_file(tmp_path):
    """The evaluate stage's probes distort decoded frames in memory: sampled as from the file."""
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(20), fps=10)
    want = read_clip(p, n_clips=3, clip_len=4, height=16, width=24)
    decoded = video.read_frames(p, height=32, width=48)
    assert decoded.shape == (20, 32, 48, 3)
    got = video.sample_clip(decoded, n_clips=3, clip_len=4, height=32, width=48)
    small = video.sample_clip(video.read_frames(p, height=16, width=24), n_clips=3, clip_len=4, height=16, width=24)
    assert got[0].shape == (3, 32, 48, 3) and got[1].shape == (12, 32, 48, 1)
    assert np.array_equal(small[0], want[0]) and np.array_equal(small[1], want[1])


def test_diff_motion_is_zero_on_repeated_frames(tmp_path):
    src = moving_frames(6)
    stutter = src[[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]]  # every frame shown twice
    p = tmp_path / "stutter.mp4"
    write_mp4(p, stutter, fps=10)
    # one run over all 12 frames: even steps go to the frame's repeat, odd ones to the next frame
    _, motion = read_clip(p, n_clips=1, clip_len=11, height=32, width=48)
    energy = np.abs(motion).mean(axis=(1, 2, 3))
    assert energy[0:10:2].max() < 0.2 * energy[1:10:2].min()
    assert energy[1:10:2].min() > 0.005


def test_lying_frame_count_metadata(tmp_path, monkeypatch):
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(9), fps=10)
    want = read_clip(p, n_clips=4, clip_len=1, height=16, width=24)
    real_meta = video._meta
    for claim in (0, 40, 3):  # absent, too many, too few
        monkeypatch.setattr(video, "_meta", lambda cap, c=claim: real_meta(cap) | {"frames_meta": c})
        got = read_clip(p, n_clips=4, clip_len=1, height=16, width=24)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def _corrupt_files(tmp_path: Path) -> list[Path]:
    rnd = tmp_path / "random.mp4"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 200)
    files = [rnd, empty, text, tmp_path / "absent.mp4"]
    src = FIXTURES / "vsfa_test.mp4"
    if src.is_file():
        half = tmp_path / "truncated.mp4"
        data = src.read_bytes()
        half.write_bytes(data[: len(data) // 2])
        files.append(half)
    return files


def test_corrupt_files_raise_naming_the_file(tmp_path):
    for f in _corrupt_files(tmp_path):
        for call in (lambda f=f: read_clip(f, n_clips=4, clip_len=1, height=8, width=8), lambda f=f: probe_video(f)):
            with pytest.raises(VideoReadError) as e:
                call()
            assert str(f) in str(e.value) and e.value.problem


def test_bad_arguments(tmp_path):
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(2), fps=10)
    with pytest.raises(ValueError, match="motion"):
        read_clip(p, n_clips=2, clip_len=1, height=8, width=8, motion="optical")
    with pytest.raises(ValueError):
        read_clip(p, n_clips=0, clip_len=1, height=8, width=8)


def test_frame_cache_hit_does_not_decode(tmp_path, monkeypatch):
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(8), fps=10)
    cache = FrameCache(tmp_path / "cache", n_clips=4, clip_len=1, height=16, width=24, motion="diff")
    frames, motion = cache.get(p)

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")
    monkeypatch.setattr(cv2, "VideoCapture", no_decoding)
    frames2, motion2 = cache.get(p)
    assert np.array_equal(frames, frames2) and np.array_equal(motion, motion2)
    assert frames2.dtype == np.uint8 and motion2.dtype == np.float32
    # another sampling setting, or an edited file, is a miss (and here must decode, so it fails)
    other = FrameCache(tmp_path / "cache", n_clips=4, clip_len=1, height=16, width=24, motion="flow")
    with pytest.raises(AssertionError, match="decoded"):
        other.get(p)
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded"):
        cache.get(p)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_frame_cache_fill_reports_failures(tmp_path):
    good = tmp_path / "good.mp4"
    write_mp4(good, moving_frames(5), fps=10)
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    cache = FrameCache(tmp_path / "c", n_clips=2, clip_len=1, height=8, width=8, motion="diff")
    seen = []
    out = cache.fill([good, bad], skip_errors=True, on_progress=lambda i, n: seen.append((i, n)))
    assert out["decoded"] == 1 and [f[0] for f in out["failed"]] == [str(bad)]
    assert seen == [(1, 2), (2, 2)]
    assert cache.fill([good])["cached"] == 1
    with pytest.raises(VideoReadError):
        cache.fill([bad])


def test_frame_cache_fill_counts_cached_without_loading(tmp_path, monkeypatch):
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(5), fps=10)
    cache = FrameCache(tmp_path / "c", n_clips=2, clip_len=1, height=8, width=8, motion="diff")
    assert not cache.cached(p)
    assert cache.fill([p])["decoded"] == 1 and cache.cached(p)

    def no_loading(*a, **k):
        raise AssertionError("loaded a cached clip just to count it")
    monkeypatch.setattr(video.np, "load", no_loading)
    assert cache.fill([p, p]) == {"cached": 2, "decoded": 0, "failed": []}
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))  # edited video: a new key
    assert not cache.cached(p)


def test_frame_cache_miss_keys_once(tmp_path, monkeypatch):
    p = tmp_path / "v.mp4"
    write_mp4(p, moving_frames(5), fps=10)
    cache = FrameCache(tmp_path / "c", n_clips=2, clip_len=1, height=8, width=8, motion="diff")
    calls = []
    real_key = FrameCache.key
    monkeypatch.setattr(FrameCache, "key", lambda self, path: calls.append(path) or real_key(self, path))
    frames, motion = cache.get(p)  # miss: stat + hash once, decode, store
    assert len(calls) == 1 and frames.shape == (2, 8, 8, 3)
    calls.clear()
    again = cache.get(p)  # hit
    assert len(calls) == 1 and np.array_equal(again[0], frames) and np.array_equal(again[1], motion)
