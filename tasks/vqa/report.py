"""Write the study report: reports/vqa/index.html with PNG plots beside it (works offline).

Contents: STDAM vs baseline table (value and 95 % bootstrap CI of SRCC, PLCC, KRCC, RMSE), predicted
vs true scatter for both models, training curves, rater bias / inconsistency (when per-rater scores
were cleaned), data summary (videos per split, DVC data version, git commit) and the videos acquire
could not read. Every figure is rendered in memory first, then each file is replaced atomically, HTML
last; the folder itself is not swapped, so other files in it (e.g. a register decision kept there
by an older layout) survive.
The files are also logged to the pipeline's MLflow run under ``report/`` when run.json exists.
"""
from __future__ import annotations

import datetime as _dt
import html
import io
from pathlib import Path

from tasks.core import MokuflowError, atomic_path, log, read_json, resolve

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

    images: dict[str, bytes] = {"scatter.png": _scatter_png(predictions, metrics_dir / "predictions.csv")}
    if history is not None and len(history):
        images["training.png"] = _training_png(history)
    if raters is not None and len(raters):
        images["raters.png"] = _raters_png(raters)
    unreadable = acquired.get("unreadable") or []
    summary = _data_summary(params, metrics, acquired, trained)
    page = _html(metrics, summary, unreadable, images, has_history=history is not None,
                 has_raters=raters is not None)

    for fname, data in images.items():
        with atomic_path(out_dir / fname) as tmp:
            tmp.write_bytes(data)
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    for stale in set(IMAGES) - set(images):  # a plot from an earlier run whose input is gone
        (out_dir / stale).unlink(missing_ok=True)
    log(f"report written to {out_dir / 'index.html'}")

    if run_id is not None:
        from tasks.core.tracking import resume_run

        with resume_run(params, run_id) as mlflow:
            for fname in ("index.html", *images):
                mlflow.log_artifact(str(out_dir / fname), artifact_path="report")
    else:
        log(f"{train_dir / 'run.json'} not found: report not logged to MLflow")
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
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------------------------------- plots

def _figure(ncols: int, width: float = 5.0, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")  # no display on servers / in CI
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _scatter_png(pred, path: Path) -> bytes:
    from models.vqa.metrics import srcc

    truth = "quality"
    models = [c for c in ("stdam", "baseline") if c in pred.columns]
    if truth not in pred.columns or not models:
        raise MokuflowError(f"{path}: expected columns 'quality' and 'stdam' / 'baseline', "
                            f"got {list(pred.columns)}")
    fig, axes = _figure(len(models))
    for ax, m in zip(axes[0], models):
        ok = pred[[truth, m]].dropna()
        rho = srcc(ok[truth], ok[m]) if len(ok) >= 3 else float("nan")
        ax.scatter(ok[truth], ok[m], s=16, alpha=0.75)
        lo, hi = ok[[truth, m]].min().min(), ok[[truth, m]].max().max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
        ax.set(xlabel="true quality (cleaned MOS)", ylabel=f"predicted ({m})",
               title=f"{m}: SRCC {rho:.3f}, n = {len(ok)}")
        ax.legend(loc="upper left")
    return _png(fig)


def _training_png(hist) -> bytes:
    x = hist["epoch"] if "epoch" in hist else hist.index
    fig, axes = _figure(2)
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
    return _png(fig)


def _raters_png(raters) -> bytes:
    fig, axes = _figure(1, width=6.0)
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
    return _png(fig)


# ------------------------------------------------------------------------------------------ html

def _fmt(x) -> str:
    return "&ndash;" if x is None else f"{float(x):.3f}"


def _metrics_table(metrics: dict) -> str:
    models = _models(metrics)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = []
    for key in METRIC_ORDER:
        cells = []
        vals = {m: (metrics[m].get(key) or {}).get("value") for m in models}
        finite = {m: v for m, v in vals.items() if v is not None and v == v}
        best = (min if key == "rmse" else max)(finite, key=finite.get) if len(finite) > 1 else None
        for m in models:
            e = metrics[m].get(key) or {}
            text = f"{_fmt(e.get('value'))} <span class=ci>[{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}]</span>"
            cells.append(f"<td{' class=best' if m == best else ''}>{text}</td>")
        arrow = "&darr; lower is better" if key == "rmse" else "&uarr; higher is better"
        rows.append(f"<tr><th>{METRIC_LABEL[key]} <small>{arrow}</small></th>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _kv_table(d: dict) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(str(v))}</code></td></tr>"
                               for k, v in d.items()) + "</table>"


def _unreadable_html(items: list[dict]) -> str:
    if not items:
        return "<p>None: every video decoded.</p>"
    rows = "".join(f"<tr><td><code>{html.escape(str(i.get('path', '')))}</code></td>"
                   f"<td>{html.escape(str(i.get('reason', '')))}</td></tr>" for i in items)
    return (f"<p>{len(items)} video(s) could not be read and were left out.</p>"
            f"<table><tr><th>path</th><th>reason</th></tr>{rows}</table>")


def _html(metrics: dict, summary: dict, unreadable: list[dict], images: dict, *,
          has_history: bool, has_raters: bool) -> str:
    def img(name: str, alt: str, missing: str) -> str:
        return f'<img src="{name}" alt="{alt}">' if name in images else f"<p>{missing}</p>"

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mokuflow VQA report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
td.best {{ font-weight: bold; background: #eef7ee; }}
.ci {{ color: #777; font-size: 90%; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>No-reference video quality: STDAM vs baseline</h1>
<h2>Held-out test metrics</h2>
<p>Value and 95 % bootstrap interval over test videos ({html.escape(str(metrics.get('n_test', '?')))} videos).
PLCC and RMSE after the VQEG 4-parameter logistic mapping.</p>
{_metrics_table(metrics)}
<h2>Predicted vs true quality</h2>
{img("scatter.png", "predicted vs true scatter", "")}
<h2>Training curves</h2>
{img("training.png", "training curves", "No history.csv from the train stage." if not has_history else "history.csv is empty.")}
<h2>Raters</h2>
{img("raters.png", "rater bias and inconsistency",
     "No per-rater scores (MOS-only labels): rater bias and inconsistency are not estimated." if not has_raters
     else "raters.csv is empty.")}
<h2>Data</h2>
{_kv_table(summary)}
<h2>Unreadable videos</h2>
{_unreadable_html(unreadable)}
</body></html>
"""
