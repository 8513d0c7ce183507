"""Write the detection report: reports/detection/index.html (tasks/templates/detection.html).

Contents: the variants table (COCO stats + AP90 with 95 % bootstrap intervals), every variant's paired
gain over ``none`` and DIR's over the others, whether the paper's claim holds here and the verdicts on
its two ideas (decoupling, hindsight), predicted vs true IoU by IoU bin on the candidates that reach
NMS, per-class AP, precision-recall curves,
predicted vs true IoU per IoU head, example test images with ground truth and detections drawn,
training curves, and what clean and acquire dropped. Rendering, atomic writes and MLflow logging are
the core's (tasks/core/report.py).
"""
from __future__ import annotations

from tasks.core import read_json, resolve
from tasks.core import report as core_report
from tasks.detection.data import items

TABLE_STATS = ("AP", "AP50", "AP75", "AP90", "APs", "APm", "APl", "AR100")
GAIN_STATS = ("AP", "AP50", "AP75", "AP90")
VARIANTS = ("none", "direct", "decoupled", "dir", "iou_nms")
IMAGES = ("pr.png", "iou.png", "examples.png", "training.png")
LABEL = {"none": "no IoU head (score only)", "direct": "direct IoU head (IoU-Net)",
         "decoupled": "decoupled P/I, no re-alignment", "dir": "full DIR (P/I, re-pooled)",
         "iou_nms": "IoU-guided NMS (IoU-Net, direct head)"}
CLAIM_TITLE = {"decoupling": "Decoupling", "hindsight": "Hindsight"}


def run(params: dict, **kwargs) -> dict:
    import pandas as pd

    det = params["detection"]
    out_dir = resolve(params, det["report"]["out_dir"])
    metrics_dir = resolve(params, det["evaluate"]["out_dir"])
    train_dir = resolve(params, det["train"]["out_dir"])
    metrics = read_json(metrics_dir / "metrics.json")
    curves = read_json(metrics_dir / "curves.json")
    variants = [v for v in VARIANTS if v in metrics]
    gt, test_items = items(params, "test", min_n=1)
    results = {v: read_json(metrics_dir / "detections" / f"{v}.json") for v in variants}
    trained = read_json(train_dir / "run.json") if (train_dir / "run.json").is_file() else {}
    history = pd.read_csv(train_dir / "history.csv") if (train_dir / "history.csv").is_file() else None
    clean_dir = resolve(params, det["data"]["clean_dir"])
    cleaned = read_json(clean_dir / "clean.json") if (clean_dir / "clean.json").is_file() else {}
    raw = resolve(params, det["data"]["raw_dir"])
    acquired = read_json(raw / "acquire.json") if (raw / "acquire.json").is_file() else {}

    images = {"pr.png": _pr_png(curves, variants)}
    if metrics.get("iou_calibration"):
        images["iou.png"] = _iou_png(gt, results, metrics)
    if int(det["report"]["n_examples"]) > 0 and "dir" in results:
        images["examples.png"] = _examples_png(gt, test_items, results["dir"], int(det["report"]["n_examples"]))
    if history is not None and len(history):
        images["training.png"] = _training_png(history)
    page = core_report.render(
        "detection", variants=variants, label=LABEL, stats=TABLE_STATS, metrics=metrics,
        best={s: max(variants, key=lambda v: metrics[v][s]["value"]) for s in TABLE_STATS},
        verdict=verdict(metrics), per_class=_per_class(metrics, variants), images=images,
        gain_stats=GAIN_STATS, gains_over_none=[(v, metrics["gain"][f"{v}-none"]) for v in variants
                                                if f"{v}-none" in (metrics.get("gain") or {})],
        other_gains={k: g for k, g in (metrics.get("gain") or {}).items() if not k.endswith("-none")},
        claims=metrics.get("claims") or {}, claim_title=CLAIM_TITLE,
        bins=metrics.get("iou_calibration_bins"),
        cleanup=cleaned.get("splits") or {}, unreadable=acquired.get("unreadable") or [],
        summary={"source": det["data"]["source"], "test images": metrics.get("n_test"),
                 "data_version (DVC md5 of clean data)": trained.get("data_version") or "unknown",
                 "git commit": trained.get("git_commit") or "unknown",
                 "MLflow run": trained.get("mlflow_run_id") or "none"})
    core_report.write(out_dir, page, images, known_images=IMAGES)
    core_report.log_to_run(params, trained.get("mlflow_run_id"), out_dir, ("index.html", *images))
    return {"index": str(out_dir / "index.html"), "images": sorted(images), "verdict": verdict(metrics)["text"],
            "claims": {k: c["verdict"] for k, c in (metrics.get("claims") or {}).items()},
            "mlflow_run_id": trained.get("mlflow_run_id")}


def verdict(metrics: dict) -> dict:
    """Does full DIR beat no IoU head and the direct IoU head on AP and AP75 (paired 95 % intervals)?"""
    gains = metrics.get("gain") or {}
    rows = [(k, s, g[s]) for k in ("dir-none", "dir-direct") if (g := gains.get(k)) for s in ("AP", "AP75")]
    if not rows:
        return {"kind": "unknown", "text": "not measured (needs the dir, none and direct variants and bootstrap > 0)"}
    sure = all(x["ci_low"] is not None and x["ci_low"] > 0 for _, _, x in rows)
    ahead = all(x["value"] > 0 for _, _, x in rows)
    detail = "; ".join(f"{k.replace('dir-', 'vs ')} {s} {x['value']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]"
                       for k, s, x in rows)
    if sure:
        return {"kind": "holds", "text": f"holds here: full DIR beats both baselines on AP and AP75 ({detail})"}
    if ahead:
        return {"kind": "partly", "text": "not shown here: DIR is ahead on every comparison but some paired "
                                          f"intervals include zero ({detail})"}
    return {"kind": "fails", "text": f"does not hold here: DIR is not ahead on every comparison ({detail})"}


def _per_class(metrics: dict, variants: list[str]) -> list[dict]:
    names = list((metrics.get("per_class") or {}).get(variants[0], {})) if variants else []
    return [{"name": n, "values": [metrics["per_class"][v].get(n) for v in variants]} for n in names]


# ----------------------------------------------------------------------------------------- plots

def _pr_png(curves: dict, variants: list[str]) -> bytes:
    fig, axes = core_report.figure(2)
    for ax, key, title in zip(axes[0], ("iou50", "iou75"), ("IoU 0.50", "IoU 0.75")):
        for v in variants:
            ax.plot(curves[v]["recall"], [max(p, 0) for p in curves[v][key]["mean"]], label=LABEL[v])
        ax.set(xlabel="recall", ylabel="precision (mean over classes)", title=f"precision-recall, {title}",
               xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=8)
    return core_report.png(fig)


def _iou_png(gt: dict, results: dict, metrics: dict) -> bytes:
    import numpy as np

    from tasks.detection.evaluate import true_ious

    cal = metrics["iou_calibration"]
    floor = (metrics.get("iou_calibration_bins") or {}).get("trained_min_iou", 0.4)  # detection.model.iou_min_target
    fig, axes = core_report.figure(len(cal), width=4.2)
    image_ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])]
    for ax, v in zip(axes[0], cal):
        per_image = _per_image(results[v], image_ids)
        truth = np.concatenate(true_ious(gt, image_ids, per_image))
        pred = np.concatenate([d["iou"] for d in per_image])
        ok = truth > 0
        ax.scatter(truth[ok], pred[ok], s=4, alpha=0.3)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.axvline(floor, color="grey", lw=0.6, ls=":")  # the heads' training targets start there
        r = cal[v].get("pearson")
        ax.set(xlabel="true IoU", ylabel="predicted IoU", xlim=(0, 1), ylim=(0, 1),
               title=f"{v}: Pearson {r:.2f} (IoU >= 0.5)" if r is not None else v)
    return core_report.png(fig)


def _per_image(results: list[dict], image_ids: list[int]) -> list[dict]:
    """COCO results (with iou kept by evaluate) back to per-image arrays for the IoU scatter."""
    import numpy as np

    rows: dict = {i: [] for i in image_ids}
    for r in results:
        rows[r["image_id"]].append(r)
    out = []
    for i in image_ids:
        rs = rows[i]
        out.append({"bbox": np.array([r["bbox"] for r in rs], float).reshape(-1, 4),
                    "category_id": np.array([r["category_id"] for r in rs], int),
                    "iou": np.array([np.nan if r.get("iou") is None else r["iou"] for r in rs], float),
                    "rank": np.array([r["score"] for r in rs], float)})
    return out


def _examples_png(gt: dict, test_items: list, results: list[dict], n: int, min_rank: float = 0.3) -> bytes:
    import cv2
    from matplotlib.patches import Rectangle

    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = core_report.figure(cols, width=4.0, height=4.0, nrows=rows)
    ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= min(n, len(test_items)):
            continue
        path, boxes, cats = test_items[k]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            continue
        ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        for (x, y, w, h) in boxes:
            ax.add_patch(Rectangle((x, y), w, h, fill=False, ec="lime", lw=1.2))
        for r in (r for r in results if r["image_id"] == ids[k] and r["score"] >= min_rank):
            x, y, w, h = r["bbox"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, ec="red", lw=1.0, ls="--"))
            ax.text(x, y, f"{names.get(r['category_id'], '?')} {r['score']:.2f}", color="red", fontsize=6)
        ax.set_title(f"{len(boxes)} objects (green: truth, red: DIR, rank >= {min_rank})", fontsize=8)
    return core_report.png(fig)


def _training_png(hist) -> bytes:
    fig, axes = core_report.figure(2)
    if "train_loss" in hist:
        axes[0][0].plot(hist["epoch"], hist["train_loss"], marker=".")
    axes[0][0].set(xlabel="epoch", ylabel="loss", title="training loss")
    if "val_ap50" in hist:
        axes[0][1].plot(hist["epoch"], hist["val_ap50"], marker=".")
    axes[0][1].set(xlabel="epoch", ylabel="AP50", title="validation AP50 (checkpoint monitor)")
    return core_report.png(fig)


