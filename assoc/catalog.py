"""Catalog overlap: listing near-duplicates -> product groups -> overlap of every pair of stores.

overlap(A, B) = (distinct product groups A and B share) / (distinct groups of the smaller catalog),
the rule marketplaces apply (30% and more: associated).

1. Matches. Two listings match by text (assoc.text: the same title model codes and colours, no
   conflicting size, quantity or description fact, and an IDF-weighted title cosine of at least
   TEXT_THRESHOLD). Pictures rescue the text's near misses: listings whose texts agree on codes,
   colours and facts and are at least IMAGE_TEXT_FLOOR similar match when two of their pictures
   are within IMAGE_RADIUS (assoc.images fingerprints) and pixel verification confirms them. A
   picture alone is not enough where there is text: family variants share one drawing, and
   strangers' simple drawings collide. A listing without a title matches on pictures alone; a
   scan without text takes only the pictures within IMAGE_SURE (too many pairs to verify).
2. Groups. Matches are not transitive. A short, generic title ("Red Camping Lantern") matches
   listings of several different products, and at 500,000 listings plain connected components
   chain such matches into groups of thousands. Three steps keep strangers and variants apart:
   a. a match counts only when the two listings' neighbourhoods agree: the Jaccard index of
      their closed neighbourhoods (the listing and all it matches) is at least SUPPORT. A listing
      that bridges two groups shares few neighbours with either and loses those matches;
   b. connected components of the matches that count;
   c. a component that is not dense (fewer than DENSITY of its pairs match), or whose listings
      hold facts that may conflict (a "64GB" and a "128GB", each matching a listing that names
      no capacity), is re-clustered by average linkage on the similarity of all its pairs, a
      conflicting pair counting as a distance of 2, and cut at COHESION: clusters join when
      their listings are alike on average, not through one link.
3. Overlap. Duplicates inside one store count once (distinct groups). Every shared group counts,
   as the platform counts it; groups listed by more stores than `common_store_count` allows are
   "common" stock (supplier products that unrelated stores resell) and are reported apart, as
   weak evidence of a shared operator.

Past normalisation everything is numpy arrays and scipy sparse matrices. The thresholds were
measured on the synthetic market (notes/catalog.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import linkage
from scipy.sparse.csgraph import connected_components

from . import images
from .records import Product, Progress, RejectedRow, no_progress
from .settings import Settings
from .text import TextIndex, rowwise_dot

TEXT_THRESHOLD = 0.55
SUPPORT = 0.3
DENSITY = 0.8
COHESION = 0.3
# Components larger than this are re-clustered on their matches only (missing pairs count as 0)
# rather than on all pairs, which would cost size^2.
FULL_SIMILARITY_MAX = 1000
# A group is common stock when more stores list it than COMMON_FACTOR times the median store count
# of the groups that two or more stores share, and than COMMON_MIN_STORES.
COMMON_FACTOR = 3.0
COMMON_MIN_STORES = 5
# Processes that hash pictures, and that normalise text from PARALLEL_FROM listings on (below
# that, starting processes costs more than it saves).
IMAGE_WORKERS = 2
TEXT_WORKERS = 2
PARALLEL_FROM = 100_000
# Listings normalised per task: progress is heard once a task is done, and the index does not depend on the split.
TEXT_CHUNK = 10_000
# Pictures confirm a match whose titles are at least IMAGE_TEXT_FLOOR similar (see _Pictures.matches)
# if their fingerprints are within IMAGE_RADIUS and pixel verification agrees.
IMAGE_TEXT_FLOOR = 0.2
IMAGE_RADIUS = 40
# Fingerprints this close are one picture: pixel verification would only cost time.
IMAGE_SURE = 10
# Progress is reported every this many listings grouped (or matched listing pairs written), and picture
# pairs looked at.
PROGRESS_LISTINGS = 10_000
PROGRESS_PICTURE_PAIRS = 256

# A pair similarity for many pairs at once: (left, right) -> similarity in [0, 1], or CONFLICT for
# two listings whose texts name different codes, colours or sizes. CONFLICT is a distance of 2 in
# the average linkage: one such pair outweighs several good ones, yet a sizeable group survives
# one seller's slip.
PairSimilarity = Callable[[np.ndarray, np.ndarray], np.ndarray]
CONFLICT = -1.0


@dataclass(frozen=True, slots=True)
class PairOverlap:
    """The catalog overlap of two stores (store_a < store_b)."""

    store_a: str
    store_b: str
    overlap: float  # shared groups / distinct groups of the smaller catalog
    share_a: float  # shared groups / distinct groups of A
    share_b: float  # shared groups / distinct groups of B
    shared_groups: int
    common_groups: int  # of the shared groups, how many are listed by many unrelated stores (supplier stock)


@dataclass(frozen=True, slots=True)
class CatalogMatch:
    """Two listings of two stores taken to be one product: the evidence behind a shared group."""

    store_a: str
    product_a: str
    store_b: str
    product_b: str
    text_similarity: float | None  # None when text was not compared
    image_distance: int | None  # smallest fingerprint distance of their pictures; None without pictures


@dataclass
class CatalogResult:
    overlaps: dict[tuple[str, str], PairOverlap]  # every pair with overlap >= settings.catalog_report_floor
    matches: list[CatalogMatch]  # per reported pair, one listing pair for each shared group
    group_of: dict[tuple[str, str], int]  # (store_id, product_id) -> product group id
    group_stores: dict[int, int]  # group id -> number of distinct stores listing it
    rejected: list[RejectedRow] = field(default_factory=list)  # images that could not be used, and why
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class _Edges:
    """Matched listing pairs (left < right) with their similarity."""

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray

    @classmethod
    def empty(cls) -> _Edges:
        return cls(np.array([], np.int64), np.array([], np.int64), np.array([], np.float64))

    def union(self, other: _Edges) -> _Edges:
        """Both sets of pairs; a pair in both keeps its higher score."""
        left, right = np.r_[self.left, other.left], np.r_[self.right, other.right]
        score = np.r_[self.score, other.score]
        if not len(left):
            return _Edges.empty()
        order = np.lexsort((-score, right, left))
        left, right, score = left[order], right[order], score[order]
        first = np.r_[True, (np.diff(left) != 0) | (np.diff(right) != 0)]
        return _Edges(left[first], right[first], score[first])


def compare_catalogs(products: Sequence[Product], bundle_root: Path, settings: Settings, *,
                     progress: Progress = no_progress) -> CatalogResult:
    """Group the listings of all stores into products and measure every pair of stores' overlap."""
    n = len(products)
    stats: dict[str, int] = {"listings": n}
    rejected: list[RejectedRow] = []
    index: TextIndex | None = None
    edges = near = _Edges.empty()
    if settings.use_text and n:
        progress("catalog: normalise text", 0, n)
        index = TextIndex.from_listings([(p.title, p.description) for p in products],
                                        workers=TEXT_WORKERS if n >= PARALLEL_FROM else 1, chunk=TEXT_CHUNK,
                                        progress=lambda done: progress("catalog: normalise text", done, n))
        progress("catalog: match text", 0, n)
        # With pictures, the text's near misses are wanted too: a picture may confirm them.
        found = index.matches(threshold=IMAGE_TEXT_FLOOR if settings.use_images else TEXT_THRESHOLD,
                              progress=lambda done: progress("catalog: match text", done, n))
        strong = found.score >= TEXT_THRESHOLD
        edges = _Edges(found.left[strong], found.right[strong], found.score[strong])
        near = _Edges(found.left[~strong], found.right[~strong], found.score[~strong])
        stats["text_candidates"] = found.candidates
        stats["text_matches"] = len(edges.left)
    pictures: _Pictures | None = None
    if settings.use_images and n:
        pictures = _Pictures.of(products, bundle_root, settings.cache_dir, progress)
        rejected.extend(pictures.rejected)
        stats.update(pictures.stats)
        image_edges = pictures.matches(n, index, near, stats,
                                       progress=lambda done, total: progress("catalog: match images", done, total))
        edges = edges.union(image_edges)

    progress("catalog: group", 0, n)
    labels = group_listings(n, edges.left, edges.right, _similarity(n, index, edges),
                            mixed=index.mixed_facts if index is not None else None,
                            progress=lambda done: progress("catalog: group", done, n))
    progress("catalog: group", n, n)

    store_ids = sorted({p.store_id for p in products})
    progress("catalog: overlap", 0, len(store_ids))
    store_index = {s: k for k, s in enumerate(store_ids)}
    store_of = np.fromiter((store_index[p.store_id] for p in products), dtype=np.int64, count=n)
    table = _store_groups(store_of, labels, len(store_ids))
    group_stores = np.diff(sp.csc_matrix(table).indptr)
    common = group_stores > common_store_count(group_stores)
    stats["groups"] = int(table.shape[1])
    stats["common_groups"] = int(common.sum())
    overlaps = _overlaps(table, common, store_ids, settings.catalog_report_floor,
                         progress=lambda done: progress("catalog: overlap", done, len(store_ids)))
    matches = _matches(products, overlaps, table, store_of, labels, store_index, index, pictures,
                       progress=lambda done, total: progress("catalog: matched listings", done, total))
    group_of = {(p.store_id, p.product_id): int(g) for p, g in zip(products, labels, strict=True)}
    return CatalogResult(overlaps=overlaps, matches=matches, group_of=group_of,
                         group_stores={g: int(c) for g, c in enumerate(group_stores)},
                         rejected=rejected, stats=stats)


def _matched(n: int, left: np.ndarray, right: np.ndarray, score: np.ndarray) -> PairSimilarity:
    """The score of matched pairs, 0 for the others."""
    matrix = sp.coo_matrix((score, (left, right)), shape=(n, n))
    matrix = sp.csr_matrix(matrix.maximum(matrix.T))
    return lambda a, b: np.asarray(matrix[a, b]).ravel() if len(a) else np.zeros(0)


def _similarity(n: int, index: TextIndex | None, edges: _Edges) -> PairSimilarity:
    """Similarity of any pairs for re-clustering: the text similarity, or the match's own score where
    higher (an image match of two listings whose titles differ); CONFLICT where the texts name
    conflicting facts (another code, colour or size), which no picture overrules."""
    matched = _matched(n, edges.left, edges.right, edges.score)
    if index is None:
        return matched

    def similarity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        text, conflict = index.compare(left, right)
        score = np.maximum(matched(left, right), text)
        score[conflict] = CONFLICT
        return score

    return similarity


def group_listings(n: int, left: np.ndarray, right: np.ndarray, similarity: PairSimilarity | None = None, *,
                   mixed: Callable[[np.ndarray], np.ndarray] | None = None, support: float = SUPPORT,
                   density: float = DENSITY, cohesion: float = COHESION,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Product group label (0..groups-1, numbered in order of first listing) of each of n listings.

    `left`/`right` are matched pairs of listings. See the module docstring: matches whose two
    neighbourhoods have a Jaccard index below `support` are dropped; components with fewer
    than `density` of their pairs matched, or whose listings may conflict (`mixed`: labels ->
    flag per label), are re-clustered by average linkage on `similarity` (by default 1 for a
    match, 0 otherwise) and cut where the average similarity falls below `cohesion`.
    `progress` hears how many listings are grouped for good: all but those of the loose components,
    then those of each component as it is re-clustered.
    """
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if len(left):
        adjacency = sp.coo_matrix((np.ones(2 * len(left)), (np.r_[left, right], np.r_[right, left])), shape=(n, n))
        adjacency = sp.csr_matrix(adjacency + sp.identity(n))
        adjacency.data[:] = 1.0  # a pair listed twice is still one match
        degree = np.diff(adjacency.indptr)
        both = rowwise_dot(adjacency, left, right)
        keep = both / (degree[left] + degree[right] - both) >= support
        left, right = left[keep], right[keep]
    _, labels = connected_components(sp.coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n)), directed=False)
    if similarity is None:
        similarity = _matched(n, left, right, np.ones(len(left)))
    labels = _recluster(labels, left, right, similarity, mixed, density, cohesion, progress)
    # Number groups by their first listing, so that ids do not depend on traversal order.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def _recluster(labels: np.ndarray, left: np.ndarray, right: np.ndarray, similarity: PairSimilarity,
               mixed: Callable[[np.ndarray], np.ndarray] | None, density: float, cohesion: float,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Average-linkage re-clustering of the loose components (see group_listings)."""
    n = len(labels)
    size = np.bincount(labels, minlength=n)
    matched_pairs = np.bincount(labels[left], minlength=n)
    suspect = matched_pairs < density * size * (size - 1) / 2
    if mixed is not None:
        suspect[: labels.max() + 1] |= mixed(labels)
    loose = np.flatnonzero((size > 2) & suspect)
    if not len(loose):
        return labels
    members = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[members], loose)
    groups = [members[start:start + size[c]] for c, start in zip(loose.tolist(), starts.tolist(), strict=True)]
    grouped = n - int(size[loose].sum())  # listings outside the loose components keep their component
    reported = grouped
    if progress is not None:
        progress(grouped)
    # Cut every component's dendrogram where the average distance passes 1 - cohesion: the merges
    # below the cut, as edges between tree nodes (merge i of a component of k makes node k + i),
    # and one connected-components pass over all of them.
    merge_from: list[np.ndarray] = []
    merge_into: list[np.ndarray] = []
    leaves: list[np.ndarray] = []
    done: list[np.ndarray] = []  # the groups in the order they were scored
    offset = 0
    for group, score in _pair_scores(groups, left, right, similarity, n):
        k = len(group)
        done.append(group)
        tree = linkage(1.0 - score, method="average")
        below = np.flatnonzero(tree[:, 2] <= 1.0 - cohesion)
        merge_from += [tree[below, 0].astype(np.int64) + offset, tree[below, 1].astype(np.int64) + offset]
        merge_into += [k + below + offset] * 2
        leaves.append(np.arange(k) + offset)
        offset += 2 * k - 1
        grouped += k
        if progress is not None and grouped - reported >= PROGRESS_LISTINGS:
            progress(grouped)
            reported = grouped
    a, b = np.concatenate(merge_from), np.concatenate(merge_into)
    _, cluster = connected_components(sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(offset, offset)), directed=False)
    out = labels.copy()
    out[np.concatenate(done)] = int(labels.max()) + 1 + cluster[np.concatenate(leaves)]
    return out


def _pair_scores(groups: list[np.ndarray], left: np.ndarray, right: np.ndarray, similarity: PairSimilarity,
                 n: int, batch: int = 2_000_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(group, similarity of its pairs in condensed order) for each group. Groups are scored
    together, about `batch` pairs at a time: a call has a fixed cost, and all pairs at once would
    not fit in memory on a large scan."""
    pending: list[np.ndarray] = []
    count = 0
    for group in [*groups, None]:
        k = 0 if group is None else len(group)
        if pending and (group is None or count + k * (k - 1) // 2 > batch):
            pairs = [np.triu_indices(len(g), 1) for g in pending]
            scores = similarity(np.concatenate([g[a] for g, (a, _) in zip(pending, pairs, strict=True)]),
                                np.concatenate([g[b] for g, (_, b) in zip(pending, pairs, strict=True)]))
            done = 0
            for g in pending:
                size = len(g) * (len(g) - 1) // 2
                yield g, scores[done:done + size]
                done += size
            pending, count = [], 0
        if group is None:
            break
        if k > FULL_SIMILARITY_MAX:  # only its matches: all pairs of a huge component would cost k^2
            inside = np.isin(left, group) & np.isin(right, group)
            position = np.full(n, -1)
            position[group] = np.arange(k)
            pa, pb = position[left[inside]], position[right[inside]]
            lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
            score = np.zeros(k * (k - 1) // 2)
            score[lo * k - lo * (lo + 1) // 2 + (hi - lo - 1)] = similarity(left[inside], right[inside])
            yield group, score
        else:
            pending.append(group)
            count += k * (k - 1) // 2


def common_store_count(group_stores: np.ndarray) -> int:
    """How many stores may list a group before it counts as common stock, relative to the data."""
    shared = group_stores[group_stores >= 2]
    typical = float(np.median(shared)) if len(shared) else 2.0
    return max(COMMON_MIN_STORES, math.ceil(COMMON_FACTOR * typical))


def _store_groups(store_of: np.ndarray, labels: np.ndarray, stores: int) -> sp.csr_matrix:
    """Stores x groups, 1 where the store lists the group (any number of times)."""
    groups = int(labels.max()) + 1 if len(labels) else 0
    table = sp.csr_matrix((np.ones(len(labels)), (store_of, labels)), shape=(stores, groups))
    table.data[:] = 1.0
    return table


def _overlaps(table: sp.csr_matrix, common: np.ndarray, store_ids: list[str], floor: float, chunk: int = 2000,
              progress: Callable[[int], None] | None = None) -> dict[tuple[str, str], PairOverlap]:
    """Every pair of stores whose overlap is at least `floor`.

    The product stores x stores is taken `chunk` rows at a time and cut at the floor at once, so
    that memory stays bounded even when a few groups are listed by thousands of stores. `progress`
    hears how many stores' rows are done after each chunk.
    """
    sizes = np.diff(table.indptr)
    common_table = sp.csr_matrix(table @ sp.diags(common.astype(np.float64)))
    transposed = sp.csr_matrix(table.T)
    out: dict[tuple[str, str], PairOverlap] = {}
    for start in range(0, table.shape[0], chunk):
        shared = sp.coo_matrix(table[start:start + chunk] @ transposed)
        a, b, count = shared.row + start, shared.col, shared.data
        upper = a < b
        a, b, count = a[upper], b[upper], count[upper]
        overlap = count / np.minimum(sizes[a], sizes[b])
        keep = overlap >= floor
        a, b, count, overlap = a[keep], b[keep], count[keep], overlap[keep]
        common_count = rowwise_dot(common_table, a, b)
        for i, j, c, o, k in zip(a.tolist(), b.tolist(), count.tolist(), overlap.tolist(), common_count.tolist(),
                                 strict=True):
            # store ids are sorted, so row i < column j means store_a < store_b
            out[store_ids[i], store_ids[j]] = PairOverlap(
                store_a=store_ids[i], store_b=store_ids[j], overlap=o, share_a=c / sizes[i], share_b=c / sizes[j],
                shared_groups=int(c), common_groups=int(k))
        if progress is not None:
            progress(min(start + chunk, table.shape[0]))
    return out


def _matches(products: Sequence[Product], overlaps: dict[tuple[str, str], PairOverlap], table: sp.csr_matrix,
             store_of: np.ndarray, labels: np.ndarray, store_index: dict[str, int], index: TextIndex | None,
             pictures: _Pictures | None, *, progress: Callable[[int, int], None] | None = None) -> list[CatalogMatch]:
    """For each reported pair and each group it shares, the first listing of each store in it; `progress` hears
    (listing pairs done, listing pairs in all)."""
    if not overlaps:
        return []
    pair_a = np.array([store_index[a] for a, _ in overlaps], dtype=np.int64)
    pair_b = np.array([store_index[b] for _, b in overlaps], dtype=np.int64)
    shared = sp.coo_matrix(table[pair_a].multiply(table[pair_b]))  # reported pair x shared group
    order = np.lexsort((shared.col, shared.row))
    pair, group = shared.row[order].astype(np.int64), shared.col[order].astype(np.int64)
    width = int(labels.max()) + 1
    first_of, first = np.unique(store_of * width + labels, return_index=True)  # (store, group) -> listing
    left = first[np.searchsorted(first_of, pair_a[pair] * width + group)]
    right = first[np.searchsorted(first_of, pair_b[pair] * width + group)]
    total = len(left)
    if progress is not None:
        progress(0, total)
    texts: list[float | None] = [None] * total
    if index is not None:
        texts = index.similarity(left, right).tolist()
    out = []
    for done, (i, j, t) in enumerate(zip(left.tolist(), right.tolist(), texts, strict=True), start=1):
        if progress is not None and done % PROGRESS_LISTINGS == 0:
            progress(done, total)
        out.append(CatalogMatch(store_a=products[i].store_id, product_a=products[i].product_id,
                                store_b=products[j].store_id, product_b=products[j].product_id, text_similarity=t,
                                image_distance=pictures.distance(i, j) if pictures is not None else None))
    if progress is not None:
        progress(total, total)
    return out


class _Pictures:
    """The listings' pictures: fingerprints, which listing shows which, and image matches."""

    def __init__(self, paths: list[Path], owner: np.ndarray, fingerprints: list[images.ImageFingerprint],
                 rejected: list[RejectedRow], stats: dict[str, int]) -> None:
        self.paths = paths  # one per fingerprinted picture
        self.owner = owner  # listing of each picture
        self.fingerprints = fingerprints
        self.rejected = rejected
        self.stats = stats
        self._of_listing: dict[int, list[int]] = {}
        for picture, listing in enumerate(owner.tolist()):
            self._of_listing.setdefault(listing, []).append(picture)

    @classmethod
    def of(cls, products: Sequence[Product], root: Path, cache_dir: Path | None, progress: Progress) -> _Pictures:
        wanted: list[tuple[int, Path]] = []
        urls = 0
        for listing, product in enumerate(products):
            for ref in product.images:
                if ref.startswith(("http://", "https://")):
                    urls += 1  # not fetched: a scan reads the bundle only
                else:
                    wanted.append((listing, root / ref))
        distinct = sorted({path for _, path in wanted})
        with images.HashCache(cache_dir) as cache:
            found, bad = images.fingerprint_files(distinct, cache, workers=IMAGE_WORKERS,
                                                  progress=lambda stage, done, total: progress(
                                                      "catalog: hash images", done, total))
            hashed, cached = cache.computed, cache.hits
        rejected = [RejectedRow(file="products.csv", line=0, reason=f"image {path.relative_to(root)}: {why}",
                                content=f"{products[listing].store_id},{products[listing].product_id}")
                    for listing, path in wanted if (why := bad.get(path)) is not None]
        kept = [(listing, path) for listing, path in wanted if path in found]
        stats = {"images": len(distinct), "images_hashed": hashed, "images_cached": cached,
                 "images_rejected": len(bad), "image_urls_skipped": urls}
        return cls([path for _, path in kept], np.array([listing for listing, _ in kept], dtype=np.int64),
                   [found[path] for _, path in kept], rejected, stats)

    def distance(self, a: int, b: int) -> int | None:
        """Smallest fingerprint distance between a picture of listing a and one of listing b."""
        pa, pb = self._of_listing.get(a), self._of_listing.get(b)
        if not pa or not pb:
            return None
        return min(self.fingerprints[i] - self.fingerprints[j] for i in pa for j in pb)

    def matches(self, n: int, index: TextIndex | None, near: _Edges, stats: dict[str, int], *,
                progress: Callable[[int, int], None] | None = None) -> _Edges:
        """Listing pairs whose pictures match, confirmed pixel by pixel; `progress` hears (candidate pairs
        looked at, candidate pairs in all).

        Pictures of one drawing in one colour are alike for family variants (another model code)
        and for strangers (simple shapes on white), so a picture only confirms a text that names
        the same codes and colours, has no conflicting fact, and shares some words (`near`: the
        text matches below TEXT_THRESHOLD); a listing without a title has no text to confirm, and
        neither has any listing when text is not compared. Searching the text's near misses, not
        all pictures, also keeps this cheap.
        """
        pairs: list[tuple[int, int, int, int]] = []  # (listing, listing, picture, picture)
        if index is not None:
            shown = np.zeros(n, dtype=bool)
            shown[self.owner] = True
            both = shown[near.left] & shown[near.right]
            pairs = [(a, b, *self._closest(a, b))
                     for a, b in zip(near.left[both].tolist(), near.right[both].tolist(), strict=True)]
            untitled = index.untitled[self.owner]
            if untitled.any():  # these are compared with every picture
                found = [(i, j) for i, j in self._picture_pairs(IMAGE_RADIUS) if untitled[i] or untitled[j]]
                left = np.array([self.owner[i] for i, _ in found], dtype=np.int64)
                right = np.array([self.owner[j] for _, j in found], dtype=np.int64)
                ok = ~index.compare(left, right)[1]
                pairs += [(int(a), int(b), i, j) for a, b, (i, j), good in zip(left, right, found, ok, strict=True)
                          if good]
        else:
            # Without text every pair of pictures would need pixel verification: keep the sure
            # ones (on the original m2k, within IMAGE_SURE: 16,990 same-product pairs, 712
            # family variants, 25 strangers; within IMAGE_RADIUS: 52,074 / 2,360 / 52,132).
            pairs = [(int(self.owner[i]), int(self.owner[j]), i, j) for i, j in self._picture_pairs(IMAGE_SURE)]
        stats["image_candidates"] = len(pairs)
        verifier = images.ImageVerifier()
        matched: dict[tuple[int, int], float] = {}
        checked = 0
        if progress is not None:
            progress(0, len(pairs))
        for done, (a, b, i, j) in enumerate(pairs):
            if progress is not None and done % PROGRESS_PICTURE_PAIRS == 0:
                progress(done, len(pairs))  # a pixel verification takes milliseconds
            key = (min(a, b), max(a, b))
            distance = self.fingerprints[i] - self.fingerprints[j]
            if key in matched or a == b or distance > IMAGE_RADIUS:
                continue
            if distance <= IMAGE_SURE:
                matched[key] = 1.0
                continue
            try:
                matched[key] = verifier(self.paths[i], self.paths[j])
                checked += 1
            except images.ImageRejected:
                continue
        stats["image_verified"] = checked
        if progress is not None:
            progress(len(pairs), len(pairs))
        good = sorted((a, b, value) for (a, b), value in matched.items() if value >= images.MATCH_THRESHOLD)
        stats["image_matches"] = len(good)
        if not good:
            return _Edges.empty()
        left, right, score = zip(*good, strict=True)
        return _Edges(np.array(left, dtype=np.int64), np.array(right, dtype=np.int64), np.array(score))

    def _closest(self, a: int, b: int) -> tuple[int, int]:
        """The closest pair of pictures of listings a and b (most listings have one picture)."""
        pa, pb = self._of_listing[a], self._of_listing[b]
        if len(pa) == 1 and len(pb) == 1:
            return pa[0], pb[0]
        return min(((i, j) for i in pa for j in pb), key=lambda ij: self.fingerprints[ij[0]] - self.fingerprints[ij[1]])

    def _picture_pairs(self, radius: int) -> list[tuple[int, int]]:
        """Every pair of pictures within `radius`."""
        return [(i, j) for i, j, _ in images.image_candidates(self.fingerprints, radius=radius)]
