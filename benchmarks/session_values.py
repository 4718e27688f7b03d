"""Who holds a session-bound value (IP, device, MAC, browser) whose holders all used it within hours?

    python benchmarks/session_values.py MARKET [MARKET ...]

MARKET is a folder written by ../shared/bench/market.py (bundle/ and truth/). For every exact,
non-weak value of a session kind held by 3 to 25 stores (the hub cap), the span of its dated
sightings: within 6 hours (evidence.SESSION_HOURS), within a day, or wider; and whether its
holders are one operator's stores. Printed per kind, span and whether every holder has a dated
sighting. The rule in models/rules.py (a value every holder pair used within the session window
loses nothing to rarity) rests on the "within 6 h" rows holding no value of two operators.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc import read_bundle  # noqa: E402
from assoc.evidence import SESSION_HOURS  # noqa: E402
from assoc.normalise import normalise  # noqa: E402
from models.rules import SESSION_KINDS  # noqa: E402


def spans(market: Path) -> Counter[tuple[str, str, str, str]]:
    with (market / "truth" / "stores.csv").open(newline="", encoding="utf-8") as handle:
        operator = {row["store_id"]: row["operator_id"] for row in csv.DictReader(handle)}
    bundle_path = market / "bundle"
    if (bundle_path / "stores.jsonl").exists():
        bundle_path = bundle_path / "stores.jsonl"
    bundle = read_bundle(bundle_path)
    seen: dict[tuple[str, str], dict[str, list[datetime | None]]] = defaultdict(lambda: defaultdict(list))
    for signal in bundle.signals:
        if signal.kind not in SESSION_KINDS:
            continue
        value = normalise(signal.kind, signal.value, country=bundle.stores[signal.store_id].country)
        if value is None or value.weak:
            continue
        seen[(signal.kind, value.value)][signal.store_id].append(signal.seen_at)
    found: Counter[tuple[str, str, str, str]] = Counter()
    for (kind, _), holders in seen.items():
        if not 3 <= len(holders) <= 25:
            continue
        times = [t for sightings in holders.values() for t in sightings if t is not None]
        hours = (max(times) - min(times)).total_seconds() / 3600 if times else None
        span = ("undated" if hours is None else f"within {SESSION_HOURS:g} h" if hours <= SESSION_HOURS
                else "within a day" if hours <= 24 else "wider")
        dated = "every holder dated" if all(any(sightings) for sightings in holders.values()) else "some undated"
        owners = "one operator" if len({operator[s] for s in holders}) == 1 else "several operators"
        found[(kind, span, dated, owners)] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markets", nargs="+", type=Path, help="market.py output folders")
    args = parser.parse_args()
    total: Counter[tuple[str, str, str, str]] = Counter()
    for market in args.markets:
        total.update(spans(market))
    print("| kind | span of sightings | holders | values of one operator | of several operators |")
    print("|---|---|---|---|---|")
    for kind, span, dated in sorted({key[:3] for key in total}):
        print(f"| {kind} | {span} | {dated} | {total[kind, span, dated, 'one operator']} "
              f"| {total[kind, span, dated, 'several operators']} |")


if __name__ == "__main__":
    main()
