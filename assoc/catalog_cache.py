"""The catalog comparison of an unchanged catalog, kept from the last scans.

Comparing catalogs (text normalisation, nearest neighbours, picture verification, grouping) is
most of a scan's time, and the usual rescan does not change the catalog: it applies review
decisions, a trained model or new thresholds to the same export. So the result is stored,
under `cache_dir / "catalog-results.sqlite"`, keyed by a SHA-256 of everything it depends on:

- every listing, in order: store, product id, title, description, picture references;
- every local picture's path, size and modification time (what the image hash cache trusts);
- the settings the comparison reads (use_text, use_images, catalog_report_floor);
- the source of the modules that compute it (catalog, text, images) and the versions of the
  libraries they call (numpy, scipy, OpenCV, Pillow), so new code never reads an old result.

Any change to any of these misses and recomputes everything; image fingerprints are still
served by their own per-file cache. The newest KEEP results are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy
import PIL
import scipy

from . import catalog, images, text
from .catalog import CatalogMatch, CatalogResult, PairOverlap, compare_catalogs
from .records import Product, Progress, RejectedRow, no_progress
from .settings import Settings

KEEP = 4
FORMAT = 1


@cache
def _code_digest() -> str:
    # The libraries' versions too: an upgrade may move a similarity or a pixel by a hair.
    libraries = f"{numpy.__version__} {scipy.__version__} {cv2.__version__} {PIL.__version__}"
    digest = hashlib.sha256(f"format {FORMAT}; {libraries}".encode())
    for module in (catalog, text, images):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def catalog_key(products: Sequence[Product], bundle_root: Path, settings: Settings) -> str:
    """The digest of everything compare_catalogs(products, bundle_root, settings) depends on."""
    digest = hashlib.sha256(_code_digest().encode())
    digest.update(json.dumps([settings.use_text, settings.use_images, settings.catalog_report_floor]).encode())
    pictures: set[str] = set()
    for product in products:
        digest.update(json.dumps([product.store_id, product.product_id, product.title, product.description,
                                  product.images], ensure_ascii=False).encode())
        pictures.update(ref for ref in product.images if not ref.startswith(("http://", "https://")))
    for ref in sorted(pictures):
        try:
            stat = os.stat(bundle_root / ref)
            digest.update(f"{ref}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError as exc:   # a missing picture is part of the state too (it is rejected)
            digest.update(f"{ref}\0{type(exc).__name__}\n".encode())
    return digest.hexdigest()


def _encode(result: CatalogResult, products: Sequence[Product]) -> bytes:
    payload = {
        "overlaps": [[o.store_a, o.store_b, o.overlap, o.share_a, o.share_b, o.shared_groups, o.common_groups]
                     for o in result.overlaps.values()],
        "matches": [[m.store_a, m.product_a, m.store_b, m.product_b, m.text_similarity, m.image_distance]
                    for m in result.matches],
        "groups": [result.group_of[p.store_id, p.product_id] for p in products],
        "group_stores": [result.group_stores[g] for g in range(len(result.group_stores))],
        "rejected": [[r.file, r.line, r.reason, r.content] for r in result.rejected],
        "stats": result.stats,
    }
    return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 1)


def _decode(blob: bytes, products: Sequence[Product]) -> CatalogResult:
    payload = json.loads(zlib.decompress(blob))
    overlaps = [PairOverlap(*row) for row in payload["overlaps"]]
    return CatalogResult(
        overlaps={(o.store_a, o.store_b): o for o in overlaps},
        matches=[CatalogMatch(*row) for row in payload["matches"]],
        group_of={(p.store_id, p.product_id): g for p, g in zip(products, payload["groups"], strict=True)},
        group_stores=dict(enumerate(payload["group_stores"])),
        rejected=[RejectedRow(*row) for row in payload["rejected"]],
        stats=payload["stats"])


class CatalogCache:
    """Catalog results by catalog_key; `cache_dir=None` keeps nothing."""

    def __init__(self, cache_dir: Path | None):
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(Path(cache_dir) / "catalog-results.sqlite", timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, stored REAL, payload BLOB)")

    def __enter__(self) -> CatalogCache:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def load(self, key: str, products: Sequence[Product]) -> CatalogResult | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT payload FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return _decode(row[0], products)
        except (zlib.error, ValueError, KeyError, TypeError):
            return None   # a damaged entry is a miss: the comparison is recomputed and stored again

    def store(self, key: str, result: CatalogResult, products: Sequence[Product]) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
                             (key, time.time(), _encode(result, products)))
            self._db.execute("DELETE FROM results WHERE key NOT IN "
                             "(SELECT key FROM results ORDER BY stored DESC LIMIT ?)", (KEEP,))


def compare_catalogs_cached(products: Sequence[Product], bundle_root: Path, settings: Settings, *,
                            progress: Progress = no_progress) -> CatalogResult:
    """compare_catalogs, served from the cache when nothing it depends on has changed."""
    if settings.cache_dir is None:
        return compare_catalogs(products, bundle_root, settings, progress=progress)
    key = catalog_key(products, bundle_root, settings)
    with CatalogCache(settings.cache_dir) as stored:
        result = stored.load(key, products)
        if result is not None:
            # nothing was hashed or matched this time: every picture's answer came from the cache
            result.stats.update(catalog_from_cache=1, images_hashed=0,
                                images_cached=result.stats.get("images", 0))
            progress("catalog: reuse the last comparison", len(products), len(products))
            return result
        result = compare_catalogs(products, bundle_root, settings, progress=progress)
        result.stats["catalog_from_cache"] = 0
        stored.store(key, result, products)
        return result
