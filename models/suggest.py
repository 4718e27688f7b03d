"""Active learning: which pairs a reviewer should decide next to teach the scorer most.

Uncertainty sampling with diversity: the pairs whose probability is closest to 0.5 (in
log-odds) are the ones a label moves the model most; but the most uncertain pairs are often
many of one sort (say, pairs sharing one IP and nothing else), and ten labels of one sort teach
little more than two. So the `pool` most uncertain pairs are grouped by the kinds of evidence
they carry and taken round-robin across the groups, the most uncertain of each group first.

Uncertainty alone can also be wrong about where the boundary is: on a marketplace where the
rule table is too cautious, every pair it finds uncertain is in fact linked, a team labels only
"confirmed", and no model can be fitted from one class. So a share (`EXPLORE`) of every request
is drawn at random from all undecided pairs, which brings in both classes at their real rates
(and keeps the labels usable for measuring the model).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from assoc.decisions import decision_labels, load_review
from assoc.evidence import Evidence
from assoc.index import StorePair
from assoc.scan import RuleScorer, Scorer, compare
from assoc.settings import Settings
from assoc.store import IndexStore

from .features import FEATURE_NAMES, pair_features

POOL_PER_SUGGESTION = 10  # the uncertain pool is this many times the number asked for
EXPLORE = 0.5  # share of each request drawn at random
# rule_logit is set for every pair and families counts kinds the signature already names: neither is a sort
_SIGNATURE_SKIP = frozenset({"rule_logit", "families"})


@dataclass(frozen=True, slots=True)
class Suggestion:
    pair: StorePair
    probability: float
    signature: tuple[str, ...]  # the evidence features the pair has (its sort)


def signature(evidence: list[Evidence]) -> tuple[str, ...]:
    features = pair_features(evidence)
    return tuple(name for name, value in zip(FEATURE_NAMES, features, strict=True)
                 if value and name not in _SIGNATURE_SKIP)


def suggest(weighted: Mapping[StorePair, list[Evidence]], scorer: Scorer, count: int, *,
            exclude: Collection[StorePair] = (), seed: int = 0) -> list[Suggestion]:
    """Up to `count` pairs to review, most informative first; pairs in `exclude` (decided) are skipped.

    The last `EXPLORE` share are random undecided pairs (seeded: the same call suggests the same pairs)."""
    if count <= 0:
        return []
    excluded = set(exclude)
    scored = []
    for pair, evidence in weighted.items():
        if pair in excluded:
            continue
        probability = scorer.probability(evidence)
        scored.append((_uncertainty(probability), pair, probability, evidence))
    scored.sort(key=lambda item: (item[0], item[1]))
    explore = round(count * EXPLORE)
    groups: dict[tuple[str, ...], list[Suggestion]] = defaultdict(list)
    for _, pair, probability, evidence in scored[:count * POOL_PER_SUGGESTION]:
        kinds = signature(evidence)
        groups[kinds].append(Suggestion(pair, probability, kinds))
    queues = list(groups.values())  # each in uncertainty order; groups ordered by their most uncertain pair
    picked: list[Suggestion] = []
    rank = 0
    while len(picked) < count - explore and any(rank < len(queue) for queue in queues):
        picked.extend(queue[rank] for queue in queues if rank < len(queue))
        rank += 1
    picked = picked[:count - explore]
    taken = {suggestion.pair for suggestion in picked}
    rest = [item for item in scored if item[1] not in taken]
    for _, pair, probability, evidence in random.Random(seed).sample(rest, min(count - len(picked), len(rest))):
        picked.append(Suggestion(pair, probability, signature(evidence)))
    return picked


def _uncertainty(probability: float) -> float:
    """|log-odds|: 0 at 0.5, growing towards certainty either way."""
    clipped = min(max(probability, 1e-12), 1 - 1e-12)
    return abs(math.log(clipped / (1 - clipped)))


def suggest_from_index(db: Path, settings: Settings, count: int, *, scorer: Scorer | None = None,
                       seed: int = 0) -> list[Suggestion]:
    """Suggestions among the pairs of an index file, compared as `assoc scan --db` compares them;
    pairs with a decision already are skipped."""
    with IndexStore.open(db) as index:
        bundle = index.load_bundle()
        review = load_review(index)
        decided = decision_labels(index)
    weighted = compare(bundle, settings, review=review).weighted()
    return suggest(weighted, scorer or RuleScorer(), count, exclude=decided, seed=seed)
