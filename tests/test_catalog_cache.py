"""The catalog comparison cache: an unchanged catalog is not compared again, any change is."""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import pytest

from assoc import Settings, read_bundle, scan
from assoc.catalog import compare_catalogs
from assoc.catalog_cache import KEEP, compare_catalogs_cached
from fixtures.market import generate


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    generate(tmp_path / "bundle", stores=40, seed=3, images=True)
    return tmp_path / "bundle"


def _cached(bundle_dir: Path, settings: Settings):
    bundle = read_bundle(bundle_dir)
    return compare_catalogs_cached(bundle.products, bundle.root, settings)


def test_second_comparison_is_served_from_the_cache_and_equal(bundle_dir: Path, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    first = _cached(bundle_dir, settings)
    second = _cached(bundle_dir, settings)
    assert first.stats["catalog_from_cache"] == 0 and first.overlaps and first.matches
    assert second.stats["catalog_from_cache"] == 1 and second.stats["images_hashed"] == 0
    for part in ("overlaps", "matches", "group_of", "group_stores", "rejected"):
        assert getattr(second, part) == getattr(first, part), part
    bundle = read_bundle(bundle_dir)
    fresh = compare_catalogs(bundle.products, bundle.root, Settings(cache_dir=None))
    assert (fresh.overlaps, fresh.matches, fresh.group_of) == (second.overlaps, second.matches, second.group_of)


def test_whole_scan_is_the_same_with_the_cached_catalog(bundle_dir: Path, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    first, second = scan(read_bundle(bundle_dir), settings), scan(read_bundle(bundle_dir), settings)
    assert second.stats["catalog_from_cache"] == 1
    assert second.pairs == first.pairs and second.clusters == first.clusters


def _rewrite_products(bundle_dir: Path, change) -> None:
    path = bundle_dir / "products.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    change(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_any_change_to_what_the_comparison_reads_is_a_miss(bundle_dir: Path, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    assert _cached(bundle_dir, settings).stats["catalog_from_cache"] == 0

    # settings the comparison does not read: still a hit
    assert _cached(bundle_dir, settings.replace(link_threshold=0.9, hub_cap=5)).stats["catalog_from_cache"] == 1
    # one a comparison reads: a miss
    assert _cached(bundle_dir, settings.replace(catalog_report_floor=0.2)).stats["catalog_from_cache"] == 0

    def retitle(rows: list[dict]) -> None:
        rows[0]["title"] += " v2"
    _rewrite_products(bundle_dir, retitle)
    assert _cached(bundle_dir, settings).stats["catalog_from_cache"] == 0
    assert _cached(bundle_dir, settings).stats["catalog_from_cache"] == 1

    picture = next((bundle_dir / "images").rglob("*.*"))
    picture.write_bytes(picture.read_bytes() + b"\0")   # same name, other bytes
    changed = _cached(bundle_dir, settings)
    assert changed.stats["catalog_from_cache"] == 0 and changed.stats["images_hashed"] == 1

    os.utime(picture, ns=(1_000_000_000, 1_000_000_000))   # only touched: the rule the hash cache trusts too
    assert _cached(bundle_dir, settings).stats["catalog_from_cache"] == 0
    picture.unlink()
    missing = _cached(bundle_dir, settings)
    assert missing.stats["catalog_from_cache"] == 0 and any("missing" in r.reason for r in missing.rejected)


def test_no_cache_dir_keeps_nothing(bundle_dir: Path, tmp_path: Path) -> None:
    settings = Settings(cache_dir=None)
    assert _cached(bundle_dir, settings).stats.get("catalog_from_cache") is None
    assert _cached(bundle_dir, settings).stats.get("catalog_from_cache") is None


def test_damaged_entry_is_recomputed_and_only_the_newest_are_kept(bundle_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    settings = Settings(cache_dir=cache)
    expected = _cached(bundle_dir, settings)
    with sqlite3.connect(cache / "catalog-results.sqlite") as db:
        db.execute("UPDATE results SET payload = ?", (b"not a result",))
    again = _cached(bundle_dir, settings)
    assert again.stats["catalog_from_cache"] == 0 and again.overlaps == expected.overlaps
    assert _cached(bundle_dir, settings).stats["catalog_from_cache"] == 1

    for floor in (0.11, 0.12, 0.13, 0.14, 0.15):
        _cached(bundle_dir, settings.replace(catalog_report_floor=floor))
    with sqlite3.connect(cache / "catalog-results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == KEEP
    assert _cached(bundle_dir, settings.replace(catalog_report_floor=0.15)).stats["catalog_from_cache"] == 1
