"""Synthetic videos for object removal with known truth: the clean background behind every object.

A video is a camera (pan, zoom, hand-held shake) moving over a large procedural canvas: a fractal
colour texture with structure laid over it (a sky-to-ground gradient, bands of stripes at an angle,
translucent blobs, straight bars), so a hole cannot be filled by smoothing its border. Over it move
1-2 foreground objects: textured, shaded, star-shaped blobs that deform (their outline's harmonics
oscillate), rotate, drift along curved paths, may leave the frame partly and, when there are two,
cross so that the later one hides the earlier.

The paper's idea is that the hole is filled from other frames: so each object moves relative to the
background by more than its own size over the clip (speed drawn from that bound), and a trajectory
is re-drawn when less than ``MIN_FILLABLE`` of the hole pixels are seen, uncovered and in view, in
some other frame. The share reached is recorded per video (``fillable``); a per-frame inpainter
(OpenCV Telea) can only smear the hole's border, a temporal one can copy the truth.

Output (DAVIS layout, plus the truth)::

    JPEGImages/<seq>/00000.jpg     frames (JPEG quality 95, 4:4:4)
    Annotations/<seq>/00000.png    palette PNG: 0 background, 1.. objects (the visible part of each)
    Scribbles/<seq>/001.json       round 1 of the simulated user (models.inpainting.robot)
    Backgrounds/<seq>/00000.png    the clean background frame (lossless)
    ImageSets/all.txt              sequence names, one a line
    meta.json                      per sequence: objects, fillable share, hole share, camera motion

Truth is exact before JPEG: a frame equals its background wherever its annotation is 0 (objects have
hard edges; :func:`render_video` returns the arrays). Deterministic by seed, each video from its own
stream ``(seed, index)``. numpy at import; cv2 and the robot inside functions (cheap module import).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

MIN_FILLABLE = 0.85  # share of hole pixels seen elsewhere in the video below which a path is re-drawn
JPEG_QUALITY = 95


# ------------------------------------------------------------------------------------ textures

def _fractal(rng, h: int, w: int, *, octaves: int = 5, persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: coarse random grids upsampled bicubically, finer ones weaker."""
    import cv2

    out, amp, total = np.zeros((h, w), np.float32), 1.0, 0.0
    for k in range(octaves):
        gh, gw = max(2, math.ceil(h / 2 ** (octaves - k))), max(2, math.ceil(w / 2 ** (octaves - k)))
        out += amp * cv2.resize(rng.random((gh, gw), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _palette_texture(rng, h: int, w: int, *, detail: float) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 255]: three random colours blended by two fractal fields."""
    f1 = _fractal(rng, h, w, persistence=0.4 + 0.35 * detail)[..., None]
    f2 = _fractal(rng, h, w, octaves=3, persistence=0.6)[..., None]
    c0, c1, c2 = (rng.uniform(20, 235, 3).astype(np.float32) for _ in range(3))
    return (c0 * (1 - f1) + c1 * f1) * (0.75 + 0.25 * f2) + 0.25 * c2 * (1 - f2) * 0.5


def _stripes(rng, h: int, w: int) -> np.ndarray:
    """A stripe field in [0, 1] at a random angle and period (fences, planks, tiles)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, math.pi)
    period = rng.uniform(5, 14)
    phase = (xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period
    return (0.5 + 0.5 * np.sin(phase)) ** 2


def background_canvas(rng, h: int, w: int) -> np.ndarray:
    """A natural-looking RGB canvas float32 [H, W, 3]: texture, horizon gradient, stripes, blobs, bars."""
    import cv2

    img = _palette_texture(rng, h, w, detail=float(rng.uniform(0.3, 1.0)))
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.25, 0.6)
    sky = rng.uniform(120, 250, 3).astype(np.float32)
    t = np.clip((horizon - yy) / 0.15 + 0.5, 0, 1)  # soft horizon: sky above, textured ground below
    img = img * (1 - 0.7 * t) + 0.7 * t * (sky * (0.8 + 0.2 * yy / max(horizon, 1e-3)))
    for _ in range(int(rng.integers(1, 3))):  # bands of stripes inside a random rotated rectangle
        band = np.zeros((h, w), np.float32)
        c = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        cv2.fillPoly(band, [cv2.boxPoints((c, (rng.uniform(0.3, 0.9) * w, rng.uniform(0.15, 0.5) * h),
                                            rng.uniform(0, 180))).astype(np.int32)], 1.0)
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        a = (band * _stripes(rng, h, w) * rng.uniform(0.5, 0.9))[..., None]
        img = img * (1 - a) + colour * a
    for _ in range(int(rng.integers(3, 8))):  # translucent blobs: bushes, stones, shadows
        blob = np.zeros((h, w), np.float32)
        cv2.ellipse(blob, (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
                    (int(rng.uniform(3, 0.15 * w)), int(rng.uniform(3, 0.15 * h))), rng.uniform(0, 180), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), 1.2)[..., None] * rng.uniform(0.4, 0.8)
        img = img * (1 - blob) + rng.uniform(0, 255, 3).astype(np.float32) * blob
    for _ in range(int(rng.integers(2, 5))):  # straight bars: poles, edges of buildings
        p0 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        p1 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.line(img, p0, p1, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.float32)


# -------------------------------------------------------------------------------------- camera

def _camera(rng, n_frames: int, h: int, w: int) -> np.ndarray:
    """Per-frame affine maps frame pixel → canvas pixel, [T, 2, 3], around canvas origin (0, 0) = frame centre."""
    pan = rng.uniform(-1, 1, 2) * rng.uniform(0.3, 1.6)  # px / frame
    zoom = rng.uniform(-0.15, 0.15)  # relative change of scale over the clip
    shake = rng.normal(0, rng.uniform(0.1, 0.7), (n_frames, 2))
    rot = rng.uniform(-0.03, 0.03)  # radians over the clip
    maps = np.zeros((n_frames, 2, 3), np.float64)
    for t in range(n_frames):
        s = 1.0 + zoom * t / max(1, n_frames - 1)
        a = rot * t / max(1, n_frames - 1)
        r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        centre = pan * (t - (n_frames - 1) / 2) + shake[t]
        maps[t, :, :2] = r
        maps[t, :, 2] = centre - r @ np.array([(w - 1) / 2, (h - 1) / 2])
    return maps


def _canvas_extent(maps: np.ndarray, h: int, w: int) -> tuple[np.ndarray, int, int]:
    """Shift every map so all frames land inside a canvas with a 3 px border; the canvas size."""
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64).T
    pts = np.concatenate([m @ corners for m in maps], axis=1)
    lo = pts.min(axis=1) - 3
    maps = maps.copy()
    maps[:, :, 2] -= lo
    size = np.ceil(pts.max(axis=1) - lo + 3).astype(int)
    return maps, int(size[1]), int(size[0])


# ------------------------------------------------------------------------------------- objects

def _make_object(rng, h: int, w: int, n_frames: int, pan: np.ndarray, crossing: dict | None) -> dict:
    """Shape, texture and a curved path fast enough relative to the background to reveal what it hides."""
    radius = float(rng.uniform(0.17, 0.27) * min(h, w))
    size = int(2 * radius * 1.6) | 1
    harmonics = [(k, rng.uniform(0.05, 0.22), rng.uniform(0, 0.12), rng.uniform(0, 2 * math.pi),
                  rng.uniform(0.3, 0.9)) for k in (2, 3, 4)]
    texture = _palette_texture(rng, size, size, detail=float(rng.uniform(0.5, 1.0)))
    if rng.random() < 0.5:  # a striped skin: its own structure, moving with the object
        s = _stripes(rng, size, size)[..., None]
        texture = texture * (1 - 0.6 * s) + 0.6 * s * rng.uniform(0, 255, 3).astype(np.float32)
    # speed relative to the background: cross at least 1.3 diameters over the clip
    need = 1.3 * 2 * radius / max(1, n_frames - 1)
    speed = float(rng.uniform(need, 1.5 * need))
    ang = rng.uniform(0, 2 * math.pi)
    vel = speed * np.array([math.cos(ang), math.sin(ang)]) - pan  # in frame coordinates (the camera pans)
    mid = (n_frames - 1) / 2
    if crossing is None:
        # start so that the path's middle is near the centre; it may well leave the frame at an end
        centre = np.array([w / 2, h / 2]) + rng.uniform(-0.2, 0.2, 2) * (w, h)
    else:  # cross the first object around the middle of the clip: one hides the other there
        centre = crossing["pos"](mid) + rng.uniform(-0.3, 0.3, 2) * radius
    curve = rng.normal(0, 0.08, 2) * speed
    return {"radius": radius, "size": size, "harmonics": harmonics, "texture": texture,
            "pos": lambda t, c=centre, v=vel, k=curve, m=mid: c + v * (t - m) + k * (t - m) ** 2 / 2,
            "spin": rng.uniform(-0.08, 0.08), "angle0": rng.uniform(0, 2 * math.pi),
            "breath": rng.uniform(0.0, 0.12), "breath_w": rng.uniform(0.3, 0.8)}


def _render_object(obj: dict, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The object at time t in frame coordinates: RGB float32 [H, W, 3] and its hard mask bool [H, W]."""
    import cv2

    cx, cy = obj["pos"](t)
    a = obj["angle0"] + obj["spin"] * t
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx) - a
    r = np.hypot(dx, dy)
    outline = 1.0
    for k, amp, amp_t, phase, speed in obj["harmonics"]:  # deformation: each harmonic breathes
        outline = outline + (amp + amp_t * math.sin(speed * t + phase)) * np.cos(k * theta + phase)
    scale = 1.0 + obj["breath"] * math.sin(obj["breath_w"] * t)
    rr = obj["radius"] * scale * outline
    mask = r <= rr
    # texture in the object's own frame (it rotates with it), shaded darker towards the rim
    ca, sa = math.cos(a), math.sin(a)
    c = (obj["size"] - 1) / 2
    u = (ca * dx + sa * dy) / scale + c
    v = (-sa * dx + ca * dy) / scale + c
    rgb = cv2.remap(obj["texture"], u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT)
    shade = 0.7 + 0.3 * np.clip(1 - (r / np.maximum(rr, 1e-3)) ** 2, 0, 1)
    return rgb * shade[..., None], mask


# --------------------------------------------------------------------------------------- video

def render_video(rng, *, n_frames: int, height: int, width: int, n_objects: int | None = None) -> dict:
    """One video's arrays: ``frames`` uint8 [T, H, W, 3], ``backgrounds`` uint8 (same), ``labels``
    uint8 [T, H, W] (0 background, 1.. objects, the top one where they overlap), ``fillable`` (share
    of hole pixels seen uncovered in another frame), ``camera`` [T, 2, 3] (frame pixel → canvas)."""
    import cv2

    h, w, n = int(height), int(width), int(n_frames)
    maps, ch, cw = _canvas_extent(_camera(rng, n, h, w), h, w)
    canvas = background_canvas(rng, ch, cw)
    pan = (maps[-1, :, 2] - maps[0, :, 2]) / max(1, n - 1)  # mean canvas shift per frame
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    bgs = np.stack([cv2.warpAffine(canvas, m.astype(np.float32), (w, h), flags=flags,
                                   borderMode=cv2.BORDER_REFLECT) for m in maps])
    k = int(n_objects) if n_objects is not None else int(rng.integers(1, 3))
    for _attempt in range(6):
        objects, labels, frames = _place_objects(rng, k, n, h, w, pan, bgs)
        fillable = _fillable(labels, maps, ch, cw)
        if fillable >= MIN_FILLABLE:
            break
    return {"frames": np.clip(np.rint(frames), 0, 255).astype(np.uint8),
            "backgrounds": np.clip(np.rint(bgs), 0, 255).astype(np.uint8),
            "labels": labels, "fillable": fillable, "camera": maps, "n_objects": k}


def _place_objects(rng, k: int, n: int, h: int, w: int, pan: np.ndarray, bgs: np.ndarray):
    objects: list[dict] = []
    for _ in range(k):
        objects.append(_make_object(rng, h, w, n, pan, objects[0] if objects else None))
    labels = np.zeros((n, h, w), np.uint8)
    frames = bgs.copy()
    for t in range(n):
        for i, obj in enumerate(objects):  # painted in order: the later object hides the earlier
            rgb, m = _render_object(obj, t, h, w)
            frames[t][m] = rgb[m]
            labels[t][m] = i + 1
    return objects, labels, frames


def _fillable(labels: np.ndarray, maps: np.ndarray, ch: int, cw: int) -> float:
    """Share of hole pixels whose scene point is in view and uncovered in at least one other frame."""
    import cv2

    n, h, w = labels.shape
    seen = []
    for t in range(n):  # canvas map of what frame t shows of the background
        clear = (labels[t] == 0).astype(np.uint8)
        seen.append(cv2.warpAffine(clear, maps[t].astype(np.float32), (cw, ch), flags=cv2.INTER_NEAREST,
                                   borderValue=0))
    seen = np.stack(seen).astype(np.int32)
    total = seen.sum(axis=0)
    hole_px, filled = 0, 0
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    for t in range(n):
        hole = labels[t] > 0
        if not hole.any():
            continue
        others = cv2.warpAffine((total - seen[t]).astype(np.float32), maps[t].astype(np.float32), (w, h), flags=flags)
        hole_px += int(hole.sum())
        filled += int((others[hole] > 0).sum())
    return 1.0 if hole_px == 0 else filled / hole_px


# ----------------------------------------------------------------------------------- the folder

def generate(out_dir, *, seed: int, n_videos: int = 24, n_frames: int = 12, height: int = 64, width: int = 96,
             progress: Callable[[Iterable, str], Iterable] | None = None) -> dict:
    """Write ``n_videos`` sequences in the DAVIS layout (plus ``Backgrounds/``) into ``out_dir``.

    Returns the summary also written as ``meta.json``: ``{"seed", "n_frames", "height", "width",
    "sequences": {seq: {"objects", "fillable", "hole_share", "scribbled_frame"}}, "fillable"}``.
    """
    import cv2

    from models.inpainting.robot import Robot
    from models.inpainting.scribbles import save_scribbles
    from tasks.inpainting.davis import write_palette_png

    if n_frames < 2 or height < 16 or width < 16 or n_videos < 1:
        raise ValueError(f"need n_videos >= 1, n_frames >= 2 and frames of at least 16x16 px, got "
                         f"{n_videos} videos of {n_frames} frames {width}x{height}")
    out = Path(out_dir)
    wrap = progress or (lambda items, desc: items)
    summary = {"seed": int(seed), "n_frames": int(n_frames), "height": int(height), "width": int(width),
               "sequences": {}}
    names = []
    for i in wrap(range(int(n_videos)), "synthetic inpainting videos"):
        seq = f"synth{i:04d}"
        v = render_video(np.random.default_rng([int(seed), i]), n_frames=n_frames, height=height, width=width)
        for sub in ("JPEGImages", "Annotations", "Backgrounds", "Scribbles"):
            (out / sub / seq).mkdir(parents=True, exist_ok=True)
        for t in range(n_frames):
            # 4:4:4: no chroma subsampling, which would bleed object colour into the background truth
            _imwrite(out / "JPEGImages" / seq / f"{t:05d}.jpg", v["frames"][t], [
                cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
            _imwrite(out / "Backgrounds" / seq / f"{t:05d}.png", v["backgrounds"][t], [])
            write_palette_png(out / "Annotations" / seq / f"{t:05d}.png", v["labels"][t])
        scribbles = Robot(seed=int(seed) + i).first(v["labels"], sequence=seq)
        save_scribbles(out / "Scribbles" / seq / "001.json", scribbles)
        summary["sequences"][seq] = {
            "objects": v["n_objects"], "fillable": round(v["fillable"], 4),
            "hole_share": round(float((v["labels"] > 0).mean()), 4),
            "scribbled_frame": next(t for t, f in enumerate(scribbles["scribbles"]) if f)}
        names.append(seq)
    (out / "ImageSets").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "all.txt").write_text("".join(f"{s}\n" for s in names), encoding="utf-8")
    summary["fillable"] = round(float(np.mean([s["fillable"] for s in summary["sequences"].values()])), 4)
    (out / "meta.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _imwrite(path: Path, rgb: np.ndarray, options: list) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), options):
        raise OSError(f"{path}: could not write the image")
