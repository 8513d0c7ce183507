"""Score every detector variant on the held-out test split: COCO AP with bootstrap intervals, and how
well each variant's predicted IoU matches the true IoU of its detections.

The variants are one trained network ranked and suppressed four ways (``detection.evaluate.variants``):
``none`` (classification score alone), ``direct`` (IoU-Net head on the proposal's features), ``decoupled``
(purity / integrity on the proposal's features) and ``dir`` (purity / integrity re-pooled on the refined
box). One network pass per image batch serves them all. COCO stats come from faster-coco-eval
(tasks/detection/cocoeval.py); intervals are percentile bootstraps over test images, and the same
resamples serve every variant, so ``dir`` minus another variant has a paired interval too.

Writes ``<detection.evaluate.out_dir>/``: ``metrics.json`` ({variant: {stat: {value, ci_low, ci_high}}},
``gain`` paired differences, ``iou_calibration``, ``per_class``, ``n_test``), ``curves.json``
(precision-recall curves per variant) and ``detections/<variant>.json`` (COCO results), and logs them
to the pipeline's MLflow run: ``test_<stat>`` for DIR, ``<variant>_test_<stat>`` for every variant.
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, log, resolve, write_json
from tasks.detection.data import items
from tasks.detection.study import STATS

CLAIM_STATS = ("AP", "AP75", "AP50")


def run(params: dict, **kwargs) -> dict:
    from tasks.core.tracking import current_run_id

    cfg = params["detection"]["evaluate"]
    run_id = current_run_id(params, "detection")  # before the slow part: no run to log into is an error
    gt, test_items = items(params, "test", min_n=2)
    dets = predict(params, [p for p, _, _ in test_items], variants=tuple(cfg["variants"]))
    image_ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])]
    metrics, curves, results = score_variants(gt, image_ids, dets, n_boot=int(cfg["bootstrap"]),
                                              seed=int(cfg["seed"]))
    metrics["n_test"] = len(test_items)
    out_dir = resolve(params, cfg["out_dir"])
    with atomic_dir(out_dir / "detections") as tmp:
        for variant, res in results.items():
            (tmp / f"{variant}.json").write_text(json.dumps(res, separators=(",", ":")) + "\n")
    write_json(out_dir / "curves.json", curves)
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means all are new
    _log_to_mlflow(params, run_id, metrics, out_dir)
    for v in dets:
        m = metrics[v]
        log(f"{v:>9}: AP {_ci(m['AP'])}  AP50 {m['AP50']['value']:.3f}  AP75 {_ci(m['AP75'])}"
            + (f"  IoU pearson {metrics['iou_calibration'][v]['pearson'] or float('nan'):.3f}"
               if v in metrics["iou_calibration"] else ""))
    return {"metrics": str(metrics_file), "n_test": len(test_items), "mlflow_run_id": run_id,
            **{f"{v}_AP": metrics[v]["AP"]["value"] for v in dets}}


def predict(params: dict, paths: list[str], *, variants: tuple[str, ...]) -> dict:
    """{variant: one detections dict per path} from the trained model.pt (GPU when there is one)."""
    import torch

    from models.detection.inference import ImageReadError, ModelFileError, load_model, predict_images

    cfg = params["detection"]["evaluate"]
    model_pt = resolve(params, params["detection"]["train"]["out_dir"]) / "model.pt"
    try:
        detector, meta = load_model(model_pt)
    except ModelFileError as e:
        raise MokuflowError(f"{e} (run the train stage first)") from None
    missing = [v for v in variants if v not in detector.variants]
    if missing:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: detection.evaluate.variants {missing} have "
                            f"no head in {model_pt} (heads: {list(detector.variants)})")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"evaluate: {len(variants)} variants on {len(paths)} test images ({device})")
    try:
        return predict_images(detector, meta, paths, variants=variants, device=device,
                              batch_size=int(params["detection"]["train"]["batch_size"]),
                              score_threshold=float(cfg["score_threshold"]),
                              nms_threshold=float(cfg["nms_threshold"]), max_detections=int(cfg["max_detections"]))
    except ImageReadError as e:
        raise MokuflowError(str(e)) from None


def score_variants(gt: dict, image_ids: list[int], dets: dict, *, n_boot: int, seed: int):
    """(metrics, curves, COCO results per variant) for detections ``dets`` on ``gt``."""
    import numpy as np

    from models.detection.inference import to_coco_results
    from tasks.detection import cocoeval

    metrics: dict = {"iou_calibration": {}, "per_class": {}, "gain": {}}
    curves: dict = {}
    results: dict = {}
    samples: dict = {}
    for variant, per_image in dets.items():
        res = to_coco_results(image_ids, per_image)
        extra = {k: np.concatenate([d[k] for d in per_image]) if per_image else np.zeros(0)
                 for k in ("score", "iou", "purity", "integrity")}
        for j, r in enumerate(res):  # kept beside COCO's fields: the report plots predicted IoU
            r.update({"cls_score": float(extra["score"][j]),
                      **{k: (None if np.isnan(extra[k][j]) else float(extra[k][j])) for k in ("iou", "purity", "integrity")}})
        results[variant] = res
        stats, per_class, curve = cocoeval.evaluate(gt, res)
        boot = cocoeval.bootstrap_samples(gt, res, n_boot=n_boot, seed=seed) if n_boot else None
        samples[variant] = boot
        lo_hi = _finite(cocoeval.intervals(boot)) if boot is not None else {}
        metrics[variant] = {s: {"value": stats[s], "ci_low": lo_hi.get(s, (None, None))[0],
                                "ci_high": lo_hi.get(s, (None, None))[1]} for s in STATS}
        metrics["per_class"][variant] = per_class
        curves[variant] = curve
        if not all(np.isnan(d["iou"]).all() for d in per_image):
            metrics["iou_calibration"][variant] = iou_calibration(gt, image_ids, per_image)
    if "dir" in dets and n_boot:  # paired: the same image resamples for every variant
        for other in (v for v in dets if v != "dir"):
            diff = samples["dir"] - samples[other]
            metrics["gain"][f"dir-{other}"] = {
                s: {"value": metrics["dir"][s]["value"] - metrics[other][s]["value"],
                    **dict(zip(("ci_low", "ci_high"), _finite(cocoeval.intervals(diff))[s]))}
                for s in CLAIM_STATS}
    return metrics, curves, results


def true_ious(gt: dict, image_ids: list[int], per_image: list[dict]) -> list:
    """Per image, each detection's best IoU with a ground-truth box of its category (0 if none)."""
    import numpy as np

    by_image: dict = {i: [] for i in image_ids}
    for a in gt["annotations"]:
        if a["image_id"] in by_image and not a.get("iscrowd", 0):
            by_image[a["image_id"]].append((a["category_id"], a["bbox"]))
    out = []
    for img, det in zip(image_ids, per_image):
        ious = np.zeros(len(det["rank"]))
        for j, (cid, box) in enumerate(zip(det["category_id"], det["bbox"])):
            g = np.array([b for c, b in by_image[img] if c == cid], dtype=float).reshape(-1, 4)
            if len(g):
                x1, y1 = np.maximum(box[0], g[:, 0]), np.maximum(box[1], g[:, 1])
                x2 = np.minimum(box[0] + box[2], g[:, 0] + g[:, 2])
                y2 = np.minimum(box[1] + box[3], g[:, 1] + g[:, 3])
                inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
                ious[j] = float((inter / (box[2] * box[3] + g[:, 2] * g[:, 3] - inter)).max())
        out.append(ious)
    return out


def iou_calibration(gt: dict, image_ids: list[int], per_image: list[dict]) -> dict:
    """Pearson / Spearman of predicted vs true IoU: over detections that match a box of their class
    (true IoU >= 0.5, the range the IoU heads are trained on) and over all that overlap one."""
    import numpy as np
    from scipy import stats

    truth = np.concatenate(true_ious(gt, image_ids, per_image)) if per_image else np.zeros(0)
    pred = np.concatenate([d["iou"] for d in per_image]) if per_image else np.zeros(0)
    out = {}
    for key, lo in (("", 0.5), ("_overlapping", 1e-12)):
        ok = (truth >= lo) & np.isfinite(pred)
        defined = ok.sum() >= 3 and np.ptp(pred[ok]) > 0 and np.ptp(truth[ok]) > 0
        out |= {f"pearson{key}": float(stats.pearsonr(pred[ok], truth[ok])[0]) if defined else None,
                f"spearman{key}": float(stats.spearmanr(pred[ok], truth[ok])[0]) if defined else None,
                f"n{key}": int(ok.sum())}
    return out


def _log_to_mlflow(params: dict, run_id: str, metrics: dict, out_dir: Path) -> None:
    from tasks.core.tracking import finite, resume_run

    flat = {}
    for variant in (v for v in metrics if isinstance(metrics[v], dict) and "AP" in metrics[v]):
        for s in STATS:
            flat[f"{variant}_test_{s}"] = metrics[variant][s]["value"]
        for side in ("ci_low", "ci_high"):
            flat[f"{variant}_test_AP_{side}"] = metrics[variant]["AP"][side]
        cal = metrics["iou_calibration"].get(variant) or {}
        flat[f"{variant}_iou_pearson"] = cal.get("pearson")
    if "dir" in metrics:
        flat |= {f"test_{s}": metrics["dir"][s]["value"] for s in STATS}
    flat["test_n"] = metrics["n_test"]
    with resume_run(params, run_id) as mlflow:
        mlflow.log_metrics(finite(flat))
        for f in ("metrics.json", "curves.json"):
            mlflow.log_artifact(str(out_dir / f), artifact_path="evaluate")
    log(f"evaluate: logged to MLflow run {run_id}")


def _finite(intervals: dict) -> dict:
    """NaN bounds (a stat undefined in every resample, e.g. no small object) become None (JSON null)."""
    return {k: tuple(None if v != v else v for v in lo_hi) for k, lo_hi in intervals.items()}


def _ci(m: dict) -> str:
    if m["ci_low"] is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"

