"""Pair tracks JSON and the audio loader (real MP4 / AAC, MP4 without audio, WebM / Vorbis, WAV)."""
import json
import wave
from fractions import Fraction

import numpy as np
import pytest

from models.relationship.audio import AudioReadError, load_audio
from tasks.core import MokuflowError
from tasks.relationship.tracks import read_tracks
from tests.conftest import FIXTURES

MEDIA = FIXTURES / "relationship" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"real media fixtures not found in {MEDIA}")


# ------------------------------------------------------------------------------------------ tracks

def _tracks(tmp_path, doc, name="tracks.json"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_reads_the_pair_sorted_by_frame(tmp_path):
    p = _tracks(tmp_path, {"fps": 12, "tracks": {"anna": [[3, 0, 0, 10, 10], [1, 1, 1, 5, 5.5]],
                                                  "ben": [[1, 2, 2, 4, 4], [7, 0, 0, 1, 1]],
                                                  "extra": "ignored, not asked for"}})
    t = read_tracks(p, ("anna", "ben"))
    assert t.fps == 12.0 and list(t.boxes) == ["anna", "ben"]
    np.testing.assert_array_equal(t.boxes["anna"], [[1, 1, 1, 5, 5.5], [3, 0, 0, 10, 10]])
    assert t.common_frames().tolist() == [1]


def test_a_missing_character_is_one_line_naming_it(tmp_path):
    p = _tracks(tmp_path, {"fps": 25, "tracks": {"anna": [[0, 0, 0, 1, 1]], "carl": [[0, 0, 0, 1, 1]]}})
    with pytest.raises(MokuflowError) as e:
        read_tracks(p, ("anna", "ben"))
    assert str(e.value) == f"{p}: no track for character 'ben' (the file has ['anna', 'carl'])"


@pytest.mark.parametrize("doc, expected", [
    ("{not json", "not JSON"),
    ([1, 2], "not a tracks file"),
    ({"fps": 12}, "not a tracks file"),
    ({"fps": 0, "tracks": {"a": [[0, 0, 0, 1, 1]], "b": [[0, 0, 0, 1, 1]]}}, "\"fps\" must be a positive number"),
    ({"fps": True, "tracks": {"a": [[0, 0, 0, 1, 1]], "b": [[0, 0, 0, 1, 1]]}}, "\"fps\" must be a positive number"),
    ({"fps": 12, "tracks": {"a": [], "b": [[0, 0, 0, 1, 1]]}}, "track of 'a': expected a non-empty list"),
    ({"fps": 12, "tracks": {"a": [[0, 0, 0, 1]], "b": [[0, 0, 0, 1, 1]]}}, "track of 'a': row 0 is not"),
    ({"fps": 12, "tracks": {"a": [[0, 0, 0, 1, 1]], "b": [[0, 0, 0, 1, 1], [1.5, 0, 0, 1, 1]]}},
     "track of 'b': row 1 has a frame that is not an integer"),
    ({"fps": 12, "tracks": {"a": [[0, 5, 0, 1, 1]], "b": [[0, 0, 0, 1, 1]]}}, "row 0 is not a box"),
    ({"fps": 12, "tracks": {"a": [[2, 0, 0, 1, 1], [2, 0, 0, 2, 2]], "b": [[0, 0, 0, 1, 1]]}},
     "frame 2 appears more than once"),
])
def test_malformed_tracks(tmp_path, doc, expected):
    p = _tracks(tmp_path, doc)
    with pytest.raises(MokuflowError) as e:
        read_tracks(p, ("a", "b"))
    assert expected in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_tracks_file_not_found_and_same_character_twice(tmp_path):
    with pytest.raises(MokuflowError, match="not found"):
        read_tracks(tmp_path / "nope.json", ("a", "b"))
    with pytest.raises(MokuflowError, match="two different characters"):
        read_tracks(tmp_path / "nope.json", ("a", "a"))


# ------------------------------------------------------------------------------------------- audio

def _wav_samples(path):
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0, w.getframerate()


@needs_media
def test_wav_is_read_exactly():
    path = MEDIA / "notld_5s_dont_worry_about_him.wav"
    ref, rate = _wav_samples(path)
    got = load_audio(path, sample_rate=rate)
    assert got.dtype == np.float32 and got.ndim == 1 and len(got) == len(ref)
    np.testing.assert_allclose(got, ref, atol=1e-7)


@needs_media
def test_wav_resampled():
    path = MEDIA / "notld_8s_do_you_live_here.wav"
    ref, rate = _wav_samples(path)
    got = load_audio(path, sample_rate=8000)
    assert abs(len(got) - len(ref) * 8000 / rate) <= 1
    assert abs(float(np.sqrt(np.mean(got ** 2))) - float(np.sqrt(np.mean(ref ** 2)))) < 0.1 * np.sqrt(np.mean(ref ** 2))


@needs_media
def test_mp4_aac_is_cut_to_the_stream_duration():
    import av

    path = MEDIA / "grid_swwp2s_h264_aac.mp4"
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        seconds = float(s.duration * s.time_base)
        decoded = sum(f.samples for f in c.decode(s))
    assert decoded > round(seconds * s.rate)  # AAC's padding: whole frames past the end
    got = load_audio(path, sample_rate=16000)
    assert len(got) == round(seconds * 16000)
    assert got.dtype == np.float32 and np.abs(got).max() <= 1.0 and got.std() > 0.01  # speech, stereo averaged


@needs_media
def test_a_video_without_audio_gives_none():
    assert load_audio(MEDIA / "tears_of_steel_clip01.mp4") is None


@needs_media
def test_webm_vorbis():
    got = load_audio(MEDIA / "big_buck_bunny_vp8_vorbis.webm", sample_rate=16000)
    assert got.dtype == np.float32 and len(got) == 16000 and got.std() > 0.01  # 1 s clip


def test_audio_we_write_round_trips(tmp_path):
    import av
    rate = 16000
    t = np.arange(rate // 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "tone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    got = load_audio(path, sample_rate=rate)
    assert abs(len(got) - len(tone)) <= 1024  # the declared duration, whatever the encoder rounds to
    spectrum = np.abs(np.fft.rfft(got[:8000]))
    assert abs(np.argmax(spectrum) * rate / 8000 - 440) < 5


@pytest.mark.parametrize("content, expected", [(None, "not found"), (b"", "empty file"),
                                               (b"this is not a media file at all" * 10, "cannot open")])
def test_unreadable_audio(tmp_path, content, expected):
    path = tmp_path / "x.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioReadError) as e:
        load_audio(path)
    assert expected in str(e.value) and str(path) in str(e.value)
