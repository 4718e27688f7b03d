"""Pre-flight checks against the index give the pairs and scores a full scan gives for the candidate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assoc import Settings, read_bundle, scan
from assoc.check import check_store, links, merge, put_store, records_of
from assoc.cli import main
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


def test_put_store_makes_identifier_links_exact_at_once(market, held_out, tmp_path):
    path, held = held_out
    records = {r.store.store_id: r for r in records_of(market)}
    copy = tmp_path / "i.db"
    with IndexStore.open(path) as source, IndexStore.open(copy, create=True) as index:
        index.add_bundle(source.load_bundle(), SETTINGS)
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
