"""Catalog overlap accuracy and speed on a generated bundle with truth (../shared/bench/market.py).

    python benchmarks/catalog_accuracy.py /work/shared/samples/market-s            # text and images
    python benchmarks/catalog_accuracy.py /tmp/bench/m2k --text-only
    python benchmarks/catalog_accuracy.py /tmp/bench/m2k --cache ~/.cache/assoc     # reuse image hashes

DIR holds bundle/ and truth/. Prints the bars the catalog stage must meet, over the truth pairs
with a true overlap >= 0.10 (pairs missing from the output count as overlap 0):
  - mean absolute error of the overlap (bar: <= 0.03)
  - right decisions at the 0.30 threshold (bar: >= 98%)
  - pairs claimed >= 0.30 whose true overlap is < 0.10 (bar: none)
then the errors by band of true overlap, the stage times (wall and CPU: on a busy machine the
CPU time is the better guide) and the peak memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc.bundle import read_bundle  # noqa: E402
from assoc.catalog import compare_catalogs  # noqa: E402
from assoc.settings import Settings  # noqa: E402

BANDS = ((0.10, 0.20), (0.20, 0.30), (0.30, 0.40), (0.40, 1.01))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the text workers, the image hashers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def read_truth(truth: Path) -> dict[tuple[str, str], float]:
    with open(truth / "overlap.csv", newline="", encoding="utf-8") as f:
        return {(r["store_a"], r["store_b"]): float(r["true_overlap"]) for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="directory with bundle/ and truth/")
    parser.add_argument("--text-only", action="store_true", help="compare text only (no images)")
    parser.add_argument("--images-only", action="store_true", help="compare images only (no text)")
    parser.add_argument("--cache", type=Path, help="image hash cache directory (default: a new temporary one)")
    parser.add_argument("--threshold", type=float, default=0.30)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    bundle = read_bundle(args.dir / "bundle")
    read_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as temporary:
        settings = Settings(use_text=not args.images_only, use_images=not args.text_only,
                            cache_dir=args.cache or Path(temporary)).validate()
        stages: list[tuple[str, float, float]] = []
        last = [time.perf_counter(), cpu_seconds()]

        def progress(stage: str, done: int, total: int | None) -> None:
            if total is not None and done == total:
                now, cpu = time.perf_counter(), cpu_seconds()
                stages.append((stage, now - last[0], cpu - last[1]))
                last[:] = [now, cpu]

        began, began_cpu = time.perf_counter(), cpu_seconds()
        result = compare_catalogs(bundle.products, bundle.root, settings, progress=progress)
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - began_cpu

    truth = read_truth(args.dir / "truth")
    found = {pair: o.overlap for pair, o in result.overlaps.items()}
    scored = {pair: t for pair, t in truth.items() if t >= 0.10}
    errors = {pair: abs(found.get(pair, 0.0) - t) for pair, t in scored.items()}
    right = sum((found.get(pair, 0.0) >= args.threshold) == (t >= args.threshold) for pair, t in scored.items())
    false_claims = [pair for pair, o in found.items() if o >= args.threshold and truth.get(pair, 0.0) < 0.10]
    missing = sum(1 for pair in scored if pair not in found)

    mode = "text only" if args.text_only else "images only" if args.images_only else "text + images"
    print(f"{args.dir} ({mode}): {len(bundle.products)} listings, {len(bundle.stores)} stores")
    mae = sum(errors.values()) / max(1, len(errors))
    accuracy = right / max(1, len(scored))
    print(f"  overlap MAE (true >= 0.10, {len(scored)} pairs): {mae:.4f}   bar <= 0.03  "
          f"{'ok' if mae <= 0.03 else 'FAIL'}")
    print(f"  right decisions at {args.threshold:.2f}: {right}/{len(scored)} = {accuracy:.2%}   bar >= 98%  "
          f"{'ok' if accuracy >= 0.98 else 'FAIL'}")
    print(f"  claimed >= {args.threshold:.2f} with truth < 0.10: {len(false_claims)}   bar 0  "
          f"{'ok' if not false_claims else 'FAIL'}  {false_claims[:5]}")
    print(f"  truth pairs missing from the output: {missing}")
    by_band: dict[tuple[float, float], list[float]] = defaultdict(list)
    signed: dict[tuple[float, float], list[float]] = defaultdict(list)
    for pair, t in scored.items():
        band = next(b for b in BANDS if b[0] <= t < b[1])
        by_band[band].append(errors[pair])
        signed[band].append(found.get(pair, 0.0) - t)
    for band in BANDS:
        e, d = by_band[band], signed[band]
        if e:
            wrong = sum((t >= args.threshold) != (found.get(p, 0.0) >= args.threshold)
                        for p, t in scored.items() if band[0] <= t < band[1])
            print(f"    true {band[0]:.2f}-{min(band[1], 1):.2f}: {len(e):6d} pairs  MAE {sum(e) / len(e):.4f}  "
                  f"bias {sum(d) / len(d):+.4f}  wrong decisions {wrong}")
    timings = ", ".join(f"{stage.removeprefix('catalog: ')} {w:.1f}/{c:.1f}" for stage, w, c in stages)
    print(f"  read bundle {read_seconds:.1f} s; compare_catalogs {seconds:.1f} s wall, {cpu:.1f} s CPU; "
          f"stages wall/CPU: {timings}")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; stats {result.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
