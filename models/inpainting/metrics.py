"""DAVIS segmentation measures: J (region IoU), F (boundary F-measure), J&F, and the area under the
J&F-per-round curve of an interactive session.

Masks are 2-D arrays; anything non-zero is foreground. Label maps (``video_scores``) hold 0 for
background, 1.. for objects and ``void_label`` (255 in DAVIS annotations) for pixels nobody scores.
F follows DAVIS: boundary pixels of each mask (a pixel differing from its east, south or south-east
neighbour), matched within ``bound_th`` x the image diagonal (ceil, 0.008 → 8 px at 854x480) by
dilating the other mask's boundary with a disk of that radius.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOUND_TH = 0.008  # DAVIS's boundary tolerance, a share of the image diagonal


def _binary(mask, void=None) -> np.ndarray:
    m = np.asarray(mask) != 0
    return m if void is None else m & ~np.asarray(void, dtype=bool)


def jaccard(pred, gt, *, void=None) -> float:
    """Region similarity J = |pred ∩ gt| / |pred ∪ gt| outside ``void``; 1 when both are empty."""
    p, g = _binary(pred, void), _binary(gt, void)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def boundary_map(mask) -> np.ndarray:
    """DAVIS's boundary pixels (``seg2bmap`` at the mask's own size): bool [H, W]."""
    m = np.asarray(mask) != 0
    e, s, se = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = m[:, 1:], m[1:, :], m[1:, 1:]
    b = (m ^ e) | (m ^ s) | (m ^ se)
    # the last row and column have no south / east neighbour: compare along the edge only
    b[-1, :] = m[-1, :] ^ e[-1, :]
    b[:, -1] = m[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def bound_radius(shape, bound_th: float = BOUND_TH) -> int:
    """Tolerance in pixels: ``bound_th`` >= 1 is pixels already, otherwise a share of the diagonal."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape[:2]))


def _dilate(b: np.ndarray, radius: int) -> np.ndarray:
    import cv2
    from skimage.morphology import disk

    return cv2.dilate(b.astype(np.uint8), disk(radius).astype(np.uint8)) > 0


def f_measure(pred, gt, *, void=None, bound_th: float = BOUND_TH) -> float:
    """Boundary F = 2PR / (P + R): P the share of pred's boundary pixels within tolerance of gt's
    boundary, R the converse. Both boundaries empty → 1; one empty → 0 (DAVIS's conventions)."""
    p, g = _binary(pred, void), _binary(gt, void)
    bp, bg = boundary_map(p), boundary_map(g)
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    r = bound_radius(p.shape, bound_th)
    precision = np.count_nonzero(bp & _dilate(bg, r)) / n_p
    recall = np.count_nonzero(bg & _dilate(bp, r)) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def object_ids(gts, *, void_label: int | None = 255) -> list[int]:
    """The object labels of a video's annotations (neither 0 nor ``void_label``), ascending."""
    ids = set()
    for g in gts:
        ids |= set(np.unique(np.asarray(g)).tolist())
    return sorted(i for i in ids if i != 0 and i != void_label)


def frame_scores(pred, gt, *, objects: Sequence[int], void_label: int | None = 255,
                 bound_th: float = BOUND_TH) -> tuple[np.ndarray, np.ndarray]:
    """J and F of each object on one frame of label maps: two float arrays of ``len(objects)``."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction is {p.shape}, annotation {g.shape}: masks must have the same size")
    void = None if void_label is None else g == void_label
    j = [jaccard(p == o, g == o, void=void) for o in objects]
    f = [f_measure(p == o, g == o, void=void, bound_th=bound_th) for o in objects]
    return np.array(j), np.array(f)


def jaccard_frames(preds, gts, *, objects: Sequence[int] | None = None, void_label: int | None = 255) -> np.ndarray:
    """J of each frame (mean over objects; ``objects`` as in :func:`video_scores`): float [T]."""
    preds, gts, objects = _objects(preds, gts, objects, void_label)
    out = []
    for p, g in zip(preds, gts):
        p, g = np.asarray(p), np.asarray(g)
        void = None if void_label is None else g == void_label
        out.append(np.mean([jaccard(p == o, g == o, void=void) for o in objects]))
    return np.array(out, dtype=np.float64)


def _objects(preds, gts, objects, void_label):
    """Check the frame counts; settle the objects (annotations without any: foreground vs foreground)."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted frames for {len(gts)} annotated ones")
    if len(gts) == 0:
        raise ValueError("no frames to score")
    if objects is None:
        objects = object_ids(gts, void_label=void_label)
    if not objects:
        return [np.asarray(p) != 0 for p in preds], [np.asarray(g) != 0 for g in gts], [1]
    return preds, gts, list(objects)


def video_scores(preds, gts, *, objects: Sequence[int] | None = None, void_label: int | None = 255,
                 bound_th: float = BOUND_TH) -> dict:
    """J, F and J&F of a video, as DAVIS reports them: each object's mean over frames, then the mean
    over objects. ``objects`` default to those in ``gts``; none at all → one object, any non-zero.

    Returns ``{"J", "F", "JF", "J_frames", "F_frames", "objects": {id: {"J", "F"}}}``; ``*_frames``
    are per-frame means over objects (what the robot looks at to pick the worst frame).
    """
    preds, gts, objects = _objects(preds, gts, objects, void_label)
    jf = [frame_scores(p, g, objects=objects, void_label=void_label, bound_th=bound_th) for p, g in zip(preds, gts)]
    j = np.stack([x[0] for x in jf])  # [T, objects]
    f = np.stack([x[1] for x in jf])
    per_object = {int(o): {"J": float(j[:, k].mean()), "F": float(f[:, k].mean())} for k, o in enumerate(objects)}
    big_j, big_f = float(j.mean(axis=0).mean()), float(f.mean(axis=0).mean())
    return {"J": big_j, "F": big_f, "JF": (big_j + big_f) / 2,
            "J_frames": j.mean(axis=1).tolist(), "F_frames": f.mean(axis=1).tolist(), "objects": per_object}


def auc(values: Sequence[float], *, x: Sequence[float] | None = None) -> float:
    """Normalised area under a curve of scores (J&F after each round): trapezoids over ``x``
    (default rounds 1, 2, ...) divided by its span, so a constant curve's AUC is that constant."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"auc needs a non-empty 1-D sequence of scores, got shape {v.shape}")
    xs = np.arange(1, len(v) + 1, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    if xs.shape != v.shape or np.any(np.diff(xs) <= 0):
        raise ValueError("auc: x must increase strictly and match the scores one to one")
    if len(v) == 1:
        return float(v[0])
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(xs)) / (xs[-1] - xs[0]))
