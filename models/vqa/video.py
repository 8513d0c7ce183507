"""Video decoding for VQA: probe, uniform clip sampling with motion, and an on-disk frame cache.

numpy + OpenCV only. Decoding is one sequential pass (no seeking: seeks in inter-coded streams are
slow and, with some containers, inexact): ``cap.grab()`` walks every frame and ``cap.retrieve()``
converts only the frames we keep. Frame-count metadata can lie (truncated uploads, VFR streams), so
the count that matters is the one that decodes; when it differs from the plan we sample again.

What is refused and what is scored (the same rules for training, evaluation and serving):

- refused (:class:`VideoReadError`): a missing, empty or unopenable file; no decodable frame; frames
  smaller than ``MIN_SIDE`` (8) pixels on a side (nothing of quality is left to see; a 1x1 "video");
  a single decodable frame (a still image: the motion branch needs two frames);
- scored with a warning (logged on the ``mokuflow`` logger, once per decode): a video of which fewer
  than ``MIN_DECODED_SHARE`` (90 %) of the frames its container announces decode (a cut upload, a
  damaged stream). It is sampled over the frames that decode. The acquire stage leaves such videos
  out of the training data; a served model answers them. A damaged file whose frames all decode
  (with artefacts) cannot be told apart from a bad-quality video and is scored as such;
- scored silently: a video shorter than the sampling: runs overlap, and a video shorter than one run
  repeats its last frame.

The frame cache keeps a checksum of every entry and rebuilds an entry that does not match, cannot be
read, has the wrong shape or is in the way (a zero-byte file, a folder); each rebuild is logged once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from models.common.io import atomic_file

MOTIONS = {"diff": 1, "flow": 2}
FRAME_KEYS = ("n_clips", "clip_len", "height", "width", "motion")  # what a model's sampling is
MIN_SIDE = 8            # smaller decoded frames are refused
MIN_FRAMES = 2          # fewer decodable frames are refused
MIN_DECODED_SHARE = 0.9  # fewer decoded frames than this share of the container's count: a warning
LOGGER = logging.getLogger("mokuflow")  # the name tasks.core.logs writes to: reaches DVC / Prefect logs


class VideoReadError(ValueError):
    """A file that is not a readable video; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _check_size(path, frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise VideoReadError(path, f"frames too small to score: {w}x{h} px (at least {MIN_SIDE} px a side)")


def _check_count(path, n: int) -> None:
    if n < MIN_FRAMES:
        raise VideoReadError(path, f"only {n} decodable frame: a still image, not a video (motion needs "
                                   f"{MIN_FRAMES} frames)")


# ------------------------------------------------------------------------------------------ probe

def _open(path: str | os.PathLike):
    """An opened cv2.VideoCapture, or VideoReadError (missing, empty, not a video)."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise VideoReadError(p, "file not found")
    if p.stat().st_size == 0:
        raise VideoReadError(p, "empty file")
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(p, "not a readable video (container could not be opened)")
    return cap


def _meta(cap) -> dict:
    import cv2

    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return {
        "frames_meta": int(n) if np.isfinite(n) and n > 0 else 0,
        "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    }


def probe_video(path: str | os.PathLike, *, count_frames: bool = True) -> dict:
    """``{"frames", "fps", "width", "height", "frames_meta"}`` of a video.

    With ``count_frames`` (default) ``frames`` is the number of frames that actually decode (one
    grab pass, no colour conversion) and the first frame is fully retrieved, so a file that passes
    is readable end to end; without it, ``frames`` is the container's claim. Raises VideoReadError
    for what :func:`read_clip` refuses (too small; with ``count_frames``, a single frame).
    """
    cap = _open(path)
    try:
        info = _meta(cap)
        if not cap.grab():
            raise VideoReadError(path, "no decodable frame")
        ok, frame = cap.retrieve()
        if not ok or frame is None or frame.size == 0:
            raise VideoReadError(path, "first frame could not be decoded")
        info["height"], info["width"] = frame.shape[:2]  # trust the decoded size over metadata
        _check_size(path, frame)
        n = 1
        if count_frames:
            while cap.grab():
                n += 1
            _check_count(path, n)
        info["frames"] = n if count_frames else max(info["frames_meta"], 1)
        return info
    finally:
        cap.release()


# ---------------------------------------------------------------------------------------- sampling
#
# One sampling definition for the frame cache, training, evaluation and serving (SlowFast-style):
# ``n_clips`` runs of ``clip_len + 1`` *consecutive* decoded frames, centred on the centres of
# ``n_clips`` equal segments of the video. The motion input is every step of every run (frame i to
# frame i+1: ``n_clips * clip_len`` steps), so duplicated frames, drops and freezes show as patterns
# over time at the video's own frame rate; the spatial input is the middle frame of each run.
# ``clip_len: 1`` is the older "n sampled frames, each with its successor".

def frame_settings(cfg: dict) -> dict:
    """The :data:`FRAME_KEYS` of a frames config; a config saved before runs (``n_frames`` sampled
    frames, each with its successor) is the same sampling with ``clip_len: 1``."""
    if "n_clips" not in cfg and "n_frames" in cfg:
        cfg = {**cfg, "n_clips": cfg["n_frames"], "clip_len": 1}
    return {k: cfg[k] for k in FRAME_KEYS}


def clip_indices(n_total: int, n_clips: int, clip_len: int) -> np.ndarray:
    """Decoded-frame indices ``[n_clips, clip_len + 1]``: run k starts ``clip_len // 2`` frames before
    the centre of segment k, kept inside the video. A video shorter than a run repeats its last
    frame (zero motion there)."""
    if n_total < 1 or n_clips < 1 or clip_len < 1:
        raise ValueError(f"need n_total, n_clips, clip_len >= 1, got {n_total}, {n_clips}, {clip_len}")
    centres = np.floor((np.arange(n_clips) + 0.5) * n_total / n_clips).astype(np.int64)
    starts = np.clip(centres - clip_len // 2, 0, max(n_total - clip_len - 1, 0))
    return np.minimum(starts[:, None] + np.arange(clip_len + 1), n_total - 1)


def keyframes(indices: np.ndarray) -> np.ndarray:
    """The spatial frame of each run: its middle frame (its first for ``clip_len: 1``)."""
    return indices[:, (indices.shape[1] - 1) // 2]


def _decode(path, cap, needed: set[int], height: int, width: int) -> tuple[dict[int, np.ndarray], int]:
    """One sequential pass: resized RGB frames for ``needed`` indices and the decoded frame count."""
    import cv2

    got: dict[int, np.ndarray] = {}
    i = 0
    while cap.grab():
        if i in needed:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None or bgr.size == 0:
                raise VideoReadError(path, f"frame {i} could not be decoded")
            if not got:
                _check_size(path, bgr)
            small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
            got[i] = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        i += 1
    return got, i


def _motion(a: np.ndarray, b: np.ndarray, motion: str, width: int) -> np.ndarray:
    """Motion from RGB frame ``a`` to its successor ``b``: [H, W, C] float32."""
    import cv2

    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    if motion == "diff":
        return ((gb.astype(np.float32) - ga.astype(np.float32)) / 255.0)[..., None]
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return (flow / float(width)).astype(np.float32)


def _check_args(n_clips: int, clip_len: int, height: int, width: int, motion: str) -> None:
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {sorted(MOTIONS)}, got {motion!r}")
    if min(n_clips, clip_len, height, width) < 1:
        raise ValueError(f"n_clips, clip_len, height and width must be >= 1, got {n_clips}, {clip_len}, "
                         f"{height}, {width}")


def read_clip(path: str | os.PathLike, *, n_clips: int, clip_len: int, height: int, width: int,
              motion: str = "diff") -> tuple[np.ndarray, np.ndarray]:
    """The sampled clip of a video file (see the sampling note above).

    Returns ``frames`` uint8 [n_clips, H, W, 3] RGB (each run's middle frame, resized with
    INTER_AREA) and ``motion`` float32 [n_clips * clip_len, H, W, C], run after run: a repeated
    frame (stutter, freeze) has zero motion. ``diff``: C=1 signed grey difference in [-1, 1];
    ``flow``: C=2 Farneback flow in units of the frame width. Raises VideoReadError for anything that
    does not decode, for frames under ``MIN_SIDE`` px and for a single decodable frame; a video of
    which under ``MIN_DECODED_SHARE`` of the announced frames decode is sampled over those and logged
    as a warning (see the module docstring).
    """
    _check_args(n_clips, clip_len, height, width, motion)
    cap = _open(path)
    try:
        n_plan = _meta(cap)["frames_meta"]
        if n_plan > 0:
            idx = clip_indices(n_plan, n_clips, clip_len)
            got, n_dec = _decode(path, cap, set(idx.ravel().tolist()), height, width)
        else:
            got, n_dec = {}, None
    finally:
        cap.release()
    if n_dec != n_plan:  # metadata lied or was absent: sample again on the true count
        if n_dec is None:
            cap = _open(path)
            try:
                n_dec = sum(1 for _ in iter(cap.grab, False))
            finally:
                cap.release()
        _check_decoded(path, n_dec, n_plan)
        idx = clip_indices(n_dec, n_clips, clip_len)
        cap = _open(path)
        try:
            got, n2 = _decode(path, cap, set(idx.ravel().tolist()), height, width)
        finally:
            cap.release()
        if n2 != n_dec:
            raise VideoReadError(path, f"decoding is not repeatable ({n_dec} then {n2} frames)")
        n_plan = n_dec
    _check_count(path, n_plan)
    return _assemble(got, idx, motion, width)


def _check_decoded(path, n_dec: int, n_announced: int) -> None:
    """Refuse a video with no or a single decodable frame; warn when under MIN_DECODED_SHARE of the
    frames its container announces decode (it is then sampled over those)."""
    if n_dec == 0:
        raise VideoReadError(path, "no decodable frame")
    _check_count(path, n_dec)
    if n_announced > 0 and n_dec < MIN_DECODED_SHARE * n_announced:
        LOGGER.warning(f"{path}: only {n_dec} of the {n_announced} frames the container announces decode "
                       f"(cut or damaged?); scored on those")


def read_frames(path: str | os.PathLike, *, height: int, width: int) -> np.ndarray:
    """Every decoded frame, resized (INTER_AREA) to height x width: uint8 [N, H, W, 3] RGB. For
    distorting a whole video in memory before :func:`sample_clip` (the evaluate stage's probes)."""
    cap = _open(path)
    try:
        n = _meta(cap)["frames_meta"]
        got, n_dec = _decode(path, cap, _AllFrames(), height, width)
    finally:
        cap.release()
    _check_decoded(path, n_dec, n)
    return np.stack([got[i] for i in range(n_dec)])


class _AllFrames:
    def __contains__(self, i) -> bool:
        return True


def sample_clip(frames: np.ndarray, *, n_clips: int, clip_len: int, height: int, width: int,
                motion: str = "diff") -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_clip` of a video already in memory (uint8 [N, h, w, 3] RGB, every frame in order):
    the same indices, resizing and motion, so a video distorted in memory is seen as from a file."""
    import cv2

    _check_args(n_clips, clip_len, height, width, motion)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 [N, H, W, 3] frames, got {frames.dtype}{list(frames.shape)}")
    _check_count("<frames>", len(frames))
    idx = clip_indices(len(frames), n_clips, clip_len)
    same = frames.shape[1:3] == (height, width)
    got = {i: frames[i] if same else cv2.resize(frames[i], (width, height), interpolation=cv2.INTER_AREA)
           for i in set(idx.ravel().tolist())}
    return _assemble(got, idx, motion, width)


def _assemble(got: dict[int, np.ndarray], idx: np.ndarray, motion: str,
              width: int) -> tuple[np.ndarray, np.ndarray]:
    frames = np.stack([got[int(i)] for i in keyframes(idx)])
    mot = [_motion(got[int(a)], got[int(b)], motion, width)
           for run in idx for a, b in zip(run[:-1], run[1:])]
    return frames, np.stack(mot).astype(np.float32)


# ------------------------------------------------------------------------------------------ cache

class FrameCache:
    """Decode each video once per sampling setting; later ``get`` calls load ``.npy`` files.

    The key covers the absolute path, size and mtime of the video and the sampling parameters, so
    an edited video or a new setting decodes again. An entry is three files: ``<key>.motion.npy``,
    ``<key>.frames.npy`` and ``<key>.json`` (the sha1 of each array's bytes), each written to a temp
    name then renamed, the ``.json`` last, so a present ``.json`` means a complete entry. Loading
    checks shape, dtype and checksum; an entry that fails (zero-byte or cut file, wrong shape or
    content, a folder in the way) is decoded again and rewritten, logged once per entry; one without
    its ``.json`` (cut short, or from before checksums) is a plain miss. A cache that cannot be
    written is used read-through (logged).
    """

    def __init__(self, cache_dir: str | os.PathLike, *, n_clips: int, clip_len: int, height: int, width: int,
                 motion: str = "diff"):
        _check_args(n_clips, clip_len, height, width, motion)
        self.cache_dir = Path(cache_dir)
        self.n_clips, self.clip_len = n_clips, clip_len
        self.height, self.width, self.motion = height, width, motion

    def key(self, path: str | os.PathLike) -> str:
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError:
            raise VideoReadError(p, "file not found") from None
        text = f"{p}|{st.st_size}|{st.st_mtime_ns}|{self.n_clips}x{self.clip_len}|{self.height}|{self.width}|{self.motion}"
        return hashlib.sha1(text.encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        d = self.cache_dir / key[:2]
        return d / f"{key}.frames.npy", d / f"{key}.motion.npy", d / f"{key}.json"

    def _shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        k, h, w = self.n_clips, self.height, self.width
        return (k, h, w, 3), (k * self.clip_len, h, w, MOTIONS[self.motion])

    def cached(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` has a complete cache entry (a stat, no loading or checking)."""
        return self._paths(self.key(path))[2].is_file()

    def load(self, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached pair, or None when absent or bad (then it is decoded again)."""
        return self._load_key(self.key(path))

    def _load_key(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        fpath, mpath, jpath = self._paths(key)
        if not jpath.exists() and not jpath.is_symlink():
            return None  # a miss (or an entry cut short / from before checksums: rewritten silently)
        try:
            if not jpath.is_file():
                raise ValueError(f"{jpath.name} is not a file")
            meta = json.loads(jpath.read_text())
            frames = np.load(fpath, allow_pickle=False)
            motion = np.load(mpath, allow_pickle=False)
            fshape, mshape = self._shapes()
            if frames.shape != fshape or frames.dtype != np.uint8:
                raise ValueError(f"frames {frames.dtype}{list(frames.shape)}, expected uint8{list(fshape)}")
            if motion.shape != mshape or motion.dtype != np.float32:
                raise ValueError(f"motion {motion.dtype}{list(motion.shape)}, expected float32{list(mshape)}")
            if meta.get("frames_sha1") != _sha1(frames) or meta.get("motion_sha1") != _sha1(motion):
                raise ValueError("checksum mismatch")
        except Exception as e:  # noqa: BLE001 - a cache read must never fail a run: rebuild the entry
            _warn_once(key, f"frame cache: bad entry {fpath.parent / key}.* ({_short(e)}); decoding again")
            self._discard(key)
            return None
        return frames, motion

    def _discard(self, key: str) -> None:
        for p in self._paths(key):
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
            except OSError:
                pass

    def get(self, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        key = self.key(path)  # once: it stats (and resolves) the video
        hit = self._load_key(key)
        if hit is not None:
            return hit
        frames, motion = read_clip(path, n_clips=self.n_clips, clip_len=self.clip_len, height=self.height,
                                   width=self.width, motion=self.motion)
        fpath, mpath, jpath = self._paths(key)
        try:
            fpath.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic(mpath, motion)
            _save_atomic(fpath, frames)
            meta = {"frames_sha1": _sha1(frames), "motion_sha1": _sha1(motion), "video": str(Path(path))}
            _write_atomic(jpath, json.dumps(meta).encode())
        except OSError as e:
            _warn_once(key, f"frame cache: cannot write {fpath.parent / key}.* ({_short(e)}); not cached")
        return frames, motion

    def fill(self, paths: Iterable[str | os.PathLike], *, skip_errors: bool = False,
             on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Decode every path not cached yet. Returns ``{"cached", "decoded", "failed": [(path, reason)]}``.

        ``on_progress(i, n)`` is called after each video (default: a stderr line every ~10%).
        """
        paths = list(paths)
        report = on_progress or _stderr_progress("frame cache", len(paths))
        out: dict = {"cached": 0, "decoded": 0, "failed": []}
        for i, p in enumerate(paths, 1):
            try:
                if self.cached(p):  # existence only: loading every cached clip just to count it was slow
                    out["cached"] += 1
                else:
                    self.get(p)
                    out["decoded"] += 1
            except VideoReadError as e:
                if not skip_errors:
                    raise
                out["failed"].append((str(p), e.problem))
            report(i, len(paths))
        return out


def _sha1(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).data).hexdigest()


def _short(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]


_WARNED: set[str] = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        LOGGER.warning(msg)


def _save_atomic(target: Path, array: np.ndarray) -> None:
    _write_atomic(target, array)


def _write_atomic(target: Path, data: np.ndarray | bytes) -> None:
    """``data`` (an array, saved as .npy, or bytes) through :func:`models.common.io.atomic_file`;
    something in the way (a folder, a stale file) is removed first."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    with atomic_file(target) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "wb") as f:
                np.save(f, data)


def _stderr_progress(desc: str, n: int) -> Callable[[int, int], None]:
    step, t0 = max(1, n // 10), time.perf_counter()

    def report(i: int, total: int) -> None:
        if i % step == 0 or i == total:
            print(f"[mokuflow] {desc}: {i}/{total} ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr, flush=True)
    return report
