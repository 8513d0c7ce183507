"""Register STDAM as model ``vqa``: challenger always, champion when it beats the current one on SRCC
(``vqa.register.metric``), both re-scored through their registered pyfunc on today's test split.
The machinery is the core's (tasks/core/register.py); this stage says how VQA is scored.
"""
from __future__ import annotations

from tasks.core import log, read_json, resolve
from tasks.core.register import metric_of, register
from tasks.vqa.data import test_items
from tasks.vqa.study import STUDY


def run(params: dict, **kwargs) -> dict:
    metric = metric_of(params, STUDY)
    items = test_items(params)
    model_pt = resolve(params, params["vqa"]["train"]["out_dir"]) / "model.pt"
    metrics_file = resolve(params, params["vqa"]["evaluate"]["out_dir"]) / "metrics.json"
    evaluated = read_json(metrics_file).get("stdam", {}) if metrics_file.is_file() else {}
    return register(params, STUDY, model_file=model_pt, n_eval=len(items),
                    score=lambda uri: score(uri, items, metric),
                    eval_metrics={m: v.get("value") for m, v in evaluated.items() if isinstance(v, dict)})


def score(model_uri: str, items, metric: str) -> float:
    """``metric`` of the registered pyfunc's scores on ``items``."""
    from models.vqa import metrics

    pred = _predict(model_uri, list(items["path"]))
    return float(getattr(metrics, metric)(items["quality"].to_numpy(dtype=float), pred))


def _predict(model_uri: str, paths: list[str]):
    """Scores of the registered pyfunc, loaded as a user would load it."""
    import mlflow
    import pandas as pd

    log(f"scoring {model_uri} on {len(paths)} test videos")
    served = mlflow.pyfunc.load_model(model_uri)
    return served.predict(pd.DataFrame({"video_path": paths}))["quality"].to_numpy(dtype=float)
