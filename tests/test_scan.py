"""The scan pipeline end to end on generated bundles: oracles, invariants and determinism."""

from __future__ import annotations

import csv
import importlib
import random
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assoc import Settings, read_bundle, scan
from assoc.evidence import SESSION_HOURS, Evidence, session_values, value_support
from assoc.index import Posting, SignalIndex, build_index
from assoc.records import Bundle
from assoc.scan import compare
from fixtures.market import generate
from models import rules

SETTINGS = Settings(cache_dir=None)


def _scan_rows(bundle: Bundle) -> dict[tuple[str, str], tuple[float, bool, tuple[str, ...]]]:
    result = scan(bundle, SETTINGS)
    return {(p.store_a, p.store_b): (round(p.score, 9), p.linked, p.reasons) for p in result.pairs}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("gen")
    truth = generate(path, stores=60, seed=4)
    return path, truth


def test_candidates_equal_brute_force(generated):
    path, _ = generated
    bundle = read_bundle(path)
    index = build_index(bundle)
    keys_of: dict[str, set] = {}
    for key, holders in index.postings.items():
        for store in holders:
            keys_of.setdefault(store, set()).add(key)
    cap = SETTINGS.hub_cap
    expected = {}
    for a, b in combinations(sorted(bundle.stores), 2):
        shared = sorted(k for k in keys_of.get(a, set()) & keys_of.get(b, set()) if len(index.postings[k]) <= cap)
        if shared:
            expected[(a, b)] = shared
    found = {pair: sorted(keys) for pair, keys in index.candidate_pairs(cap).items()}
    assert found == expected


def test_generated_truth_is_found_without_false_links(generated):
    path, truth = generated
    result = scan(read_bundle(path), SETTINGS)
    linked = {(p.store_a, p.store_b) for p in result.pairs if p.linked}
    false_links = [pair for pair in linked if not truth.same_operator(*pair)]
    missed = truth.linked - linked
    assert not false_links
    assert len(missed) <= 0.05 * len(truth.linked)


def test_scores_in_unit_interval_and_every_cluster_pair_linked(generated):
    path, _ = generated
    result = scan(read_bundle(path), SETTINGS)
    assert result.pairs
    by_pair = {(p.store_a, p.store_b): p for p in result.pairs}
    for p in result.pairs:
        assert 0.0 <= p.score <= 1.0 and 0.0 <= p.operator_score <= 1.0
        assert p.store_a < p.store_b
    for cluster in result.clusters:
        for pair in combinations(cluster.members, 2):
            assert by_pair[pair].linked
            assert by_pair[pair].cluster_id == cluster.cluster_id


def _rewrite(src: Path, dst: Path, rng: random.Random, rename: dict[str, str] | None = None) -> None:
    """Copy a CSV bundle with its rows shuffled (and store ids renamed)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("stores.csv", "signals.csv", "products.csv"):
        with open(src / name, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        rng.shuffle(rows)
        if rename:
            for row in rows:
                row["store_id"] = rename[row["store_id"]]
        with open(dst / name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000))
def test_shuffled_rows_change_nothing_and_scores_are_symmetric(tmp_path_factory, seed, shuffle_seed):
    base = tmp_path_factory.mktemp("base")
    generate(base, stores=25, seed=seed)
    original = _scan_rows(read_bundle(base))
    rng = random.Random(shuffle_seed)
    shuffled = tmp_path_factory.mktemp("shuffled")
    _rewrite(base, shuffled, rng)
    assert _scan_rows(read_bundle(shuffled)) == original
    # Reverse the order of the store ids: every pair now arrives the other way round.
    ids = sorted(read_bundle(base).stores)
    rename = dict(zip(ids, [f"R{len(ids) - i:05d}" for i in range(len(ids))], strict=True))
    renamed = tmp_path_factory.mktemp("renamed")
    _rewrite(base, renamed, rng, rename)
    back = {v: k for k, v in rename.items()}
    mirrored = {tuple(sorted((back[a], back[b]))): (s, linked) for (a, b), (s, linked, _) in
                _scan_rows(read_bundle(renamed)).items()}
    assert mirrored == {pair: (s, linked) for pair, (s, linked, _) in original.items()}


def test_csv_and_jsonl_bundles_scan_identically(tmp_path):
    generate(tmp_path / "csv", stores=30, seed=9)
    generate(tmp_path / "jsonl", stores=30, seed=9, fmt="jsonl")
    assert _scan_rows(read_bundle(tmp_path / "csv")) == _scan_rows(read_bundle(tmp_path / "jsonl"))


def test_an_account_held_by_stores_that_share_nothing_else_links_none_of_them(make_bundle):
    """A pooled payout account (three unrelated stores) against an operator's (three stores that also
    share a login device two by two): only the second links, and the first is explained as it is."""
    stores = [{"store_id": s, "country": "CN"} for s in ("A1", "A2", "A3", "B1", "B2", "B3")]
    ids = [row["store_id"] for row in stores]
    signals = [{"store_id": s, "kind": "payment_account", "value": "alipay: 6222 0000 1111 2222"}
               for s in ("A1", "A2", "A3")]
    signals += [{"store_id": s, "kind": "phone", "value": f"+86 138 0000 000{n}"} for n, s in enumerate(ids)]
    signals += [{"store_id": s, "kind": "payment_account", "value": "6217-5565-7981-0372"} for s in ("B1", "B2", "B3")]
    logins = (("B1", "B2"), ("B2", "B3"))   # a device each pair of the operator's stores used
    signals += [{"store_id": s, "kind": "device_id", "value": f"device-{a}{b}"} for a, b in logins for s in (a, b)]
    bundle = read_bundle(make_bundle(stores, signals).csv_dir)
    result = scan(bundle, SETTINGS)
    assert {(p.store_a, p.store_b) for p in result.pairs if p.linked} == {("B1", "B2"), ("B1", "B3"), ("B2", "B3")}
    pooled = compare(bundle, SETTINGS).weighted()[("A1", "A2")]
    assert [(e.kind, e.stores, e.support, e.weight) for e in pooled] == [("payment_account", 3, 0.0, 2.0)]


@pytest.mark.parametrize(("kind", "value_o3", "value_x", "seen_x", "joins"), [
    # two years apart: the pair is linked, the store joins no cluster
    ("payment_account", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "2023-01-05T10:00:00Z", False),
    # two hours apart: one session, a solid edge
    ("payment_account", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "2025-01-05T12:00:00Z", True),
    # a payout account with no time: an agency's pool in a small export looks the same
    ("payment_account", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "", False),
    # a device with no time: nothing says it is far; an operator's slip
    ("device_id", "{6F9619FF-8B86-D011-B42D-00C04FC964FF}", "6f9619ff8b86d011b42d00c04fc964ff", "", True),
])
def test_a_lone_value_seen_far_apart_does_not_pull_a_store_into_a_cluster(make_bundle, kind, value_o3, value_x,
                                                                          seen_x, joins):
    stores = [{"store_id": s} for s in ("O1", "O2", "O3", "X")]
    signals = [{"store_id": s, "kind": "email", "value": "owner@example.com"} for s in ("O1", "O2", "O3")]
    signals += [{"store_id": s, "kind": "phone", "value": "+49 30 1234567"} for s in ("O1", "O2", "O3")]
    signals += [{"store_id": "O3", "kind": kind, "value": value_o3, "seen_at": "2025-01-05T10:00:00Z"},
                {"store_id": "X", "kind": kind, "value": value_x, "seen_at": seen_x}]
    result = scan(read_bundle(make_bundle(stores, signals).csv_dir), SETTINGS)
    pair = next(p for p in result.pairs if (p.store_a, p.store_b) == ("O3", "X"))
    assert pair.linked  # the value links the two stores on its own, with its explanation
    members = {m for c in result.clusters for m in c.members}
    assert ("X" in members) == joins
    assert [c.members for c in result.clusters][0][:3] == ("O1", "O2", "O3")


def test_session_values_need_every_dated_sighting_within_the_session_window():
    hour = 3600.0

    def sessions(*stores: list[float], kind: str = "ip", weak: bool = False) -> frozenset:
        key = (kind, "v")
        index = SignalIndex(postings={key: {f"S{n}": Posting(times=list(t)) for n, t in enumerate(stores)}},
                            weak_notes={key: "carrier NAT"} if weak else {}, dropped=0, signal_count=0)
        return session_values(index, frozenset({"ip"}))

    assert sessions([0.0], [2 * hour], [SESSION_HOURS * hour]) == {("ip", "v")}
    assert sessions([0.0], [2 * hour], []) == {("ip", "v")}  # an undated holder says nothing against
    # every pair has close sightings, but the value was used over months: an office's, not a session
    assert sessions([0.0, 90 * 24 * hour], [hour, 90 * 24 * hour + hour], [2 * hour]) == frozenset()
    assert sessions([0.0], [], []) == frozenset()  # one dated holder: no span to measure
    assert sessions([0.0], [hour]) == frozenset()  # two holders: a pair, weighed as such
    assert sessions([0.0], [hour], [hour], weak=True) == frozenset()
    assert sessions([0.0], [hour], [hour], kind="email") == frozenset()


@pytest.mark.parametrize(("times", "linked"), [
    (["2025-03-01T10:00:00Z", "2025-03-01T11:10:00Z", "2025-03-01T12:30:00Z", "2025-03-01T13:05:00Z",
      "2025-03-01T13:40:00Z", "2025-03-01T14:00:00Z"], True),      # one afternoon: one operator's session
    (["2024-01-03T10:00:00Z", "2024-04-11T09:00:00Z", "2024-07-20T18:00:00Z", "2024-09-02T07:00:00Z",
      "2025-01-15T21:00:00Z", "2025-03-01T14:00:00Z"], False),     # spread over a year: an office or carrier IP
])
def test_an_ip_every_holder_used_within_hours_links_them_all(make_bundle, times, linked):
    stores = [{"store_id": f"E{n}"} for n in range(6)]
    signals = [{"store_id": f"E{n}", "kind": "ip", "value": "183.176.203.187", "seen_at": t}
               for n, t in enumerate(times)]
    signals += [{"store_id": f"E{n}", "kind": "email", "value": f"seller{n}@example.com"} for n in range(6)]
    result = scan(read_bundle(make_bundle(stores, signals).csv_dir), SETTINGS)
    pairs = {(p.store_a, p.store_b) for p in result.pairs if p.linked}
    assert pairs == (set(combinations([f"E{n}" for n in range(6)], 2)) if linked else set())


def test_a_value_that_is_itself_doubtful_corroborates_nothing():
    """Three sellers behind one pooled account who also sign in through one ERP's egress IP (held by
    eight stores that share nothing else): the IP is doubtful, so the account stays uncorroborated.
    An operator's home IP, corroborated by the operator's phone, does corroborate."""
    def piece(kind: str, value: str, stores: int) -> Evidence:
        return Evidence(kind=kind, level="exact", value=value, stores=stores)

    erp = [f"E{n}" for n in range(8)]  # P1-P3 are three of the ERP's eight clients
    evidence = {pair: [piece("ip", "erp", 8)] for pair in combinations(sorted(erp), 2)}
    for pair in combinations(["E0", "E1", "E2"], 2):
        evidence[pair] = [piece("payment_account", "pool", 3), piece("ip", "erp", 8)]
    support = value_support(evidence, rules.base_weight).shares
    assert support[("ip", "erp")] < 0.5 and support[("payment_account", "pool")] == 0.0

    home = {pair: [piece("ip", "home", 3), piece("phone", "+4930", 3)] for pair in combinations(["O1", "O2", "O3"], 2)}
    home[("O1", "O2")].append(piece("email", "owner@example.com", 2))
    support = value_support(home, rules.base_weight).shares
    assert support[("ip", "home")] == support[("phone", "+4930")] == 1.0


def test_two_doubtful_values_held_by_the_same_clients_do_not_make_them_a_group():
    """Five of an ERP's eight clients also share a pooled account. Each value corroborates the other's
    holder pairs, but each is doubtful on its own holders (the IP: 10 of 28 pairs), so neither
    corroborates in the second pass: the account keeps support 0 and forms no group. (Judging the IP
    by the five clients' group instead, 5 of 8 holders, would let the two values lift each other.)"""
    def piece(kind: str, value: str, stores: int) -> Evidence:
        return Evidence(kind=kind, level="exact", value=value, stores=stores)

    clients = [f"E{n}" for n in range(8)]
    evidence = {pair: [piece("ip", "erp", 8)] for pair in combinations(clients, 2)}
    for pair in combinations(clients[:5], 2):
        evidence[pair] = [piece("payment_account", "pool", 5), piece("ip", "erp", 8)]
    support = value_support(evidence, rules.base_weight)
    assert support.shares[("payment_account", "pool")] == 0.0
    assert ("payment_account", "pool") not in support.groups
    assert support.for_pair(("E0", "E1"), evidence[("E0", "E1")])[("payment_account", "pool")] == 0.0


def _careful_operator(make_bundle, pooled: bool) -> Bundle:
    """Stores behind one payout account: an operator's ten, each sharing a contact name with the next,
    so that these pairs chain all ten into one group; or a pool's eight clients, two pairs of which
    share a name. A name alone links nothing (5 bits)."""
    ids = [f"S{n}" for n in range(8 if pooled else 10)]
    stores = [{"store_id": s, "country": "CN"} for s in ids]
    signals = [{"store_id": s, "kind": "payment_account", "value": "pingpong: 8830 2946 3909"} for s in ids]
    signals += [{"store_id": s, "kind": "email", "value": f"shop{n}@example.com"} for n, s in enumerate(ids)]
    chained = [(ids[0], ids[1]), (ids[2], ids[3])] if pooled else list(zip(ids, ids[1:], strict=False))
    names = ["Li Na", "Wang Fang", "Zhang Wei", "Liu Yang", "Chen Jing", "Yang Min", "Zhao Lei", "Huang Yan",
             "Zhou Tao"]
    for name, (a, b) in zip(names, chained, strict=False):
        signals += [{"store_id": s, "kind": "person_name", "value": name} for s in (a, b)]
    return read_bundle(make_bundle(stores, signals).csv_dir)


def test_holders_that_corroborated_pairs_chain_into_one_group_keep_their_shared_account(make_bundle):
    """Nine of the 45 holder pairs share a name: the account's support is 0.2, which alone would make
    it shared infrastructure. But the nine pairs chain all ten stores into one group, which a pool's
    clients, sharing nothing else, do not form: every pair of them is linked, with the group's support."""
    bundle = _careful_operator(make_bundle, pooled=False)
    comparison = compare(bundle, SETTINGS)
    account = ("payment_account", "883029463909")
    assert comparison.support.shares[account] == pytest.approx(9 / 45)
    assert all(piece.support == 1.0 for pieces in comparison.weighted().values()
               for piece in pieces if piece.identity == account)
    result = scan(bundle, SETTINGS)
    assert {(p.store_a, p.store_b) for p in result.pairs if p.linked} == set(combinations(sorted(bundle.stores), 2))
    assert [c.members for c in result.clusters] == [tuple(sorted(bundle.stores))]


def test_a_pair_of_clients_that_share_a_name_is_not_a_group_of_a_pooled_account(make_bundle):
    """The account held by eight clients, two pairs of which share a name: a group of two is only the
    pair's own corroboration, already weighed as the name; it lifts nothing, and nobody is linked."""
    bundle = _careful_operator(make_bundle, pooled=True)
    assert compare(bundle, SETTINGS).support.groups.get(("payment_account", "883029463909"), {}) == {}
    assert not [p for p in scan(bundle, SETTINGS).pairs if p.linked]


@pytest.mark.parametrize(("chained", "linked_outside"), [(6, True), (4, False)])
def test_holders_outside_a_majority_group_keep_the_account_with_it(make_bundle, chained, linked_outside):
    """Ten stores behind one payout account, the first `chained` of them each sharing a name with the
    next. Six chained stores are most of the holders: the account is mostly one operator's, and the four
    that share nothing else are taken for its careful stores, so all ten form one cluster. Four chained
    stores are a minority: the six others could be a pool's clients, and none of them is linked."""
    ids = [f"S{n}" for n in range(10)]
    names = ["Li Na", "Wang Fang", "Zhang Wei", "Liu Yang", "Chen Jing"]
    signals = [{"store_id": s, "kind": "payment_account", "value": "pingpong: 8830 2946 3909"} for s in ids]
    for name, (a, b) in zip(names, zip(ids[:chained], ids[1:chained], strict=False), strict=False):
        signals += [{"store_id": s, "kind": "person_name", "value": name} for s in (a, b)]
    bundle = read_bundle(make_bundle([{"store_id": s, "country": "CN"} for s in ids], signals).csv_dir)
    support = compare(bundle, SETTINGS).support
    account = ("payment_account", "883029463909")
    assert support.shares[account] == pytest.approx((chained - 1) / 45)
    assert support.majorities.get(account) == (pytest.approx(chained / 10) if linked_outside else None)
    result = scan(bundle, SETTINGS)
    linked = {(p.store_a, p.store_b) for p in result.pairs if p.linked}
    outside = [(a, b) for a, b in combinations(ids, 2) if b in ids[chained:]]
    if linked_outside:
        assert linked == set(combinations(ids, 2))
        assert [c.members for c in result.clusters] == [tuple(ids)]
    else:
        assert not linked & set(outside)


@pytest.mark.parametrize(("kind", "key", "level", "controlled"), [
    ("payment_account", "", "exact", True),
    ("email", "", "exact", True),
    ("address", "address/unit", "close", False),  # a place: unrelated neighbours hold it too
    ("ip", "", "exact", False),  # a network
    ("mac", "", "weak", False),  # a MAC marked weak repeats across machines
])
def test_only_a_controlled_value_lends_its_majority_group_to_the_holders_outside_it(kind, key, level, controlled):
    """Ten holders of one value, six of them chained by names into one group: the holders outside it
    count a payout account or an e-mail at the group's share, but a place, a network or a weak value
    at the value's own share of corroborated pairs."""
    stores = [f"S{n}" for n in range(10)]
    value = Evidence(kind=kind, level=level, value="v", stores=10, key=key)
    evidence = {pair: [value] for pair in combinations(stores, 2)}
    for n, pair in enumerate(zip(stores[:6], stores[1:6], strict=False)):
        evidence[pair] = [value, Evidence(kind="person_name", level="exact", value=f"name {n}", stores=2)]
    support = value_support(evidence, rules.base_weight)
    assert support.shares[value.identity] == pytest.approx(5 / 45)
    outside = ("S0", "S9")
    expected = 0.6 if controlled else 5 / 45
    assert support.for_pair(outside, evidence[outside])[value.identity] == pytest.approx(expected)
    assert support.for_pair(("S0", "S5"), evidence[("S0", "S5")])[value.identity] == pytest.approx(0.6)


def _stages(calls: list[tuple[str, int, int | None]]) -> dict[str, list[tuple[int, int | None]]]:
    """The progress calls by stage, checking that each stage's calls come together (one bar per stage)."""
    by_stage: dict[str, list[tuple[int, int | None]]] = {}
    order = [stage for n, (stage, _, _) in enumerate(calls) if n == 0 or calls[n - 1][0] != stage]
    assert len(order) == len(set(order)), f"a stage came back after another began: {order}"
    for stage, done, total in calls:
        by_stage.setdefault(stage, []).append((done, total))
    return by_stage


def test_every_stage_reports_progress_more_than_once_as_it_goes(tmp_path, monkeypatch):
    """Reading, indexing, the catalog, comparing, scoring and clustering each report from 0 up to their
    total, in one unit throughout; with small report intervals, also in between."""
    generate(tmp_path / "bundle", stores=25, seed=5, images=True)
    calls: list[tuple[str, int, int | None]] = []

    def record(stage: str, done: int, total: int | None) -> None:
        calls.append((stage, done, total))

    result = scan(read_bundle(tmp_path / "bundle", progress=record), SETTINGS, progress=record)
    assert result.pairs
    stages = _stages(calls)
    assert {"read stores.csv", "read signals.csv", "read products.csv", "normalise signals", "candidate pairs",
            "catalog: normalise text", "catalog: match text", "catalog: hash images", "catalog: match images",
            "catalog: group", "catalog: overlap", "catalog: matched listings", "compare pairs", "value support",
            "score pairs", "cluster", "pair results"} <= set(stages)
    for stage, seen in stages.items():
        done = [d for d, _ in seen]
        totals = {t for _, t in seen}
        assert len(seen) >= 2, stage
        assert len(totals) == 1, f"{stage}: one total throughout, not {totals}"
        assert done == sorted(done) and done[0] == 0 and done[-1] == totals.pop(), (stage, seen)
        assert stages[stage][-1][0] > 0 or stage == "catalog: match images", stage  # no image pair may be near

    # Report every few items: the long loops report between their first and last call.
    monkeypatch.setattr(importlib.import_module("assoc.bundle"), "_PROGRESS_ROWS", 7)
    monkeypatch.setattr(importlib.import_module("assoc.scan"), "PROGRESS_EVERY", 7)  # not assoc.scan: the function
    calls.clear()
    scan(read_bundle(tmp_path / "bundle", progress=record), SETTINGS, progress=record)
    stages = _stages(calls)
    for stage in ("read signals.csv", "read products.csv", "compare pairs", "score pairs", "pair results"):
        total = stages[stage][0][1]
        between = [d for d, _ in stages[stage] if 0 < d < total]
        assert len(between) >= 2, (stage, stages[stage])


def test_reading_a_jsonl_bundle_reports_progress(tmp_path):
    generate(tmp_path / "bundle", stores=12, seed=2, fmt="jsonl")
    calls: list[tuple[str, int, int | None]] = []
    read_bundle(tmp_path / "bundle", progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = _stages(calls)
    assert list(stages) == ["read stores.jsonl", "read stores.jsonl: signals and products"]
    assert stages["read stores.jsonl: signals and products"] == [(0, 12), (12, 12)]
