"""A clip's audio as mono float32 at a fixed sample rate (PyAV), or None when it has no audio track.

Reads any container FFmpeg reads: a video's audio track (MP4 / AAC, WebM / Vorbis or Opus, MKV) or
an audio file (WAV, FLAC, MP3...). The first audio stream is decoded, resampled by FFmpeg's
resampler (``av.AudioResampler``) and its channels averaged (mono as librosa / torchaudio make it),
so every clip gives the same kind of array whatever it was recorded as.

Why the length is cut: AAC encoders pad the last frame (the decoder returns whole 1024-sample
frames, ~128 samples past the end of the track), so the decoded length is cut to the stream's
declared duration (the container's when the stream has none, as in WebM), never padded.

A missing, empty or unopenable file, or an audio track of which nothing decodes, raises
:class:`AudioReadError` naming the file. numpy + av only (no torch: runs in data loading anywhere).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # what speech models take


class AudioReadError(ValueError):
    """A file whose audio cannot be read; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """``[n]`` float32 samples in [-1, 1] at ``sample_rate``, mono; None when the file has no audio track."""
    import av

    path = Path(path)
    if not path.is_file():
        raise AudioReadError(path, "not found" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise AudioReadError(path, "empty file")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive integer, got {sample_rate!r}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise AudioReadError(path, f"cannot open: {e}") from None
    with container:
        if not container.streams.audio:  # a tuple, empty without audio (indexing it raises)
            return None
        stream = container.streams.audio[0]
        samples = _decode(path, container, stream, sample_rate)
        n = _declared_length(container, stream, sample_rate)
    return samples[:n] if n else samples


def _decode(path: Path, container, stream, sample_rate: int) -> np.ndarray:
    import av

    # planar float at the source layout, channels averaged here: FFmpeg's own down-mix to mono adds
    # the channels at -3 dB, which takes a loud stereo track past 1.0 (1.41 on the GRID fixture)
    resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=sample_rate)
    chunks = []
    try:
        for frame in container.decode(stream):
            chunks += [f.to_ndarray().mean(axis=0) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().mean(axis=0) for f in resampler.resample(None)]  # flush
    except (av.FFmpegError, ValueError) as e:
        if not chunks:
            raise AudioReadError(path, f"cannot decode the audio track: {e}") from None
        # a cut file: keep what decoded (the end is missing, the rest is sound)
    if not chunks:
        raise AudioReadError(path, "the audio track has no decodable sample")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _declared_length(container, stream, sample_rate: int) -> int | None:
    """Samples at ``sample_rate`` in the stream's declared duration (the container's if it has none)."""
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * sample_rate))
    if container.duration:
        return int(round(container.duration / 1_000_000 * sample_rate))  # av.time_base: microseconds
    return None
