"""DAVIS J and F: analytic cases, a plain slow reference, videos with several objects and void, AUC."""
from __future__ import annotations

import math

import cv2  # noqa: F401  (declared dependency: a broken import must fail)
import numpy as np
import pytest
import skimage  # noqa: F401  (declared dependency: a broken import must fail)

from models.inpainting.metrics import (
    auc,
    bound_radius,
    boundary_map,
    f_measure,
    jaccard,
    jaccard_frames,
    video_scores,
)
from tests.inpainting.conftest import DAVIS


def square(h: int, w: int, y: int, x: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[max(y, 0):y + side, max(x, 0):x + side] = True
    return m


# ------------------------------------------------------------------------- the reference, written plainly

def ref_boundary(m: np.ndarray) -> np.ndarray:
    """DAVIS's seg2bmap pixel by pixel: differs from its east, south or south-east neighbour; the last
    row compares east only, the last column south only, the bottom-right pixel is never boundary."""
    h, w = m.shape
    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            here = bool(m[y, x])
            east = bool(m[y, x + 1]) if x + 1 < w else False
            south = bool(m[y + 1, x]) if y + 1 < h else False
            se = bool(m[y + 1, x + 1]) if x + 1 < w and y + 1 < h else False
            if y == h - 1 and x == w - 1:
                b[y, x] = False
            elif y == h - 1:
                b[y, x] = here != east
            elif x == w - 1:
                b[y, x] = here != south
            else:
                b[y, x] = here != east or here != south or here != se
    return b


def ref_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """A boundary pixel is matched when a boundary pixel of the other mask lies within ``radius``
    (Euclidean: the pixels of skimage's disk); F is the harmonic mean of the two matched shares."""
    bp, bg = np.argwhere(ref_boundary(pred)), np.argwhere(ref_boundary(gt))
    if len(bp) == 0 and len(bg) == 0:
        return 1.0
    if len(bp) == 0 or len(bg) == 0:
        return 0.0

    def share(a, b):
        hits = 0
        for y, x in a:
            if any((y - v) ** 2 + (x - u) ** 2 <= radius ** 2 for v, u in b):
                hits += 1
        return hits / len(a)

    p, r = share(bp, bg), share(bg, bp)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ref_j(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = union = 0
    for a, b in zip(pred.ravel(), gt.ravel()):
        inter += bool(a) and bool(b)
        union += bool(a) or bool(b)
    return 1.0 if union == 0 else inter / union


def blobs(seed: int, h: int = 36, w: int = 48) -> np.ndarray:
    """A few random ellipses: curved boundaries, holes between them, pixels on the image edge."""

    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 4)):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, w // 2)), int(rng.integers(3, h // 2)))
        cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_boundary_map_matches_reference(seed):
    m = blobs(seed)
    np.testing.assert_array_equal(boundary_map(m), ref_boundary(m))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound_th", [0.008, 1, 3])
@pytest.mark.parametrize("pair", ["unrelated", "nudged"])
def test_j_and_f_match_reference(seed, bound_th, pair):
    gt = blobs(seed + 100)
    pred = blobs(seed) if pair == "unrelated" else np.roll(gt, (1, 2), axis=(0, 1)) ^ (blobs(seed, 36, 48) & blobs(seed + 7))
    assert jaccard(pred, gt) == pytest.approx(ref_j(pred, gt), abs=1e-12)
    r = bound_radius(gt.shape, bound_th)
    assert r == (1 if bound_th < 1 else bound_th)  # 0.008 x 60 px diagonal rounds up to 1 px
    assert f_measure(pred, gt, bound_th=bound_th) == pytest.approx(ref_f(pred, gt, r), abs=1e-12)


# ---------------------------------------------------------------------------------- analytic cases

def test_identical_empty_and_disjoint():
    m = square(60, 80, 10, 10, 20)
    assert jaccard(m, m) == 1.0 and f_measure(m, m) == 1.0
    empty = np.zeros_like(m)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0  # nothing to find, nothing found
    assert jaccard(m, empty) == 0.0 and f_measure(m, empty) == 0.0 and f_measure(empty, m) == 0.0
    far = square(60, 80, 30, 50, 20)
    assert jaccard(m, far) == 0.0 and f_measure(m, far) == 0.0


def test_shifted_squares_known_iou():
    a = square(60, 80, 10, 10, 20)
    assert jaccard(a, square(60, 80, 10, 15, 20)) == pytest.approx(300 / 500)  # 15x20 shared of 25x20
    assert jaccard(a, square(60, 80, 14, 14, 20)) == pytest.approx(256 / 544)  # 16x16 of 400 + 400 - 256
    assert jaccard(a, square(60, 80, 15, 15, 10)) == pytest.approx(100 / 400)  # nested


def test_boundary_within_and_beyond_tolerance():
    h, w = 300, 400  # diagonal 500 px: the tolerance is ceil(0.008 x 500) = 4 px
    assert bound_radius((h, w)) == 4
    gt = square(h, w, 100, 100, 100)
    for dy, dx in [(0, 4), (4, 0), (2, 2), (-3, 0)]:  # every boundary pixel has a partner within 4 px
        assert f_measure(square(h, w, 100 + dy, 100 + dx, 100), gt) == 1.0
    just_out = f_measure(square(h, w, 100, 105, 100), gt)  # the vertical edges are 5 px away
    assert 0.4 < just_out < 1.0
    assert f_measure(square(h, w, 100, 130, 100), gt) < just_out
    # J hardly notices what F punishes: a 5 px shift keeps 95 % of the overlap
    assert jaccard(square(h, w, 100, 105, 100), gt) == pytest.approx(9500 / 10500)


def test_void_pixels_are_not_scored():
    gt = square(40, 40, 5, 5, 20)
    pred = gt.copy()
    pred[30:35, 30:35] = True  # a false positive, but on void pixels
    void = square(40, 40, 28, 28, 10)
    assert jaccard(pred, gt) < 1.0 and jaccard(pred, gt, void=void) == 1.0
    assert f_measure(pred, gt, void=void) == 1.0


# ----------------------------------------------------------------------------------------- videos

def test_video_scores_several_objects_and_void():
    h, w = 60, 80
    gt = np.zeros((2, h, w), np.uint8)
    gt[:, 5:25, 5:25] = 1
    gt[:, 30:50, 40:60] = 2
    gt[:, 55:, :] = 255  # void strip
    pred = gt.copy()
    pred[:, 55:, :] = 0  # anything on void is fine
    pred[0, 30:50, 40:60] = 0
    pred[0, 30:50, 45:65] = 2  # object 2 shifted by 5 px on frame 0: J = 300 / 500
    s = video_scores(pred, gt)
    assert set(s["objects"]) == {1, 2} and s["objects"][1] == {"J": 1.0, "F": 1.0}
    assert s["objects"][2]["J"] == pytest.approx((0.6 + 1.0) / 2)
    assert s["J"] == pytest.approx((1.0 + 0.8) / 2)
    assert s["J_frames"] == pytest.approx([0.8, 1.0]) and s["F_frames"][1] == 1.0
    assert s["JF"] == pytest.approx((s["J"] + s["F"]) / 2)
    np.testing.assert_allclose(jaccard_frames(pred, gt), s["J_frames"])


def test_video_scores_refuses_mismatches():
    gt = np.zeros((2, 10, 10), np.uint8)
    with pytest.raises(ValueError, match="1 predicted frames for 2"):
        video_scores(gt[:1], gt)
    with pytest.raises(ValueError, match="same size"):
        video_scores([np.zeros((10, 12))] * 2, gt)


def test_video_without_objects_scores_foreground():
    gt = np.zeros((2, 10, 10), np.uint8)
    assert video_scores(gt, gt)["JF"] == 1.0
    pred = gt.copy()
    pred[1, 2:4, 2:4] = 1
    assert video_scores(pred, gt)["J_frames"] == [1.0, 0.0]


@pytest.mark.skipif(not DAVIS.is_dir(), reason=f"real DAVIS annotations absent under {DAVIS}")
def test_real_annotation():

    from models.common.frames import read_mask

    gt = read_mask(DAVIS / "Annotations" / "480p" / "tennis" / "00000.png")[None]
    assert video_scores(gt, gt)["JF"] == 1.0
    grown = cv2.dilate(np.where(gt[0] == 255, 0, gt[0]), np.ones((15, 15), np.uint8))[None]
    s = video_scores(grown, gt)
    assert 0.0 < s["J"] < 1.0 and 0.0 < s["F"] < 1.0 and set(s["objects"]) == {1, 2}


# -------------------------------------------------------------------------------------------- AUC

def test_auc():
    assert auc([0.7, 0.7, 0.7]) == pytest.approx(0.7)
    assert auc([0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert auc([0.4]) == 0.4
    assert auc([0.2, 0.6], x=[0.0, 60.0]) == pytest.approx(0.4)  # e.g. against seconds
    assert auc([0.0, 1.0, 1.0], x=[1, 2, 4]) == pytest.approx((0.5 + 2.0) / 3)
    assert not math.isnan(auc([1.0, 1.0]))
    with pytest.raises(ValueError, match="increase"):
        auc([0.1, 0.2], x=[2, 1])
    with pytest.raises(ValueError, match="non-empty"):
        auc([])
