"""Scan a generated (or given) bundle, score it against its truth, and print accuracy, time and memory.

    python benchmarks/scan_bench.py --stores 2000 --seed 11
    python benchmarks/scan_bench.py --bundle DIR/bundle --truth DIR/truth [--rescan] [-- extra scan flags]

Bundles are generated with ../shared/bench/market.py into --workdir (reused when present). The
scan runs as a subprocess (`assoc scan`), so wall time and memory are the command's own. Memory is
the peak, sampled every 0.2 s, of the resident set size summed over the scan process and its
worker processes (/proc/PID/statm; workers are spawned, not forked, so they share no heap with the
scan: the sum overstates only by the shared libraries each maps). statm is read from counters the
kernel keeps; smaps, which walks the page tables under the process's memory lock, slowed a 20k scan
by a third. The scan process's own peak RSS is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
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


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc/*/stat: field 4 is the parent)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _tree_rss_kb(pid: int) -> int:
    total = 0
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for member in _descendants(pid):
        try:
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * page_kb
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return total


def timed_scan(bundle: Path, outdir: Path, extra: list[str]) -> tuple[float, float, float]:
    """Run one scan; returns (seconds, peak RSS of the scan and its workers together in MB, peak RSS of the scan
    process alone in MB)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _SCAN_CHILD, "scan", str(bundle), "--out", str(outdir), "--quiet",
                              *extra], stderr=subprocess.PIPE, text=True)
    peak_tree = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak_tree[0] = max(peak_tree[0], _tree_rss_kb(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = child.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"assoc scan exited {child.returncode}:\n{stderr}")
    peak_kb = int(stderr.strip().splitlines()[-1])
    # Sampling can miss a short peak of the scan process alone, which getrusage does not.
    return seconds, max(peak_tree[0], peak_kb) / 1024.0, peak_kb / 1024.0


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
    seconds, tree, rss = timed_scan(bundle, outdir, extra)
    print(f"scan: {seconds:.1f} s, peak memory {tree:.0f} MB (RSS of the scan and its workers; the scan process "
          f"alone {rss:.0f} MB)  ({bundle})")
    if args.rescan:
        again, tree2, rss2 = timed_scan(bundle, Path(tempfile.mkdtemp(prefix="assoc-rescan-")), extra)
        print(f"rescan (caches warm): {again:.1f} s, peak memory {tree2:.0f} MB (RSS of the scan and its workers; "
              f"the scan process alone {rss2:.0f} MB)")
    summary = json.loads((outdir / "summary.json").read_text())["summary"]
    print(f"stores {summary['stores']}, linked pairs {summary['pairs_linked']}, clusters {summary['clusters']}, "
          f"hubs {summary['hubs']}")
    if truth:
        subprocess.run([sys.executable, str(SHARED / "bench" / "score.py"), str(truth), str(outdir)], check=True)


if __name__ == "__main__":
    main()
