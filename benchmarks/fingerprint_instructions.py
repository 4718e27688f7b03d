"""Instructions executed per fingerprinted picture, by working size: a load-independent measure.

    python benchmarks/fingerprint_instructions.py [--count 100] [--sizes 96,80,64]

Wall-clock throughput (image_throughput.py) moves with the other jobs on a shared host; the
instructions valgrind's callgrind counts do not. For each picture size (800 and 256 px JPEGs
from fixtures/images.py) and each working size, the fingerprinting of --count pictures runs
under callgrind, and so does the same process without pictures; the difference over --count is
the cost of one picture. Working sizes other than assoc.images' own are an experiment: they
change fingerprint values, so recall must be measured again (image_recall.py) before one is
adopted. The reference the issue timed (Pillow draft decoding + imagehash's 64-bit pHash,
image_throughput.py's "draft+pHash") is counted the same way. Instructions are not time: the
reference executes about as many as a 64 px fingerprint and runs about 1.4 times as fast
(notes/images.md, "Session 9"). Needs valgrind; about a minute per run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_WORKER = """
import os, sys
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/benchmarks")
from pathlib import Path
import cv2
cv2.setNumThreads(1)
from assoc import images
from image_throughput import phash_draft
images._HASH_SIZE = {size}
task = phash_draft if {reference} else images.fingerprint_image
paths = sorted(Path({folder!r}).glob("*.jpg"))[:{count}]
for path in paths[:1]:  # constants built on first use are start-up, not per-picture cost
    task(path)
for path in paths:
    task(path)
"""


def instructions(folder: Path, size: int, count: int, work: Path, *, reference: bool = False) -> int:
    script = work / "worker.py"
    script.write_text(_WORKER.format(root=str(Path(__file__).resolve().parents[1]), size=size,
                                     folder=str(folder), count=count, reference=reference))
    out = work / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script)],
                   check=True, capture_output=True)
    total = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
    if total is None:
        raise SystemExit(f"no instruction count in {out}")
    return int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--sizes", default="96,80,64", help="working sizes to compare (px)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    from image_throughput import write_jpegs

    work = Path(tempfile.mkdtemp(prefix="fingerprint-instructions-"))
    folders = {px: write_jpegs(work / str(px), args.count, px, args.seed)[0].parent for px in (800, 256)}

    def per_picture(px: int, size: int, reference: bool = False) -> float:
        return (instructions(folders[px], size, args.count, work, reference=reference)
                - instructions(folders[px], size, 0, work, reference=reference)) / args.count

    print("| working size | 800 px JPEG | 256 px JPEG |\n|---|---|---|")
    print(f"| draft+pHash (reference) | {per_picture(800, 0, reference=True) / 1e6:.2f} M | "
          f"{per_picture(256, 0, reference=True) / 1e6:.2f} M |", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"| {size} px | {per_picture(800, size) / 1e6:.2f} M | {per_picture(256, size) / 1e6:.2f} M |",
              flush=True)
    print(f"\n(instructions per picture, {args.count} pictures; load average {os.getloadavg()[0]:.1f}, which does not "
          "change them)")


if __name__ == "__main__":
    main()
