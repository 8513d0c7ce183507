"""Fit the hand-crafted-feature baseline (distortion features + ridge) on the train and val videos.

Frames are sampled exactly as for STDAM (``vqa.frames.*``) through the shared FrameCache, so each
video is decoded once for both models. Writes ``<vqa.baseline.out_dir>/baseline.json``: the fitted
``BaselineRegressor`` (feature names, standardisation, weights), the frame settings it was fitted
with (evaluate reuses them) and its fit quality: on the training videos, and on val when fitted on
train alone first (a generalisation check; the saved model is then refitted on train + val).
"""
from __future__ import annotations

from pathlib import Path

from tasks.common import MokuflowError, log, progress, resolve, write_json

FRAME_KEYS = ("n_frames", "height", "width", "motion")


def run(params: dict, **kwargs) -> dict:
    from models.vqa.baseline import FEATURE_NAMES, BaselineRegressor
    from models.vqa.metrics import score_all

    cfg = params["vqa"]["baseline"]
    alpha = _alpha(cfg.get("ridge_alpha", 1.0))
    frames = frames_cfg(params)
    items = split_items(params, ("train", "val"))
    if len(items) < 3:
        raise MokuflowError(f"{videos_csv(params)}: {len(items)} labelled train/val video(s); need >= 3")
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


# --------------------------------------------------------------------- shared with evaluate

def frames_cfg(params: dict) -> dict:
    f = params["vqa"]["frames"]
    return {k: f[k] for k in FRAME_KEYS}


def videos_csv(params: dict) -> Path:
    return resolve(params, params["vqa"]["data"]["raw_dir"]) / "videos.csv"


def scores_csv(params: dict) -> Path:
    return resolve(params, params["vqa"]["data"]["clean_dir"]) / "scores.csv"


def _read_table(path: Path, columns: tuple[str, ...], stage: str):
    import pandas as pd

    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the {stage} stage first)")
    try:
        df = pd.read_csv(path, dtype={"video_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MokuflowError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MokuflowError(f"{path}: missing column(s) {missing} (has {list(df.columns)})")
    dup = df["video_id"][df["video_id"].duplicated()]
    if len(dup):
        raise MokuflowError(f"{path}: duplicate video_id(s) {sorted(set(dup))[:5]}")
    return df


def split_items(params: dict, splits: tuple[str, ...]):
    """Labelled videos of the given splits: DataFrame(video_id, path [absolute], split, quality).

    Joins acquire's ``videos.csv`` with clean's ``scores.csv``; videos of the splits without a
    cleaned score (e.g. no rating survived) are left out with a log line.
    """
    import numpy as np

    vpath, spath = videos_csv(params), scores_csv(params)
    videos = _read_table(vpath, ("video_id", "path", "split"), "acquire")
    scores = _read_table(spath, ("video_id", "quality"), "clean")
    videos = videos[videos["split"].isin(splits)]
    df = videos.merge(scores[["video_id", "quality"]], on="video_id", how="left")
    df["quality"] = df["quality"].astype(float)
    unlabelled = df["quality"].isna() | ~np.isfinite(df["quality"].fillna(0.0))
    if unlabelled.any():
        log(f"{spath}: no score for {int(unlabelled.sum())} {'/'.join(splits)} video(s), left out "
            f"(e.g. {list(df.loc[unlabelled, 'video_id'][:3])})")
        df = df[~unlabelled]
    raw_dir = vpath.parent
    df = df.assign(path=[str(p if Path(p).is_absolute() else raw_dir / p) for p in df["path"]])
    return df[["video_id", "path", "split", "quality"]].reset_index(drop=True)


def clip_features(paths: list[str], *, frames: dict, cache_dir: Path):
    """[N, n_features] hand-crafted features of the videos, frames sampled through the FrameCache."""
    import numpy as np

    from models.vqa.baseline import handcrafted_features
    from models.vqa.video import FrameCache, VideoReadError

    cache = FrameCache(cache_dir, **{k: frames[k] for k in FRAME_KEYS})
    rows = []
    for p in progress(paths, "baseline features"):
        try:
            clip, _motion = cache.get(p)
        except VideoReadError as e:
            raise MokuflowError(str(e)) from None
        rows.append(handcrafted_features(clip))
    return np.stack(rows) if rows else np.zeros((0, 0))


def load_baseline(path: Path):
    """(BaselineRegressor, frames cfg) from a baseline.json."""
    from models.vqa.baseline import BaselineFormatError, BaselineRegressor
    from tasks.common import read_json

    d = read_json(path)
    try:
        model = BaselineRegressor.from_dict(d, source=str(path))
    except BaselineFormatError as e:
        raise MokuflowError(str(e)) from None
    frames = d.get("frames")
    if not isinstance(frames, dict) or any(k not in frames for k in FRAME_KEYS):
        raise MokuflowError(f"{path}: no frame settings {list(FRAME_KEYS)} (re-run the baseline stage)")
    return model, {k: frames[k] for k in FRAME_KEYS}


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
