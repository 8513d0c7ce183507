"""Acquire the raw detection data (synthetic, a local COCO layout, or an http(s) archive) into detection.data.raw_dir.

``detection.data.source``:

- ``synthetic`` (default): :func:`tasks.detection.synthetic.generate` with ``detection.synthetic``;
- ``coco``: a local COCO layout: ``detection.data.coco.images`` (folder; each image's ``file_name``
  is relative to it) and ``detection.data.coco.annotations.{train,val,test}`` (one instances JSON per
  split; null = no such split). Paths relative to params.yaml's folder;
- ``url``: a zip / tar archive fetched with pooch (``detection.data.url.href``, pinned by
  ``sha256``, cached in ``cache_dir``), extracted, then read like ``coco`` with ``images`` and
  ``annotations.{split}`` relative to the archive's root (or to its single top-level folder).

Writes, into a temp folder swapped in for raw_dir only on success (a failed acquire leaves the
previous raw data whole)::

    <raw_dir>/images/<file_name>                  hard links when possible (os.link), copies otherwise
    <raw_dir>/annotations/instances_{split}.json  annotations as delivered (faults and all: see `clean`)
    <raw_dir>/truth/instances_{split}.json        synthetic only: noise-free truth
    <raw_dir>/truth/faults_{split}.json           synthetic only: the injected annotation faults
    <raw_dir>/acquire.json                        summary: per split images / annotations / dropped, unreadable, ...

Every image is checked (fully decoded with OpenCV; a JPEG whose end-of-image marker is missing or
a PNG without its IEND chunk is truncated). Missing, unreadable or truncated images are listed in
``acquire.json["unreadable"]`` (path, reason, split, image_id) and left out together with their
annotations (counted per split as ``dropped_images`` / ``dropped_annotations``); they never stop the
run. Images whose decoded size differs from the JSON's width / height are kept and listed in
``size_mismatch``. Wrong params (unknown source, unset or missing paths) raise a one-line error
naming the params key.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from tasks.core import (
    MokuflowError,
    atomic_dir,
    atomic_path,
    link_or_copy,
    log,
    portable,
    progress,
    resolve,
    write_json,
)
from tasks.core.download import extract, fetch

SOURCES = ("synthetic", "coco", "url")
SPLITS = ("train", "val", "test")
SYNTHETIC_KEYS = ("seed", "n_train", "n_val", "n_test", "image_size", "min_object", "max_objects", "fault_rate")


def run(params: dict, **kwargs) -> dict:
    data = params["detection"]["data"]
    source = data["source"]  # the schema checked every key (tasks/detection/schema.py)
    raw_dir = resolve(params, data["raw_dir"])
    if source == "coco":
        c = data.get("coco") or {}
        images, annotations = _coco_paths(params, c, "detection.data.coco", base=None)
    elif source == "url":
        _check_url(params)
    with atomic_dir(raw_dir) as tmp:
        if source == "synthetic":
            summary = _synthetic(params, tmp)
        elif source == "coco":
            summary = from_coco(tmp, images, annotations, key="detection.data.coco")
        else:
            summary = _url(params, tmp)
        summary["source"] = source
        write_json(tmp / "acquire.json", portable(params, summary))  # no absolute path: DVC hashes it
    n_img = sum(s["images"] for s in summary["splits"].values())
    log(f"acquire: {n_img} images in {', '.join(summary['splits'])}, "
        f"{len(summary['unreadable'])} unreadable -> {raw_dir}")
    short = {k: v for k, v in summary.items() if k not in ("unreadable", "size_mismatch", "synthetic")}
    return short | {"n_unreadable": len(summary["unreadable"]), "n_size_mismatch": len(summary["size_mismatch"]),
                    "raw_dir": str(raw_dir)}


# ------------------------------------------------------------------------------------- synthetic

def _synthetic(params: dict, out: Path) -> dict:
    from tasks.detection import synthetic
    from tasks.detection.coco import load_coco

    s = params["detection"]["synthetic"]
    gen = synthetic.generate(out, **{k: s[k] for k in SYNTHETIC_KEYS}, progress=progress)
    summary = {"splits": {}, "unreadable": [], "size_mismatch": [], "images_dir": "images",
               "synthetic": gen}
    checked: dict = {}
    for split in SPLITS:
        path = out / "annotations" / f"instances_{split}.json"
        delivered = load_coco(path)
        kept, info = _keep_readable(delivered, out / "images", None, split, checked, summary)
        if info["dropped_images"]:  # never expected: keep truth and annotations consistent if so
            _dump(path, kept)
            tpath = out / "truth" / f"instances_{split}.json"
            truth, _ = _keep_readable(load_coco(tpath), out / "images", None, split, checked, None)
            _dump(tpath, truth)
        summary["splits"][split] = info
    return summary


# ------------------------------------------------------------------------------------------ coco

def _coco_paths(params: dict, c: dict, key: str, base: Path | None):
    """Resolve ``<key>.images`` and ``<key>.annotations.{split}``: against params.yaml's folder, or ``base``."""
    pfile = params.get("_file", "params.yaml")

    def at(p):
        return _inside(base, p, key) if base is not None else resolve(params, p)

    images = c.get("images")
    if not images:
        raise MokuflowError(f"{pfile}: {key}.images is not set (the folder of images)")
    anns = c.get("annotations") or {}
    if not isinstance(anns, dict):
        raise MokuflowError(f"{pfile}: {key}.annotations must map train / val / test to instances JSON files")
    extra = sorted(set(anns) - set(SPLITS))
    if extra:
        raise MokuflowError(f"{pfile}: {key}.annotations.{extra[0]}: unknown split (use train, val, test)")
    given = {s: at(anns[s]) for s in SPLITS if anns.get(s)}
    if not given:
        raise MokuflowError(f"{pfile}: {key}.annotations: set at least one of train, val, test")
    img_dir = at(images)
    if not img_dir.is_dir():
        raise MokuflowError(f"{img_dir}: images folder not found ({key}.images)")
    for s, p in given.items():
        if not p.is_file():
            raise MokuflowError(f"{p}: annotations file not found ({key}.annotations.{s})")
    return img_dir, given


def _inside(base: Path, rel, key: str) -> Path:
    p = (base / str(rel)).resolve()
    if not p.is_relative_to(base.resolve()):
        raise MokuflowError(f"params: {key}: {rel!r} points outside the archive")
    return p


def from_coco(out: Path, images_dir: Path, annotations: dict, *, key: str) -> dict:
    """Link / copy a COCO layout's readable images into ``out/images`` and write ``out/annotations``."""
    from tasks.detection.coco import load_coco

    cocos = {split: load_coco(path) for split, path in annotations.items()}  # all checked before copying
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    summary = {"splits": {}, "unreadable": [], "size_mismatch": [], "images_dir": "images",
               "annotation_files": {s: str(p) for s, p in annotations.items()}, "images_from": str(images_dir)}
    checked: dict = {}
    for split, coco in cocos.items():
        kept, info = _keep_readable(coco, images_dir, out / "images", split, checked, summary)
        _dump(out / "annotations" / f"instances_{split}.json", kept)
        summary["splits"][split] = info
    if not any(s["images"] for s in summary["splits"].values()):
        raise MokuflowError(f"{images_dir}: none of the images listed in {key}.annotations is readable "
                            f"({len(summary['unreadable'])} unreadable or missing)")
    return summary


def _keep_readable(coco: dict, images_dir: Path, dest: Path | None, split: str, checked: dict,
                   summary: dict | None) -> tuple[dict, dict]:
    """``coco`` without its unreadable images and their annotations; links / copies the others to ``dest``.

    ``checked`` caches file_name -> (reason, (h, w)) across splits; ``summary`` collects the
    ``unreadable`` and ``size_mismatch`` lists (None: do not record).
    """
    root = images_dir.resolve()
    keep, dropped = [], set()
    for im in progress(coco["images"], f"checking {split} images"):
        fn = im["file_name"]
        src = images_dir / fn
        if fn not in checked:
            if not src.resolve().is_relative_to(root):
                checked[fn] = ("file_name points outside the images folder", None)
            else:
                checked[fn] = check_image(src)
                if checked[fn][0] is None and dest is not None:
                    link_or_copy(src, dest / fn)
        reason, hw = checked[fn]
        if reason is not None:
            dropped.add(im["id"])
            if summary is not None:
                summary["unreadable"].append({"path": str(src), "reason": reason, "split": split,
                                              "image_id": im["id"]})
            continue
        if summary is not None and hw != (im["height"], im["width"]):
            summary["size_mismatch"].append({"path": str(src), "split": split, "image_id": im["id"],
                                             "json": [im["width"], im["height"]], "decoded": [hw[1], hw[0]]})
        keep.append(im)
    anns = [a for a in coco["annotations"] if a["image_id"] not in dropped]
    kept = {**coco, "images": keep, "annotations": anns}
    info = {"images": len(keep), "annotations": len(anns), "dropped_images": len(dropped),
            "dropped_annotations": len(coco["annotations"]) - len(anns)}
    return kept, info


def check_image(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(None, (height, width)) for a readable image; (reason, None) for a missing / unreadable / truncated one."""
    import cv2
    import numpy as np

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing file", None
    except OSError as e:
        return f"cannot read: {e.strerror or e}", None
    if not data:
        return "empty file", None
    if data[:3] == b"\xff\xd8\xff":
        # entropy-coded data byte-stuffs 0xFF, so FF D9 (end of image) after the last FF DA (start
        # of scan) is there in every complete JPEG, EXIF thumbnails or not
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated JPEG (no end-of-image marker after the last scan)", None
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") == -1:
        return "truncated PNG (no IEND chunk)", None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return "not a readable image (OpenCV cannot decode it)", None
    return None, (int(img.shape[0]), int(img.shape[1]))


def _dump(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


# ------------------------------------------------------------------------------------------- url

def _check_url(params: dict) -> dict:
    pfile = params.get("_file", "params.yaml")
    u = params["detection"]["data"].get("url") or {}
    href = u.get("href")
    if not href or not str(href).startswith(("http://", "https://")):
        raise MokuflowError(f"{pfile}: detection.data.url.href must be an http(s) URL, got {href!r}")
    sha = u.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha)):
        raise MokuflowError(f"{pfile}: detection.data.url.sha256 must be 64 hex digits or null, got {sha!r}")
    anns = u.get("annotations") or {}
    if not isinstance(anns, dict) or not any(anns.get(s) for s in SPLITS):
        raise MokuflowError(f"{pfile}: detection.data.url.annotations: set at least one of train, val, test "
                            f"(paths inside the archive)")
    return u


def _url(params: dict, out: Path) -> dict:
    u = _check_url(params)
    href, sha = str(u["href"]), u.get("sha256")
    cache = resolve(params, u.get("cache_dir") or ".cache/downloads")
    archive, digest = fetch(href, cache, sha256=sha, key="detection.data.url")
    root = Path(tempfile.mkdtemp(prefix=".extract.", dir=out.parent))
    try:
        extract(archive, root)
        base = root
        subdirs = [p for p in root.iterdir() if not p.name.startswith(".")]
        if not (root / str(u.get("images") or "images")).exists() and len(subdirs) == 1 and subdirs[0].is_dir():
            base = subdirs[0]  # the archive holds one top-level folder
        images, annotations = _coco_paths(params, {"images": u.get("images") or "images",
                                                   "annotations": u.get("annotations")},
                                          "detection.data.url", base=base)
        summary = from_coco(out, images, annotations, key="detection.data.url")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # paths inside the (deleted) extraction folder mean nothing later: keep them archive-relative
    for entry in summary["unreadable"] + summary["size_mismatch"]:
        entry["path"] = _relative(entry["path"], base)
    summary["annotation_files"] = {s: _relative(p, base) for s, p in summary["annotation_files"].items()}
    summary["images_from"] = _relative(summary["images_from"], base)
    return summary | {"url": href, "sha256": digest, "archive": str(archive)}


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path
