"""Write the inpainting report: reports/inpainting/index.html (tasks/templates/inpainting.html).

Contents: the paper's two claims with their paired intervals and a verdict; J, F and J&F after each robot
round (table and plot); the restoration table (PSNR / SSIM in the hole and on the whole frame, model vs
Telea per frame and the temporal copy, each on the true and the predicted masks); strips of frames
(input, predicted mask, result, truth) of the best and the worst test video; training curves; the
cleanup report. Rendering, atomic writes and MLflow logging are the core's (tasks/core/report.py).
"""
from __future__ import annotations

import numpy as np

from tasks.core import read_json, resolve
from tasks.core import report as core_report

IMAGES = ("rounds.png", "best.png", "worst.png", "training.png")
METHOD_LABEL = {
    "model": "shared-memory model (predicted masks)",
    "telea_true_mask": "Telea per frame, true mask",
    "telea_pred_mask": "Telea per frame, predicted mask (segment-then-inpaint)",
    "temporal_true_mask": "aligned copy from other frames, true mask",
    "temporal_pred_mask": "aligned copy from other frames, predicted mask",
}
RESTORATION_LABEL = {"hole_psnr": "PSNR in the hole (dB)", "hole_ssim": "SSIM in the hole",
                     "frame_psnr": "PSNR, whole frame (dB)", "frame_ssim": "SSIM, whole frame"}


def run(params: dict, **kwargs) -> dict:
    import pandas as pd

    inp = params["inpainting"]
    out_dir = resolve(params, inp["report"]["out_dir"])
    metrics_dir = resolve(params, inp["evaluate"]["out_dir"])
    train_dir = resolve(params, inp["train"]["out_dir"])
    metrics = read_json(metrics_dir / "metrics.json")
    trained = read_json(train_dir / "run.json") if (train_dir / "run.json").is_file() else {}
    history = pd.read_csv(train_dir / "history.csv") if (train_dir / "history.csv").is_file() else None
    clean_dir = resolve(params, inp["data"]["clean_dir"])
    cleaned = read_json(clean_dir / "clean.json") if (clean_dir / "clean.json").is_file() else {}

    images = {"rounds.png": _rounds_png(metrics)}
    strips = {}
    n_strips = int(inp["report"]["n_strips"])
    for tag in ("best", "worst")[:n_strips]:
        f = metrics_dir / "examples" / f"{tag}.npz"
        if f.is_file():
            with np.load(f) as z:
                strips[tag] = str(z["name"])
                images[f"{tag}.png"] = _strip_png({k: z[k] for k in z.files}, tag)
    if history is not None and len(history):
        images["training.png"] = _training_png(history)
    rest = metrics.get("restoration") or {}
    page = core_report.render(
        "inpainting", metrics=metrics, claims=_claims(metrics), rounds=_round_rows(metrics),
        restoration=[{"method": m, "label": METHOD_LABEL.get(m, m), "cells": [rest[m][k] for k in RESTORATION_LABEL]}
                     for m in METHOD_LABEL if m in rest],
        restoration_cols=list(RESTORATION_LABEL.values()), strips=strips, images=images,
        cleanup=cleaned.get("totals") or {}, refused=cleaned.get("refused_scribbles") or [],
        left_out=cleaned.get("left_out") or {},
        summary={"source": inp["data"]["source"], "test videos": metrics.get("n_test"),
                 "robot rounds": metrics.get("rounds"),
                 "data_version (DVC md5 of raw + clean data)": trained.get("data_version") or "unknown",
                 "git commit": trained.get("git_commit") or "unknown",
                 "MLflow run": trained.get("mlflow_run_id") or "none"})
    core_report.write(out_dir, page, images, known_images=IMAGES)
    core_report.log_to_run(params, trained.get("mlflow_run_id"), out_dir, ("index.html", *images))
    return {"index": str(out_dir / "index.html"), "images": sorted(images),
            "claims": {k: c["verdict"] for k, c in _claims(metrics).items()}, "mlflow_run_id": trained.get("mlflow_run_id")}


def _claims(metrics: dict) -> dict:
    c = metrics["claim"]
    return {k: c[k] for k in ("shared_memory_vs_per_frame", "corrections_raise_jf") if k in c}


def _round_rows(metrics: dict) -> list[dict]:
    pr = metrics["per_round"]
    return [{"round": i + 1, "J": pr["J"][i], "F": pr["F"][i], "JF": pr["JF"][i]} for i in range(len(pr["JF"]))]


def _rounds_png(metrics: dict) -> bytes:
    fig, axes = core_report.figure(width=5.5, height=3.6)
    ax = axes[0][0]
    for key, label in (("J", "J (region IoU)"), ("F", "F (boundary)"), ("JF", "J&F")):
        stats = metrics["per_round"][key]
        x = np.arange(1, len(stats) + 1)
        v = np.array([s["value"] if s["value"] is not None else np.nan for s in stats], float)
        lo = np.array([s["ci_low"] if s["ci_low"] is not None else np.nan for s in stats], float)
        hi = np.array([s["ci_high"] if s["ci_high"] is not None else np.nan for s in stats], float)
        ax.plot(x, v, marker="o", label=label)
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_xlabel("robot round")
    ax.set_ylabel("score (mean over test videos, 95 % CI)")
    ax.set_ylim(0, 1)
    ax.legend()
    return core_report.png(fig)


def _strip_png(z: dict, tag: str) -> bytes:
    k = len(z["index"])
    fig, axes = core_report.figure(ncols=k, nrows=4, width=2.4, height=1.7)
    for j in range(k):
        overlay = z["frames"][j].astype(float)
        m = z["masks"][j].astype(bool)
        overlay[m] = 0.5 * overlay[m] + 0.5 * np.array([255, 0, 160])
        for r, (img, title) in enumerate(((z["frames"][j], "input"), (overlay.astype(np.uint8), "predicted mask"),
                                          (z["results"][j], "result"), (z["truth"][j], "truth"))):
            ax = axes[r][j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:
                ax.set_title(f"frame {int(z['index'][j])}", fontsize=8)
    fig.suptitle(f"{tag} test video: {z['name']}", fontsize=9)
    return core_report.png(fig)


def _training_png(history) -> bytes:
    fig, axes = core_report.figure(ncols=2, width=4.5, height=3.2)
    axes[0][0].plot(history["epoch"] + 1, history["train_loss"], marker="o")
    axes[0][0].set_title("train loss (mask + restoration)")
    axes[0][1].plot(history["epoch"] + 1, history["val_j"], marker="o", color="C2")
    axes[0][1].set_title("validation J (round 1)")
    for ax in axes[0]:
        ax.set_xlabel("epoch")
    return core_report.png(fig)
