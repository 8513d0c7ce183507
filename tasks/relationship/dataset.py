"""Where the relationship stages find their inputs: the raw manifest joined to the clean labels, the
splits, the model files, and the pair features extracted once per clip and cached.

Feature cache: ``<train.cache_dir>/<key of feature config + vocabulary>/<key of the row>.npz``; a
row's key covers its clip id, pair, paths and the md5 of every file it names, so a changed clip (or
subtitle, tracks, audio file) is extracted again and an unchanged one never is. Written atomically;
a corrupt cache file is extracted again.

A clip that cannot be read (an unreadable video, a malformed SRT, a tracks file without one of the
pair...) is left out of training and evaluation by :func:`readable_features`, which returns it with
its one-line reason; the stages list those clips in their summaries and the report shows them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError, log, progress, resolve

ROW_KEYS = ("clip_id", "video_path", "subtitle_path", "tracks_path", "char_a", "char_b", "audio_path")


def raw_root(params: dict) -> Path:
    return resolve(params, params["relationship"]["data"]["raw_dir"])


def clean_root(params: dict) -> Path:
    return resolve(params, params["relationship"]["data"]["clean_dir"])


def labelled_rows(params: dict, split: str | None = None, *, min_n: int = 1) -> list[dict]:
    """Manifest rows (``<raw_dir>/manifest.csv``) with their clean ``label`` (``<clean_dir>/labels.csv``),
    of one split (None: every split); rows whose clip has no clean label are left out."""
    import pandas as pd

    names = list(params["relationship"]["clean"]["labels"])
    if len(names) != 5:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: relationship.clean.labels: the model needs five "
                            f"classes, most negative first (the coarse task groups them 2 / 1 / 2), got {names}; "
                            "the clean tool alone takes any label set")
    manifest, labels = raw_root(params) / "manifest.csv", clean_root(params) / "labels.csv"
    for path, stage in ((manifest, "acquire"), (labels, "clean")):
        if not path.is_file():
            raise MokuflowError(f"{path}: not found (run the {stage} stage first)")
    rows = pd.read_csv(manifest, keep_default_na=False, dtype=str)
    clean = pd.read_csv(labels, keep_default_na=False, dtype=str)
    known = set(names)
    if not set(clean["label"]) <= known:
        raise MokuflowError(f"{labels}: labels {sorted(set(clean['label']) - known)} are not in relationship.clean.labels "
                            f"{sorted(known)} (re-run the clean stage)")
    rows = rows.merge(clean[["clip_id", "label"]], on="clip_id", how="inner")
    if split is not None:
        rows = rows[rows["split"] == split]
    out = rows.to_dict("records")
    if len(out) < min_n:
        raise MokuflowError(f"{manifest}: {len(out)} labelled clip pairs in the '{split}' split, need at least {min_n}")
    return out


def label_ids(params: dict, rows: Sequence[dict]) -> np.ndarray:
    order = {lab: i for i, lab in enumerate(params["relationship"]["clean"]["labels"])}
    return np.array([order[r["label"]] for r in rows], dtype=np.int64)


def model_file(params: dict, name: str = "model.pt") -> Path:
    path = resolve(params, params["relationship"]["train"]["out_dir"]) / name
    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the train stage first)")
    return path


def feature_config(params: dict):
    from models.relationship.features import FeatureConfig

    f = params["relationship"]["features"]
    return FeatureConfig(**{k: int(f[k]) for k in FeatureConfig.__dataclass_fields__})


def build_vocab(params: dict, rows: Sequence[dict]):
    """The vocabulary of the training rows' subtitles (each file read once; a file that cannot be read
    is passed over here: its clip is left out, with the reason, by :func:`readable_features`)."""
    from models.relationship.features import Vocabulary
    from tasks.relationship.data import subtitle_texts

    f = params["relationship"]["features"]
    seen, texts = set(), []
    for r in rows:
        if r.get("subtitle_path") not in seen:
            seen.add(r.get("subtitle_path"))
            try:
                texts += subtitle_texts(raw_root(params), [r])
            except MokuflowError:
                pass
    return Vocabulary.build(texts, min_count=int(f["vocab_min_count"]), max_size=f["vocab_max_size"])


def _md5(path: Path, memo: dict) -> str:
    from tasks.core import file_md5

    if path not in memo:
        memo[path] = file_md5(path) if path.is_file() else "missing"
    return memo[path]


def features(params: dict, rows: Sequence[dict], vocab, cfg, *, root: Path | None = None) -> dict[str, np.ndarray]:
    """Stacked features of ``rows`` (paths relative to ``root``, default raw_dir), from the cache when
    there; a row that cannot be read is a MokuflowError naming its file."""
    feats, _, _ = readable_features(params, rows, vocab, cfg, root=root, strict=True)
    return feats


def readable_features(params: dict, rows: Sequence[dict], vocab, cfg, *, root: Path | None = None,
                      strict: bool = False) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """(stacked features, the rows kept, the rows left out) of ``rows``. A row whose files cannot be
    read is left out with ``{"clip_id", "char_a", "char_b", "split", "error"}`` (``strict``: raised).
    None of the rows readable is an error: there is nothing to train or evaluate on."""
    # the readers are imported whether the cache answers or not: what a stage imports (and so its
    # dvc.yaml deps) must not depend on the cache's state
    import models.common.frames  # noqa: F401
    import models.relationship.audio  # noqa: F401
    import tasks.relationship.subtitles  # noqa: F401
    import tasks.relationship.tracks  # noqa: F401
    from models.relationship.features import clip_features, stack
    from tasks.core import atomic_path
    from tasks.relationship.data import _path, clip_inputs

    root = raw_root(params) if root is None else root
    cache = resolve(params, params["relationship"]["train"]["cache_dir"]) / _digest(
        {"features": cfg.to_dict(), "vocab": list(vocab.words)})
    memo: dict = {}
    items, kept, skipped, hits = [], [], [], 0
    for row in progress(list(rows), "features"):
        key = {k: str(row.get(k) or "") for k in ROW_KEYS}
        key["md5"] = [_md5(p, memo) for p in (_path(root, row.get(c)) for c in ROW_KEYS[1:4] + ROW_KEYS[6:]) if p]
        path = cache / f"{_digest(key)}.npz"
        item = _read(path)
        if item is None:
            try:
                frames, fps, a, b, audio, cues = clip_inputs(root, row, sample_rate=cfg.sample_rate)
            except MokuflowError as e:
                if strict:
                    raise
                skipped.append({**{k: str(row.get(k, "")) for k in ("clip_id", "char_a", "char_b", "split")},
                                "error": str(e)})
                log(f"features: left out clip {row.get('clip_id')}: {e}")
                continue
            item = clip_features(frames, fps, a, b, audio, cues, vocab, cfg)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **item)
        else:
            hits += 1
        items.append(item)
        kept.append(row)
    log(f"features: {len(items)} clip pairs ({hits} from the cache {cache})"
        + (f", {len(skipped)} left out (unreadable)" if skipped else ""))
    if not items:
        raise MokuflowError(f"{root}: none of the {len(skipped)} clip pairs could be read; the first: "
                            f"{skipped[0]['error'] if skipped else 'no rows'}")
    return stack(items), kept, skipped


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - a corrupt cache file is extracted again
        return None
