"""Reading collector inputs: text streams (gzip read transparently) and mapped fields of CSV or JSON Lines rows.

Rows stream one at a time, so a file of millions of lines is read in constant memory. Every
problem is reported with the file and line it came from, and a problem with one row never stops
the others from being read.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .base import Problems
from .errors import CollectError

_GZIP_MAGIC = b"\x1f\x8b"
# Undecodable bytes survive decoding (surrogateescape) as lone surrogates; rows holding them are
# reported instead of writing mangled identifiers into the bundle.
_BAD_BYTES = re.compile("[\udc80-\udcff]")
# Errors a truncated or corrupt gzip stream raises while it is being read.
STREAM_ERRORS = (OSError, EOFError, zlib.error, UnicodeError)


@dataclass(frozen=True, slots=True)
class Field:
    """Where one value of a row comes from.

    `column` is a CSV column, or a JSON key (a dotted path such as `client.ip` reaches into nested
    objects). A field the user named (`explicit`) must exist in the header; a default one that is
    absent is simply not collected. A `required` field must have a value in every row.
    """

    column: str
    required: bool = False
    explicit: bool = False
    aliases: tuple[str, ...] = ()  # other usual names, tried when the user did not name the column

    def candidates(self) -> tuple[str, ...]:
        return (self.column,) if self.explicit else (self.column, *self.aliases)


@contextmanager
def open_text(path: Path, encoding: str = "utf-8-sig") -> Iterator[TextIO]:
    """`path` as text, gunzipped when its first bytes say gzip (whatever its name), newlines untranslated."""
    with open(path, "rb") as raw:
        stream: io.BufferedIOBase = raw
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"))
        with io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="") as text:
            yield text


def check_encoding(name: str) -> None:
    """CollectError naming the fix when `name` is no text encoding Python knows."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise CollectError(f"unknown encoding {name!r}; use a name such as utf-8, gb18030 or cp1252") from None


def first_line(path: Path, encoding: str = "utf-8-sig") -> str:
    """The first non-blank line of `path` ('' if none or unreadable), to sniff its format."""
    try:
        with open_text(path, encoding) as handle:
            for line in handle:
                if line.strip():
                    return line.strip()
    except STREAM_ERRORS:
        return ""
    return ""


def has_bad_bytes(text: str) -> bool:
    return not text.isascii() and _BAD_BYTES.search(text) is not None


def read_rows(path: Path, fmt: str, fields: Mapping[str, Field], problems: Problems, *,
              encoding: str = "utf-8-sig") -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, {field name: value}) for each good row of a CSV or JSON Lines file.

    Values are stripped strings; '' means absent. Rows with a problem are reported to `problems`
    and not yielded; a problem with the whole file (unreadable, a named column missing) is
    reported as fatal and ends the file.
    """
    name = str(path)
    try:
        with open_text(path, encoding) as handle:
            rows = _csv_rows if fmt == "csv" else _jsonl_rows
            yield from rows(handle, name, fields, problems)
    except FileNotFoundError:
        problems.file(name, "not found")
    except STREAM_ERRORS as exc:
        # Rows before the damage were yielded already; with --skip-invalid they are kept.
        problems.file(name, f"cannot read: {exc}; if it is gzip, the file may be truncated")


def _csv_rows(handle: TextIO, name: str, fields: Mapping[str, Field],
              problems: Problems) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        problems.file(name, "the file is empty; it needs a header row")
        return
    except csv.Error as exc:
        problems.file(name, f"unreadable header: {exc}", line=1)
        return
    index = _resolve_header([h.strip() for h in header], name, fields, problems)
    if index is None:
        return
    width = len(header)
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(name, line, f"malformed CSV: {exc}; check the quotes of this row")
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # blank lines carry nothing
        if len(cells) != width:
            problems.add(name, start, f"malformed row: {len(cells)} fields where the header has {width}")
            continue
        row = {field: cells[i].strip() if i is not None else "" for field, i in index.items()}
        if _checked(row, fields, name, start, problems):
            yield start, row


def _resolve_header(header: list[str], name: str, fields: Mapping[str, Field],
                    problems: Problems) -> dict[str, int | None] | None:
    """Field name -> column index (None: absent). Exact names win; otherwise case is ignored."""
    folded = {h.casefold(): i for i, h in reversed(list(enumerate(header)))}
    index: dict[str, int | None] = {}
    missing = []
    for field, spec in fields.items():
        i = None
        for column in spec.candidates():
            i = header.index(column) if column in header else folded.get(column.casefold())
            if i is not None:
                break
        if i is None and (spec.explicit or spec.required):
            missing.append(spec.column)
        index[field] = i
    if missing:
        problems.file(name, f"no column {', '.join(repr(m) for m in missing)}; the header is {','.join(header)}; "
                            "name the right column with the matching --...-col option", line=1)
        return None
    return index


def _jsonl_rows(handle: TextIO, name: str, fields: Mapping[str, Field],
                problems: Problems) -> Iterator[tuple[int, dict[str, str]]]:
    paths = {field: [c.split(".") for c in spec.candidates()] for field, spec in fields.items()}
    for number, raw_line in enumerate(handle, start=1):
        text = raw_line.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.add(name, number, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(record, dict):
            problems.add(name, number, "malformed row: each line must be a JSON object")
            continue
        row = {field: _json_cell(_dig(record, candidates)) for field, candidates in paths.items()}
        if _checked(row, fields, name, number, problems):
            yield number, row


def _dig(record: Mapping[str, Any], candidates: list[list[str]]) -> Any:
    """The value at the first candidate path present in `record` (None if none is)."""
    for path in candidates:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def _json_cell(value: Any) -> str:
    """A JSON value as the CSV form would carry it: null is empty, a list is `|`-joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "|".join(_json_cell(v) for v in value if v is not None)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value).strip()


def _checked(row: dict[str, str], fields: Mapping[str, Field], name: str, line: int, problems: Problems) -> bool:
    for field, value in row.items():
        if has_bad_bytes(value):
            problems.add(name, line, f"bad encoding in {fields[field].column!r}: not valid text in the "
                                     "file's encoding; pass --encoding (e.g. gb18030) or re-export as UTF-8")
            return False
    empty = [fields[f].column for f, v in row.items() if fields[f].required and not v]
    if empty:
        problems.add(name, line, f"empty {', '.join(repr(c) for c in empty)}; every row needs it")
        return False
    return True
