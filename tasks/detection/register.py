"""Register the detector as model ``detection``: challenger always, champion when its COCO AP
(``detection.register.metric``) beats the current champion's, both re-scored through their registered
pyfunc on today's test split. The machinery is the core's (tasks/core/register.py); this stage says
how detection is scored: the served model's rows turned back into COCO results, then faster-coco-eval.
"""
from __future__ import annotations

from tasks.core import log, read_json, resolve
from tasks.core.register import metric_of, register
from tasks.detection.data import items
from tasks.detection.study import STUDY


def run(params: dict, **kwargs) -> dict:
    metric = metric_of(params, STUDY)
    gt, test_items = items(params, "test", min_n=2)
    model_pt = resolve(params, params["detection"]["train"]["out_dir"]) / "model.pt"
    metrics_file = resolve(params, params["detection"]["evaluate"]["out_dir"]) / "metrics.json"
    evaluated = read_json(metrics_file).get("dir", {}) if metrics_file.is_file() else {}
    return register(params, STUDY, model_file=model_pt, n_eval=len(test_items),
                    score=lambda uri: score(uri, gt, [p for p, _, _ in test_items], metric),
                    eval_metrics={m: v.get("value") for m, v in evaluated.items() if isinstance(v, dict)})


def served_results(model_uri: str, gt: dict, paths: list[str], params: dict | None = None) -> list[dict]:
    """The registered pyfunc's detections on ``paths`` as COCO results (score x IoU ranks them)."""
    import mlflow
    import pandas as pd

    log(f"scoring {model_uri} on {len(paths)} test images")
    out = mlflow.pyfunc.load_model(model_uri).predict(pd.DataFrame({"image_path": paths}), params=params)
    errors = out[out["error"].notna()]
    if len(errors):
        from tasks.core import MokuflowError

        raise MokuflowError(f"{model_uri}: {len(errors)} test image(s) failed: {errors['error'].iloc[0]}")
    by_path = {p: im["id"] for p, im in zip(paths, sorted(gt["images"], key=lambda im: im["id"]))}
    use_dir = (params or {}).get("use_dir", True)
    rank = out["score"] * out["iou"] if use_dir else out["score"]
    return [{"image_id": by_path[r.image_path], "category_id": int(r.category_id),
             "bbox": [float(r.x), float(r.y), float(r.width), float(r.height)], "score": float(k)}
            for r, k in zip(out.itertuples(index=False), rank)]


def score(model_uri: str, gt: dict, paths: list[str], metric: str) -> float:
    from tasks.detection import cocoeval

    return float(cocoeval.score(gt, served_results(model_uri, gt, paths))[metric])
