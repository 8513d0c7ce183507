"""Graded video distortions, one definition for the synthetic data, the evaluate stage's per-kind
probes and the real-video benchmark (benchmarks/vqa_distortion_sensitivity.py).

Each kind takes a severity in [0, 1] (0: untouched) and a numpy Generator (noise, drop and freeze
positions), so the same generator at growing severities gives a graded series of one video.

Spatial kinds act on each frame: ``blur``, ``noise``, ``jpeg``, ``scale`` (down-up sampling),
``exposure``. Capture-time temporal kinds: ``flicker`` (luminance jumps), ``shake`` (camera jitter).
Delivery-time temporal kinds remap which frame is shown at each output frame, at the video's own
frame rate (so the stream keeps its length and nominal fps, as an upconverted or stalled upload):

- ``fps``: a low frame rate shown as duplicates, each frame shown ``f`` times, f = 2 ... 8
  (regular duplicates at 1/2 ... 1/8 of the frame rate);
- ``drops``: irregular drops, each a repeat of the previous frame;
- ``freeze``: one to three freezes that hold a frame, then jump to where the video is by then
  (playback without catch-up), 8 % ... 40 % of the video frozen;
- ``judder``: frame-rate conversion from a lower source rate (0.8 ... 0.4 of the frame rate) by
  nearest frame: duplicates in an uneven cadence (3:2 pulldown at 0.4).

cv2 / numpy are imported inside functions (cheap module import).
"""
from __future__ import annotations

import math

SPATIAL = ("blur", "noise", "jpeg", "scale", "exposure")
CAPTURE = ("flicker", "shake")
DELIVERY = ("fps", "drops", "freeze", "judder")
KINDS = SPATIAL + CAPTURE + DELIVERY
TEMPORAL = CAPTURE + DELIVERY


def fps_factor(severity: float) -> int:
    """How many times each frame is shown under ``fps`` at this severity: 1 (none) ... 8."""
    return 1 + int(round(7 * max(0.0, min(1.0, severity))))


def frame_index(kind: str, n: int, severity: float, rng):
    """int64 [n]: the source frame shown at each output frame under one delivery kind."""
    import numpy as np

    idx = np.arange(n)
    if severity <= 0 or n < 2:
        return idx
    if kind == "fps":
        f = fps_factor(severity)
        return (idx // f) * f
    if kind == "drops":
        drop = rng.random(n) < 0.7 * severity
        drop[0] = False
        if not drop.any():
            drop[int(rng.integers(1, n))] = True
        for t in range(1, n):
            if drop[t]:
                idx[t] = idx[t - 1]
        return idx
    if kind == "freeze":
        total = max(1, round(n * (0.08 + 0.32 * severity)))
        k = int(rng.integers(1, 4))
        cuts = np.sort(rng.uniform(0, 1, k - 1)) if k > 1 else np.zeros(0)
        lengths = np.diff(np.concatenate([[0.0], cuts, [1.0]])) * total
        # evenly spread freeze starts, jittered: freezes neither overlap nor run off the end
        slot = n / k
        for j, length in enumerate(lengths):
            ln = max(1, int(round(length)))  # frames held after the frozen one
            lo = int(j * slot)
            start = min(n - 2, lo + int(rng.integers(0, max(1, int(slot) - ln))))
            idx[start + 1:start + 1 + ln] = start
        return idx
    if kind == "judder":
        ratio = 1.0 / (1.25 + 1.25 * severity)  # source rate / output rate
        src = np.floor(idx * ratio)  # the source frame on screen at output frame t
        return np.minimum(np.round(src / ratio).astype(np.int64), n - 1)
    raise ValueError(f"not a delivery distortion: {kind!r} (one of {DELIVERY})")


def spatial(img, sev: dict[str, float], rng):
    """One float RGB frame -> uint8, through the capture chain: optics blur, sensor down-up
    scaling, noise, then JPEG coding."""
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    if sev.get("blur", 0) > 0:
        img = cv2.GaussianBlur(img, (0, 0), 0.3 + 2.7 * sev["blur"])
    if sev.get("scale", 0) > 0:
        f = 1 + 4 * sev["scale"]
        small = cv2.resize(img, (max(2, round(w / f)), max(2, round(h / f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if sev.get("noise", 0) > 0:
        img = img + rng.normal(0, 30 * sev["noise"], img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if sev.get("jpeg", 0) > 0:
        q = int(round(95 - 88 * sev["jpeg"]))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


def distort(frames, sev: dict[str, float], rng):
    """Apply the severities (kind -> [0, 1]; missing kinds are 0) to RGB frames [T, H, W, 3] (uint8 or
    float in [0, 255]): uint8 [T, H, W, 3].

    Order follows a capture and delivery chain: shake, exposure / flicker, the spatial chain per frame,
    then the delivery remaps (fps, judder, drops, freeze) composed in that order.
    """
    import cv2
    import numpy as np

    unknown = set(sev) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown distortion kinds {sorted(unknown)} (known: {KINDS})")
    x = np.asarray(frames, dtype=np.float32).copy()
    t_len, h, w = x.shape[:3]
    if sev.get("shake", 0) > 0:
        for t in range(t_len):
            dx, dy = rng.normal(0, 4.0 * sev["shake"], 2)
            x[t] = cv2.warpAffine(x[t], np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                                  borderMode=cv2.BORDER_REFLECT)
    if sev.get("exposure", 0) > 0:
        gamma = math.exp(rng.choice([-1, 1]) * 1.2 * sev["exposure"])
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma
    if sev.get("flicker", 0) > 0:
        x = x * (1 + 0.35 * sev["flicker"] * rng.uniform(-1, 1, (t_len, 1, 1, 1))).astype(np.float32)
    out = np.empty(x.shape, np.uint8)
    for t in range(t_len):
        out[t] = spatial(x[t], sev, rng)
    idx = np.arange(t_len)
    for kind in ("fps", "judder", "drops", "freeze"):
        if sev.get(kind, 0) > 0:
            idx = idx[frame_index(kind, t_len, sev[kind], rng)]
    return out[idx]


def distort_one(frames, kind: str, severity: float, rng):
    """One kind at one severity (the probes' graded series)."""
    if kind not in KINDS:
        raise ValueError(f"unknown distortion kind {kind!r} (known: {KINDS})")
    return distort(frames, {kind: float(severity)}, rng)
