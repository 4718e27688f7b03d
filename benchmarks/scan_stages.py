"""Where a scan's time goes: when each stage starts and ends, from the scan's progress callback.

    python benchmarks/scan_stages.py BUNDLE [--cache-dir DIR] [--out DIR]

Without --cache-dir pictures are fingerprinted afresh; with a warm one it times a rescan.
Prints elapsed seconds at each stage's first and last progress report, then the CPU seconds of
this process and of its worker processes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc import Settings, read_bundle  # noqa: E402
from assoc.report import write_scan_outputs  # noqa: E402
from assoc.scan import compare, decide  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="assoc-stages-")))
    args = parser.parse_args()
    settings = Settings(cache_dir=args.cache_dir)
    start = time.perf_counter()
    spans: dict[str, list[float]] = {}

    def mark(what: str) -> None:
        print(f"{time.perf_counter() - start:7.1f} s  {what}", flush=True)

    def progress(stage: str, done: int, total: int | None) -> None:
        now = time.perf_counter() - start
        if stage not in spans:
            spans[stage] = [now, now]
            mark(f"start {stage}")
        spans[stage][1] = now

    bundle = read_bundle(args.bundle, progress=progress)
    mark("read done")
    comparison = compare(bundle, settings, progress=progress)
    mark("compare done")
    result = decide(comparison, settings, progress=progress)
    mark("decide done")
    write_scan_outputs(result, args.out, settings)
    mark("write done")
    for stage, (first, last) in spans.items():
        print(f"  {stage:24s} {first:7.1f} -> {last:7.1f}")
    print(f"CPU: this process {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f} s, "
          f"workers {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f} s")


if __name__ == "__main__":
    main()
