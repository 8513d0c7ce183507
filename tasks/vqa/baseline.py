"""Fit the hand-crafted-feature baseline (distortion features + ridge) on the train and val videos.

Frames are sampled exactly as for STDAM (``vqa.frames.*``) through the shared FrameCache, so each
video is decoded once for both models. Writes ``<vqa.baseline.out_dir>/baseline.json``: the fitted
``BaselineRegressor`` (feature names, standardisation, weights), the frame settings it was fitted
with (evaluate reuses them) and its fit quality: on the training videos, and on val when fitted on
train alone first (a generalisation check; the saved model is then refitted on train + val).
"""
from __future__ import annotations

from tasks.core import MokuflowError, log, resolve, write_json
from tasks.vqa.data import clip_features, frames_cfg, split_items


def run(params: dict, **kwargs) -> dict:
    from models.vqa.baseline import FEATURE_NAMES, BaselineRegressor
    from models.vqa.metrics import score_all

    cfg = params["vqa"]["baseline"]
    alpha = _alpha(cfg.get("ridge_alpha", 1.0))
    frames = frames_cfg(params)
    items = split_items(params, ("train", "val"), min_n=3)
    x = clip_features(list(items["path"]), frames=frames, cache_dir=resolve(params, params["vqa"]["frames"]["cache_dir"]))
    y = items["quality"].to_numpy(dtype=float)
    is_val = (items["split"] == "val").to_numpy()

    val_fit = None
    if is_val.sum() >= 3 and (~is_val).sum() >= 3:
        on_train = BaselineRegressor(alpha=alpha, feature_names=FEATURE_NAMES).fit(x[~is_val], y[~is_val])
        val_fit = _values(score_all(y[is_val], on_train.predict(x[is_val]), n_boot=0))
    model = BaselineRegressor(alpha=alpha, feature_names=FEATURE_NAMES).fit(x, y)
    train_fit = _values(score_all(y, model.predict(x), n_boot=0))

    out = resolve(params, cfg["out_dir"]) / "baseline.json"
    summary = {"n_train": int(len(items)), "splits": ["train", "val"], "train_fit": train_fit,
               "val_fit_trained_on_train": val_fit}
    write_json(out, {**model.to_dict(), "frames": frames, **summary})
    log(f"baseline: ridge on {len(FEATURE_NAMES)} features, {len(items)} videos, "
        f"train SRCC {train_fit['srcc']:.3f}" + (f", val SRCC {val_fit['srcc']:.3f}" if val_fit else ""))
    return {"baseline": str(out), **summary}


def _alpha(value) -> float:
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise MokuflowError(f"params vqa.baseline.ridge_alpha: not a number ({value!r})") from None
    if not (a >= 0 and a != float("inf")):
        raise MokuflowError(f"params vqa.baseline.ridge_alpha: must be a finite number >= 0, got {a}")
    return a


def _values(scores: dict) -> dict:
    return {k: v["value"] for k, v in scores.items()}
