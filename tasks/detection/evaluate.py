"""Score every detector variant on the held-out test split: COCO AP with bootstrap intervals, paired
gains, the verdicts on the paper's two ideas, and how well each IoU head's predicted IoU matches the
true IoU.

The variants are one trained network ranked and suppressed five ways (``detection.evaluate.variants``):
``none`` (classification score alone), ``direct`` (IoU-Net head on the proposal's features), ``decoupled``
(purity / integrity on the proposal's features), ``dir`` (purity / integrity re-pooled on the refined
box) and ``iou_nms`` (IoU-Net's IoU-guided NMS with the direct head: boxes visited by predicted IoU,
each kept box inherits the best class score it suppresses). One network pass per image batch serves
them all. COCO stats (the 12 + AP90) come from faster-coco-eval (tasks/detection/cocoeval.py);
intervals are percentile bootstraps over test images, and the same resamples serve every variant, so
differences of variants have paired intervals.

Writes ``<detection.evaluate.out_dir>/``: ``metrics.json`` ({variant: {stat: {value, ci_low, ci_high}}},
``gain`` paired differences (``<v>-none`` for every variant, ``dir-<v>``, ``decoupled-direct``) for AP,
AP50, AP75, AP90, ``claims`` (``decoupling``: decoupled vs direct; ``hindsight``: dir vs decoupled;
each holds / reversed / not shown on the paired AP interval), ``iou_calibration`` (final detections),
``iou_calibration_bins`` (pre-NMS candidates by true-IoU bin, and the share below the heads' training
floor), ``per_class``, ``n_test``), ``curves.json`` (precision-recall curves per variant) and
``detections/<variant>.json`` (COCO results), and logs them to the pipeline's MLflow run:
``test_<stat>`` for DIR, ``<variant>_test_<stat>`` for every variant, ``gain_<a>_vs_<b>_<stat>``,
``claim_<name>_AP_gain`` / ``claim_<name>_holds`` (1 holds, -1 reversed, 0 not shown).
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, log, resolve, write_json
from tasks.detection.data import items
from tasks.detection.study import STATS

CLAIM_STATS = ("AP", "AP50", "AP75", "AP90")  # the stats every paired gain is given for
# The paper's two ideas, each one paired comparison on AP: (name, variant, baseline, what it tests).
CLAIMS = (("decoupling", "decoupled", "direct", "purity + integrity beat one IoU head (both on the proposal's features)"),
          ("hindsight", "dir", "decoupled", "re-pooling P/I on the refined box beats predicting them from the proposal"))
IOU_BINS = tuple(round(0.1 * k, 1) for k in range(11))  # calibration-by-bin edges: [0, .1), ..., [.9, 1]


def run(params: dict, **kwargs) -> dict:
    from tasks.core.tracking import current_run_id

    cfg = params["detection"]["evaluate"]
    run_id = current_run_id(params, "detection")  # before the slow part: no run to log into is an error
    metrics, curves, results = measure(params)
    out_dir = resolve(params, cfg["out_dir"])
    with atomic_dir(out_dir / "detections") as tmp:
        for variant, res in results.items():
            (tmp / f"{variant}.json").write_text(json.dumps(res, separators=(",", ":")) + "\n")
    write_json(out_dir / "curves.json", curves)
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means all are new
    _log_to_mlflow(params, run_id, metrics, out_dir)
    for v in results:  # the variants, in evaluate.variants' order
        m = metrics[v]
        log(f"{v:>9}: AP {_ci(m['AP'])}  AP50 {m['AP50']['value']:.3f}  AP75 {_ci(m['AP75'])}  AP90 {_ci(m['AP90'])}"
            + (f"  IoU pearson {metrics['iou_calibration'][v]['pearson'] or float('nan'):.3f}"
               if v in metrics["iou_calibration"] else ""))
    for name, c in metrics["claims"].items():
        log(f"evaluate: claim {name} ({c['comparison']} AP): {c['verdict']}"
            + (f" {c['value']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if c["ci_low"] is not None else ""))
    return {"metrics": str(metrics_file), "n_test": metrics["n_test"], "mlflow_run_id": run_id,
            **{f"{v}_AP": metrics[v]["AP"]["value"] for v in results},
            "claims": {k: c["verdict"] for k, c in metrics["claims"].items()}}


def measure(params: dict) -> tuple[dict, dict, dict]:
    """(metrics, curves, COCO results per variant) of ``<train.out_dir>/model.pt`` on the held-out
    split: every variant with paired bootstrap gains, the claims, and the candidates' calibration.
    The evaluate stage's, and benchmarks/gpu_detection_long.py's."""
    cfg = params["detection"]["evaluate"]
    gt, test_items = items(params, "test", min_n=2)
    cands: list = []
    dets, min_target = predict(params, [p for p, _, _ in test_items], variants=tuple(cfg["variants"]),
                               candidates_out=cands)
    image_ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])]
    metrics, curves, results = score_variants(gt, image_ids, dets, n_boot=int(cfg["bootstrap"]),
                                              seed=int(cfg["seed"]))
    metrics["iou_calibration_bins"] = candidate_calibration(gt, image_ids, cands, min_target=min_target,
                                                            score_threshold=float(cfg["score_threshold"]))
    metrics["n_test"] = len(test_items)
    return metrics, curves, results


def predict(params: dict, paths: list[str], *, variants: tuple[str, ...],
            candidates_out: list | None = None) -> tuple[dict, float]:
    """({variant: one detections dict per path}, the IoU heads' training floor ``iou_min_target``)
    from the trained model.pt (GPU when there is one); ``candidates_out`` gets what reached NMS."""
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
        dets = predict_images(detector, meta, paths, variants=variants, device=device,
                              batch_size=int(params["detection"]["train"]["batch_size"]),
                              score_threshold=float(cfg["score_threshold"]),
                              nms_threshold=float(cfg["nms_threshold"]), max_detections=int(cfg["max_detections"]),
                              candidates_out=candidates_out)
        return dets, float(detector.iou_min_target)
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
        boot = cocoeval.bootstrap_samples(gt, res, n_boot=n_boot, seed=seed, extended=True) if n_boot else None
        samples[variant] = boot
        lo_hi = _finite(cocoeval.intervals(boot)) if boot is not None else {}
        metrics[variant] = {s: {"value": stats[s], "ci_low": lo_hi.get(s, (None, None))[0],
                                "ci_high": lo_hi.get(s, (None, None))[1]} for s in STATS}
        metrics["per_class"][variant] = per_class
        curves[variant] = curve
        if not all(np.isnan(d["iou"]).all() for d in per_image):
            metrics["iou_calibration"][variant] = iou_calibration(gt, image_ids, per_image)
    if n_boot:  # paired: the same image resamples for every variant
        pairs = [(v, "none") for v in dets if v != "none" and "none" in dets]
        pairs += [("dir", v) for v in dets if v not in ("dir", "none") and "dir" in dets]
        pairs += [(a, b) for _, a, b, _ in CLAIMS if a in dets and b in dets and (a, b) not in pairs]
        for a, b in pairs:
            diff = cocoeval.intervals(samples[a] - samples[b])
            metrics["gain"][f"{a}-{b}"] = {
                s: {"value": metrics[a][s]["value"] - metrics[b][s]["value"],
                    **dict(zip(("ci_low", "ci_high"), _finite(diff)[s]))} for s in CLAIM_STATS}
    metrics["claims"] = claims(metrics["gain"])
    return metrics, curves, results


def claims(gain: dict, stat: str = "AP") -> dict:
    """The paper's two ideas (CLAIMS), each judged on one paired AP gain: ``holds`` (the 95 %
    interval lies above 0), ``reversed`` (below 0), ``not shown`` (it contains 0) or ``not measured``
    (a variant missing, or no bootstrap)."""
    from models.common.stats import interval_verdict

    out = {}
    for name, a, b, what in CLAIMS:
        g = (gain.get(f"{a}-{b}") or {}).get(stat)
        row = {"comparison": f"{a}-{b}", "stat": stat, "idea": what, "value": None, "ci_low": None, "ci_high": None}
        if g is None or g["ci_low"] is None:
            out[name] = row | {"verdict": "not measured"} | ({"value": g["value"]} if g else {})
            continue
        verdict = interval_verdict(g)
        out[name] = row | {"verdict": verdict, "value": g["value"], "ci_low": g["ci_low"], "ci_high": g["ci_high"]}
    return out


def true_ious(gt: dict, image_ids: list[int], per_image: list[dict]) -> list:
    """Per image, each detection's best IoU with a ground-truth box of its category (0 if none)."""
    import numpy as np

    by_image: dict = {i: [] for i in image_ids}
    for a in gt["annotations"]:
        if a["image_id"] in by_image and not a.get("iscrowd", 0):
            by_image[a["image_id"]].append((a["category_id"], a["bbox"]))
    out = []
    for img, det in zip(image_ids, per_image):
        box = np.asarray(det["bbox"], dtype=float).reshape(-1, 4)
        cats = np.asarray(det["category_id"])
        ious = np.zeros(len(box))
        for cid in np.unique(cats):  # one [detections x truths] IoU matrix per class
            g = np.array([b for c, b in by_image[img] if c == cid], dtype=float).reshape(-1, 4)
            if len(g):
                d = box[cats == cid]
                x1 = np.maximum(d[:, None, 0], g[None, :, 0])
                y1 = np.maximum(d[:, None, 1], g[None, :, 1])
                x2 = np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2])
                y2 = np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3])
                inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
                union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None] - inter
                ious[cats == cid] = (inter / np.maximum(union, 1e-12)).max(axis=1)
        out.append(ious)
    return out


def iou_bins(truth, pred, edges=IOU_BINS) -> list[dict]:
    """Predicted vs true IoU by true-IoU bin: per bin [lo, hi) (the last one closed) ``n``,
    ``mean_pred`` and ``mean_true`` (None for an empty bin). Non-finite predictions are left out."""
    import numpy as np

    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(truth)
    truth, pred = truth[ok], pred[ok]
    edges = np.asarray(edges, dtype=float)
    k = np.clip(np.searchsorted(edges, truth, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        m = k == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                    "mean_pred": float(pred[m].mean()) if m.any() else None,
                    "mean_true": float(truth[m].mean()) if m.any() else None})
    return out


def candidate_calibration(gt: dict, image_ids: list[int], candidates: list[dict], *, min_target: float,
                          score_threshold: float, edges=IOU_BINS) -> dict:
    """Each IoU head's predicted vs true IoU by true-IoU bin on what reaches NMS (every candidate with
    class score > ``score_threshold``, before suppression: the boxes the heads re-rank), and the share
    of those candidates whose true IoU is below ``min_target``, the floor of the heads' training
    targets (``Detector.iou_min_target``): there the heads extrapolate."""
    import numpy as np

    truth = np.concatenate(true_ious(gt, image_ids, candidates)) if candidates else np.zeros(0)
    heads = list(dict.fromkeys(k[4:] for c in candidates for k in c if k.startswith("iou_")))  # the model's order
    pred = {h: np.concatenate([c[f"iou_{h}"] for c in candidates]) for h in heads}
    return {"source": f"pre-NMS candidates (class score > {score_threshold:g})", "edges": [float(e) for e in edges],
            "n": int(len(truth)), "trained_min_iou": float(min_target),
            "share_below_min_iou": float((truth < min_target).mean()) if len(truth) else None,
            "heads": {h: iou_bins(truth, pred[h], edges) for h in heads},
            # every head on the same boxes: the final detections differ per variant, and each variant's
            # NMS keeps the boxes its own head rates high, which narrows what its correlation sees
            "correlation": {h: correlations(truth, pred[h]) for h in heads}}


def correlations(truth, pred) -> dict:
    """Pearson / Spearman of predicted vs true IoU where the truth is a match (IoU >= 0.5, COCO's
    loosest true positive) and where it overlaps at all (``_overlapping``), with the counts; None where
    fewer than 3 boxes or no spread. Non-finite predictions are left out."""
    import numpy as np
    from scipy import stats

    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    out = {}
    for key, lo in (("", 0.5), ("_overlapping", 1e-12)):
        ok = (truth >= lo) & np.isfinite(pred)
        defined = ok.sum() >= 3 and np.ptp(pred[ok]) > 0 and np.ptp(truth[ok]) > 0
        out |= {f"pearson{key}": float(stats.pearsonr(pred[ok], truth[ok])[0]) if defined else None,
                f"spearman{key}": float(stats.spearmanr(pred[ok], truth[ok])[0]) if defined else None,
                f"n{key}": int(ok.sum())}
    return out


def iou_calibration(gt: dict, image_ids: list[int], per_image: list[dict]) -> dict:
    """Pearson / Spearman of predicted vs true IoU over final detections (after NMS): over those that
    match a box of their class (true IoU >= 0.5, COCO's loosest true positive; the heads' training
    targets start at ``detection.model.iou_min_target``, default 0.4) and over all that overlap one."""
    import numpy as np

    truth = np.concatenate(true_ious(gt, image_ids, per_image)) if per_image else np.zeros(0)
    pred = np.concatenate([d["iou"] for d in per_image]) if per_image else np.zeros(0)
    return correlations(truth, pred)


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
    for key, g in (metrics.get("gain") or {}).items():
        a, b = key.split("-")
        flat |= {f"gain_{a}_vs_{b}_{s}": g[s]["value"] for s in CLAIM_STATS}
    for name, c in (metrics.get("claims") or {}).items():
        flat[f"claim_{name}_AP_gain"] = c["value"]
        flat[f"claim_{name}_holds"] = {"holds": 1.0, "reversed": -1.0, "not shown": 0.0}.get(c["verdict"])
    bins = metrics.get("iou_calibration_bins") or {}
    flat["candidates_share_below_min_iou"] = bins.get("share_below_min_iou")
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

