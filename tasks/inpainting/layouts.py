"""Real inpainting data as annotators deliver it: three layouts read into one listing, masks unified to
object ids and cleaned, scribbles checked.

Layouts (each read into a :class:`Listing` of :class:`Sequence` s: name, frame paths, the mask path of
each frame or None, scribble files)::

    DAVIS          JPEGImages/480p/<seq>/*.jpg  Annotations/480p/<seq>/*.png  Scribbles/<seq>/NNN.json
                   (also without the resolution folder, as the synthetic acquire writes it)
    YouTube-VOS    JPEGImages/<seq>/*.jpg  Annotations/<seq>/*.png (sparse: some frames)  meta.json
    object removal (ProPainter) a frames folder + a masks folder (one mask per frame, same stems, or a
                   single mask for every frame); a root holding pairs ``<seq>/`` + ``<seq>_mask/``

Masks (:func:`read_object_ids`) come as palette PNGs (DAVIS, YouTube-VOS: indices are ids, 255 void),
binary 0/1 or 0/255 images, or anti-aliased 0-255 grey (thresholded at 128): each is turned into a
uint8 id map (0 background, 1.. objects, 255 void). :func:`clean_mask` removes speckles (object
components) and fills holes (enclosed background) below a size threshold and counts both;
:func:`clean_sequence` does a whole sequence into one cleanup report. :func:`validate_scribbles`
checks a scribble file against its sequence (coordinates in [0, 1], frame indices in range, known
object ids). Problems are one-line :class:`tasks.core.MokuflowError` s naming the file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VOID = 255
MASK_KINDS = ("palette", "binary", "binary255", "grey", "ids")


@dataclass
class Sequence:
    name: str
    frames: list[Path]
    masks: list[Path | None]           # one per frame, None where the frame has no annotation
    scribbles: list[Path] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def annotated(self) -> list[int]:
        return [i for i, m in enumerate(self.masks) if m is not None]


@dataclass
class Listing:
    layout: str                        # "davis", "youtube-vos" or "object-removal"
    root: Path
    sequences: list[Sequence]

    def __getitem__(self, name: str) -> Sequence:
        for s in self.sequences:
            if s.name == name:
                return s
        raise KeyError(f"{self.root}: no sequence {name!r} (has {[s.name for s in self.sequences]})")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sequences]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _masks_by_stem(folder: Path | None, frames: list[Path]) -> list[Path | None]:
    if folder is None or not folder.is_dir():
        return [None] * len(frames)
    by_stem = {p.stem: p for p in _images(folder)}
    return [by_stem.get(f.stem) for f in frames]


def _selected(names: list[str], sequences, root: Path) -> list[str]:
    if sequences is None:
        return names
    missing = [s for s in sequences if s not in names]
    if missing:
        raise MokuflowError(f"{root}: no sequence {missing[0]!r} (has {names})")
    return list(sequences)


# -------------------------------------------------------------------------------------------- DAVIS

def load_davis(root, *, resolution: str = "480p", sequences=None) -> Listing:
    """A DAVIS folder: ``JPEGImages/<resolution>/<seq>`` (or ``JPEGImages/<seq>``), the matching
    ``Annotations`` and ``Scribbles/<seq>/*.json``. Sequences are the frame folders (an annotation or
    scribble folder without frames is not a sequence); ``ImageSets`` are not needed."""
    root = Path(root)
    images = root / "JPEGImages" / resolution
    annotations = root / "Annotations" / resolution
    if not images.is_dir():
        images, annotations = root / "JPEGImages", root / "Annotations"
    if not images.is_dir():
        raise MokuflowError(f"{root}: not a DAVIS folder (no JPEGImages/{resolution}/ or JPEGImages/)")
    seqs = []
    names = [d.name for d in _dirs(images) if _images(d)]
    for name in _selected(names, sequences, root):
        frames = _images(images / name)
        scribbles = sorted((root / "Scribbles" / name).glob("*.json")) if (root / "Scribbles" / name).is_dir() else []
        seqs.append(Sequence(name, frames, _masks_by_stem(annotations / name, frames), scribbles))
    if not seqs:
        raise MokuflowError(f"{images}: no sequence folders with frames")
    return Listing("davis", root, seqs)


# -------------------------------------------------------------------------------------- YouTube-VOS

def load_youtube_vos(root, *, sequences=None) -> Listing:
    """A YouTube-VOS split: ``JPEGImages/<seq>/*.jpg``, ``Annotations/<seq>/*.png`` (palette, often
    every 5th frame only) and ``meta.json`` (``{"videos": {seq: {"objects": {id: {"category",
    "frames"}}}}}``, kept as each sequence's ``meta``; object ids come from it)."""
    root = Path(root)
    images, meta_file = root / "JPEGImages", root / "meta.json"
    if not images.is_dir():
        raise MokuflowError(f"{root}: not a YouTube-VOS folder (no JPEGImages/)")
    meta = {}
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MokuflowError(f"{meta_file}: not JSON ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
            raise MokuflowError(f"{meta_file}: not a YouTube-VOS meta.json (expected an object with 'videos')")
    videos = meta.get("videos", {})
    names = [d.name for d in _dirs(images) if _images(d)]
    seqs = []
    for name in _selected(names, sequences, root):
        frames = _images(images / name)
        info = videos.get(name, {})
        objects = info.get("objects", {}) if isinstance(info, dict) else {}
        try:
            ids = sorted(int(k) for k in objects)
        except (TypeError, ValueError):
            raise MokuflowError(f"{meta_file}: videos.{name}.objects keys must be object ids, got {list(objects)}") from None
        seqs.append(Sequence(name, frames, _masks_by_stem(root / "Annotations" / name, frames), [],
                             {"object_ids": ids, "objects": objects}))
    if not seqs:
        raise MokuflowError(f"{images}: no sequence folders with frames")
    return Listing("youtube-vos", root, seqs)


# ----------------------------------------------------------------------------------- object removal

def load_object_removal(frames_dir, masks_dir=None) -> Listing:
    """ProPainter-style object removal: ``frames_dir`` (a folder of frames) and ``masks_dir`` (default
    ``<frames_dir>_mask``): one mask per frame by stem, or a single mask for every frame. A folder
    holding such pairs (``<seq>/`` + ``<seq>_mask/``) gives one sequence per pair."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise MokuflowError(f"{frames_dir}: folder not found")
    if masks_dir is None and not _images(frames_dir):
        pairs = [d for d in _dirs(frames_dir) if not d.name.endswith("_mask") and _images(d)
                 and (frames_dir / f"{d.name}_mask").is_dir()]
        if not pairs:
            raise MokuflowError(f"{frames_dir}: no frames and no <seq>/ + <seq>_mask/ folder pairs")
        return Listing("object-removal", frames_dir, [_removal_sequence(d, frames_dir / f"{d.name}_mask") for d in pairs])
    masks_dir = Path(masks_dir) if masks_dir is not None else frames_dir.with_name(f"{frames_dir.name}_mask")
    return Listing("object-removal", frames_dir.parent, [_removal_sequence(frames_dir, masks_dir)])


def _removal_sequence(frames_dir: Path, masks_dir: Path) -> Sequence:
    frames = _images(frames_dir)
    if not frames:
        raise MokuflowError(f"{frames_dir}: no images in the folder (looked for {', '.join(IMAGE_SUFFIXES)})")
    if not masks_dir.is_dir():
        raise MokuflowError(f"{masks_dir}: masks folder not found")
    masks = _images(masks_dir)
    if not masks:
        raise MokuflowError(f"{masks_dir}: no mask images in the folder")
    if len(masks) == 1 and len(frames) > 1:
        return Sequence(frames_dir.name, frames, [masks[0]] * len(frames), [], {"single_mask": True})
    by_frame = _masks_by_stem(masks_dir, frames)
    missing = [f.name for f, m in zip(frames, by_frame) if m is None]
    if missing:
        raise MokuflowError(f"{masks_dir}: no mask for frame {missing[0]} ({len(missing)} of {len(frames)} "
                            "frames have none; masks are matched by file stem)")
    return Sequence(frames_dir.name, frames, by_frame, [], {"single_mask": False})


def detect_layout(root) -> str:
    """"davis", "youtube-vos" or "object-removal" from what a folder holds."""
    root = Path(root)
    if (root / "JPEGImages").is_dir():
        if (root / "meta.json").is_file() and not (root / "Scribbles").is_dir():
            return "youtube-vos"
        return "davis"
    if root.is_dir():
        return "object-removal"
    raise MokuflowError(f"{root}: folder not found")


def load(root, **kwargs) -> Listing:
    """Any of the three layouts (:func:`detect_layout`)."""
    layout = detect_layout(root)
    loader = {"davis": load_davis, "youtube-vos": load_youtube_vos, "object-removal": load_object_removal}[layout]
    return loader(root, **kwargs)


# -------------------------------------------------------------------------------------------- masks

def read_object_ids(path: str | os.PathLike, *, threshold: int = 128) -> tuple[np.ndarray, str]:
    """(uint8 id map [H, W], kind) of one mask file. Kinds: ``palette`` (indices as ids, 255 void),
    ``binary`` (0/1), ``binary255`` (0/255 → 0/1), ``ids`` (a grey map of a few small ids, kept), ``grey``
    (anti-aliased 0-255 → 1 where >= ``threshold``)."""
    from models.common.frames import FrameReadError, _png_palette, read_mask

    p = Path(path)
    try:
        m = read_mask(p)
        palette = p.suffix.lower() == ".png" and _png_palette(p) is not None
    except FrameReadError as e:
        raise MokuflowError(str(e)) from None
    return unify_mask(m, palette=palette, threshold=threshold)


def unify_mask(mask: np.ndarray, *, palette: bool = False, threshold: int = 128) -> tuple[np.ndarray, str]:
    """An id map (see :func:`read_object_ids`) of a decoded mask; ``palette``: its values are indices."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {m.shape}")
    m = m.astype(np.uint8) if m.dtype != np.uint8 else m
    if palette:
        return m.copy(), "palette"
    values = set(np.unique(m).tolist())
    if values <= {0, 1}:
        return m.copy(), "binary"
    if values <= {0, 255}:
        return (m == 255).astype(np.uint8), "binary255"
    if max(values) < 32 and len(values) <= 16:  # a grey PNG of ids 0, 1, 2, ...
        return m.copy(), "ids"
    return (m >= threshold).astype(np.uint8), "grey"


def _min_pixels(min_area: float, shape) -> int:
    """``min_area`` >= 1 is pixels; below 1 a share of the frame."""
    return int(min_area) if min_area >= 1 else int(np.ceil(min_area * shape[0] * shape[1]))


def clean_mask(ids: np.ndarray, *, min_area: float = 0.0005) -> tuple[np.ndarray, dict]:
    """Speckles (object components smaller than ``min_area``, never an object's largest) set to background and holes (background
    components enclosed by one object, smaller than ``min_area``) filled with that object. Void pixels
    stay void. Returns the cleaned map and ``{"speckles", "speckle_pixels", "holes", "hole_pixels"}``."""
    import cv2

    out = np.asarray(ids, dtype=np.uint8).copy()
    limit = _min_pixels(min_area, out.shape)
    report = {"speckles": 0, "speckle_pixels": 0, "holes": 0, "hole_pixels": 0}
    if limit <= 0:
        return out, report
    for o in (v for v in np.unique(out).tolist() if v not in (0, VOID)):
        n, lab, stats, _ = cv2.connectedComponentsWithStats((out == o).astype(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 0
        for k in range(1, n):
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area < limit and k != largest:  # a small object is kept: only its stray bits go
                out[lab == k] = 0
                report["speckles"] += 1
                report["speckle_pixels"] += area
        n, lab, stats, _ = cv2.connectedComponentsWithStats((out != o).astype(np.uint8), connectivity=4)
        h, w = out.shape
        for k in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[k])
            if area >= limit or x == 0 or y == 0 or x + bw == w or y + bh == h:
                continue  # big, or reaches the frame's edge: not enclosed
            region = lab == k
            if np.all(out[region] == 0):  # only background inside: another object or void stays
                out[region] = o
                report["holes"] += 1
                report["hole_pixels"] += area
    return out, report


def clean_sequence(seq: Sequence, *, min_area: float = 0.0005, threshold: int = 128) -> tuple[dict, dict]:
    """({frame stem: cleaned id map} for the annotated frames, cleanup report): mask kinds seen,
    speckles / holes removed and their pixels, object ids, frames with a mask of another size."""
    from models.common.frames import image_size

    out, kinds = {}, {}
    total = {"speckles": 0, "speckle_pixels": 0, "holes": 0, "hole_pixels": 0}
    objects: set[int] = set()
    frame_hw = image_size(seq.frames[0]) if seq.frames else None
    for frame, mask in zip(seq.frames, seq.masks):
        if mask is None:
            continue
        ids, kind = read_object_ids(mask, threshold=threshold)
        if frame_hw is not None and ids.shape != tuple(frame_hw):
            raise MokuflowError(f"{mask}: mask is {ids.shape[1]}x{ids.shape[0]} px, the frames are "
                                f"{frame_hw[1]}x{frame_hw[0]}")
        kinds[kind] = kinds.get(kind, 0) + 1
        ids, rep = clean_mask(ids, min_area=min_area)
        for k, v in rep.items():
            total[k] += v
        objects |= {v for v in np.unique(ids).tolist() if v not in (0, VOID)}
        out[frame.stem] = ids
    report = {"sequence": seq.name, "n_frames": seq.n_frames, "n_masks": len(out), "kinds": kinds,
              "object_ids": sorted(objects), **total}
    return out, report


# ---------------------------------------------------------------------------------------- scribbles

def validate_scribbles(path, *, n_frames: int, object_ids) -> object:
    """The :class:`~models.inpainting.scribbles.Scribbles` of a file, checked against its sequence:
    every point in [0, 1], one stroke list per frame (``n_frames``), object ids in ``{0} | object_ids``;
    otherwise a one-line MokuflowError naming the file and the stroke."""
    from models.inpainting.scribbles import ScribbleError, load_scribbles

    try:
        return load_scribbles(path, n_frames=int(n_frames), object_ids=[int(o) for o in object_ids])
    except ScribbleError as e:
        raise MokuflowError(str(e)) from None


def validate_sequence_scribbles(seq: Sequence, *, object_ids) -> list:
    """Every scribble file of ``seq`` checked (:func:`validate_scribbles`), in file order."""
    return [validate_scribbles(p, n_frames=seq.n_frames, object_ids=object_ids) for p in seq.scribbles]
