"""Drawing for the synthetic detection data (numpy + OpenCV): category sprites, distractors and
procedural backgrounds. Shapes are filled supersampled with sub-pixel precision, so a truth box is the
drawn object's exact extent; tasks/detection/synthetic.py lays them out and writes COCO files.
"""
from __future__ import annotations

import math

SUPERSAMPLE = 4
TWO_TONE = ("triangle", "star", "ring", "cross")  # plain shapes drawn with an inset of a second colour
HUE_JITTER = 15.0  # degrees around a category's hue (item["hue"])


def _circle(n: int = 48, r: float = 1.0):
    import numpy as np

    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _unit_shape(kind: str, rng):
    """(outer polygons, hole polygons) in unit coordinates (radius ~1)."""
    import numpy as np

    if kind in ("striped_disc", "ellipse"):
        return [_circle()], []
    if kind == "ring":
        return [_circle()], [_circle(r=0.55)]
    if kind == "triangle":
        t = np.deg2rad([-90, 30, 150])
        return [np.stack([np.cos(t), np.sin(t)], 1)], []
    if kind == "star":
        t = np.deg2rad(np.arange(10) * 36 - 90)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)], []
    if kind == "cross":
        a, w = 1.0, 0.3
        pts = [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w),
               (-a, w), (-a, -w), (-w, -w)]
        return [np.array(pts, float)], []
    if kind in ("checker_square", "rect"):
        s = 0.75
        return [np.array([(-s, -s), (s, -s), (s, s), (-s, s)], float)], []
    if kind == "bar":
        return [np.array([(-1, -0.22), (1, -0.22), (1, 0.22), (-1, 0.22)], float)], []
    if kind == "blob":
        n = int(rng.integers(9, 15))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.5, 1.0, n)
        r = (np.roll(r, 1) + 2 * r + np.roll(r, -1)) / 4  # smooth the outline a little
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)], []
    if kind == "polygon":
        n = int(rng.integers(5, 8))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.4, 1.0, n)
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)], []
    raise ValueError(kind)


def _colours(rng, hue: float | None = None):
    """A colour and a strongly contrasting second one (darker or lighter), BGR float32.

    ``hue`` (degrees): the first colour's hue, jittered by up to ``HUE_JITTER``, with random
    saturation and brightness; None: any colour at all.
    """
    import colorsys

    import numpy as np

    if hue is None:
        c1 = rng.uniform(25, 230, 3)
    else:
        h = ((hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 360) / 360
        r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95))
        c1 = np.array([b, g, r]) * 255
    lum = float(c1.mean())
    c2 = c1 * 0.35 if lum > 115 else c1 * 0.35 + 150
    c2 = np.clip(c2 + rng.normal(0, 15, 3), 0, 255)
    return c1.astype(np.float32), c2.astype(np.float32)


def render_patch(kind: str, item: dict, rng):
    """Alpha mask and texture of one object: (alpha HxW float32, texture HxWx3 float32, x0, y0)."""
    import cv2
    import numpy as np

    outer, holes = _unit_shape(kind, rng)
    cx, cy, rx, ry, th = item["cx"], item["cy"], item["rx"], item["ry"], item["theta"]
    c, s = math.cos(th), math.sin(th)

    def tf(p):
        x, y = p[:, 0] * rx, p[:, 1] * ry
        return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)

    outer_px = [tf(p) for p in outer]
    holes_px = [tf(p) for p in holes]
    allp = np.concatenate(outer_px)
    x0, y0 = int(math.floor(allp[:, 0].min())) - 1, int(math.floor(allp[:, 1].min())) - 1
    x1, y1 = int(math.ceil(allp[:, 0].max())) + 1, int(math.ceil(allp[:, 1].max())) + 1
    w, h = x1 - x0, y1 - y0
    f = SUPERSAMPLE
    canvas = np.zeros((h * f, w * f), np.uint8)

    def fixed(p):  # continuous image coords -> supersampled pixel-centre coords, 4 fractional bits
        return np.round(((p - (x0, y0)) * f - 0.5) * 16).astype(np.int32)

    cv2.fillPoly(canvas, [fixed(p) for p in outer_px], 255, lineType=cv2.LINE_8, shift=4)
    if holes_px:
        cv2.fillPoly(canvas, [fixed(p) for p in holes_px], 0, lineType=cv2.LINE_8, shift=4)
    alpha = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    inner = None
    if kind in TWO_TONE:  # the plain-shape sprites carry an inset of the second colour, as a logo would:
        # the category is told by shape *and* this pattern, which no distractor has
        canvas[:] = 0
        k = 0.55
        cv2.fillPoly(canvas, [fixed(tf(p * k)) for p in outer], 255, lineType=cv2.LINE_8, shift=4)
        if holes:  # the ring: a band between two circles inside its own band
            canvas[:] = 0
            cv2.fillPoly(canvas, [fixed(tf(p * 0.88)) for p in outer], 255, lineType=cv2.LINE_8, shift=4)
            cv2.fillPoly(canvas, [fixed(tf(p * 1.22)) for p in holes], 0, lineType=cv2.LINE_8, shift=4)
        inner = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255.0

    xx = (x0 + np.arange(w, dtype=np.float32) + 0.5 - cx)[None, :]
    yy = (y0 + np.arange(h, dtype=np.float32) + 0.5 - cy)[:, None]
    u = (c * xx + s * yy) / rx
    v = (-s * xx + c * yy) / ry
    c1, c2 = _colours(rng, item.get("hue"))
    if kind == "striped_disc":
        period = float(np.clip(2 * max(rx, ry) / 3.5, 2.5, 14))
        phi = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + 1.5 * np.sin(2 * np.pi * (xx * math.cos(phi) + yy * math.sin(phi)) / period + phase),
                    0, 1)[..., None]
        tex = c1 * (1 - t) + c2 * t
    elif kind == "checker_square":
        n = 4
        cells = (np.floor((u + 0.75) / (1.5 / n)) + np.floor((v + 0.75) / (1.5 / n))) % 2
        tex = np.where(cells[..., None] > 0, c2, c1)
    else:
        gx, gy = rng.normal(0, 1, 2)
        shade = 1 + 0.18 * np.clip(gx * u + gy * v, -2, 2)
        tex = c1 * shade[..., None]
        if kind in ("blob", "polygon", "ellipse") and rng.random() < 0.4:  # speckled distractor
            tex = tex + rng.normal(0, 18, tex.shape)
        if inner is not None:
            tex = tex * (1 - inner) + c2 * inner
    tex = np.broadcast_to(tex, (h, w, 3)).astype(np.float32)
    return alpha, tex, x0, y0


def background(rng, size: int):
    import cv2
    import numpy as np

    g = int(rng.integers(2, 6))
    img = cv2.resize(rng.uniform(30, 225, (g, g, 3)).astype(np.float32), (size, size),
                     interpolation=cv2.INTER_CUBIC)
    m = max(3, size // int(rng.integers(6, 14)))
    mid = cv2.resize(rng.normal(0, 1, (m, m, 3)).astype(np.float32), (size, size),
                     interpolation=cv2.INTER_LINEAR)
    img += mid * float(rng.uniform(6, 24))
    for _ in range(int(rng.integers(2, 9))):  # random lines
        p1 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        colour = tuple(float(v) for v in rng.uniform(20, 235, 3))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 5))):  # translucent blobs
        overlay = img.copy()
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 16 + 1, size // 3 + 2, 2))
        cv2.ellipse(overlay, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(v) for v in rng.uniform(20, 235, 3)), -1, cv2.LINE_AA)
        a = float(rng.uniform(0.25, 0.6))
        img = img * (1 - a) + overlay * a
    return img.astype(np.float32)
