"""Per-clip features of a character pair at a fixed number of time steps, one mask per modality.

A clip of any length becomes ``T`` equal time steps (``n_steps``); each modality is sampled at the
same steps, so a network can ask "what did the faces, the voice and the subtitles do *at once*":

- ``faces``  uint8 [T, 2, 3, F, F]   the top square of each character's box (the face), resized;
- ``bodies`` uint8 [T, 2, 3, Bh, Bw] the whole box, resized;
- ``motion`` float32 [T, 4]          centre distance / width, approach speed (widths per second,
  > 0 = getting closer), vertical offset / height, log size ratio a/b;
- ``mel``    float32 [T, M, n_mels]  log-mel energies, ``M`` sub-steps per step (prosody: bursts,
  pitch movement), from a numpy STFT and an HTK mel filterbank written here;
- ``tokens`` int64 [T, L]            ids of the subtitle words shown at the step's centre (``<none>``
  when no subtitle is on screen: silence is information), vocabulary built from training text;
- ``visual_mask``, ``audio_mask``, ``text_mask`` bool [T]: the modality is there at that step.
  No audio track / no subtitle file: the mask is all False (and the arrays zeros), which is how the
  network tells a missing modality from a quiet one.

Boxes are the tracks' rows ``[frame, x0, y0, x1, y1]`` (``tasks.relationship.tracks``): between
rows the box is interpolated; a step further than ``max_gap`` frames from a row of either character
is masked. numpy + OpenCV only (no tasks/ import: callers read the files).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

PAD, UNK, NONE = "<pad>", "<unk>", "<none>"
MODALITIES = ("visual", "audio", "text")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class FeatureConfig:
    n_steps: int = 16
    face_size: int = 16
    body_height: int = 24
    body_width: int = 16
    n_mels: int = 32
    mel_steps: int = 4          # sub-steps of mel per time step
    sample_rate: int = 16000
    max_tokens: int = 12
    max_gap: int = 2            # frames a box may be interpolated over before the step is masked

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------ time steps

def step_edges(seconds: float, n_steps: int) -> np.ndarray:
    """[T + 1] boundaries of ``n_steps`` equal steps over the clip."""
    return np.linspace(0.0, float(seconds), n_steps + 1)


def step_centres(seconds: float, n_steps: int) -> np.ndarray:
    e = step_edges(seconds, n_steps)
    return (e[:-1] + e[1:]) / 2


# ---------------------------------------------------------------------------------------- visual

def pair_boxes(rows: np.ndarray, frames: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [n, 4] at ``frames`` (linear between the track's rows, held at its ends) and whether
    each is within ``max_gap`` frames of a row."""
    rows = np.asarray(rows, dtype=float)
    f = rows[:, 0]
    boxes = np.stack([np.interp(frames, f, rows[:, k]) for k in range(1, 5)], axis=1)
    gap = np.abs(frames[:, None] - f[None, :]).min(axis=1)
    return boxes, gap <= max_gap


def crop(image: np.ndarray, box: Sequence[float], height: int, width: int) -> np.ndarray:
    """The box of an RGB image resized to ``height`` x ``width`` (parts outside the image are black)."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)


def face_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """The top square of a body box (the head); a box already about square is taken as a face box."""
    x0, y0, x1, y1 = box
    return x0, y0, x1, min(y1, y0 + (x1 - x0))


def visual_features(frames: np.ndarray, fps: float, rows_a: np.ndarray, rows_b: np.ndarray,
                    cfg: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """Faces, bodies, relative motion and the visual mask of the pair in RGB ``frames`` [N, H, W, 3]."""
    n, h, w = frames.shape[:3]
    T = cfg.n_steps
    centres = step_centres(n / fps, T)
    index = np.clip(np.floor(centres * fps), 0, n - 1)  # the frame shown at each step's centre
    (ba, ok_a), (bb, ok_b) = (pair_boxes(r, index, cfg.max_gap) for r in (rows_a, rows_b))
    faces = np.zeros((T, 2, 3, cfg.face_size, cfg.face_size), np.uint8)
    bodies = np.zeros((T, 2, 3, cfg.body_height, cfg.body_width), np.uint8)
    for t in range(T):
        img = frames[int(index[t])]
        for k, box in enumerate((ba[t], bb[t])):
            faces[t, k] = crop(img, face_box(box), cfg.face_size, cfg.face_size).transpose(2, 0, 1)
            bodies[t, k] = crop(img, box, cfg.body_height, cfg.body_width).transpose(2, 0, 1)
    mask = ok_a & ok_b
    motion = relative_motion(ba, bb, width=w, height=h, step_seconds=n / fps / T)
    motion[~mask] = 0.0
    return {"faces": faces, "bodies": bodies, "motion": motion, "visual_mask": mask}


def relative_motion(ba: np.ndarray, bb: np.ndarray, *, width: int, height: int, step_seconds: float) -> np.ndarray:
    """[T, 4]: distance / width, approach speed (widths / s), vertical offset / height, log size ratio."""
    ca, cb = (np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1) for b in (ba, bb))
    dist = np.abs(ca[:, 0] - cb[:, 0]) / width
    approach = -np.gradient(dist, step_seconds) if len(dist) > 1 else np.zeros_like(dist)
    dy = (ca[:, 1] - cb[:, 1]) / height
    size = np.log(np.maximum(ba[:, 3] - ba[:, 1], 1) / np.maximum(bb[:, 3] - bb[:, 1], 1))
    return np.stack([dist, approach, dy, size], 1).astype(np.float32)


# ----------------------------------------------------------------------------------------- audio

def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters equally spaced on the HTK mel scale."""
    fmax = sample_rate / 2 if fmax is None else fmax
    mel = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    hz = 700.0 * (10 ** (mel / 2595.0) - 1)
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (bins[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - bins[None]) / np.maximum(hi - mid, 1e-9)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def _hz_to_mel(f: float) -> float:
    return 2595.0 * np.log10(1 + f / 700.0)


def log_mel(audio: np.ndarray, sample_rate: int, n_mels: int, *, win_s: float = 0.025,
            hop_s: float = 0.010) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel [frames, n_mels], frame centre times in s) of mono ``audio``; Hann window."""
    n_fft = int(round(win_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    x = np.asarray(audio, np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    mel = spec @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(mel + 1e-6).astype(np.float32), (np.arange(n) * hop + n_fft / 2) / sample_rate


def audio_features(audio: np.ndarray | None, seconds: float, cfg: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """Log-mel pooled into ``n_steps`` x ``mel_steps`` bins of the clip; masked where there is no sound track."""
    T, M = cfg.n_steps, cfg.mel_steps
    mel = np.zeros((T, M, cfg.n_mels), np.float32)
    if audio is None or len(audio) == 0:
        return {"mel": mel, "audio_mask": np.zeros(T, bool)}
    logmel, times = log_mel(audio, cfg.sample_rate, cfg.n_mels)
    bins = np.floor(times / seconds * T * M).astype(np.int64)
    keep = (bins >= 0) & (bins < T * M)
    sums = np.zeros((T * M, cfg.n_mels), np.float64)
    np.add.at(sums, bins[keep], logmel[keep])
    counts = np.bincount(bins[keep], minlength=T * M)
    floor = float(np.log(1e-6))
    pooled = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], floor)
    mel[:] = pooled.reshape(T, M, cfg.n_mels)
    covered = step_centres(seconds, T) < len(audio) / cfg.sample_rate  # a short track leaves the end silent
    mel[~covered] = 0.0
    return {"mel": mel, "audio_mask": covered}


# ------------------------------------------------------------------------------------------ text

def tokenize(text: str) -> list[str]:
    """Lower-case words, apostrophes kept inside (``don't`` is one word: negation matters)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Words of the training subtitles, most frequent first after ``<pad>``, ``<unk>``, ``<none>``."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        if self.words[:3] != [PAD, UNK, NONE]:
            raise ValueError(f"a vocabulary starts with {PAD}, {UNK}, {NONE}; got {self.words[:3]}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        counts = Counter(w for t in texts for w in tokenize(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, NONE] + ranked[:None if max_size is None else max(0, max_size - 3)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str | None, max_tokens: int) -> np.ndarray:
        """[max_tokens] ids, padded with 0; no text gives ``<none>``."""
        ids = [self.index.get(w, 1) for w in tokenize(text)] if text else [2]
        out = np.zeros(max_tokens, np.int64)
        out[:min(len(ids), max_tokens)] = ids[:max_tokens]
        return out


def text_features(cues: Sequence[tuple[float, float, str]] | None, seconds: float, vocab: Vocabulary,
                  cfg: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """The words on screen at each step's centre; masked throughout when there are no subtitles."""
    T = cfg.n_steps
    tokens = np.zeros((T, cfg.max_tokens), np.int64)
    if cues is None:
        return {"tokens": tokens, "text_mask": np.zeros(T, bool)}
    for t, c in enumerate(step_centres(seconds, T)):
        shown = " ".join(text for start, end, text in cues if start <= c < end)
        tokens[t] = vocab.encode(shown, cfg.max_tokens)
    return {"tokens": tokens, "text_mask": np.ones(T, bool)}


# ------------------------------------------------------------------------------------------ clip

def clip_features(frames: np.ndarray, fps: float, rows_a: np.ndarray, rows_b: np.ndarray,
                  audio: np.ndarray | None, cues: Sequence[tuple[float, float, str]] | None,
                  vocab: Vocabulary, cfg: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """Every modality of one clip: decoded RGB ``frames``, the pair's track rows, audio at
    ``cfg.sample_rate`` (None: no track) and subtitle cues (None: no subtitles)."""
    if len(frames) == 0:
        raise ValueError("a clip needs at least one frame")
    seconds = len(frames) / fps
    return {**visual_features(frames, fps, rows_a, rows_b, cfg), **audio_features(audio, seconds, cfg),
            **text_features(cues, seconds, vocab, cfg)}


def read_frames(path) -> tuple[np.ndarray, float]:
    """All RGB frames [N, H, W, 3] of a short video and its frame rate (cv2; clips here are seconds long)."""
    import cv2

    from models.common.frames import VideoFrames

    video = VideoFrames(path)
    frames = np.stack([f.image for f in video])
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    return frames, fps


def stack(items: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-clip feature dicts -> one array per key with a leading clip axis."""
    if not items:
        raise ValueError("no clips to stack")
    return {k: np.stack([it[k] for it in items]) for k in items[0]}
