"""The detection data every model stage reads: clean's per-split COCO files and acquire's images.
One reader for train, evaluate, report and register."""
from __future__ import annotations

from pathlib import Path

from tasks.core import MokuflowError, resolve


def images_dir(params: dict) -> Path:
    return resolve(params, params["detection"]["data"]["raw_dir"]) / "images"


def coco_file(params: dict, split: str) -> Path:
    return resolve(params, params["detection"]["data"]["clean_dir"]) / split / "instances.json"


def load_split(params: dict, split: str) -> dict:
    """The cleaned COCO dict of a split (validated), or an error naming the file."""
    from tasks.detection.coco import load_coco

    path = coco_file(params, split)
    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the clean stage first)")
    return load_coco(path)


def items(params: dict, split: str, *, min_n: int = 1) -> tuple[dict, list]:
    """(coco dict, [(image path, boxes xywh, category ids)]) of a split, at least ``min_n`` images."""
    from tasks.detection.coco import split_items

    coco = load_split(params, split)
    rows = split_items(coco, images_dir(params))
    if len(rows) < min_n:
        raise MokuflowError(f"{coco_file(params, split)}: {len(rows)} image(s); need at least {min_n}")
    return coco, rows


def categories(coco: dict) -> tuple[list[int], list[str]]:
    """(sorted category ids, their names): the detector's classes, in label order."""
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    return [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]
