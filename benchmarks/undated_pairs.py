"""Whose are the store pairs that share a session-bound value only they hold, by when each used it?
(models/rules.py, UNDATED_PAIR_BONUS)

    python benchmarks/undated_pairs.py MARKET [MARKET ...]

MARKET is a folder written by ../shared/bench/market.py (bundle/ and truth/). Each bundle is
compared on its identifiers only (as `assoc scan --no-text --no-images`). Every compared pair that
shares an exact IP, device id, MAC or browser fingerprint held by just the two stores is counted
once per kind, by the closest gap between the two stores' sightings of it (within six hours, within
a day, longer, or unknown because one store's sightings, or both stores', carry no time), by
whether the pair shares anything else, and by whether the truth says one operator runs both stores.
A gap that is unknown because one row lost its time should look like the known gaps mixed at their
rates; if it looked like a long gap, the missing time would be evidence against the pair. IP pairs
are also split by how many stores use an address of the IP's /24 (/64), as models.rules.in_quiet_prefix
reads it: "quiet" when at most QUIET_PREFIX_STORES do, "busy" when more do or the prefix is a hub
(a carrier's NAT pool, a data centre).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc import Settings, read_bundle  # noqa: E402
from assoc.evidence import SESSION_HOURS, Evidence  # noqa: E402
from assoc.scan import compare  # noqa: E402
from models.rules import SESSION_KINDS, in_quiet_prefix  # noqa: E402

GAPS = ("within 6 h", "within a day", "more than a day", "one side undated", "both undated")


def gap_class(piece: Evidence) -> str:
    if piece.gap_hours is None:
        return "both undated" if piece.first_seen_a is None and piece.first_seen_b is None else "one side undated"
    if piece.gap_hours <= SESSION_HOURS:
        return "within 6 h"
    return "within a day" if piece.gap_hours <= 24.0 else "more than a day"


def kind_class(piece: Evidence) -> str:
    if piece.kind != "ip":
        return piece.kind
    return "ip, quiet /24" if in_quiet_prefix(piece) else "ip, busy /24"


def count(market: Path) -> Counter[tuple[str, str, str, bool]]:
    """(kind, gap class, 'alone' or 'with more', same operator) -> pairs, for one market."""
    with (market / "truth" / "stores.csv").open(newline="", encoding="utf-8") as handle:
        operator = {row["store_id"]: row["operator_id"] for row in csv.DictReader(handle)}
    comparison = compare(read_bundle(market / "bundle"), Settings(cache_dir=None, use_text=False, use_images=False))
    found: Counter[tuple[str, str, str, bool]] = Counter()
    for (store_a, store_b), pieces in comparison.evidence.items():
        same = operator[store_a] == operator[store_b]
        for kind in SESSION_KINDS:
            own = [p for p in pieces if p.kind == kind and p.level == "exact" and p.stores == 2]
            if not own:
                continue
            alone = "alone" if len(pieces) == 1 else "with more"
            closest = min(own, key=lambda p: GAPS.index(gap_class(p)))
            found[(kind_class(closest), gap_class(closest), alone, same)] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markets", nargs="+", type=Path)
    args = parser.parse_args()
    total: Counter[tuple[str, str, str, bool]] = Counter()
    for market in args.markets:
        total += count(market)
        print(f"compared {market}", file=sys.stderr)
    print("| kind | gap | pairs sharing nothing else: one operator / two | pairs sharing more: one / two |")
    print("|---|---|---|---|")
    for kind in sorted({key[0] for key in total}):
        for gap in GAPS:
            cells = [f"{total[(kind, gap, alone, True)]:,} / {total[(kind, gap, alone, False)]:,}"
                     for alone in ("alone", "with more")]
            if any(total[(kind, gap, alone, same)] for alone in ("alone", "with more") for same in (True, False)):
                print(f"| {kind} | {gap} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
