"""Acquire the raw relationship data (synthetic, or a local ERATO-like folder) into
``relationship.data.raw_dir``, in one layout whatever the source::

    <raw_dir>/manifest.csv     clip_id, video_path, subtitle_path, tracks_path, char_a, char_b, split
                               [, audio_path]: one row per (clip, pair); paths relative to raw_dir,
                               an empty subtitle_path / audio_path: none
    <raw_dir>/labels_raw.csv   the crowd's labels as delivered: clip_id, annotator_id, label
    <raw_dir>/clips/...        the files the manifest names (synthetic: <id>.mp4 / .srt / .tracks.json;
                               folder: as laid out under its root, hard links when possible)
    <raw_dir>/truth.csv        synthetic only: the true label of each clip (the clean stage never reads it)
    <raw_dir>/acquire.json     summary: source, clips per split, clips without audio / subtitles

``relationship.data.source``:

- ``synthetic`` (default): :func:`tasks.relationship.synthetic.generate` with ``relationship.synthetic``;
- ``folder``: ``relationship.data.folder.root`` (relative to params.yaml's folder) holding a manifest
  (``folder.manifest``, same columns; ``split`` and ``audio_path`` optional, paths relative to the
  manifest's folder or absolute) and a raw label table (``folder.labels``). Clips without a split get
  one from ``relationship.data.split`` (seeded, by clip: the pairs of one clip stay together).

Every file the manifest names is checked before anything is written: a missing one is one line naming
the manifest line, the column and the path. Written into a temp folder swapped in for raw_dir only on
success: a failed acquire leaves the previous raw data whole.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, link_or_copy, log, portable, resolve, write_json

SPLITS = ("train", "val", "test")
REQUIRED = ("clip_id", "video_path", "subtitle_path", "tracks_path", "char_a", "char_b")
FILE_COLUMNS = ("video_path", "subtitle_path", "tracks_path", "audio_path")
OPTIONAL_FILES = ("subtitle_path", "audio_path")  # may be empty


def run(params: dict, **kwargs) -> dict:
    data = params["relationship"]["data"]  # the schema checked every key (tasks/relationship/schema.py)
    raw_dir = resolve(params, data["raw_dir"])
    listing = _folder_listing(params) if data["source"] == "folder" else None  # checked before writing
    with atomic_dir(raw_dir) as tmp:
        if listing is None:
            summary = _synthetic(params, tmp)
        else:
            summary = _from_folder(params, listing, tmp)
        summary["source"] = data["source"]
        write_json(tmp / "acquire.json", portable(params, summary))  # no absolute path: DVC hashes it
    sizes = summary["splits"]
    log(f"acquire: {summary['n_rows']} clip pairs ({sizes['train']} train / {sizes['val']} val / "
        f"{sizes['test']} test), {summary['n_without_audio']} without audio, {summary['n_without_subtitles']} "
        f"without subtitles, {summary['n_labels']} crowd labels -> {raw_dir}")
    return {"raw_dir": str(raw_dir), "source": data["source"], "n_clips": summary["n_rows"],
            **{f"n_{k}": v for k, v in sizes.items()}}


def _counts(manifest, n_labels: int) -> dict:
    has_audio = manifest["audio_path"] != "" if "audio_path" in manifest else None
    return {"n_rows": int(len(manifest)), "n_labels": int(n_labels),
            "splits": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
            "n_without_subtitles": int((manifest["subtitle_path"] == "").sum()),
            "n_audio_overrides": int(has_audio.sum()) if has_audio is not None else 0}


# ------------------------------------------------------------------------------------- synthetic

def _synthetic(params: dict, out: Path) -> dict:
    import pandas as pd

    from tasks.relationship import synthetic

    s = params["relationship"]["synthetic"]
    meta = synthetic.generate(out, seed=s["seed"], n_clips=s["n_clips"], height=s["height"], width=s["width"],
                              fps=s["fps"], min_seconds=s["min_seconds"], max_seconds=s["max_seconds"],
                              p_no_audio=s["p_no_audio"], p_no_subtitles=s["p_no_subtitles"],
                              p_music_fits=s["p_music_fits"], labels_per_clip=s["labels_per_clip"])
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype=str)
    n_labels = sum(1 for _ in open(out / "labels_raw.csv", encoding="utf-8")) - 1
    return {**_counts(manifest, n_labels), "n_without_audio": meta["n_without_audio"],
            "label_counts": meta["label_counts"], "synthetic": {k: s[k] for k in s}}


# ----------------------------------------------------------------------------------------- folder

def _folder_listing(params: dict) -> dict:
    """The folder's manifest (text cells, paths resolved) and label table, every named file checked."""
    from tasks.core.tables import read_table

    f = params["relationship"]["data"]["folder"]
    root = resolve(params, f["root"])
    if not root.is_dir():
        raise MokuflowError(f"{root}: relationship.data.folder.root not found (or not a folder)")
    path = root / f["manifest"]
    table = read_table(path, REQUIRED, id_columns=("clip_id", "video_path", "tracks_path", "char_a", "char_b"),
                       what="clip manifest", not_found="relationship.data.folder.manifest")
    if table.empty:
        raise MokuflowError(f"{path}: the manifest has no rows")
    dup = table.duplicated(["clip_id", "char_a", "char_b"])
    if dup.any():
        raise MokuflowError(f"{path}: the same clip and pair twice on lines {[int(i) for i in table.index[dup][:5]]}")
    same = table["char_a"] == table["char_b"]
    if same.any():
        raise MokuflowError(f"{path}: line {int(table.index[same][0])}: char_a and char_b are the same character")
    files: dict[int, dict[str, Path | None]] = {}
    for line, row in table.iterrows():
        files[int(line)] = {}
        for col in FILE_COLUMNS:
            value = row.get(col, "")
            if not value:
                files[int(line)][col] = None
                continue
            p = Path(value).expanduser()
            p = p if p.is_absolute() else path.parent / p
            if not p.is_file():
                raise MokuflowError(f"{path}: line {line}: {col} {value}: file not found ({p})")
            files[int(line)][col] = p
    split = table["split"] if "split" in table else None
    if split is not None and not split.isin(["", *SPLITS]).all():
        bad = ~split.isin(["", *SPLITS])
        raise MokuflowError(f"{path}: split must be one of {list(SPLITS)} (or empty), got "
                            f"{split[bad].tolist()[:3]} on lines {[int(i) for i in table.index[bad][:5]]}")
    labels = root / f["labels"]
    if not labels.is_file():
        raise MokuflowError(f"{labels}: raw label table not found (relationship.data.folder.labels)")
    return {"root": root, "manifest": path, "table": table, "files": files, "labels": labels}


def _stored_name(src: Path, base: Path) -> str:
    """Where a source file goes under ``clips/``: its path below the manifest's folder, or (outside it)
    ``external/<hash of its folder>/<name>``, so two files of one name never collide."""
    try:
        return src.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        h = hashlib.sha256(str(src.resolve().parent).encode()).hexdigest()[:10]
        return f"external/{h}/{src.name}"


def _from_folder(params: dict, listing: dict, out: Path) -> dict:
    import pandas as pd

    from tasks.relationship.synthetic import assign_splits

    table, base = listing["table"], listing["manifest"].parent
    rows = []
    for line, row in table.iterrows():
        rec = {c: row[c] for c in REQUIRED}
        for col in FILE_COLUMNS:
            src = listing["files"][int(line)][col]
            if src is None:
                rec[col] = ""
                continue
            name = "clips/" + _stored_name(src, base)
            link_or_copy(src, out / name)
            rec[col] = name
        rec["split"] = row.get("split", "") if "split" in table else ""
        rows.append(rec)
    manifest = pd.DataFrame(rows)
    missing = manifest["split"] == ""
    if missing.any():  # by clip: the pairs of one clip share its split (no clip leaks into training)
        s = params["relationship"]["data"]["split"]
        clips = sorted(set(manifest.loc[missing, "clip_id"]))
        train = 1 - s["val_fraction"] - s["test_fraction"]
        given = dict(zip(clips, assign_splits(len(clips), (train, s["val_fraction"], s["test_fraction"]), s["seed"])))
        manifest.loc[missing, "split"] = manifest.loc[missing, "clip_id"].map(given)
    cols = ["clip_id", "video_path", "subtitle_path", "tracks_path", "char_a", "char_b", "split"]
    if (manifest["audio_path"] != "").any():
        cols.append("audio_path")
    manifest[cols].to_csv(out / "manifest.csv", index=False)
    shutil.copyfile(listing["labels"], out / "labels_raw.csv")
    n_labels = max(0, sum(1 for ln in open(out / "labels_raw.csv", encoding="utf-8", errors="replace") if ln.strip()) - 1)
    summary = _counts(manifest[cols], n_labels)
    summary["n_without_audio"] = _count_without_audio(out, manifest[cols])
    summary["root"] = str(listing["root"])
    return summary


def _count_without_audio(root: Path, manifest) -> int:
    """Rows whose clip has no audio track and no audio_path (probed, not decoded)."""
    import av

    n = 0
    for _, row in manifest.iterrows():
        if row.get("audio_path", ""):
            continue
        try:
            with av.open(str(root / row["video_path"])) as c:
                n += not c.streams.audio
        except Exception:  # noqa: BLE001 - an unreadable video is the train stage's error, named there
            continue
    return n
