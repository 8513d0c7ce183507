"""Score STDAM and the hand-crafted baseline on the held-out test split, with bootstrap 95% CIs.

Writes ``<vqa.evaluate.out_dir>/metrics.json`` (SRCC, KRCC, PLCC, RMSE with intervals for both models,
``n_test``, and STDAM's per-kind ``sensitivity``), ``predictions.csv`` (``video_id, split, quality,
stdam, baseline``) and ``sensitivity.json`` (the per-kind probes in full: every video's rho and
scores, see :mod:`tasks.vqa.sensitivity`), and logs them to the pipeline's MLflow run:
``test_<metric>[_ci_low|_ci_high]`` for STDAM, ``baseline_test_<metric>[...]`` for the baseline,
``test_sensitivity_<kind>`` and the files as artifacts under ``evaluate/``.

The probes' source videos are the ``vqa.evaluate.sensitivity.n_videos`` best-rated test videos, one
per content; each is distorted at ``severities`` for every kind in ``kinds``.
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
    stdam = load_stdam(params)  # once, for the test split and the probes
    preds = {"stdam": predict_stdam(params, paths, stdam), "baseline": predict_baseline(params, paths)}
    probes = probe_sensitivity(params, items, stdam, n_boot=n_boot, seed=seed)

    from models.vqa.metrics import score_all

    y = items["quality"].to_numpy(dtype=float)
    log(f"evaluate: {n_boot} bootstrap resamples of {len(y)} test videos (logistic refitted on each)")
    metrics = {name: score_all(y, preds[name], n_boot=n_boot, seed=seed) for name in MODELS}
    metrics["n_test"] = int(len(items))
    metrics["sensitivity"] = {k: {f: v[f] for f in ("value", "ci_low", "ci_high")}
                              for k, v in probes["kinds"].items()}

    out_dir = resolve(params, cfg["out_dir"])
    table = items[["video_id"]].assign(split="test", quality=y, **preds)
    pred_file = write_csv(out_dir / "predictions.csv", table)
    probe_file = write_json(out_dir / "sensitivity.json", probes)
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means all are new
    log_evaluation(params, run_id, mlflow_metrics(metrics), [metrics_file, pred_file, probe_file])
    for name in MODELS:
        m = metrics[name]
        log(f"{name}: SRCC {m['srcc']['value']:.3f} [{_fmt(m['srcc']['ci_low'])}, {_fmt(m['srcc']['ci_high'])}]"
            f"  PLCC {m['plcc']['value']:.3f}  KRCC {m['krcc']['value']:.3f}  RMSE {m['rmse']['value']:.3f}")
    log("sensitivity (Spearman of severity vs -quality, 1 = ranked): " + ", ".join(
        f"{k} {v['value']:.2f}" for k, v in metrics["sensitivity"].items() if v["value"] is not None))
    return {"metrics": str(metrics_file), "predictions": str(pred_file), "n_test": metrics["n_test"],
            "mlflow_run_id": run_id,
            **{f"{name}_srcc": metrics[name]["srcc"]["value"] for name in MODELS}}


def load_stdam(params: dict):
    """(QualityModel, frames cfg) of the train stage's model.pt."""
    from models.vqa.inference import ModelFileError, load_model

    model_pt = resolve(params, params["vqa"]["train"]["out_dir"]) / "model.pt"
    if not model_pt.is_file():
        raise MokuflowError(f"{model_pt}: not found (run the train stage first)")
    try:
        return load_model(model_pt)
    except ModelFileError as e:
        raise MokuflowError(str(e)) from None


def predict_stdam(params: dict, paths: list[str], stdam: tuple):
    """STDAM scores of the videos (GPU when there is one), frames through the shared cache.
    ``stdam``: :func:`load_stdam`'s (model, frames cfg)."""
    import torch

    from models.vqa.inference import predict_paths
    from models.vqa.video import FrameCache, VideoReadError

    model, frames = stdam
    cache = FrameCache(resolve(params, params["vqa"]["frames"]["cache_dir"]), **frames)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"evaluate: STDAM on {len(paths)} test videos ({device})")
    try:
        return predict_paths(model, frames, paths, batch_size=int(params["vqa"]["train"].get("batch_size", 8)),
                             cache=cache, device=device)
    except VideoReadError as e:
        raise MokuflowError(str(e)) from None


def probe_sources(items, n: int) -> list[tuple[str, str]]:
    """(video_id, path) of the ``n`` best-rated test videos, one per content (the least distorted
    versions: the probes add one distortion to an otherwise clean video)."""
    best = items.sort_values(["quality", "video_id"], ascending=[False, True])
    if "content_id" in best.columns:
        best = best.drop_duplicates("content_id")
    return list(zip(best["video_id"][:n], best["path"][:n]))


def probe_sensitivity(params: dict, items, stdam: tuple, *, n_boot: int, seed: int) -> dict:
    """STDAM's per-kind sensitivity on graded distortions of held-out videos (tasks.vqa.sensitivity)."""
    import torch

    from models.vqa.inference import predict_clips
    from models.vqa.video import VideoReadError, read_frames
    from tasks.core import progress
    from tasks.vqa.sensitivity import measure

    cfg = params["vqa"]["evaluate"]["sensitivity"]
    model, frames = stdam
    device = "cuda" if torch.cuda.is_available() else "cpu"
    videos = []
    for vid, path in probe_sources(items, int(cfg["n_videos"])):
        try:
            videos.append((vid, read_frames(path, height=frames["height"], width=frames["width"])))
        except VideoReadError as e:
            raise MokuflowError(str(e)) from None
    log(f"evaluate: {len(cfg['kinds'])} distortion kinds x {len(cfg['severities'])} severities on "
        f"{len(videos)} test videos")
    return measure(videos, lambda clips: predict_clips(model, clips, batch_size=16, device=device),
                   kinds=list(cfg["kinds"]), severities=list(cfg["severities"]), seed=seed,
                   frames_cfg=frames, n_boot=n_boot, progress=progress)


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
    for kind, v in metrics.get("sensitivity", {}).items():
        if v["value"] is not None:
            out[f"test_sensitivity_{kind}"] = v["value"]
    return finite(out)  # MLflow rejects NaN



def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
