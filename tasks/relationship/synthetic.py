"""Synthetic relationship clips with known truth: a designated pair among 3-4 characters, every cue timed.

Each clip is a short scene (2-4 s, 96x128 px, 8 fps by default): three or four drawn characters
(head ellipse, eyes, brows, mouth) who speak in turn. The designated pair's relationship (hostile,
tense, neutral, mild, intimate = valence -2..2) shows only in cues that happen *together in time*:

- *visual*: while one of the pair speaks to the other, both faces show the line's meaning (mouth
  curvature, brows) and the speaker may gesture (a raised fist when negative, a hand reached out
  when positive); the speaker's mouth opens with each syllable. Outside the pair's lines their faces
  drift at random. The two approach (positive) or retreat (negative), but not in every clip;
- *text* (SRT): every line is subtitled without a speaker name, so the pair's lines, the distractor
  pair's lines (their own valence) and neutral filler read alike; only the timing says whose line
  it is. The wording carries sentiment through a small grammar with negation ("I don't trust you"),
  contradictions ("I like you, but you are cruel": the last clause decides) and filler; some pair
  lines are sarcastic (positive words, the face says otherwise); some lines have no subtitle;
- *audio*: speech-like prosody (harmonic voice at the speaker's pitch, a syllable-rate energy
  envelope shared with the mouth, louder / higher / faster when negative) for every line, and music
  whose mode, tempo and loudness fit the pair's scene in most clips and contradict it otherwise.

So text alone mixes the pair's lines with the distractors', audio alone too, and visual alone has
noisy faces that matter only while the pair speaks: the label needs the modalities aligned in time.
Some clips have no audio track, some no subtitles (an empty ``subtitle_path``). Crowd labels come
from :func:`models.relationship.simulate.simulate_crowd` (careful, lazy, spamming annotators).

Layout written under ``out_dir`` (paths in the tables relative to it)::

    manifest.csv    clip_id, video_path, subtitle_path, tracks_path, char_a, char_b, split
    labels_raw.csv  clip_id, annotator_id, label
    truth.csv       clip_id, char_a, char_b, label
    lines.csv       clip_id, start_s, end_s, speaker, listener, role, sentiment, wording, subtitled, text
    clips/<id>.mp4 (H.264 + AAC), <id>.srt, <id>.tracks.json (format: tasks.relationship.tracks)

Deterministic for a seed (byte-identical files: one encoder thread, fixed options, per-clip random
streams). numpy at import; cv2 / av / pandas inside functions (cheap module import).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from tasks.relationship.labels import LABELS

NAMES = ("anna", "ben", "carl", "dana", "eve", "finn", "gus", "hana")
PRIOR = (0.16, 0.2, 0.28, 0.2, 0.16)  # mildly imbalanced, as real relationship labels are
SAMPLE_RATE = 16000
MANIFEST_COLUMNS = ("clip_id", "video_path", "subtitle_path", "tracks_path", "char_a", "char_b", "split")

# ---------------------------------------------------------------------------------- the grammar
# Word lists by sentiment (-2..2): "I {verb} you", "you are {adj}". Negating weakens and flips:
# "not love" is -1, "not hate" is +1 (no one says "I don't hate you" to mean love).
VERBS = {2: ("love", "adore", "cherish"), 1: ("like", "trust", "respect"),
         -1: ("doubt", "resent", "distrust"), -2: ("hate", "despise", "loathe")}
ADJS = {2: ("wonderful", "amazing", "precious"), 1: ("kind", "fair", "sweet"),
        -1: ("annoying", "rude", "selfish"), -2: ("cruel", "disgusting", "vile")}
NEGATIONS = ("don't", "do not", "never")
FILLER = ("the train leaves at six.", "did you lock the door?", "it is raining again.", "pass me the salt.",
          "I need more coffee.", "where are the keys?", "we should go now.", "the meeting is on monday.",
          "okay.", "hmm, right.", "see you later.", "what time is it?")
SARCASM = ("oh sure,", "oh great,", "wow,")


def clause(rng, s: int) -> str:
    """One clause meaning sentiment ``s`` (-2..2); 0 is filler."""
    if s == 0:
        return str(rng.choice(FILLER))
    negate = abs(s) == 1 and rng.random() < 0.4  # a mild meaning is often said as a negated strong one
    word_s = -int(np.sign(s)) * int(rng.integers(1, 3)) if negate else s
    if rng.random() < 0.5:
        neg = f"{rng.choice(NEGATIONS)} " if negate else ""
        return f"I {neg}{rng.choice(VERBS[word_s])} you"
    neg = "not " if negate else ("so " if abs(s) == 2 and rng.random() < 0.5 else "")
    return f"{rng.choice(['you are', 'what you did was'])} {neg}{rng.choice(ADJS[word_s])}"


def sentence(rng, s: int, *, sarcastic: bool = False) -> tuple[str, int]:
    """(text, wording sentiment): ``s`` said plainly, after a contradicting clause (``X, but Y``: Y
    decides), or with filler before it; sarcastic: the opposite words (the face tells the truth)."""
    wording = -s if sarcastic and s else s
    main = clause(rng, wording)
    r = rng.random()
    if s and r < 0.25:
        text = f"{clause(rng, -int(np.sign(wording)) * int(rng.integers(1, 3)))}, but {main}"
    elif r < 0.45:
        text = f"{rng.choice(FILLER)} {main}"
    else:
        text = main
    if sarcastic and rng.random() < 0.5:
        text = f"{rng.choice(SARCASM)} {text}"
    text = text[0].upper() + text[1:]
    return text + ("." if not text.endswith(("?", ".")) else ""), wording


# ---------------------------------------------------------------------------------- the scene

@dataclass
class Line:
    start: float
    end: float
    speaker: str
    listener: str
    role: str          # "pair", "distractor" or "filler"
    sentiment: int     # what the line means (-2..2)
    wording: int       # what its words say (differs when sarcastic)
    text: str
    subtitled: bool
    gesture: bool      # whether the speaker gestures (only lines with a sentiment)
    syllables: np.ndarray = field(repr=False)  # [k, 2] onset and duration (s): mouth and voice share them


@dataclass
class Scene:
    clip_id: str
    chars: list[str]
    pair: tuple[str, str]
    label: int                     # index into LABELS; valence = label - 2
    distractor_valence: int
    seconds: float
    n_frames: int
    lines: list[Line]
    music_valence: int
    has_audio: bool
    has_subtitles: bool
    looks: dict = field(repr=False)  # per character: slot x, colours, pitch, phase


def make_scene(rng, clip_id: str, *, fps: float, width: int, min_seconds: float = 2.0,
               max_seconds: float = 4.0, p_no_audio: float = 0.15, p_no_subtitles: float = 0.15,
               p_music_fits: float = 0.6) -> Scene:
    n = int(rng.integers(3, 5))
    chars = [str(c) for c in rng.choice(NAMES, n, replace=False)]
    label = int(rng.choice(len(LABELS), p=PRIOR))
    v, vd = label - 2, int(rng.integers(-2, 3))
    n_frames = int(round(rng.uniform(min_seconds, max_seconds) * fps))
    seconds = n_frames / fps
    slots = _slots(rng, n, width)
    pair = (chars[0], chars[1])
    others = [c for c in chars if c not in pair]
    lines = _lines(rng, seconds, pair, others, v, vd)
    r = rng.random()
    music = v if r < p_music_fits else (vd if r < p_music_fits + 0.2 else int(rng.integers(-2, 3)))
    looks = {c: {"x": slots[i], "shirt": rng.uniform(40, 230, 3), "skin": _skin(rng),
                 "pitch": float(rng.uniform(100, 250)), "phase": float(rng.uniform(0, 2 * math.pi)),
                 "feet": float(rng.uniform(0.88, 0.94))} for i, c in enumerate(chars)}
    return Scene(clip_id, chars, pair, label, vd, seconds, n_frames, lines, music,
                 has_audio=bool(rng.random() >= p_no_audio), has_subtitles=bool(rng.random() >= p_no_subtitles),
                 looks=looks)


def _slots(rng, n: int, width: int) -> list[float]:
    """x centres for ``chars`` (the pair first): the pair side by side, so approaching means walking
    towards each other; the names are drawn at random, so "first two" says nothing."""
    xs = [width * (k + 0.5) / n for k in range(n)]
    left = int(rng.integers(0, n - 1))
    pair = [left, left + 1] if rng.random() < 0.5 else [left + 1, left]
    rest = [k for k in range(n) if k not in pair]
    return [xs[k] for k in pair + [rest[i] for i in rng.permutation(len(rest))]]


def _skin(rng) -> np.ndarray:
    return np.array([rng.uniform(150, 235), rng.uniform(120, 200), rng.uniform(90, 170)])


def _lines(rng, seconds: float, pair, others, v: int, vd: int) -> list[Line]:
    """Back-to-back lines: at least one of the pair's and one of the distractors', the rest any role."""
    t, spans = 0.1 + rng.uniform(0, 0.2), []
    longest = min(1.1, (seconds - 0.6) / 2)  # room for two lines, however short the clip
    while True:
        d = rng.uniform(min(0.6, longest), longest)
        if t + d > seconds - 0.05:
            break
        spans.append((t, t + d))
        t += d + rng.uniform(0.05, 0.25)
    roles = ["pair", "distractor"] + [str(rng.choice(["pair", "distractor", "filler"], p=[0.5, 0.25, 0.25]))
                                      for _ in range(max(0, len(spans) - 2))]
    roles = [roles[i] for i in rng.permutation(len(roles))][:len(spans)]
    return [_line(rng, a, b, role, pair, others, v, vd) for (a, b), role in zip(spans, roles)]


def _line(rng, start, end, role, pair, others, v, vd) -> Line:
    everyone = list(pair) + list(others)
    if role == "pair":
        speaker, listener = (pair if rng.random() < 0.5 else pair[::-1])
        s = int(np.clip(v + (rng.choice([-1, 1]) if rng.random() < 0.2 else 0), -2, 2))  # not every line is on key
    elif role == "distractor":
        speaker = str(rng.choice(others))
        rest = [c for c in others if c != speaker]
        listener = rest[0] if rest else ""  # three characters: the third talks to someone off-screen
        s = vd
    else:
        speaker, listener, s = str(rng.choice(everyone)), "", 0
    sarcastic = role == "pair" and s != 0 and rng.random() < 0.2
    text, wording = sentence(rng, s, sarcastic=sarcastic)
    rate = {-2: 6.5, -1: 5.5, 0: 4.5, 1: 4.0, 2: 3.5}[s] * rng.uniform(0.85, 1.15)  # agitation speeds speech up
    onsets = np.arange(start + 0.03, end - 0.1, 1 / rate)
    syl = np.stack([onsets, rng.uniform(0.6, 0.9, len(onsets)) / rate], axis=1)
    return Line(float(start), float(end), speaker, listener, role, s, wording, text,
                subtitled=bool(rng.random() < 0.9), gesture=bool(s != 0 and rng.random() < 0.5), syllables=syl)


def active_line(scene: Scene, t: float) -> Line | None:
    for ln in scene.lines:
        if ln.start <= t < ln.end:
            return ln
    return None


def mouth_open(line: Line | None, t: float) -> float:
    """Syllable envelope in [0, 1] at time ``t`` (raised cosine per syllable): the voice's too."""
    if line is None:
        return 0.0
    on, dur = line.syllables[:, 0], line.syllables[:, 1]
    x = (t - on) / dur
    inside = (x >= 0) & (x < 1)
    return float(np.max(np.where(inside, np.sin(np.pi * np.clip(x, 0, 1)), 0.0), initial=0.0))


# ---------------------------------------------------------------------------------- video

def render(scene: Scene, rng, *, height: int, width: int, fps: float) -> tuple[np.ndarray, dict]:
    """RGB uint8 frames [N, H, W, 3] and the tracks document (boxes with tracker jitter and misses)."""
    background = _background(rng, height, width)
    states = _states(scene, rng, fps)
    frames = np.empty((scene.n_frames, height, width, 3), np.uint8)
    tracks = {c: [] for c in scene.chars}
    scale = height / 96
    for f in range(scene.n_frames):
        img = background.copy()
        for c in sorted(scene.chars, key=lambda c: scene.looks[c]["feet"]):  # nearer (lower) drawn last
            box = _figure(img, scene.looks[c], {k: v[f] for k, v in states[c].items()}, scale)
            if rng.random() >= 0.04:  # the tracker misses a character now and then
                jit = rng.normal(0, 0.6 * scale, 4)
                tracks[c].append([f] + [round(float(min(max(b + j, 0), lim)), 1) for b, j, lim in
                                        zip(box, jit, (width - 1, height - 1, width, height))])
        frames[f] = img
    for c, rows in tracks.items():  # every character is seen at least once (the reader needs a row)
        if not rows:
            tracks[c] = [[0, 0.0, 0.0, 1.0, 1.0]]
    return frames, {"fps": fps, "tracks": tracks}


def _background(rng, height: int, width: int) -> np.ndarray:
    import cv2

    top, bottom, floor = (rng.uniform(30, 220, 3) for _ in range(3))
    w = np.linspace(0, 1, height)[:, None, None]
    img = (top * (1 - w) + bottom * w) * np.ones((1, width, 1))
    horizon = int(height * rng.uniform(0.6, 0.75))
    img[horizon:] = floor * 0.8 + img[horizon:] * 0.2
    for _ in range(int(rng.integers(1, 3))):  # furniture: boxes behind the characters
        x0, y0 = int(rng.uniform(0, width * 0.8)), int(rng.uniform(height * 0.3, horizon))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.uniform(10, 40)), horizon), rng.uniform(30, 220, 3).tolist(), -1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _states(scene: Scene, rng, fps: float) -> dict[str, dict[str, np.ndarray]]:
    """Per character and frame: x offset, expression (-1..1), mouth, gesture, head sway."""
    n, (a, b), v = scene.n_frames, scene.pair, scene.label - 2
    t = (np.arange(n) + 0.5) / fps
    out = {}
    others = [c for c in scene.chars if c not in scene.pair]
    for c in scene.chars:
        expr = _smooth(rng.normal(0, 0.45, n), 3)  # idle faces drift: no information
        st = {"expr": expr, "mouth": np.zeros(n), "gesture": np.zeros(n, np.int64), "dx": np.zeros(n),
              "sway": 1.5 * np.sin(2 * math.pi * 0.7 * t + scene.looks[c]["phase"])}
        out[c] = st
    _walk(out, scene, a, b, v, rng, t)
    if len(others) == 2:
        _walk(out, scene, others[0], others[1], scene.distractor_valence, rng, t)
    for f, tf in enumerate(t):
        ln = active_line(scene, tf)
        if ln is None:
            continue
        out[ln.speaker]["mouth"][f] = mouth_open(ln, tf)
        faces = [ln.speaker] + ([ln.listener] if ln.listener else [])
        for c in faces:  # both faces show what the line means, not what its words say
            out[c]["expr"][f] = np.clip(ln.sentiment / 2 + rng.normal(0, 0.3), -1, 1)
        if ln.gesture:
            out[ln.speaker]["gesture"][f] = 1 if ln.sentiment < 0 else 2
    return out


def _walk(states, scene, a, b, v, rng, t):
    """a and b walk towards each other (v > 0) or apart (v < 0), in 65 % of the scenes."""
    if v == 0 or rng.random() < 0.35:
        return
    xa, xb = scene.looks[a]["x"], scene.looks[b]["x"]
    toward = np.sign(xb - xa)
    amount = v * rng.uniform(3, 6) * (t / t[-1])
    states[a]["dx"] += toward * amount
    states[b]["dx"] -= toward * amount


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    return np.convolve(np.pad(x, k // 2, mode="edge"), np.ones(k) / k, mode="valid")


def _figure(img, look: dict, st: dict, s: float) -> tuple[float, float, float, float]:
    """Draw one character; returns its box (head to feet, arms left out) in pixels."""
    import cv2

    h = img.shape[0]
    x = look["x"] + st["dx"] + st["sway"] * 0.3
    feet = look["feet"] * h
    hy, hx = feet - 50 * s, x + st["sway"] * 0.5 * s
    sh, hip = hy + 11 * s, hy + 32 * s
    shirt, skin = look["shirt"].tolist(), look["skin"].tolist()
    aa = cv2.LINE_AA
    for dxl in (-4, 4):  # legs
        cv2.line(img, _p(x + dxl * s, hip), _p(x + dxl * 1.2 * s, feet), (40, 40, 60), max(1, int(3 * s)), aa)
    cv2.rectangle(img, _p(x - 8 * s, sh), _p(x + 8 * s, hip), shirt, -1)
    _arms(img, x, sh, hy, int(st["gesture"]), look, s, skin)
    cv2.ellipse(img, _p(hx, hy), _p(7 * s, 9 * s), 0, 0, 360, skin, -1, aa)
    _face(img, hx, hy, float(st["expr"]), float(st["mouth"]), s)
    return x - 9 * s, hy - 9 * s, x + 9 * s, feet


def _arms(img, x, sh, hy, gesture: int, look, s, colour) -> None:
    """0 at rest, 1 a raised fist (negative), 2 a hand reached out towards the middle (positive)."""
    import cv2

    toward = 1 if look["x"] < img.shape[1] / 2 else -1
    for side in (-1, 1):
        start = (x + side * 8 * s, sh + 2 * s)
        if gesture == 1 and side == toward:
            end = (x + side * 6 * s, hy - 12 * s)
        elif gesture == 2 and side == toward:
            end = (x + side * 22 * s, sh + 5 * s)
        else:
            end = (x + side * 10 * s, sh + 18 * s)
        cv2.line(img, _p(*start), _p(*end), colour, max(1, int(3 * s)), cv2.LINE_AA)
        cv2.circle(img, _p(*end), max(1, int(2 * s)), colour, -1, cv2.LINE_AA)


def _face(img, x, y, expr: float, mouth: float, s: float) -> None:
    import cv2

    dark, aa = (30, 20, 20), cv2.LINE_AA
    for side in (-1, 1):
        cv2.circle(img, _p(x + side * 3 * s, y - 1.5 * s), max(1, int(round(s))), dark, -1, aa)
        inner, outer = y - 4.5 * s + max(0, -expr) * 1.8 * s, y - 4.5 * s - max(0, -expr) * 0.8 * s
        cv2.line(img, _p(x + side * 1.2 * s, inner), _p(x + side * 5 * s, outer), dark, 1, aa)  # angry brows slant in
    my = y + 4 * s
    if mouth > 0.15:
        cv2.ellipse(img, _p(x, my), _p(2.5 * s, (0.8 + 2.2 * mouth) * s), 0, 0, 360, (120, 20, 30), -1, aa)
    bend = abs(expr) * 3 * s
    if expr >= 0:  # a smile is the lower half of an ellipse, a frown the upper half, lower down
        cv2.ellipse(img, _p(x, my - bend * 0.5), _p(4 * s, max(bend, 0.5)), 0, 0, 180, dark, 1, aa)
    else:
        cv2.ellipse(img, _p(x, my + bend * 0.5), _p(4 * s, max(bend, 0.5)), 0, 180, 360, dark, 1, aa)


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


# ---------------------------------------------------------------------------------- audio

def synthesize_audio(scene: Scene, rng, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 mono in [-1, 1]: music for the scene plus a voice for each line."""
    n = int(round(scene.seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = _music(rng, t, scene.music_valence)
    for ln in scene.lines:
        out += _voice(rng, t, ln, scene.looks[ln.speaker]["pitch"], sample_rate)
    out += rng.normal(0, 0.003, n)
    peak = np.abs(out).max()
    return (out * (0.9 / peak) if peak > 0.9 else out).astype(np.float32)


def _music(rng, t: np.ndarray, v: int) -> np.ndarray:
    """Triads on every beat: major when positive, minor when negative; fast and loud when negative."""
    minor = v < 0 or (v == 0 and rng.random() < 0.5)
    bpm = {-2: 150, -1: 125, 0: 100, 1: 88, 2: 72}[v] * rng.uniform(0.92, 1.08)
    gain = {-2: 0.2, -1: 0.15, 0: 0.1, 1: 0.08, 2: 0.06}[v] * rng.uniform(0.85, 1.15)
    root = 48 + int(rng.integers(0, 12))
    third = 3 if minor else 4
    progression = (0, 5, 7, 0) if not minor else (0, 5, 8, 7)
    beat = 60 / bpm
    k = (t // beat).astype(np.int64)
    phase = t - k * beat
    env = np.exp(-phase / (0.35 * beat))
    out = np.zeros_like(t)
    for step in range(4):
        on = (k // 2) % 4 == step  # two beats per chord
        if not on.any():
            continue
        for interval in (0, third, 7):
            f = 440 * 2 ** ((root + progression[step] + interval - 69) / 12)
            out[on] += np.sin(2 * np.pi * f * t[on]) + 0.3 * np.sin(4 * np.pi * f * t[on])
    return gain / 3 * out * env


def _voice(rng, t: np.ndarray, ln: Line, pitch: float, sample_rate: int) -> np.ndarray:
    """Harmonics of a moving f0 under the line's syllable envelope: higher, louder, more varied when negative."""
    s = ln.sentiment
    lo, hi = np.searchsorted(t, [ln.start, ln.end])
    tt = t[lo:hi]
    if len(tt) == 0:
        return np.zeros_like(t)
    level = {-2: 0.5, -1: 0.38, 0: 0.28, 1: 0.24, 2: 0.18}[s] * rng.uniform(0.85, 1.15)
    f0 = pitch * {-2: 1.35, -1: 1.18, 0: 1.0, 1: 0.96, 2: 0.9}[s]
    wobble = {-2: 0.18, -1: 0.12, 0: 0.06, 1: 0.05, 2: 0.04}[s]
    contour = f0 * (1 + wobble * np.sin(2 * np.pi * rng.uniform(1, 3) * (tt - ln.start) + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(contour) / sample_rate
    voice = sum(np.sin(h * phase) / h for h in range(1, 7)) + 0.1 * rng.normal(0, 1, len(tt))
    env = np.array([mouth_open(ln, x) for x in tt[::40]])  # the envelope at 2.5 ms steps, interpolated
    env = np.interp(np.arange(len(tt)), np.arange(0, len(tt), 40), env)
    out = np.zeros_like(t)
    out[lo:hi] = level * voice * env / 2
    return out


# ---------------------------------------------------------------------------------- files

def write_clip(path: Path, frames: np.ndarray, audio: np.ndarray | None, *, fps: float,
               sample_rate: int = SAMPLE_RATE) -> None:
    """H.264 (+ AAC when ``audio``) MP4; one thread and fixed options so the bytes repeat."""
    import av

    with av.open(str(path), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        v.height, v.width = frames.shape[1:3]
        v.pix_fmt = "yuv420p"
        v.thread_count = 1
        v.options = {"crf": "24", "preset": "veryfast", "threads": "1"}
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=sample_rate, layout="mono")
            a.bit_rate = 48000
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode())
        if a is not None:
            for i in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[None, i:i + 1024])
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = sample_rate, i, Fraction(1, sample_rate)
                c.mux(a.encode(af))
            c.mux(a.encode())


def write_srt(path: Path, lines: list[Line]) -> None:
    cues = [ln for ln in lines if ln.subtitled]
    if not cues:  # an SRT needs a cue: say nothing meaningful rather than write an empty file
        cues = [Line(0.0, 0.5, "", "", "filler", 0, 0, "...", True, False, np.zeros((0, 2)))]
    blocks = [f"{k}\n{_ts(ln.start)} --> {_ts(ln.end)}\n{ln.text}\n" for k, ln in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")


def _ts(sec: float) -> str:
    ms = int(round(sec * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def generate(out_dir: str | Path, *, seed: int = 0, n_clips: int = 300, height: int = 96, width: int = 128,
             fps: float = 8, min_seconds: float = 2.0, max_seconds: float = 4.0, p_no_audio: float = 0.15,
             p_no_subtitles: float = 0.15, p_music_fits: float = 0.6, labels_per_clip: int = 5,
             split: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict:
    """Write ``n_clips`` clips and the tables into ``out_dir`` (created); returns a summary."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(n_clips):
        rng = np.random.default_rng([seed, i])  # one stream per clip: clip i is the same whatever n_clips
        scene = make_scene(rng, f"clip{i:05d}", fps=fps, width=width, min_seconds=min_seconds,
                           max_seconds=max_seconds, p_no_audio=p_no_audio, p_no_subtitles=p_no_subtitles,
                           p_music_fits=p_music_fits)
        _write_scene(out, scene, rng, height=height, width=width, fps=fps)
        scenes.append(scene)
    splits = assign_splits(n_clips, split, seed)
    _write_tables(out, scenes, splits, seed=seed, labels_per_clip=labels_per_clip)
    return {"n_clips": n_clips, "n_without_audio": sum(not s.has_audio for s in scenes),
            "n_without_subtitles": sum(not s.has_subtitles for s in scenes),
            "label_counts": {lab: sum(s.label == k for s in scenes) for k, lab in enumerate(LABELS)}}


def _write_scene(out: Path, scene: Scene, rng, *, height: int, width: int, fps: float) -> None:
    frames, tracks = render(scene, rng, height=height, width=width, fps=fps)
    audio = synthesize_audio(scene, rng) if scene.has_audio else None
    base = out / "clips" / scene.clip_id
    write_clip(base.with_suffix(".mp4"), frames, audio, fps=fps)
    (base.parent / f"{scene.clip_id}.tracks.json").write_text(json.dumps(tracks, sort_keys=True) + "\n")
    if scene.has_subtitles:
        write_srt(base.with_suffix(".srt"), scene.lines)


def assign_splits(n: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """train / val / test by a seeded permutation, each non-empty when n >= 3."""
    order = np.random.default_rng([seed, 10**6]).permutation(n)
    total = sum(fractions)
    n_val = max(1, int(round(n * fractions[1] / total))) if n >= 3 else 0
    n_test = max(1, int(round(n * fractions[2] / total))) if n >= 3 else 0
    names = np.array(["train"] * n, dtype=object)
    names[order[:n_val]] = "val"
    names[order[n_val:n_val + n_test]] = "test"
    return [str(s) for s in names]


def _write_tables(out: Path, scenes: list[Scene], splits: list[str], *, seed: int, labels_per_clip: int) -> None:
    import pandas as pd

    from models.relationship.simulate import simulate_crowd
    from tasks.core import write_csv

    rows = [{"clip_id": s.clip_id, "video_path": f"clips/{s.clip_id}.mp4",
             "subtitle_path": f"clips/{s.clip_id}.srt" if s.has_subtitles else "",
             "tracks_path": f"clips/{s.clip_id}.tracks.json", "char_a": s.pair[0], "char_b": s.pair[1],
             "split": sp} for s, sp in zip(scenes, splits)]
    write_csv(out / "manifest.csv", pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)))
    write_csv(out / "truth.csv", pd.DataFrame([{"clip_id": s.clip_id, "char_a": s.pair[0], "char_b": s.pair[1],
                                                "label": LABELS[s.label]} for s in scenes]))
    lines = [{"clip_id": s.clip_id, "start_s": round(ln.start, 3), "end_s": round(ln.end, 3), "speaker": ln.speaker,
              "listener": ln.listener, "role": ln.role, "sentiment": ln.sentiment, "wording": ln.wording,
              "subtitled": ln.subtitled and s.has_subtitles, "text": ln.text} for s in scenes for ln in s.lines]
    write_csv(out / "lines.csv", pd.DataFrame(lines))
    crowd = simulate_crowd(labels_per_item=labels_per_clip, n_careful=8, n_lazy=3, n_spammers=4, tail=20,
                           seed=seed, truth=np.array([s.label for s in scenes]))
    raw = pd.DataFrame({"clip_id": [scenes[i].clip_id for i in crowd.items],
                        "annotator_id": [f"ann{j:03d}" for j in crowd.annotators],
                        "label": [LABELS[k] for k in crowd.labels]})
    write_csv(out / "labels_raw.csv", raw)
