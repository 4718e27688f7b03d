"""Pre-flight checks against the index give the pairs and scores a full scan gives for the candidate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assoc import Settings, read_bundle, scan
from assoc.check import check_store, links, merge, prewarm, prewarmed, put_store, records_of
from assoc.cli import main
from assoc.index import build_index
from assoc.records import Bundle, Product, Signal
from assoc.store import IndexStore, StoreRecord, UnknownStoreError
from fixtures.market import generate

SETTINGS = Settings(cache_dir=None)


def _without(bundle: Bundle, drop: set[str]) -> Bundle:
    return Bundle(root=bundle.root, stores={k: v for k, v in bundle.stores.items() if k not in drop},
                  signals=[s for s in bundle.signals if s.store_id not in drop],
                  products=[p for p in bundle.products if p.store_id not in drop])


def _with(bundle: Bundle, record: StoreRecord) -> Bundle:
    """`bundle` with `record` in place of (or added as) its store: what a full scan would read."""
    store_id = record.store.store_id
    rest = _without(bundle, {store_id})
    return Bundle(root=bundle.root, stores={**rest.stores, store_id: record.store},
                  signals=rest.signals + list(record.signals), products=rest.products + list(record.products))


def _scan_pairs(bundle: Bundle, store_id: str) -> dict:
    """The store's direct pairs in a full scan: score without cluster paths, as a check reports them."""
    out = {}
    for p in scan(bundle, SETTINGS).pairs:
        if store_id in (p.store_a, p.store_b) and "via:cluster" not in p.reasons:
            out[(p.store_a, p.store_b)] = _row(p)
    return out


def _row(p) -> tuple:
    overlap = None if p.catalog_overlap is None else round(p.catalog_overlap, 9)
    return round(p.operator_score, 9), p.linked, overlap, tuple(r for r in p.reasons if r != "via:cluster")


def _check_pairs(result) -> dict:
    return {(p.store_a, p.store_b): _row(p) for p in result.pairs}


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Bundle:
    path = tmp_path_factory.mktemp("check") / "bundle"
    generate(path, stores=70, seed=4)
    return read_bundle(path)


@pytest.fixture(scope="module")
def held_out(market, tmp_path_factory):
    """An index of the market less eight stores, and those stores."""
    held = sorted(market.stores)[::9][:8]
    path = tmp_path_factory.mktemp("held") / "i.db"
    with IndexStore.open(path, create=True) as index:
        index.add_bundle(_without(market, set(held)), SETTINGS)
    return path, held


def test_check_equals_a_full_scan_for_new_stores(market, held_out):
    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    compared = 0
    with IndexStore.open(path) as index:
        for store_id in held:
            expected = _scan_pairs(_without(market, set(held) - {store_id}), store_id)
            got = _check_pairs(check_store(index, records[store_id], SETTINGS))
            assert got == expected, store_id
            compared += len(expected)
    assert compared >= 10  # the held-out stores do have pairs: the comparison is not vacuous


def _hub_row(hub) -> tuple:
    return hub.kind, hub.value, hub.stores, hub.note.split(":")[0]


def test_check_lists_the_hubs_a_full_scan_lists_for_the_store(market, held_out):
    """The candidate's values that hubs.csv would list (ignored, shared infrastructure, down-weighted), with the
    same counts, treatment and order. (How many holder pairs are corroborated may differ by one or two: a check
    judges the values that corroborate them by the holder pairs it sees, assoc/check.py says why.)"""
    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    listed = 0
    with IndexStore.open(path) as index:
        for store_id in held:
            record = records[store_id]
            own = build_index(Bundle(root=market.root, stores={store_id: record.store},
                                     signals=list(record.signals))).postings
            expected = [_hub_row(h) for h in scan(_without(market, set(held) - {store_id}), SETTINGS).hubs
                        if (h.kind, h.value) in own]
            assert [_hub_row(h) for h in check_store(index, record, SETTINGS).hubs] == expected, store_id
            listed += len(expected)
    assert listed >= 3  # the held-out stores do hold such values: the comparison is not vacuous


def test_check_equals_a_full_scan_without_products(market, tmp_path):
    signals_only = Bundle(root=market.root, stores=market.stores, signals=market.signals, products=[])
    held = sorted(market.stores)[1::7][:6]
    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(_without(signals_only, set(held)), SETTINGS)
        for record in records_of(signals_only):
            if record.store.store_id in held:
                expected = _scan_pairs(_without(signals_only, set(held) - {record.store.store_id}),
                                       record.store.store_id)
                assert _check_pairs(check_store(index, record, SETTINGS)) == expected
                assert prewarm(index) or prewarmed(index)  # an index without listings in memory: nothing
                assert _check_pairs(check_store(index, record, SETTINGS)) == expected


def test_check_weighs_a_value_by_the_corroborated_group_of_its_holders_as_a_scan_does(make_bundle, tmp_path):
    """Ten stores behind one payout account, each sharing a name with the next: the names chain them into
    one group, so every pair is linked by the account (assoc.evidence.ValueSupport). A store in the middle
    of the chain, checked against the other nine, gets the scan's pairs."""
    ids = [f"S{n}" for n in range(10)]
    names = ["Li Na", "Wang Fang", "Zhang Wei", "Liu Yang", "Chen Jing", "Yang Min", "Zhao Lei", "Huang Yan",
             "Zhou Tao"]
    signals = [{"store_id": s, "kind": "payment_account", "value": "pingpong: 8830 2946 3909"} for s in ids]
    for name, (a, b) in zip(names, zip(ids, ids[1:], strict=False), strict=False):
        signals += [{"store_id": s, "kind": "person_name", "value": name} for s in (a, b)]
    bundle = read_bundle(make_bundle([{"store_id": s, "country": "CN"} for s in ids], signals).csv_dir)
    expected = _scan_pairs(bundle, "S5")
    assert len(expected) == 9 and all(row[1] for row in expected.values())
    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(_without(bundle, {"S5"}), SETTINGS)
        record = next(r for r in records_of(bundle) if r.store.store_id == "S5")
        assert _check_pairs(check_store(index, record, SETTINGS)) == expected


@pytest.mark.parametrize(("seen_indexed", "seen_candidate", "neighbours", "linked"), [
    ("2024-05-01T10:00:00Z", "", 0, True),    # the candidate's sighting lost its time: the gap is unknown
    ("", "2024-05-01T10:00:00Z", 0, True),    # the indexed store's did
    ("", "", 0, False),                       # no time on either side: one IP alone
    ("2024-05-01T10:00:00Z", "", 3, False),   # three more stores in the IP's /24: a busy pool
])
def test_check_weighs_an_undated_ip_as_a_scan_does(make_bundle, tmp_path, seen_indexed, seen_candidate,
                                                   neighbours, linked):
    pool = [f"P{n}" for n in range(neighbours)]
    stores = [{"store_id": s} for s in ("A", "B", "F", *pool)]
    signals = [{"store_id": "A", "kind": "ip", "value": "81.2.69.160", "seen_at": seen_indexed},
               {"store_id": "B", "kind": "ip", "value": "81.2.69.160", "seen_at": seen_candidate},
               {"store_id": "F", "kind": "email", "value": "filler@example.org"}]
    signals += [{"store_id": s, "kind": "ip", "value": f"81.2.69.{10 + n}"} for n, s in enumerate(pool)]
    bundle = read_bundle(make_bundle(stores, signals).csv_dir)
    expected = _scan_pairs(bundle, "B")
    assert any(row[1] for row in expected.values()) is linked
    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(_without(bundle, {"B"}), SETTINGS)
        record = next(r for r in records_of(bundle) if r.store.store_id == "B")
        assert _check_pairs(check_store(index, record, SETTINGS)) == expected


def test_an_indexed_store_with_new_listings_and_signals(market, tmp_path):
    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(market, SETTINGS)
        ids = sorted(market.stores)
        target, donor = ids[3], ids[40]
        copied = [Product(target, f"new-{p.product_id}", p.title, p.description)
                  for p in market.products if p.store_id == donor][:5]
        donor_phone = next(s for s in market.signals if s.store_id == donor and s.kind == "phone")
        extra = StoreRecord(store=market.stores[target], root=market.root,
                            signals=(Signal(target, "phone", donor_phone.value, donor_phone.seen_at),),
                            products=tuple(copied))
        result = check_store(index, extra, SETTINGS)
        merged = merge(index.store_record(target), extra)
        assert result.known and result.listings == len(merged.products)
        assert _check_pairs(result) == _scan_pairs(_with(market, merged), target)
        assert any(donor in (p.store_a, p.store_b) and p.linked for p in result.pairs)


def test_links_are_the_scan_pairs_of_an_indexed_store(market, tmp_path):
    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(market, SETTINGS)
        for store_id in sorted(market.stores)[5::20]:
            assert _check_pairs(links(index, store_id, SETTINGS)) == _scan_pairs(market, store_id)
        with pytest.raises(UnknownStoreError):
            links(index, "NOPE", SETTINGS)


def _indexed_copy(path, tmp_path):
    """A writable index of the same stores as the one at `path` (tests that write must not touch it)."""
    copy = tmp_path / "i.db"
    with IndexStore.open(path) as source, IndexStore.open(copy, create=True) as index:
        index.add_bundle(source.load_bundle(), SETTINGS)
    return copy


def test_put_store_makes_identifier_links_exact_at_once(market, held_out, tmp_path):
    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    copy = _indexed_copy(path, tmp_path)
    with IndexStore.open(copy) as index:
        assert put_store(index, records[held[0]], SETTINGS)
        assert not put_store(index, records[held[0]], SETTINGS)  # the same content again: nothing written
        assert index.meta("catalog") == "stale"
        result = links(index, held[0], SETTINGS)
        expected = _scan_pairs(_without(market, set(held) - {held[0]}), held[0])
        assert {k: v[:2] for k, v in _check_pairs(result).items() if v[0] > 0} == \
            {k: v[:2] for k, v in expected.items() if v[0] > 0}


def test_cli_exit_codes(market, held_out, tmp_path):
    path, held = held_out
    runner = CliRunner()
    records = {r.store.store_id: r for r in records_of(market)}
    with IndexStore.open(path) as index:
        associated = next(s for s in held if check_store(index, records[s], SETTINGS).associated)
    record = records[associated]
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({
        "store_id": associated, "country": record.store.country,
        "signals": [{"kind": s.kind, "value": s.value, "seen_at": s.seen_at.isoformat() if s.seen_at else ""}
                    for s in record.signals],
        "products": [{"product_id": p.product_id, "title": p.title} for p in record.products]}))
    result = runner.invoke(main, ["check", str(candidate), "--db", str(path)])
    assert result.exit_code == 1 and f"{associated}: ASSOCIATED" in result.output
    as_json = runner.invoke(main, ["check", str(candidate), "--db", str(path), "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.output)[0]["associated"] is True
    clear = tmp_path / "clear.json"
    clear.write_text(json.dumps({"store_id": "LONER", "signals": [{"kind": "email", "value": "x9q@example.org"}]}))
    result = runner.invoke(main, ["check", str(clear), "--db", str(path)])
    assert result.exit_code == 0 and "LONER: clear" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"store_id": "B", "signals": [{"kind": "ip", "value": ""}]}))
    result = runner.invoke(main, ["check", str(bad), "--db", str(path)])
    assert result.exit_code == 2 and "empty value for kind 'ip'" in result.output
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(main, ["check", str(broken), "--db", str(path)])
    assert result.exit_code == 2 and "not JSON" in result.output
    result = runner.invoke(main, ["check", str(clear), "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no index there" in result.output


def test_check_of_a_bundle_checks_each_store(market, held_out, tmp_path):
    path, held = held_out
    generate(tmp_path / "small", stores=3, seed=9)
    result = CliRunner().invoke(main, ["check", str(tmp_path / "small"), "--db", str(path), "--json"])
    assert result.exit_code in (0, 1)
    assert len(json.loads(result.output)) == 3


# ------------------------------------------------------------------------------- the fast paths are the same


def test_similarities_are_text_similarity_bit_for_bit(market):
    """check._Norms computes assoc.text.text_similarity with its per-text parts computed once: same floats;
    `match` is the same score where it reaches the matching threshold."""
    from assoc.check import _Norms
    from assoc.text import Normaliser, text_similarity, token_weights

    normaliser = Normaliser()
    texts = [normaliser.normalise(p.title, p.description) for p in market.products]
    weights = token_weights(texts)
    norms = _Norms(weights)
    by_key: dict = {}
    for text in texts:
        by_key.setdefault(text.key, []).append(text)
    compared = matched = 0
    for group in by_key.values():
        for a in group[:40]:
            for b in group[:40]:
                expected = text_similarity(a, b, weights=weights)
                assert norms.similarity(a, b) == expected
                assert norms.match(a, b) == (expected if expected >= 0.55 else None)
                compared += 1
                matched += expected >= 0.55
    assert norms.similarity(texts[0], next(t for t in texts if t.key != texts[0].key)) == 0.0
    assert compared > 1000 and matched > 50


def test_candidate_search_ranks_as_the_counting_search():
    """check._compared (set operations) picks the listings the plain counting search picks."""
    import random
    from collections import Counter

    from assoc.check import MAX_COMPARED, RARE_BLOCK_LISTINGS, _compared

    def counting(blocks):
        shared, rare = Counter(), set()
        for ids in blocks:
            shared.update(ids or [])
            if len(ids or []) <= RARE_BLOCK_LISTINGS:
                rare.update(ids or [])
        ranked = sorted({i for i, n in shared.items() if n >= 2} | rare, key=lambda i: (-shared[i], i))
        return set(ranked[:MAX_COMPARED])

    rng = random.Random(7)
    for _ in range(3000):
        universe = rng.randint(1, 300)
        blocks = [None if rng.random() < 0.1 else
                  frozenset(rng.sample(range(universe), min(universe, rng.choice([0, 1, 5, 30, 31, 80, 200]))))
                  for _ in range(rng.randint(0, 5))]
        if blocks and rng.random() < 0.1:
            blocks.append(blocks[0])  # the same block twice counts twice, as in the counting search
        assert set(_compared(blocks)) == counting(blocks)


def test_common_threshold_from_the_histogram_is_common_store_count():
    import random

    import numpy as np

    from assoc.catalog import common_store_count
    from assoc.check import _common_threshold

    rng = random.Random(3)
    cases = [{}, {1: 5}, {2: 1}, {2: 2, 3: 2}, {1: 2, 2: 3, 3: 1}, {1: 1, 4: 3, 9: 1}]
    cases += [{rng.randint(1, 40): rng.randint(0, 50) for _ in range(rng.randint(1, 12))} for _ in range(300)]
    for histogram in cases:
        sizes = np.repeat(np.array(sorted(histogram), dtype=np.int64), [histogram[k] for k in sorted(histogram)])
        assert _common_threshold(histogram) == common_store_count(sizes), histogram


@pytest.mark.parametrize("record", [
    {"store_id": "B", "signals": [{"kind": "ip", "value": ""}, {"kind": "", "value": "x"}]},
    {"store_id": "B", "signals": [{"kind": "ip", "value": "1.2.3.4", "seen_at": "yesterday"}],
     "products": [{"product_id": "P1", "price": "cheap"}, {"product_id": "P1"}, {"title": "no id"}]},
    {"store_id": "", "signals": [{"kind": "ip", "value": "1.2.3.4"}]},
    {"store_id": "B", "created_at": "soon"},
    {"store_id": "B", "signals": {"kind": "ip"}, "products": ["x", {"store_id": "C", "product_id": "P"}]},
    {"store_id": "B", "signals": [{"kind": "phone", "value": None}], "products": [{"product_id": 7, "price": 1e400}]},
])
def test_a_candidate_record_is_validated_as_the_bundle_reader_validates_it(record, tmp_path):
    """In memory, the same problems and messages as read_bundle gives for the record as one stores.jsonl line."""
    from assoc.check import candidate_from_record
    from assoc.errors import BundleError

    path = tmp_path / "candidate.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(BundleError) as expected:
        read_bundle(path)
    with pytest.raises(BundleError) as got:
        candidate_from_record(record, root=tmp_path)
    assert got.value.problems == expected.value.problems


@pytest.mark.parametrize("record", [
    {"store_id": "B", "products": [{"product_id": "P1", "title": "mug \ud800 300ml"}]},
    {"store_id": "B", "signals": [{"kind": "ip", "value": "1.2.3.4", "\udc80": "x"}]},
])
def test_a_candidate_record_with_a_lone_surrogate_is_refused(record, tmp_path):
    """JSON may escape half a surrogate pair ("\\ud800"): text no UTF-8 index can store."""
    from assoc.check import candidate_from_record
    from assoc.errors import BundleError

    with pytest.raises(BundleError) as got:
        candidate_from_record(record, root=tmp_path)
    assert "candidate.jsonl line 1: bad encoding" in "\n".join(got.value.problems)


def test_a_valid_candidate_record_reads_as_the_bundle_reader_reads_it(market, tmp_path):
    from assoc.check import candidate_from_record

    record = {"store_id": " S1 ", "name": "n", "country": "de", "created_at": "2024-01-02",
              "signals": [{"kind": "IP", "value": " 10.0.0.1 ", "seen_at": "2024-05-01T10:00:00+02:00"},
                          {"kind": "phone", "value": "+49 30 1234567"}],
              "products": [{"product_id": "P1", "title": "Red mug 300ml", "price": 9.5, "currency": "eur",
                            "images": ["a.jpg", "b.jpg"]}, {"product_id": "P2", "description": "Model: K20"}]}
    path = tmp_path / "candidate.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    expected = read_bundle(path)
    got = candidate_from_record(record, root=tmp_path)
    assert (got.stores, got.signals, got.products) == (expected.stores, expected.signals, expected.products)
    assert records_of(got) == records_of(Bundle(root=tmp_path, stores=expected.stores, signals=expected.signals,
                                                 products=expected.products))


def test_checks_see_every_write_made_after_them(market, held_out, tmp_path):
    """State kept across checks (check._Hot) is dropped when the index is written, by any connection."""
    from assoc.check import _HOT
    from assoc.decisions import decide_pair

    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    copy = _indexed_copy(path, tmp_path)
    candidate = records[next(s for s in held if _scan_pairs(_without(market, set(held) - {s}), s))]
    with IndexStore.open(copy) as reader, IndexStore.open(copy) as writer:
        first = check_store(reader, candidate, SETTINGS)
        linked = [p for p in first.pairs if p.linked]
        assert linked and check_store(reader, candidate, SETTINGS) == first  # the kept state gives the same
        before = writer.writes()
        pair = (linked[0].store_a, linked[0].store_b)
        other = pair[0] if pair[1] == candidate.store.store_id else pair[1]
        decide_pair(writer, other, next(s for s in sorted(market.stores) if s not in held and s != other),
                    "dismissed", reviewer="t")  # a decision about another pair: a write all the same
        assert writer.writes() == before + 1
        _HOT.clear()
        assert check_store(reader, candidate, SETTINGS) == first
        writer.remove_store(other)
        after = check_store(reader, candidate, SETTINGS)
        assert other not in {p.store_a for p in after.pairs} | {p.store_b for p in after.pairs}
        _HOT.clear()  # what a fresh process computes
        assert check_store(reader, candidate, SETTINGS) == after


def test_checks_from_listing_tables_in_memory_are_the_checks_from_the_file(market, held_out, tmp_path):
    from assoc.check import _HOT

    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    copy = _indexed_copy(path, tmp_path)
    with IndexStore.open(copy) as index:
        _HOT.clear()
        from_file = [check_store(index, records[s], SETTINGS) for s in held]
        assert not prewarmed(index)
        assert prewarm(index) and prewarmed(index) and not prewarm(index)
        assert [check_store(index, records[s], SETTINGS) for s in held] == from_file
        assert put_store(index, records[held[0]], SETTINGS)
        assert not prewarmed(index)  # written since: checks read the file again
        assert prewarm(index) and prewarmed(index)
        _HOT.clear()
        prewarm(index)
        in_memory = [check_store(index, records[s], SETTINGS) for s in held[1:]]
        _HOT.clear()
        assert in_memory == [check_store(index, records[s], SETTINGS) for s in held[1:]]


def test_after_prewarm_a_check_reads_no_store_group_or_token_map_from_the_file(market, held_out, tmp_path,
                                                                               monkeypatch):
    from assoc.check import _HOT

    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    with IndexStore.open(_indexed_copy(path, tmp_path)) as index:
        _HOT.clear()
        from_file = [check_store(index, records[s], SETTINGS) for s in held]
        _HOT.clear()
        assert prewarm(index)
        for read in ("token_counts", "group_counts", "store_groups", "store_keys", "group_sizes", "group_holders"):
            monkeypatch.setattr(index, read, lambda *args, read=read, **kwargs: pytest.fail(f"{read} read the file"))
        # the held-out stores' own title tokens include some the index has never seen: known absent, not read
        assert [check_store(index, records[s], SETTINGS) for s in held] == from_file


def test_checks_are_the_same_when_the_bounded_maps_are_emptied_mid_check(market, held_out, tmp_path, monkeypatch):
    """Past MAX_ENTRIES a map is emptied and refilled: the keys a check wants that the map held before
    must be read again, not lost (a KeyError, or the default for an absent key)."""
    from assoc.check import _HOT, _Hot

    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    with IndexStore.open(_indexed_copy(path, tmp_path)) as index:
        _HOT.clear()
        unbounded = [check_store(index, records[s], SETTINGS) for s in held]
        _HOT.clear()
        monkeypatch.setattr(_Hot, "MAX_ENTRIES", 8)
        assert [check_store(index, records[s], SETTINGS) for s in held] == unbounded
