"""Pre-flight check: one store (new, or indexed with new rows) against the persistent index, without a rescan.

The answer is meant to be the one a full `assoc scan` of the index plus the candidate would give
for the candidate's pairs (DESIGN_NOTES §9). What is exact and what is not:

Exact (same numbers as the scan, given the index's product groups):
- the candidate's keys, normalised by the same normaliser with its country, and every holder of
  those keys with their postings (times, raw values, normalised values), read from the index;
- rarity: each key's store count is the index's count, less the candidate's old rows, plus its
  new ones, so a check sees the hubs a scan sees;
- evidence: assoc.evidence.compare_pair on the same keys;
- value support of each shared key held by 3..hub_cap stores: every holder pair of the key is
  compared from the index (all the keys the two holders share, and their catalog overlap from
  the stored groups), then assoc.evidence.value_support (the share of corroborated holder pairs,
  and the groups they join);
- weights, probability and reasons: models.rules and the scan's own pair rule;
- hubs: the candidate's values a scan would list in hubs.csv, with the same counts and treatment.

Nearly exact: value support's second pass lets a value corroborate only if it was not doubtful
in the first pass, judged over all of its holder pairs. A check judges such a value by the holder
pairs it compares (those sharing a key with the candidate), so when a value the candidate does
not hold corroborates some holder pairs, it may be judged on fewer pairs than a scan judges it:
a hub note may count a corroborated holder pair more or less, and a score can move slightly
(measured: BENCHMARKS.md, 44 of 44 link decisions equal, scores within 2e-6). Judging those
values on all their holder pairs would mean comparing every holder pair of every value that
those stores share, per check.

Approximate (the catalog is global: one more store changes IDF weights, candidate search and
grouping of every listing):
- listings are compared by text only; the scan also matches pictures (assoc.images), so a
  listing that matches another by its picture alone is not found by a check;
- each new listing is compared, with exact assoc.text.text_similarity and the IDF weights the
  scan would use after adding it, to at most MAX_COMPARED indexed listings found through its
  blocks (its rarest title tokens within the same model codes and colours, as the scan's own
  candidate search), and joins the product group of most of its matches. The scan's
  neighbourhood rule may instead split such a listing off, and a listing that matches two groups
  may merge them in a scan (a group of 10 stores where the index has two of 6 and 5): then
  the common-stock count of a pair differs (measured: notes/check.md);
- groups of indexed stores are those of the last catalog refresh (`catalog_fresh` says whether
  stores were written since); given those groups, group store counts and the common-stock
  threshold are recomputed with the candidate in, as the scan computes them;
- pairs linked only through a cluster (`via:cluster`) and path scores are not computed: the
  check reports direct pairs (identifier evidence and the catalog rule).

Speed (notes/check.md). A process keeps what checks read again and again (review decisions, the
group histogram, key, token, group and store lookups, block members, listing rows; _Hot) for one
state of the index, named by its write counter (IndexStore.writes): any write, from any process,
starts a new state at the next check. prewarm() reads the listing tables into memory. Reads are
batched (one statement per kind of lookup), the candidate record is validated in memory by the
bundle reader's own validator, and text similarities reuse each text's norm. None of this changes
an answer: the tests compare checks with full scans, and the fast paths with the plain ones.
"""

from __future__ import annotations

import json
import math
import threading
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import combinations, repeat
from pathlib import Path
from typing import Any

import numpy as np

from models import rules

from .bundle import _add_children, _as_cells, _Collector, _Problems, read_bundle
from .catalog import COMMON_FACTOR, COMMON_MIN_STORES, TEXT_THRESHOLD, PairOverlap
from .decisions import ReviewState
from .errors import AssocError, BundleError
from .evidence import Evidence, ValueSupport, catalog_evidence, compare_pair, session_values, value_support
from .index import Hub, IndexKey, Posting, SignalIndex, StorePair, build_index, ignored_note
from .records import Bundle, Product, Store
from .scan import PairResult, RuleScorer, Scorer, _pair_result, scoring_hubs
from .settings import Settings
from .store import (
    IndexStore,
    ListingRow,
    StoredListing,
    StoreRecord,
    group_records,
    idf,
    listing_blocks,
    stored_listing,
    text_key,
)
from .text import FACT_KINDS, Normaliser, ProductText

# Labels of listings without a group, below any label _match gives a new group.
_UNGROUPED = -(1 << 40)
# A block of more listings than this is too common to search (assoc.text's max_df in spirit); a block
# of at most RARE_BLOCK_LISTINGS finds candidates on its own, others need two shared blocks (its rare_df).
MAX_BLOCK_LISTINGS = 200
RARE_BLOCK_LISTINGS = 30
# Indexed listings compared with each new listing at most: the group of most of its matches is chosen among them.
MAX_COMPARED = 12


class CandidateError(AssocError):
    """A candidate store cannot be read: not JSON, not one store object, or invalid rows."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a scan would say about one store's pairs, had it been scanned with the index."""

    store_id: str
    known: bool  # the store was in the index already: its new rows were added to the indexed ones
    pairs: tuple[PairResult, ...]  # reportable direct pairs, most probable first
    hubs: tuple[Hub, ...]  # the store's values shared by more stores than the hub cap: no evidence
    listings: int  # the store's listings after adding the new ones
    catalog_fresh: bool  # product groups include every indexed store (no write since the last refresh)

    @property
    def associated(self) -> bool:
        return any(p.linked for p in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "known": self.known,
            "associated": self.associated,
            "listings": self.listings,
            "catalog_fresh": self.catalog_fresh,
            "pairs": [{"store_id": p.store_b if p.store_a == self.store_id else p.store_a,
                       "score": round(p.score, 6), "operator_score": round(p.operator_score, 6),
                       "linked": p.linked, "catalog_overlap": p.catalog_overlap, "reasons": list(p.reasons),
                       "evidence": [{"code": e.code, "kind": e.kind, "level": e.level, "stores": e.stores,
                                     "weight": round(e.weight, 4), "gap_hours": e.gap_hours, "note": e.note}
                                    for e in p.evidence],
                       "model_contributions": [{"feature": name, "bits": round(bits, 4)}
                                               for name, bits in p.contributions]}
                      for p in self.pairs],
            "hubs": [{"kind": h.kind, "stores": h.stores, "note": h.note} for h in self.hubs],
        }


# ------------------------------------------------------------------------------------ candidates


def read_candidate(path: Path | str) -> Bundle:
    """A candidate: a bundle (directory or .jsonl), or a .json file holding one store as in stores.jsonl."""
    path = Path(path)
    if path.is_dir() or path.name.endswith(".jsonl"):
        return read_bundle(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CandidateError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CandidateError(f"{path}: not JSON ({exc}); give one store as a JSON object, as one line of "
                             "stores.jsonl, or a bundle") from exc
    return candidate_from_record(record, root=path.parent)


def candidate_from_record(record: Any, *, root: Path) -> Bundle:
    """One store object (the stores.jsonl form) -> a one-store Bundle, validated as a bundle is.

    Raises CandidateError for anything but one object, BundleError (every problem) for invalid rows.
    """
    if not isinstance(record, dict):
        raise CandidateError("a candidate must be one JSON object: a store as in one line of stores.jsonl, "
                             '{"store_id": ..., "signals": [...], "products": [...]}')
    # The bundle reader's own row validator (its _Collector), fed the record as its JSONL reader feeds it one
    # line, so every rule and message is the reader's: "candidate.jsonl line 1: signals[2]: empty value ...".
    # (This used to go through a temporary file and read_bundle; the result is the same without the file.)
    problems = _Problems()
    rows = _Collector(root, problems)
    name, line = _CANDIDATE_FILE, 1
    if _unencodable(record):
        problems.row(name, line, "bad encoding: the line is not valid UTF-8; re-export the file as UTF-8", "")
    elif rows.add_store(name, line, _as_cells(record)):
        _add_children(rows, problems, name, line, record)
    if problems.fatal or problems.rows:
        raise BundleError(problems.messages(), skippable=not problems.fatal)
    bundle = rows.bundle()
    return Bundle(root=root, stores=bundle.stores, signals=bundle.signals, products=bundle.products)


# The name a candidate record's problems are reported under, as if it were the one line of a stores.jsonl.
_CANDIDATE_FILE = "candidate.jsonl"


def _unencodable(value: Any) -> bool:
    """True when a string in the record has a lone surrogate: text no UTF-8 file (or index) can hold.
    (json.dumps keeps strings as they are with ensure_ascii off: one pass in C over the whole record.)"""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def records_of(bundle: Bundle) -> list[StoreRecord]:
    """The bundle's stores as records, in store order."""
    stores = list(bundle.stores.values())
    if len(stores) == 1 and all(row.store_id == stores[0].store_id for row in (*bundle.signals, *bundle.products)):
        store = stores[0]  # a candidate record: group_records would give the same record, but slower
        return [StoreRecord(store=store, root=_resolved(bundle.root), signals=tuple(bundle.signals),
                            products=tuple(bundle.products))]
    return [record for record, *_ in group_records(bundle)]


@lru_cache(maxsize=64)
def _resolved(root: Path) -> Path:
    """root.resolve() as group_records gives it, once per root rather than once per check (it stats every
    component of the path)."""
    return root.resolve()


def merge(old: StoreRecord, new: StoreRecord) -> StoreRecord:
    """An indexed store with new rows: fields the new record gives win, signals add up, a listing
    with a known product_id replaces the old one."""
    fields = [getattr(new.store, f) or getattr(old.store, f) for f in ("name", "platform", "country", "created_at")]
    replaced = {p.product_id for p in new.products}
    return StoreRecord(store=Store(old.store.store_id, *fields), root=new.root,
                       signals=old.signals + new.signals,
                       products=tuple(p for p in old.products if p.product_id not in replaced) + new.products)


# ----------------------------------------------------------------------------------------- check


def check_bundle(index: IndexStore, bundle: Bundle, settings: Settings, *,
                 scorer: Scorer | None = None) -> list[CheckResult]:
    """Check every store of `bundle` against the index, each on its own (not against each other)."""
    return [check_store(index, record, settings, scorer=scorer) for record in records_of(bundle)]


def check_store(index: IndexStore, candidate: StoreRecord, settings: Settings, *,
                scorer: Scorer | None = None) -> CheckResult:
    """Check one store: a new one, or an indexed one with the candidate's rows added.

    Pairs are scored by `scorer` (the rule table by default); the index's reviewer decisions
    (assoc.decisions) act as in a scan: dismissed and confirmed pairs, shared-infrastructure hubs."""
    settings.validate()
    with index.snapshot():
        store_id = candidate.store.store_id
        if index.has_store(store_id):
            old = index.store_record(store_id)
            return _Check(index, merge(old, candidate), candidate.products, True, settings, scorer=scorer).run()
        return _Check(index, candidate, candidate.products, False, settings, scorer=scorer).run()


def links(index: IndexStore, store_id: str, settings: Settings, *, scorer: Scorer | None = None) -> CheckResult:
    """An indexed store's direct pairs, as a scan of the index reports them. UnknownStoreError if absent."""
    settings.validate()
    with index.snapshot():
        return _Check(index, index.store_record(store_id), (), True, settings, scorer=scorer).run()


def put_store(index: IndexStore, record: StoreRecord, settings: Settings) -> bool:
    """Write one store (replacing its rows) and place its listings into product groups.

    Identifier data is exact at once. Listings join groups as a check would place them (see the
    module docstring); the index is marked stale until `assoc index add` refreshes the catalog.
    Returns False when the store was there with the same content already.
    """
    if not index.replace_store(record):
        return False
    with index.snapshot():
        placement = _Check(index, record, record.products, False, settings, exclude_self=True).place_listings()
    index.place_listings(record.store.store_id, placement.groups, placement.blocks, placement.overlaps)
    return True


# ------------------------------------------------------------------------- state kept across checks


class _Hot:
    """What checks read from one index again and again, kept in memory across checks and threads of a process.

    It belongs to one state of the index: the write counter (IndexStore.writes) read inside the check's
    snapshot. A check whose snapshot shows another count gets (and installs) a new one, so a check never
    mixes states, and a write anywhere (this process, another, `assoc index add`, a review decision) is
    seen by the next check. Lazily filled maps are bounded: past MAX_ENTRIES they are emptied. They hold
    strings, numbers and tuples of them only, which the garbage collector leaves alone (a cache of
    containers would make every full collection walk it: pauses of tens of ms).
    """

    MAX_ENTRIES = 1_000_000

    def __init__(self, index: IndexStore, writes: int):
        self.writes = writes
        self.review = ReviewState.load(index.connection)
        self.histogram = index.group_histogram()
        self.listings = index.listing_count()
        self.catalog_fresh = index.meta("catalog") == "fresh"
        self._key_counts: dict[IndexKey, tuple[int, int, str]] = {}
        self._token_df: dict[str, int] = {}
        self._texts: dict[int, ListingRow | None] = {}
        self._group_counts: dict[str, int] = {}
        self._group_sizes: dict[int, int | None] = {}
        self._group_holders: dict[int, tuple[str, ...] | None] = {}
        self._store_groups: dict[str, tuple[int, ...]] = {}
        self._store_keys: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self._blocks: dict[int, tuple[int, ...] | None] = {}
        self.memory: _Memory | None = None  # set by prewarm(): the listing tables of this state, in memory
        self._complete: set[int] = set()  # ids of the maps load_all filled: what they lack, the index lacks

    def load_all(self, index: IndexStore) -> None:
        """Fill the maps of indexed stores, product groups and title tokens for all of them (prewarm): a check
        then reads none of them from the file, whichever stores it meets."""
        stores = [s for (s,) in index.connection.execute("SELECT store_id FROM stores")]
        groups = [g for (g,) in index.connection.execute("SELECT group_id FROM groups")]
        tokens = [t for (t,) in index.connection.execute("SELECT token FROM text_tokens")]
        for fill, wanted, cache in [
                (self.token_df, tokens, self._token_df), (self.group_counts, stores, self._group_counts),
                (self.store_groups, stores, self._store_groups), (self.store_keys, stores, self._store_keys),
                (self.group_sizes, groups, self._group_sizes), (self.group_holders, groups, self._group_holders)]:
            fill(index, wanted)
            if len(cache) >= len(wanted):  # holds every one: not emptied by the MAX_ENTRIES bound meanwhile
                self._complete.add(id(cache))

    def _fill(self, cache: dict[Any, Any], wanted: Sequence[Any], read: Any, absent: Any) -> dict[Any, Any]:
        """`cache` holding every key of `wanted`, `absent` for those the index lacks. A map load_all filled
        is returned as it is (read it with .get(key, absent)): what it lacks, the index lacks, and recording
        those keys would only grow it towards MAX_ENTRIES, where it is emptied and stops being complete."""
        if id(cache) in self._complete:
            return cache
        missing = [k for k in wanted if k not in cache]
        if missing:
            if len(cache) + len(missing) > self.MAX_ENTRIES:
                cache.clear()      # and the wanted keys it held are read again with the rest
                missing = list(dict.fromkeys(wanted))
            found = read(missing)
            for key in missing:
                cache[key] = found.get(key, absent)
        return cache

    def key_counts(self, index: IndexStore, keys: Iterable[IndexKey]) -> dict[IndexKey, tuple[int, int, str]]:
        """(stores, weak stores, note) of each key; (0, 0, '') for keys the index does not hold."""
        keys = list(keys)
        cache = self._fill(self._key_counts, keys, index.key_counts, (0, 0, ""))
        return {k: cache.get(k, (0, 0, "")) for k in keys}

    def token_df(self, index: IndexStore, tokens: Iterable[str]) -> dict[str, int]:
        """How many indexed listings have each title token (0 for none)."""
        tokens = list(tokens)
        cache = self._fill(self._token_df, tokens, index.token_counts, 0)
        return {t: cache.get(t, 0) for t in tokens}

    def block_members(self, index: IndexStore, blocks: Iterable[int]) -> dict[int, frozenset[int] | None]:
        """The listings of each block; None for a block too common to search (IndexStore.block_members)."""
        blocks = list(blocks)
        if self.memory is not None:
            return self.memory.block_members(blocks)

        def read(missing: list[int]) -> dict[int, tuple[int, ...] | None]:
            return {b: None if ids is None else tuple(ids)
                    for b, ids in index.block_members(missing, limit=MAX_BLOCK_LISTINGS).items()}

        cache = self._fill(self._blocks, blocks, read, ())
        return {b: None if cache[b] is None else frozenset(cache[b]) for b in blocks}

    def texts(self, index: IndexStore, listing_ids: Iterable[int]) -> dict[int, StoredListing]:
        """Indexed listings' normalised texts and groups."""
        ids = list(listing_ids)
        if self.memory is not None:
            return {i: stored_listing(row) for i, row in self.memory.listing_rows(ids).items()}
        cache = self._fill(self._texts, ids, index.listing_rows, None)
        return {i: stored_listing(cache[i]) for i in ids if cache[i] is not None}

    def group_counts(self, index: IndexStore, store_ids: Iterable[str]) -> dict[str, int]:
        """How many distinct product groups each store lists."""
        ids = list(store_ids)
        cache = self._fill(self._group_counts, ids, index.group_counts, 0)
        return {s: cache.get(s, 0) for s in ids}

    def group_sizes(self, index: IndexStore, groups: Iterable[int]) -> dict[int, int]:
        """How many stores list each product group (groups the index holds; a new dict, free to change)."""
        groups = list(groups)
        cache = self._fill(self._group_sizes, groups, index.group_sizes, None)
        return {g: size for g in groups if (size := cache.get(g)) is not None}

    def group_holders(self, index: IndexStore, groups: Iterable[int]) -> dict[int, set[str]]:
        """The stores listing each product group (groups with at least one)."""
        groups = list(groups)
        cache = self._fill(self._group_holders, groups, lambda missing: {
            g: tuple(sorted(stores)) for g, stores in index.group_holders(missing).items()}, None)
        return {g: set(stores) for g in groups if (stores := cache.get(g)) is not None}

    def store_groups(self, index: IndexStore, store_ids: Iterable[str]) -> dict[str, set[int]]:
        """The distinct product groups each store lists."""
        ids = list(store_ids)
        cache = self._fill(self._store_groups, ids, lambda missing: {
            s: tuple(sorted(groups)) for s, groups in index.store_groups(missing).items()}, ())
        return {s: set(cache.get(s, ())) for s in ids}

    def store_keys(self, index: IndexStore, store_ids: Iterable[str]) -> dict[str, dict[IndexKey, bool]]:
        """Every key each store holds, and whether it holds it as a weak value."""
        ids = list(store_ids)
        cache = self._fill(self._store_keys, ids, lambda missing: {
            s: tuple((kind, value, weak) for (kind, value), weak in held.items())
            for s, held in index.store_keys(missing).items()}, ())
        return {s: {(kind, value): weak for kind, value, weak in cache.get(s, ())} for s in ids}


class _Memory:
    """The listing blocks and listing rows of one state of an index, in memory: what a check's catalog part
    looks up (about 130 MB for 550,000 listings; none of it walked by the garbage collector)."""

    def __init__(self, index: IndexStore):  # inside a snapshot
        blocks, self.members = index.block_table()
        self.blocks, starts = np.unique(blocks, return_index=True)
        self.starts = np.append(starts, len(blocks))
        del blocks
        # Compact arrays while reading: half a million rows as Python lists would take as much again.
        ids, store_of, groups, offsets = array("q"), array("l"), array("q"), array("q", [0])
        stores: dict[str, int] = {}
        text = bytearray()
        for listing_id, store_id, product_id, key, tokens, facts, group in index.listing_table():
            ids.append(listing_id)
            store_of.append(stores.setdefault(store_id, len(stores)))
            groups.append(_NO_GROUP if group is None else group)
            # Normalised text never holds \x1f (tokens are word characters); a product id may: it goes last.
            text += f"{key}\x1f{tokens}\x1f{facts}\x1f{product_id}".encode()
            offsets.append(len(text))
        self.ids = np.frombuffer(ids, dtype=np.int64)
        self.store_ids = list(stores)
        self.store_of = np.array(store_of, dtype=np.int32)
        self.groups = np.frombuffer(groups, dtype=np.int64)
        self.offsets = np.frombuffer(offsets, dtype=np.int64)
        self.text = text

    def block_members(self, blocks: list[int]) -> dict[int, frozenset[int] | None]:
        """As _Hot.block_members reads them from the index."""
        if not blocks or not len(self.blocks):
            return dict.fromkeys(blocks, frozenset())
        wanted = np.array(blocks, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.blocks, wanted), len(self.blocks) - 1)
        found = self.blocks[at] == wanted
        starts, ends = self.starts[at].tolist(), self.starts[at + 1].tolist()
        members = self.members
        out: dict[int, frozenset[int] | None] = {}
        for block, present, start, end in zip(blocks, found.tolist(), starts, ends, strict=True):
            if not present:
                out[block] = frozenset()
            elif end - start > MAX_BLOCK_LISTINGS:
                out[block] = None
            else:
                out[block] = frozenset(members[start:end].tolist())
        return out

    def listing_rows(self, listing_ids: list[int]) -> dict[int, ListingRow]:
        """As IndexStore.listing_rows reads them."""
        if not listing_ids or not len(self.ids):
            return {}
        wanted = np.array(listing_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        columns = (listing_ids, (self.ids[at] == wanted).tolist(), self.offsets[at].tolist(),
                   self.offsets[at + 1].tolist(), self.groups[at].tolist(), self.store_of[at].tolist())
        text, store_ids = self.text, self.store_ids
        out: dict[int, ListingRow] = {}
        for listing_id, present, start, end, group, store in zip(*columns, strict=True):
            if present:
                key, tokens, facts, product_id = text[start:end].decode().split("\x1f", 3)
                out[listing_id] = (store_ids[store], product_id, key, tokens, facts,
                                   None if group == _NO_GROUP else group)
        return out


# Listings in no product group (written since the last catalog refresh) in _Memory.groups.
_NO_GROUP = np.iinfo(np.int64).min
# Indexes of more listings than this are not read into memory by prewarm (memory grows with the index).
PREWARM_MAX_LISTINGS = 5_000_000


def prewarm(index: IndexStore) -> bool:
    """Read the index's listing blocks and listing rows into memory for the checks of this process, so that
    their catalog part looks listings up in memory rather than in the file, and every indexed store's keys
    and groups, every group's stores and every title token's frequency (_Hot.load_all), so that a check
    meeting stores for the first time reads none of them from the file (for 20,000 stores: about 10 s of
    CPU, and the server holds 510 MB after it, 250 MB of them the maps; notes/check.md). It serves the index
    as it is now: after the next write, checks read the file again until prewarm is called again. A
    process that serves checks calls it at start (assoc serve does, and again
    whenever the index has been written and then left alone for a while). Returns whether it loaded
    anything: False when the memory is current already, or the index holds more than PREWARM_MAX_LISTINGS."""
    with index.snapshot():
        hot = _hot(index)
        if hot.memory is not None or hot.listings > PREWARM_MAX_LISTINGS:
            return False
        hot.memory = _Memory(index)
        hot.load_all(index)
    return True


def prewarmed(index: IndexStore) -> bool:
    """Whether checks of the index as it is now use memory that prewarm loaded (False once it is written)."""
    with index.snapshot():
        hot = _HOT.get(index.identity)
        return hot is not None and hot.writes == index.writes() and hot.memory is not None


_HOT: dict[tuple[Any, ...], _Hot] = {}
_HOT_LOCK = threading.Lock()


def _hot(index: IndexStore) -> _Hot:
    """The kept state of `index` as the current snapshot sees it (call inside index.snapshot())."""
    writes = index.writes()
    hot = _HOT.get(index.identity)
    if hot is not None and hot.writes == writes:
        return hot
    hot = _Hot(index, writes)
    with _HOT_LOCK:
        current = _HOT.get(index.identity)
        if current is None or current.writes < writes:  # a check on an older snapshot does not evict a newer state
            _HOT[index.identity] = hot
    return hot


class _Texts:
    """One Normaliser for every check of the process: it learns each distinct raw token once (assoc.text).
    Its output does not depend on what it learnt before, only its speed does. Bounded: replaced past
    MAX_TOKENS learnt tokens. Guarded by a lock: its tables are filled as it goes."""

    MAX_TOKENS = 2_000_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._normaliser = Normaliser()

    def normalise(self, products: Sequence[Product]) -> list[ProductText]:
        with self._lock:
            if len(self._normaliser.vocabulary) > self.MAX_TOKENS:
                self._normaliser = Normaliser()
            return [self._normaliser.normalise(p.title, p.description) for p in products]


_TEXTS = _Texts()


@dataclass(slots=True)
class _Placement:
    groups: dict[str, int]  # product_id -> indexed group (>= 0) or a new one (< 0, equal for duplicates)
    blocks: dict[str, list[int]]  # product_id -> where a later check finds the listing
    overlaps: dict[StorePair, PairOverlap]


class _Check:
    """One candidate's check; holds the keys, postings and counts read so far."""

    def __init__(self, index: IndexStore, record: StoreRecord, fresh: Sequence[Product], known: bool,
                 settings: Settings, *, exclude_self: bool = False, scorer: Scorer | None = None):
        self.index = index
        self.hot = _hot(index)  # inside the caller's snapshot: the state this check reads
        self.scorer = scorer or RuleScorer()
        self.review = self.hot.review
        self.record = record
        self.store_id = record.store.store_id
        self.fresh = fresh  # listings not in the index yet
        self.known = known
        self.settings = settings
        self.exclude_self = exclude_self  # the store's rows are written already but are not grouped yet
        own = build_index(Bundle(root=record.root, stores={self.store_id: record.store},
                                 signals=list(record.signals)))
        self.own = {key: holders[self.store_id] for key, holders in own.postings.items()}
        self.own_weak = own.weak_notes
        self.old_keys: dict[IndexKey, bool] = self.hot.store_keys(index, [self.store_id])[self.store_id] \
            if known else {}
        self.counts: dict[IndexKey, tuple[int, int, str]] = {}
        # Set by place_listings: the common-stock threshold, and store counts of the groups the store joins or leaves.
        self.common_threshold = COMMON_MIN_STORES
        self.group_sizes: dict[int, int] = {}
        self.postings: dict[IndexKey, dict[str, Posting]] = {}
        self.weak_notes: dict[IndexKey, str] = {}

    # ------------------------------------------------------------------------- keys and postings

    def _count(self, keys: Iterable[IndexKey]) -> None:
        self.counts.update(self.hot.key_counts(self.index, [k for k in keys if k not in self.counts]))

    def holders_after(self, key: IndexKey) -> int:
        """Stores holding `key` once the candidate's rows replace its indexed ones."""
        stores = self.counts[key][0]
        return stores - (key in self.old_keys) + (key in self.own)

    def _usable(self, key: IndexKey) -> bool:
        return 2 <= self.holders_after(key) <= self.settings.hub_cap and key not in self.review.shared_keys

    def _load(self, keys: Iterable[IndexKey]) -> None:
        missing = [k for k in keys if k not in self.postings]
        for key, holders in self.index.postings(missing, exclude=self.store_id).items():
            if key in self.own:
                holders[self.store_id] = self.own[key]
            self.postings[key] = holders
            _, weak_stores, note = self.counts[key]
            weak_after = weak_stores - int(self.old_keys.get(key, False)) + int(key in self.own_weak)
            if weak_after > 0:
                self.weak_notes[key] = self.own_weak.get(key) or note

    def _view(self) -> SignalIndex:
        return SignalIndex(postings=self.postings, weak_notes=self.weak_notes, dropped=0, signal_count=0)

    # ------------------------------------------------------------------------------------- run

    def run(self) -> CheckResult:
        self._count(self.own)
        usable = sorted(k for k in self.own if self._usable(k))
        self._load(usable)
        shared: dict[StorePair, list[IndexKey]] = defaultdict(list)
        for key in usable:  # sorted, as SignalIndex.candidate_pairs lists a pair's keys
            for other in self.postings[key]:
                if other != self.store_id:
                    shared[_pair(self.store_id, other)].append(key)
        placement = self.place_listings()
        overlaps = placement.overlaps
        view = self._view()
        compared: dict[StorePair, list[Evidence]] = {}
        for pair in sorted(set(shared) | set(overlaps)):
            evidence = compare_pair(pair, shared.get(pair, []), view)
            if pair in overlaps:
                evidence += catalog_evidence(overlaps[pair])
            compared[pair] = evidence
        sharing = {**self._holder_pairs(usable), **compared}
        support = value_support(sharing, rules.base_weight)
        sessions = session_values(view, rules.SESSION_KINDS)
        results = []
        for pair, evidence in compared.items():
            weighted = rules.weigh(evidence, support.for_pair(pair, evidence), sessions)
            overlap = overlaps[pair].overlap if pair in overlaps else None
            probability = self.scorer.probability(weighted)
            verdict = self.review.apply(pair, weighted, probability >= self.settings.link_threshold)
            result = _pair_result(pair, probability, weighted, overlap, None, {}, self.settings, verdict)
            if result is not None:
                results.append(replace(result, contributions=tuple(self.scorer.contributions(weighted))))
        results.sort(key=lambda p: (-p.score, p.store_a, p.store_b))
        return CheckResult(store_id=self.store_id, known=self.known, pairs=tuple(results),
                           hubs=tuple(self._hubs(sharing, support, sessions)),
                           listings=len(self.record.products), catalog_fresh=self.hot.catalog_fresh)

    def _hubs(self, sharing: dict[StorePair, list[Evidence]], support: ValueSupport,
              sessions: frozenset[IndexKey]) -> list[Hub]:
        """The candidate's values that a scan with it would list in hubs.csv, with the scan's notes and order:
        ignored ones (over the cap, or marked by a reviewer), then those the scoring weighs down."""
        cap, marked = self.settings.hub_cap, self.review.shared_keys
        ignored = sorted((Hub(k[0], k[1], self.holders_after(k), ignored_note(
            over_cap=cap if self.holders_after(k) > cap else None, review=marked.get(k, ""),
            weak=self.own_weak.get(k) or self.counts[k][2])) for k in self.own
            if self.holders_after(k) > cap or k in marked), key=lambda h: (-h.stores, h.kind, h.value))
        return ignored + [h for h in scoring_hubs(sharing, support, sessions) if (h.kind, h.value) in self.own]

    def _holder_pairs(self, usable: list[IndexKey]) -> dict[StorePair, list[Evidence]]:
        """Evidence of every pair of indexed stores that share one of the candidate's keys held by 3+ stores:
        value support of that key is measured over all its holder pairs, these included."""
        groups = [sorted(s for s in self.postings[k] if s != self.store_id)
                  for k in usable if self.holders_after(k) >= 3]
        pairs = {pair for members in groups for pair in combinations(members, 2)}
        if not pairs:
            return {}
        keys_of = self.hot.store_keys(self.index, sorted({s for pair in pairs for s in pair}))
        common = {pair: set(keys_of[pair[0]]) & set(keys_of[pair[1]]) for pair in pairs}
        self._count(set().union(*common.values()))
        self._load(sorted({k for keys in common.values() for k in keys if self._usable(k)}))
        view = self._view()
        # Their catalog overlaps as a scan with the candidate would count them: which shared groups are
        # common stock depends on the candidate (it may join a group, and it moves the threshold).
        groups_of = self.hot.store_groups(self.index, sorted({s for pair in pairs for s in pair}))
        sizes = {**self.hot.group_sizes(self.index, set().union(*groups_of.values())), **self.group_sizes}
        out = {}
        for pair in sorted(pairs):
            evidence = compare_pair(pair, sorted(k for k in common[pair] if self._usable(k)), view)
            both = groups_of[pair[0]] & groups_of[pair[1]]
            overlap = _overlap(pair[0], pair[1], len(groups_of[pair[0]]), len(groups_of[pair[1]]), len(both),
                               sum(1 for g in both if sizes[g] > self.common_threshold),
                               self.settings.catalog_report_floor)
            if overlap is not None:
                evidence += catalog_evidence(overlap)
            out[pair] = evidence
        return out

    # ----------------------------------------------------------------------------------- catalog

    def place_listings(self) -> _Placement:
        """Product groups of the new listings, and the store's catalog overlap with every store sharing one.

        Also settles, for the rest of the check, how many stores list each group the store leaves or joins
        and the common-stock threshold once it has: both are what a scan with the store would compute.
        """
        indexed = [] if self.exclude_self or not self.known else self.index.store_listings(self.store_id)
        fresh_ids = {p.product_id for p in self.fresh}
        kept = [listing for listing in indexed if listing.product_id not in fresh_ids]
        replaced = [listing for listing in indexed if listing.product_id in fresh_ids]
        placed, blocks = self._match(replaced)
        own = set(placed.values())
        for number, listing in enumerate(kept):
            # a listing in no group (written after the last refresh and never placed) is a product of its own
            own.add(listing.group_id if listing.group_id is not None else _UNGROUPED - number)
        before = {listing.group_id for listing in indexed if listing.group_id is not None}
        after = {g for g in own if g >= 0}
        sizes = self.hot.group_sizes(self.index, before | after)
        histogram = Counter(self.hot.histogram)
        for group, change in [(g, 1) for g in after - before] + [(g, -1) for g in before - after]:
            histogram[sizes[group]] -= 1
            sizes[group] += change
            histogram[sizes[group]] += 1
        histogram[1] += sum(1 for g in own if g < 0)  # the store's products that no other store lists
        self.common_threshold = _common_threshold(histogram)
        self.group_sizes = sizes
        shared: Counter[str] = Counter()
        common: Counter[str] = Counter()
        for group, stores in self.hot.group_holders(self.index, sorted(after)).items():
            is_common = sizes[group] > self.common_threshold
            for other in stores - {self.store_id}:
                shared[other] += 1
                common[other] += is_common
        size = len(own)
        store_sizes = self.hot.group_counts(self.index, shared)
        overlaps = {}
        for other, count in shared.items():
            overlap = _overlap(self.store_id, other, size, store_sizes[other], count, common[other],
                               self.settings.catalog_report_floor)
            if overlap is not None:
                overlaps[(overlap.store_a, overlap.store_b)] = overlap
        return _Placement(groups=placed, blocks=blocks, overlaps=overlaps)

    def _match(self, replaced: list[StoredListing]) -> tuple[dict[str, int], dict[str, list[int]]]:
        """product_id -> its indexed product group (>= 0) or a new group (< 0, one per product of the store);
        and product_id -> the listing's blocks."""
        if not self.fresh:
            return {}, {}
        if not self.settings.use_text:  # images are not compared yet (assoc.catalog compares text only)
            return {p.product_id: -1 - n for n, p in enumerate(self.fresh)}, {p.product_id: [] for p in self.fresh}
        texts = _TEXTS.normalise(self.fresh)
        indexed_df = self.hot.token_df(self.index, {t for text in texts for t in text.tokens})
        blocks = [listing_blocks(text_key(text), text.tokens, indexed_df.__getitem__) for text in texts]
        members = self.hot.block_members(self.index, {b for listed in blocks for b in listed})
        found = [_compared([members[b] for b in listed]) for listed in blocks]
        skip = {listing.product_id for listing in replaced}
        votes, best, norms = self._votes(texts, replaced, found, skip)
        chosen: list[int | None] = [
            max(tally, key=lambda g, t=tally, b=top: (t[g], b[g], -g)) if tally else None
            for tally, top in zip(votes, best, strict=True)]
        # New listings that match each other (a store listing one product twice) form one group.
        parent = list(range(len(texts)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        # Only listings with the same key and a title token in common can match (else the score is 0):
        # the pairs are taken in the order of combinations(), so the components (and their roots) are the same.
        holding: dict[tuple[frozenset[str], str], list[int]] = defaultdict(list)
        for i, text in enumerate(texts):
            for token in text.tokens:
                holding[(text.key, token)].append(i)
        pairs = sorted({pair for listed in holding.values() if len(listed) > 1 for pair in combinations(listed, 2)})
        for i, j in pairs:
            if norms.match(texts[i], texts[j]) is not None:
                parent[find(i)] = find(j)
        component_group: dict[int, int] = {}
        for i, group in enumerate(chosen):
            if group is not None:
                component_group.setdefault(find(i), group)
        out: dict[str, int] = {}
        for i, product in enumerate(self.fresh):
            group = chosen[i]
            if group is None:
                group = component_group.get(find(i), -1 - find(i))
            out[product.product_id] = group
        return out, {p.product_id: listed for p, listed in zip(self.fresh, blocks, strict=True)}

    def _votes(self, texts: list[ProductText], replaced: list[StoredListing], found: list[list[int]],
               skip: set[str]) -> tuple[list[Counter[int]], list[dict[int, float]], _Norms]:
        """For each new listing, how many of its compared listings of each group match it, and the best score
        in each group; and the similarity under the IDF weights, for matching the new listings with each other."""
        candidates = self.hot.texts(self.index, {i for ids in found for i in ids})
        norms = _Norms(self._weights(texts, replaced, candidates.values()))
        votes: list[Counter[int]] = []
        best: list[dict[int, float]] = []
        for text, ids in zip(texts, found, strict=True):
            tally: Counter[int] = Counter()
            top: dict[int, float] = {}
            for listing_id in ids:
                listing = candidates[listing_id]
                if listing.group_id is None or (listing.store_id == self.store_id
                                                and (self.exclude_self or listing.product_id in skip)):
                    continue
                score = norms.match(text, listing.text)
                if score is not None:
                    tally[listing.group_id] += 1
                    top[listing.group_id] = max(top.get(listing.group_id, 0.0), score)
            votes.append(tally)
            best.append(top)
        return votes, best, norms

    def _weights(self, texts: list[ProductText], replaced: list[StoredListing],
                 compared: Iterable[StoredListing]) -> dict[str, float]:
        """IDF weights as the scan computes them over every listing, the new ones in, the replaced ones out."""
        delta: Counter[str] = Counter()
        for text in texts:
            delta.update(text.tokens)
        for listing in replaced:
            delta.subtract(listing.text.tokens)
        tokens = set(delta)
        for listing in compared:
            tokens |= listing.text.tokens
        counts = self.hot.token_df(self.index, tokens)
        listings = self.hot.listings - (0 if self.exclude_self else len(replaced) - len(texts))
        if self.exclude_self:
            return {t: idf(listings, n) for t, n in counts.items() if n > 0}
        return {t: idf(listings, n + delta[t]) for t, n in counts.items() if n + delta[t] > 0}


def _compared(blocks: list[frozenset[int] | None]) -> list[int]:
    """The indexed listings one new listing is compared with, given the members of its blocks (None: a block
    too common to search): as the scan's candidate search, those sharing two blocks with it or one rare block;
    of those, the MAX_COMPARED sharing most blocks (then the lowest ids), since a listing's duplicates share
    its rarest words. Counted with set operations: which listings are in k blocks or more, for k = 2, 3, ...
    (k > 2 only when more than MAX_COMPARED listings qualify)."""
    sets = [ids for ids in blocks if ids]
    rare = frozenset().union(*(ids for ids in sets if len(ids) <= RARE_BLOCK_LISTINGS))

    def in_blocks(k: int) -> frozenset[int]:  # the listings in k blocks or more
        return frozenset().union(*(frozenset.intersection(*chosen) for chosen in combinations(sets, k)))

    shared = in_blocks(2) if len(sets) > 1 else frozenset()
    candidates = rare | shared
    if len(candidates) <= MAX_COMPARED:
        return sorted(candidates)
    at_least = [shared]  # at_least[k - 2]: the listings in k blocks or more
    for k in range(3, len(sets) + 1):
        found = in_blocks(k)
        if not found:
            break
        at_least.append(found)
    # Most shared blocks first: the listings in exactly k blocks, for k from the largest down; then rare ones.
    out: list[int] = []
    bands = [*(at_least[k] - (at_least[k + 1] if k + 1 < len(at_least) else frozenset())
               for k in reversed(range(len(at_least)))), rare - shared]
    for band in bands:
        out += sorted(band)[:MAX_COMPARED - len(out)]
        if len(out) >= MAX_COMPARED:
            break
    return out


class _Norms:
    """assoc.text.text_similarity under fixed weights, with the squared weights, each text's weighted norm and
    its facts by kind computed once rather than per comparison. The same operations on the same floats in
    the same order: the same scores, bit for bit (tests/test_check.py compares them)."""

    def __init__(self, weights: Mapping[str, float]):
        self.squares = {t: w ** 2 for t, w in weights.items()}
        self._norms: dict[int, float] = {}  # id(text) -> its weighted norm (squared)
        self._facts: dict[int, dict[str, set[str]]] = {}  # id(text) -> its facts by kind

    def _norm(self, text: ProductText) -> float:
        norm = self._norms.get(id(text))
        if norm is None:
            norm = self._norms[id(text)] = sum(map(self.squares.get, text.tokens, repeat(0.0)))
        return norm

    def _conflict(self, a: ProductText, b: ProductText) -> bool:
        if not a.facts or not b.facts:
            return False
        facts = self._facts
        facts_a = facts.get(id(a)) or facts.setdefault(id(a), _facts_by_kind(a.facts))
        facts_b = facts.get(id(b)) or facts.setdefault(id(b), _facts_by_kind(b.facts))
        return _facts_conflict(facts_a, facts_b)

    def _cosine(self, a: ProductText, b: ProductText) -> float:
        shared = sum(map(self.squares.get, a.tokens & b.tokens, repeat(0.0)))
        norm = math.sqrt(self._norm(a) * self._norm(b))
        return min(1.0, shared / norm if norm else 0.0)

    def match(self, a: ProductText, b: ProductText) -> float | None:
        """text_similarity(a, b) when it reaches TEXT_THRESHOLD, else None: the facts, which make the score 0
        when they conflict, are looked at only when the cosine alone reaches the threshold."""
        if a.key != b.key:
            return None
        score = self._cosine(a, b)
        return None if score < TEXT_THRESHOLD or self._conflict(a, b) else score

    def similarity(self, a: ProductText, b: ProductText) -> float:
        if a.key != b.key or self._conflict(a, b):  # assoc.text.conflicts, then _weighted_cosine
            return 0.0
        return self._cosine(a, b)


def _facts_by_kind(facts: Iterable[str]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for fact in facts:
        kinds.setdefault(fact[0], set()).add(fact)
    return kinds


def _facts_conflict(a: Mapping[str, set[str]], b: Mapping[str, set[str]]) -> bool:
    """assoc.text.conflicts past the keys: a kind of fact on both sides where neither side's values hold the other's."""
    for kind in FACT_KINDS:
        sa, sb = a.get(kind), b.get(kind)
        if sa and sb and not (sa <= sb or sb <= sa):
            return True
    return False


def _common_threshold(histogram: Mapping[int, int]) -> int:
    """assoc.catalog.common_store_count of the groups' store counts, from their histogram (count -> groups):
    COMMON_FACTOR times the median count of the groups listed by two stores or more, at least COMMON_MIN_STORES."""
    shared = sorted((size, n) for size, n in histogram.items() if size >= 2 and n > 0)
    total = sum(n for _, n in shared)
    if not total:
        typical = 2.0
    else:
        def at(position: int) -> int:  # the count at this position of the sorted list of counts
            for size, n in shared:
                if position < n:
                    return size
                position -= n
            raise AssertionError("position past the end")

        middle = total // 2
        typical = float(at(middle)) if total % 2 else (at(middle - 1) + at(middle)) / 2
    return max(COMMON_MIN_STORES, math.ceil(COMMON_FACTOR * typical))


def _overlap(store: str, other: str, size: int, other_size: int, shared: int, common: int,
             floor: float) -> PairOverlap | None:
    """The catalog overlap of two stores (in either order) as assoc.catalog measures it; None below `floor`."""
    if not shared or not size or not other_size:
        return None
    overlap = shared / min(size, other_size)
    if overlap < floor:
        return None
    if store > other:
        store, other, size, other_size = other, store, other_size, size
    return PairOverlap(store_a=store, store_b=other, overlap=overlap, share_a=shared / size,
                       share_b=shared / other_size, shared_groups=shared, common_groups=common)


def _pair(a: str, b: str) -> StorePair:
    return (a, b) if a < b else (b, a)
