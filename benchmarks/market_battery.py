"""Scan many generated markets, with and without their catalogs, and sum what the scorer says.

    python benchmarks/market_battery.py --workdir /tmp/battery --stores 150,300,600,1000,3000 --seeds 31,32,33

A change to scoring that helps one bundle can hurt a market of another size: small markets have
small agency pools that look like a careful operator's few stores, large ones have the operators
with many stores. Each market (../shared/bench/market.py, 10 listings per store, no pictures) is
generated into --workdir once and reused. It is scanned twice: whole, and as identifiers only
(the bundle without products.csv). Each scan is scored by ../shared/bench/score.py. Printed: one
line per market and mode, then the sums per mode (true and false positives, missed pairs,
strong-identifier recall). The scans run in this process's `assoc` on the path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from scan_bench import SHARED, generate  # benchmarks/ is on the path when this script runs

PRODUCTS_PER_STORE = 10


def market(workdir: Path, stores: int, seed: int) -> Path:
    """The generated market (bundle/, truth/) and beside it identifiers/: the bundle without products.csv."""
    target = generate(workdir, stores, seed, PRODUCTS_PER_STORE, 0.0)
    identifiers = target / "identifiers"
    if not identifiers.exists():
        identifiers.mkdir()
        for name in ("stores.csv", "signals.csv"):
            (identifiers / name).symlink_to(target / "bundle" / name)
    return target


def scan_and_score(bundle: Path, truth: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="assoc-battery-") as scratch:
        out = Path(scratch) / "out"
        subprocess.run(["assoc", "scan", str(bundle), "--out", str(out), "--quiet", "--no-images"], check=True)
        subprocess.run([sys.executable, str(SHARED / "bench" / "score.py"), str(truth), str(out),
                        "--json", str(Path(scratch) / "score.json")], check=True, stdout=subprocess.DEVNULL)
        return json.loads((Path(scratch) / "score.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--stores", default="150,300,600,1000,3000", help="comma-separated market sizes")
    parser.add_argument("--seeds", default="31,32,33", help="comma-separated generator seeds")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    totals: dict[str, Counter[str]] = {"whole": Counter(), "identifiers": Counter()}
    print(f"{'market':<16} {'mode':<12} {'TP':>6} {'FP':>4} {'FN':>6} {'strong':>13} {'FP causes'}")
    for stores in map(int, args.stores.split(",")):
        for seed in map(int, args.seeds.split(",")):
            folder = market(args.workdir, stores, seed)
            for mode, bundle in (("whole", folder / "bundle"), ("identifiers", folder / "identifiers")):
                score = scan_and_score(bundle, folder / "truth")
                pairwise, strong = score["pairwise"], score["recall_by_why"]["operator_strong"]
                causes = {k: v for k, v in score["false_positives_by_cause"].items() if v and k != "total"}
                totals[mode].update(tp=pairwise["tp"], fp=pairwise["fp"], fn=pairwise["fn"],
                                    strong_found=strong["found"], strong_total=strong["total"])
                print(f"{stores}/{seed:<11} {mode:<12} {pairwise['tp']:>6} {pairwise['fp']:>4} {pairwise['fn']:>6} "
                      f"{strong['found']:>6}/{strong['total']:<6} {causes or ''}", flush=True)
    for mode, total in totals.items():
        precision = total["tp"] / max(1, total["tp"] + total["fp"])
        strong = total["strong_found"] / max(1, total["strong_total"])
        print(f"sum {mode:<12} TP {total['tp']} FP {total['fp']} FN {total['fn']} precision {precision:.4f} "
              f"strong recall {strong:.4f} ({total['strong_found']}/{total['strong_total']})")


if __name__ == "__main__":
    main()
