"""Whose are the holders a value's corroborated group leaves out? (assoc/evidence.py, MAJORITY_GROUP)

    python benchmarks/group_outsiders.py MARKET [MARKET ...]

MARKET is a folder written by ../shared/bench/market.py (bundle/ and truth/). Each bundle is
compared on its identifiers only (products read, catalogs not compared, as `assoc scan --no-text
--no-images`). For every value whose largest group of corroborated holders (evidence.ValueSupport)
holds at least MAJORITY_GROUP of its holders, the holders outside that group are counted, and
those of another operator than the group's own, by the value's index key kind. A kind whose
outsiders are nearly always the group's operator can lend the group's support to them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc import Settings, read_bundle  # noqa: E402
from assoc.evidence import MAJORITY_GROUP  # noqa: E402
from assoc.scan import compare  # noqa: E402

COLUMNS = ("values", "outside", "outside, another operator", "in the group, another operator")


def outsiders(market: Path) -> Counter[tuple[str, str]]:
    """(key kind, column) -> count over the values of one market that have a majority group."""
    with (market / "truth" / "stores.csv").open(newline="", encoding="utf-8") as handle:
        operator = {row["store_id"]: row["operator_id"] for row in csv.DictReader(handle)}
    comparison = compare(read_bundle(market / "bundle"), Settings(cache_dir=None, use_text=False, use_images=False))
    holders: dict[tuple[str, str], set[str]] = {}
    for pair, pieces in comparison.evidence.items():
        for piece in pieces:
            if piece.kind != "catalog" and piece.stores >= 3:
                holders.setdefault(piece.identity, set()).update(pair)
    found: Counter[tuple[str, str]] = Counter()
    for identity, groups in comparison.support.groups.items():
        members: dict[str, set[str]] = {}
        for store, (group, _) in groups.items():
            members.setdefault(group, set()).add(store)
        largest = max(members.values(), key=len)
        if len(largest) < MAJORITY_GROUP * len(holders[identity]):
            continue
        owner = Counter(operator[store] for store in largest).most_common(1)[0][0]
        outside = holders[identity] - largest
        kind = identity[0]
        found[(kind, "values")] += 1
        found[(kind, "outside")] += len(outside)
        found[(kind, "outside, another operator")] += sum(operator[store] != owner for store in outside)
        found[(kind, "in the group, another operator")] += sum(operator[store] != owner for store in largest)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markets", nargs="+", type=Path)
    args = parser.parse_args()
    total: Counter[tuple[str, str]] = Counter()
    for market in args.markets:
        total += outsiders(market)
        print(f"compared {market}", file=sys.stderr)
    print("| key kind | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for kind in sorted({kind for kind, _ in total}):
        print(f"| {kind} | " + " | ".join(f"{total[(kind, column)]:,}" for column in COLUMNS) + " |")


if __name__ == "__main__":
    main()
