"""Recall of product-picture near-duplicates per seller edit, at a false-positive rate <= 1e-4.

    python benchmarks/image_recall.py [--products 500] [--seed 7] [--workers 2] [--frame-filling]
                                      [--sample ../shared/samples/market-s | --sample ""] [--json out.json]

Generates `--products` products with fixtures/images.py (about 40% of them look-alike variants:
recoloured, relabelled, similar shape), writes each product's picture and one edited copy per
edit, and measures, per edit, the share of copies matched to their original (with
`--frame-filling`, every picture is first cut to its object, so that a crop cuts the object):

- plain 64-bit pHash (imagehash, raw picture) and 256-bit pHash comparing the mirror too, each
  at the threshold where at most 1e-4 of the pairs of different products match;
- the fingerprint alone (assoc.images, distance threshold chosen the same way);
- the pipeline: fingerprint candidates within a radius, verified by `ImageVerifier`, at
  radii 60/80/100 (DEFAULT_RADIUS marked), with its measured false-positive rate.

Negative pairs are all pairs of pictures of different products; look-alike pairs (same family)
are reported apart. With `--sample`, also checks a marketplace sample bundle: recall of
same-identity listing pairs and false matches among same-family listings of other identities.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc.images import (  # noqa: E402
    DEFAULT_RADIUS,
    MATCH_THRESHOLD,
    HashCache,
    ImageVerifier,
    fingerprint_files,
    image_candidates,
)
from fixtures.images import EDITS, make_catalog, write_pictures  # noqa: E402

FPR = 1e-4
RADII = (60, 80, 100)


def hamming_matrix(bits: np.ndarray, other: np.ndarray) -> np.ndarray:
    a, b = bits.astype(np.float32), other.astype(np.float32)
    return (a @ (1 - b).T + (1 - a) @ b.T).astype(np.int32)


def phash_bits(paths: list[Path], size: int, mirror: bool) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as im:
            if mirror:
                im = ImageOps.mirror(im)
            out.append(imagehash.phash(im, hash_size=size).hash.ravel())
    return np.array(out)


def fingerprint_matrix(fps: list) -> np.ndarray:
    """All fingerprint distances (a - b for every pair), vectorised."""
    levels = np.array([fp.levels for fp in fps], np.int32)
    mirrored = np.array([fp.mirrored().levels for fp in fps], np.int32)
    out = np.empty((len(levels), len(levels)), np.int32)
    for start in range(0, len(levels), 64):
        block = levels[start:start + 64, None, :]
        out[start:start + 64] = np.minimum(np.abs(block - levels[None]).sum(-1),
                                           np.abs(block - mirrored[None]).sum(-1))
    return out


class Truth:
    """Which pictures are copies of which, and which pairs are negatives / look-alikes."""

    def __init__(self, files):
        self.files = files
        self.product = np.array([f.product_id for f in files])
        self.family = np.array([f.family_id for f in files])
        self.variant = [f.variant for f in files]
        original = {f.product_id: i for i, f in enumerate(files) if f.edit == "original"}
        self.positives = defaultdict(list)     # edit -> [(original index, copy index)]
        for i, f in enumerate(files):
            if f.edit != "original":
                self.positives[f.edit].append((original[f.product_id], i))
        iu = np.triu_indices(len(files), 1)
        negative = self.product[iu[0]] != self.product[iu[1]]
        self.neg_i, self.neg_j = iu[0][negative], iu[1][negative]
        self.lookalike = self.family[self.neg_i] == self.family[self.neg_j]

    def recall_at_fpr(self, dist: np.ndarray) -> tuple[int, dict[str, float], int, int]:
        """Largest threshold with at most FPR of negatives at or below it, and recall per edit."""
        neg = np.sort(dist[self.neg_i, self.neg_j])
        allowed = int(FPR * len(neg))
        threshold = int(neg[allowed]) - 1 if allowed < len(neg) else int(neg[-1])
        within = dist[self.neg_i, self.neg_j] <= threshold
        recall = {e: float(np.mean([dist[i, j] <= threshold for i, j in pairs])) for e, pairs in self.positives.items()}
        return threshold, recall, int(within.sum()), int((within & self.lookalike).sum())


def _verify_chunk(pairs: list[tuple[str, str]]) -> list[float]:
    verifier = ImageVerifier(keep=256)
    return [verifier(Path(a), Path(b)) for a, b in pairs]


def verify_pairs(pairs: list[tuple[Path, Path]], workers: int) -> tuple[list[float], float]:
    """Scores in input order, and CPU seconds per pair (summed over workers)."""
    order = sorted(range(len(pairs)), key=lambda k: (str(pairs[k][0]), str(pairs[k][1])))
    chunks = [order[s:s + 400] for s in range(0, len(order), 400)]
    started = time.process_time()
    wall = time.perf_counter()
    scores = [0.0] * len(pairs)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [[(str(pairs[k][0]), str(pairs[k][1])) for k in chunk] for chunk in chunks]
            for chunk, out in zip(chunks, pool.map(_verify_chunk, jobs), strict=True):
                for k, score in zip(chunk, out, strict=True):
                    scores[k] = score
        per_pair = (time.perf_counter() - wall) * workers / max(len(pairs), 1)
    else:
        for chunk in chunks:
            for k, score in zip(chunk, _verify_chunk([(str(pairs[k][0]), str(pairs[k][1])) for k in chunk]),
                                strict=True):
                scores[k] = score
        per_pair = (time.process_time() - started) / max(len(pairs), 1)
    return scores, per_pair


def table(rows: list[tuple[str, dict[str, float], str]]) -> str:
    edits = list(EDITS)
    out = ["| method | " + " | ".join(edits) + " | FPR / notes |", "|---" * (len(edits) + 2) + "|"]
    for name, recall, note in rows:
        out.append(f"| {name} | " + " | ".join(f"{recall[e]:.3f}" for e in edits) + f" | {note} |")
    return "\n".join(out)


def synthetic(args: argparse.Namespace, report: dict) -> None:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="image-recall-"))
    started = time.perf_counter()
    specs = make_catalog(args.seed, args.products)
    files = write_pictures(work / "pictures", specs, EDITS, size=args.size, seed=args.seed,
                           frame_filling=args.frame_filling)
    variants = defaultdict(int)
    for spec in specs:
        variants[spec.variant] += 1
    print(f"generated {len(files)} pictures of {len(specs)} products {dict(variants)} "
          f"in {time.perf_counter() - started:.0f} s ({work})", flush=True)
    truth = Truth(files)
    paths = [f.path for f in files]
    n_neg, n_look = len(truth.neg_i), int(truth.lookalike.sum())
    print(f"{n_neg} negative pairs, of which {n_look} look-alike pairs", flush=True)

    rows = []
    for name, size, mirror in (("pHash 64-bit (imagehash)", 8, False), ("pHash 256-bit + mirror", 16, True)):
        bits = phash_bits(paths, size, False)
        dist = hamming_matrix(bits, bits)
        if mirror:
            dist = np.minimum(dist, hamming_matrix(bits, phash_bits(paths, size, True)))
        threshold, recall, fp, fp_look = truth.recall_at_fpr(dist)
        rows.append((name, recall, f"t={threshold}: {fp} FP ({fp_look} look-alike)"))
        print(rows[-1], flush=True)

    cache = HashCache(None)
    wall = time.perf_counter()
    fingerprints, rejected = fingerprint_files(paths, cache, workers=args.workers)
    assert not rejected, rejected
    fps = [fingerprints[p] for p in paths]
    print(f"fingerprinted {len(fps)} pictures in {time.perf_counter() - wall:.1f} s with {args.workers} worker(s)",
          flush=True)
    dist = fingerprint_matrix(fps)
    threshold, recall, fp, fp_look = truth.recall_at_fpr(dist)
    rows.append(("fingerprint alone", recall, f"d<={threshold}: {fp} FP ({fp_look} look-alike)"))
    print(rows[-1], flush=True)

    # the pipeline: candidates within the largest radius, verified; smaller radii are subsets
    radius = max(max(RADII), DEFAULT_RADIUS)
    candidates = image_candidates(fps, radius=radius)
    product = truth.product
    needed = {}
    for pairs in truth.positives.values():
        for i, j in pairs:
            if dist[i, j] <= radius:
                needed[(min(i, j), max(i, j))] = int(dist[i, j])
    for i, j, d in candidates:
        if product[i] != product[j]:
            needed[(i, j)] = d
    keys = list(needed)
    print(f"verifying {len(keys)} pairs within radius {radius} with {args.workers} worker(s)", flush=True)
    scores, per_pair = verify_pairs([(paths[i], paths[j]) for i, j in keys], args.workers)
    verified = {k: s >= MATCH_THRESHOLD for k, s in zip(keys, scores, strict=True)}
    neg_keys = [k for k in keys if product[k[0]] != product[k[1]]]
    for r in sorted(set(RADII) | {DEFAULT_RADIUS}):
        recall = {e: float(np.mean([needed.get((min(i, j), max(i, j)), radius + 1) <= r
                                    and verified[(min(i, j), max(i, j))] for i, j in pairs]))
                  for e, pairs in truth.positives.items()}
        false = [k for k in neg_keys if needed[k] <= r and verified[k]]
        by_kind = defaultdict(int)
        for i, j in false:
            kind = "other" if truth.family[i] != truth.family[j] else \
                (truth.variant[j] if truth.variant[j] != "base" else truth.variant[i])
            by_kind[kind] += 1
        n_cand = sum(1 for k in neg_keys if needed[k] <= r)
        mark = " (DEFAULT_RADIUS)" if r == DEFAULT_RADIUS else ""
        note = (f"FPR {len(false) / n_neg:.1e} ({len(false)} FP: {dict(by_kind)}); "
                f"{n_cand} negative candidates ({n_cand / n_neg:.1e})")
        rows.append((f"pipeline r={r}{mark}", recall, note))
        print(rows[-1], flush=True)
    look_kinds = defaultdict(lambda: [0, 0])
    for idx in np.flatnonzero(truth.lookalike):
        i, j = truth.neg_i[idx], truth.neg_j[idx]
        kind = truth.variant[j] if truth.variant[j] != "base" else truth.variant[i]
        look_kinds[kind][1] += 1
        key = (int(i), int(j))
        if needed.get(key, radius + 1) <= DEFAULT_RADIUS and verified.get(key, False):
            look_kinds[kind][0] += 1
    print("\n" + table(rows))
    print("\nlook-alike pairs matched by the pipeline at DEFAULT_RADIUS: " +
          ", ".join(f"{k} {a}/{b} ({a / b:.3f})" for k, (a, b) in sorted(look_kinds.items())))
    print(f"verification: {per_pair * 1e3:.1f} ms per pair (wall x workers, including decoding each picture "
          f"once; see image_throughput.py for CPU cost)")
    report["synthetic"] = {
        "products": len(specs), "pictures": len(files), "negative_pairs": n_neg, "lookalike_pairs": n_look,
        "rows": [{"method": n, "recall": r, "note": note} for n, r, note in rows],
        "lookalike_matched": {k: v for k, v in look_kinds.items()}, "verify_ms_per_pair": per_pair * 1e3,
    }


def sample_check(root: Path, workers: int, report: dict) -> None:
    """Listing pairs of a marketplace sample bundle: same identity found, same family kept apart."""
    truth = {(r["store_id"], r["product_id"]): r for r in csv.DictReader(open(root / "truth" / "listings.csv"))}
    listings, images = [], []
    with open(root / "bundle" / "products.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            rel = [x for x in row["images"].split("|") if x]
            if rel:
                t = truth[(row["store_id"], row["product_id"])]
                listings.append((t["identity_id"], t["family_id"]))
                images.extend((len(listings) - 1, root / "bundle" / x) for x in rel)
    paths = [p for _, p in images]
    fingerprints, rejected = fingerprint_files(paths, HashCache(None), workers=workers)
    ok = [k for k, p in enumerate(paths) if p in fingerprints]
    fps = [fingerprints[paths[k]] for k in ok]
    owner = [images[k][0] for k in ok]
    candidates = [(ok[i], ok[j], d) for i, j, d in image_candidates(fps, radius=DEFAULT_RADIUS)
                  if owner[i] != owner[j]]
    scores, _ = verify_pairs([(paths[i], paths[j]) for i, j, _ in candidates], workers)
    matched = {tuple(sorted((images[i][0], images[j][0])))
               for (i, j, _), s in zip(candidates, scores, strict=True) if s >= MATCH_THRESHOLD}
    candidate_pairs = {tuple(sorted((images[i][0], images[j][0]))) for i, j, _ in candidates}
    n = len(listings)
    same = fam = fam_hit = same_hit = same_cand = other_hit = 0
    for a in range(n):
        for b in range(a + 1, n):
            if listings[a][0] == listings[b][0]:
                same += 1
                same_hit += (a, b) in matched
                same_cand += (a, b) in candidate_pairs
            elif listings[a][1] and listings[a][1] == listings[b][1]:
                fam += 1
                fam_hit += (a, b) in matched
            else:
                other_hit += (a, b) in matched
    pairs_total = n * (n - 1) // 2
    print(f"\nsample {root}: {n} listings with {len(paths)} pictures ({len(rejected)} rejected)")
    print(f"same-identity listing pairs: {same}; candidates {same_cand / same:.3f}; matched {same_hit / same:.3f}")
    print(f"same-family, other-identity listing pairs: {fam}; falsely matched {fam_hit} ({fam_hit / max(fam, 1):.3f})")
    print(f"other listing pairs: {pairs_total - same - fam}; falsely matched {other_hit}")
    report["sample"] = {"listings": n, "pictures": len(paths), "rejected": len(rejected),
                        "same_identity_pairs": same, "candidate_recall": same_cand / same,
                        "recall": same_hit / same, "family_pairs": fam, "family_false_matches": fam_hit,
                        "other_pairs": pairs_total - same - fam, "other_false_matches": other_hit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=256, help="picture size in pixels")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--workdir", help="where to write the pictures (default: a temporary folder)")
    parser.add_argument("--frame-filling", action="store_true",
                        help="cut every picture to its object first (fixtures.images.fill_frame): crops cut the object")
    default_sample = Path(__file__).resolve().parents[2] / "shared" / "samples" / "market-s"
    parser.add_argument("--sample", type=lambda s: Path(s) if s else None,
                        default=default_sample if default_sample.exists() else None,
                        help="marketplace sample to check too (default: the shared sample if present; '' for none)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    report: dict = {"fpr": FPR, "default_radius": DEFAULT_RADIUS, "match_threshold": MATCH_THRESHOLD}
    synthetic(args, report)
    if args.sample:
        sample_check(args.sample, args.workers, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
