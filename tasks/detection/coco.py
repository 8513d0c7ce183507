"""COCO instances files: load and validate, clean annotation faults, turn into training items.

Light: standard library only (the CLI imports the stages that use this to build its --help).

:func:`load_coco` checks the *structure* (what every consumer relies on) and names the file and the
exact problem in one line; box *values* (NaN, zero or negative sizes, boxes outside the image,
unknown ids) are what :func:`clean_coco` is for, so they load fine.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

from tasks.core import MokuflowError

DROP_REASONS = ("degenerate", "outside", "duplicate", "unknown_category", "unknown_image")
FIX_REASONS = ("clipped",)


# --------------------------------------------------------------------------------------- load

def load_coco(path: str | os.PathLike) -> dict:
    """The COCO instances dict in ``path``, its structure checked; one-line MokuflowError otherwise."""
    from tasks.core import read_json

    return validate_coco(read_json(path, missing=""), Path(path))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(v) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _records(obj: dict, key: str, label: str, where) -> Iterator[tuple[int, dict, str]]:
    """(index, record, "<where>: <label> <id>") for each record of ``obj[key]``, after checking it is
    an object with an integer id that no earlier record has."""
    seen: set = set()
    for i, rec in enumerate(obj[key]):
        if not isinstance(rec, dict):
            raise MokuflowError(f"{where}: {key}[{i}] must be an object, got {_describe(rec)}")
        if not _is_int(rec.get("id")):
            raise MokuflowError(f"{where}: {key}[{i}]: id must be an integer, got {_describe(rec.get('id'))}")
        tag = f"{where}: {label} {rec['id']}"
        if rec["id"] in seen:
            raise MokuflowError(f"{tag}: id appears more than once in {key!r}")
        seen.add(rec["id"])
        yield i, rec, tag


def validate_coco(obj, where: str | os.PathLike = "COCO data") -> dict:
    """Check that ``obj`` is a COCO instances dict; raise ``MokuflowError("<where>: ...")`` if not.

    Required: ``images`` (id int unique, file_name str, width / height positive numbers),
    ``categories`` (id int unique, name str) and ``annotations`` (id int unique, image_id int,
    category_id int, bbox 4 numbers; optional iscrowd 0/1 and area number).
    """
    bad = f"{where}: not a COCO instances file"
    if not isinstance(obj, dict):
        kind = ("a list (a detection results file?)" if isinstance(obj, list) else f"a JSON {type(obj).__name__}")
        raise MokuflowError(f"{bad}: the top level is {kind}, expected an object with images, "
                            f"annotations and categories lists")
    for key in ("images", "annotations", "categories"):
        if key not in obj:
            raise MokuflowError(f"{bad}: no {key!r} list")
        if not isinstance(obj[key], list):
            raise MokuflowError(f"{bad}: {key!r} must be a list, got a JSON {type(obj[key]).__name__}")

    for _, im, tag in _records(obj, "images", "image", where):
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise MokuflowError(f"{tag}: file_name must be a non-empty string, got {_describe(im.get('file_name'))}")
        for k in ("width", "height"):
            v = im.get(k)
            if not _is_num(v) or not math.isfinite(v) or v <= 0:
                raise MokuflowError(f"{tag}: {k} must be a positive number, got {_describe(v)}")
    for _, c, tag in _records(obj, "categories", "category", where):
        if not isinstance(c.get("name"), str):
            raise MokuflowError(f"{tag}: name must be a string, got {_describe(c.get('name'))}")
    for _, a, tag in _records(obj, "annotations", "annotation", where):
        for k in ("image_id", "category_id"):
            if not _is_int(a.get(k)):
                raise MokuflowError(f"{tag}: {k} must be an integer, got {_describe(a.get(k))}")
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or not all(_is_num(v) for v in b):
            raise MokuflowError(f"{tag}: bbox must be 4 numbers [x, y, width, height], got {_describe(b)}")
        if "iscrowd" in a and a["iscrowd"] not in (0, 1):
            raise MokuflowError(f"{tag}: iscrowd must be 0 or 1, got {_describe(a['iscrowd'])}")
        if "area" in a and not _is_num(a["area"]):
            raise MokuflowError(f"{tag}: area must be a number, got {_describe(a['area'])}")
    return obj


# -------------------------------------------------------------------------------------- clean

def box_iou(a, b) -> float:
    """IoU of two xywh boxes."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def empty_report() -> dict:
    return {"kept": 0, "dropped": {r: 0 for r in DROP_REASONS}, "fixed": {r: 0 for r in FIX_REASONS}}


def clean_coco(coco: dict, *, duplicate_iou: float = 0.95) -> tuple[dict, dict]:
    """Drop or fix faulty annotations; return (clean COCO dict, report).

    Each annotation, in file order, meets these checks in turn; the first that fails decides:

    1. ``unknown_image``: its image_id is not in ``images`` (dropped);
    2. ``unknown_category``: its category_id is not in ``categories`` (dropped);
    3. ``degenerate``: a box value not finite, or width or height <= 0 (dropped);
    4. ``outside``: no overlap (of positive area) with its image (dropped);
    5. ``clipped``: partly outside its image: clipped to it, area recomputed (fixed, kept);
    6. ``duplicate``: same image and category as an annotation kept earlier, with IoU >=
       ``duplicate_iou`` to it (after clipping) (dropped).

    ``clipped`` counts the kept annotations only (a clipped box then found a duplicate counts as a
    duplicate). Kept annotations keep their ids and every other key; boxes that need no clipping
    are kept exactly as given; a missing or non-finite ``area`` becomes w * h. Images and categories are kept
    as they are. The report is ``{"kept": N, "dropped": {reason: n}, "fixed": {"clipped": n}}`` with
    every reason present.
    """
    report = empty_report()
    sizes = {im["id"]: (float(im["width"]), float(im["height"])) for im in coco["images"]}
    cats = {c["id"] for c in coco["categories"]}
    kept_boxes: dict[tuple, list] = {}
    kept = []
    for a in coco["annotations"]:
        if a["image_id"] not in sizes:
            report["dropped"]["unknown_image"] += 1
            continue
        if a["category_id"] not in cats:
            report["dropped"]["unknown_category"] += 1
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            report["dropped"]["degenerate"] += 1
            continue
        W, H = sizes[a["image_id"]]
        x2, y2 = x + w, y + h
        if x >= W or y >= H or x2 <= 0 or y2 <= 0:
            report["dropped"]["outside"] += 1
            continue
        clipped = x < 0 or y < 0 or x2 > W or y2 > H
        if clipped:
            x, y, x2, y2 = max(x, 0.0), max(y, 0.0), min(x2, W), min(y2, H)
            w, h = x2 - x, y2 - y
        box = (x, y, w, h)
        key = (a["image_id"], a["category_id"])
        if any(box_iou(box, k) >= duplicate_iou for k in kept_boxes.get(key, ())):
            report["dropped"]["duplicate"] += 1
            continue
        kept_boxes.setdefault(key, []).append(box)
        out = dict(a)
        if clipped:
            report["fixed"]["clipped"] += 1
            out["bbox"] = [x, y, w, h]
            out["area"] = w * h
        elif not _is_num(out.get("area")) or not math.isfinite(out["area"]):
            out["area"] = w * h
        out.setdefault("iscrowd", 0)
        kept.append(out)
    report["kept"] = len(kept)
    clean = {k: v for k, v in coco.items() if k not in ("images", "annotations", "categories")}
    clean.update(images=[dict(im) for im in coco["images"]], annotations=kept,
                 categories=[dict(c) for c in coco["categories"]])
    return clean, report


# ------------------------------------------------------------------------------- for training

def category_ids(coco: dict) -> list[int]:
    """The category ids, sorted."""
    return sorted(c["id"] for c in coco["categories"])


def category_names(coco: dict) -> dict[int, str]:
    """category id -> name."""
    return {c["id"]: c["name"] for c in coco["categories"]}


def label_map(coco: dict) -> dict[int, int]:
    """category id -> contiguous 0-based class index (ids sorted), for a detector's class head."""
    return {cid: i for i, cid in enumerate(category_ids(coco))}


def split_items(coco: dict, images_dir: str | os.PathLike) -> list[tuple[str, list, list]]:
    """Per image (sorted by id): (absolute image path, boxes [[x, y, w, h], ...], category ids).

    Images without annotations are included (empty lists); ``iscrowd: 1`` annotations are left out
    (they are regions to ignore, not objects to learn).
    """
    base = Path(images_dir).resolve()
    by_image: dict[int, tuple[list, list]] = {im["id"]: ([], []) for im in coco["images"]}
    for a in coco["annotations"]:
        if a.get("iscrowd", 0) or a["image_id"] not in by_image:
            continue
        boxes, cats = by_image[a["image_id"]]
        boxes.append([float(v) for v in a["bbox"]])
        cats.append(int(a["category_id"]))
    return [(str(base / im["file_name"]), *by_image[im["id"]])
            for im in sorted(coco["images"], key=lambda im: im["id"])]
