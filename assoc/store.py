"""The persistent index: one SQLite file (WAL mode) holding every store's rows, normalised keys and catalog state.

The data model is relational (DESIGN_NOTES §11), so candidate generation and evidence are lookups,
joins and group-bys that another engine could run unchanged in spirit:

    stores        (store_id, seq, name, platform, country, created_at, root, content_hash)
    signals       (signal_id, store_id, seq, kind, raw value, seen_at, normalised value, weak, note, keys)
    signal_keys   (store_id, key kind, key value, seen_at, signal_id)   one row per observation and key
    keys          (key kind, key value, stores, weak_stores, note)      how many stores hold each key
    products      (listing_id, store_id, product_id, seq, listing fields, normalised text: key, tokens, facts)
    text_tokens   (token, listings)                                     document frequency of title tokens
    listing_blocks(block, listing_id)           a listing's rarest title tokens: where a check looks for matches
    listing_groups(listing_id, store_id, group_id)                      product groups
    groups        (group_id, stores)
    catalog_pairs (store_a, store_b, overlap, shares, shared and common groups)  for queries and reports
    product_images(store_id, product_id, position, path, digest), images(digest, fingerprint, rejected)

Normalisation happens once, when a store is written: a check reads normalised keys, token
frequencies and product groups and never recomputes them for indexed stores. Pictures are
fingerprinted (assoc.images) once per distinct file, for the image comparison that checks do not
make yet (see assoc.check).

Writes are idempotent and crash-safe. Each store carries a content hash: re-adding an unchanged
store is a no-op, a changed store's rows are replaced. Stores are written in batches, one
transaction each, so a process killed at any moment leaves the previous batch committed and the
file consistent. The catalog (product groups and pair overlaps) is global; it is recomputed
with assoc.catalog.compare_catalogs, in one transaction, after the batches, and a flag in `meta`
says it is stale until then, so an interrupted run is completed by the next one.

Row order is kept (`seq`): a bundle rebuilt from the index lists stores, signals and products
in the order of the bundles they came from, so scanning it gives the same files byte for byte.
seq is (generation << 32) + row number, where a generation is one `add`; a run that resumes an
interrupted add of the same data reuses its generation, so the result is the same as if it had
never been interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import PairOverlap, compare_catalogs
from .errors import AssocError
from .index import IndexKey, Posting, _index_keys
from .normalise import Normalised, normalise
from .records import Bundle, Product, Progress, Signal, Store, no_progress
from .settings import Settings
from .text import Normaliser, ProductText

# 2: materials are facts of listing text (assoc.text), so version 1's stored tokens differ.
SCHEMA_VERSION = 2
APPLICATION_ID = 0x6173736F  # "asso": tells an assoc index from any other SQLite file
_GENERATION_SHIFT = 32
# How much of the index file a connection reads through a memory map (PRAGMA mmap_size).
MMAP_BYTES = 1 << 30
# Stores written per transaction: large enough to amortise commits, small enough that a killed run loses little.
BATCH_STORES = 500

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE stores (
    store_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, platform TEXT NOT NULL,
    country TEXT NOT NULL, created_at TEXT NOT NULL, root TEXT NOT NULL, content_hash TEXT NOT NULL);
CREATE TABLE signals (
    signal_id INTEGER PRIMARY KEY, store_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    value TEXT NOT NULL, seen_at TEXT, norm_value TEXT, weak INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '', norm_keys TEXT NOT NULL DEFAULT '[]');
CREATE INDEX signals_store ON signals (store_id);
CREATE TABLE signal_keys (
    store_id TEXT NOT NULL, key_kind TEXT NOT NULL, key_value TEXT NOT NULL, seen_at REAL,
    signal_id INTEGER NOT NULL);
CREATE INDEX signal_keys_key ON signal_keys (key_kind, key_value, store_id);
CREATE INDEX signal_keys_store ON signal_keys (store_id);
CREATE TABLE keys (
    key_kind TEXT NOT NULL, key_value TEXT NOT NULL, stores INTEGER NOT NULL, weak_stores INTEGER NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (key_kind, key_value)) WITHOUT ROWID;
CREATE TABLE products (
    listing_id INTEGER PRIMARY KEY, store_id TEXT NOT NULL, product_id TEXT NOT NULL, seq INTEGER NOT NULL,
    title TEXT NOT NULL, description TEXT NOT NULL, price REAL, currency TEXT NOT NULL, images TEXT NOT NULL,
    text_key TEXT NOT NULL, tokens TEXT NOT NULL, facts TEXT NOT NULL, blocks TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX products_store ON products (store_id, product_id);
CREATE TABLE text_tokens (token TEXT PRIMARY KEY, listings INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE listing_blocks (
    block INTEGER NOT NULL, listing_id INTEGER NOT NULL, PRIMARY KEY (block, listing_id)) WITHOUT ROWID;
CREATE TABLE listing_groups (listing_id INTEGER PRIMARY KEY, store_id TEXT NOT NULL, group_id INTEGER NOT NULL);
CREATE INDEX listing_groups_group ON listing_groups (group_id, store_id);
CREATE INDEX listing_groups_store ON listing_groups (store_id, group_id);
CREATE TABLE groups (group_id INTEGER PRIMARY KEY, stores INTEGER NOT NULL);
CREATE TABLE catalog_pairs (
    store_a TEXT NOT NULL, store_b TEXT NOT NULL, overlap REAL NOT NULL, share_a REAL NOT NULL,
    share_b REAL NOT NULL, shared_groups INTEGER NOT NULL, common_groups INTEGER NOT NULL,
    PRIMARY KEY (store_a, store_b)) WITHOUT ROWID;
CREATE INDEX catalog_pairs_b ON catalog_pairs (store_b);
CREATE TABLE product_images (
    store_id TEXT NOT NULL, product_id TEXT NOT NULL, position INTEGER NOT NULL, path TEXT NOT NULL,
    digest TEXT, PRIMARY KEY (store_id, product_id, position)) WITHOUT ROWID;
CREATE TABLE images (digest TEXT PRIMARY KEY, fingerprint TEXT, rejected TEXT NOT NULL) WITHOUT ROWID;
"""
_Memo = dict[tuple[str, str, str | None], Normalised | None]
_TABLES = ("meta", "stores", "signals", "signal_keys", "keys", "products", "text_tokens", "listing_blocks",
           "listing_groups", "groups", "catalog_pairs", "product_images", "images")


class IndexStoreError(AssocError):
    """The index file cannot be used: missing, not an assoc index, or of another schema version."""


class UnknownStoreError(IndexStoreError):
    """A store id that the index does not hold."""


@dataclass(frozen=True, slots=True)
class AddReport:
    added: int
    updated: int
    unchanged: int
    catalog_refreshed: bool


@dataclass(frozen=True, slots=True)
class StoreRecord:
    """One store's rows as the index holds them (raw values, as exported)."""

    store: Store
    root: Path
    signals: tuple[Signal, ...]
    products: tuple[Product, ...]


@dataclass(slots=True)
class StoredListing:
    """A listing's normalised text and product group, as the last catalog refresh left them."""

    store_id: str
    product_id: str
    text: ProductText
    group_id: int | None


@dataclass(slots=True)
class _Deltas:
    """Changes of per-key and per-token counts within one transaction, applied once at its end."""

    keys: dict[IndexKey, list[Any]] = field(default_factory=dict)  # key -> [stores, weak_stores, note]
    tokens: Counter[str] = field(default_factory=Counter)
    groups: Counter[int] = field(default_factory=Counter)
    listings: int = 0


def content_hash(record: StoreRecord) -> str:
    """A digest of everything a scan reads from a store: unchanged data, unchanged hash."""
    store = record.store
    data: dict[str, Any] = {
        "store": [store.store_id, store.name, store.platform, store.country, store.created_at],
        "signals": [[s.kind, s.value, _iso(s.seen_at)] for s in record.signals],
        "products": [[p.product_id, p.title, p.description, p.price, p.currency, list(p.images)]
                     for p in record.products],
    }
    # Relative image paths point into the bundle directory: the same rows from elsewhere are other pictures.
    if any(not _is_url(i) for p in record.products for i in p.images):
        data["root"] = str(record.root)
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


# Tokens are `kind:value` with the value made of word characters (assoc.text), so a space separates them safely.
def text_key(text: ProductText) -> str:
    return " ".join(sorted(text.key))


# A listing is found by a check through its BLOCK_TOKENS rarest title tokens other than codes and
# colours (those are its text key, part of every block): the candidate search of assoc.text in spirit.
BLOCK_TOKENS = 4


def block_of(text_key: str, token: str) -> int:
    """A (text key, token) pair as a signed 64-bit integer: small rows for a large table."""
    digest = hashlib.blake2b(f"{text_key}\x1f{token}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def listing_blocks(text_key: str, tokens: Iterable[str], df: Callable[[str], int]) -> list[int]:
    """The blocks of a listing: its rarest tokens (document frequency `df`) that any indexed listing has."""
    usable = sorted((df(t), t) for t in tokens if t[0] not in "co" and df(t) > 0)
    return [block_of(text_key, t) for _, t in usable[:BLOCK_TOKENS]]


def group_records(bundle: Bundle) -> list[tuple[StoreRecord, list[int], list[int], int]]:
    """The bundle split per store, in store order: (record, signal row numbers, product row numbers, store row)."""
    signals: dict[str, list[int]] = defaultdict(list)
    products: dict[str, list[int]] = defaultdict(list)
    for number, signal in enumerate(bundle.signals):
        signals[signal.store_id].append(number)
    for number, product in enumerate(bundle.products):
        products[product.store_id].append(number)
    root = bundle.root.resolve()
    out = []
    for row, (store_id, store) in enumerate(bundle.stores.items()):
        record = StoreRecord(store=store, root=root,
                             signals=tuple(bundle.signals[i] for i in signals[store_id]),
                             products=tuple(bundle.products[i] for i in products[store_id]))
        out.append((record, signals[store_id], products[store_id], row))
    return out


class IndexStore:
    """One open index file. Not shared between threads: open one per thread (readers never block writers)."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.connection = connection
        self.path = path
        self._normaliser = Normaliser()
        try:  # which file this is, for state kept in memory across connections (assoc.check)
            stat = os.stat(path)
            self.identity: tuple[Any, ...] = (str(Path(path).resolve()), stat.st_dev, stat.st_ino)
        except OSError:
            self.identity = (str(path),)

    # ------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False) -> IndexStore:
        """Open the index at `path`; with `create`, make an empty one if there is none.

        Raises IndexStoreError when the file is missing (without `create`), is not an assoc index,
        or has another schema version.
        """
        path = Path(path)
        existed = path.exists()
        if not existed and not create:
            raise IndexStoreError(f"{path}: no index there; build one with `assoc index add BUNDLE --db {path}`")
        try:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexStoreError(f"{path}: cannot open the index: {exc}") from exc
        try:
            cls._prepare(connection, path, existed)
        except (sqlite3.Error, IndexStoreError) as exc:
            connection.close()
            if isinstance(exc, IndexStoreError):
                raise
            raise IndexStoreError(f"{path}: not a readable SQLite index ({exc}); give an index built by "
                                  "`assoc index add`, or a new path to build one") from exc
        if not existed:
            os.chmod(path, 0o600)  # fingerprints are personal data (DESIGN_NOTES §10): owner only
        return cls(connection, path)

    @staticmethod
    def _prepare(connection: sqlite3.Connection, path: Path, existed: bool) -> None:
        connection.execute("PRAGMA busy_timeout = 30000")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        application = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version == 0 and application == 0 and tables == 0:
            connection.execute("PRAGMA journal_mode = WAL")
            # One script, one transaction: a process killed while creating leaves an empty file, not half a schema.
            connection.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                f"PRAGMA user_version = {SCHEMA_VERSION}; "
                "INSERT INTO meta VALUES ('next_generation', '1'), ('catalog', 'fresh'), ('listings', '0'); COMMIT;")
        elif application != APPLICATION_ID:
            raise IndexStoreError(f"{path}: is an SQLite file but not an assoc index; give an index built by "
                                  "`assoc index add`, or a new path to build one")
        elif version != SCHEMA_VERSION:
            older = version < SCHEMA_VERSION
            raise IndexStoreError(
                f"{path}: index schema version {version}, this assoc reads version {SCHEMA_VERSION}; "
                + ("no migration exists from that version: rebuild the index with `assoc index add` into a new file"
                   if older else "it was written by a newer assoc: upgrade assoc, or rebuild the index into a new "
                                 "file with this one"))
        connection.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous=NORMAL survives a killed process (the case the crash test covers); a power
        # loss may lose the last commits but never corrupts the file.
        connection.execute("PRAGMA synchronous = NORMAL")
        # Reads through a memory map instead of a read() call per page: a check reads a few hundred scattered
        # pages (measured: a quarter less CPU for those reads). Address space only; writes are unchanged.
        connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: everything or nothing.

        Every write transaction also counts itself in `meta` ('writes'): readers that keep state of the
        index in memory across transactions (assoc.check) compare that counter to know it is still valid.
        """
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute("INSERT INTO meta VALUES ('writes', '1') ON CONFLICT (key) DO UPDATE SET "
                           "value = CAST(value AS INTEGER) + 1")
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Cursor]:
        """One read transaction: every query inside sees the same state, whatever writers do meanwhile."""
        cursor = self.connection.cursor()
        cursor.execute("BEGIN")
        try:
            yield cursor
        finally:
            cursor.execute("COMMIT")

    def writes(self) -> int:
        """How many write transactions the index has had (0 for an index written before they were counted).

        Read inside a snapshot, it names the state that snapshot sees: equal counts, equal data."""
        row = self.connection.execute("SELECT value FROM meta WHERE key = 'writes'").fetchone()
        return 0 if row is None else int(row[0])

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @staticmethod
    def _set_meta(cursor: sqlite3.Cursor, key: str, value: str) -> None:
        cursor.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (key, value))

    # ------------------------------------------------------------------------------------- writing

    def add_bundle(self, bundle: Bundle, settings: Settings, *, hash_images: bool = True,
                   batch_stores: int = BATCH_STORES, progress: Progress = no_progress) -> AddReport:
        """Add or update every store of `bundle`, then bring the catalog up to date.

        Unchanged stores (same content hash) are left alone; changed ones are replaced whole.
        """
        records = group_records(bundle)
        hashes = [content_hash(record) for record, *_ in records]
        known = dict(self.connection.execute("SELECT store_id, content_hash FROM stores"))
        fingerprint = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
        pending = json.loads(self.meta("pending_add") or "{}")
        next_generation = int(self.meta("next_generation") or 1)
        # Resuming an interrupted add of the same data continues its generation; anything else starts a new one
        # (the interrupted run moved next_generation past its own when it wrote its first batch).
        generation = pending["generation"] if pending.get("fingerprint") == fingerprint else next_generation
        todo = [(item, digest) for item, digest in zip(records, hashes, strict=True)
                if known.get(item[0].store.store_id) != digest]
        added = sum(1 for (record, *_), _ in todo if record.store.store_id not in known)
        memo: _Memo = {}  # shared values repeat by the thousand (egress IPs, warehouses): normalise each once
        for start in range(0, len(todo), batch_stores):
            progress("index: write stores", start, len(todo))
            with self.write() as cursor:
                self._set_meta(cursor, "pending_add", json.dumps({"fingerprint": fingerprint,
                                                                   "generation": generation}))
                self._set_meta(cursor, "next_generation", str(max(next_generation, generation + 1)))
                self._set_meta(cursor, "catalog", "stale")
                deltas = _Deltas()
                for (record, signal_rows, product_rows, store_row), digest in todo[start:start + batch_stores]:
                    base = generation << _GENERATION_SHIFT
                    self._delete_store(cursor, record.store.store_id, deltas)
                    self._insert_store(cursor, record, digest, base + store_row,
                                       [base + n for n in signal_rows], [base + n for n in product_rows],
                                       deltas, memo, hash_images=hash_images)
                self._apply(cursor, deltas)
        progress("index: write stores", len(todo), len(todo))
        refreshed = False
        if self.meta("catalog") != "fresh" or pending:
            self.refresh_catalog(settings, finish_add=bool(todo or pending), progress=progress)
            refreshed = True
        return AddReport(added=added, updated=len(todo) - added, unchanged=len(records) - len(todo),
                         catalog_refreshed=refreshed)

    def replace_store(self, record: StoreRecord, *, hash_images: bool = True) -> bool:
        """Write one store (new or replacing its rows) in one transaction; the catalog becomes stale.

        Returns False when the store was already there with the same content (nothing written).
        The store goes after every store written so far (a generation of its own).
        """
        digest = content_hash(record)
        row = self.connection.execute("SELECT content_hash FROM stores WHERE store_id = ?",
                                      (record.store.store_id,)).fetchone()
        if row is not None and row[0] == digest:
            return False
        with self.write() as cursor:
            generation = int(cursor.execute("SELECT value FROM meta WHERE key = 'next_generation'").fetchone()[0])
            base = generation << _GENERATION_SHIFT
            self._set_meta(cursor, "next_generation", str(generation + 1))
            self._set_meta(cursor, "catalog", "stale")
            deltas = _Deltas()
            self._delete_store(cursor, record.store.store_id, deltas)
            self._insert_store(cursor, record, digest, base, [base + n for n in range(len(record.signals))],
                               [base + n for n in range(len(record.products))], deltas, {}, hash_images=hash_images)
            self._apply(cursor, deltas)
        return True

    def remove_store(self, store_id: str) -> None:
        """Remove one store and everything about it. Raises UnknownStoreError if it is not there."""
        with self.write() as cursor:
            if cursor.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)).fetchone() is None:
                raise UnknownStoreError(f"{self.path}: no store {store_id!r} in the index")
            deltas = _Deltas()
            self._delete_store(cursor, store_id, deltas)
            self._apply(cursor, deltas)
            self._set_meta(cursor, "catalog", "stale")

    def _delete_store(self, cursor: sqlite3.Cursor, store_id: str, deltas: _Deltas) -> None:
        held = cursor.execute(
            "SELECT k.key_kind, k.key_value, max(s.weak) FROM signal_keys k JOIN signals s USING (signal_id) "
            "WHERE k.store_id = ? GROUP BY k.key_kind, k.key_value", (store_id,)).fetchall()
        for kind, value, weak in held:
            entry = deltas.keys.setdefault((kind, value), [0, 0, ""])
            entry[0] -= 1
            entry[1] -= weak
        blocks = []
        for listing_id, tokens, listed in cursor.execute(
                "SELECT listing_id, tokens, blocks FROM products WHERE store_id = ?", (store_id,)).fetchall():
            deltas.tokens.subtract(tokens.split(" ") if tokens else ())
            deltas.listings -= 1
            blocks += [(int(b), listing_id) for b in listed.split(" ") if b]
        cursor.executemany("DELETE FROM listing_blocks WHERE block = ? AND listing_id = ?", blocks)
        for (group,) in cursor.execute("SELECT DISTINCT group_id FROM listing_groups WHERE store_id = ?",
                                       (store_id,)).fetchall():
            deltas.groups[group] -= 1
        for table in ("signal_keys", "signals", "products", "listing_groups", "product_images", "stores"):
            cursor.execute(f"DELETE FROM {table} WHERE store_id = ?", (store_id,))
        cursor.execute("DELETE FROM catalog_pairs WHERE store_a = ? OR store_b = ?", (store_id, store_id))

    def _insert_store(self, cursor: sqlite3.Cursor, record: StoreRecord, digest: str, store_seq: int,
                      signal_seqs: Sequence[int], product_seqs: Sequence[int], deltas: _Deltas, memo: _Memo, *,
                      hash_images: bool) -> None:
        store = record.store
        cursor.execute("INSERT INTO stores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (store.store_id, store_seq, store.name, store.platform, store.country, store.created_at,
                        str(record.root), digest))
        country = store.country or None  # as build_index passes it
        held: dict[IndexKey, list[Any]] = {}  # key -> [weak, note]
        key_rows = []
        signal_rows = []
        # Ids given here rather than by SQLite, so that all of a store's rows go in with one executemany.
        next_id = cursor.execute("SELECT coalesce(max(signal_id), 0) + 1 FROM signals").fetchone()[0]
        for signal_id, (signal, seq) in enumerate(zip(record.signals, signal_seqs, strict=True), start=next_id):
            seen_key = (signal.kind, signal.value, country)
            if seen_key in memo:
                normalised = memo[seen_key]
            else:
                normalised = memo[seen_key] = normalise(signal.kind, signal.value, country=country)
            row = (signal_id, store.store_id, seq, signal.kind, signal.value, _iso(signal.seen_at))
            if normalised is None:
                signal_rows.append((*row, None, 0, "", "[]"))
                continue
            signal_rows.append((*row, normalised.value, int(normalised.weak), normalised.note,
                                json.dumps(normalised.keys)))
            seen = signal.seen_at.timestamp() if signal.seen_at is not None else None
            for key in _index_keys(normalised):
                key_rows.append((store.store_id, key[0], key[1], seen, signal_id))
                entry = held.setdefault(key, [0, ""])
                if normalised.weak:
                    entry[0], entry[1] = 1, normalised.note
        cursor.executemany("INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", signal_rows)
        cursor.executemany("INSERT INTO signal_keys VALUES (?, ?, ?, ?, ?)", key_rows)
        for key, (weak, note) in held.items():
            entry = deltas.keys.setdefault(key, [0, 0, ""])
            entry[0] += 1
            entry[1] += weak
            if weak:
                entry[2] = note
        product_rows = []
        image_rows = []
        for product, seq in zip(record.products, product_seqs, strict=True):
            text = self._normaliser.normalise(product.title, product.description)
            product_rows.append((store.store_id, product.product_id, seq, product.title, product.description,
                                 product.price, product.currency, json.dumps(product.images), text_key(text),
                                 " ".join(sorted(text.tokens)), " ".join(sorted(text.facts))))
            deltas.tokens.update(text.tokens)
            deltas.listings += 1
            for position, image in enumerate(product.images):
                image_rows.append((store.store_id, product.product_id, position, image,
                                   _image_digest(record.root, image) if hash_images else None))
        cursor.executemany("INSERT INTO products (store_id, product_id, seq, title, description, price, currency, "
                           "images, text_key, tokens, facts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", product_rows)
        cursor.executemany("INSERT INTO product_images VALUES (?, ?, ?, ?, ?)", image_rows)
        for _, _, _, image, digest in image_rows:
            if digest is not None:
                self._hash_image(cursor, record.root / image, digest)

    @staticmethod
    def _hash_image(cursor: sqlite3.Cursor, path: Path, digest: str) -> None:
        """An image fingerprint (assoc.images) per distinct picture, by content digest, computed once for all
        stores that use it; a picture that cannot be fingerprinted is kept with the reason."""
        if cursor.execute("SELECT 1 FROM images WHERE digest = ?", (digest,)).fetchone():
            return
        from .images import ImageRejected, fingerprint_image  # OpenCV loads only when there are pictures

        try:
            cursor.execute("INSERT INTO images VALUES (?, ?, '')", (digest, str(fingerprint_image(path))))
        except ImageRejected as exc:
            cursor.execute("INSERT INTO images VALUES (?, NULL, ?)", (digest, exc.reason))

    @staticmethod
    def _apply(cursor: sqlite3.Cursor, deltas: _Deltas) -> None:
        cursor.executemany(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_kind, key_value) DO UPDATE SET "
            "stores = stores + excluded.stores, weak_stores = weak_stores + excluded.weak_stores, "
            "note = CASE WHEN excluded.note != '' THEN excluded.note ELSE note END",
            [(k, v, s, w, n) for (k, v), (s, w, n) in deltas.keys.items() if s or w or n])
        cursor.executemany("DELETE FROM keys WHERE key_kind = ? AND key_value = ? AND stores <= 0",
                           list(deltas.keys))
        cursor.executemany(
            "INSERT INTO text_tokens VALUES (?, ?) ON CONFLICT (token) DO UPDATE SET "
            "listings = listings + excluded.listings", [(t, c) for t, c in deltas.tokens.items() if c])
        cursor.executemany("DELETE FROM text_tokens WHERE token = ? AND listings <= 0",
                           [(t,) for t, c in deltas.tokens.items() if c < 0])
        _shift_groups(cursor, {g: c for g, c in deltas.groups.items() if c})
        if deltas.listings:
            cursor.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'listings'",
                           (deltas.listings,))

    def refresh_catalog(self, settings: Settings, *, finish_add: bool = False,
                        progress: Progress = no_progress) -> None:
        """Recompute product groups and catalog overlaps of the whole index, in one transaction."""
        bundle = self.load_bundle(signals=False)
        result = compare_catalogs(bundle.products, bundle.root, settings, progress=progress) \
            if bundle.products else None
        listings = self.connection.execute("SELECT listing_id, store_id, product_id, text_key, tokens "
                                           "FROM products").fetchall()
        df = dict(self.connection.execute("SELECT token, listings FROM text_tokens"))
        blocks = {listing_id: listing_blocks(key, tokens.split(" ") if tokens else (), lambda t: df.get(t, 0))
                  for listing_id, _, _, key, tokens in listings}
        with self.write() as cursor:
            for table in ("listing_groups", "groups", "catalog_pairs", "listing_blocks"):
                cursor.execute(f"DELETE FROM {table}")
            cursor.executemany("UPDATE products SET blocks = ? WHERE listing_id = ?",
                               [(" ".join(map(str, b)), i) for i, b in blocks.items()])
            cursor.executemany("INSERT INTO listing_blocks VALUES (?, ?)",
                               sorted((b, i) for i, listed in blocks.items() for b in listed))
            if result is not None:
                cursor.executemany("INSERT INTO listing_groups VALUES (?, ?, ?)",
                                   [(i, s, result.group_of[(s, p)]) for i, s, p, _, _ in listings])
                cursor.executemany("INSERT INTO groups VALUES (?, ?)", list(result.group_stores.items()))
                cursor.executemany("INSERT INTO catalog_pairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   [(o.store_a, o.store_b, o.overlap, o.share_a, o.share_b, o.shared_groups,
                                     o.common_groups) for o in result.overlaps.values()])
            self._set_meta(cursor, "group_histogram", json.dumps(
                Counter(result.group_stores.values()) if result is not None else {}))
            self._set_meta(cursor, "catalog_settings", json.dumps(
                {"use_text": settings.use_text, "use_images": settings.use_images,
                 "catalog_report_floor": settings.catalog_report_floor}, sort_keys=True))
            self._set_meta(cursor, "catalog", "fresh")
            if finish_add:
                cursor.execute("DELETE FROM meta WHERE key = 'pending_add'")

    # ------------------------------------------------------------------------------------- reading

    def load_bundle(self, *, signals: bool = True) -> Bundle:
        """The Bundle the index was built from: stores, signals and products in their original order.

        Stores from several bundle directories keep working image paths: relative paths of all
        but the first directory are made absolute.
        """
        stores: dict[str, Store] = {}
        roots: dict[str, str] = {}
        for store_id, name, platform, country, created_at, root in self.connection.execute(
                "SELECT store_id, name, platform, country, created_at, root FROM stores ORDER BY seq"):
            stores[store_id] = Store(store_id, name, platform, country, created_at)
            roots[store_id] = root
        main_root = next(iter(roots.values()), ".")
        signal_list = []
        if signals:
            signal_list = [Signal(store_id, kind, value, None if seen is None else datetime.fromisoformat(seen))
                           for store_id, kind, value, seen in self.connection.execute(
                               "SELECT store_id, kind, value, seen_at FROM signals ORDER BY seq")]
        products = []
        for store_id, product_id, title, description, price, currency, images in self.connection.execute(
                "SELECT store_id, product_id, title, description, price, currency, images FROM products "
                "ORDER BY seq"):
            paths = tuple(json.loads(images))
            if roots[store_id] != main_root:
                paths = tuple(p if _is_url(p) else str(Path(roots[store_id]) / p) for p in paths)
            products.append(Product(store_id, product_id, title, description, price, currency, paths))
        return Bundle(root=Path(main_root), stores=stores, signals=signal_list, products=products)

    def store_record(self, store_id: str) -> StoreRecord:
        """One store's rows. Raises UnknownStoreError if it is not there."""
        row = self.connection.execute(
            "SELECT name, platform, country, created_at, root FROM stores WHERE store_id = ?", (store_id,)).fetchone()
        if row is None:
            raise UnknownStoreError(f"{self.path}: no store {store_id!r} in the index")
        signals = tuple(Signal(store_id, kind, value, None if seen is None else datetime.fromisoformat(seen))
                        for kind, value, seen in self.connection.execute(
                            "SELECT kind, value, seen_at FROM signals WHERE store_id = ? ORDER BY seq", (store_id,)))
        products = tuple(Product(store_id, pid, title, description, price, currency, tuple(json.loads(images)))
                         for pid, title, description, price, currency, images in self.connection.execute(
                             "SELECT product_id, title, description, price, currency, images FROM products "
                             "WHERE store_id = ? ORDER BY seq", (store_id,)))
        return StoreRecord(Store(store_id, *row[:4]), Path(row[4]), signals, products)

    def has_store(self, store_id: str) -> bool:
        return self.connection.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)).fetchone() is not None

    # Reads below take any number of keys or ids in one statement: the list goes in as one JSON parameter
    # (json_each), so the statement text never changes and stays prepared in the connection's cache.

    def key_counts(self, keys: Iterable[IndexKey]) -> dict[IndexKey, tuple[int, int, str]]:
        """(stores holding it, stores holding it as a weak value, weak note) for each key the index knows."""
        return {(kind, value): (stores, weak, note) for kind, value, stores, weak, note in self.connection.execute(
            "SELECT k.key_kind, k.key_value, k.stores, k.weak_stores, k.note FROM json_each(?) j JOIN keys k "
            "ON k.key_kind = json_extract(j.value, '$[0]') AND k.key_value = json_extract(j.value, '$[1]')",
            (_json_list(keys),))}

    def store_keys(self, store_ids: Iterable[str]) -> dict[str, dict[IndexKey, bool]]:
        """Every key each store holds, and whether it holds it as a weak value."""
        out: dict[str, dict[IndexKey, bool]] = {s: {} for s in store_ids}
        for store_id, kind, value, weak in self.connection.execute(
                "SELECT k.store_id, k.key_kind, k.key_value, max(s.weak) FROM signal_keys k JOIN signals s USING "
                "(signal_id) WHERE k.store_id IN (SELECT value FROM json_each(?)) "
                "GROUP BY k.store_id, k.key_kind, k.key_value", (_json_list(out),)):
            out[store_id][(kind, value)] = bool(weak)
        return out

    def postings(self, keys: Iterable[IndexKey], *, exclude: str | None = None) -> dict[IndexKey, dict[str, Posting]]:
        """Postings of every holder of each key, built exactly as index.build_index builds them."""
        out: dict[IndexKey, dict[str, Posting]] = {key: {} for key in keys}
        if not out:
            return out
        # One query for all keys; rows in signal order, as build_index meets them, so each key's postings
        # are built in the same order as by a query per key.
        rows = self.connection.execute(
            "SELECT k.key_kind, k.key_value, k.store_id, k.seen_at, s.value, s.kind, s.norm_value, s.weak, s.note, "
            "s.norm_keys FROM json_each(?) j JOIN signal_keys k ON k.key_kind = json_extract(j.value, '$[0]') "
            "AND k.key_value = json_extract(j.value, '$[1]') JOIN signals s USING (signal_id) ORDER BY s.seq",
            (_json_list(out),))
        parsed: dict[int, Normalised] = {}
        for kind, value, store_id, seen, raw, signal_kind, norm_value, weak, note, norm_keys in rows:
            if store_id == exclude:
                continue
            holders = out[(kind, value)]
            posting = holders.get(store_id)
            if posting is None:
                posting = holders[store_id] = Posting()
            if seen is not None:
                posting.times.append(seen)
            if raw not in posting.raw:
                posting.raw.append(raw)
            signature = (signal_kind, norm_value, weak, note, norm_keys)
            normalised = parsed.get(signature)  # type: ignore[call-overload]
            if normalised is None:
                normalised = parsed[signature] = Normalised(  # type: ignore[index]
                    signal_kind.strip().lower(), norm_value, bool(weak), note,
                    tuple(tuple(k) for k in json.loads(norm_keys)))
            if normalised not in posting.values:
                posting.values.append(normalised)
        for holders in out.values():
            for posting in holders.values():
                posting.times.sort()
        return out

    def place_listings(self, store_id: str, groups: dict[str, int], blocks: dict[str, list[int]],
                       overlaps: dict[tuple[str, str], PairOverlap]) -> None:
        """Record one store's listings' product groups (< 0: a new group per label), blocks and catalog overlaps."""
        with self.write() as cursor:
            next_id = cursor.execute("SELECT coalesce(max(group_id), -1) + 1 FROM groups").fetchone()[0]
            ids = dict(cursor.execute("SELECT product_id, listing_id FROM products WHERE store_id = ?", (store_id,)))
            created: dict[int, int] = {}
            rows = []
            for product_id, group in groups.items():
                if group < 0:
                    group = created.setdefault(group, next_id + len(created))
                rows.append((ids[product_id], store_id, group))
            cursor.execute("DELETE FROM listing_groups WHERE store_id = ?", (store_id,))
            cursor.executemany("INSERT INTO listing_groups VALUES (?, ?, ?)", rows)
            cursor.executemany("INSERT INTO groups VALUES (?, 0)", [(g,) for g in created.values()])
            _shift_groups(cursor, dict.fromkeys(sorted({g for _, _, g in rows}), 1))
            cursor.executemany("UPDATE products SET blocks = ? WHERE listing_id = ?",
                               [(" ".join(map(str, listed)), ids[p]) for p, listed in blocks.items()])
            cursor.executemany("INSERT OR IGNORE INTO listing_blocks VALUES (?, ?)",
                               [(b, ids[p]) for p, listed in blocks.items() for b in listed])
            cursor.execute("DELETE FROM catalog_pairs WHERE store_a = ? OR store_b = ?", (store_id, store_id))
            cursor.executemany("INSERT INTO catalog_pairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(o.store_a, o.store_b, o.overlap, o.share_a, o.share_b, o.shared_groups,
                                 o.common_groups) for o in overlaps.values()])

    def _each(self, sql: str, values: Iterable[Any]) -> sqlite3.Cursor:
        """Rows of `sql`, whose one `{}` stands for the list `values` (as `x IN {}`)."""
        return self.connection.execute(sql.format("(SELECT value FROM json_each(?))"), (_json_list(values),))

    def block_members(self, blocks: Iterable[int], *, limit: int) -> dict[int, list[int] | None]:
        """The listings in each block; None for a block holding more than `limit` (too common to search)."""
        out: dict[int, list[int] | None] = dict.fromkeys(blocks, [])
        # Grouped in SQLite: one row per block, members as one string (rows cost more to hand over than text).
        for block, size, members in self._each(
                "SELECT block, count(*), group_concat(listing_id) FROM listing_blocks WHERE block IN {} "
                "GROUP BY block", out):
            out[block] = list(map(int, members.split(","))) if size <= limit else None
        return out

    def block_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (block, listing_id) row of listing_blocks, as two int64 arrays in block order, then listing order."""
        rows = self.connection.execute("SELECT count(*) FROM listing_blocks").fetchone()[0]
        table = np.fromiter(self.connection.execute("SELECT block, listing_id FROM listing_blocks "
                                                    "ORDER BY block, listing_id"),
                            dtype=np.dtype([("block", np.int64), ("listing", np.int64)]), count=rows)
        return table["block"], table["listing"]

    def listing_table(self) -> Iterator[tuple[int, str, str, str, str, str, int | None]]:
        """Every listing as listing_rows gives it, with its id first, in listing id order."""
        yield from self.connection.execute(
            "SELECT p.listing_id, p.store_id, p.product_id, p.text_key, p.tokens, p.facts, g.group_id "
            "FROM products p LEFT JOIN listing_groups g USING (listing_id) ORDER BY p.listing_id")

    def listings(self, listing_ids: Iterable[int]) -> dict[int, StoredListing]:
        """Normalised text and product group of the given listings, by listing id."""
        return {i: stored_listing(row) for i, row in self.listing_rows(listing_ids).items()}

    def listing_rows(self, listing_ids: Iterable[int]) -> dict[int, ListingRow]:
        """The rows behind `listings` (plain strings and numbers: cheap to keep, see stored_listing)."""
        return {row[0]: row[1:] for row in self._each(
            "SELECT p.listing_id, p.store_id, p.product_id, p.text_key, p.tokens, p.facts, g.group_id "
            "FROM products p LEFT JOIN listing_groups g USING (listing_id) WHERE p.listing_id IN {}",
            set(listing_ids))}

    def store_listings(self, store_id: str) -> list[StoredListing]:
        rows = self.connection.execute(
            "SELECT p.store_id, p.product_id, p.text_key, p.tokens, p.facts, g.group_id FROM products p "
            "LEFT JOIN listing_groups g USING (listing_id) WHERE p.store_id = ?", (store_id,))
        return [StoredListing(s, p, _product_text(k, t, f), g) for s, p, k, t, f, g in rows]

    def token_counts(self, tokens: Iterable[str]) -> dict[str, int]:
        """How many listings of the index have each title token (document frequency)."""
        return dict(self._each("SELECT token, listings FROM text_tokens WHERE token IN {}", set(tokens)))

    def listing_count(self) -> int:
        return int(self.meta("listings") or 0)

    def group_holders(self, groups: Iterable[int]) -> dict[int, set[str]]:
        """The stores listing each product group."""
        out: dict[int, set[str]] = {}
        for group, store_id in self._each("SELECT DISTINCT group_id, store_id FROM listing_groups "
                                          "WHERE group_id IN {}", set(groups)):
            out.setdefault(group, set()).add(store_id)
        return out

    def store_groups(self, store_ids: Iterable[str]) -> dict[str, set[int]]:
        """The distinct product groups each store lists."""
        out: dict[str, set[int]] = {s: set() for s in store_ids}
        for store_id, group in self._each("SELECT store_id, group_id FROM listing_groups WHERE store_id IN {}",
                                          out):
            out[store_id].add(group)
        return out

    def group_sizes(self, groups: Iterable[int]) -> dict[int, int]:
        """How many stores list each product group."""
        return dict(self._each("SELECT group_id, stores FROM groups WHERE group_id IN {}", set(groups)))

    def group_histogram(self) -> Counter[int]:
        """Number of product groups by how many stores list them (what the common-stock threshold is made of)."""
        return Counter({int(k): v for k, v in json.loads(self.meta("group_histogram") or "{}").items()})

    def group_counts(self, store_ids: Iterable[str]) -> dict[str, int]:
        """How many distinct product groups each store lists."""
        return dict(self._each("SELECT store_id, count(DISTINCT group_id) FROM listing_groups "
                               "WHERE store_id IN {} GROUP BY store_id", set(store_ids)))

    def stats(self, hub_cap: int) -> dict[str, Any]:
        """Counts for `assoc index stats`; hubs are keys held by more than `hub_cap` stores."""
        count = {table: self.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("stores", "signals", "products", "keys")}
        hubs = self.connection.execute("SELECT count(*) FROM keys WHERE stores > ?", (hub_cap,)).fetchone()[0]
        size = sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p))
        return {"stores": count["stores"], "signals": count["signals"], "listings": count["products"],
                "keys": count["keys"], "hubs": hubs, "hub_cap": hub_cap, "file_bytes": size,
                "catalog": self.meta("catalog"), "schema_version": SCHEMA_VERSION}

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows in a canonical order: two indexes with equal dumps hold the same data."""
        out = {}
        for table in _TABLES:
            rows = self.connection.execute(f"SELECT * FROM {table}").fetchall()
            if table == "meta":  # the write counter counts transactions, not data: an interrupted add has more
                rows = [row for row in rows if row[0] != "writes"]
            elif table == "signals":  # signal ids are row ids: equal data may be numbered differently
                rows = [row[1:] for row in rows]
            elif table == "signal_keys":
                rows = [row[:4] for row in rows]
            out[table] = sorted(rows, key=lambda r: tuple((x is None, "" if x is None else str(x)) for x in r))
        return out


def _shift_groups(cursor: sqlite3.Cursor, changes: dict[int, int]) -> None:
    """Change groups' store counts, keeping the histogram of counts in `meta` in step."""
    row = cursor.execute("SELECT value FROM meta WHERE key = 'group_histogram'").fetchone()
    histogram = Counter({int(k): v for k, v in json.loads(row[0] if row else "{}").items()})
    for group, change in changes.items():
        (old,) = cursor.execute("SELECT stores FROM groups WHERE group_id = ?", (group,)).fetchone()
        histogram[old] -= 1
        histogram[old + change] += 1
        cursor.execute("UPDATE groups SET stores = ? WHERE group_id = ?", (old + change, group))
    histogram = Counter({k: v for k, v in histogram.items() if k > 0 and v > 0})
    cursor.execute("INSERT INTO meta VALUES ('group_histogram', ?) ON CONFLICT (key) DO UPDATE SET "
                   "value = excluded.value", (json.dumps(histogram),))


def _json_list(values: Iterable[Any]) -> str:
    """Values (strings, integers, or tuples of them) as one JSON array: a statement's single parameter."""
    return json.dumps(list(values), ensure_ascii=False)


# (store_id, product_id, text key, tokens, facts, group_id or None), as IndexStore.listing_rows reads them.
ListingRow = tuple[str, str, str, str, str, int | None]


def stored_listing(row: ListingRow) -> StoredListing:
    store_id, product_id, key, tokens, facts, group = row
    return StoredListing(store_id, product_id, _product_text(key, tokens, facts), group)


def _product_text(key: str, tokens: str, facts: str) -> ProductText:
    return ProductText(tokens=frozenset(tokens.split(" ")) if tokens else frozenset(),
                       facts=frozenset(facts.split(" ")) if facts else frozenset(),
                       key=frozenset(key.split(" ")) if key else frozenset())


def _image_digest(root: Path, image: str) -> str | None:
    """SHA-256 of a local picture's bytes (None for URLs and unreadable files: nothing to hash)."""
    if _is_url(image):
        return None
    try:
        return hashlib.sha256((root / image).read_bytes()).hexdigest()
    except OSError:
        return None


def idf(listings: int, df: int) -> float:
    """The IDF weight assoc.text.token_weights gives a token held by `df` of `listings` listings."""
    return math.log1p(listings / df)
