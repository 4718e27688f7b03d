"""Scan a generated (or given) bundle, score it against its truth, and print accuracy, time and memory.

    python benchmarks/scan_bench.py --stores 2000 --seed 11
    python benchmarks/scan_bench.py --bundle DIR/bundle --truth DIR/truth [--rescan] [-- extra scan flags]

Bundles are generated with ../shared/bench/market.py into --workdir (reused when present). The
scan runs as a subprocess (`assoc scan`), so wall time and peak RSS are the command's own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def generate(workdir: Path, stores: int, seed: int, products: int, image_fraction: float) -> Path:
    target = workdir / f"market-{stores}-{seed}-{products}-{image_fraction}"
    if not (target / "truth" / "summary.json").exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / "market.py"), str(target), "--stores", str(stores),
                        "--seed", str(seed), "--products-per-store", str(products),
                        "--image-fraction", str(image_fraction), "--quiet"], check=True)
    return target


# Runs the CLI in a child and prints that child's own peak RSS, so the generator's memory never counts.
_SCAN_CHILD = (
    "import resource, sys\n"
    "from assoc.cli import main\n"
    "main(sys.argv[1:], standalone_mode=False)\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def timed_scan(bundle: Path, outdir: Path, extra: list[str]) -> tuple[float, float]:
    """Run one scan; returns (seconds, peak RSS of the scan in MB)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _SCAN_CHILD, "scan", str(bundle), "--out", str(outdir), "--quiet",
                           *extra], check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--products-per-store", type=int, default=20)
    parser.add_argument("--image-fraction", type=float, default=1.0)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "assoc-bench")
    parser.add_argument("--rescan", action="store_true", help="scan twice and report the second (cached) run too")
    parser.add_argument("scan_args", nargs="*", help="extra flags for assoc scan (after --)")
    args = parser.parse_args()
    if args.bundle:
        bundle, truth = args.bundle, args.truth
    else:
        target = generate(args.workdir, args.stores, args.seed, args.products_per_store, args.image_fraction)
        bundle, truth = target / "bundle", target / "truth"
    outdir = Path(tempfile.mkdtemp(prefix="assoc-scan-"))
    cache = Path(tempfile.mkdtemp(prefix="assoc-cache-"))
    extra = ["--cache-dir", str(cache), *args.scan_args]
    seconds, peak = timed_scan(bundle, outdir, extra)
    print(f"scan: {seconds:.1f} s, peak RSS {peak:.0f} MB  ({bundle})")
    if args.rescan:
        again, peak2 = timed_scan(bundle, Path(tempfile.mkdtemp(prefix="assoc-rescan-")), extra)
        print(f"rescan (hash cache warm): {again:.1f} s, peak RSS {peak2:.0f} MB")
    summary = json.loads((outdir / "summary.json").read_text())["summary"]
    print(f"stores {summary['stores']}, linked pairs {summary['pairs_linked']}, clusters {summary['clusters']}, "
          f"hubs {summary['hubs']}")
    if truth:
        subprocess.run([sys.executable, str(SHARED / "bench" / "score.py"), str(truth), str(outdir)], check=True)


if __name__ == "__main__":
    main()
