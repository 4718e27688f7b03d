"""How low a shared value's support may fall before it cannot carry a link (models/rules.py).

    python benchmarks/support_threshold.py MARKET [MARKET ...] [--thresholds 0,0.1,0.2,0.34,0.5]

MARKET is a folder written by ../shared/bench/market.py (bundle/ and truth/). Each bundle is
compared (identifiers and catalog, as `assoc scan` does, picture hashes cached in
$XDG_CACHE_HOME/assoc) and weighed by the rule table with the infrastructure cap switched off.
Among the pairs scored at or above the prior's break-even (probability 0.5), those whose
evidence includes a value held by 3+ stores with support <= t, and of those the ones that fall
below it without such values ("need" one), are counted as one operator's stores or two
operators', per threshold t. A threshold is safe when no pair of one operator needs a value at or
below it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc import Settings, read_bundle  # noqa: E402
from assoc.scan import compare  # noqa: E402
from models import rules  # noqa: E402


def counts(market: Path, threshold: float) -> Counter[tuple[bool, bool]]:
    """(same operator, needs the doubtful values) -> pairs, over pairs at or above even odds holding such a value."""
    with (market / "truth" / "stores.csv").open(newline="", encoding="utf-8") as handle:
        operator = {row["store_id"]: row["operator_id"] for row in csv.DictReader(handle)}
    found: Counter[tuple[bool, bool]] = Counter()
    for (store_a, store_b), pieces in _weighed(market).items():
        if rules.PRIOR + sum(p.weight for p in pieces) < 0:
            continue
        doubtful = [p for p in pieces if p.support is not None and p.stores >= 3 and p.support <= threshold]
        if not doubtful:
            continue
        rest = rules.PRIOR + sum(p.weight for p in pieces if p not in doubtful)
        found[(operator[store_a] == operator[store_b], rest < 0)] += 1
    return found


_WEIGHED: dict[Path, dict] = {}


def _weighed(market: Path) -> dict:
    if market not in _WEIGHED:
        comparison = compare(read_bundle(market / "bundle"), Settings())
        cap = rules.INFRASTRUCTURE_SUPPORT
        rules.INFRASTRUCTURE_SUPPORT = -1.0   # the weights as they were without the cap
        try:
            _WEIGHED[market] = comparison.weighted()
        finally:
            rules.INFRASTRUCTURE_SUPPORT = cap
    return _WEIGHED[market]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markets", nargs="+", type=Path, help="market.py output folders")
    parser.add_argument("--thresholds", default="0,0.1,0.2,0.34,0.5")
    args = parser.parse_args()
    print("| support <= t | pairs of one operator that need such a value | of two operators that need one | "
          "of one operator, link holds without |")
    print("|---|---|---|---|")
    for threshold in (float(t) for t in args.thresholds.split(",")):
        total: Counter[tuple[bool, bool]] = Counter()
        for market in args.markets:
            total.update(counts(market, threshold))
        print(f"| {threshold:g} | {total[True, True]} | {total[False, True]} | {total[True, False]} |")


if __name__ == "__main__":
    main()
