"""Normalised signals, indexed by value: rarity (how many stores share a value), hubs, and candidate pairs.

Every normalised signal yields one or more index keys: the value itself, plus the coarser
blocking keys its normaliser derives (an IPv4 /24, an address's unit and building). A key held
by two or more stores makes those stores a candidate pair; nothing else does, so the scan never
looks at all pairs. A key held by more stores than the hub cap is infrastructure (an ERP egress
IP, a carrier NAT, a forwarder's warehouse) and produces no pairs at all; it is reported as a hub
(`SignalIndex.hubs`). Keys the scorer only down-weights are reported beside them by the scan
(assoc.scan.scoring_hubs), which knows their evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from itertools import combinations

from .normalise import Normalised, normalise
from .records import Bundle, Progress, no_progress

IndexKey = tuple[str, str]  # (key kind, canonical value), e.g. ('ip', '203.0.113.7') or ('ip/24', '203.0.113')
StorePair = tuple[str, str]  # (store_a, store_b) with store_a < store_b

# Items (signals, keys) between two progress reports: a report every few tenths of a second on a large bundle.
PROGRESS_EVERY = 10_000


@dataclass(slots=True)
class Posting:
    """What one store contributed to one index key: when it was seen, and the raw values behind it."""

    times: list[float] = field(default_factory=list)  # POSIX seconds, sorted after build
    raw: list[str] = field(default_factory=list)  # distinct raw values as exported, for explanations
    values: list[Normalised] = field(default_factory=list)  # distinct normalised values (for fuzzy checks)


@dataclass(frozen=True, slots=True)
class Hub:
    """A key shared by many stores, and what that did to it as evidence (hubs.csv).

    `note` starts with the treatment: "ignored: ..." (over the hub cap, or marked shared
    infrastructure by a reviewer: no evidence at all), "shared infrastructure: ..." (counts a
    couple of bits at most) or "down-weighted: ..." (loses bits to rarity and lack of corroboration)."""

    kind: str  # the index key kind: 'ip', 'ip/24', 'address/unit', ...
    value: str
    stores: int
    note: str


def ignored_note(*, over_cap: int | None = None, review: str = "", weak: str = "") -> str:
    """The hubs.csv note of an ignored key: held by more than `over_cap` stores, marked shared infrastructure
    by a reviewer (`review`: the reason assoc.decisions gives), or both; `weak`: why its normaliser marked
    the value weak, if it did."""
    reasons = [f"over the cap of {over_cap} stores"] if over_cap is not None else []
    reasons += [review] if review else []
    return "ignored: " + "; ".join(reasons) + (f"; weak value: {weak}" if weak else "")


@dataclass(slots=True)
class SignalIndex:
    postings: dict[IndexKey, dict[str, Posting]]
    weak_notes: dict[IndexKey, str]  # keys whose normaliser marked them weak, with why
    dropped: int  # signals that carried no information (placeholders, unparseable)
    signal_count: int

    def stores_sharing(self, key: IndexKey) -> int:
        return len(self.postings.get(key, ()))

    def hubs(self, cap: int, *, marked: Mapping[IndexKey, str] | None = None) -> list[Hub]:
        """The ignored keys: held by more than `cap` stores, and every `marked` key that a store holds (values a
        reviewer marked as shared infrastructure, assoc.decisions); most widely shared first."""
        marked = marked or {}
        found = [
            Hub(key[0], key[1], len(holders), ignored_note(over_cap=cap if len(holders) > cap else None,
                                                           review=marked.get(key, ""),
                                                           weak=self.weak_notes.get(key, "")))
            for key, holders in self.postings.items()
            if len(holders) > cap or key in marked
        ]
        return sorted(found, key=lambda h: (-h.stores, h.kind, h.value))

    def candidate_pairs(self, cap: int, *, exclude: Container[IndexKey] = frozenset(),
                        progress: Progress = no_progress) -> dict[StorePair, list[IndexKey]]:
        """Every store pair that shares at least one key held by 2..cap stores and not in `exclude` (hubs by
        a reviewer's decision), with the keys it shares."""
        shared: dict[StorePair, list[IndexKey]] = defaultdict(list)
        total = len(self.postings)
        progress("candidate pairs", 0, total)
        for done, key in enumerate(sorted(self.postings), start=1):
            if done % PROGRESS_EVERY == 0:
                progress("candidate pairs", done, total)
            holders = self.postings[key]
            if 2 <= len(holders) <= cap and key not in exclude:
                for pair in combinations(sorted(holders), 2):
                    shared[pair].append(key)
        progress("candidate pairs", total, total)
        return shared


def build_index(bundle: Bundle, *, progress: Progress = no_progress) -> SignalIndex:
    """Normalise every signal of the bundle and index it by value and by blocking key."""
    postings: dict[IndexKey, dict[str, Posting]] = defaultdict(dict)
    weak_notes: dict[IndexKey, str] = {}
    dropped = 0
    total = len(bundle.signals)
    countries = {s.store_id: s.country or None for s in bundle.stores.values()}
    # Shared values repeat by the thousand (egress IPs, carrier NAT, warehouses): normalise each once.
    seen_values: dict[tuple[str, str, str | None], Normalised | None] = {}
    progress("normalise signals", 0, total)
    for done, signal in enumerate(bundle.signals, start=1):
        if done % PROGRESS_EVERY == 0:
            progress("normalise signals", done, total)
        memo_key = (signal.kind, signal.value, countries.get(signal.store_id))
        if memo_key in seen_values:
            normalised = seen_values[memo_key]
        else:
            normalised = seen_values[memo_key] = normalise(signal.kind, signal.value, country=memo_key[2])
        if normalised is None:
            dropped += 1
            continue
        seen = signal.seen_at.timestamp() if signal.seen_at is not None else None
        for key in _index_keys(normalised):
            posting = postings[key].get(signal.store_id)
            if posting is None:
                posting = postings[key][signal.store_id] = Posting()
            if seen is not None:
                posting.times.append(seen)
            if signal.value not in posting.raw:
                posting.raw.append(signal.value)
            if normalised not in posting.values:
                posting.values.append(normalised)
            if normalised.weak:
                weak_notes[key] = normalised.note
    for holders in postings.values():
        for posting in holders.values():
            posting.times.sort()
    progress("normalise signals", total, total)
    return SignalIndex(postings=dict(postings), weak_notes=weak_notes, dropped=dropped, signal_count=total)


def _index_keys(normalised: Normalised) -> tuple[IndexKey, ...]:
    """The keys a normalised value is found by.

    An address with a parsed unit is found by its unit key, not its full text: the many ways
    one unit is written would otherwise split it into rare-looking strings and hide how many
    stores (a forwarder's customers, say) really use it; compare_pair verifies unit matches.
    An address that names a building but no unit within it is a whole building (a warehouse, a
    business centre) and is found by its building key alone.
    """
    if normalised.kind != "address":
        return ((normalised.kind, normalised.value), *normalised.keys)
    keys = dict(normalised.keys)
    if "address/unit" in keys:
        return normalised.keys
    building = keys.get("address/building", "")
    if building.split("|")[-1]:  # the key ends with the building's own id (see normalise)
        return normalised.keys
    return ((normalised.kind, normalised.value), *normalised.keys)
