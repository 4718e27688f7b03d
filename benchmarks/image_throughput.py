"""Speed of the image stage on ONE core: fingerprints per second, verification per pair, search.

    python benchmarks/image_throughput.py [--count 400] [--repeat 3] [--search-size 66000]

Writes `--count` product JPEGs (fixtures/images.py, a random seller edit each) at 800 and
256 px into a temporary folder and times, per picture, in CPU seconds of this process (the
machine may be shared; the best of `--repeat` runs is kept):

- reference: open + full decode + 64-bit pHash (imagehash), and the same with draft decoding;
- assoc.images.fingerprint_image: read + draft decode + normalise + fingerprint.

Then the verification cost (preparing a picture once, and comparing a prepared pair), the
exact candidate search on `--search-size` fingerprints (the generated ones, perturbed copies
to reach the size), and a cached rescan with fingerprint_files.
"""

from __future__ import annotations

import os

# one core: no BLAS / OpenMP threads (set before numpy is imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import imagehash  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc.images import (  # noqa: E402
    DEFAULT_RADIUS,
    HashCache,
    ImageFingerprint,
    ImageVerifier,
    fingerprint_files,
    fingerprint_image,
    image_candidates,
)
from fixtures.images import draw_product, edit_picture, make_catalog  # noqa: E402


def write_jpegs(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for spec in make_catalog(seed, count):
        img, quality = edit_picture(draw_product(spec, size), rng.choice(["resize", "crop", "watermark", "border",
                                                                         "colour", "recompress"]), rng)
        path = folder / f"{spec.product_id}.jpg"
        img.resize((size, size), Image.BILINEAR).save(path, quality=quality)
        paths.append(path)
    return paths


def best_cpu(task: Callable[[Path], object], paths: list[Path], repeat: int) -> float:
    """Best CPU seconds per item over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for path in paths:
            task(path)
        best = min(best, (time.process_time() - started) / len(paths))
    return best


def phash_full(path: Path) -> object:
    with Image.open(path) as im:
        return imagehash.phash(im)


def phash_draft(path: Path) -> object:
    with Image.open(path) as im:
        im.draft("L", (32, 32))
        return imagehash.phash(im)


def perturbed(fps: list[ImageFingerprint], size: int, seed: int) -> list[ImageFingerprint]:
    """`size` fingerprints: the real ones plus copies moved by Laplace noise (different products
    of a similar kind, on average ~270 apart: beyond the radius)."""
    rng = np.random.default_rng(seed)
    base = np.array([fp.levels for fp in fps], np.int32)
    rows = [base]
    while sum(len(r) for r in rows) < size:
        rows.append(base + np.rint(rng.laplace(0, 4, base.shape)).astype(np.int32))
    levels = np.concatenate(rows)[:size]
    return [ImageFingerprint(tuple(int(v) for v in row)) for row in levels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--search-size", type=int, default=66_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores); times are CPU seconds of this process\n")
    work = Path(tempfile.mkdtemp(prefix="image-throughput-"))
    rows = ["| pictures | open+decode+pHash | draft+pHash | fingerprint_image | ms per picture |",
            "|---|---|---|---|---|"]
    by_size = {}
    for size in (800, 256):
        paths = write_jpegs(work / str(size), args.count, size, args.seed)
        by_size[size] = paths
        full = best_cpu(phash_full, paths, args.repeat)
        draft = best_cpu(phash_draft, paths, args.repeat)
        ours = best_cpu(fingerprint_image, paths, args.repeat)
        kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        rows.append(f"| {size} px JPEG ({kb:.0f} kB) | {1 / full:,.0f}/s | {1 / draft:,.0f}/s | "
                    f"**{1 / ours:,.0f}/s** | {ours * 1e3:.2f} |")
        print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))

    # verification: preparing each picture (decode at 256 px, normalise) and comparing a pair
    rng = random.Random(args.seed)
    originals = by_size[256]
    copies = write_jpegs(work / "copies", args.count, 256, args.seed)   # same products, other edits
    pairs = [(originals[k], copies[k]) for k in rng.sample(range(len(originals)), min(args.pairs, len(originals)))]
    verifier = ImageVerifier(keep=4 * len(pairs))
    started = time.process_time()
    for a, b in pairs:
        verifier.prepared(a)
        verifier.prepared(b)
    prepare = (time.process_time() - started) / (2 * len(pairs))
    started = time.process_time()
    for a, b in pairs:
        verifier(a, b)
    compare = (time.process_time() - started) / len(pairs)
    print(f"\nverification: prepare {prepare * 1e3:.1f} ms per picture (once), compare {compare * 1e3:.1f} ms "
          f"per pair; a cold pair (images_match) {(2 * prepare + compare) * 1e3:.1f} ms")

    # exact candidate search at scale
    fps = [fingerprint_image(p) for p in by_size[256] + by_size[800] + copies]
    for n in (10_000, args.search_size):
        population = perturbed(fps, n, args.seed)
        started = time.process_time()
        found = image_candidates(population, radius=DEFAULT_RADIUS)
        print(f"image_candidates: {n} fingerprints, radius {DEFAULT_RADIUS}: {len(found)} pairs in "
              f"{time.process_time() - started:.1f} s CPU", flush=True)

    # cached rescan
    everything = by_size[800] + by_size[256]
    with HashCache(work / "cache") as cache:
        fingerprint_files(everything, cache)
    with HashCache(work / "cache") as cache:
        started = time.process_time()
        fingerprint_files(everything, cache)
        print(f"cached rescan of {len(everything)} files: {cache.computed} computed, "
              f"{(time.process_time() - started) / len(everything) * 1e6:.0f} us per file")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
