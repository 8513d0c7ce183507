"""Score STDAM and the hand-crafted baseline on the held-out test split, with bootstrap 95% CIs.

Writes ``<vqa.evaluate.out_dir>/metrics.json`` (SRCC, KRCC, PLCC, RMSE with intervals for both models,
``n_test``) and ``predictions.csv`` (``video_id, split, quality, stdam, baseline``), and logs them to
the pipeline's MLflow run: ``test_<metric>[_ci_low|_ci_high]`` for STDAM,
``baseline_test_<metric>[...]`` for the baseline, and both files as artifacts under ``evaluate/``.
Both models use the frame settings they were trained with (from model.pt / baseline.json), read
through the shared FrameCache.
"""
from __future__ import annotations

from tasks.core import MokuflowError, log, resolve, write_csv, write_json
from tasks.core.tracking import finite, log_evaluation
from tasks.vqa.data import clip_features, load_baseline, test_items

MODELS = ("stdam", "baseline")


def run(params: dict, **kwargs) -> dict:
    cfg = params["vqa"]["evaluate"]
    n_boot, seed = int(cfg.get("bootstrap", 1000)), int(cfg.get("seed", 0))
    from tasks.core.tracking import current_run_id

    run_id = current_run_id(params, "vqa")  # before the slow part: no run to log into is an error
    items = test_items(params)
    paths = list(items["path"])
    preds = {"stdam": predict_stdam(params, paths), "baseline": predict_baseline(params, paths)}

    from models.vqa.metrics import score_all

    y = items["quality"].to_numpy(dtype=float)
    log(f"evaluate: {n_boot} bootstrap resamples of {len(y)} test videos (logistic refitted on each)")
    metrics = {name: score_all(y, preds[name], n_boot=n_boot, seed=seed) for name in MODELS}
    metrics["n_test"] = int(len(items))

    out_dir = resolve(params, cfg["out_dir"])
    table = items[["video_id"]].assign(split="test", quality=y, **preds)
    pred_file = write_csv(out_dir / "predictions.csv", table)
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means both are new
    log_evaluation(params, run_id, mlflow_metrics(metrics), [metrics_file, pred_file])
    for name in MODELS:
        m = metrics[name]
        log(f"{name}: SRCC {m['srcc']['value']:.3f} [{_fmt(m['srcc']['ci_low'])}, {_fmt(m['srcc']['ci_high'])}]"
            f"  PLCC {m['plcc']['value']:.3f}  KRCC {m['krcc']['value']:.3f}  RMSE {m['rmse']['value']:.3f}")
    return {"metrics": str(metrics_file), "predictions": str(pred_file), "n_test": metrics["n_test"],
            "mlflow_run_id": run_id,
            **{f"{name}_srcc": metrics[name]["srcc"]["value"] for name in MODELS}}


def predict_stdam(params: dict, paths: list[str]):
    """STDAM scores of the videos (GPU when there is one), frames through the shared cache."""
    import torch

    from models.vqa.inference import ModelFileError, load_model, predict_paths
    from models.vqa.video import FrameCache, VideoReadError

    model_pt = resolve(params, params["vqa"]["train"]["out_dir"]) / "model.pt"
    if not model_pt.is_file():
        raise MokuflowError(f"{model_pt}: not found (run the train stage first)")
    try:
        model, frames = load_model(model_pt)
    except ModelFileError as e:
        raise MokuflowError(str(e)) from None
    cache = FrameCache(resolve(params, params["vqa"]["frames"]["cache_dir"]), **frames)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"evaluate: STDAM on {len(paths)} test videos ({device})")
    try:
        return predict_paths(model, frames, paths, batch_size=int(params["vqa"]["train"].get("batch_size", 8)),
                             cache=cache, device=device)
    except VideoReadError as e:
        raise MokuflowError(str(e)) from None


def predict_baseline(params: dict, paths: list[str]):
    baseline_json = resolve(params, params["vqa"]["baseline"]["out_dir"]) / "baseline.json"
    if not baseline_json.is_file():
        raise MokuflowError(f"{baseline_json}: not found (run the baseline stage first)")
    model, frames = load_baseline(baseline_json)
    x = clip_features(paths, frames=frames, cache_dir=resolve(params, params["vqa"]["frames"]["cache_dir"]))
    try:
        return model.predict(x)
    except ValueError as e:
        raise MokuflowError(f"{baseline_json}: {e}") from None


def mlflow_metrics(metrics: dict) -> dict[str, float]:
    """Flat MLflow metric names: test_<m>[_ci_low|_ci_high] (STDAM), baseline_test_<m>[...]."""
    out: dict[str, float] = {}
    for name, prefix in (("stdam", "test_"), ("baseline", "baseline_test_")):
        for m, v in metrics[name].items():
            out[f"{prefix}{m}"] = v["value"]
            for side in ("ci_low", "ci_high"):
                if v[side] is not None:
                    out[f"{prefix}{m}_{side}"] = v[side]
    out["test_n"] = metrics["n_test"]
    return finite(out)  # MLflow rejects NaN



def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
