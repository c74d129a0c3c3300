"""Reading the rows of a JSONL or CSV/TSV file, and saying what pydantic objected to.

Catalogs, events files and users files are read the same way, so they are read by one reader:
the catalog and events readers had drifted (a ``.tsv`` catalog was split on commas, events took
no ``.tsv`` at all, only one of them reported bad lines in file order). What every reader gets:

* ``.jsonl``/``.ndjson``/``.json`` (one JSON value a line) and ``.csv``/``.tsv`` (tab-separated);
* rows numbered by the 1-based line of the file they start on (a CSV record with a quoted
  newline is numbered by its first line);
* a line that is not UTF-8, not JSON or has more CSV fields than the header costs that line
  only, reported in its place in file order (callers record how far a file was ingested by the
  last line they saw);
* a UTF-8 byte order mark is ignored;
* ``skip_lines``: the first lines are not read as rows (a CSV header still is) — events
  ingestion resumes after the prefix of a file it ingested before (recommend/ledger.py).

``field_errors`` turns a pydantic ``ValidationError`` into ``(field, message)`` pairs, the one
wording of a bad field that readers and the HTTP batch endpoints share.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from shoprec.bounds import printable

T = TypeVar("T")
E = TypeVar("E")

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
DELIMITERS = {".csv": ",", ".tsv": "\t"}
#: What a reader is given for a bad line: (line, reason, the row's id if one could be read).
Fail = Callable[[int, str, "str | None"], E]


# ---------------------------------------------------------------------------- errors
#: What a text with a lone surrogate is told (pydantic catches it before our own validators).
NOT_UNICODE = "not valid Unicode text (it contains a lone surrogate such as \\ud800)"


def error_message(error: Any) -> str:
    """A pydantic error's message for people (``error``: one entry of ``ValidationError.errors()``)."""
    if error.get("type") == "missing":
        return "missing"
    if error.get("type") == "string_unicode":
        return NOT_UNICODE
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def field_errors(err: ValidationError, field_chars: int = 80) -> list[tuple[str | None, str]]:
    """``(field, message)`` for each thing pydantic objected to; the field is the dotted location,
    printable and at most ``field_chars`` long, or None for the whole entry."""
    return [(printable(".".join(str(p) for p in e["loc"]), field_chars) or None, error_message(e))
            for e in err.errors()]


def describe(err: ValidationError, whole: str = "row") -> str:
    """All of ``err`` on one line, as file readers report it: ``field 'x': message; ...``."""
    return "; ".join(f"field '{name or whole}': {message}" for name, message in field_errors(err))


def readable_id(raw: Any, key: str) -> str | None:
    """The entry's ``key`` as text fit for a report, if it is a string or a number."""
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return printable(str(value))


# ---------------------------------------------------------------------------- reading
def read_rows(path: Path, parse: Callable[[Any, int], T], fail: Fail[E], *, name: str,
              id_key: str | None = None, skip_lines: int = 0,
              parse_csv: Callable[[dict[str, str], int], T] | None = None) -> Iterator[T | E]:
    """``parse(raw, line)`` of each row of ``path`` in file order, ``fail(line, reason, id)`` for
    each line that is not a row (see the module docstring).

    A JSON row is the parsed value; a CSV row is a dict of the header's columns to non-empty
    values (``parse_csv`` if given, else ``parse``). ``name`` names the file in errors ("catalog",
    "events file"); ``id_key`` is the column whose value names a CSV row with too many fields.
    A missing file or an unknown format raises here, before anything is read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found: {path}")
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return _json_rows(path, parse, fail, skip_lines)
    if suffix in DELIMITERS:
        return _csv_rows(path, parse_csv or parse, fail, DELIMITERS[suffix], id_key, skip_lines)
    raise ValueError(f"unsupported {name} format {suffix!r} for {path}: use .jsonl, .csv or .tsv")


def _lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None if not UTF-8, reason) — bad bytes cost one line, not the file."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, None, f"invalid UTF-8 at byte {err.start}"
                continue
            yield number, text.lstrip("\ufeff") if number == 1 else text, ""


def _json_rows(path: Path, parse: Callable[[Any, int], T], fail: Fail[E], skip_lines: int) -> Iterator[T | E]:
    for number, text, why in _lines(path):
        if number <= skip_lines:
            continue
        if text is None:
            yield fail(number, why, None)
            continue
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            yield fail(number, f"invalid JSON: {err.msg} at column {err.colno}", None)
        except (ValueError, RecursionError) as err:  # a number of 5,000 digits, 100,000 nested [
            yield fail(number, f"invalid JSON: {printable(str(err), 200)}", None)
        else:
            yield parse(raw, number)


class _Feed:
    """The UTF-8 lines of a file for the csv module, remembering which file line each was; the
    lines that are not UTF-8 wait in ``bad`` to be reported in their place."""

    def __init__(self, lines: Iterable[tuple[int, str | None, str]]) -> None:
        self._lines = lines
        self._numbers: dict[int, int] = {}  # index among lines fed (0-based) -> file line
        self._fed = 0
        self.last = 0
        self.bad: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[str]:
        for number, text, why in self._lines:
            self.last = number
            if text is None:
                self.bad.append((number, why))
                continue
            self._numbers[self._fed] = number
            self._fed += 1
            yield text

    def line_of(self, index: int) -> int:
        """File line of the ``index``-th line fed; lines before it are forgotten."""
        while self._numbers and next(iter(self._numbers)) < index:
            del self._numbers[next(iter(self._numbers))]
        return self._numbers.get(index, self.last)


def _csv_rows(path: Path, parse: Callable[[dict[str, str], int], T], fail: Fail[E], delimiter: str,
              id_key: str | None, skip_lines: int) -> Iterator[T | E]:
    feed = _Feed(_lines(path))
    reader = csv.reader(feed, delimiter=delimiter)
    header: list[str] | None = None

    def bad_before(line: int) -> Iterator[E]:
        while feed.bad and feed.bad[0][0] < line:
            number, why = feed.bad.pop(0)
            if number > skip_lines:
                yield fail(number, why, None)

    while True:
        start = reader.line_num  # lines fed so far: the next record starts on the one after
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a field over the csv module's size limit
            number = feed.line_of(start)
            yield from bad_before(number)
            if number > skip_lines:
                yield fail(number, f"unreadable CSV row: {err}", None)
            break  # the csv module cannot resynchronise after a malformed record
        if not row:  # a blank line
            continue
        number = feed.line_of(start)
        yield from bad_before(number)
        if header is None:
            header = row
            continue
        if number <= skip_lines:
            continue
        record = {key: value for key, value in zip(header, row) if value != ""}
        if len(row) > len(header):
            yield fail(number, "row has more fields than the header", readable_id(record, id_key) if id_key else None)
            continue
        yield parse(record, number)
    yield from bad_before(2 ** 62)
