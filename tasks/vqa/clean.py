"""Clean raw opinion scores into one quality per video (SUREAL MLE subject model, or plain MOS).

Reads the tidy raw table ``video_id, rater_id, score[, content_id]`` (missing ratings = absent rows,
empty score cells or a missing-value marker such as ``NA`` / ``n/a``, counted in clean.json as
``n_na_ratings``) or a MOS-only table ``video_id, mos[, mos_std]`` (passed through), and writes
``scores.csv``, ``raters.csv``, ``contents.csv`` and ``clean.json`` into the clean folder, atomically
(:func:`tasks.core.outputs.atomic_dir`: the folder must hold nothing but a previous clean output, and must
not hold the input). Tables may be comma-, tab-, semicolon- or pipe-separated; ids are text as written.

Ratings outside ``vqa.clean.scale`` ([min, max], default [1, 5]) are refused naming the file, lines and
values (``vqa.clean.out_of_scale: refuse``) or dropped and counted (``drop``: ``n_out_of_scale`` in
clean.json and the log). MOS-only tables are not checked against the scale (their scale is the
dataset's: KoNViD-1k 1-5, LIVE-VQC 0-100). Never imports torch.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, log, resolve, write_json
from tasks.core.tables import lines_of, numeric, read_table

METHODS = ("mle", "mos")
ID_COLUMNS = ("video_id", "rater_id", "content_id")
OUT_OF_SCALE = ("refuse", "drop")
# What a previous clean output holds: adopted when the folder has no ownership manifest yet.
OWNS = ("scores.csv", "raters.csv", "contents.csv", "clean.json")


def add_arguments(parser) -> None:
    parser.add_argument("--scores", default=None, metavar="PATH",
                        help="raw score table (default: <vqa.data.raw_dir>/scores.csv)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: vqa.data.clean_dir)")


def run(params: dict, scores: str | None = None, out: str | None = None) -> dict:
    cfg = params["vqa"]["clean"]
    data = params["vqa"]["data"]
    # paths given on the command line are the user's: relative to the cwd, not to params.yaml
    scores_csv = Path(scores).resolve() if scores else resolve(params, data["raw_dir"]) / "scores.csv"
    out_dir = Path(out).resolve() if out else resolve(params, data["clean_dir"])
    return clean_scores(scores_csv, out_dir, method=cfg["method"],
                        max_iter=int(cfg["max_iter"]), tol=float(cfg["tol"]),
                        min_std=float(cfg["min_std"]), scale=tuple(cfg.get("scale", (1.0, 5.0))),
                        out_of_scale=cfg.get("out_of_scale", "refuse"))


# ------------------------------------------------------------------------------------------ core

def clean_scores(scores_csv, out_dir, *, method: str = "mle", max_iter: int = 10000,
                 tol: float = 1e-8, min_std: float = 0.05, scale: tuple[float, float] = (1.0, 5.0),
                 out_of_scale: str = "refuse") -> dict:
    """Fit ``method`` on ``scores_csv`` and write the clean folder ``out_dir``; returns clean.json's dict."""
    scores_csv, out_dir = Path(scores_csv), Path(out_dir)
    if method not in METHODS:
        raise MokuflowError(f"params vqa.clean.method: expected one of {METHODS}, got {method!r}")
    if out_of_scale not in OUT_OF_SCALE:
        raise MokuflowError(f"params vqa.clean.out_of_scale: expected one of {OUT_OF_SCALE}, got {out_of_scale!r}")
    if len(scale) != 2 or not float(scale[0]) < float(scale[1]):
        raise MokuflowError(f"params vqa.clean.scale: expected [min, max] with min < max, got {list(scale)}")
    table = _read_table(scores_csv)
    if "mos" in table.columns and not {"rater_id", "score"} <= set(table.columns):
        frames, summary = _mos_passthrough(scores_csv, table)
    else:
        frames, summary = _per_rater(scores_csv, table, method=method, max_iter=max_iter, tol=tol,
                                     min_std=min_std, scale=(float(scale[0]), float(scale[1])),
                                     out_of_scale=out_of_scale)
    summary["scores"] = scores_csv.name  # no absolute path in a file DVC hashes
    # everything is computed before anything is written: a failure above leaves out_dir as it was
    with atomic_dir(out_dir, inputs=[scores_csv], owns=OWNS) as tmp:
        for name, frame in frames.items():
            frame.to_csv(tmp / name, index=False)
        write_json(tmp / "clean.json", summary)
    log(f"clean: {summary['n_videos']} videos -> {out_dir} ({summary['method']})")
    return {**summary, "out": str(out_dir)}


# ----------------------------------------------------------------------------------------- input

def _read_table(path: Path):
    """The raw table as text cells (index = line numbers); ids exactly as written."""
    table = read_table(path, ("video_id",), id_columns=ID_COLUMNS, what="score table",
                       not_found="run `mokuflow vqa acquire` or pass --scores")
    if not ({"rater_id", "score"} <= set(table.columns) or "mos" in table.columns):
        raise MokuflowError(
            f"{path}: missing columns: expected `video_id, rater_id, score[, content_id]` or "
            f"`video_id, mos`, got {list(table.columns)}")
    if table.empty:
        raise MokuflowError(f"{path}: the table has no rows")
    return table


def _numeric(path: Path, table, column: str):
    """The column as floats: empty cells and NA markers are NaN, other text is an error naming lines."""
    return numeric(table, column, path=path)[0]


def _mos_passthrough(path: Path, table):
    import numpy as np
    import pandas as pd

    mos = _numeric(path, table, "mos")
    if mos.isna().any():
        raise MokuflowError(f"{path}: videos without a mos on lines {lines_of(table, mos.isna())}")
    dup = table["video_id"].duplicated()
    if dup.any():
        raise MokuflowError(f"{path}: duplicate video_id {table.loc[dup, 'video_id'].tolist()[:5]}")
    std = _numeric(path, table, "mos_std") if "mos_std" in table.columns else np.nan
    frames = {"scores.csv": pd.DataFrame({"video_id": table["video_id"].to_numpy(), "quality": mos.to_numpy(),
                                          "quality_std": std if np.isscalar(std) else std.to_numpy()})}
    summary = {"method": "mos-passthrough", "log_likelihood": None, "iterations": 0, "converged": True,
               "n_videos": len(table), "n_raters": None, "n_ratings": None, "n_contents": None}
    return frames, summary


def _per_rater(path: Path, table, *, method: str, max_iter: int, tol: float, min_std: float,
               scale: tuple[float, float] = (1.0, 5.0), out_of_scale: str = "refuse"):
    import numpy as np

    score, n_na = numeric(table, "score", path=path)
    if n_na:
        log(f"clean: {path}: {n_na} rating(s) written as a missing-value marker (NA, n/a, ...) "
            f"read as missing")
    lo, hi = scale
    outside = score.notna() & ((score < lo) | (score > hi))
    if outside.any() and out_of_scale == "refuse":
        values = table.loc[outside, "score"].tolist()[:5]
        raise MokuflowError(f"{path}: {int(outside.sum())} score(s) outside the rating scale [{lo:g}, {hi:g}] "
                            f"(vqa.clean.scale) on lines {lines_of(table, outside)}: {values}; fix them, or "
                            f"set vqa.clean.out_of_scale=drop to drop them")
    n_out = int(outside.sum())
    if n_out:
        log(f"clean: {path}: dropped {n_out} rating(s) outside the scale [{lo:g}, {hi:g}] "
            f"(e.g. lines {lines_of(table, outside)})")
        score = score.mask(outside)
    table = table.assign(score=score)
    dup = table.duplicated(["video_id", "rater_id"], keep=False)
    if dup.any():
        pairs = table.loc[dup, ["video_id", "rater_id"]].drop_duplicates().head(5)
        raise MokuflowError(f"{path}: duplicate ratings (one row per video and rater expected), e.g. "
                            f"(video_id, rater_id) {list(map(tuple, pairs.values))}")
    # an empty score cell is a missing rating, but every video and rater needs at least one
    videos = table["video_id"].unique()
    rated = table.dropna(subset=["score"])
    unrated = sorted(set(videos) - set(rated["video_id"]))
    if unrated:
        raise MokuflowError(f"{path}: videos with no rating at all: {unrated[:10]}")
    raters = rated["rater_id"].unique()
    n_per_rater = rated.groupby("rater_id", sort=False).size()
    lonely = n_per_rater.index[n_per_rater < 2].tolist()
    if method == "mle" and lonely:
        # one rating is fitted exactly by the rater's own bias: it says nothing about quality and,
        # with the inconsistency free to shrink to 0, it makes the likelihood degenerate
        raise MokuflowError(f"{path}: raters with a single rating make the MLE model degenerate: "
                            f"{lonely[:10]}; drop them or use vqa.clean.method=mos")
    contents = _content_of_videos(path, table, videos)

    u = rated.pivot(index="video_id", columns="rater_id", values="score").reindex(index=videos, columns=raters)
    scores = u.to_numpy(dtype=float)
    if method == "mle":
        frames, fit_info = _fit_mle(path, scores, videos, raters, contents, max_iter=max_iter, tol=tol,
                                     min_std=min_std)
    else:
        frames, fit_info = _fit_mos(scores, videos, raters, contents)
    summary = {"method": method, **fit_info, "n_videos": len(videos), "n_raters": len(raters),
               "n_ratings": int(np.isfinite(scores).sum()),
               "n_contents": None if contents is None else int(contents.nunique()),
               "scale": [lo, hi], "out_of_scale": out_of_scale, "n_out_of_scale": n_out, "n_na_ratings": n_na}
    return frames, summary


def _content_of_videos(path: Path, table, videos):
    """content_id per video (in ``videos`` order), or None when the table has none."""
    if "content_id" not in table.columns:
        return None
    per_video = table.groupby("video_id", sort=False)["content_id"].nunique()
    mixed = per_video.index[per_video > 1].tolist()
    if mixed:
        raise MokuflowError(f"{path}: videos with more than one content_id: {mixed[:10]}")
    return table.groupby("video_id", sort=False)["content_id"].first().reindex(videos)


# ---------------------------------------------------------------------------------------- models

def _fit_mle(path, scores, videos, raters, contents, *, max_iter, tol, min_std):
    import pandas as pd

    from models.vqa.subject_model import SubjectModelError, fit

    cids = None if contents is None else contents.to_numpy()
    log(f"clean: MLE subject model on {len(videos)} videos x {len(raters)} raters")
    t0 = time.perf_counter()
    try:
        res = fit(scores, content_ids=cids, max_iter=max_iter, tol=tol, min_std=min_std)
    except SubjectModelError as e:
        raise MokuflowError(f"{path}: {e}") from None
    log(f"clean: {res.iterations} iterations in {time.perf_counter() - t0:.2f} s"
        + ("" if res.converged else f" (NOT converged: raise vqa.clean.max_iter above {max_iter})"))
    frames = {
        "scores.csv": pd.DataFrame({"video_id": videos, "quality": res.quality, "quality_std": res.quality_std}),
        "raters.csv": pd.DataFrame({"rater_id": raters, "bias": res.bias, "inconsistency": res.inconsistency}),
    }
    if contents is not None:
        import numpy as np

        # fit() numbers contents by their sorted unique labels
        frames["contents.csv"] = pd.DataFrame({"content_id": np.unique(cids), "ambiguity": res.ambiguity})
    info = {"log_likelihood": res.log_likelihood, "iterations": res.iterations, "converged": res.converged}
    return frames, info


def _fit_mos(scores, videos, raters, contents):
    """Plain mean per video; rater bias / inconsistency and content ambiguity as mean / std of residuals."""
    import numpy as np
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # std of a single rating -> NaN
        mos = np.nanmean(scores, axis=1)
        n = np.isfinite(scores).sum(axis=1)
        std = np.nanstd(scores, axis=1, ddof=1) / np.sqrt(n)  # SUREAL MosModel's quality_scores_std
        resid = scores - mos[:, None]
        frames = {
            "scores.csv": pd.DataFrame({"video_id": videos, "quality": mos, "quality_std": std}),
            "raters.csv": pd.DataFrame({"rater_id": raters, "bias": np.nanmean(resid, axis=0),
                                        "inconsistency": np.nanstd(resid, axis=0)}),
        }
        if contents is not None:
            labels = contents.to_numpy()
            ids = pd.unique(labels)
            amb = [np.nanstd(resid[labels == c]) for c in ids]
            frames["contents.csv"] = pd.DataFrame({"content_id": ids, "ambiguity": amb})
    return frames, {"log_likelihood": None, "iterations": 0, "converged": True}
