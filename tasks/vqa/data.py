"""The VQA data every model stage reads: acquire's videos.csv joined with clean's scores.csv, the
frame sampling settings, and the baseline's clip features and saved model. One reader for train,
baseline, evaluate and register."""
from __future__ import annotations

from pathlib import Path

from models.vqa.video import FRAME_KEYS
from tasks.core import MokuflowError, log, progress, resolve


def frames_cfg(params: dict) -> dict:
    """``vqa.frames`` without the cache folder: how every video is sampled, checked."""
    from models.vqa.video import MOTIONS  # numpy + OpenCV only

    f = params["vqa"]["frames"]
    if f["motion"] not in MOTIONS:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: vqa.frames.motion must be one of "
                            f"{sorted(MOTIONS)}, got {f['motion']!r}")
    for k in ("n_clips", "clip_len", "height", "width"):
        if not isinstance(f[k], int) or f[k] < 1:
            raise MokuflowError(f"{params.get('_file', 'params.yaml')}: vqa.frames.{k} must be a positive "
                                f"integer, got {f[k]!r}")
    return {k: f[k] for k in FRAME_KEYS}


def videos_csv(params: dict) -> Path:
    return resolve(params, params["vqa"]["data"]["raw_dir"]) / "videos.csv"


def scores_csv(params: dict) -> Path:
    return resolve(params, params["vqa"]["data"]["clean_dir"]) / "scores.csv"


def read_table(path: Path, columns: tuple[str, ...], stage: str):
    """A CSV with these columns and unique text ``video_id`` s, or an error naming the file.

    Read by the core reader (:func:`tasks.core.tables.read_table`): cells are text as written (ids such
    as ``NA`` stay themselves); ``quality`` columns are converted by the caller."""
    from tasks.core.tables import read_table as read_text_table

    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the {stage} stage first)")
    df = read_text_table(path, columns, id_columns=("video_id",))
    dup = df["video_id"][df["video_id"].duplicated()]
    if len(dup):
        raise MokuflowError(f"{path}: duplicate video_id(s) {sorted(set(dup))[:5]}")
    return df


def split_items(params: dict, splits: tuple[str, ...], *, min_n: int = 0):
    """Labelled videos of the given splits: DataFrame(video_id, path [absolute], split, quality, content_id).

    Videos without a finite cleaned score (e.g. no rating survived) are left out with a log line;
    fewer than ``min_n`` left is an error naming videos.csv.
    """
    import numpy as np

    from tasks.core.tables import numeric

    vpath, spath = videos_csv(params), scores_csv(params)
    videos = read_table(vpath, ("video_id", "path", "split"), "acquire")
    scores = read_table(spath, ("video_id", "quality"), "clean")
    videos = videos[videos["split"].isin(splits)]
    scores = scores.assign(quality=numeric(scores, "quality", path=spath)[0])
    df = videos.merge(scores[["video_id", "quality"]], on="video_id", how="left")
    df["quality"] = df["quality"].astype(float)
    unlabelled = df["quality"].isna() | ~np.isfinite(df["quality"].fillna(0.0))
    if unlabelled.any():
        log(f"{spath}: no score for {int(unlabelled.sum())} {'/'.join(splits)} video(s), left out "
            f"(e.g. {list(df.loc[unlabelled, 'video_id'][:3])})")
        df = df[~unlabelled]
    if len(df) < min_n:
        raise MokuflowError(f"{vpath}: {len(df)} labelled {'/'.join(splits)} video(s) with a score in "
                            f"{spath}; need at least {min_n}")
    raw_dir = vpath.parent
    df = df.assign(path=[str(p if Path(p).is_absolute() else raw_dir / p) for p in df["path"]])
    if "content_id" not in df.columns:  # videos.csv before content ids: each video its own content
        df = df.assign(content_id=df["video_id"])
    return df[["video_id", "path", "split", "quality", "content_id"]].reset_index(drop=True)


def test_items(params: dict):
    """The held-out test split, at least 3 videos (rank correlations need them): video_id, path, quality,
    content_id."""
    return split_items(params, ("test",), min_n=3)[["video_id", "path", "quality", "content_id"]]


def clip_features(paths: list[str], *, frames: dict, cache_dir: Path):
    """[N, n_features] hand-crafted features of the videos, frames sampled through the FrameCache.

    The cached motion (each sampled frame to its successor) feeds the temporal features: consecutive
    *sampled* frames are repeats in short videos and far apart in long ones."""
    import numpy as np

    from models.vqa.baseline import handcrafted_features
    from models.vqa.video import FrameCache, VideoReadError

    cache = FrameCache(cache_dir, **{k: frames[k] for k in FRAME_KEYS})
    rows = []
    for p in progress(paths, "baseline features"):
        try:
            clip, motion = cache.get(p)
        except VideoReadError as e:
            raise MokuflowError(str(e)) from None
        rows.append(handcrafted_features(clip, motion=motion))
    return np.stack(rows) if rows else np.zeros((0, 0))


def load_baseline(path: Path):
    """(BaselineRegressor, frames cfg) from a baseline.json."""
    from models.vqa.baseline import BaselineFormatError, BaselineRegressor
    from tasks.core import read_json

    d = read_json(path)
    try:
        model = BaselineRegressor.from_dict(d, source=str(path))
    except BaselineFormatError as e:
        raise MokuflowError(str(e)) from None
    frames = d.get("frames")
    from models.vqa.video import frame_settings

    try:
        return model, frame_settings(frames)
    except (KeyError, TypeError):
        raise MokuflowError(f"{path}: no frame settings {list(FRAME_KEYS)} (re-run the baseline stage)") from None
