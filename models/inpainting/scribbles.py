"""DAVIS interactive scribbles: parse and check, rasterise, build, and derive from masks.

The format (davis-interactive)::

    {"scribbles": [[{"path": [[x, y], ...], "object_id": 1, "start_time": 0, "end_time": 1712}, ...],  # frame 0
                   [],                                                                               # frame 1
                   ...],                                                                             # one list a frame
     "sequence": "bear"}

``x, y`` are normalised to [0, 1] (x along the width); ``object_id`` 0 is background; times are in ms
and optional here. A stroke may carry ``"round": k`` (an extension, ignored by other DAVIS tools): the
interaction round it was given in, so a session of corrections replays in its order (``cloak``). Parsed scribbles are :class:`Stroke` s grouped by frame in :class:`Scribbles`.
Every problem raises :class:`ScribbleError` (a ``ValueError``), one line naming the file and where.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UNLABELLED = -1            # rasterised pixels no scribble covers (0 is background, a real label)
DEFAULT_THICKNESS = 0.005  # stroke width as a share of the image diagonal: 5 px at 854x480


class ScribbleError(ValueError):
    """Scribbles that are not valid DAVIS scribbles for this video; names the file and the problem."""

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


@dataclass(frozen=True)
class Stroke:
    frame: int
    object_id: int
    path: np.ndarray = field(repr=False)  # float [N, 2] of normalised (x, y) in [0, 1]
    start_time: float | None = None
    end_time: float | None = None
    round: int | None = None  # the interaction round it was given in (1, 2, ...); None: the first

    def to_dict(self) -> dict:
        d = {"path": [[float(x), float(y)] for x, y in np.asarray(self.path)], "object_id": int(self.object_id)}
        if self.start_time is not None:
            d["start_time"] = self.start_time
        if self.end_time is not None:
            d["end_time"] = self.end_time
        if self.round is not None:
            d["round"] = int(self.round)
        return d


@dataclass
class Scribbles:
    sequence: str
    frames: list[list[Stroke]]  # one list per video frame

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def object_ids(self) -> set[int]:
        return {s.object_id for s in self}

    @property
    def annotated_frames(self) -> list[int]:
        return [i for i, f in enumerate(self.frames) if f]

    def __iter__(self) -> Iterator[Stroke]:
        return (s for f in self.frames for s in f)

    def to_dict(self) -> dict:
        return {"scribbles": [[s.to_dict() for s in f] for f in self.frames], "sequence": self.sequence}


# -------------------------------------------------------------------------------------------- parse

def load_scribbles(path: str | os.PathLike, *, n_frames: int | None = None,
                   object_ids: Iterable[int] | None = None) -> Scribbles:
    """Read and check a DAVIS scribble JSON file; see :func:`parse_scribbles` for the checks."""
    p = Path(path)
    if not p.is_file():
        raise ScribbleError(p, "scribble file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScribbleError(p, "not a text file (not UTF-8)") from None
    except json.JSONDecodeError as e:
        raise ScribbleError(p, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    return parse_scribbles(data, source=p, n_frames=n_frames, object_ids=object_ids)


def parse_scribbles(data, *, source: str | os.PathLike = "scribbles", n_frames: int | None = None,
                    object_ids: Iterable[int] | None = None) -> Scribbles:
    """Check a decoded DAVIS scribble dict and return it as :class:`Scribbles`.

    Refused: not the DAVIS layout; a path point outside [0, 1] or not a finite number; a non-integer
    or negative ``object_id``, or one outside ``{0} | object_ids`` when those are given; a scribble on
    a frame the video lacks, or a frame count other than ``n_frames`` when given; no stroke at all.
    """
    if not isinstance(data, dict) or not isinstance(data.get("scribbles"), list):
        raise ScribbleError(source, "not a DAVIS scribble file: expected an object with 'scribbles' "
                                    "(one list of strokes per frame) and 'sequence'")
    sequence = data.get("sequence")
    if not isinstance(sequence, str):
        raise ScribbleError(source, f"'sequence' must be a string naming the video, got {sequence!r}")
    known = None if object_ids is None else {0, *map(int, object_ids)}
    frames = [_parse_frame(source, t, f, known) for t, f in enumerate(data["scribbles"])]
    if not any(frames):
        raise ScribbleError(source, "no scribbles: every frame's list of strokes is empty")
    if n_frames is not None:
        _check_frame_count(source, frames, n_frames)
    return Scribbles(sequence, frames)


def _check_frame_count(source, frames: list[list[Stroke]], n_frames: int) -> None:
    beyond = [t for t, f in enumerate(frames) if f and t >= n_frames]
    if beyond:
        raise ScribbleError(source, f"scribble on frame {beyond[0]} but the video has {n_frames} frames (0-{n_frames - 1})")
    if len(frames) != n_frames:
        raise ScribbleError(source, f"{len(frames)} frames of scribbles, the video has {n_frames}")


def _parse_frame(source, t: int, strokes, known: set[int] | None) -> list[Stroke]:
    if not isinstance(strokes, list):
        raise ScribbleError(source, f"scribbles[{t}] must be a list of strokes, got {type(strokes).__name__}")
    return [_parse_stroke(source, f"scribbles[{t}][{k}]", t, s, known) for k, s in enumerate(strokes)]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_stroke(source, where: str, t: int, s, known: set[int] | None) -> Stroke:
    if not isinstance(s, dict) or "path" not in s or "object_id" not in s:
        raise ScribbleError(source, f"{where} must be an object with 'path' and 'object_id'")
    oid = s["object_id"]
    if not _is_int(oid) or oid < 0:
        raise ScribbleError(source, f"{where}.object_id must be an integer >= 0 (0 = background), got {oid!r}")
    if known is not None and oid not in known:
        raise ScribbleError(source, f"{where}.object_id {oid} is not an object of this video "
                                    f"(known: {sorted(known)})")
    times = [s.get(k) for k in ("start_time", "end_time")]
    for k, v in zip(("start_time", "end_time"), times):
        if v is not None and not _is_number(v):
            raise ScribbleError(source, f"{where}.{k} must be a number (ms), got {v!r}")
    r = s.get("round")
    if r is not None and (not _is_int(r) or r < 1):
        raise ScribbleError(source, f"{where}.round must be an integer >= 1 (the interaction round), got {r!r}")
    return Stroke(t, oid, _parse_path(source, f"{where}.path", s["path"]), *times, r)


def _parse_path(source, where: str, path) -> np.ndarray:
    if not isinstance(path, list) or not path:
        raise ScribbleError(source, f"{where} must be a non-empty list of [x, y] points")
    for i, pt in enumerate(path):
        if not (isinstance(pt, list) and len(pt) == 2 and all(_is_number(v) for v in pt)):
            raise ScribbleError(source, f"{where}[{i}] must be [x, y] with finite numbers, got {pt!r}")
        if not all(0.0 <= v <= 1.0 for v in pt):
            raise ScribbleError(source, f"{where}[{i}] = {pt} is outside [0, 1] (coordinates are normalised "
                                        "to the frame size)")
    return np.asarray(path, dtype=np.float64)


# ---------------------------------------------------------------------------------------- rasterise

def thickness_px(height: int, width: int, thickness: float = DEFAULT_THICKNESS) -> int:
    """Stroke width in pixels: ``thickness`` times the diagonal, at least 1."""
    return max(1, round(thickness * math.hypot(height, width)))


def to_pixels(path: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Normalised (x, y) → integer pixel (x, y): 0 is the first pixel's centre and 1 the last's."""
    scale = np.array([width - 1, height - 1], dtype=np.float64)
    return np.rint(np.asarray(path, dtype=np.float64).reshape(-1, 2) * scale).astype(np.int32)


def to_normalised(points, *, height: int, width: int) -> np.ndarray:
    """Pixel (x, y) → normalised (x, y) in [0, 1], clipped (a canvas stroke can leave the frame)."""
    scale = np.array([max(width - 1, 1), max(height - 1, 1)], dtype=np.float64)
    return np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2) / scale, 0.0, 1.0)


def rasterize(strokes: Iterable[Stroke], *, height: int, width: int,
              thickness: float = DEFAULT_THICKNESS) -> np.ndarray:
    """A frame's strokes as an int16 label map [H, W]: each stroke's ``object_id`` along its path,
    ``UNLABELLED`` (-1) elsewhere; later strokes paint over earlier ones, as a user's would."""
    import cv2

    out = np.full((height, width), UNLABELLED, dtype=np.int16)
    px = thickness_px(height, width, thickness)
    # OpenCV draws a thick line with discs of radius (t + 1) // 2, i.e. 2 * ((t + 1) // 2) + 1 px wide:
    # t = px - 1 makes the drawn width px (odd px) or px + 1 (even px)
    px = max(1, px - 1)
    for s in strokes:
        pts = to_pixels(s.path, height=height, width=width)
        if len(pts) == 1:  # a click: polylines draws nothing for a single point
            cv2.circle(out, tuple(int(v) for v in pts[0]), (px + 1) // 2, int(s.object_id), -1)
        else:
            cv2.polylines(out, [pts.reshape(-1, 1, 2)], False, int(s.object_id), px, lineType=cv2.LINE_8)
    return out


# -------------------------------------------------------------------------------------------- build

def stroke_from_pixels(points, *, frame: int, object_id: int, height: int, width: int,
                       start_time: float | None = None, end_time: float | None = None) -> Stroke:
    """A stroke drawn in pixel coordinates of a ``height`` x ``width`` frame (e.g. a web canvas)."""
    return Stroke(int(frame), int(object_id), to_normalised(points, height=height, width=width), start_time, end_time)


def build_scribbles(strokes: Iterable[Stroke], *, n_frames: int, sequence: str) -> dict:
    """The DAVIS scribble dict of ``strokes`` for a video of ``n_frames`` frames, checked as parsed files are."""
    frames: list[list[Stroke]] = [[] for _ in range(n_frames)]
    for s in strokes:
        if not 0 <= s.frame < n_frames:
            raise ScribbleError(sequence or "scribbles", f"stroke on frame {s.frame} but the video has {n_frames} frames")
        frames[s.frame].append(s)
    data = Scribbles(sequence, frames).to_dict()
    parse_scribbles(data, source=sequence or "scribbles", n_frames=n_frames)  # same rules as a loaded file
    return data


def save_scribbles(path: str | os.PathLike, data: dict | Scribbles) -> Path:
    """Write a scribble dict (or :class:`Scribbles`) as JSON, atomically."""
    from models.common.io import atomic_file

    d = data.to_dict() if isinstance(data, Scribbles) else data
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(d), encoding="utf-8")
    return Path(path)


# ------------------------------------------------------------------------------------ from a mask

def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a binary mask (all False when the mask is empty)."""
    import cv2

    m = np.asarray(mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(m.shape, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # first of equal areas: deterministic
    return labels == biggest


def skeleton_path(mask: np.ndarray) -> np.ndarray:
    """An ordered pixel path (x, y) int [N, 2] along the skeleton of ``mask``'s largest region.

    The path is the skeleton's longest route (a double breadth-first sweep: farthest pixel from any
    pixel, then farthest from that), so a user-like stroke follows the region's main axis. Every
    point lies inside the region. Empty [0, 2] for an empty mask.
    """
    from skimage.morphology import skeletonize

    region = largest_region(mask)
    if not region.any():
        return np.zeros((0, 2), dtype=np.int32)
    ys, xs = np.nonzero(skeletonize(region))
    if len(ys) == 0:  # skeletonize can erase a 1-2 px blob: its own pixel nearest the centroid
        ys, xs = np.nonzero(region)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        return np.array([[xs[k], ys[k]]], dtype=np.int32)
    order = _longest_route(ys, xs)
    return np.stack([xs[order], ys[order]], axis=1).astype(np.int32)


def _longest_route(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Indices of skeleton pixels along an approximately longest 8-connected route."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order

    index = {(int(y), int(x)): i for i, (y, x) in enumerate(zip(ys, xs))}
    rows, cols = [], []
    for i, (y, x) in enumerate(zip(ys, xs)):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                j = index.get((int(y) + dy, int(x) + dx))
                if j is not None and j != i:
                    rows.append(i)
                    cols.append(j)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ys), len(ys))).tocsr()
    far = breadth_first_order(graph, 0, directed=False)[0][-1]  # BFS visits by hop count: last is farthest
    order, pred = breadth_first_order(graph, far, directed=False)
    route = [order[-1]]
    while pred[route[-1]] >= 0:
        route.append(pred[route[-1]])
    return np.array(route[::-1])


def from_mask(mask: np.ndarray, *, frame: int = 0, object_id: int | None = None,
              start_time: float | None = None, end_time: float | None = None) -> list[Stroke]:
    """Strokes along the skeleton of a mask: a binary mask (bool, or 0/255) or any mask with
    ``object_id`` given gives one stroke (``object_id``, default 1) on its largest non-zero region;
    a label map one stroke per label in 1..254 (255 is DAVIS's void)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D [H, W], got shape {m.shape}")
    h, w = m.shape
    binary = m.dtype == bool or set(np.unique(m).tolist()) <= {0, 255}  # a 0/255 PNG is one object, not void
    if object_id is not None or binary:
        targets = [(object_id if object_id is not None else 1, m != 0)]
    else:
        targets = [(int(v), m == v) for v in np.unique(m) if 0 < v < 255]
    strokes = []
    for oid, region in targets:
        path = skeleton_path(region)
        if len(path):
            strokes.append(stroke_from_pixels(path, frame=frame, object_id=oid, height=h, width=w,
                                              start_time=start_time, end_time=end_time))
    return strokes
