"""Reviewer decisions: stored in the index file, applied by later scans (DESIGN_NOTES §8).

A reviewer decides about a pair of stores, or about a cluster of the latest `assoc scan --db`:

    confirmed              one operator: the pair stays linked whatever the evidence says later
                           (score at least the link threshold, reason `review:confirmed`).
    dismissed              not one operator: the pair stays unlinked (score 0, reason `review:dismissed`)
                           until evidence of a kind the pair did not share at decision time appears; then
                           the evidence decides again, as if there had been no decision, and the pair
                           carries `review:reopened`.
    shared-infrastructure  what links the pair is infrastructure many sellers use: every value that was
                           evidence between the two stores at decision time becomes a hub for good (no
                           candidate key, listed in hubs.csv with the decision). Catalog evidence is not
                           a value and is left alone.

A cluster decision is the same decision about every pair of its members, each with the evidence
that pair had at decision time. Confirming a cluster keeps all its members together; dismissing it
keeps apart every member pair that shared evidence (a pair that shared nothing has nothing to hold
back: any evidence it gets later is new); marking it shared infrastructure makes a hub of every
value that was evidence between any two members.

The latest decision about a pair wins: a dismissed pair confirmed later is confirmed, and a
shared-infrastructure decision about a confirmed or dismissed pair takes that decision back (the
marked values stay hubs). A dismissed pair can still end up in one cluster through other stores
(A-C and C-B linked): the contract writes every pair of a cluster as linked, so it is written with
`via:cluster` and `review:dismissed`, a conflict for the reviewer to look at; its own link never
joins clusters.

"Kind" is the evidence kind: the signal kind (`ip` covers an exact IP and a shared /24) or `catalog`.

Storage: tables of the index file (assoc.store), written in one transaction per command:

    review_decisions     (decision_id, decided_at UTC ISO, reviewer, decision, cluster_id, members, note, source)
    review_pairs         (decision_id, store_a, store_b, kinds, keys)   the evidence snapshot per decided pair
    review_keys          (decision_id, key kind, key value)             values marked shared infrastructure
    review_scan_clusters (cluster_id, store_id)                         clusters of the latest `scan --db`

They are created when first written (CREATE TABLE IF NOT EXISTS, inside that write's transaction),
so indexes built before decisions existed keep opening and scanning unchanged: a file without them
holds no decisions. The index's schema version (PRAGMA user_version, assoc.store) is not changed:
nothing in the index tables changed and an assoc that does not know the review tables ignores them.
The review tables carry their own version in meta (`review_schema`); a newer one is refused.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from .cluster import Cluster
from .errors import AssocError
from .evidence import Evidence, compare_pair
from .index import IndexKey, SignalIndex, StorePair
from .store import IndexStore

DECISIONS = ("confirmed", "dismissed", "shared-infrastructure")
REVIEW_SCHEMA = 1

CONFIRMED_REASON = "review:confirmed"
DISMISSED_REASON = "review:dismissed"
REOPENED_REASON = "review:reopened"

_TABLES = (
    """CREATE TABLE IF NOT EXISTS review_decisions (
        decision_id INTEGER PRIMARY KEY, decided_at TEXT NOT NULL, reviewer TEXT NOT NULL, decision TEXT NOT NULL,
        cluster_id TEXT NOT NULL, members TEXT NOT NULL, note TEXT NOT NULL, source TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS review_pairs (
        decision_id INTEGER NOT NULL, store_a TEXT NOT NULL, store_b TEXT NOT NULL, kinds TEXT NOT NULL,
        keys TEXT NOT NULL, PRIMARY KEY (decision_id, store_a, store_b)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS review_pairs_pair ON review_pairs (store_a, store_b)",
    """CREATE TABLE IF NOT EXISTS review_keys (
        decision_id INTEGER NOT NULL, key_kind TEXT NOT NULL, key_value TEXT NOT NULL,
        PRIMARY KEY (decision_id, key_kind, key_value)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS review_scan_clusters (
        cluster_id TEXT NOT NULL, store_id TEXT NOT NULL, PRIMARY KEY (cluster_id, store_id)) WITHOUT ROWID""",
)
QUEUE_REQUIRED = ("cluster_id", "members", "decision")
MAX_PROBLEMS_SHOWN = 20


class ReviewError(AssocError):
    """A decision cannot be made, stored or read: unknown store or cluster, bad decision file, newer review tables."""


# ------------------------------------------------------------------------------------------- the state


@dataclass(frozen=True, slots=True)
class PairDecision:
    """The decision in force about one pair, with the evidence kinds it shared when it was made."""

    decision: str  # confirmed | dismissed
    kinds: frozenset[str]
    decision_id: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a decision does to one pair in a scan."""

    decision: str  # confirmed | dismissed | reopened (dismissed, but new kinds of evidence appeared)
    linked: bool  # the pair's verdict after the review
    forced: bool  # the decision overrides the evidence; False: the evidence decides, as without a decision
    reason: str  # reason code for pairs.csv
    new_kinds: tuple[str, ...] = ()  # for `reopened`: the evidence kinds not present at decision time


@dataclass(frozen=True)
class ReviewState:
    """The decisions in force, as a scan applies them. Empty: a scan exactly as without decisions."""

    pairs: Mapping[StorePair, PairDecision] = field(default_factory=dict)
    shared_keys: Mapping[IndexKey, str] = field(default_factory=dict)  # key -> why it is a hub (for hubs.csv)

    @classmethod
    def load(cls, connection: sqlite3.Connection) -> ReviewState:
        """The decisions of an index file (an open connection); none if it has no review tables."""
        if not _has_tables(connection):
            return cls()
        _check_schema(connection)
        pairs: dict[StorePair, PairDecision] = {}
        for store_a, store_b, kinds, decision, decision_id in connection.execute(
                "SELECT p.store_a, p.store_b, p.kinds, d.decision, d.decision_id FROM review_pairs p "
                "JOIN review_decisions d USING (decision_id) ORDER BY d.decision_id, p.store_a, p.store_b"):
            if decision == "shared-infrastructure":  # acts through its values, and takes back earlier verdicts
                pairs.pop((store_a, store_b), None)
            else:
                pairs[(store_a, store_b)] = PairDecision(decision, frozenset(json.loads(kinds)), decision_id)
        shared: dict[IndexKey, str] = {}
        for kind, value, reviewer, decided_at, cluster_id, members in connection.execute(
                "SELECT k.key_kind, k.key_value, d.reviewer, d.decided_at, d.cluster_id, d.members FROM review_keys k "
                "JOIN review_decisions d USING (decision_id) ORDER BY d.decision_id"):
            subject = cluster_id or " + ".join(json.loads(members))
            shared.setdefault((kind, value), f"review: shared infrastructure ({subject}; {reviewer}, "
                                             f"{decided_at[:10]})")
        return cls(pairs=pairs, shared_keys=shared)

    def apply(self, pair: StorePair, evidence: Sequence[Evidence], linked: bool) -> Verdict | None:
        """The decision about `pair` given its weighted evidence now and the scan's own verdict (`linked`);
        None when no decision concerns the pair."""
        decided = self.pairs.get(pair)
        if decided is None:
            return None
        if decided.decision == "confirmed":
            return Verdict("confirmed", linked=True, forced=True, reason=CONFIRMED_REASON)
        new = tuple(sorted({p.kind for p in evidence if p.weight > 0} - decided.kinds))
        if new:
            return Verdict("reopened", linked=linked, forced=False, reason=REOPENED_REASON, new_kinds=new)
        return Verdict("dismissed", linked=False, forced=True, reason=DISMISSED_REASON)

    def verdicts(self, scored: Mapping[StorePair, tuple[float, list[Evidence]]],
                 threshold: float) -> dict[StorePair, Verdict]:
        """The verdict on every decided pair, from the scan's scores and weighted evidence (pair -> (p, evidence))."""
        out = {}
        for pair in self.pairs:
            score, evidence = scored.get(pair, (0.0, []))
            verdict = self.apply(pair, evidence, score >= threshold)
            if verdict is not None:
                out[pair] = verdict
        return out

    @staticmethod
    def edges(edges: Mapping[StorePair, float], verdicts: Mapping[StorePair, Verdict],
              threshold: float) -> dict[StorePair, float]:
        """The linked edges clusters are built from, after the verdicts: dismissed ones out (they join
        nothing), confirmed ones in at no less than the threshold."""
        out = {pair: score for pair, score in edges.items()
               if not (pair in verdicts and verdicts[pair].forced and not verdicts[pair].linked)}
        for pair, verdict in verdicts.items():
            if verdict.forced and verdict.linked:
                out[pair] = max(out.get(pair, 0.0), threshold)
        return out


# ------------------------------------------------------------------------------------ reading decisions


@dataclass(frozen=True, slots=True)
class StoredDecision:
    decision_id: int
    decided_at: str
    reviewer: str
    decision: str
    cluster_id: str  # '' for a pair decision
    members: tuple[str, ...]
    note: str
    source: str  # 'cli', or 'FILE line N' for an imported queue row
    pairs: int  # pairs the decision covers
    kinds: tuple[str, ...]  # evidence kinds between the members at decision time
    keys: tuple[IndexKey, ...]  # for shared-infrastructure: the values made hubs

    @property
    def subject(self) -> str:
        return self.cluster_id or " + ".join(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "decided_at": self.decided_at, "reviewer": self.reviewer,
                "decision": self.decision, "cluster_id": self.cluster_id, "members": list(self.members),
                "note": self.note, "source": self.source, "pairs": self.pairs, "kinds": list(self.kinds),
                "keys": [list(k) for k in self.keys]}


def list_decisions(index: IndexStore) -> list[StoredDecision]:
    """Every stored decision, oldest first."""
    connection = index.connection
    if not _has_tables(connection):
        return []
    _check_schema(connection)
    kinds: dict[int, set[str]] = {}
    pairs: dict[int, int] = {}
    for decision_id, pair_kinds in connection.execute("SELECT decision_id, kinds FROM review_pairs"):
        kinds.setdefault(decision_id, set()).update(json.loads(pair_kinds))
        pairs[decision_id] = pairs.get(decision_id, 0) + 1
    keys: dict[int, list[IndexKey]] = {}
    for decision_id, kind, value in connection.execute(
            "SELECT decision_id, key_kind, key_value FROM review_keys ORDER BY decision_id, key_kind, key_value"):
        keys.setdefault(decision_id, []).append((kind, value))
    return [StoredDecision(i, at, reviewer, decision, cluster, tuple(json.loads(members)), note, source,
                           pairs.get(i, 0), tuple(sorted(kinds.get(i, ()))), tuple(keys.get(i, ())))
            for i, at, reviewer, decision, cluster, members, note, source in connection.execute(
                "SELECT decision_id, decided_at, reviewer, decision, cluster_id, members, note, source "
                "FROM review_decisions ORDER BY decision_id")]


def load_review(index: IndexStore) -> ReviewState:
    return ReviewState.load(index.connection)


def decision_labels(index: IndexStore) -> dict[StorePair, bool]:
    """Training labels from the decisions in force: confirmed -> same operator; dismissed and
    shared-infrastructure -> not (what they shared is explained by something else)."""
    connection = index.connection
    if not _has_tables(connection):
        return {}
    _check_schema(connection)
    labels: dict[StorePair, bool] = {}
    for store_a, store_b, decision in connection.execute(
            "SELECT p.store_a, p.store_b, d.decision FROM review_pairs p JOIN review_decisions d USING (decision_id) "
            "ORDER BY d.decision_id, p.store_a, p.store_b"):
        labels[(store_a, store_b)] = decision == "confirmed"
    return labels


# ------------------------------------------------------------------------------------- making decisions


def parse_decision(word: str) -> str | None:
    """A decision word as stored ('Shared infrastructure' -> 'shared-infrastructure'); None if unknown."""
    canonical = "-".join(word.strip().lower().replace("_", " ").replace("-", " ").split())
    return canonical if canonical in DECISIONS else None


def decide_pair(index: IndexStore, store_a: str, store_b: str, decision: str, *, reviewer: str,
                note: str = "", now: datetime | None = None) -> StoredDecision:
    """Store a decision about two stores of the index, with the evidence they share now."""
    if store_a == store_b:
        raise ReviewError(f"--pair needs two different stores, got {store_a!r} twice")
    members = tuple(sorted((store_a, store_b)))
    return _store(index, [_Request(_decision(decision), "", members, note, "cli")], reviewer, now)[0]


def decide_cluster(index: IndexStore, cluster_id: str, decision: str, *, reviewer: str, note: str = "",
                   now: datetime | None = None) -> StoredDecision:
    """Store a decision about a cluster of the latest `assoc scan --db` of this index."""
    members = scan_cluster_members(index, cluster_id)
    return _store(index, [_Request(_decision(decision), cluster_id, members, note, "cli")], reviewer, now)[0]


def scan_cluster_members(index: IndexStore, cluster_id: str) -> tuple[str, ...]:
    """The members of a cluster of the latest `assoc scan --db`. Raises ReviewError if it has none by that id."""
    rows: list[tuple[str]] = []
    if _has_tables(index.connection):
        rows = index.connection.execute("SELECT store_id FROM review_scan_clusters WHERE cluster_id = ? "
                                        "ORDER BY store_id", (cluster_id,)).fetchall()
    if not rows:
        raise ReviewError(f"{index.path}: no cluster {cluster_id!r} in the latest scan of this index; run "
                          f"`assoc scan --db {index.path} --out OUTDIR` first and take a cluster id from its "
                          "clusters.csv (or decide with --pair A B)")
    return tuple(store for (store,) in rows)


def record_clusters(index: IndexStore, clusters: Iterable[Cluster]) -> None:
    """Remember the clusters of the latest scan of this index (for `assoc review --cluster ID`), in one transaction."""
    rows = sorted({(c.cluster_id, store) for c in clusters for store in c.members})
    with _writing(index) as cursor:
        cursor.execute("DELETE FROM review_scan_clusters")
        cursor.executemany("INSERT INTO review_scan_clusters VALUES (?, ?)", rows)
        _set_meta(cursor, "review_scan_at", _now(None))


@dataclass(frozen=True, slots=True)
class ImportReport:
    stored: int  # rows stored as new decisions
    unchanged: int  # rows whose decision and note are those of the latest stored decision about that cluster
    skipped: int  # rows without a decision


def import_queue(index: IndexStore, path: Path | str, *, reviewer: str, now: datetime | None = None) -> ImportReport:
    """Store the decisions filled in a review_queue.csv (assoc.report.queue): all of them or, on any bad
    row, none. Rows without a decision are skipped; a row whose decision and note equal the latest stored
    decision about the same cluster and members is not stored again, so a queue can be imported repeatedly."""
    path = Path(path)
    requests, skipped, problems = _read_queue(path, index)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise ReviewError(f"{path}: {len(problems)} problem(s), nothing was stored:\n{shown}{more}\n"
                          "Fix them and import the file again.")
    latest = {(d.cluster_id, d.members): (d.decision, d.note) for d in list_decisions(index)}
    new = [r for r in requests if latest.get((r.cluster_id, r.members)) != (r.decision, r.note)]
    if new:
        _store(index, new, reviewer, now)
    return ImportReport(stored=len(new), unchanged=len(requests) - len(new), skipped=skipped)


@dataclass(frozen=True, slots=True)
class _Request:
    decision: str
    cluster_id: str
    members: tuple[str, ...]
    note: str
    source: str


def _decision(word: str) -> str:
    decision = parse_decision(word)
    if decision is None:
        raise ReviewError(f"unknown decision {word!r}; use one of {', '.join(DECISIONS)}")
    return decision


def _read_queue(path: Path, index: IndexStore) -> tuple[list[_Request], int, list[str]]:
    """The queue's decided rows, the number of rows without a decision, and every problem found."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in QUEUE_REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ReviewError(f"{path}: not a review queue: column(s) {', '.join(missing)} missing; give the "
                                  "review_queue.csv that `assoc report OUTDIR` writes, with its decision column "
                                  "filled in")
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReviewError(f"{path}: cannot read the review queue: {exc}") from exc
    requests, problems, skipped = [], [], 0
    for line, row in rows:
        word = (row.get("decision") or "").strip()
        if not word:
            skipped += 1
            continue
        where = f"{path.name} line {line}"
        decision = parse_decision(word)
        if decision is None:
            problems.append(f"{where}: unknown decision {word!r}; write one of {', '.join(DECISIONS)}, "
                            "or leave it empty to skip the row")
        cluster_id = (row.get("cluster_id") or "").strip()
        members = tuple(sorted({m.strip() for m in (row.get("members") or "").split(";") if m.strip()}))
        if len(members) < 2:
            problems.append(f"{where}: cluster {cluster_id!r} lists {len(members)} member(s); the members column "
                            "must hold two or more store ids separated by ';' as the report wrote them")
        unknown = [m for m in members if not index.has_store(m)]
        if unknown:
            problems.append(f"{where}: store(s) {', '.join(map(repr, unknown))} not in the index {index.path}; "
                            "import the queue of a scan of this index, or add the bundle with `assoc index add`")
        if decision is not None and len(members) >= 2 and not unknown:
            requests.append(_Request(decision, cluster_id, members, (row.get("note") or "").strip(), where))
    return requests, skipped, problems


def _store(index: IndexStore, requests: Sequence[_Request], reviewer: str,
           now: datetime | None) -> list[StoredDecision]:
    """Snapshot the evidence of every request and write them all in one transaction."""
    for request in requests:
        missing = [m for m in request.members if not index.has_store(m)]
        if missing:
            raise ReviewError(f"{index.path}: no store {missing[0]!r} in the index; decisions are about indexed "
                              f"stores: add its bundle with `assoc index add BUNDLE --db {index.path}` first")
    decided_at = _now(now)
    stored = []
    with _writing(index) as cursor:
        # Values marked earlier (this file's rows included) are hubs already: no longer evidence between anyone.
        marked = set(ReviewState.load(index.connection).shared_keys)
        snapshots = _Snapshots(index)
        for request in requests:
            cursor.execute("INSERT INTO review_decisions (decided_at, reviewer, decision, cluster_id, members, note, "
                           "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (decided_at, reviewer, request.decision, request.cluster_id, json.dumps(request.members),
                            request.note, request.source))
            decision_id = cursor.lastrowid
            assert decision_id is not None
            pair_rows, kinds, keys = [], set(), set()
            for pair in combinations(request.members, 2):
                taken = snapshots.take(pair, marked)
                pair_rows.append((decision_id, *pair, json.dumps(sorted(taken.kinds)),
                                  json.dumps([list(k) for k in taken.keys])))
                kinds |= taken.kinds
                keys.update(taken.keys)
            cursor.executemany("INSERT INTO review_pairs VALUES (?, ?, ?, ?, ?)", pair_rows)
            if request.decision != "shared-infrastructure":
                keys = set()
            cursor.executemany("INSERT INTO review_keys VALUES (?, ?, ?)",
                               [(decision_id, kind, value) for kind, value in sorted(keys)])
            marked |= keys
            stored.append(StoredDecision(decision_id, decided_at, reviewer, request.decision, request.cluster_id,
                                         request.members, request.note, request.source, len(pair_rows),
                                         tuple(sorted(kinds)), tuple(sorted(keys))))
    return stored


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a pair shared at decision time: evidence kinds, and the index keys of the shared values."""

    kinds: frozenset[str]
    keys: tuple[IndexKey, ...]  # catalog evidence has no key


class _Snapshots:
    """Evidence between indexed stores as a scan of the index would compare it (assoc.evidence.compare_pair),
    hub cap aside: a value many stores share was still shared, and its kind does not reopen a dismissal."""

    def __init__(self, index: IndexStore):
        self.index = index
        self.held: dict[str, set[IndexKey]] = {}

    def take(self, pair: StorePair, marked: Container[IndexKey]) -> Snapshot:
        for store in pair:
            if store not in self.held:
                self.held[store] = set(self.index.store_keys([store])[store])
        shared = sorted(k for k in self.held[pair[0]] & self.held[pair[1]] if k not in marked)
        counts = self.index.key_counts(shared)
        view = SignalIndex(postings=self.index.postings(shared),
                           weak_notes={k: note for k, (_, weak, note) in counts.items() if weak},
                           dropped=0, signal_count=0)
        evidence = compare_pair(pair, shared, view)
        kinds = {piece.kind for piece in evidence}
        # The catalog state of the index's last refresh (assoc.store's catalog_pairs table).
        row = self.index.connection.execute("SELECT shared_groups FROM catalog_pairs WHERE store_a = ? AND "
                                            "store_b = ?", pair).fetchone()
        if row is not None and row[0] > 0:
            kinds.add("catalog")
        return Snapshot(frozenset(kinds), tuple(sorted({piece.identity for piece in evidence})))


# ------------------------------------------------------------------------------------------ storage


def _has_tables(connection: sqlite3.Connection) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'review_decisions'"
                              ).fetchone() is not None


def _check_schema(connection: sqlite3.Connection) -> None:
    row = connection.execute("SELECT value FROM meta WHERE key = 'review_schema'").fetchone()
    if row is not None and int(row[0]) > REVIEW_SCHEMA:
        raise ReviewError(f"the review decisions in this index have schema version {row[0]}, this assoc reads "
                          f"version {REVIEW_SCHEMA}: they were written by a newer assoc; upgrade assoc")


@contextmanager
def _writing(index: IndexStore) -> Iterator[sqlite3.Cursor]:
    """One write transaction of the index, with the review tables present (created inside it if missing)."""
    try:
        with index.write() as cursor:
            _check_schema(index.connection)
            for statement in _TABLES:  # statement by statement: executescript would commit first
                cursor.execute(statement)
            _set_meta(cursor, "review_schema", str(REVIEW_SCHEMA))
            yield cursor
    except sqlite3.Error as exc:
        raise ReviewError(f"{index.path}: the decisions could not be written ({exc}); nothing was stored, "
                          "run the same command again") from exc


def _set_meta(cursor: sqlite3.Cursor, key: str, value: str) -> None:
    cursor.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (key, value))


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
