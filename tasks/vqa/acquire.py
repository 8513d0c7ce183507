"""Acquire the raw VQA data (synthetic, a local folder, or an http(s) archive) into vqa.data.raw_dir.

Writes ``videos/``, ``videos.csv`` (video_id, path, content_id, split), ``scores.csv``,
``truth.csv`` (synthetic only) and ``acquire.json`` into a temp folder swapped in for raw_dir only
on success, so a failed acquire leaves the previous raw data intact. Unreadable, truncated, too small
(< 8 px), single-frame or missing videos are listed in ``acquire.json["unreadable"]`` and left out;
they never stop the run. raw_dir must hold nothing but a previous acquire output (see
:func:`tasks.core.outputs.atomic_dir`) and none of the source files.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, link_or_copy, log, portable, progress, resolve, write_csv, write_json
from tasks.core.download import extract, fetch
from tasks.core.tables import lines_of, numeric, read_table

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".yuv", ".3gp"}
SOURCES = ("synthetic", "folder", "url")
# A video decoding to fewer frames than this share of its container's count is truncated.
MIN_DECODED_SHARE = 0.9
# What a previous acquire output holds: adopted when raw_dir has no ownership manifest yet.
OWNS = ("videos/*", "videos.csv", "scores.csv", "truth.csv", "acquire.json")


def run(params: dict, **kwargs) -> dict:
    data = params["vqa"]["data"]
    source = data["source"]  # the schema checked every key (tasks/vqa/schema.py)
    raw_dir = resolve(params, data["raw_dir"])
    with atomic_dir(raw_dir, inputs=_inputs(params, source), owns=OWNS) as tmp:
        if source == "synthetic":
            summary = _synthetic(params, tmp)
        elif source == "folder":
            f = data.get("folder") or {}
            summary = _folder(params, tmp, videos=f.get("videos"), labels=f.get("labels"),
                              scores=f.get("scores"), key="vqa.data.folder")
        else:
            summary = _url(params, tmp)
        summary["source"] = source
        write_json(tmp / "acquire.json", portable(params, summary))  # no absolute path: DVC hashes it
    log(f"acquire: {summary['n_videos']} videos, {len(summary['unreadable'])} unreadable -> {raw_dir}")
    return {k: v for k, v in summary.items() if k not in ("unreadable", "synthetic")} | {
        "n_unreadable": len(summary["unreadable"]), "raw_dir": str(raw_dir)}


def _inputs(params: dict, source: str) -> list:
    """The source files and folders acquire reads: raw_dir must not contain them (it is replaced)."""
    data = params["vqa"]["data"]
    if source == "folder":
        f = data.get("folder") or {}
        return [resolve(params, f.get(k)) for k in ("videos", "labels", "scores") if f.get(k)]
    if source == "url":
        return [resolve(params, (data.get("url") or {}).get("cache_dir") or ".cache/downloads")]
    return []


# ------------------------------------------------------------------------------------- synthetic

def _synthetic(params: dict, out: Path) -> dict:
    import pandas as pd

    from tasks.vqa import synthetic

    s = params["vqa"]["synthetic"]
    truth = synthetic.generate(out / "videos", seed=s["seed"], n_contents=s["n_contents"],
                               versions_per_content=s["versions_per_content"], n_frames=s["n_frames"],
                               height=s["height"], width=s["width"], fps=s["fps"], progress=progress)
    scores, raters, contents = synthetic.simulate_ratings(
        truth, seed=s["seed"], n_raters=s["n_raters"], careless_fraction=s["careless_fraction"],
        missing_fraction=s["missing_fraction"])
    videos = pd.DataFrame({"video_id": truth["video_id"],
                           "file": [out / "videos" / f"{v}.mp4" for v in truth["video_id"]],
                           "content_id": truth["content_id"]})
    videos, unreadable = _keep_readable(videos)
    ok = set(videos["video_id"])
    write_csv(out / "truth.csv", truth[truth["video_id"].isin(ok)])
    write_csv(out / "scores.csv", scores[scores["video_id"].isin(ok)])
    summary = _write_videos_csv(params, out, videos)
    return summary | {"unreadable": unreadable, "n_ratings": int(scores["video_id"].isin(ok).sum()),
                      "synthetic": {"raters": raters.to_dict("records"),
                                    "contents": contents.to_dict("records")}}


# ---------------------------------------------------------------------------------------- folder

def _folder(params: dict, out: Path, *, videos, labels, scores, key: str, base: Path | None = None) -> dict:
    """Videos from a folder plus a MOS label file (``labels``) or a tidy raw-score table (``scores``)."""
    def path_of(p):
        return (base / p) if base is not None else resolve(params, p)

    if not videos:
        raise MokuflowError(f"params: {key}.videos is not set (folder of video files)")
    vdir = path_of(videos)
    if not vdir.is_dir():
        raise MokuflowError(f"{vdir}: video folder not found ({key}.videos)")
    if bool(labels) == bool(scores):
        raise MokuflowError(f"params: set exactly one of {key}.labels (path, duration, fps, MOS) "
                            f"or {key}.scores (video_id, rater_id, score[, content_id])")
    table = path_of(labels or scores)
    if not table.is_file():
        raise MokuflowError(f"{table}: {'label' if labels else 'score'} file not found")
    index = _index_videos(vdir)
    if labels:
        rows, mos, missing = _from_labels(table, index)
    else:
        rows, mos, missing = _from_scores(table, index)
    return _assemble(params, out, rows, mos, missing, table=table, kind="labels" if labels else "scores")


def _index_videos(vdir: Path) -> dict:
    """Relative posix path -> file, and basename -> [files], of every video under ``vdir``."""
    rel, by_name = {}, {}
    for p in sorted(vdir.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            r = p.relative_to(vdir).as_posix()
            rel[r] = p
            by_name.setdefault(p.name, []).append(p)
    return {"rel": rel, "name": by_name}


def _match(label_path: str, index: dict) -> tuple[Path | None, str]:
    """A label path -> local file: exact relative path, then its suffixes, then a unique basename."""
    parts = Path(label_path.replace("\\", "/")).parts
    for i in range(len(parts)):  # "KoNViD_1k_videos/x.mp4" also matches a local "x.mp4"
        hit = index["rel"].get("/".join(parts[i:]))
        if hit is not None:
            return hit, ""
    cands = index["name"].get(parts[-1] if parts else "", [])
    if len(cands) == 1:
        return cands[0], ""
    return None, ("ambiguous basename: " + ", ".join(str(c) for c in cands)) if cands else "video not found"


def _from_labels(table: Path, index: dict):
    """KoNViD-1k / LIVE-VQC / YouTube-UGC label file: ``path, duration, fps, MOS`` per line."""
    rows, mos, missing, seen = [], [], [], set()
    for lineno, line in enumerate(table.read_text(errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise MokuflowError(f"{table}:{lineno}: expected 4 fields 'path, duration, fps, MOS', "
                                f"got {len(fields)}: {line.strip()[:80]!r}")
        try:
            value = float(fields[3])
        except ValueError:
            if lineno == 1 and fields[3].lower() in ("mos", "score", "dmos"):
                continue  # a header line
            raise MokuflowError(f"{table}:{lineno}: MOS {fields[3]!r} is not a number") from None
        file, reason = _match(fields[0], index)
        if file is None:
            missing.append({"path": fields[0], "reason": reason})
            continue
        vid = _video_id(fields[0], seen)
        rows.append({"video_id": vid, "file": file, "content_id": vid})
        mos.append({"video_id": vid, "mos": value})
    if not rows and not missing:
        raise MokuflowError(f"{table}: no label lines")
    return rows, mos, missing


def _video_id(label_path: str, seen: set) -> str:
    """The file stem; the path with '__' for '/' when two labels share a stem."""
    p = Path(label_path.replace("\\", "/"))
    vid = p.stem
    if vid in seen:
        vid = p.with_suffix("").as_posix().replace("/", "__")
    if vid in seen:
        raise MokuflowError(f"{label_path}: listed twice in the label file")
    seen.add(vid)
    return vid


def _from_scores(table: Path, index: dict):
    """Tidy per-rater table ``video_id, rater_id, score[, content_id]``; videos ``<video_id>.<ext>``."""
    df = read_table(table, ("video_id", "rater_id", "score"), id_columns=("video_id", "rater_id"),
                    what="score file")
    score, n_na = numeric(df, "score", path=table)
    if n_na:
        log(f"acquire: {table}: {n_na} rating(s) written as a missing-value marker (NA, n/a, ...) "
            f"read as missing (lines {lines_of(df, score.isna() & (df['score'] != ''))})")
    df = df.assign(score=score).dropna(subset=["score"])
    if "content_id" in df.columns:
        df["content_id"] = df["content_id"].mask(df["content_id"] == "")
    by_stem: dict[str, list[Path]] = {}
    for p in index["rel"].values():
        by_stem.setdefault(p.stem, []).append(p)
    has_content = "content_id" in df.columns
    rows, missing = [], []
    for vid, g in df.groupby("video_id", sort=True):
        files = by_stem.get(vid, [])
        if len(files) != 1:
            missing.append({"path": f"{vid}.*", "reason": "video not found" if not files else
                            "ambiguous: " + ", ".join(str(f) for f in files)})
            continue
        content = g["content_id"].dropna().iloc[0] if has_content and g["content_id"].notna().any() else vid
        rows.append({"video_id": vid, "file": files[0], "content_id": str(content)})
    cols = ["video_id", "rater_id", "score"] + (["content_id"] if has_content else [])
    return rows, df[cols], missing


# ------------------------------------------------------------------------------------------- url

def _url(params: dict, out: Path) -> dict:
    u = params["vqa"]["data"].get("url") or {}
    href = u.get("href")
    cache = resolve(params, u.get("cache_dir") or ".cache/downloads")
    archive, digest = fetch(href, cache, sha256=u.get("sha256"), key="vqa.data.url")
    extract_root = Path(tempfile.mkdtemp(prefix=".extract.", dir=out.parent))
    try:
        extract(archive, extract_root)
        summary = _folder(params, out, videos=".", labels=u.get("labels"), scores=u.get("scores"),
                          key="vqa.data.url", base=extract_root)
    finally:
        shutil.rmtree(extract_root, ignore_errors=True)
    return summary | {"url": href, "sha256": digest}


# ---------------------------------------------------------------------------------------- shared

def _assemble(params: dict, out: Path, rows: list, scores, missing: list, *, table: Path, kind: str) -> dict:
    """Check, link and list the videos; write scores.csv for those kept."""
    import pandas as pd

    videos = pd.DataFrame(rows, columns=["video_id", "file", "content_id"])
    videos, unreadable = _keep_readable(videos)
    if videos.empty:
        raise MokuflowError(f"{table}: none of its videos is readable "
                            f"({len(unreadable) + len(missing)} unreadable or missing)")
    (out / "videos").mkdir()
    for r in videos.itertuples():
        link_or_copy(r.file, out / "videos" / f"{r.video_id}{Path(r.file).suffix.lower()}")
    videos["file"] = [out / "videos" / f"{v}{Path(f).suffix.lower()}"
                      for v, f in zip(videos["video_id"], videos["file"])]
    scores = pd.DataFrame(scores)
    write_csv(out / "scores.csv", scores[scores["video_id"].isin(set(videos["video_id"]))])
    summary = _write_videos_csv(params, out, videos)
    return summary | {"unreadable": missing + unreadable, "label_file": str(table), "scores_kind": kind}


def _keep_readable(videos):
    """Probe every video (full decode); drop and report the unreadable or truncated ones."""
    from models.vqa.video import VideoReadError, probe_video

    keep, unreadable = [], []
    for r in progress(list(videos.itertuples(index=False)), "checking videos"):
        try:
            info = probe_video(r.file)
            if info["frames_meta"] and info["frames"] < MIN_DECODED_SHARE * info["frames_meta"]:
                raise VideoReadError(r.file, f"truncated: {info['frames']} of "
                                             f"{info['frames_meta']} frames decode")
            keep.append(True)
        except VideoReadError as e:
            unreadable.append({"path": str(r.file), "reason": e.problem})
            keep.append(False)
    return videos[keep].reset_index(drop=True), unreadable


def _write_videos_csv(params: dict, out: Path, videos) -> dict:
    videos = videos.assign(path=[Path(f).relative_to(out).as_posix() for f in videos["file"]],
                           content_id=videos["content_id"].astype(str))
    videos["split"] = videos["content_id"].map(assign_splits(videos["content_id"], **_split_args(params)))
    write_csv(out / "videos.csv", videos[["video_id", "path", "content_id", "split"]])
    return {"n_videos": len(videos), "n_contents": int(videos["content_id"].nunique()),
            "splits": {k: int(v) for k, v in videos["split"].value_counts().sort_index().items()}}


def _split_args(params: dict) -> dict:
    s = params["vqa"]["data"]["split"]
    return {"seed": int(s["seed"]), "val_fraction": float(s["val_fraction"]),
            "test_fraction": float(s["test_fraction"])}


def assign_splits(content_ids, *, seed: int, val_fraction: float, test_fraction: float) -> dict:
    """content_id -> train / val / test: a seeded shuffle of the sorted unique contents.

    Test and val get round(fraction * n) contents each (at least one when the fraction is > 0 and
    there are enough contents), train keeps the rest and at least one.
    """
    import numpy as np

    ids = sorted(set(map(str, content_ids)))
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    n_test = max(int(round(test_fraction * n)), 1 if test_fraction > 0 and n >= 3 else 0)
    n_val = max(int(round(val_fraction * n)), 1 if val_fraction > 0 and n >= 3 else 0)
    n_test = min(n_test, max(n - 1, 0))
    n_val = min(n_val, max(n - 1 - n_test, 0))
    split = {}
    for rank, i in enumerate(order):
        split[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split
