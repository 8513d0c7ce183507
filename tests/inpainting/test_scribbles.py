"""models.inpainting.scribbles on the real DAVIS scribble files, malformed ones, and masks."""
from __future__ import annotations

import copy
import json

import cv2  # noqa: F401  (declared dependency: a broken import must fail)
import numpy as np
import pytest
import skimage  # noqa: F401  (declared dependency: a broken import must fail)

from models.common.frames import read_mask
from models.inpainting import metrics
from models.inpainting.scribbles import (
    UNLABELLED,
    ScribbleError,
    Stroke,
    build_scribbles,
    from_mask,
    load_scribbles,
    parse_scribbles,
    rasterize,
    save_scribbles,
    skeleton_path,
    stroke_from_pixels,
    thickness_px,
    to_pixels,
)
from tests.inpainting.conftest import DAVIS

SCRIBBLE_FILES = sorted((DAVIS / "Scribbles").glob("*/*.json")) if DAVIS.is_dir() else []


def annotations(seq: str) -> np.ndarray:
    return np.stack([read_mask(p) for p in sorted((DAVIS / "Annotations" / "480p" / seq).glob("*.png"))])


def valid() -> dict:
    return {"sequence": "toy", "scribbles": [
        [{"path": [[0.1, 0.2], [0.3, 0.4]], "object_id": 1, "start_time": 0, "end_time": 120}],
        [],
        [{"path": [[0.5, 0.5]], "object_id": 0}],
    ]}


# ---------------------------------------------------------------------------------------- real data

@pytest.mark.skipif(not SCRIBBLE_FILES, reason=f"real DAVIS scribbles absent under {DAVIS}")
@pytest.mark.parametrize("path", SCRIBBLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_files_load_against_their_annotations(path):
    gts = annotations(path.parent.name)
    s = load_scribbles(path, n_frames=len(gts), object_ids=metrics.object_ids(gts))
    assert s.sequence == path.parent.name and s.n_frames == len(gts)
    assert s.annotated_frames and s.object_ids <= {0, *metrics.object_ids(gts)}
    for stroke in s:
        assert stroke.path.shape[1] == 2 and stroke.start_time <= stroke.end_time


@pytest.mark.skipif(not SCRIBBLE_FILES, reason=f"real DAVIS scribbles absent under {DAVIS}")
@pytest.mark.parametrize("seq,name,object_id", [("bear", "001.json", 1), ("bear", "002.json", 1),
                                                ("tennis", "001.json", 1)])
def test_real_scribbles_rasterise_onto_their_object(seq, name, object_id):
    """A human's scribble for an object lands (mostly) on that object: coordinates are read the right way round."""
    s = load_scribbles(DAVIS / "Scribbles" / seq / name)
    t = s.annotated_frames[0]
    gt = annotations(seq)[t]
    lab = rasterize(s.frames[t], height=gt.shape[0], width=gt.shape[1])
    drawn = lab == object_id
    assert drawn.sum() > 1000 and (gt[drawn] == object_id).mean() > 0.8
    assert set(np.unique(lab).tolist()) <= {UNLABELLED, 0, *s.object_ids}


@pytest.mark.skipif(not SCRIBBLE_FILES, reason=f"real DAVIS scribbles absent under {DAVIS}")
def test_real_file_against_a_shorter_video():
    path = DAVIS / "Scribbles" / "tennis" / "001.json"
    with pytest.raises(ScribbleError, match="scribble on frame 1 but the video has 1 frames"):
        load_scribbles(path, n_frames=1)
    with pytest.raises(ScribbleError, match=r"object_id 2 is not an object of this video \(known: \[0, 1\]\)"):
        load_scribbles(path, object_ids=[1])


# ------------------------------------------------------------------------------------------ refusals

def mutate(fn):
    d = copy.deepcopy(valid())
    fn(d)
    return d


BAD = {
    "x above 1": (lambda d: d["scribbles"][0][0]["path"].__setitem__(1, [1.2, 0.4]), r"scribbles\[0\]\[0\]\.path\[1\].*outside \[0, 1\]"),
    "y below 0": (lambda d: d["scribbles"][2][0]["path"].__setitem__(0, [0.5, -0.01]), r"path\[0\].*outside"),
    "nan": (lambda d: d["scribbles"][0][0]["path"].__setitem__(0, [float("nan"), 0.1]), "finite numbers"),
    "3 coords": (lambda d: d["scribbles"][0][0]["path"].__setitem__(0, [0.1, 0.1, 0.1]), r"must be \[x, y\]"),
    "empty path": (lambda d: d["scribbles"][0][0].__setitem__("path", []), "non-empty list"),
    "negative id": (lambda d: d["scribbles"][0][0].__setitem__("object_id", -1), "integer >= 0"),
    "bool id": (lambda d: d["scribbles"][0][0].__setitem__("object_id", True), "integer >= 0"),
    "float id": (lambda d: d["scribbles"][0][0].__setitem__("object_id", 1.0), "integer >= 0"),
    "no object_id": (lambda d: d["scribbles"][0][0].pop("object_id"), "'path' and 'object_id'"),
    "text time": (lambda d: d["scribbles"][0][0].__setitem__("start_time", "0"), "start_time must be a number"),
    "frame not a list": (lambda d: d["scribbles"].__setitem__(1, {}), r"scribbles\[1\] must be a list"),
    "all empty": (lambda d: d.__setitem__("scribbles", [[], [], []]), "no scribbles"),
    "no frames": (lambda d: d.__setitem__("scribbles", []), "no scribbles"),
    "no sequence": (lambda d: d.pop("sequence"), "'sequence' must be a string"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_scribbles_refused_in_one_line(tmp_path, case):
    change, pattern = BAD[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mutate(change)))
    with pytest.raises(ScribbleError, match=pattern) as e:
        load_scribbles(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


@pytest.mark.parametrize("data", [[1, 2], {"annotations": [], "images": []}, {"scribbles": "x", "sequence": "a"}],
                         ids=["list", "coco", "scribbles-not-list"])
def test_non_davis_json_refused(tmp_path, data):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScribbleError, match="not a DAVIS scribble file"):
        load_scribbles(path)


def test_unreadable_files_refused(tmp_path):
    with pytest.raises(ScribbleError, match="not found"):
        load_scribbles(tmp_path / "none.json")
    (tmp_path / "a.json").write_text("{nope")
    with pytest.raises(ScribbleError, match=r"a\.json: not JSON"):
        load_scribbles(tmp_path / "a.json")
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScribbleError, match="not UTF-8"):
        load_scribbles(tmp_path / "b.json")


def test_frame_count_must_match():
    with pytest.raises(ScribbleError, match="scribble on frame 2 but the video has 2 frames"):
        parse_scribbles(valid(), n_frames=2)
    with pytest.raises(ScribbleError, match="3 frames of scribbles, the video has 5"):
        parse_scribbles(valid(), n_frames=5)
    assert parse_scribbles(valid(), n_frames=3, object_ids=[1]).annotated_frames == [0, 2]


# ------------------------------------------------------------------------------------ rasterise

def test_rasterize_labels_and_thickness():
    s = parse_scribbles(valid())
    lab = rasterize(s.frames[0], height=480, width=854)
    assert lab.dtype == np.int16 and set(np.unique(lab).tolist()) == {UNLABELLED, 1}
    x0, y0 = to_pixels(s.frames[0][0].path, height=480, width=854)[0]
    assert lab[y0, x0] == 1
    dot = rasterize(s.frames[2], height=100, width=200)  # a one-point stroke still marks the frame
    assert (dot == 0).sum() >= 1
    # thickness follows the image size: twice the frame, twice the stroke's length and width
    assert thickness_px(960, 1708) == 2 * thickness_px(480, 854) == 10
    line = [Stroke(0, 1, np.array([[0.1, 0.5], [0.9, 0.5]]))]
    for h, w in [(480, 854), (960, 1708)]:  # a horizontal stroke's column is as tall as the stroke is wide
        column = rasterize(line, height=h, width=w)[:, w // 2]
        assert abs((column == 1).sum() - thickness_px(h, w)) <= 1

def test_later_strokes_paint_over_earlier():
    strokes = [Stroke(0, 1, np.array([[0.0, 0.5], [1.0, 0.5]])), Stroke(0, 0, np.array([[0.5, 0.0], [0.5, 1.0]]))]
    lab = rasterize(strokes, height=21, width=21, thickness=0.0)
    assert lab[10, 10] == 0 and lab[10, 2] == 1 and lab[2, 10] == 0 and lab[2, 2] == UNLABELLED


# -------------------------------------------------------------------------------------------- build

def test_build_round_trip(tmp_path):
    strokes = [stroke_from_pixels([[0, 0], [99, 49]], frame=1, object_id=2, height=50, width=100,
                                  start_time=5, end_time=9),
               stroke_from_pixels([[-5, 10], [120, 10]], frame=1, object_id=0, height=50, width=100)]
    d = build_scribbles(strokes, n_frames=3, sequence="cat")
    assert d["sequence"] == "cat" and [len(f) for f in d["scribbles"]] == [0, 2, 0]
    assert d["scribbles"][1][0]["path"] == [[0.0, 0.0], [1.0, 1.0]]
    y = pytest.approx(10 / 49)
    assert d["scribbles"][1][1]["path"] == [[0.0, y], [1.0, y]]  # a canvas stroke past the edge is clipped
    s = load_scribbles(save_scribbles(tmp_path / "s.json", d), n_frames=3, object_ids=[2])
    assert s.to_dict() == d
    with pytest.raises(ScribbleError, match="stroke on frame 3 but the video has 3 frames"):
        build_scribbles([Stroke(3, 1, np.array([[0.1, 0.1]]))], n_frames=3, sequence="cat")
    with pytest.raises(ScribbleError, match="no scribbles"):
        build_scribbles([], n_frames=3, sequence="cat")


def test_a_stroke_keeps_its_interaction_round_and_cloak_replays_rounds_in_order(tmp_path):
    import dataclasses

    from tasks.inpainting.cloak import _rounds

    a = stroke_from_pixels([[0, 0], [9, 9]], frame=0, object_id=1, height=10, width=10)
    b, c = dataclasses.replace(a, frame=2, round=2), dataclasses.replace(a, frame=0, object_id=0, round=3)
    d = build_scribbles([a, b, c], n_frames=3, sequence="cat")
    assert "round" not in d["scribbles"][0][0] and d["scribbles"][2][0]["round"] == 2  # plain DAVIS when unset
    s = load_scribbles(save_scribbles(tmp_path / "s.json", d), n_frames=3)
    assert s.to_dict() == d
    by_frame = {t: list(f) for t, f in enumerate(s.frames) if f}
    assert [{t: [st.object_id for st in v] for t, v in r.items()} for r in _rounds(by_frame)] == [{0: [1]}, {2: [1]}, {0: [0]}]
    bad = json.loads(json.dumps(d))
    bad["scribbles"][2][0]["round"] = 0
    with pytest.raises(ScribbleError, match=r"scribbles\[2\]\[0\]\.round must be an integer >= 1"):
        load_scribbles(save_scribbles(tmp_path / "bad.json", bad), n_frames=3)


# ---------------------------------------------------------------------------------------- from mask

def test_skeleton_of_a_bar_follows_its_axis():
    m = np.zeros((40, 100), bool)
    m[15:26, 10:90] = True
    path = skeleton_path(m)
    assert m[path[:, 1], path[:, 0]].all()  # every point inside
    assert path[:, 0].max() - path[:, 0].min() > 60  # along the long axis
    assert np.all(np.abs(np.diff(path, axis=0)) <= 1)  # one connected pixel route
    assert skeleton_path(np.zeros((5, 5), bool)).shape == (0, 2)
    tiny = np.zeros((5, 5), bool)
    tiny[2, 2] = True
    assert skeleton_path(tiny).tolist() == [[2, 2]]


def test_skeleton_takes_the_largest_region():
    m = np.zeros((50, 50), np.uint8)
    m[5:10, 5:10] = 1
    m[20:45, 20:45] = 1
    path = skeleton_path(m)
    assert path[:, 0].min() >= 20 and path[:, 1].min() >= 20


def test_from_mask_label_map_and_binary():
    lab = np.zeros((60, 80), np.uint8)
    lab[5:25, 5:40] = 1
    lab[30:55, 45:75] = 2
    lab[0:3, :] = 255  # void: no stroke
    strokes = from_mask(lab, frame=2)
    assert [s.object_id for s in strokes] == [1, 2] and all(s.frame == 2 for s in strokes)
    for s in strokes:
        px = to_pixels(s.path, height=60, width=80)
        assert (lab[px[:, 1], px[:, 0]] == s.object_id).all()
    binary = from_mask(np.where(lab == 2, 255, 0).astype(np.uint8))  # a 0/255 PNG is one object
    assert [s.object_id for s in binary] == [1]
    assert [s.object_id for s in from_mask(lab == 1, object_id=3)] == [3]
    d = build_scribbles(strokes, n_frames=3, sequence="toy")
    assert parse_scribbles(d, n_frames=3, object_ids=[1, 2]).annotated_frames == [2]


@pytest.mark.skipif(not DAVIS.is_dir(), reason=f"real DAVIS annotations absent under {DAVIS}")
def test_from_mask_on_a_real_annotation():
    gt = annotations("tennis")[0]
    strokes = from_mask(gt)
    assert [s.object_id for s in strokes] == [1, 2]
    for s in strokes:
        px = to_pixels(s.path, height=480, width=854)
        assert (gt[px[:, 1], px[:, 0]] == s.object_id).all() and len(px) > 30
