"""A manifest row's files -> the model's features: the readers (tracks, SubRip, audio) joined to
:mod:`models.relationship.features`, for the train / evaluate stages and serving.

An empty ``subtitle_path`` means no subtitles, a clip without an audio track no audio (both become
masks, not errors); a file that is named but missing or unreadable is one MokuflowError line naming
it. torch-free; cv2 / av are imported by the functions called.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tasks.core import MokuflowError


def _path(root: Path, value) -> Path | None:
    text = "" if value is None else str(value).strip()
    if not text or text.lower() == "nan":
        return None
    p = Path(text)
    return p if p.is_absolute() else root / p


def clip_inputs(root: str | Path, row: dict, *, sample_rate: int = 16000):
    """(frames, fps, rows_a, rows_b, audio or None, cues or None) of one manifest ``row``; paths
    relative to ``root``. An ``audio_path`` column, when present and non-empty, overrides the clip's track."""
    from models.common.frames import FrameReadError
    from models.relationship.audio import AudioReadError, load_audio
    from models.relationship.features import read_frames
    from tasks.relationship.subtitles import read_srt
    from tasks.relationship.tracks import read_tracks

    root = Path(root)
    video = _path(root, row.get("video_path"))
    if video is None:
        raise MokuflowError(f"clip {row.get('clip_id', '?')}: no video_path")
    try:
        frames, fps = read_frames(video)
        audio_file = _path(root, row.get("audio_path")) or video
        audio = load_audio(audio_file, sample_rate=sample_rate)
    except (FrameReadError, AudioReadError) as e:
        raise MokuflowError(str(e)) from None
    tracks = read_tracks(_path(root, row.get("tracks_path")) or root / "<no tracks_path>",
                         (str(row["char_a"]), str(row["char_b"])))
    subs = _path(root, row.get("subtitle_path"))
    cues = [tuple(c) for c in read_srt(subs)] if subs is not None else None
    a, b = (tracks.boxes[str(row[k])] for k in ("char_a", "char_b"))
    return frames, tracks.fps or fps, a, b, audio, cues


def subtitle_texts(root: str | Path, rows: Iterable[dict]) -> list[str]:
    """Every cue text of the rows' subtitle files (to build the vocabulary from the training split)."""
    from tasks.relationship.subtitles import read_srt

    out = []
    for row in rows:
        p = _path(Path(root), row.get("subtitle_path"))
        if p is not None:
            out += [c.text for c in read_srt(p)]
    return out


def extract(root: str | Path, rows: Sequence[dict], vocab, cfg) -> dict:
    """Stacked features of ``rows`` (see models.relationship.features.clip_features)."""
    from models.relationship.features import clip_features, stack

    items = []
    for row in rows:
        frames, fps, a, b, audio, cues = clip_inputs(root, row, sample_rate=cfg.sample_rate)
        items.append(clip_features(frames, fps, a, b, audio, cues, vocab, cfg))
    return stack(items)
