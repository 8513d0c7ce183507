"""A simulated user for interactive segmentation, in the spirit of DAVIS's interactive robot
(our own code; theirs is GPL and was read for the idea only).

Round 1 (:meth:`Robot.first`): on one frame, a stroke inside each object, along the skeleton of the
object's mask. Later rounds (:meth:`Robot.correct`): on the frame whose J is worst, one stroke along
the skeleton of the largest error region: pixels of label ``l`` in the annotation that the
prediction does not give ``l``. ``l`` > 0 is a missed part of object ``l`` (false negative: the
stroke's ``object_id`` is ``l``); ``l`` = 0 is background taken for an object (false positive: the
stroke is a background stroke, ``object_id`` 0). Output: DAVIS scribble dicts. The same inputs and
seed give the same scribbles (the seed decides the first frame when none is asked for, and ties).
"""
from __future__ import annotations

import math

import numpy as np

from models.inpainting import metrics
from models.inpainting.scribbles import Stroke, build_scribbles, largest_region, skeleton_path, to_normalised

DRAW_SPEED = 1.0  # px per ms: a stroke's simulated duration (end_time - start_time) is its length / speed


class Robot:
    """``min_area``: error regions smaller than this share of the frame are not worth a stroke
    (a user would not correct a few pixels of boundary noise); ``void_label`` pixels are never errors."""

    def __init__(self, *, seed: int = 0, min_area: float = 0.0, void_label: int | None = 255):
        if not 0.0 <= min_area < 1.0:
            raise ValueError(f"min_area is a share of the frame in [0, 1), got {min_area}")
        self.seed, self.min_area, self.void_label = seed, min_area, void_label
        self._clock = 0  # ms since the session began: strokes get increasing times, as a user's do

    # ------------------------------------------------------------------------------------ round 1

    def first(self, gts, *, frame: int | None = None, sequence: str = "") -> dict:
        """A stroke inside every object of frame ``frame`` (default: chosen by the seed among the
        frames showing the most objects) of the annotation label maps ``gts`` [T, H, W]."""
        gts = _stack(gts)
        objects = metrics.object_ids(gts, void_label=self.void_label)
        if not objects:
            raise ValueError("the annotations hold no object to scribble on")
        t = self._first_frame(gts, objects) if frame is None else int(frame)
        if not 0 <= t < len(gts):
            raise ValueError(f"frame {t} is outside the video's {len(gts)} frames")
        strokes = [self._stroke(gts[t] == o, t, o) for o in objects]
        strokes = [s for s in strokes if s is not None]
        if not strokes:
            raise ValueError(f"frame {t} shows none of the objects {objects}")
        return build_scribbles(strokes, n_frames=len(gts), sequence=sequence)

    def _first_frame(self, gts: np.ndarray, objects: list[int]) -> int:
        shown = np.array([sum(bool(np.any(g == o)) for o in objects) for g in gts])
        candidates = np.flatnonzero(shown == shown.max())
        return int(np.random.default_rng(self.seed).choice(candidates))

    # ------------------------------------------------------------------------------- corrections

    def worst_frame(self, preds, gts) -> tuple[int, list[float]]:
        """The frame with the lowest J (mean over objects) and every frame's J; ties go to the seed."""
        j = metrics.jaccard_frames(preds, gts, void_label=self.void_label)
        worst = np.flatnonzero(j == j.min())
        return int(np.random.default_rng(self.seed + 1).choice(worst)), j.tolist()

    def error_region(self, pred, gt) -> tuple[np.ndarray, int] | None:
        """The largest error region of one frame and the label the user would give it, or None."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        labels = [v for v in np.unique(gt).tolist() if v != self.void_label]
        best, best_area, best_label = None, 0, 0
        for lab in labels:  # ascending: of equal areas the lower label wins, deterministically
            region = largest_region((gt == lab) & (pred != lab))
            area = int(region.sum())
            if area > best_area:
                best, best_area, best_label = region, area, lab
        if best is None or best_area <= self.min_area * gt.size:
            return None
        return best, int(best_label)

    def correct(self, preds, gts, *, sequence: str = "") -> dict | None:
        """A corrective stroke on the worst frame, along its largest error region's skeleton; None
        when that frame has no error region worth a stroke (``min_area``): the prediction is right."""
        preds, gts = _stack(preds), _stack(gts)
        if preds.shape != gts.shape:
            raise ValueError(f"predictions are {preds.shape}, annotations {gts.shape}")
        t, _ = self.worst_frame(preds, gts)
        found = self.error_region(preds[t], gts[t])
        if found is None:
            return None
        region, label = found
        stroke = self._stroke(region, t, label)
        return build_scribbles([stroke], n_frames=len(gts), sequence=sequence)

    # ---------------------------------------------------------------------------------- strokes

    def _stroke(self, region: np.ndarray, t: int, object_id: int) -> Stroke | None:
        path = skeleton_path(region)
        if len(path) == 0:
            return None
        h, w = region.shape
        length = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
        start = self._clock
        self._clock += max(1, math.ceil(length / DRAW_SPEED))
        return Stroke(t, int(object_id), to_normalised(path, height=h, width=w), start, self._clock)


def _stack(frames) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim != 3:
        raise ValueError(f"label maps must be [T, H, W], got shape {a.shape}")
    return a
