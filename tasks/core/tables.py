"""Tables (:func:`read_table`, :func:`numeric`)
    One reader for the delimited text tables users hand in: the separator is sniffed (comma, tab,
    semicolon, pipe), every cell is text as written (ids ``NA``, ``None`` or ``007`` stay themselves),
    numbers are converted by :func:`numeric`, which names the lines of anything non-numeric.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from tasks.core.errors import MokuflowError
from tasks.core.outputs import _why

# ------------------------------------------------------------------------------------------ tables

# Cells that mean "no value" (pandas' defaults, compared case-insensitively); :func:`numeric` reads
# them as missing and counts them, so a summary can say how many there were.
NA_TEXT = frozenset({"#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>",
                     "n/a", "na", "nan", "null", "none"})
_SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _sniff_separator(header: str) -> str:
    """The separator of a table from its header line: the most frequent of comma, tab, semicolon and
    pipe (in that order on a tie; a one-column table: comma)."""
    counts = {sep: header.count(sep) for sep in _SEPARATORS}
    best = max(counts.values())
    return next(sep for sep in _SEPARATORS if counts[sep] == best) if best else ","


def read_table(path: str | os.PathLike, columns: Iterable[str] = (), *, id_columns: Iterable[str] = (),
               what: str = "table", not_found: str | None = None):
    """A delimited text table as a DataFrame of text cells, or one MokuflowError line naming the file.

    - The separator is sniffed from the header (comma, tab, semicolon or pipe); a UTF-8 BOM is
      skipped; column names and cells are stripped of surrounding spaces.
    - Every cell is text exactly as written: ids such as ``007``, ``NA`` or ``None`` stay themselves,
      an empty cell is ``""``. Convert numbers with :func:`numeric`.
    - Blank lines are skipped; the index is the line number in the file where each row ends (header =
      line 1), so messages can name lines. A row with more fields than the header is an error naming
      its line; a shorter one has empty cells.
    - ``columns``: required columns; missing ones are an error naming the expected and the found
      columns and the separator read. ``id_columns`` (those present): an empty cell is an error naming
      the lines. ``not_found``: the hint added when the file does not exist.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise MokuflowError(f"{path}: {what} not found" + (f" ({not_found})" if not_found else ""))
    if not path.is_file():
        raise MokuflowError(f"{path}: the {what} is not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MokuflowError(f"{path}: cannot read the {what}: {_why(e)}") from None
    if b"\x00" in raw[:65536]:
        raise MokuflowError(f"{path}: not a text table (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MokuflowError(f"{path}: not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None
    head = next((ln for ln in text.splitlines() if ln.strip()), None)
    if head is None:
        raise MokuflowError(f"{path}: empty file")
    sep = _sniff_separator(head)
    kind = f"{_SEPARATORS[sep]}-separated"
    header, rows, numbers = None, [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    try:
        for rec in reader:
            rec = [c.strip() for c in rec]
            if not any(rec):
                continue  # a blank line
            if header is None:
                header = rec
                while header and not header[-1]:  # a trailing separator
                    header.pop()
                continue
            if len(rec) > len(header):
                if any(rec[len(header):]):
                    raise MokuflowError(f"{path}: line {reader.line_num} has {len(rec)} fields, the header "
                                        f"{len(header)} (read as {kind})")
                rec = rec[:len(header)]
            rows.append(rec + [""] * (len(header) - len(rec)))
            numbers.append(reader.line_num)
    except csv.Error as e:
        raise MokuflowError(f"{path}: not a readable {kind} table: line {reader.line_num}: {e}") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise MokuflowError(f"{path}: duplicate column name(s) {dup}")
    table = pd.DataFrame(rows, columns=header, index=pd.Index(numbers, name="line"), dtype=str)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise MokuflowError(f"{path}: missing column(s) {missing}: found {list(table.columns)} (read as {kind})")
    for c in id_columns:
        if c in table.columns and (table[c] == "").any():
            raise MokuflowError(f"{path}: empty {c} on lines {lines_of(table, table[c] == '')}")
    return table


def lines_of(table, mask, limit: int = 5) -> list[int]:
    """Line numbers (the index :func:`read_table` sets) of the rows where ``mask`` holds, the first ``limit``."""
    return [int(i) for i in table.index[mask][:limit]]


def numeric(table, column: str, *, path: str | os.PathLike, what: str | None = None):
    """``table[column]`` (text from :func:`read_table`) as floats, and how many cells were NA text.

    An empty cell, or one of :data:`NA_TEXT` (``NA``, ``n/a``, ``null``...), is NaN; any other text
    (``good``, ``True``, ``3,5``) and infinite values are a MokuflowError naming the lines and values.
    Returns ``(values, n_na_text)``.
    """
    import pandas as pd

    name = what or column
    cells = table[column].astype(str).str.strip()
    na_text = cells.str.lower().isin(NA_TEXT)
    blank = cells == ""
    values = pd.to_numeric(cells.where(~(na_text | blank)), errors="coerce")
    bad = values.isna() & ~(na_text | blank)
    if bad.any():
        examples = cells[bad].tolist()[:5]
        hint = " (decimal commas? write 3.5, not 3,5)" if any("," in x for x in examples) else ""
        raise MokuflowError(f"{path}: non-numeric {name} on lines {lines_of(table, bad)}: {examples}{hint}")
    inf = values.abs() == float("inf")
    if inf.any():
        raise MokuflowError(f"{path}: infinite {name} on lines {lines_of(table, inf)}")
    return values.astype(float), int(na_text.sum())


