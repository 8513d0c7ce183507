"""Register the relationship model as ``relationship``: challenger always, champion when it beats the
current one on test macro-F1 (``relationship.register.metric``: macro_f1, accuracy or coarse_accuracy),
both re-scored through their registered pyfunc on today's test split: each test clip pair's files go
in as a user sends them (absolute paths), the served labels are scored against the clean labels. The
machinery is the core's (tasks/core/register.py).
"""
from __future__ import annotations

from tasks.core import MokuflowError, log, read_json, resolve
from tasks.core.register import metric_of, register
from tasks.relationship import dataset
from tasks.relationship.study import STUDY

COLUMNS = ("video_path", "subtitle_path", "tracks_path", "audio_path")


def run(params: dict, **kwargs) -> dict:
    metric = metric_of(params, STUDY)
    rows = dataset.labelled_rows(params, "test")
    metrics_file = resolve(params, params["relationship"]["evaluate"]["out_dir"]) / "metrics.json"
    evaluated = read_json(metrics_file) if metrics_file.is_file() else {}
    eval_metrics = {m: evaluated[m]["value"] for m in STUDY.metrics if isinstance(evaluated.get(m), dict)}
    labels = list(params["relationship"]["clean"]["labels"])
    requests = serving_frame(params, rows)
    truth = [r["label"] for r in rows]
    return register(params, STUDY, model_file=dataset.model_file(params), n_eval=len(rows),
                    score=lambda uri: score(uri, requests, truth, labels, metric), eval_metrics=eval_metrics)


def serving_frame(params: dict, rows: list[dict]):
    """The rows as the served model takes them: the manifest's paths made absolute."""
    import pandas as pd

    root = dataset.raw_root(params)
    frame = pd.DataFrame({c: [r.get(c, "") for r in rows] for c in
                          ("video_path", "subtitle_path", "tracks_path", "char_a", "char_b", "audio_path")})
    for c in COLUMNS:
        frame[c] = [str(root / v) if v else "" for v in frame[c]]
    return frame


def score(model_uri: str, requests, truth: list[str], labels: list[str], metric: str) -> float:
    """``metric`` of the registered pyfunc's answers on the test clip pairs."""
    import mlflow
    import numpy as np

    from models.relationship.metrics import scores
    from models.relationship.network import COARSE_OF_FINE

    log(f"scoring {model_uri} on {len(requests)} test clip pairs")
    out = mlflow.pyfunc.load_model(model_uri).predict(requests)
    bad = out["error"].notna() & (out["error"].astype(str) != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise MokuflowError(f"{model_uri}: {requests['video_path'][i]}: {out['error'][i]}")
    order = {lab: k for k, lab in enumerate(labels)}
    y = np.array([order[t] for t in truth])
    if metric == "coarse_accuracy":
        coarse = ("negative", "neutral", "positive")
        yc = np.asarray(COARSE_OF_FINE)[y]
        return float(np.mean([coarse[t] == p for t, p in zip(yc, out["coarse_label"])]))
    pred = np.array([order[p] for p in out["label"]])
    return float(scores(y, pred, len(labels))[metric])
