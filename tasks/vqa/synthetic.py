"""Synthetic VQA data with known ground truth: textured moving scenes, graded distortions, crowd raters.

Every content is a camera panning over a multi-octave fractal canvas with several textured objects
moving over it (bouncing inside the frame, so a 5 s video keeps its motion to the end). Each version
of a content gets a random mix of the kinds in :mod:`tasks.vqa.distortions`: spatial (blur, noise,
JPEG, down-up scaling, exposure), capture-time temporal (flicker, shake) and delivery-time temporal
(a low frame rate shown as duplicates, irregular drops, freezes, frame-rate-conversion judder). Its
true quality is a monotone, nonlinear function of the severities whose visibility depends on the
content (blur hurts textured scenes more, noise is masked by texture, duplicates and freezes are only
visible with motion, ...), so it is
learnable from pixels but not a linear function of any one hand-crafted feature. Simulated raters
then score the videos with per-rater bias and inconsistency, per-content ambiguity, careless raters
and missing ratings (the model SUREAL's MLE inverts).

Deterministic for a given seed; cv2 / numpy are imported inside functions (cheap module import).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.vqa.distortions import DELIVERY, distort
from tasks.vqa.distortions import KINDS as DISTORTIONS

__all__ = ["DISTORTIONS", "distort", "draw_severities", "generate", "make_content", "simulate_ratings",
           "true_quality", "write_mp4"]

# Per-distortion weight and exponent of the severity in the impairment: unequal and nonlinear. A
# duplicate-heavy video loses quality as much as a blurred one (fps at 1/8 of the frame rate is
# about as bad as heavy blur on a moving scene): viewers see judder and stalls first.
_WEIGHT = {"blur": 1.0, "noise": 0.8, "jpeg": 0.9, "scale": 0.9, "exposure": 0.7,
           "flicker": 0.6, "shake": 0.6, "fps": 1.1, "drops": 0.9, "freeze": 1.0, "judder": 0.8}
_POWER = {"blur": 1.3, "noise": 0.9, "jpeg": 1.6, "scale": 1.2, "exposure": 1.4,
          "flicker": 1.1, "shake": 1.2, "fps": 0.9, "drops": 1.0, "freeze": 1.0, "judder": 1.1}


# ------------------------------------------------------------------------------------- content

def _fractal(rng, h: int, w: int, *, octaves: int = 6, persistence: float = 0.5):
    """Multi-octave value noise in [0, 1]: coarse grids upsampled bicubically, finer ones weaker."""
    import cv2
    import numpy as np

    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        gh, gw = max(2, math.ceil(h / 2 ** (octaves - k))), max(2, math.ceil(w / 2 ** (octaves - k)))
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _colorize(rng, field, field2):
    """Two random colours blended by ``field``, tinted by a second field: natural-looking RGB."""
    import numpy as np

    c0, c1, c2 = (rng.uniform(0, 255, 3).astype(np.float32) for _ in range(3))
    f = field[..., None]
    img = c0 * (1 - f) + c1 * f
    return img * 0.8 + 0.2 * c2 * field2[..., None]


def _texture(rng, h: int, w: int, detail: float):
    persistence = 0.35 + 0.4 * detail  # more weight on fine octaves = more texture
    return _colorize(rng, _fractal(rng, h, w, persistence=persistence),
                     _fractal(rng, h, w, octaves=4, persistence=0.6))


def make_content(rng, *, n_frames: int, height: int, width: int) -> tuple:
    """Clean frames float32 [T, H, W, 3] RGB in [0, 255] and the content's traits.

    traits: ``texture`` (detail, 0..1), ``motion`` (mean speed, 0..1), ``brightness`` (0..1).
    """
    import cv2
    import numpy as np

    detail = float(rng.uniform(0, 1))
    pan = rng.uniform(-1, 1, 2) * rng.uniform(0.1, 1.2)  # camera px / frame
    margin = int(math.ceil(np.abs(pan).max() * n_frames)) + 4
    canvas = _texture(rng, height + 2 * margin, width + 2 * margin, detail)
    objects = [_make_object(rng, height, width, n_frames) for _ in range(int(rng.integers(2, 5)))]
    frames = np.empty((n_frames, height, width, 3), np.float32)
    for t in range(n_frames):
        cx = margin + width / 2 + pan[0] * (t - n_frames / 2)
        cy = margin + height / 2 + pan[1] * (t - n_frames / 2)
        frame = cv2.getRectSubPix(canvas, (width, height), (cx, cy))
        for obj in objects:
            frame = _paste(frame, obj, t)
        frames[t] = frame
    speed = np.hypot(*pan) + np.mean([np.hypot(*o["vel"]) for o in objects])
    traits = {"texture": detail, "motion": float(min(speed / 3.0, 1.0)),
              "brightness": float(frames.mean() / 255.0)}
    return np.clip(frames, 0, 255), traits


def _make_object(rng, height: int, width: int, n_frames: int) -> dict:
    import cv2
    import numpy as np

    size = int(rng.uniform(0.25, 0.5) * min(height, width)) | 1
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) * 2 - 1
    if rng.random() < 0.5:
        shape = (xx ** 2 + yy ** 2) <= 1.0
    else:
        shape = (np.abs(xx) <= rng.uniform(0.5, 1)) & (np.abs(yy) <= rng.uniform(0.5, 1))
    alpha = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), 1.0)  # soft, anti-aliased edge
    return {"rgb": _texture(rng, size, size, float(rng.uniform(0, 1))), "alpha": alpha,
            "start": rng.uniform(0, 1, 2) * (width, height), "vel": rng.uniform(-2.5, 2.5, 2)}


def _paste(frame, obj: dict, t: int):
    """Alpha-composite the object at its position at time t (sub-pixel, via an affine shift); its
    centre bounces off the frame's edges."""
    import cv2
    import numpy as np

    h, w = frame.shape[:2]
    size = obj["alpha"].shape[0]
    span = np.array([w, h], np.float64)
    x, y = span - np.abs(np.mod(obj["start"] + obj["vel"] * t, 2 * span) - span) - size / 2
    m = np.float32([[1, 0, x], [0, 1, y]])
    rgb = cv2.warpAffine(obj["rgb"], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpAffine(obj["alpha"], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return frame * (1 - a[..., None]) + rgb * a[..., None]


# --------------------------------------------------------------------------------- distortions

def draw_severities(rng) -> dict[str, float]:
    """A random mix: 0-3 active distortions with severities in [0.15, 1], the rest 0. Half the
    picks are delivery-time temporal kinds (fps, drops, freeze, judder), which otherwise would be
    4 of 11 and rarely seen alone."""
    import numpy as np

    sev = dict.fromkeys(DISTORTIONS, 0.0)
    k = int(rng.choice(4, p=[0.15, 0.35, 0.3, 0.2]))
    p = np.array([0.5 / len(DELIVERY) if d in DELIVERY else 0.5 / (len(DISTORTIONS) - len(DELIVERY))
                  for d in DISTORTIONS])
    for name in rng.choice(DISTORTIONS, size=k, replace=False, p=p):
        sev[str(name)] = float(np.round(rng.uniform(0.15, 1.0), 3))
    return sev


def true_quality(sev: dict[str, float], traits: dict[str, float], base: float) -> float:
    """Quality in [1, 5]: decreasing in every severity, with content-dependent visibility."""
    tex, mot = traits["texture"], traits["motion"]
    # temporal delivery faults are only visible with motion; a freeze also stalls the story
    vis = {"blur": 0.4 + 1.2 * tex, "noise": 1.2 - 0.6 * tex, "jpeg": 1.0 - 0.4 * tex,
           "scale": 0.4 + 1.0 * tex, "exposure": 0.8 + 0.4 * abs(traits["brightness"] - 0.5) * 2,
           "flicker": 1.0, "shake": 0.6 + 0.6 * (1 - mot), "fps": 0.4 + 1.2 * mot,
           "drops": 0.3 + 1.3 * mot, "freeze": 0.6 + 0.8 * mot, "judder": 0.3 + 1.2 * mot}
    d = [_WEIGHT[k] * vis[k] * sev[k] ** _POWER[k] for k in DISTORTIONS]
    # between a max (the worst distortion dominates) and a sum (they add up)
    impairment = 0.6 * math.sqrt(sum(v * v for v in d)) + 0.4 * sum(d)
    q = 1 + (base - 1) * math.exp(-0.9 * impairment ** 1.3)
    return float(min(5.0, max(1.0, q)))


# ---------------------------------------------------------------------------------- generation

def write_mp4(path: str | Path, frames, fps: float) -> None:
    """uint8 RGB [T, H, W, 3] -> mp4 ('mp4v')."""
    import cv2

    t_len, h, w = frames.shape[:3]
    if h % 2 or w % 2:  # the encoder would silently crop a row / column
        raise ValueError(f"{path}: mp4v needs even frame sizes, got {w}x{h}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open an mp4v writer")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def generate(out_dir: str | Path, *, seed: int, n_contents: int, versions_per_content: int,
             n_frames: int, height: int, width: int, fps: float,
             progress: Callable[[Iterable, str], Iterable] | None = None):
    """Write ``<out_dir>/<video_id>.mp4`` for every version; returns the truth DataFrame.

    Columns: video_id, content_id, true_quality, texture, motion, brightness, sev_<distortion>.
    """
    import numpy as np
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = range(n_contents)
    rows = []
    for c in (progress(contents, "synthetic videos") if progress else contents):
        crng = np.random.default_rng([seed, c])
        clean, traits = make_content(crng, n_frames=n_frames, height=height, width=width)
        base = float(crng.uniform(4.4, 4.9))  # pristine quality varies a little by content
        for v in range(versions_per_content):
            vrng = np.random.default_rng([seed, c, v])
            sev = draw_severities(vrng)
            video_id = f"c{c:03d}_v{v:02d}"
            write_mp4(out_dir / f"{video_id}.mp4", distort(clean, sev, vrng), fps)
            rows.append({"video_id": video_id, "content_id": f"c{c:03d}",
                         "true_quality": round(true_quality(sev, traits, base), 4),
                         **{k: round(val, 4) for k, val in traits.items()},
                         **{f"sev_{k}": val for k, val in sev.items()}})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- raters

def simulate_ratings(truth, *, seed: int, n_raters: int, careless_fraction: float,
                     missing_fraction: float, bias_std: float = 0.35,
                     inconsistency: tuple[float, float] = (0.2, 0.8),
                     ambiguity: tuple[float, float] = (0.1, 0.5)):
    """Crowd scores on ``truth`` (video_id, content_id, true_quality).

    score = round(q + bias_r + inconsistency_r * N + ambiguity_c * N), clipped to 1..5; careless
    raters score uniformly at random; each rating is missing with ``missing_fraction`` (every video
    keeps at least one). Returns (scores: video_id, rater_id, score, content_id;
    raters: rater_id, bias, inconsistency, careless; contents: content_id, ambiguity).
    """
    import numpy as np
    import pandas as pd

    if not 0 <= careless_fraction <= 1 or not 0 <= missing_fraction < 1 or n_raters < 1:
        raise ValueError("need n_raters >= 1, careless_fraction in [0, 1], missing_fraction in [0, 1)")
    rng = np.random.default_rng([seed, 1_000_003])
    raters = pd.DataFrame({
        "rater_id": [f"r{r:03d}" for r in range(n_raters)],
        "bias": rng.normal(0, bias_std, n_raters),
        "inconsistency": rng.uniform(*inconsistency, n_raters),
        "careless": False,
    })
    n_careless = int(round(careless_fraction * n_raters))
    raters.loc[rng.choice(n_raters, n_careless, replace=False), "careless"] = True
    content_ids = sorted(truth["content_id"].unique())
    amb = dict(zip(content_ids, rng.uniform(*ambiguity, len(content_ids))))

    n_v = len(truth)
    q = truth["true_quality"].to_numpy()[:, None]
    a = truth["content_id"].map(amb).to_numpy()[:, None]
    raw = (q + raters["bias"].to_numpy()[None] + raters["inconsistency"].to_numpy()[None]
           * rng.standard_normal((n_v, n_raters)) + a * rng.standard_normal((n_v, n_raters)))
    score = np.clip(np.round(raw), 1, 5)
    careless = raters["careless"].to_numpy()
    score[:, careless] = rng.integers(1, 6, (n_v, int(careless.sum())))
    keep = rng.random((n_v, n_raters)) >= missing_fraction
    for i in np.flatnonzero(~keep.any(axis=1)):
        keep[i, rng.integers(n_raters)] = True
    vi, ri = np.nonzero(keep)
    scores = pd.DataFrame({
        "video_id": truth["video_id"].to_numpy()[vi],
        "rater_id": raters["rater_id"].to_numpy()[ri],
        "score": score[vi, ri].astype(int),
        "content_id": truth["content_id"].to_numpy()[vi],
    })
    contents = pd.DataFrame({"content_id": content_ids, "ambiguity": [amb[c] for c in content_ids]})
    return scores, raters, contents
