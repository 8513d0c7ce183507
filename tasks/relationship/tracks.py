"""Per-frame character tracks of a clip: where each of the two characters of a pair is, frame by frame.

File format (JSON, one file per clip, written by a face / body tracker)::

    {
      "fps": 12,
      "tracks": {
        "<character_id>": [[frame, x0, y0, x1, y1], ...],
        ...
      }
    }

- ``fps``: frames per second of the frame numbers (a positive number);
- ``tracks``: one entry per character (ids are strings, as the label tables write them); each row
  is a frame index (an integer >= 0, at most once per character) and the box in pixels, top-left
  ``(x0, y0)`` and bottom-right ``(x1, y1)`` with ``x1 > x0``, ``y1 > y0``. Frames where a character
  is not seen are simply absent; rows may come in any order.

:func:`read_tracks` reads the two characters of a pair and refuses, with one
:class:`~tasks.core.MokuflowError` line naming the file, a file that is not such JSON, lacks one of
the two characters (the message lists the characters it has), or holds a malformed row (the
character and the row's position are named). Other characters in the file are ignored.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError, read_json


@dataclass
class PairTracks:
    fps: float
    boxes: dict[str, np.ndarray]  # character id -> [n, 5] float rows (frame, x0, y0, x1, y1), by frame

    def common_frames(self) -> np.ndarray:
        """The frames where both characters are seen (sorted)."""
        a, b = (v[:, 0].astype(np.int64) for v in self.boxes.values())
        return np.intersect1d(a, b)


def read_tracks(path: str | os.PathLike, pair: tuple[str, str]) -> PairTracks:
    """The tracks of the two characters ``pair`` in the tracks JSON ``path`` (format: module docstring)."""
    path = Path(path)
    a, b = (str(c) for c in pair)
    if a == b:
        raise MokuflowError(f"{path}: a pair needs two different characters, got {a!r} twice")
    doc = read_json(path, missing="the tracks of this clip")
    if not isinstance(doc, dict) or not isinstance(doc.get("tracks"), dict):
        raise MokuflowError(f"{path}: not a tracks file: expected an object with \"fps\" and \"tracks\" "
                            f"(character id -> [[frame, x0, y0, x1, y1], ...])")
    fps = _fps(path, doc.get("fps"))
    tracks = doc["tracks"]
    lacking = [c for c in (a, b) if c not in tracks]
    if lacking:
        raise MokuflowError(f"{path}: no track for character {lacking[0]!r} (the file has "
                            f"{sorted(tracks)[:10]}{' ...' if len(tracks) > 10 else ''})")
    return PairTracks(fps=fps, boxes={c: _rows(path, c, tracks[c]) for c in (a, b)})


def _fps(path: Path, fps) -> float:
    ok = isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
    if not ok:
        raise MokuflowError(f"{path}: \"fps\" must be a positive number, got {fps!r}")
    return float(fps)


def _rows(path: Path, char: str, rows) -> np.ndarray:
    where = f"{path}: track of {char!r}"
    if not isinstance(rows, list) or not rows:
        raise MokuflowError(f"{where}: expected a non-empty list of [frame, x0, y0, x1, y1] rows")
    for k, r in enumerate(rows):
        if not (isinstance(r, list) and len(r) == 5
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)):
            raise MokuflowError(f"{where}: row {k} is not [frame, x0, y0, x1, y1] numbers: {str(r)[:60]}")
    arr = np.asarray(rows, dtype=float)
    frame = arr[:, 0]
    checks = [
        (~np.isfinite(arr).all(axis=1), "has a value that is not finite"),
        ((frame < 0) | (frame != np.round(frame)), "has a frame that is not an integer >= 0"),
        ((arr[:, 3] <= arr[:, 1]) | (arr[:, 4] <= arr[:, 2]), "is not a box (needs x1 > x0 and y1 > y0)"),
    ]
    for bad, problem in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise MokuflowError(f"{where}: row {k} {problem}: {rows[k]}")
    arr = arr[np.argsort(frame, kind="stable")]
    dup = np.flatnonzero(np.diff(arr[:, 0]) == 0)
    if len(dup):
        raise MokuflowError(f"{where}: frame {int(arr[dup[0], 0])} appears more than once")
    return arr
