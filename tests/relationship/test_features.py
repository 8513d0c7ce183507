"""Pair features at fixed time steps: crops where the tracks say, motion signs, log-mel against a
tone, subtitle words at the right steps, masks for missing modalities; on generated clips too."""
import numpy as np
import pandas as pd
import pytest

from models.relationship.features import (
    FeatureConfig,
    Vocabulary,
    audio_features,
    clip_features,
    log_mel,
    mel_filterbank,
    step_centres,
    text_features,
    tokenize,
    visual_features,
)
from tasks.core import MokuflowError
from tasks.relationship.data import clip_inputs, extract, subtitle_texts
from tasks.relationship.synthetic import generate

CFG = FeatureConfig(n_steps=8, face_size=8, body_height=12, body_width=8, n_mels=16, mel_steps=2, max_tokens=6)


def _rows(x0s, y0=10, w=10, h=30):
    return np.array([[f, x, y0, x + w, y0 + h] for f, x in enumerate(x0s)], float)


# ---------------------------------------------------------------------------------------- visual

def test_crops_come_from_the_boxes_and_motion_has_the_right_sign():
    n, fps = 16, 8.0
    frames = np.zeros((n, 60, 80, 3), np.uint8)
    frames[:, :, :40] = (200, 0, 0)   # a red left half, a blue right half
    frames[:, :, 40:] = (0, 0, 200)
    a = _rows(np.linspace(5, 25, n))   # a walks right, towards b
    b = _rows(np.full(n, 60.0))
    out = visual_features(frames, fps, a, b, CFG)
    assert out["faces"].shape == (8, 2, 3, 8, 8) and out["bodies"].shape == (8, 2, 3, 12, 8)
    assert out["faces"].dtype == np.uint8 and out["visual_mask"].all()
    assert (out["faces"][:, 0, 0] == 200).all() and (out["faces"][:, 1, 2] == 200).all()  # a on red, b on blue
    dist, approach = out["motion"][:, 0], out["motion"][:, 1]
    assert np.all(np.diff(dist) < 0) and np.all(approach > 0)
    np.testing.assert_allclose(dist[0], abs((5 + 20 / 15 * 1 + 5) - 65) / 80, atol=0.02)  # step 0 shows frame 1
    away = visual_features(frames, fps, b, _rows(np.linspace(60, 70, n)), CFG)
    assert np.all(away["motion"][1:-1, 1] < 0)


def test_a_step_far_from_any_track_row_is_masked():
    frames = np.full((16, 60, 80, 3), 90, np.uint8)
    a = _rows(np.full(16, 5.0))
    b = _rows(np.full(16, 50.0))[:4]   # b is seen only in the first 4 frames
    out = visual_features(frames, 8.0, a, b, CFG)
    assert out["visual_mask"][:2].all() and not out["visual_mask"][3:].any()
    assert (out["motion"][~out["visual_mask"]] == 0).all()


def test_boxes_partly_outside_the_frame_are_padded_black():
    frames = np.full((4, 40, 40, 3), 255, np.uint8)
    a = np.array([[f, -20, 0, 20, 40] for f in range(4)], float)  # half outside on the left
    out = visual_features(frames, 4.0, a, _rows(np.full(4, 20.0)), CFG)
    body = out["bodies"][0, 0, 0]
    assert body[:, :3].max() == 0 and body[:, -3:].min() == 255


# ----------------------------------------------------------------------------------------- audio

def test_mel_filterbank_is_triangles_in_order():
    fb = mel_filterbank(16000, 400, 16)
    assert fb.shape == (16, 201) and fb.min() >= 0 and fb.max() <= 1
    peaks = fb.argmax(1)
    assert np.all(np.diff(peaks) > 0)


def test_a_tone_lights_its_mel_band():
    sr = 16000
    t = np.arange(sr) / sr
    mel, times = log_mel(0.5 * np.sin(2 * np.pi * 1000 * t), sr, 16)
    assert mel.shape == (len(times), 16) and abs(times[1] - times[0] - 0.01) < 1e-9
    fb = mel_filterbank(sr, 400, 16)
    assert mel.mean(0).argmax() == fb[:, int(round(1000 / (sr / 400)))].argmax()


def test_audio_missing_or_short():
    none = audio_features(None, 2.0, CFG)
    assert none["mel"].shape == (8, 2, 16) and not none["audio_mask"].any() and (none["mel"] == 0).all()
    rng = np.random.default_rng(0)
    half = audio_features(rng.normal(0, 0.1, 16000).astype(np.float32), 2.0, CFG)  # 1 s of sound in a 2 s clip
    assert half["audio_mask"].tolist() == [True] * 4 + [False] * 4
    loud = audio_features(rng.normal(0, 0.3, 32000).astype(np.float32), 2.0, CFG)
    assert loud["mel"].mean() > half["mel"][:4].mean()  # louder is higher: energy survives


# ------------------------------------------------------------------------------------------ text

def test_vocabulary_and_tokens_follow_the_cue_timing():
    assert tokenize("I don't LOVE you, but...") == ["i", "don't", "love", "you", "but"]
    vocab = Vocabulary.build(["I love you.", "I don't love you."])
    assert vocab.words[:3] == ["<pad>", "<unk>", "<none>"] and vocab.words[3:6] == ["i", "love", "you"]
    cues = [(0.0, 0.5, "I love you."), (1.0, 2.0, "You are cruel.")]
    out = text_features(cues, 2.0, vocab, CFG)
    centres = step_centres(2.0, 8)  # 0.125, 0.375, ... 1.875
    assert out["text_mask"].all()
    words = [[vocab.words[i] for i in row if i] for row in out["tokens"]]
    for c, w in zip(centres, words):
        if c < 0.5:
            assert w == ["i", "love", "you"]
        elif c < 1.0:
            assert w == ["<none>"]  # nothing on screen: silence, not missing
        else:
            assert w == ["you", "<unk>", "<unk>"]
    missing = text_features(None, 2.0, vocab, CFG)
    assert not missing["text_mask"].any() and (missing["tokens"] == 0).all()
    assert Vocabulary(vocab.words).encode("i " * 10, 6).tolist() == [3] * 6  # truncated to max_tokens
    with pytest.raises(ValueError):
        Vocabulary(["a", "b", "c"])


# ----------------------------------------------------------------------------------- on real clips

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    generate(out, seed=5, n_clips=8, min_seconds=2.0, max_seconds=3.0, p_no_audio=0.4, p_no_subtitles=0.4)
    return out, pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype=str).to_dict("records")


def test_generated_clips_give_features_with_masks(clips):
    root, rows = clips
    vocab = Vocabulary.build(subtitle_texts(root, rows))
    assert len(vocab) > 10
    feats = extract(root, rows, vocab, CFG)
    assert feats["faces"].shape == (8, 8, 2, 3, 8, 8) and feats["tokens"].shape == (8, 8, 6)
    assert feats["mel"].shape == (8, 8, 2, 16) and feats["motion"].dtype == np.float32
    assert feats["visual_mask"].mean() > 0.9
    for k, row in enumerate(rows):
        assert feats["text_mask"][k].all() == bool(row["subtitle_path"]) and feats["text_mask"][k].any() == bool(row["subtitle_path"])
        _, _, _, _, audio, _ = clip_inputs(root, row)
        assert feats["audio_mask"][k].any() == (audio is not None)
    assert not feats["audio_mask"].all() and feats["audio_mask"].any()


def test_a_named_but_missing_file_is_one_line(clips):
    root, rows = clips
    bad = {**rows[0], "subtitle_path": "clips/nope.srt"}
    with pytest.raises(MokuflowError, match="nope.srt"):
        clip_inputs(root, bad)
    with pytest.raises(MokuflowError, match="no track for character 'zed'"):
        clip_inputs(root, {**rows[0], "char_b": "zed"})


def test_clip_features_needs_frames():
    with pytest.raises(ValueError):
        clip_features(np.zeros((0, 4, 4, 3), np.uint8), 8.0, _rows([0]), _rows([0]), None, None,
                      Vocabulary.build([]), CFG)
