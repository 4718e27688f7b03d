"""Learning curve of the learned scorer against the rule table, on bundles it never saw.

    python benchmarks/learning_curve.py [--stores 2000] [--train-seed 41] [--test-seeds 42,43]
                                        [--labels 25,50,100,200,400] [--repeats 3] [--mix harder|default]
                                        [--workdir /tmp/assoc-learning] [--json out.json]

Generates bundles with ../shared/bench/market.py (`--mix harder` raises the evasive share of
multi-store operators from 0.25 to 0.5 and the careful share from 0.2 to 0.5; products are
text-only, pictures would cost generation time and do not change the scorer). On the training
bundle the truth answers every label request (an oracle reviewer: same operator or not).
Two ways to pick the labels:
- random: n pairs drawn uniformly from the candidate pairs;
- suggested: batches of 25 from models.suggest, the scorer refitted after each batch (the rule
  table suggests the first batches, until both classes have MIN_PER_CLASS labels).
Each model is then used for a whole scan decision on each test bundle, scored pairwise against
the truth's linked.csv (same operator or catalog overlap >= 0.30, links through clusters
included, exactly what score.py reads from pairs.csv). The rule table is the reference line.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"

from assoc.bundle import read_bundle  # noqa: E402
from assoc.scan import Comparison, RuleScorer, Scorer, compare, decide  # noqa: E402
from assoc.settings import Settings  # noqa: E402
from models.learned import LinearModel  # noqa: E402
from models.suggest import suggest  # noqa: E402
from models.train import TrainingError, fit, training_set, truth_labels  # noqa: E402

BATCH = 25


def generate(workdir: Path, stores: int, seed: int, mix: str) -> Path:
    out = workdir / f"{mix}-{stores}-{seed}"
    if (out / "truth" / "linked.csv").exists():
        return out
    sys.path.insert(0, str(SHARED_BENCH))
    import market

    config = market.MarketConfig(stores=stores, seed=seed, products_per_store=20, image_fraction=0.0, quiet=True)
    if mix == "harder":
        config.p_evasive = 0.5
        config.care_levels = {"sloppy": 0.25, "average": 0.25, "careful": 0.5}
    market.generate(str(out), config)
    return out


def linked_truth(truth: Path) -> set[tuple[str, str]]:
    with (truth / "linked.csv").open(encoding="utf-8", newline="") as handle:
        return {tuple(sorted((row["store_a"], row["store_b"]))) for row in csv.DictReader(handle)}


def pairwise(comparison: Comparison, settings: Settings, scorer: Scorer | None, truth: set) -> dict[str, float]:
    result = decide(comparison, settings, scorer=scorer)
    found = {(p.store_a, p.store_b) for p in result.pairs if p.linked}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def random_labels(pool: list, oracle: dict, n: int, rng: random.Random) -> dict:
    return {pair: oracle[pair] for pair in rng.sample(pool, min(n, len(pool)))}


def suggested_labels(weighted: dict, oracle: dict, n: int, seed: int) -> dict:
    labels: dict = {}
    scorer: Scorer | None = None
    while len(labels) < n:
        batch = suggest(weighted, scorer or RuleScorer(), min(BATCH, n - len(labels)), exclude=labels,
                        seed=seed * 1000 + len(labels))
        if not batch:
            break
        labels.update({s.pair: oracle[s.pair] for s in batch if s.pair in oracle})
        scorer = _try_fit(weighted, labels, seed) or scorer
    return labels


def _try_fit(weighted: dict, labels: dict, seed: int) -> LinearModel | None:
    try:
        # below MIN_LABELS `assoc train` refuses; the curve measures those sizes anyway, to show why
        return fit(training_set(weighted, labels, "oracle"), seed=seed, held_out=False, min_labels=0)
    except TrainingError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--train-seed", type=int, default=41)
    parser.add_argument("--test-seeds", default="42,43")
    parser.add_argument("--labels", default="25,50,100,200,400")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mix", choices=["harder", "default"], default="harder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/assoc-learning"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings(use_images=False, cache_dir=None)
    started = time.perf_counter()

    def comparison_of(seed: int) -> tuple[Comparison, Path]:
        out = generate(args.workdir, args.stores, seed, args.mix)
        return compare(read_bundle(out / "bundle"), settings), out / "truth"

    train, train_truth = comparison_of(args.train_seed)
    weighted = train.weighted()
    oracle = truth_labels(train_truth, sorted(weighted))
    pool = sorted(oracle)
    print(f"training bundle: {len(pool)} candidate pairs, {sum(oracle.values())} same operator "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    tests = [comparison_of(int(seed)) for seed in args.test_seeds.split(",")]
    truths = [linked_truth(truth) for _, truth in tests]
    rule_line = [pairwise(c, settings, None, t) for (c, _), t in zip(tests, truths, strict=True)]
    print(f"rules: {rule_line}", flush=True)

    rows = []
    for n in [int(x) for x in args.labels.split(",")]:
        for strategy in ("random", "suggested"):
            figures = []
            for repeat in range(args.repeats):
                if strategy == "random":
                    labels = random_labels(pool, oracle, n, random.Random(repeat))
                else:
                    labels = suggested_labels(weighted, oracle, n, repeat)
                model = _try_fit(weighted, labels, repeat)
                positives = sum(labels.values())
                if model is None:  # one class too small: the team would keep the rule table
                    figures.append({"f1": None, "positives": positives})
                    continue
                scores = [pairwise(c, settings, model, t) for (c, _), t in zip(tests, truths, strict=True)]
                figures.append({"f1": statistics.mean(s["f1"] for s in scores), "positives": positives,
                                "per_test": scores})
            trained = [f["f1"] for f in figures if f["f1"] is not None]
            row = {"labels": n, "strategy": strategy, "trained": len(trained), "repeats": args.repeats,
                   "f1_mean": round(statistics.mean(trained), 4) if trained else None,
                   "f1_min": round(min(trained), 4) if trained else None,
                   "positives_mean": round(statistics.mean(f["positives"] for f in figures), 1), "runs": figures}
            rows.append(row)
            print(f"{n:4d} labels {strategy:9s}: F1 mean {row['f1_mean']} min {row['f1_min']} "
                  f"(trained {len(trained)}/{args.repeats}, positives {row['positives_mean']})", flush=True)
    rules_f1 = statistics.mean(r["f1"] for r in rule_line)
    print(f"rule table F1 (mean over test seeds): {rules_f1:.4f}; total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rules": rule_line, "rules_f1": rules_f1, "curve": rows,
                                         "config": vars(args) | {"workdir": str(args.workdir),
                                                                  "json": str(args.json)}}, indent=2))


if __name__ == "__main__":
    main()
