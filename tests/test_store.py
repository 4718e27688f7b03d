"""The persistent index: idempotent adds, replacement, removal, crash resume, schema versions, scan from it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc import Settings, read_bundle
from assoc.cli import main
from assoc.records import Bundle, Signal
from assoc.store import SCHEMA_VERSION, IndexStore, IndexStoreError, UnknownStoreError
from fixtures.market import generate

SETTINGS = Settings(cache_dir=None)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "bundle"
    generate(path, stores=40, seed=3)
    return path


def _build(path: Path, bundle: Bundle, **kwargs) -> IndexStore:
    index = IndexStore.open(path, create=True)
    index.add_bundle(bundle, SETTINGS, **kwargs)
    return index


def test_re_adding_the_same_data_changes_nothing(tmp_path, bundle_dir):
    bundle = read_bundle(bundle_dir)
    with _build(tmp_path / "i.db", bundle) as index:
        before = index.dump()
        report = index.add_bundle(bundle, SETTINGS)
        assert (report.added, report.updated, report.unchanged, report.catalog_refreshed) == (0, 0, 40, False)
        assert index.dump() == before
        assert index.stats(25)["stores"] == 40


def test_a_changed_store_replaces_its_rows(tmp_path, bundle_dir):
    bundle = read_bundle(bundle_dir)
    target = next(iter(bundle.stores))
    changed = Bundle(root=bundle.root, stores=bundle.stores,
                     signals=[s for s in bundle.signals if s.store_id != target]
                     + [Signal(target, "phone", "+86 139 0000 1111")],
                     products=bundle.products)
    with _build(tmp_path / "i.db", bundle) as index:
        report = index.add_bundle(changed, SETTINGS)
        assert (report.added, report.updated, report.unchanged) == (0, 1, 39)
        assert [s.value for s in index.store_record(target).signals] == ["+86 139 0000 1111"]
        # the key counts are those of an index built from the changed bundle in one go
        with _build(tmp_path / "fresh.db", changed) as fresh:
            assert index.dump()["keys"] == fresh.dump()["keys"]
            assert index.dump()["text_tokens"] == fresh.dump()["text_tokens"]


def test_remove_takes_every_row_and_count_with_it(tmp_path, bundle_dir):
    bundle = read_bundle(bundle_dir)
    target = next(iter(bundle.stores))
    rest = Bundle(root=bundle.root, stores={k: v for k, v in bundle.stores.items() if k != target},
                  signals=[s for s in bundle.signals if s.store_id != target],
                  products=[p for p in bundle.products if p.store_id != target])
    with _build(tmp_path / "i.db", bundle) as index, _build(tmp_path / "rest.db", rest) as expected:
        index.remove_store(target)
        assert not index.has_store(target)
        got, want = index.dump(), expected.dump()
        for table in ("keys", "text_tokens"):
            assert got[table] == want[table], table
        with pytest.raises(UnknownStoreError, match="no store 'NOPE'"):
            index.remove_store("NOPE")


def test_an_interrupted_add_is_completed_by_the_next_run(tmp_path, bundle_dir):
    bundle = read_bundle(bundle_dir)
    with _build(tmp_path / "whole.db", bundle, batch_stores=7) as whole:
        expected = whole.dump()

    class Killed(Exception):
        pass

    def kill_after_two_batches(stage: str, done: int, total: int | None) -> None:
        if stage == "index: write stores" and done >= 14:
            raise Killed

    index = IndexStore.open(tmp_path / "i.db", create=True)
    with pytest.raises(Killed):
        index.add_bundle(bundle, SETTINGS, batch_stores=7, progress=kill_after_two_batches)
    index.close()
    with IndexStore.open(tmp_path / "i.db") as index:
        assert index.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert index.stats(25)["stores"] == 14 and index.meta("catalog") == "stale"
        report = index.add_bundle(bundle, SETTINGS, batch_stores=7)
        assert report.added == 26 and report.catalog_refreshed
        assert index.dump() == expected


def test_other_schema_versions_and_foreign_files_are_refused(tmp_path, bundle_dir):
    path = tmp_path / "i.db"
    _build(path, read_bundle(bundle_dir)).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(IndexStoreError, match="written by a newer assoc"):
        IndexStore.open(path)
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 0")
    with pytest.raises(IndexStoreError, match="no migration exists"):
        IndexStore.open(path)
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE t (x)")
    with pytest.raises(IndexStoreError, match="not an assoc index"):
        IndexStore.open(foreign)
    with pytest.raises(IndexStoreError, match="no index there"):
        IndexStore.open(tmp_path / "missing.db")


def test_scan_from_the_index_writes_the_same_files(tmp_path, bundle_dir):
    runner = CliRunner()
    db = tmp_path / "i.db"
    assert runner.invoke(main, ["index", "add", str(bundle_dir), "--db", str(db), "-q", "--no-cache"]).exit_code == 0
    direct = runner.invoke(main, ["scan", str(bundle_dir), "--out", str(tmp_path / "a"), "-q", "--no-cache"])
    indexed = runner.invoke(main, ["scan", "--db", str(db), "--out", str(tmp_path / "b"), "-q", "--no-cache"])
    assert direct.exit_code == 0 and indexed.exit_code == 0, indexed.output
    for name in ("pairs.csv", "clusters.csv", "hubs.csv", "evidence.jsonl", "catalog_matches.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    both = runner.invoke(main, ["scan", str(bundle_dir), "--db", str(db), "--out", str(tmp_path / "c")])
    assert both.exit_code == 2 and "give either BUNDLE or --db INDEX" in both.output


def test_stores_from_two_bundles_come_back_in_order(tmp_path, bundle_dir):
    bundle = read_bundle(bundle_dir)
    ids = list(bundle.stores)
    first, second = ids[:25], ids[25:]

    def part(keep: list[str]) -> Bundle:
        wanted = set(keep)
        return Bundle(root=bundle.root, stores={k: bundle.stores[k] for k in keep},
                      signals=[s for s in bundle.signals if s.store_id in wanted],
                      products=[p for p in bundle.products if p.store_id in wanted])

    with IndexStore.open(tmp_path / "i.db", create=True) as index:
        index.add_bundle(part(first), SETTINGS)
        index.add_bundle(part(second), SETTINGS)
        rebuilt = index.load_bundle()
    assert list(rebuilt.stores) == ids
    assert rebuilt.signals == part(first).signals + part(second).signals
    assert rebuilt.products == part(first).products + part(second).products


def test_cli_index_stats_and_remove(tmp_path, bundle_dir):
    runner = CliRunner()
    db = tmp_path / "i.db"
    added = runner.invoke(main, ["index", "add", str(bundle_dir), "--db", str(db), "--no-cache"])
    assert added.exit_code == 0 and "added 40, updated 0, unchanged 0 stores" in added.output
    stats = runner.invoke(main, ["index", "stats", "--db", str(db)])
    assert stats.exit_code == 0 and "stores                 40" in stats.output
    store = next(iter(read_bundle(bundle_dir).stores))
    assert runner.invoke(main, ["index", "remove", store, "--db", str(db)]).exit_code == 0
    again = runner.invoke(main, ["index", "remove", store, "--db", str(db)])
    assert again.exit_code == 2 and f"no store {store!r}" in again.output
    missing = runner.invoke(main, ["index", "stats", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no index there" in missing.output


def test_images_are_fingerprinted_once_per_picture(tmp_path):
    generate(tmp_path / "bundle", stores=12, seed=2, images=True)
    bundle = read_bundle(tmp_path / "bundle")
    with _build(tmp_path / "i.db", bundle) as index:
        pictures = {p for product in bundle.products for p in product.images}
        stored = index.connection.execute("SELECT count(*) FROM product_images WHERE digest IS NOT NULL").fetchone()
        assert stored[0] == sum(len(p.images) for p in bundle.products) and pictures
        fingerprints = index.connection.execute("SELECT count(*) FROM images WHERE fingerprint IS NOT NULL")
        assert fingerprints.fetchone()[0] >= 1


def test_every_write_transaction_is_counted_and_the_count_is_not_data(tmp_path, bundle_dir):
    """Readers that keep index state in memory (assoc.check) compare IndexStore.writes() to know it is valid."""
    bundle = read_bundle(bundle_dir)
    with _build(tmp_path / "i.db", bundle, batch_stores=7) as index:
        after_add = index.writes()
        assert after_add >= 7  # one per batch of stores, one for the catalog refresh
        dump = index.dump()
        assert "writes" not in {key for key, _ in dump["meta"]}
        index.add_bundle(bundle, SETTINGS)  # nothing to write: no transaction
        assert index.writes() == after_add
        index.remove_store(next(iter(bundle.stores)))
        assert index.writes() == after_add + 1
    with IndexStore.open(tmp_path / "new.db", create=True) as empty:
        assert empty.writes() == 0
