"""Shared fixtures: write bundles to disk from plain Python data.

`make_bundle` writes one bundle in both forms the contract allows (a CSV directory and a
stores.jsonl file), so a test can read both and compare. `write_bundle_files` writes files
byte for byte, for the malformed inputs that no CSV writer would produce.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

Row = Mapping[str, Any]

# Columns written first, in this order; any other keys of the rows follow in first-seen order.
_LEADING = {
    "stores": ("store_id",),
    "signals": ("store_id", "kind", "value"),
    "products": ("store_id", "product_id"),
}


@dataclass(frozen=True)
class BundlePaths:
    """The same bundle twice: a CSV directory and a stores.jsonl file (in a directory of its own)."""

    csv_dir: Path
    jsonl: Path


def _cell(value: Any) -> str:
    """A Python value as a CSV cell: None is an empty cell, a list is the `|`-separated form."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    return str(value)


def _quote(cell: str) -> str:
    # Not csv.writer: with lineterminator="\n" it leaves a lone "\r" unquoted (Python 3.11), and
    # any reader then splits the row there.
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_text(rows: Sequence[Row], leading: Sequence[str] = (), *, line_end: str = "\n") -> str:
    """`rows` as CSV text with a header row, RFC 4180 quoting only where a cell needs it."""
    columns = list(leading)
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [columns] + [[_cell(row.get(column)) for column in columns] for row in rows]
    return "".join(",".join(_quote(cell) for cell in line) + line_end for line in lines)


def jsonl_text(stores: Sequence[Row], signals: Sequence[Row] = (), products: Sequence[Row] = ()) -> str:
    """The bundle as stores.jsonl: one store per line, its signals and products nested without store_id."""
    by_store: dict[str, dict[str, Any]] = {}
    for store in stores:
        record = dict(store)
        record.setdefault("signals", [])
        record.setdefault("products", [])
        by_store[str(store["store_id"])] = record
    for field, items in (("signals", signals), ("products", products)):
        for item in items:
            owner = str(item["store_id"])
            if owner not in by_store:
                raise ValueError(f"{field} item for unknown store {owner!r} cannot be nested in JSONL")
            by_store[owner][field].append({k: v for k, v in item.items() if k != "store_id"})
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in by_store.values())


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Caches a test does not place itself go to a temporary folder, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("xdg-cache")
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., BundlePaths]:
    """make_bundle(stores, signals=None, products=None, *, line_end="\\n") -> BundlePaths.

    Rows are dicts; list values (images) are joined with `|` in the CSV form and stay lists in
    JSONL. signals/products None means the CSV file is left out; [] writes a header-only file.
    Each call writes into fresh directories, so one test (or one hypothesis example) may call it
    many times.
    """
    counter = itertools.count()

    def make(stores: Sequence[Row], signals: Sequence[Row] | None = None,
             products: Sequence[Row] | None = None, *, line_end: str = "\n") -> BundlePaths:
        number = next(counter)
        csv_dir = tmp_path / f"bundle{number}-csv"
        jsonl_dir = tmp_path / f"bundle{number}-jsonl"
        csv_dir.mkdir()
        jsonl_dir.mkdir()
        for name, rows in (("stores", stores), ("signals", signals), ("products", products)):
            if rows is not None:
                text = csv_text(rows, _LEADING[name], line_end=line_end)
                (csv_dir / f"{name}.csv").write_bytes(text.encode("utf-8"))
        jsonl = jsonl_dir / "stores.jsonl"
        text = jsonl_text(stores, signals or (), products or ())
        jsonl.write_bytes(text.replace("\n", line_end).encode("utf-8"))
        return BundlePaths(csv_dir=csv_dir, jsonl=jsonl)

    return make


@pytest.fixture
def write_bundle_files(tmp_path: Path) -> Callable[..., Path]:
    """write_bundle_files({"stores.csv": text or bytes, ...}) -> a fresh directory with just those files.

    Text is encoded as UTF-8 with no newline translation, so the line ends in the test are the
    line ends in the file.
    """
    counter = itertools.count()

    def write(files: Mapping[str, str | bytes]) -> Path:
        root = tmp_path / f"files{next(counter)}"
        root.mkdir()
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (root / name).write_bytes(data)
        return root

    return write
