"""Bundle rows for collectors: read a bundle with every row's origin, merge rows, write the CSV form atomically.

Merging never overwrites silently and never loses a row:
- stores.csv: one row per store_id. A cell empty on one side is filled from the other; two
  different non-empty values are a conflict, reported with both origins (file and line).
- signals.csv: identical rows (same store, kind, value and instant) are kept once; all others are kept.
- products.csv: one row per (store_id, product_id). Equal rows are kept once; different ones are
  a conflict unless the caller asked the new rows to replace the old (and then they are counted).
  A row whose images were downloaded (local paths, the URLs kept in `image_urls`) equals the row
  that still carries those URLs.
A conflict stops the write: nothing is written until the rows agree.

Writes go to a temporary file in the bundle directory that is renamed over the old one, so a
reader sees either the old file or the new, never half of one. stores.csv is written first, so a
crash between files leaves at worst a store without rows, never a row without its store. Where
the OS has flock, the bundle directory is locked for the read-merge-write, so two collectors
writing into one bundle at once cannot lose each other's rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assoc.errors import OutputError
from assoc.files import create_beside

from .errors import CollectError, ConflictError

try:
    import fcntl
except ImportError:  # not on Windows: there a bundle must not be written by two collectors at once
    fcntl = None  # type: ignore[assignment]

STORE_COLUMNS = ("store_id", "name", "platform", "country", "created_at")
SIGNAL_COLUMNS = ("store_id", "kind", "value", "seen_at")
PRODUCT_COLUMNS = ("store_id", "product_id", "title", "description", "price", "currency", "images")
# Where a downloaded image came from, one entry per entry of `images` ('' where it was local already).
IMAGE_URLS = "image_urls"
FILES = {"stores": "stores.csv", "signals": "signals.csv", "products": "products.csv"}
LEADING = {"stores": STORE_COLUMNS, "signals": SIGNAL_COLUMNS, "products": PRODUCT_COLUMNS}
_KEYS = {"stores": ("store_id",), "signals": ("store_id", "kind", "value"), "products": ("store_id", "product_id")}

_UTC_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# JSON Lines end at CR, LF or CRLF, as assoc.bundle reads them. Not str.splitlines(): it also splits at
# U+2028, U+0085 and friends, which JSON allows raw inside strings.
_LINE_END = re.compile(r"(\r\n|\r|\n)")
SignalKey = tuple[str, str, str, str]  # store_id, kind, value, seen_at as a UTC instant (or as written)


@dataclass(frozen=True, slots=True)
class Row:
    """One store or product row and where it came from ('path line N'), for conflict messages."""

    cells: dict[str, str]
    origin: str
    root: Path | None = None  # the bundle directory the row was read from: its image paths resolve there


def canonical_time(text: str) -> str:
    """An ISO 8601 timestamp as its UTC instant, so that one moment written two ways is one row."""
    if _UTC_SECONDS.fullmatch(text):  # what collectors write: canonical already, and kept as the same object
        return text
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return text


class BundleRows:
    """The rows of a bundle, de-duplicated and merged as they are added; conflicts are collected."""

    def __init__(self, root: Path | None = None):
        self.root = root  # where relative image paths of these rows resolve (None: rows made in memory)
        self.stores: dict[str, Row] = {}
        # Signals are the bulk of a bundle, so they are held lean: key -> None when seen_at is written as its
        # canonical form (what collectors write) and there are no extra cells, else (seen_at as written, extras).
        self.signals: dict[SignalKey, tuple[str, dict[str, str] | None] | None] = {}
        self.products: dict[tuple[str, str], Row] = {}
        self.columns = {name: list(columns) for name, columns in LEADING.items()}
        self.conflicts: list[str] = []
        self.replaced = 0  # products replaced by newer rows (only when the caller asked for that)
        self.streamed = 0  # signal rows written from a stream (write_into), not held here

    def _note_columns(self, table: str, cells: Mapping[str, str]) -> None:
        columns = self.columns[table]
        if len(cells) > len(LEADING[table]) or any(c not in columns for c in cells):
            columns.extend(c for c in cells if c not in columns)

    def add_store(self, cells: Mapping[str, str], origin: str, root: Path | None = None) -> None:
        cells = {k: v.strip() for k, v in cells.items()}
        self._note_columns("stores", cells)
        store_id = cells["store_id"]
        old = self.stores.get(store_id)
        if old is None:
            self.stores[store_id] = Row(cells, origin, root)
            return
        merged, differ = _fill(old.cells, cells, _same_store_cell)
        for column, a, b in differ:
            self.conflicts.append(f"store {store_id!r}: {column} {a!r} ({old.origin}) vs {b!r} ({origin})")
        self.stores[store_id] = Row(merged, old.origin, old.root)

    def ensure_store(self, store_id: str, origin: str) -> None:
        if store_id not in self.stores:
            self.add_store({"store_id": store_id}, origin)

    def add_signal(self, store_id: str, kind: str, value: str, seen_at: str = "",
                   extra: dict[str, str] | None = None) -> bool:
        """Add one signal; False when the same row is there already."""
        canonical = canonical_time(seen_at) if seen_at else ""
        key = (store_id, kind, value, canonical)
        if key in self.signals:
            return False
        if extra:
            self._note_columns("signals", extra)
        self.signals[key] = None if canonical == seen_at and not extra else (seen_at, extra or None)
        return True

    def add_product(self, cells: Mapping[str, str], origin: str, root: Path | None = None, *,
                    replace: bool = False) -> None:
        cells = {k: v.strip() for k, v in cells.items()}
        self._note_columns("products", cells)
        key = (cells["store_id"], cells["product_id"])
        old = self.products.get(key)
        if old is None:
            self.products[key] = Row(cells, origin, root)
            return
        if replace:
            if _product_differences(old.cells, cells):
                self.replaced += 1
            self.products[key] = Row(cells, origin, root)
            return
        differ = _product_differences(old.cells, cells)
        for column, a, b in differ:
            self.conflicts.append(f"product {key[1]!r} of store {key[0]!r}: {column} {a!r} ({old.origin}) "
                                  f"vs {b!r} ({origin})")
        if not differ:
            # The same listing: keep the row that has downloaded images, and fill empty cells.
            if _local_images(old.cells) >= _local_images(cells):
                keep, other = old, Row(cells, origin, root)
            else:
                keep, other = Row(cells, origin, root), old
            merged, _ = _fill(keep.cells, {k: v for k, v in other.cells.items() if k not in ("images", IMAGE_URLS)},
                              lambda column, a, b: True)
            self.products[key] = Row(merged, keep.origin, keep.root)

    def update(self, other: BundleRows, *, replace_products: bool = False) -> None:
        """Merge `other`'s rows into these (conflicts are collected, not raised)."""
        for row in other.stores.values():
            self.add_store(row.cells, row.origin, row.root)
        for (store_id, kind, value, canonical), written in other.signals.items():
            seen_at, extra = written or (canonical, None)
            self.add_signal(store_id, kind, value, seen_at, extra)
        for row in other.products.values():
            self.add_product(row.cells, row.origin, row.root, replace=replace_products)

    def store_ids_used(self) -> Iterator[str]:
        for store_id, *_ in self.signals:
            yield store_id
        for store_id, _ in self.products:
            yield store_id

    def raise_conflicts(self) -> None:
        if self.conflicts:
            raise ConflictError(self.conflicts)


def _fill(old: Mapping[str, str], new: Mapping[str, str],
          same: Callable[[str, str, str], bool]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """`old` with its empty cells filled from `new`, and the (column, old, new) cells that disagree."""
    merged = dict(old)
    differ = []
    for column, value in new.items():
        mine = merged.get(column, "")
        if not mine:
            merged[column] = value
        elif value and mine != value and not same(column, mine, value):
            differ.append((column, mine, value))
    return merged, differ


def _same_store_cell(column: str, a: str, b: str) -> bool:
    if column == "country":
        return a.upper() == b.upper()
    if column == "created_at":
        return canonical_time(a) == canonical_time(b)
    return False


def _image_sources(cells: Mapping[str, str]) -> list[str]:
    """Each image as where it came from: its URL when it was downloaded, else the cell as written."""
    images = [p.strip() for p in cells.get("images", "").split("|") if p.strip()]
    urls = cells.get(IMAGE_URLS, "").split("|") if cells.get(IMAGE_URLS) else []
    return [urls[i].strip() if i < len(urls) and urls[i].strip() else image for i, image in enumerate(images)]


def _local_images(cells: Mapping[str, str]) -> int:
    return sum(1 for url in cells.get(IMAGE_URLS, "").split("|") if url.strip())


def _product_differences(old: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[str, str, str]]:
    differ = []
    for column in sorted(set(old) | set(new)):
        if column in ("store_id", "product_id", IMAGE_URLS):
            continue
        a, b = old.get(column, ""), new.get(column, "")
        if not a or not b or a == b:
            continue
        if column == "images":
            if _image_sources(old) != _image_sources(new):
                differ.append((column, a, b))
        elif column == "price":
            if _number(a) != _number(b):
                differ.append((column, a, b))
        elif column == "currency":
            if a.upper() != b.upper():
                differ.append((column, a, b))
        else:
            differ.append((column, a, b))
    return differ


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


# ------------------------------------------------------------------------------------ reading


def read_bundle_rows(path: Path) -> BundleRows:
    """Every row of the bundle at `path` (a directory in CSV or JSONL form, or a stores.jsonl file).

    Raises CollectError naming the file and line of anything that cannot be read: a collector
    rewrites whole files, so a row it could not read would be lost.
    """
    if path.is_file() and path.name.endswith(".jsonl"):
        return _read_jsonl(path)
    if not path.is_dir():
        raise CollectError(f"{path}: not a bundle directory; give the directory that holds stores.csv")
    if (path / "stores.csv").exists():
        rows = BundleRows(path)
        for table, name in FILES.items():
            if (path / name).exists():
                _read_csv(path / name, table, rows)
        return rows
    if (path / "stores.jsonl").exists():
        return _read_jsonl(path / "stores.jsonl")
    if any((path / name).exists() for name in FILES.values()):
        raise CollectError(f"{path}: has signals or products but no stores.csv; add stores.csv (store_id column) "
                           "or give another bundle")
    return BundleRows(path)  # a new or empty bundle


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CollectError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise CollectError(f"{path} line {line}: not valid UTF-8; re-export the file as UTF-8") from exc


def _read_csv(path: Path, table: str, rows: BundleRows) -> None:
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header and table != "stores":
            return
        missing = [c for c in _KEYS[table] if c not in header]
        if missing:
            raise CollectError(f"{path} line 1: missing column(s) {', '.join(missing)}; fix the header first")
        if len(set(header)) != len(header):
            raise CollectError(f"{path} line 1: a column appears twice in the header; keep one of each")
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise CollectError(f"{path} line {start}: {len(cells)} fields where the header has {len(header)}; "
                                   "fix the row before collecting into this bundle")
            _add(rows, table, dict(zip(header, cells, strict=True)), f"{path} line {start}", path.parent)
    except csv.Error as exc:
        raise CollectError(f"{path} line {reader.line_num}: malformed CSV: {exc}; fix it before collecting "
                           "into this bundle") from exc


def _add(rows: BundleRows, table: str, cells: dict[str, str], origin: str, root: Path) -> None:
    empty = [c for c in _KEYS[table] if not cells.get(c, "").strip()]
    if empty:
        raise CollectError(f"{origin}: empty {', '.join(empty)}; fix or remove the row first")
    if table == "stores":
        rows.add_store(cells, origin, root)
    elif table == "products":
        rows.add_product(cells, origin, root)
    else:
        extra = {k: v for k, v in cells.items() if k not in SIGNAL_COLUMNS}
        rows.add_signal(cells["store_id"].strip(), cells["kind"].strip(), cells["value"].strip(),
                        cells.get("seen_at", "").strip(), extra)


def _read_jsonl(path: Path) -> BundleRows:
    rows = BundleRows(path.parent)
    for number, text in enumerate(_LINE_END.split(_decode(path))[::2], start=1):
        if not text.strip():
            continue
        origin = f"{path} line {number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CollectError(f"{origin}: malformed JSON: {exc.msg}; fix it first") from exc
        if not isinstance(record, dict):
            raise CollectError(f"{origin}: each line must be a JSON object (one store)")
        store = {k: _cell(v) for k, v in record.items() if k not in ("signals", "products")}
        _add(rows, "stores", store, origin, path.parent)
        for field, table in (("signals", "signals"), ("products", "products")):
            for item in record.get(field) or []:
                if not isinstance(item, dict):
                    raise CollectError(f"{origin}: every item of {field!r} must be an object")
                cells = {k: _cell(v) for k, v in item.items()}
                cells.setdefault("store_id", store.get("store_id", ""))
                _add(rows, table, cells, origin, path.parent)
    return rows


def rewrite_jsonl_products(path: Path, change: Callable[[dict[str, Any]], bool]) -> int:
    """Call `change` on every product object of the stores.jsonl at `path`, which edits it in place and says so.

    Writes the file again (atomically) when a product changed: changed lines re-serialised, every
    other line and line end as it was. Returns the number of products changed. The caller holds the lock.
    """
    parts = _LINE_END.split(_decode(path))  # lines at even indexes, their ends between them
    changed = 0
    for index in range(0, len(parts), 2):
        if not parts[index].strip():
            continue
        try:
            record = json.loads(parts[index])
        except json.JSONDecodeError as exc:
            raise CollectError(f"{path} line {index // 2 + 1}: malformed JSON: {exc.msg}; fix it first") from exc
        items = record.get("products") if isinstance(record, dict) else None
        here = sum(1 for item in items if isinstance(item, dict) and change(item)) if isinstance(items, list) else 0
        if here:
            parts[index] = json.dumps(record, ensure_ascii=False)
            changed += here
    if changed:
        atomic_write(path, lambda handle: handle.write("".join(parts)), text=True)
    return changed


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------------------ writing


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the bundle directory `out` (created if missing) while the block runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the bundle directory: {exc.strerror or exc}") from exc
    if fcntl is None:
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_into(out: Path, new: BundleRows, *, replace_products: bool = False,
               stream: Iterable[SignalKey] | None = None) -> BundleRows:
    """Merge `new` into the CSV bundle at `out` (created if missing) and write it; returns the merged rows.

    `stream` adds signal rows (store_id, kind, value, seen_at) that are written as they come instead
    of being held in memory: rows distinct from each other, of stores that `new` names. Rows the
    bundle holds already are skipped. Raises ConflictError (writing nothing) when the rows disagree
    with what the bundle holds.
    """
    with locked(out):
        if (out / "stores.jsonl").exists():
            raise CollectError(f"{out}: is a bundle in the JSONL form; collectors write the CSV form, so give "
                               "another --out and merge the two with `assoc collect merge`")
        merged = read_bundle_rows(out)
        if merged.stores or merged.signals or merged.products:
            merged.update(new, replace_products=replace_products)
        else:
            merged = new  # a new bundle: nothing to merge with, and re-adding millions of rows costs seconds
        merged.raise_conflicts()
        write_rows(out, merged, stream=stream)
    return merged


def write_rows(out: Path, rows: BundleRows, *, tables: tuple[str, ...] = ("stores", "signals", "products"),
               stream: Iterable[SignalKey] | None = None) -> None:
    """Write `rows` (and the signal rows of `stream`, see write_into) as the CSV form into `out`.

    Every file is written atomically; the caller holds the lock. `tables` limits the files written
    to those that changed (the others are left byte for byte).
    """
    if "stores" in tables:
        for store_id in list(rows.store_ids_used()):
            rows.ensure_store(store_id, "added because rows use it")
        _write_csv(out / FILES["stores"], rows.columns["stores"], (r.cells for r in rows.stores.values()))
    if "signals" in tables and (rows.signals or stream is not None or (out / FILES["signals"]).exists()):
        _write_csv(out / FILES["signals"], rows.columns["signals"], _signal_cells(rows, stream))
    if "products" in tables and (rows.products or (out / FILES["products"]).exists()):
        _write_csv(out / FILES["products"], rows.columns["products"], (r.cells for r in rows.products.values()))


def _signal_cells(rows: BundleRows, stream: Iterable[SignalKey] | None) -> Iterator[Mapping[str, str]]:
    for (store_id, kind, value, canonical), written in rows.signals.items():
        seen_at, extra = written or (canonical, None)
        cells = {"store_id": store_id, "kind": kind, "value": value, "seen_at": seen_at}
        if extra:
            cells.update(extra)
        yield cells
    for store_id, kind, value, seen_at in stream or ():
        if (store_id, kind, value, canonical_time(seen_at) if seen_at else "") not in rows.signals:
            rows.streamed += 1
            yield {"store_id": store_id, "kind": kind, "value": value, "seen_at": seen_at}


def _write_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, str]]) -> None:
    # csv.writer's default line end is CRLF (RFC 4180), and it quotes any cell holding CR or LF.
    atomic_write(path, lambda handle: _csv_to(handle, columns, rows), text=True)


def _csv_to(handle: Any, columns: list[str], rows: Iterable[Mapping[str, str]]) -> None:
    writer = csv.writer(handle)
    writer.writerow(columns)
    writer.writerows([row.get(c, "") for c in columns] for row in rows)


def atomic_write(path: Path, fill: Callable[[Any], None], *, text: bool) -> None:
    """Write `path` by calling `fill(handle)` on a temporary file in its directory, then renaming it over.

    The file gets the mode open() would give a new file (0666 less the umask; assoc.files.create_beside).
    """
    try:
        fd, temp = create_beside(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}; check the space and permissions") from exc
    try:
        handle = os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")
        with handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        _remove(temp)
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}; check the space and permissions") from exc
    except BaseException:
        _remove(temp)
        raise


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
