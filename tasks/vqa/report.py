"""Write the study report: reports/vqa/index.html (tasks/templates/vqa.html) with PNG plots.

Contents: STDAM vs baseline table (value and 95 % bootstrap CI of SRCC, PLCC, KRCC, RMSE), STDAM's
per-kind sensitivity to graded distortions (beside each ablation's when the ablation stage has run),
the ablation table (or how to run it), predicted vs true scatter for both models, training curves, rater bias / inconsistency (when per-rater scores
were cleaned), data summary (videos per split, DVC data version, git commit) and the videos acquire
could not read. Rendering, atomic writes and MLflow logging are the core's (tasks/core/report.py).
"""
from __future__ import annotations

from pathlib import Path

from tasks.core import MokuflowError, read_json, resolve
from tasks.core import report as core_report

METRIC_ORDER = ("srcc", "plcc", "krcc", "rmse")
METRIC_LABEL = {"srcc": "SRCC", "plcc": "PLCC", "krcc": "KRCC", "rmse": "RMSE"}
IMAGES = ("scatter.png", "training.png", "raters.png")


def run(params: dict, **kwargs) -> dict:
    vqa = params["vqa"]
    out_dir = resolve(params, vqa["report"]["out_dir"])
    metrics_dir = resolve(params, vqa["evaluate"]["out_dir"])
    train_dir = resolve(params, vqa["train"]["out_dir"])
    raw_dir, clean_dir = resolve(params, vqa["data"]["raw_dir"]), resolve(params, vqa["data"]["clean_dir"])

    metrics = read_json(metrics_dir / "metrics.json")
    predictions = _read_csv(metrics_dir / "predictions.csv", required=True)
    history = _read_csv(train_dir / "history.csv")
    raters = _read_csv(clean_dir / "raters.csv")
    trained = read_json(train_dir / "run.json") if (train_dir / "run.json").is_file() else {}
    run_id = trained.get("mlflow_run_id")
    acquired = read_json(raw_dir / "acquire.json") if (raw_dir / "acquire.json").is_file() else {}
    ablation_file = resolve(params, vqa["ablation"]["out_dir"]) / "ablation.json"
    ablation = read_json(ablation_file) if ablation_file.is_file() else {}

    images: dict[str, bytes] = {"scatter.png": _scatter_png(predictions, metrics_dir / "predictions.csv")}
    if history is not None and len(history):
        images["training.png"] = _training_png(history)
    if raters is not None and len(raters):
        images["raters.png"] = _raters_png(raters)
    unreadable = acquired.get("unreadable") or []
    models = _models(metrics)
    page = core_report.render(
        "vqa", models=models, table=_metrics_rows(metrics, models),
        n_test=metrics.get("n_test", "?"), images=images, has_history=history is not None,
        has_raters=raters is not None, unreadable=unreadable,
        sensitivity=_sensitivity_rows(metrics, ablation), ablation=_ablation_rows(ablation),
        ablation_note=ablation.get("note") or ("" if ablation else f"{ablation_file}: not found (the ablation "
                                                                    "stage has not run)"),
        summary=_data_summary(params, metrics, acquired, trained))
    core_report.write(out_dir, page, images, known_images=IMAGES)
    core_report.log_to_run(params, run_id, out_dir, ("index.html", *images))
    return {"index": str(out_dir / "index.html"), "images": sorted(images),
            "n_unreadable": len(unreadable), "mlflow_run_id": run_id}


# ---------------------------------------------------------------------------------------- inputs

def _read_csv(path: Path, *, required: bool = False):
    import pandas as pd

    if not path.is_file():
        if required:
            raise MokuflowError(f"{path}: not found (has the stage that writes it run?)")
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MokuflowError(f"{path}: not a readable CSV ({e})") from None


def _models(metrics: dict) -> list[str]:
    """Model entries of metrics.json (stdam first, then baseline, then any other)."""
    names = [k for k, v in metrics.items() if isinstance(v, dict) and any(m in v for m in METRIC_ORDER)]
    return sorted(names, key=lambda n: ({"stdam": 0, "baseline": 1}.get(n, 2), n))


def _data_summary(params: dict, metrics: dict, acquired: dict, trained: dict) -> dict:
    """What the model was trained on: provenance as the train stage recorded it when the run began."""
    splits = acquired.get("splits") or {}
    dirty = str(trained.get("git_dirty")).lower() == "true"
    return {
        "source": params["vqa"]["data"].get("source"),
        "videos per split": ", ".join(f"{k}: {splits[k]}" for k in sorted(splits)) or "unknown",
        "test videos scored": metrics.get("n_test", "unknown"),
        "data_version (DVC md5 of clean data)": trained.get("data_version") or "unknown",
        "git commit": f"{trained.get('git_commit') or 'unknown'}{' (dirty)' if dirty else ''}",
        "MLflow run": trained.get("mlflow_run_id") or "none",
    }


# ----------------------------------------------------------------------------------------- plots

def _scatter_png(pred, path: Path) -> bytes:
    from models.vqa.metrics import srcc

    truth = "quality"
    models = [c for c in ("stdam", "baseline") if c in pred.columns]
    if truth not in pred.columns or not models:
        raise MokuflowError(f"{path}: expected columns 'quality' and 'stdam' / 'baseline', "
                            f"got {list(pred.columns)}")
    fig, axes = core_report.figure(len(models))
    for ax, m in zip(axes[0], models):
        ok = pred[[truth, m]].dropna()
        rho = srcc(ok[truth], ok[m]) if len(ok) >= 3 else float("nan")
        ax.scatter(ok[truth], ok[m], s=16, alpha=0.75)
        lo, hi = ok[[truth, m]].min().min(), ok[[truth, m]].max().max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
        ax.set(xlabel="true quality (cleaned MOS)", ylabel=f"predicted ({m})",
               title=f"{m}: SRCC {rho:.3f}, n = {len(ok)}")
        ax.legend(loc="upper left")
    return core_report.png(fig)


def _training_png(hist) -> bytes:
    x = hist["epoch"] if "epoch" in hist else hist.index
    fig, axes = core_report.figure(2)
    for col in ("train_loss", "val_loss"):
        if col in hist:
            axes[0][0].plot(x, hist[col], marker=".", label=col)
    axes[0][0].set(xlabel="epoch", ylabel="loss", title="losses")
    for col in ("val_srcc", "val_pearson"):
        if col in hist:
            axes[0][1].plot(x, hist[col], marker=".", label=col)
    axes[0][1].set(xlabel="epoch", ylabel="correlation", title="validation agreement")
    for ax in axes[0]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return core_report.png(fig)


def _raters_png(raters) -> bytes:
    fig, axes = core_report.figure(1, width=6.0)
    ax = axes[0][0]
    if {"bias", "inconsistency"} <= set(raters.columns):
        ax.scatter(raters["bias"], raters["inconsistency"], s=18)
        ax.axvline(0.0, color="k", lw=0.6)
        # label the least consistent raters: the ones the subject model down-weights most
        for _, r in raters.nlargest(min(5, len(raters)), "inconsistency").iterrows():
            ax.annotate(str(r.get("rater_id", "")), (r["bias"], r["inconsistency"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="bias (score offset)", ylabel="inconsistency (score noise std)",
               title=f"{len(raters)} raters")
    return core_report.png(fig)


# ----------------------------------------------------------------------------------------- table

def _metrics_rows(metrics: dict, models: list[str]) -> list[dict]:
    """One row per metric: each model's value and interval, the best one marked."""
    rows = []
    for key in METRIC_ORDER:
        vals = {m: (metrics[m].get(key) or {}).get("value") for m in models}
        finite = {m: v for m, v in vals.items() if v is not None and v == v}
        best = (min if key == "rmse" else max)(finite, key=finite.get) if len(finite) > 1 else None
        cells = [{"value": (metrics[m].get(key) or {}).get("value"), "lo": (metrics[m].get(key) or {}).get("ci_low"),
                  "hi": (metrics[m].get(key) or {}).get("ci_high"), "best": m == best} for m in models]
        rows.append({"label": METRIC_LABEL[key], "lower": key == "rmse", "cells": cells})
    return rows


# ------------------------------------------------------------------------- sensitivity, ablation

def _sensitivity_rows(metrics: dict, ablation: dict) -> dict:
    """Per-kind sensitivity: STDAM's (from evaluate) and each ablation's when it has run."""
    from tasks.vqa.distortions import CAPTURE, DELIVERY, KINDS, SPATIAL

    group = {**dict.fromkeys(SPATIAL, "spatial"), **dict.fromkeys(CAPTURE, "temporal (capture)"),
             **dict.fromkeys(DELIVERY, "temporal (delivery)")}
    sens = metrics.get("sensitivity") or {}
    variants = list(ablation.get("variants") or {})
    rows = []
    order = [k for k in KINDS if k in sens] + sorted(set(sens) - set(KINDS))  # spatial, then temporal
    for kind, v in ((k, sens[k]) for k in order):
        cells = [v] + [ablation["variants"][n].get("sensitivity", {}).get(kind, {}) for n in variants]
        rows.append({"kind": kind, "group": group.get(kind, ""),
                     "cells": [{"value": c.get("value"), "lo": c.get("ci_low"), "hi": c.get("ci_high")}
                               for c in cells]})
    return {"columns": ["stdam", *variants], "rows": rows}


def _ablation_rows(ablation: dict) -> list[dict]:
    rows = []
    for name, v in (ablation.get("variants") or {}).items():
        m, d = v["metrics"]["srcc"], v["stdam_minus_variant_srcc"]
        rows.append({"name": name, "label": v.get("label", ""), "srcc": m["value"], "lo": m["ci_low"],
                     "hi": m["ci_high"], "diff": d["value"], "dlo": d["ci_low"], "dhi": d["ci_high"],
                     "verdict": v.get("verdict", "")})
    return rows
