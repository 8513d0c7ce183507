"""The simulated user: first strokes inside objects, corrections on the worst frame's largest error."""
from __future__ import annotations

import cv2  # noqa: F401  (declared dependency: a broken import must fail)
import numpy as np
import pytest
import skimage  # noqa: F401  (declared dependency: a broken import must fail)

from models.inpainting.metrics import jaccard_frames
from models.inpainting.robot import Robot
from models.inpainting.scribbles import parse_scribbles, to_pixels
from tests.inpainting.conftest import DAVIS

T, H, W = 4, 60, 80


def truth() -> np.ndarray:
    """Object 1 a square, object 2 a bar, on every frame, moving right by 2 px a frame."""
    gt = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        gt[t, 10:40, 5 + 2 * t:35 + 2 * t] = 1
        gt[t, 45:55, 40:75] = 2
    return gt


def strokes(d: dict, n_frames: int = T) -> list:
    return list(parse_scribbles(d, n_frames=n_frames))


def pixels(stroke, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    px = to_pixels(stroke.path, height=h, width=w)
    return px[:, 1], px[:, 0]


def test_first_round_inside_each_object():
    gt = truth()
    d = Robot(seed=0).first(gt, frame=2, sequence="toy")
    assert d["sequence"] == "toy" and len(d["scribbles"]) == T
    got = strokes(d)
    assert [s.object_id for s in got] == [1, 2] and {s.frame for s in got} == {2}
    for s in got:
        assert (gt[2][pixels(s)] == s.object_id).all()
    assert got[0].start_time < got[0].end_time <= got[1].start_time  # a user draws one stroke after another


def test_first_round_frame_follows_the_seed():
    gt = truth()
    gt[0, gt[0] == 2] = 0  # frame 0 lacks object 2: never the first frame
    frames = {parse_scribbles(Robot(seed=s).first(gt)).annotated_frames[0] for s in range(12)}
    assert frames <= {1, 2, 3} and len(frames) > 1
    assert Robot(seed=5).first(gt) == Robot(seed=5).first(gt)  # deterministic given the seed
    with pytest.raises(ValueError, match="outside the video's 4 frames"):
        Robot().first(gt, frame=4)
    with pytest.raises(ValueError, match="no object"):
        Robot().first(np.zeros_like(gt))


def test_correction_false_negative_on_the_worst_frame():
    gt = truth()
    pred = gt.copy()
    pred[1, 10:40, 20:30] = 0  # a bite out of object 1 on frame 1 ...
    pred[3, 10:14, 11:41] = 0  # ... a smaller one on frame 3
    robot = Robot(seed=0)
    t, j = robot.worst_frame(pred, gt)
    assert t == 1 and j == pytest.approx(jaccard_frames(pred, gt).tolist()) and np.argmin(j) == 1
    (s,) = strokes(robot.correct(pred, gt))
    assert s.frame == 1 and s.object_id == 1  # a missed part of the object: an object stroke
    missed = (gt[1] == 1) & (pred[1] != 1)
    assert missed[pixels(s)].all() and len(s.path) > 10


def test_correction_false_positive_is_a_background_stroke():
    gt = truth()
    pred = gt.copy()
    pred[2, 20:35, 45:75] = 2  # object 2 spills over background on frame 2
    (s,) = strokes(Robot(seed=0).correct(pred, gt))
    assert s.frame == 2 and s.object_id == 0
    spill = (gt[2] == 0) & (pred[2] != 0)
    assert spill[pixels(s)].all()


def test_correction_between_objects_gives_the_true_label():
    gt = truth()
    pred = gt.copy()
    pred[0][gt[0] == 2] = 1  # object 2 taken for object 1
    (s,) = strokes(Robot(seed=0).correct(pred, gt))
    assert s.frame == 0 and s.object_id == 2 and (gt[0][pixels(s)] == 2).all()


def test_correction_takes_the_largest_error_region():
    gt = truth()
    pred = gt.copy()
    pred[1, 2:6, 50:54] = 1  # a small false positive (16 px) ...
    pred[1, 10:40, 5:12] = 0  # ... and a large miss (210 px) on the same frame
    (s,) = strokes(Robot(seed=0).correct(pred, gt))
    assert s.object_id == 1 and (pixels(s)[1] < 12).all()


def test_nothing_to_correct():
    gt = truth()
    assert Robot().correct(gt, gt) is None
    pred = gt.copy()
    pred[0, 0, 0] = 1  # one stray pixel: below min_area, not worth a stroke
    assert Robot(min_area=0.001).correct(pred, gt) is None
    assert Robot().correct(pred, gt) is not None
    with pytest.raises(ValueError, match="predictions are"):
        Robot().correct(pred[:2], gt)


def test_void_is_never_an_error():
    gt = truth()
    gt[:, 0:8, :] = 255
    pred = np.where(gt == 255, 1, gt).astype(np.uint8)  # labels on void pixels
    assert Robot().correct(pred, gt) is None


@pytest.mark.skipif(not DAVIS.is_dir(), reason=f"real DAVIS annotations absent under {DAVIS}")
def test_real_sequence_session():
    """blackswan: round 1 then a correction on the frame a shrunken prediction hurts most."""

    from models.common.frames import read_mask

    gts = np.stack([read_mask(p) for p in sorted((DAVIS / "Annotations" / "480p" / "blackswan").glob("*.png"))])
    robot = Robot(seed=1)
    first = parse_scribbles(robot.first(gts, sequence="blackswan"), n_frames=len(gts), object_ids=[1])
    (s,) = list(first)
    assert (gts[s.frame][pixels(s, 480, 854)] == 1).all()
    pred = gts.copy()
    pred[3] = cv2.erode(gts[3], np.ones((21, 21), np.uint8))
    d = robot.correct(pred, gts, sequence="blackswan")
    (c,) = list(parse_scribbles(d, n_frames=len(gts), object_ids=[1]))
    assert c.frame == 3 and c.object_id == 1 and c.start_time >= s.end_time
    assert ((gts[3] == 1) & (pred[3] == 0))[pixels(c, 480, 854)].all()
