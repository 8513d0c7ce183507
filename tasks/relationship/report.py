"""Write the relationship report: reports/relationship/index.html (tasks/templates/relationship.html).

Contents: the paper's two claims (fusion beats every single modality; the synchronous fusion beats the
other fusions) with their paired intervals and verdicts; the variants side by side (accuracy, macro-F1,
coarse accuracy, 95 % intervals; plot); per-class F1 and the confusion matrix of the model; annotator
quality from the clean stage (Dawid-Skene accuracy per annotator, agreement with majority vote);
training curves; the fine and coarse confusion matrices; a few test clips (a frame with the pair's
boxes, their subtitles, true and predicted label); the clips left out because a file could not be read. Rendering, atomic writes and MLflow logging are the core's (tasks/core/report.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.core import read_json, resolve
from tasks.core import report as core_report

IMAGES = ("variants.png", "training.png")
MAX_ANNOTATORS = 40
VARIANT_LABEL = {"sync": "synchronous modal-temporal attention", "concat": "concatenation + temporal attention",
                 "late": "late fusion (per-modality heads, probabilities averaged)",
                 "visual": "visual alone (same model)", "audio": "audio alone (same model)",
                 "text": "text alone (same model)", "without_visual": "no visual at test time (same model)",
                 "without_audio": "no audio at test time (same model)", "without_text": "no subtitles at test time (same model)"}


def run(params: dict, **kwargs) -> dict:
    import pandas as pd

    rel = params["relationship"]
    out_dir = resolve(params, rel["report"]["out_dir"])
    metrics = read_json(resolve(params, rel["evaluate"]["out_dir"]) / "metrics.json")
    train_dir = resolve(params, rel["train"]["out_dir"])
    trained = read_json(train_dir / "run.json") if (train_dir / "run.json").is_file() else {}
    history = pd.read_csv(train_dir / "history.csv") if (train_dir / "history.csv").is_file() else None
    clean_dir = resolve(params, rel["data"]["clean_dir"])
    cleaned = read_json(clean_dir / "clean.json") if (clean_dir / "clean.json").is_file() else {}
    annotators = pd.read_csv(clean_dir / "annotators.csv", keep_default_na=False, dtype={"annotator_id": str}) \
        if (clean_dir / "annotators.csv").is_file() else None

    images = {"variants.png": _variants_png(metrics)}
    if history is not None and len(history):
        images["training.png"] = _training_png(history)
    examples = []
    for e in metrics.get("examples", []):  # the evaluate stage's frames, copied beside the page
        src = resolve(params, rel["evaluate"]["out_dir"]) / e["image"]
        if src.is_file():
            name = f"example-{Path(e['image']).name}"
            images[name] = src.read_bytes()
            examples.append({**e, "image": name})
    skipped = [{"stage": "train", **r} for r in trained.get("skipped_clips", [])] + \
              [{"stage": "evaluate", **r} for r in metrics.get("skipped_clips", [])]
    main = metrics["model"]
    variants = [{"name": k, "label": VARIANT_LABEL.get(k, k), "main": k == main, "cells": [v[m] for m in
                 ("accuracy", "macro_f1", "coarse_accuracy")], "diff": metrics["differences"].get(k, {}).get("macro_f1")}
                for k, v in metrics["variants"].items()]
    people = []
    if annotators is not None:
        top = annotators.sort_values(["n_labels", "annotator_id"], ascending=[False, True]).head(MAX_ANNOTATORS)
        people = [{"id": r["annotator_id"], "n": int(r["n_labels"]), "accuracy": float(r["accuracy"])}
                  for _, r in top.iterrows()]
    page = core_report.render(
        "relationship", metrics=metrics, claims=metrics["claims"], variants=variants, images=images,
        per_class=[{"label": lab, **s, "n": metrics["class_counts"].get(lab)} for lab, s in metrics["per_class_f1"].items()],
        labels=metrics["labels"], confusion=metrics["confusion"], annotators=people, examples=examples,
        coarse_labels=metrics.get("coarse_labels", []), coarse_confusion=metrics.get("coarse_confusion", []),
        skipped=skipped,
        n_annotators=0 if annotators is None else len(annotators),
        mean_annotator_accuracy=None if annotators is None or not len(annotators) else float(annotators["accuracy"].mean()),
        cleanup={k: cleaned[k] for k in ("n_clips", "n_labels", "n_annotators", "n_missing_labels", "n_unlabelled_clips",
                                         "n_repeated_labels", "n_iter", "converged", "mean_confidence",
                                         "agreement_with_majority_vote") if k in cleaned},
        summary={"source": rel["data"]["source"], "test clip pairs": metrics.get("n_test"),
                 "data_version (DVC md5 of raw + clean data)": trained.get("data_version") or "unknown",
                 "git commit": trained.get("git_commit") or "unknown",
                 "MLflow run": trained.get("mlflow_run_id") or "none"})
    stale = [p.name for p in out_dir.glob("example-*.png")] if out_dir.is_dir() else []
    core_report.write(out_dir, page, images, known_images=(*IMAGES, *stale))
    core_report.log_to_run(params, trained.get("mlflow_run_id"), out_dir, ("index.html", *images))
    return {"index": str(out_dir / "index.html"), "images": sorted(images),
            "claims": {k: c["verdict"] for k, c in metrics["claims"].items()}, "mlflow_run_id": trained.get("mlflow_run_id")}


def _variants_png(metrics: dict) -> bytes:
    fig, axes = core_report.figure(width=6.0, height=3.4)
    ax = axes[0][0]
    names = list(metrics["variants"])
    v = np.array([metrics["variants"][k]["macro_f1"]["value"] or 0.0 for k in names])
    lo = np.array([metrics["variants"][k]["macro_f1"]["ci_low"] if metrics["variants"][k]["macro_f1"]["ci_low"]
                   is not None else np.nan for k in names])
    hi = np.array([metrics["variants"][k]["macro_f1"]["ci_high"] if metrics["variants"][k]["macro_f1"]["ci_high"]
                   is not None else np.nan for k in names])
    colours = ["C0" if k == metrics["model"] else ("C1" if k in ("visual", "audio", "text") else "C2") for k in names]
    ax.bar(names, v, color=colours)
    err = np.nan_to_num(np.stack([v - lo, hi - v]), nan=0.0).clip(min=0)
    ax.errorbar(names, v, yerr=err, fmt="none", ecolor="k", capsize=3)
    ax.set_ylabel("test macro-F1 (95 % CI)")
    ax.set_ylim(0, 1)
    return core_report.png(fig)


def _training_png(history) -> bytes:
    fig, axes = core_report.figure(ncols=2, width=4.5, height=3.2)
    axes[0][0].plot(history["epoch"] + 1, history["train_loss"], marker="o", label="train")
    axes[0][0].plot(history["epoch"] + 1, history["val_loss"], marker="o", label="val")
    axes[0][0].set_title("loss (fine + coarse cross-entropy)")
    axes[0][0].legend()
    for k, c in (("val_macro_f1", "C2"), ("val_accuracy", "C3"), ("val_coarse_accuracy", "C4")):
        axes[0][1].plot(history["epoch"] + 1, history[k], marker="o", color=c, label=k)
    axes[0][1].set_title("validation")
    axes[0][1].set_ylim(0, 1)
    axes[0][1].legend()
    for ax in axes[0]:
        ax.set_xlabel("epoch")
    return core_report.png(fig)
