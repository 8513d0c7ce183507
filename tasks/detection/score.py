"""Score COCO detections against ground truth: the 12 COCO bbox stats into metrics.json (faster-coco-eval).

``mokuflow detection score --gt GT.json --dt DT.json --out DIR`` writes ``DIR/metrics.json``:
``{"AP": ..., "AP50": ..., "AP75": ..., "APs": ..., "APm": ..., "APl": ..., "AR1": ..., "AR10": ...,
"AR100": ..., "ARs": ..., "ARm": ..., "ARl": ...}`` (COCO's order, full precision, -1 where
undefined), atomically (other files in DIR are left alone). GT is a COCO instances file, DT a COCO
results list ``[{"image_id", "category_id", "bbox", "score"}]``. A missing, non-JSON or non-COCO
input fails with one line naming the file. The import path stays light (numpy, faster-coco-eval:
no torch, no mlflow), so a whole `mokuflow detection score` process beats a pycocotools script
(benchmarks/coco_score_vs_pycocotools.py).
"""
from __future__ import annotations

from pathlib import Path

from tasks.core import MokuflowError, log


def add_arguments(parser) -> None:
    parser.add_argument("--gt", default=None, metavar="GT.json", help="COCO instances file (ground truth)")
    parser.add_argument("--dt", default=None, metavar="DT.json", help="COCO detection results (a JSON list)")
    parser.add_argument("--out", default=None, metavar="DIR", help="folder for metrics.json")


def run(params: dict | None = None, gt: str | None = None, dt: str | None = None,
        out: str | None = None) -> dict:
    missing = [f"--{k}" for k, v in (("gt", gt), ("dt", dt), ("out", out)) if not v]
    if missing:
        raise MokuflowError(f"detection score needs {', '.join(missing)} (--gt GT.json --dt DT.json --out DIR)")
    return score_files(gt, dt, out)


def score_files(gt, dt, out) -> dict:
    """Score ``dt`` against ``gt`` and write ``out/metrics.json``; returns the stats and the path."""
    import time

    from tasks.detection.cocoeval import score, write_metrics

    # paths given on the command line are the user's: relative to the cwd
    gt, dt, out = Path(gt).resolve(), Path(dt).resolve(), Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise MokuflowError(f"{out}: --out must be a folder, this is a file")
    t0 = time.perf_counter()
    stats = score(gt, dt)
    write_metrics(out / "metrics.json", stats)
    log(f"score: AP {stats['AP']:.4f}, AP50 {stats['AP50']:.4f}, AR100 {stats['AR100']:.4f} "
        f"({time.perf_counter() - t0:.1f} s) -> {out / 'metrics.json'}")
    return {**stats, "metrics": str(out / "metrics.json")}
