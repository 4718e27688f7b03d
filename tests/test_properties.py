"""Properties over tiny random bundles and random evidence (hypothesis).

Candidate generation is checked against a slow, obvious oracle: normalise every store's signals on
their own with assoc.normalise, work out each store's index keys as assoc/index.py documents them,
and list every pair of stores holding a common key that 2..hub-cap stores hold. Pair scores must be
probabilities and must not depend on which store of a pair comes first or on the order of the input.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from assoc import Settings, scan
from assoc.evidence import Evidence
from assoc.index import build_index
from assoc.normalise import Normalised, normalise
from assoc.records import Bundle, Signal, Store
from assoc.scan import compare
from models import rules

# Identities with several spellings each: the oracle never assumes which spellings agree, it
# normalises them; the pools are only chosen so that random stores often share a value.
POOLS: dict[str, list[str]] = {
    "ip": ["8.8.4.4", " 8.8.4.4 ", "8.8.4.4:8080", "008.008.004.004", "::ffff:8.8.4.4", "8.8.4.9",
           "81.2.69.160", "2a00:1450:4001:81b::200e", "2A00:1450:4001:081B:0000:0000:0000:200E",
           "[2a00:1450:4001:81b::200e]:443", "2a00:1450:4001:81b::1", "192.168.1.10", "100.64.1.2", "0.0.0.0"],
    "mac": ["3c:22:fb:1a:2b:3c", "3C-22-FB-1A-2B-3C", "3C22FB1A2B3C", "3c22.fb1a.2b3c", "02:1a:2b:3c:4d:5e",
            "02-1A-2B-3C-4D-5E", "00:00:00:00:00:00"],
    "phone": ["+86 138 0013 8000", "0086 13800138000", "13800138000", "138-0013-8000", "+49 30 1234567",
              "030 1234567"],
    "email": ["Shop.Owner+ali@Gmail.com", "shopowner@gmail.com", "shop.owner@googlemail.com", "info@example.com",
              "INFO@Example.com"],
    "payment_account": ["alipay: 6222 0212 3456 7890 123", "6222-0212-3456-7890-123", "6222021234567890123",
                        "6222****1234", "bank:6222****1234"],
    "device_id": ["{6F9619FF-8B86-D011-B42D-00C04FC964FF}", "6f9619ff8b86d011b42d00c04fc964ff",
                  "00000000-0000-0000-0000-000000000000"],
    "person_name": ["Zhang Wei", "zhang wei", "Wei Zhang", "Li Na"],
    "address": ["Room 1203, Building 5, 88 Keyuan Road, Shenzhen", "Rm 1203, Bldg 5, 88 Keyuan Rd, Shenzhen",
                "Room 1507, Building 5, 88 Keyuan Road, Shenzhen", "88 Keyuan Road, Shenzhen",
                "c/o Fast Forwarder, Unit 3, 12 Harbour Street, Hong Kong", "Unit 3, 12 Harbour St, Hong Kong"],
    "tax_id": ["91440300MA5D0XXX01", "9144 0300 MA5D 0XXX 01", "DE123456789", "123456789"],
    "vendor_code": ["ABC", " ABC ", "abc"],  # a kind the format does not define: compared exactly
}
COUNTRIES = ["", "CN", "DE", "US"]  # phones are read in the store's country
BASE = datetime(2024, 3, 1, tzinfo=UTC)
OFFSETS_HOURS = [None, 0, 1, 5, 30, 24 * 9, 24 * 120, 24 * 500]


@st.composite
def tiny_bundles(draw: st.DrawFn) -> Bundle:
    count = draw(st.integers(3, 8))
    ids = [f"S{n}" for n in range(count)]
    stores = {sid: Store(sid, country=draw(st.sampled_from(COUNTRIES))) for sid in ids}
    signals = []
    for sid in ids:
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(sorted(POOLS)))
            hours = draw(st.sampled_from(OFFSETS_HOURS))
            seen = None if hours is None else BASE + timedelta(hours=hours)
            signals.append(Signal(sid, kind, draw(st.sampled_from(POOLS[kind])), seen))
    return Bundle(root=Path("."), stores=stores, signals=signals)


def _oracle_keys(normalised: Normalised) -> set[tuple[str, str]]:
    """The keys a value is found by, read off index.py's documentation: the canonical value plus the
    blocking keys its normaliser derives; an address with a unit by its unit (and building) keys only, one
    naming a building but no unit by its building key only."""
    if normalised.kind == "address":
        keys = dict(normalised.keys)
        if "address/unit" in keys or keys.get("address/building", "").split("|")[-1]:
            return set(normalised.keys)
    return {(normalised.kind, normalised.value), *normalised.keys}


def _store_keys(bundle: Bundle) -> dict[str, set[tuple[str, str]]]:
    keys: dict[str, set[tuple[str, str]]] = {sid: set() for sid in bundle.stores}
    for signal in bundle.signals:
        normalised = normalise(signal.kind, signal.value, country=bundle.stores[signal.store_id].country or None)
        if normalised is not None:
            keys[signal.store_id] |= _oracle_keys(normalised)
    return keys


def brute_force_candidates(bundle: Bundle, cap: int, exclude: frozenset = frozenset()) -> dict:
    keys = _store_keys(bundle)
    holders = {key: sum(key in held for held in keys.values()) for held in keys.values() for key in held}
    expected = {}
    for a, b in combinations(sorted(bundle.stores), 2):
        shared = sorted(k for k in keys[a] & keys[b] if holders[k] <= cap and k not in exclude)
        if shared:
            expected[(a, b)] = shared
    return expected


@settings(max_examples=150, deadline=None)
@given(bundle=tiny_bundles(), cap=st.integers(2, 6), data=st.data())
def test_candidate_pairs_equal_brute_force(bundle, cap, data):
    index = build_index(bundle)
    keys = _store_keys(bundle)
    all_keys = sorted(set().union(*keys.values()))
    exclude = frozenset(data.draw(st.lists(st.sampled_from(all_keys), max_size=2)) if all_keys else [])
    expected = brute_force_candidates(bundle, cap, exclude)
    found = index.candidate_pairs(cap, exclude=exclude)
    assert {pair: sorted(found_keys) for pair, found_keys in found.items()} == expected
    # hubs: every key held by more stores than the cap, with its store count
    holders = {key: sum(key in held for held in keys.values()) for key in all_keys}
    assert {(h.kind, h.value): h.stores for h in index.hubs(cap)} == {k: n for k, n in holders.items() if n > cap}
    # the scan compares exactly these pairs (no products: no catalog pairs), never others
    comparison = compare(bundle, Settings(cache_dir=None, hub_cap=cap))
    assert set(comparison.evidence) == set(brute_force_candidates(bundle, cap))


def test_the_oracle_sees_variant_spellings_as_one_value():
    """Guard against a vacuous oracle: spellings of one identifier do meet, so random stores share keys."""
    stores = {"A": Store("A", country="CN"), "B": Store("B", country="DE"), "C": Store("C")}
    signals = [Signal("A", "mac", "3C-22-FB-1A-2B-3C"), Signal("B", "mac", "3c22.fb1a.2b3c"),
               Signal("A", "phone", "+86 138 0013 8000"), Signal("C", "phone", "0086 13800138000"),
               Signal("B", "ip", "8.8.4.9"), Signal("C", "ip", "008.008.004.004"),
               Signal("A", "address", "Room 1507, Building 5, 88 Keyuan Road, Shenzhen"),
               Signal("C", "address", "Rm 1203, Bldg 5, 88 Keyuan Rd, Shenzhen")]
    bundle = Bundle(root=Path("."), stores=stores, signals=signals)
    expected = brute_force_candidates(bundle, cap=25)
    assert ("mac", "3c:22:fb:1a:2b:3c") in expected[("A", "B")]
    assert ("ip/24", "8.8.4") in expected[("B", "C")] and ("phone", "+8613800138000") in expected[("A", "C")]
    assert {pair: sorted(keys) for pair, keys in build_index(bundle).candidate_pairs(25).items()} == expected


# ------------------------------------------------------------------------------ scores: [0, 1], symmetric

PIECE_LEVELS = {
    "ip": ["exact", "prefix", "weak"], "mac": ["exact", "weak"], "device_id": ["exact"], "browser_fp": ["exact"],
    "phone": ["exact", "national"], "email": ["exact"], "address": ["exact", "close", "building", "weak"],
    "payment_account": ["exact", "weak"], "tax_id": ["exact"], "person_name": ["exact"], "vendor_code": ["exact"],
}
maybe_time = st.none() | st.floats(0, 1e9, allow_nan=False)


@st.composite
def pieces(draw: st.DrawFn) -> Evidence:
    if draw(st.integers(0, 7)) == 0:
        level = draw(st.sampled_from(["own", "supplier"]))
        return Evidence("catalog", level, f"{draw(st.floats(0.01, 1.0)):.2f}", 1)
    kind = draw(st.sampled_from(sorted(PIECE_LEVELS)))
    return Evidence(kind, draw(st.sampled_from(PIECE_LEVELS[kind])), draw(st.sampled_from(["v1", "v2", "v3"])),
                    stores=draw(st.integers(2, 30)), gap_hours=draw(st.none() | st.floats(0, 50_000)),
                    first_seen_a=draw(maybe_time), first_seen_b=draw(maybe_time),
                    prefix_stores=draw(st.none() | st.integers(2, 30)))


def _swapped(piece: Evidence) -> Evidence:
    """The same piece seen from the other store of the pair."""
    return Evidence(piece.kind, piece.level, piece.value, piece.stores, piece.gap_hours, piece.first_seen_b,
                    piece.first_seen_a, piece.note, piece.key, piece.support, piece.weight, piece.prefix_stores)


@settings(max_examples=300, deadline=None)
@given(evidence=st.lists(pieces(), max_size=8, unique_by=lambda p: (p.kind, p.value)), data=st.data())
def test_rule_scores_are_probabilities_and_symmetric(evidence, data):
    identities = sorted({p.identity for p in evidence})
    support = {key: data.draw(st.floats(0, 1)) for key in identities if data.draw(st.booleans())}
    sessions = frozenset(key for key in identities if data.draw(st.booleans()))
    weighted = rules.weigh(evidence, support, sessions)
    p = rules.probability(weighted)
    assert 0.0 <= p <= 1.0 and not math.isnan(p)
    assert all(piece.weight >= 0 for piece in weighted)  # no piece argues against a link
    assert rules.probability([]) == 1 / (1 + 2 ** -rules.PRIOR)
    # the other store first, and the pieces in another order: the same weights and score
    mirrored = data.draw(st.permutations([_swapped(piece) for piece in evidence]))
    again = rules.weigh(list(mirrored), support, sessions)
    assert sorted((q.kind, q.level, q.value, q.weight) for q in again) == \
        sorted((q.kind, q.level, q.value, q.weight) for q in weighted)
    assert rules.probability(again) == p


def _rename(bundle: Bundle, mapping: dict[str, str], order: list[int]) -> Bundle:
    stores = {mapping[sid]: Store(mapping[sid], country=s.country) for sid, s in bundle.stores.items()}
    signals = [Signal(mapping[s.store_id], s.kind, s.value, s.seen_at) for s in bundle.signals]
    return Bundle(root=bundle.root, stores=stores, signals=[signals[i] for i in order])


@settings(max_examples=40, deadline=None)
@given(bundle=tiny_bundles(), data=st.data())
def test_scan_scores_of_tiny_bundles_are_probabilities_and_symmetric(bundle, data):
    config = Settings(cache_dir=None, hub_cap=data.draw(st.integers(2, 6)))
    result = scan(bundle, config)
    for pair in result.pairs:
        assert 0.0 <= pair.score <= 1.0 and 0.0 <= pair.operator_score <= 1.0
        assert pair.store_a < pair.store_b
    # Reverse the order of the store ids (every pair arrives the other way round) and shuffle the rows.
    ids = sorted(bundle.stores)
    mapping = dict(zip(ids, [f"R{len(ids) - n}" for n in range(len(ids))], strict=True))
    back = {new: old for old, new in mapping.items()}
    order = data.draw(st.permutations(range(len(bundle.signals))))
    mirrored = scan(_rename(bundle, mapping, list(order)), config)

    def view(pairs, name=lambda sid: sid):
        return {tuple(sorted((name(p.store_a), name(p.store_b)))): (round(p.score, 12), round(p.operator_score, 12),
                                                                    p.linked) for p in pairs}

    assert view(mirrored.pairs, back.get) == view(result.pairs)
