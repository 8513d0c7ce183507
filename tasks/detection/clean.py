"""Clean COCO annotations: drop unknown-id, degenerate, outside and duplicate boxes, clip partly-outside ones.

Two ways to run it:

- ``mokuflow detection clean --annotations RAW.json --out DIR``: one file; writes
  ``DIR/instances.json`` (the clean COCO) and ``DIR/cleanup.json`` (the report
  ``{"kept": N, "dropped": {reason: n}, "fixed": {"clipped": n}}``, every reason always present).
- ``mokuflow detection clean`` (what dvc.yaml runs): every split whose
  ``<detection.data.raw_dir>/annotations/instances_{split}.json`` exists, into::

      <detection.data.clean_dir>/
          train/instances.json, train/cleanup.json
          val/...   test/...                    (the splits found in raw_dir)
          clean.json                            {"splits": {split: report}, "images_dir", "duplicate_iou", "raw_dir"}

  ``--out DIR`` alone puts that layout in DIR instead of clean_dir.

Images are not copied: they stay in ``<raw_dir>/images`` (``clean.json["images_dir"]``; the
``file_name`` of each image is relative to it). The output folder is written into a temp folder
swapped in only on success: a file that is not COCO JSON fails with one line naming it and leaves
the previous output whole. Rules: :func:`tasks.detection.coco.clean_coco`; the duplicate threshold
is ``detection.clean.duplicate_iou``. Never imports torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, atomic_path, log, resolve, write_json

SPLITS = ("train", "val", "test")


def add_arguments(parser) -> None:
    parser.add_argument("--annotations", default=None, metavar="RAW.json",
                        help="one COCO instances file to clean (default: every split in "
                             "<detection.data.raw_dir>/annotations/)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: detection.data.clean_dir)")


def run(params: dict, annotations: str | None = None, out: str | None = None) -> dict:
    det = params.get("detection") or {}  # --annotations / --out work without a detection section
    iou = _duplicate_iou(params)
    if annotations:
        if not out:
            raise MokuflowError("--annotations needs --out (the folder for instances.json and cleanup.json)")
        # paths given on the command line are the user's: relative to the cwd, not to params.yaml
        return clean_file(Path(annotations).resolve(), Path(out).resolve(), duplicate_iou=iou)
    data = det.get("data") or {}
    pfile = params.get("_file", "params.yaml")
    for key in ("raw_dir",) + (() if out else ("clean_dir",)):
        if not data.get(key):
            raise MokuflowError(f"{pfile}: detection.data.{key} is not set")
    raw_dir = resolve(params, data["raw_dir"])
    out_dir = Path(out).resolve() if out else resolve(params, data["clean_dir"])
    return clean_splits(raw_dir, out_dir, duplicate_iou=iou)


def _duplicate_iou(params: dict) -> float:
    v = ((params.get("detection") or {}).get("clean") or {}).get("duplicate_iou", 0.95)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: detection.clean.duplicate_iou must be "
                            f"a number in (0, 1], got {v!r}")
    return float(v)


def _dump(path: Path, obj) -> None:
    """Compact JSON: instances files get large."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def clean_file(annotations: Path, out_dir: Path, *, duplicate_iou: float = 0.95) -> dict:
    """Clean one instances file into ``out_dir/instances.json`` + ``out_dir/cleanup.json``."""
    from tasks.detection.coco import clean_coco, load_coco

    coco = load_coco(annotations)  # everything that can fail happens before out_dir is touched
    clean, report = clean_coco(coco, duplicate_iou=duplicate_iou)
    with atomic_dir(out_dir) as tmp:
        _dump(tmp / "instances.json", clean)
        write_json(tmp / "cleanup.json", report)
    log(f"clean: {annotations.name}: kept {report['kept']}, dropped {_nonzero(report['dropped'])}, "
        f"fixed {_nonzero(report['fixed'])} -> {out_dir}")
    return {**report, "annotations": str(annotations), "out": str(out_dir)}


def clean_splits(raw_dir: Path, out_dir: Path, *, duplicate_iou: float = 0.95) -> dict:
    """Clean every ``raw_dir/annotations/instances_{split}.json`` into ``out_dir/{split}/``."""
    from tasks.detection.coco import clean_coco, load_coco

    files = {s: raw_dir / "annotations" / f"instances_{s}.json" for s in SPLITS}
    files = {s: p for s, p in files.items() if p.exists()}
    if not files:
        raise MokuflowError(f"{raw_dir / 'annotations'}: no instances_{{train,val,test}}.json "
                            f"(run `mokuflow detection acquire` or pass --annotations)")
    results = {}
    for split, path in files.items():
        results[split] = clean_coco(load_coco(path), duplicate_iou=duplicate_iou)
    reports = {s: r for s, (_, r) in results.items()}
    # no absolute paths: clean_dir's DVC hash (the run's data version) must not depend on the machine
    summary = {"splits": reports, "images_dir": "<raw_dir>/images", "duplicate_iou": duplicate_iou}
    with atomic_dir(out_dir) as tmp:
        for split, (clean, report) in results.items():
            (tmp / split).mkdir()
            _dump(tmp / split / "instances.json", clean)
            write_json(tmp / split / "cleanup.json", report)
        write_json(tmp / "clean.json", summary)
    for split, r in reports.items():
        log(f"clean {split}: kept {r['kept']}, dropped {_nonzero(r['dropped'])}, fixed {_nonzero(r['fixed'])}")
    log(f"clean: {', '.join(reports)} -> {out_dir}")
    return {**summary, "out": str(out_dir)}


def _nonzero(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items() if v) or "none"
