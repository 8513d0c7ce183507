"""Camera alignment between frames: homographies from tracked corners, chained through the video.

The inpainting decoder fills a hole from *the same scene point* in other frames; with a moving camera
that point sits elsewhere in each frame, so memory frames are warped onto the query frame first.
Distant frames are too far apart for a tracker, so neighbours are aligned (Lucas-Kanade on corners,
RANSAC homography: the moving objects are outliers) and the maps are chained: ``T[t]`` maps frame 0's
pixels to frame t's, and ``relative(T, j, t)`` frame j's to frame t's. Pixel coordinates are OpenCV's
(pixel i's centre at i). numpy + OpenCV.
"""
from __future__ import annotations

import numpy as np

MIN_POINTS = 8  # fewer tracked corners than this: fall back to a similarity, then to the identity


def gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def pair_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking pixels of grey image ``src`` to ``dst`` (float64), identity on failure."""
    import cv2

    h, w = src.shape[:2]
    pts = cv2.goodFeaturesToTrack(src, maxCorners=300, qualityLevel=0.005, minDistance=max(2, min(h, w) // 40))
    if pts is None or len(pts) < MIN_POINTS:
        return np.eye(3)
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(src, dst, pts, None, winSize=(15, 15), maxLevel=3)
    ok = status.ravel() == 1
    a, b = pts[ok].reshape(-1, 2), nxt[ok].reshape(-1, 2)
    if len(a) < MIN_POINTS:
        return np.eye(3)
    thr = max(1.0, 0.01 * max(h, w))
    hom, inliers = cv2.findHomography(a, b, cv2.RANSAC, thr)
    if hom is not None and inliers is not None and inliers.sum() >= MIN_POINTS and _sane(hom, h, w):
        return hom / hom[2, 2]
    sim, _ = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=thr)
    if sim is not None:
        return np.vstack([sim, [0, 0, 1]])
    return np.eye(3)


def _sane(hom: np.ndarray, h: int, w: int) -> bool:
    """Neighbouring frames differ little: refuse maps that fold the frame or move a corner by half its size."""
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64).T
    p = hom @ corners
    if np.any(p[2] <= 1e-6):
        return False
    moved = np.abs(p[:2] / p[2] - corners[:2]).max()
    return bool(moved < 0.5 * max(h, w))


def chain(pairs: list[np.ndarray]) -> np.ndarray:
    """``pairs[k]`` maps frame k to k+1 → ``T`` [T, 3, 3] with ``T[t]`` mapping frame 0 to frame t."""
    out = [np.eye(3)]
    for p in pairs:
        m = p @ out[-1]
        out.append(m / m[2, 2])
    return np.stack(out)


def relative(T: np.ndarray, j: int, t: int) -> np.ndarray:
    """The homography taking frame ``j``'s pixels to frame ``t``'s."""
    m = T[t] @ np.linalg.inv(T[j])
    return m / m[2, 2]


def video_homographies(images) -> np.ndarray:
    """Chained maps ``T`` [T, 3, 3] of a sequence of RGB frames (any iterable; one pass, two frames held)."""
    pairs, prev = [], None
    for img in images:
        g = gray(img)
        if prev is not None:
            pairs.append(pair_homography(prev, g))
        prev = g
    return chain(pairs)
