"""Read and validate a fingerprint bundle (CSV directory or stores.jsonl) into typed records.

Validation collects every problem with its file and line before giving up, so that one run
tells an exporter everything that is wrong. With `skip_invalid` the bad rows are kept aside
as RejectedRow records (written to OUTDIR/rejected.csv by the report stage): nothing is ever
dropped silently.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import BundleError
from .records import Bundle, Product, Progress, RejectedRow, Signal, Store, no_progress

STORE_COLUMNS = ("store_id",)
SIGNAL_COLUMNS = ("store_id", "kind", "value")
PRODUCT_COLUMNS = ("store_id", "product_id")
# Every column the reader uses, per file: a duplicate of one of these in a header is fatal,
# because the reader could only keep one of the two cells and would drop the other silently.
KNOWN_COLUMNS = {
    "stores.csv": ("store_id", "name", "platform", "country", "created_at"),
    "signals.csv": ("store_id", "kind", "value", "seen_at"),
    "products.csv": ("store_id", "product_id", "title", "description", "price", "currency", "images"),
}
# A plain decimal number, as `price` is documented; float() alone would also take nan, inf and 1_000.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# How much of a row that could not be parsed is kept in RejectedRow.content.
_CONTENT_LIMIT = 1000
# Progress of reading: a report every _PROGRESS_ROWS CSV records (in characters read of the file's), and
# every _PROGRESS_STORES JSONL lines (one store each, with its signals and products).
_PROGRESS_ROWS = 10_000
_PROGRESS_STORES = 1_000


class _Problems:
    """Problems found so far; in skip-invalid mode each also becomes a rejected row."""

    def __init__(self) -> None:
        self.fatal: list[str] = []  # problems that no skipping can get past (a missing column, a bad file)
        self.rows: list[RejectedRow] = []

    def file(self, message: str) -> None:
        self.fatal.append(_printable(message))

    def row(self, file: str, line: int, reason: str, content: str | list[str] | dict[str, str]) -> None:
        if isinstance(content, dict):
            content = ",".join(content.values())
        elif isinstance(content, list):
            content = ",".join(content)
        # Undecodable bytes survive decoding as lone surrogates; they would crash whoever prints the
        # message or writes rejected.csv as UTF-8, so they are shown as U+FFFD from here on.
        self.rows.append(RejectedRow(file=file, line=line, reason=_printable(reason),
                                     content=_printable(content)))

    def messages(self) -> list[str]:
        return self.fatal + [f"{r.file} line {r.line}: {r.reason}" for r in self.rows]


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date or timestamp -> aware UTC datetime (naive values are taken as UTC).

    Raises ValueError for anything else, including a time that leaves the datetime range once
    converted to UTC (0001-01-01T00:00:00+01:00).
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{text!r} is out of range in UTC") from exc


def read_bundle(path: Path | str, *, skip_invalid: bool = False, progress: Progress = no_progress) -> Bundle:
    """Read the bundle at `path` (a directory, or a stores.jsonl file).

    Raises BundleError listing every problem, unless `skip_invalid`, in which case bad rows
    are returned in Bundle.rejected. Problems with a whole file (unreadable, a required
    column missing) are raised in both modes: no row of such a file can be trusted.
    `progress` hears one stage per file ("read signals.csv": characters read, of the file's);
    the JSONL form a second stage for the nested signals and products (stores checked, of all).
    """
    root = Path(path)
    if root.is_file() and root.name.endswith(".jsonl"):
        jsonl, root = root, root.parent
    elif root.is_dir():
        jsonl = root / "stores.jsonl"
        if (root / "stores.csv").exists():
            if jsonl.exists():
                raise BundleError([f"{root}: has both stores.csv and stores.jsonl; "
                                   "keep one form of the bundle"])
            jsonl = None
        elif not jsonl.exists():
            raise BundleError([f"{root}: no stores.csv or stores.jsonl; "
                               "a bundle directory needs one of them"])
        else:
            # The JSONL form nests signals and products; CSV files beside it would be ignored silently.
            extra = [name for name in ("signals.csv", "products.csv") if (root / name).exists()]
            if extra:
                raise BundleError([f"{root}: has stores.jsonl and {' and '.join(extra)}; in the JSONL form "
                                   "signals and products are nested in stores.jsonl, so move them there "
                                   "or use the CSV form (stores.csv) throughout"])
    elif root.exists():
        raise BundleError([f"{root}: is neither a bundle directory nor a .jsonl file; give the directory "
                           "that holds stores.csv, or a stores.jsonl file"])
    else:
        raise BundleError([f"{root}: not found; give a bundle directory or a stores.jsonl file"])

    problems = _Problems()
    bundle = _read_jsonl(jsonl, root, problems, progress) if jsonl else _read_csv_dir(root, problems, progress)
    if problems.fatal or (problems.rows and not skip_invalid):
        messages = problems.messages()
        raise BundleError(messages, skippable=not problems.fatal)
    bundle.rejected = problems.rows
    return bundle


# ---------------------------------------------------------------------------------------- CSV form


def _decode(path: Path, problems: _Problems) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.file(f"{path.name}: cannot read: {exc.strerror or exc}")
        return None
    # surrogateescape keeps undecodable bytes visible per row, so one bad row does not sink the file.
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _csv_rows(path: Path, required: tuple[str, ...], problems: _Problems,
              progress: Progress = no_progress) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) for each data row; malformed rows are reported, not yielded."""
    text = _decode(path, problems)
    if text is None:
        return
    name = path.name
    stage, total = f"read {name}", len(text)
    progress(stage, 0, total)
    try:
        yield from _csv_text_rows(name, text, required, problems, lambda done: progress(stage, done, total))
    finally:
        progress(stage, total, total)


def _csv_text_rows(name: str, text: str, required: tuple[str, ...], problems: _Problems,
                   report: Callable[[int], None]) -> Iterator[tuple[int, dict[str, str]]]:
    bad_bytes_in_file = _has_bad_bytes(text)  # one scan of the file spares a scan of every cell
    consumed: list[str] = []  # the physical lines of the record being read, for rejected content
    handle = io.StringIO(text, newline="")

    def lines() -> Iterator[str]:
        for physical in handle:
            consumed.append(physical)
            yield physical

    reader = csv.reader(lines(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        problems.file(f"{name}: the file is empty; it needs a header row with {', '.join(required)}")
        return
    except csv.Error as exc:
        problems.file(f"{name} line 1: unreadable header: {exc}")
        return
    if any(_has_bad_bytes(h) for h in header):
        problems.file(f"{name} line 1: bad encoding: the header is not valid UTF-8; "
                      "re-export the file as UTF-8")
        return
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        problems.file(f"{name} line 1: missing required column(s) {', '.join(missing)}; "
                      f"the header is {','.join(header)}")
        return
    twice = sorted({c for c in header if c in KNOWN_COLUMNS.get(name, ()) and header.count(c) > 1})
    if twice:
        problems.file(f"{name} line 1: column(s) {', '.join(twice)} appear more than once in the header; "
                      "keep one of each")
        return
    width = len(header)
    line = reader.line_num + 1
    records = 0
    while True:
        records += 1
        if records % _PROGRESS_ROWS == 0:
            report(handle.tell())
        consumed.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = "".join(consumed)
            reason = f"malformed CSV: {exc}"
            if reader.line_num > line:
                reason += (f" (a quoted field opened on line {line} runs to line {reader.line_num}; "
                           "check its quotes)")
            problems.row(name, line, reason, _clip(raw.rstrip("\r\n")))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        content = cells
        if not cells or all(not c.strip() for c in cells):
            continue  # blank lines carry nothing
        if len(cells) != width:
            problems.row(name, start, f"malformed row: {len(cells)} fields where the header has {width}",
                         content)
            continue
        if bad_bytes_in_file and any(_has_bad_bytes(c) for c in cells):
            problems.row(name, start, "bad encoding: the row is not valid UTF-8; re-export the file as UTF-8",
                         content)
            continue
        yield start, dict(zip(header, cells, strict=True))


_BAD_BYTES = re.compile("[\udc80-\udcff]")


def _has_bad_bytes(text: str) -> bool:
    return _BAD_BYTES.search(text) is not None


def _printable(text: str) -> str:
    """`text` with undecodable bytes (lone surrogates from surrogateescape) as U+FFFD."""
    if not _has_bad_bytes(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _clip(text: str) -> str:
    return text if len(text) <= _CONTENT_LIMIT else text[:_CONTENT_LIMIT] + "..."


def _read_csv_dir(root: Path, problems: _Problems, progress: Progress = no_progress) -> Bundle:
    stores = _Collector(root, problems)
    for line, row in _csv_rows(root / "stores.csv", STORE_COLUMNS, problems, progress):
        stores.add_store("stores.csv", line, row)
    # Without a readable stores.csv every signal and product would also be "unknown store" noise;
    # the other files are still read so that their own problems are reported in the same run.
    stores.stores_known = not problems.fatal
    if (root / "signals.csv").exists():
        for line, row in _csv_rows(root / "signals.csv", SIGNAL_COLUMNS, problems, progress):
            stores.add_signal("signals.csv", line, row)
    if (root / "products.csv").exists():
        for line, row in _csv_rows(root / "products.csv", PRODUCT_COLUMNS, problems, progress):
            stores.add_product("products.csv", line, row)
    return stores.bundle()


# -------------------------------------------------------------------------------------- JSONL form


def _read_jsonl(path: Path, root: Path, problems: _Problems, progress: Progress = no_progress) -> Bundle:
    text = _decode(path, problems)
    stores = _Collector(root, problems)
    if text is None:
        return stores.bundle()
    name = path.name
    deferred: list[tuple[int, dict[str, Any]]] = []
    # Not str.splitlines(): it also splits at U+2028, U+0085 and friends, which JSON allows raw inside
    # strings. A raw CR cannot occur inside a JSON string, so CR, LF and CRLF are all line ends.
    lines = re.split(r"\r\n|\r|\n", text)
    stage = f"read {name}"
    progress(stage, 0, len(lines))
    for number, raw_line in enumerate(lines, start=1):
        if number % _PROGRESS_STORES == 0:
            progress(stage, number, len(lines))
        if not raw_line.strip():
            continue
        if _has_bad_bytes(raw_line):
            problems.row(name, number, "bad encoding: the line is not valid UTF-8; "
                         "re-export the file as UTF-8", _clip(raw_line))
            continue
        try:
            record = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            problems.row(name, number, f"malformed JSON: {exc.msg} at column {exc.colno}", raw_line[:200])
            continue
        if not isinstance(record, dict):
            problems.row(name, number, "malformed row: each line must be a JSON object (one store)",
                         raw_line[:200])
            continue
        if stores.add_store(name, number, _as_cells(record), raw=raw_line):
            deferred.append((number, record))
    progress(stage, len(lines), len(lines))
    # Signals and products after every store, so a store's children never depend on line order.
    stage = f"read {name}: signals and products"
    progress(stage, 0, len(deferred))
    for done, (number, record) in enumerate(deferred, start=1):
        if done % _PROGRESS_STORES == 0:
            progress(stage, done, len(deferred))
        _add_children(stores, problems, name, number, record)
    progress(stage, len(deferred), len(deferred))
    return stores.bundle()


def _add_children(stores: _Collector, problems: _Problems, name: str, number: int, record: dict[str, Any]) -> None:
    """The signals and products nested in one JSON store record (line `number` of file `name`)."""
    store_id = str(record.get("store_id", "")).strip()
    for field, add in (("signals", stores.add_signal), ("products", stores.add_product)):
        items = record.get(field) or []
        if not isinstance(items, list):
            problems.row(name, number, f"malformed row: '{field}' must be a list", "")
            continue
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                problems.row(name, number, f"malformed row: {field}[{position}] must be an object", "")
                continue
            cells = _as_cells(item)
            cells.setdefault("store_id", store_id)
            if cells["store_id"] != store_id:
                problems.row(name, number, f"{field}[{position}] names store_id {cells['store_id']!r} "
                                           f"inside store {store_id!r}; nest items under their own store", "")
                continue
            add(name, number, cells, where=f"{field}[{position}]: ")


def _as_cells(record: dict[str, Any]) -> dict[str, str]:
    """JSON values as the CSV form would carry them, so both forms share one validation."""
    cells: dict[str, str] = {}
    for key, value in record.items():
        if key in ("signals", "products"):
            continue
        if value is None:
            cells[key] = ""
        elif key == "images" and isinstance(value, list):
            cells[key] = "|".join(str(v) for v in value)
        else:
            cells[key] = str(value)
    return cells


# ------------------------------------------------------------------------------- shared validation


class _Collector:
    """Validates rows of either form and builds the Bundle."""

    def __init__(self, root: Path, problems: _Problems):
        self.root = root
        self.problems = problems
        self.stores: dict[str, Store] = {}
        self.signals: list[Signal] = []
        self.products: list[Product] = []
        self.product_keys: dict[tuple[str, str], int] = {}
        self.store_lines: dict[str, int] = {}  # first line of every store_id seen, kept or rejected
        self.rejected_stores: dict[str, tuple[str, int]] = {}  # store_id -> (file, line) of its rejection
        # False when the stores file itself was unusable (a fatal problem, so the read fails anyway):
        # then store_ids of signals and products cannot be checked and are not reported as unknown.
        self.stores_known = True

    def add_store(self, file: str, line: int, row: dict[str, str], raw: str | None = None) -> bool:
        """Validate and keep one store row; `raw`: the line as written (a stores.jsonl line), for rejected.csv."""
        store_id = row.get("store_id", "").strip()
        content: str | dict[str, str] = row if raw is None else raw  # joined into text only if the row is rejected
        if not store_id:
            self.problems.row(file, line, "empty store_id; every store needs an id", content)
            return False
        if store_id in self.store_lines:
            self.problems.row(file, line, f"duplicate store_id {store_id!r} (first at line "
                                          f"{self.store_lines[store_id]}); store ids must be unique", content)
            return False
        self.store_lines[store_id] = line
        created = row.get("created_at", "").strip()
        if created:
            try:
                parse_timestamp(created)
            except ValueError:
                self.problems.row(file, line, f"created_at {created!r} is not an ISO 8601 date or timestamp",
                                  content)
                self.rejected_stores[store_id] = (file, line)
                return False
        self.stores[store_id] = Store(
            store_id=store_id,
            name=row.get("name", "").strip(),
            platform=row.get("platform", "").strip(),
            country=row.get("country", "").strip().upper(),
            created_at=created,
        )
        return True

    def _known_store(self, file: str, line: int, row: dict[str, str], where: str) -> str | None:
        store_id = row.get("store_id", "").strip()
        content = row  # joined into text only if the row is rejected
        if not store_id:
            self.problems.row(file, line, f"{where}empty store_id", content)
            return None
        if store_id in self.rejected_stores:
            store_file, store_line = self.rejected_stores[store_id]
            self.problems.row(file, line, f"{where}store_id {store_id!r} belongs to a store rejected at "
                                          f"{store_file} line {store_line}; fix that row first", content)
            return None
        if store_id not in self.stores:
            if self.stores_known:
                self.problems.row(file, line, f"{where}unknown store_id {store_id!r}; "
                                              "every store_id must appear in stores.csv", content)
            return None
        return store_id

    def add_signal(self, file: str, line: int, row: dict[str, str], where: str = "") -> None:
        store_id = self._known_store(file, line, row, where)
        if store_id is None:
            return
        content = row  # joined into text only if the row is rejected
        kind = row.get("kind", "").strip().lower()
        value = row.get("value", "").strip()
        if not kind:
            self.problems.row(file, line, f"{where}empty kind; say what the value is (ip, mac, phone, ...)",
                              content)
            return
        if not value:
            self.problems.row(file, line, f"{where}empty value for kind {kind!r}; leave unknown signals out",
                              content)
            return
        seen_text = row.get("seen_at", "").strip()
        seen_at = None
        if seen_text:
            try:
                seen_at = parse_timestamp(seen_text)
            except ValueError:
                self.problems.row(file, line, f"{where}seen_at {seen_text!r} is not an ISO 8601 timestamp "
                                              "(e.g. 2024-05-01T10:00:00Z)", content)
                return
        self.signals.append(Signal(store_id=store_id, kind=kind, value=value, seen_at=seen_at))

    def add_product(self, file: str, line: int, row: dict[str, str], where: str = "") -> None:
        store_id = self._known_store(file, line, row, where)
        if store_id is None:
            return
        content = row  # joined into text only if the row is rejected
        product_id = row.get("product_id", "").strip()
        if not product_id:
            self.problems.row(file, line, f"{where}empty product_id; every listing needs an id", content)
            return
        key = (store_id, product_id)
        if key in self.product_keys:
            self.problems.row(file, line, f"{where}duplicate product_id {product_id!r} in store {store_id!r} "
                                          f"(first at line {self.product_keys[key]})", content)
            return
        price_text = row.get("price", "").strip()
        price = None
        if price_text:
            price = float(price_text) if _DECIMAL.fullmatch(price_text) else math.nan
            if not math.isfinite(price):
                self.problems.row(file, line, f"{where}price {price_text!r} is not a decimal number "
                                              "(e.g. 19.99)", content)
                return
        images = tuple(p.strip() for p in row.get("images", "").split("|") if p.strip())
        self.product_keys[key] = line
        self.products.append(Product(
            store_id=store_id,
            product_id=product_id,
            title=row.get("title", "").strip(),
            description=row.get("description", "").strip(),
            price=price,
            currency=row.get("currency", "").strip().upper(),
            images=images,
        ))

    def bundle(self) -> Bundle:
        return Bundle(root=self.root, stores=self.stores, signals=self.signals, products=self.products)
