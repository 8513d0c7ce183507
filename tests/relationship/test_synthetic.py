"""The synthetic relationship generator: byte-identical by seed, truth consistent with the cues, and
every file readable by the project's readers (SubRip, tracks, audio: a clip without audio gives None)."""
import numpy as np
import pandas as pd
import pytest

from models.relationship.audio import load_audio
from tasks.relationship.labels import LABELS
from tasks.relationship.subtitles import read_srt
from tasks.relationship.synthetic import MANIFEST_COLUMNS, generate, sentence
from tasks.relationship.tracks import read_tracks

SMALL = {"n_clips": 10, "min_seconds": 2.0, "max_seconds": 2.5, "p_no_audio": 0.4, "p_no_subtitles": 0.4}


def _table(path):
    return pd.read_csv(path, keep_default_na=False, dtype=str)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    summary = generate(out, seed=3, **SMALL)
    return out, summary


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_clips(data, tmp_path):
    out, _ = data
    again = generate(tmp_path / "again", seed=3, **SMALL)
    assert again == data[1]
    assert _files(out) == _files(tmp_path / "again")  # videos (H.264 + AAC) included
    generate(tmp_path / "other", seed=4, **SMALL)
    other = _files(tmp_path / "other")
    assert other["clips/clip00000.mp4"] != _files(out)["clips/clip00000.mp4"]


def test_layout_and_tables(data):
    out, summary = data
    manifest, truth, raw = (_table(out / f) for f in ("manifest.csv", "truth.csv", "labels_raw.csv"))
    assert tuple(manifest.columns) == MANIFEST_COLUMNS and len(manifest) == SMALL["n_clips"]
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest["clip_id"].tolist() == truth["clip_id"].tolist()
    assert (manifest[["char_a", "char_b"]].to_numpy() == truth[["char_a", "char_b"]].to_numpy()).all()
    assert set(truth["label"]) <= set(LABELS) and set(raw["label"]) <= set(LABELS)
    assert list(raw.columns) == ["clip_id", "annotator_id", "label"]
    assert raw.groupby("clip_id").size().eq(5).all() and set(raw["clip_id"]) == set(truth["clip_id"])
    for col in ("video_path", "tracks_path"):
        assert all((out / p).is_file() for p in manifest[col])
    no_subs = manifest["subtitle_path"] == ""
    assert no_subs.sum() == summary["n_without_subtitles"] > 0
    assert all((out / p).is_file() for p in manifest.loc[~no_subs, "subtitle_path"])


def test_the_crowd_mostly_agrees_with_the_truth(tmp_path):
    generate(tmp_path, seed=0, n_clips=30, min_seconds=2.0, max_seconds=2.0)
    truth = _table(tmp_path / "truth.csv").set_index("clip_id")["label"]
    raw = _table(tmp_path / "labels_raw.csv")
    vote = raw.groupby("clip_id")["label"].agg(lambda s: s.value_counts().index[0])
    assert (vote == truth[vote.index]).mean() > 0.5  # careful annotators outvote spammers on most clips


def test_the_pair_label_is_carried_by_the_pairs_lines_not_the_distractors(data):
    out, _ = data
    truth = _table(out / "truth.csv").set_index("clip_id")
    lines = _table(out / "lines.csv")
    on_key = []
    for clip, ls in lines.groupby("clip_id"):
        pair = set(truth.loc[clip, ["char_a", "char_b"]])
        v = LABELS.index(truth.loc[clip, "label"]) - 2
        own, other = ls[ls["role"] == "pair"], ls[ls["role"] == "distractor"]
        assert len(own) and len(other)  # the pair speaks, and so does someone else
        assert set(own["speaker"]) <= pair and set(own["listener"]) <= pair
        assert not set(other["speaker"]) & pair and not set(other["listener"]) & pair
        s = own["sentiment"].astype(int)
        assert (s - v).abs().max() <= 1  # on key, or one class off
        on_key += (s == v).tolist()
    assert np.mean(on_key) >= 0.6
    starts, ends = lines["start_s"].astype(float), lines["end_s"].astype(float)
    assert (ends > starts).all()


@pytest.mark.parametrize("s", [-2, -1, 0, 1, 2])
def test_grammar_words_carry_the_sentiment(s):
    rng = np.random.default_rng(s + 10)
    texts = [sentence(rng, s)[0] for _ in range(30)]
    assert all(t[0].isupper() and t[-1] in ".?" for t in texts)
    if s:
        assert sum(" but " in t for t in texts) >= 2  # contradictions occur
        assert sum(any(n in t for n in ("don't", "do not", "never", " not ")) for t in texts) >= 2 or abs(s) == 2
    sarcastic = sentence(np.random.default_rng(0), 2, sarcastic=True)
    assert sarcastic[1] == -2


def test_files_read_back_with_the_readers(data):
    out, summary = data
    manifest = _table(out / "manifest.csv")
    lines = _table(out / "lines.csv")
    n_silent = 0
    for row in manifest.to_dict("records"):
        tracks = read_tracks(out / row["tracks_path"], (row["char_a"], row["char_b"]))
        assert tracks.fps == 8 and len(tracks.common_frames()) >= 10
        audio = load_audio(out / row["video_path"])
        if audio is None:
            n_silent += 1
        else:
            assert 2.0 * 16000 - 1024 <= len(audio) <= 2.5 * 16000 + 1024 and audio.std() > 0.01
        if row["subtitle_path"]:
            cues = read_srt(out / row["subtitle_path"])
            said = lines[(lines["clip_id"] == row["clip_id"]) & (lines["subtitled"] == "True")]
            assert [c.text for c in cues] == said["text"].tolist() or (said.empty and len(cues) == 1)
            if len(said):
                assert abs(cues[0].start_s - float(said["start_s"].iloc[0])) < 0.002
    assert n_silent == summary["n_without_audio"] > 0
