"""Compare a candidate store pair: the keys it shares become typed evidence, one piece per matching value.

A piece says what the two stores share (kind, level, canonical value), how many stores share
that value (its rarity) and how close in time the two stores were seen with it. Weights are not
decided here: a scoring model (models/) turns each piece into a log-likelihood contribution, so
the same evidence can be scored by the transparent rule table or by a learned model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import networkx as nx

from .catalog import PairOverlap
from .index import PROGRESS_EVERY, IndexKey, SignalIndex, StorePair
from .normalise import address_similarity
from .records import Progress, no_progress

# Which family each signal kind belongs to, for grouping explanations (DESIGN_NOTES §1).
FAMILIES = {
    "mac": "hardware",
    "device_id": "hardware",
    "browser_fp": "hardware",
    "ip": "network",
    "phone": "identity",
    "email": "identity",
    "person_name": "identity",
    "tax_id": "identity",
    "payment_account": "payout",
    "address": "address",
    "catalog": "catalog",
}

# Two addresses in one unit key are the same place only above this similarity (see normalise.address_similarity).
ADDRESS_MATCH = 0.85


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason two stores look linked. `weight` is filled in by the scoring model (log2 Bayes factor)."""

    kind: str  # signal kind ('ip', 'payment_account', ...) or 'catalog'
    level: str  # exact | close | prefix | building | weak | own | supplier
    value: str  # canonical value (reports mask it)
    stores: int  # how many stores share the value (1 for catalog evidence)
    gap_hours: float | None = None  # closest pair of observations, one from each store
    first_seen_a: float | None = None  # POSIX seconds
    first_seen_b: float | None = None
    note: str = ""  # why a value is weak ('cgnat', 'third_party', ...), or catalog detail
    key: str = ""  # the index key kind the piece came from ('ip/24', 'address/unit', ...)
    support: float | None = None  # for values held by 3+ stores: share of holder pairs corroborated otherwise
    weight: float = 0.0
    # For an exact IP: how many stores use an address of its /24 (/64); None when that prefix is a hub
    # (or the piece is no IP). A carrier's NAT pool or a data centre fills its /24, a home line does not.
    prefix_stores: int | None = None

    @property
    def family(self) -> str:
        return FAMILIES.get(self.kind, "other")

    @property
    def code(self) -> str:
        """Short reason code for pairs.csv, e.g. shared:payment_account, near:address, shared:ip/24."""
        if self.kind == "catalog":
            return f"catalog:{self.level}"
        if self.level in ("close", "national"):
            return f"near:{self.kind}"
        if self.level in ("prefix", "building"):
            suffix = {"prefix": self.value_suffix(), "building": "building"}[self.level]
            return f"shared:{self.kind}/{suffix}"
        if self.level == "weak":
            return f"weak:{self.kind}"
        return f"shared:{self.kind}"

    def value_suffix(self) -> str:
        return "24" if ":" not in self.value else "64"

    @property
    def identity(self) -> tuple[str, str]:
        """The shared value as the index knows it: (key kind, canonical value)."""
        return (self.key or self.kind, self.value)

    def weighted(self, weight: float, support: float | None) -> Evidence:
        # The constructor, not dataclasses.replace: called for every piece of every pair, and replace is 3x slower.
        return Evidence(self.kind, self.level, self.value, self.stores, self.gap_hours, self.first_seen_a,
                        self.first_seen_b, self.note, self.key, support, weight, self.prefix_stores)


def closest_gap_hours(times_a: list[float], times_b: list[float]) -> float | None:
    """Smallest |t_a - t_b| in hours over two sorted lists of POSIX times (None if either is empty)."""
    if not times_a or not times_b:
        return None
    i = j = 0
    best = float("inf")
    while i < len(times_a) and j < len(times_b):
        diff = times_a[i] - times_b[j]
        best = min(best, abs(diff))
        if diff < 0:
            i += 1
        else:
            j += 1
    return best / 3600.0


def iso_time(seconds: float | None) -> str:
    """POSIX seconds as an ISO 8601 UTC timestamp ('' for unknown)."""
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compare_pair(pair: StorePair, keys: list[IndexKey], index: SignalIndex) -> list[Evidence]:
    """Evidence from the index keys a pair shares. Coarser keys count only where no finer key of
    the same thing matched: an exact IP already implies its /24, a matched unit its building."""
    store_a, store_b = pair
    evidence: list[Evidence] = []
    exact_kinds: set[str] = set()
    derived = [key for key in keys if "/" in key[0]]
    # A shared IP implies a shared prefix, which is missing from `keys` only when it is a hub.
    prefix_stores = {key[1]: len(index.postings[key]) for key in derived if key[0] in ("ip/24", "ip/64")}
    for key in keys:
        kind, value = key
        if "/" in kind:
            continue
        evidence.append(_piece(key, "weak" if key in index.weak_notes else "exact", pair, index,
                               prefix_stores=prefix_stores.get(_ip_prefix(value)) if kind == "ip" else None))
        exact_kinds.add(kind)
    matched_prefixes = {_ip_prefix(e.value) for e in evidence if e.kind == "ip"}
    address_matched = "address" in exact_kinds
    for key in sorted(derived, key=lambda k: k[0] != "address/unit"):  # units before buildings
        kind, value = key
        base, _, level = kind.partition("/")
        if base == "ip":
            if value not in matched_prefixes:
                evidence.append(_piece(key, "prefix", pair, index, kind="ip"))
        elif kind == "address/unit":
            if address_matched:
                continue
            values_a = index.postings[key][store_a].values
            values_b = index.postings[key][store_b].values
            similarity = max(address_similarity(x, y) for x in values_a for y in values_b)
            if similarity >= ADDRESS_MATCH:
                address_matched = True
                weak = key in index.weak_notes
                evidence.append(_piece(key, "weak" if weak else "close", pair, index, kind="address"))
        elif kind == "address/building":
            if not address_matched:
                evidence.append(_piece(key, "building", pair, index, kind="address"))
                address_matched = True  # one building is one piece, however it was keyed
        elif base not in exact_kinds:  # e.g. phone/national: only where the full value did not match
            evidence.append(_piece(key, level, pair, index, kind=base))
    return evidence


def _ip_prefix(value: str) -> str:
    if ":" in value:
        return ":".join(value.split(":")[:4])
    return value.rsplit(".", 1)[0]


def _piece(key: IndexKey, level: str, pair: StorePair, index: SignalIndex, *, kind: str | None = None,
           prefix_stores: int | None = None) -> Evidence:
    holders = index.postings[key]
    posting_a, posting_b = holders[pair[0]], holders[pair[1]]
    return Evidence(
        kind=kind or key[0],
        level=level,
        value=key[1],
        stores=len(holders),
        gap_hours=closest_gap_hours(posting_a.times, posting_b.times),
        first_seen_a=posting_a.times[0] if posting_a.times else None,
        first_seen_b=posting_b.times[0] if posting_b.times else None,
        note=index.weak_notes.get(key, ""),
        key=key[0],
        prefix_stores=prefix_stores,
    )


def catalog_evidence(overlap: PairOverlap) -> list[Evidence]:
    """Catalog overlap as evidence of a shared operator: own products strongly, supplier stock weakly."""
    if overlap.shared_groups == 0:
        return []
    smaller = round(overlap.shared_groups / overlap.overlap) if overlap.overlap else 0
    own = overlap.shared_groups - overlap.common_groups
    pieces = []
    if own and smaller:
        pieces.append(Evidence(kind="catalog", level="own", value=f"{own / smaller:.2f}", stores=1,
                               note=f"{own} of {smaller} products"))
    if overlap.common_groups and smaller:
        pieces.append(Evidence(kind="catalog", level="supplier", value=f"{overlap.common_groups / smaller:.2f}",
                               stores=1, note=f"{overlap.common_groups} of {smaller} products are common stock"))
    return pieces


# Evidence of another value whose base weight (before rarity) reaches this corroborates a
# shared value; so does seeing the shared value itself within a day in both stores.
CORROBORATING_WEIGHT = 3.0
CORROBORATING_GAP_HOURS = 24.0


Group = tuple[str, float]  # (the group's smallest store, the group's share of the value's holders)


@dataclass(frozen=True, slots=True)
class ValueSupport:
    """How well the holders of each value held by three or more stores are corroborated.

    `shares`: the share of a value's holder pairs corroborated by other evidence or close timing.
    `groups`: the holders that corroborated pairs join into groups of MIN_GROUP or more stores,
    directly or through other holders (each holder -> its group), for the values that have one.
    `majorities`: for a controlled value (CONTROLLED_KINDS) whose largest group holds at least
    MAJORITY_GROUP of its holders, that group's share."""

    shares: dict[IndexKey, float]
    groups: dict[IndexKey, dict[str, Group]]
    majorities: dict[IndexKey, float]

    def for_value(self, identity: IndexKey) -> float | None:
        """The support every holder pair of a value sees at least: its share of corroborated holder
        pairs, or the share of a group holding most of its holders if that is larger."""
        share = self.shares.get(identity)
        if share is None:
            return None
        return max(share, self.majorities.get(identity, 0.0))

    def for_pair(self, pair: StorePair, evidence: list[Evidence]) -> dict[IndexKey, float]:
        """The support of each of a pair's values as this pair sees it: `for_value`, or the share
        of a group holding both stores if that is larger."""
        seen: dict[IndexKey, float] = {}
        for piece in evidence:
            identity = piece.identity
            share = self.for_value(identity)
            if share is None:
                continue
            groups = self.groups.get(identity)
            if groups is not None:
                group_a = groups.get(pair[0])
                if group_a is not None and group_a == groups.get(pair[1]):
                    share = max(share, group_a[1])
            seen[identity] = share
        return seen


def value_support(evidence_by_pair: dict[StorePair, list[Evidence]],
                  base_weight: Callable[[Evidence], float], *,
                  progress: Progress = no_progress) -> ValueSupport:
    """For every value shared by three or more stores: the share of its holder pairs that are
    corroborated by other evidence or by close timing, and the groups those pairs join.

    One operator's stores that share a payout account usually share more (a name, a home IP,
    a device, a login session); unrelated sellers behind a pooled agency account or one
    warehouse address share nothing else. A value whose holders otherwise look unrelated is
    shared infrastructure, however rare it is (DESIGN_NOTES §2-3). A careful operator's stores
    may each share something with only one or two of the others, so few of the holder pairs are
    corroborated; but those pairs chain the stores into one group, which a pool's unrelated
    clients do not form (BENCHMARKS.md, "Corroborated groups"). A group that holds most of the
    holders of a controlled value makes it that operator's for every holder pair (MAJORITY_GROUP).

    Measured twice: what corroborates in the second pass is evidence of some weight for its
    kind whose own value was not doubtful in the first (support >= DOUBTFUL_SUPPORT, or held by
    two stores). Unrelated sellers behind one pooled account often also sign in through one
    ERP's egress IP; that IP corroborates nothing, while an operator's home IP, shared by all of
    its stores along with everything else, does. The first pass judges a value by its share
    alone: by its groups, the pooled account and the ERP IP of the same clients would lift each
    other.
    """
    total = 2 * len(evidence_by_pair)  # two passes over every pair

    def report(done: int) -> None:
        progress("value support", done, total)

    report(0)
    first, _ = _support(evidence_by_pair, lambda piece: base_weight(piece) >= CORROBORATING_WEIGHT, report,
                        join=False)
    second, joined = _support(evidence_by_pair, lambda piece: base_weight(piece) >= CORROBORATING_WEIGHT
                              and first.get(piece.identity, 1.0) >= DOUBTFUL_SUPPORT,
                              lambda done: report(len(evidence_by_pair) + done), join=True)
    groups = {identity: grouped for identity, (holders, _, pairs) in joined.items()
              if (grouped := _groups(pairs, holders))}
    majorities = {identity: largest for identity, grouped in groups.items() if joined[identity][1]
                  and (largest := max(share for _, share in grouped.values())) >= MAJORITY_GROUP}
    report(total)
    return ValueSupport(second, groups, majorities)


def _support(evidence_by_pair: dict[StorePair, list[Evidence]], corroborates: Callable[[Evidence], bool],
             report: Callable[[int], None], *, join: bool
             ) -> tuple[dict[IndexKey, float], dict[IndexKey, tuple[int, bool, list[StorePair]]]]:
    """Each value's share of corroborated holder pairs; and, if `join`, its store count, whether
    it is a controlled value (CONTROLLED_KINDS, not marked weak) and the holder pairs other
    evidence corroborates (close timing of the value itself joins no group: an office IP that
    many clients use every day has close pairs too)."""
    holder_pairs: dict[IndexKey, list[bool]] = {}
    joined: dict[IndexKey, tuple[int, bool, list[StorePair]]] = {}
    for done, (pair, pieces) in enumerate(evidence_by_pair.items(), start=1):
        if done % PROGRESS_EVERY == 0:
            report(done)
        strong = [p.identity for p in pieces if corroborates(p)]
        for piece in pieces:
            if piece.kind == "catalog" or piece.stores < 3:
                continue
            identity = piece.identity
            others = any(other != identity for other in strong)
            close = piece.gap_hours is not None and piece.gap_hours <= CORROBORATING_GAP_HOURS
            holder_pairs.setdefault(identity, []).append(others or close)
            if others and join:
                if identity not in joined:
                    joined[identity] = (piece.stores, piece.kind in CONTROLLED_KINDS and piece.level != "weak", [])
                joined[identity][2].append(pair)
    return {identity: sum(flags) / len(flags) for identity, flags in holder_pairs.items()}, joined


def _groups(pairs: list[StorePair], holders: int) -> dict[str, Group]:
    """The connected groups of MIN_GROUP or more stores that `pairs` form among a value's `holders`."""
    return {store: (min(group), len(group) / holders) for group in nx.connected_components(nx.Graph(pairs))
            if len(group) >= MIN_GROUP for store in group}


# A group of two is only the pair's own corroboration, which its evidence already counts.
MIN_GROUP = 3

# A controlled value whose largest group holds at least this share of its holders is mostly one
# operator's: its other holders, which share nothing else with anyone, are taken for that
# operator's more careful stores, not for unrelated sellers (BENCHMARKS.md, "Majority groups").
MAJORITY_GROUP = 0.5

# Kinds whose values one party holds and controls (a payout account, a phone line, a mailbox, a tax
# registration, a device): a store holds one only through that party, as its own or as its client.
# Places, networks and names are also held by unrelated neighbours and namesakes.
CONTROLLED_KINDS = frozenset({"payment_account", "phone", "email", "tax_id", "device_id", "mac"})

# A shared value whose holder pairs are corroborated less often than this is doubtful.
DOUBTFUL_SUPPORT = 0.5


# Sightings of one value that all fall within this many hours are one session.
SESSION_HOURS = 6.0


def session_values(index: SignalIndex, kinds: frozenset[str]) -> frozenset[IndexKey]:
    """Exact values of session-bound `kinds` held by three or more stores whose every dated
    sighting, in every store, falls within SESSION_HOURS (at least two stores dated).

    Such a value is one login session: one operator signing in to several stores from one home
    IP or device within hours. Unrelated stores behind one egress, carrier or office IP use it
    at times spread over months (DESIGN_NOTES §4): a crowd of holders means shared
    infrastructure only when their uses are spread out. The span of all sightings is asked, not
    each pair's closest two: stores that all sign in daily through one office IP have close
    pairs but a span of months. This reading assumes the export covers more than a few days of
    activity; in a one-day login export every value looks like a session."""
    sessions = []
    for key, holders in index.postings.items():
        if key[0] not in kinds or len(holders) < 3 or key in index.weak_notes:
            continue
        dated = [posting.times for posting in holders.values() if posting.times]
        if len(dated) >= 2:
            first, last = min(map(min, dated)), max(map(max, dated))
            if last - first <= SESSION_HOURS * 3600:
                sessions.append(key)
    return frozenset(sessions)


def without_doubtful_values(evidence: list[Evidence]) -> list[Evidence]:
    """The evidence less its doubtful values: a link that holds without them is solid; one that
    needs them rests on doubtful values (and joins no existing cluster, assoc.cluster).

    Doubtful are values held by 3+ stores that mostly share nothing else (support below
    DOUBTFUL_SUPPORT), and a value held by just these two stores, seen by them more than a day
    apart, when the pair shares nothing else of weight: with two holders there is no support to
    measure, and that is how an agency's account looks in a small export. A payout account only
    the two hold with a sighting of unknown time is doubtful too: an agency's pool looks the same
    as an operator's slip, and one such edge joining two clusters made 79 false pairs in a
    150-store market (BENCHMARKS.md, "Undated payout accounts"). Other undated sightings are not
    doubtful: most such values are one operator's slips (BENCHMARKS.md, "Shared infrastructure")."""
    def lone(piece: Evidence) -> bool:
        if piece.kind == "catalog" or piece.stores != 2 or any(
                other.identity != piece.identity and other.weight >= CORROBORATING_WEIGHT for other in evidence):
            return False
        if piece.gap_hours is None:
            return piece.kind == "payment_account"
        return piece.gap_hours > CORROBORATING_GAP_HOURS

    return [p for p in evidence if (p.support is None or p.support >= DOUBTFUL_SUPPORT) and not lone(p)]
