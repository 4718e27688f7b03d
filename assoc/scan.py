"""The scan pipeline: bundle -> index -> candidate pairs -> evidence -> scores -> clusters.

This is the one place (besides the CLI) that sees every stage; each stage is its own module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from models import rules

from .catalog import CatalogResult
from .catalog_cache import compare_catalogs_cached
from .cluster import Cluster, cluster_stores
from .evidence import (
    Evidence,
    ValueSupport,
    catalog_evidence,
    compare_pair,
    session_values,
    value_support,
    without_doubtful_values,
)
from .index import PROGRESS_EVERY, Hub, IndexKey, StorePair, build_index
from .records import Bundle, Progress, RejectedRow, no_progress
from .settings import Settings

if TYPE_CHECKING:
    from .decisions import ReviewState, Verdict

# How sharply the catalog rule's confidence rises around the threshold: measured overlap is
# an estimate, so a pair just at the threshold is a coin flip and 0.07 above it is 0.9.
CATALOG_RULE_SCALE = 0.03


@dataclass(frozen=True, slots=True)
class PairResult:
    store_a: str
    store_b: str
    score: float  # association probability: same operator, or catalogs over the threshold
    operator_score: float  # probability of a shared operator from the evidence alone
    linked: bool
    catalog_overlap: float | None
    evidence: tuple[Evidence, ...]
    reasons: tuple[str, ...]
    cluster_id: str = ""
    # A learned scorer's explanation: (feature, bits of log-odds) the model gives each feature the
    # pair has, largest first; empty under the rule table, whose explanation is the evidence weights.
    contributions: tuple[tuple[str, float], ...] = ()


@dataclass
class ScanResult:
    store_count: int
    pairs: list[PairResult]
    clusters: list[Cluster]
    hubs: list[Hub]
    rejected: list[RejectedRow]
    catalog: CatalogResult | None
    bundle_root: Path | None = None  # where the scanned bundle lives (its pictures, for reports)
    stats: dict[str, int] = field(default_factory=dict)
    scorer: str = "rules"  # what scored the pairs: the rule table, or a learned model's name

    @property
    def linked_pairs(self) -> int:
        return sum(1 for p in self.pairs if p.linked)


def catalog_rule_confidence(overlap: float, threshold: float) -> float:
    return 1.0 / (1.0 + math.exp(-(overlap - threshold) / CATALOG_RULE_SCALE))


@dataclass
class Comparison:
    """Everything the scoring step needs: each compared pair's evidence and how well each shared
    value is corroborated. Built once; `decide` can score it with any scorer (the benchmarks and
    `assoc train` score one comparison many times)."""

    bundle: Bundle
    evidence: dict[StorePair, list[Evidence]]
    support: ValueSupport
    sessions: frozenset[IndexKey]  # values one login session used (evidence.session_values)
    hubs: list[Hub]
    catalog: CatalogResult | None
    stats: dict[str, int]

    def weighted(self) -> dict[StorePair, list[Evidence]]:
        """Each pair's evidence weighed by the rule table (learned scorers use those weights as features)."""
        return {pair: self.weigh(pair, evidence) for pair, evidence in self.evidence.items()}

    def weigh(self, pair: StorePair, evidence: list[Evidence]) -> list[Evidence]:
        """One pair's evidence weighed by the rule table."""
        return rules.weigh(evidence, self.support.for_pair(pair, evidence), self.sessions)


class Scorer(Protocol):
    """Turns a pair's weighted evidence into P(same operator), and says what moved it."""

    name: str

    def probability(self, evidence: list[Evidence]) -> float: ...

    def contributions(self, evidence: list[Evidence]) -> list[tuple[str, float]]: ...


class RuleScorer:
    """The transparent rule table (models/rules.py): its explanation is the evidence weights."""

    name = "rules"

    def probability(self, evidence: list[Evidence]) -> float:
        return rules.probability(evidence)

    def contributions(self, evidence: list[Evidence]) -> list[tuple[str, float]]:
        return []


def compare(bundle: Bundle, settings: Settings, *, progress: Progress = no_progress,
            review: ReviewState | None = None) -> Comparison:
    """Index the bundle, find candidate pairs, and collect each pair's evidence.

    Values a reviewer marked as shared infrastructure (`review`, assoc.decisions) are hubs."""
    settings.validate()
    index = build_index(bundle, progress=progress)
    marked = review.shared_keys if review is not None else {}
    candidates = index.candidate_pairs(settings.hub_cap, exclude=marked, progress=progress)
    catalog = None
    if bundle.products and settings.compares_catalog:
        catalog = compare_catalogs_cached(bundle.products, bundle.root, settings, progress=progress)
    overlaps = catalog.overlaps if catalog else {}

    pairs = sorted(set(candidates) | set(overlaps))
    compared: dict[StorePair, list[Evidence]] = {}
    progress("compare pairs", 0, len(pairs))
    for done, pair in enumerate(pairs, start=1):
        if done % PROGRESS_EVERY == 0:
            progress("compare pairs", done, len(pairs))
        evidence = compare_pair(pair, candidates.get(pair, []), index)
        if pair in overlaps:
            evidence += catalog_evidence(overlaps[pair])
        compared[pair] = evidence
    progress("compare pairs", len(pairs), len(pairs))
    # How well each shared value is corroborated is known only once every pair sharing it is compared.
    support = value_support(compared, rules.base_weight, progress=progress)
    sessions = session_values(index, rules.SESSION_KINDS)
    stats = {"signals": index.signal_count, "signals_without_information": index.dropped,
             "candidate_pairs": len(candidates), **(catalog.stats if catalog else {})}
    hubs = index.hubs(settings.hub_cap, marked=marked) + scoring_hubs(compared, support, sessions)
    return Comparison(bundle=bundle, evidence=compared, support=support, sessions=sessions,
                      hubs=hubs, catalog=catalog, stats=stats)


def scoring_hubs(evidence_by_pair: dict[StorePair, list[Evidence]], support: ValueSupport,
                 sessions: frozenset[IndexKey] = frozenset()) -> list[Hub]:
    """The values of some pair's evidence that the rule table (models.rules.weigh) weighs down for being
    shared by three or more stores, as hubs.csv lists them after the ignored ones (SignalIndex.hubs).

    Shared infrastructure first (held by 3+ stores whose holder pairs are corroborated at most
    INFRASTRUCTURE_SUPPORT of the time: the value counts INFRASTRUCTURE_WEIGHT bits at most), then
    the other values held by 3+ stores that some holder pairs share with nothing else, which rarity
    and lack of corroboration weigh down; each group most widely shared first. A value whose every
    holder pair is corroborated is one operator's, not a shared one: it loses bits to rarity
    (models.rules.rarity_adjustment) but is not listed, nor is one login session's value
    (evidence.session_values), which loses nothing. The note also says when some holders are
    corroborated into one group (evidence.ValueSupport), among whom the value costs fewer bits, or
    when that group holds most of a controlled value's holders, so that every holder pair counts
    the value at the group's support (which then decides how the value is listed). A
    learned scorer (scan --model) sees the same rule weights as features."""
    holder_pairs: dict[tuple[str, str], int] = {}
    sample: dict[tuple[str, str], Evidence] = {}
    for pieces in evidence_by_pair.values():
        for piece in pieces:
            if piece.kind != "catalog" and piece.stores >= 3:
                identity = piece.identity
                holder_pairs[identity] = holder_pairs.get(identity, 0) + 1
                sample.setdefault(identity, piece)
    infrastructure, down_weighted = [], []
    for identity, pairs in holder_pairs.items():
        piece = sample[identity]
        measured = support.shares.get(identity)
        corroborated = f"{round((1.0 if measured is None else measured) * pairs)} of {pairs} holder pairs corroborated"
        share = support.for_value(identity)
        detail = ""
        group = max((g for _, g in support.groups.get(identity, {}).values()), default=0.0)
        if share is not None and measured is not None and share > measured:
            detail += (f"; {round(share * piece.stores)} of its holders are corroborated into one group, most of "
                       f"them: every holder pair counts the value at that group's support")
        elif share is not None and group > share:
            detail += (f"; {round(group * piece.stores)} holders are corroborated into one group, whose pairs lose "
                       f"{-rules.rarity_adjustment(piece, group):.1f} bits")
        if piece.level == "weak" and piece.note:
            detail += f"; weak value: {piece.note}"
        if share is not None and share <= rules.INFRASTRUCTURE_SUPPORT:
            note = (f"shared infrastructure: held by {piece.stores} stores, {corroborated}, "
                    f"counts at most {rules.INFRASTRUCTURE_WEIGHT:g} bits{detail}")
            infrastructure.append(Hub(identity[0], identity[1], piece.stores, note))
        elif identity not in sessions and share is not None and share < 1.0:
            lost = -rules.rarity_adjustment(piece, share)
            note = (f"down-weighted: held by {piece.stores} stores, {corroborated}, "
                    f"loses {lost:.1f} bits to rarity and lack of corroboration{detail}")
            down_weighted.append(Hub(identity[0], identity[1], piece.stores, note))

    def order(hub: Hub) -> tuple[int, str, str]:
        return (-hub.stores, hub.kind, hub.value)

    return sorted(infrastructure, key=order) + sorted(down_weighted, key=order)


def decide(comparison: Comparison, settings: Settings, *, scorer: Scorer | None = None,
           review: ReviewState | None = None, progress: Progress = no_progress) -> ScanResult:
    """Score every compared pair, link, cluster, and keep the pairs worth reporting.

    Reviewer decisions (`review`, assoc.decisions) confirm or dismiss pairs before clustering."""
    scorer = scorer or RuleScorer()
    overlaps = comparison.catalog.overlaps if comparison.catalog else {}
    scored: dict[StorePair, tuple[float, list[Evidence]]] = {}
    total = len(comparison.evidence)
    progress("score pairs", 0, total)
    for done, (pair, evidence) in enumerate(comparison.evidence.items(), start=1):
        if done % PROGRESS_EVERY == 0:
            progress("score pairs", done, total)
        weighted = comparison.weigh(pair, evidence)
        scored[pair] = (scorer.probability(weighted), weighted)
    progress("score pairs", total, total)

    edges = {pair: score for pair, (score, _) in scored.items() if score >= settings.link_threshold}
    verdicts: dict[StorePair, Verdict] = {}
    if review is not None:
        verdicts = review.verdicts(scored, settings.link_threshold)
        edges = review.edges(edges, verdicts, settings.link_threshold)
    # Progress of clustering counts linked pairs: each is tested for resting on doubtful values, then all
    # are clustered at once (the last step).
    progress("cluster", 0, len(edges))
    fragile = set()
    for done, pair in enumerate(edges, start=1):
        if done % PROGRESS_EVERY == 0:
            progress("cluster", done, len(edges))
        if not (pair in verdicts and verdicts[pair].forced) and scorer.probability(
                without_doubtful_values(scored[pair][1])) < settings.link_threshold:
            fragile.add(pair)
    clusters, within = cluster_stores(edges, frozenset(fragile))
    progress("cluster", len(edges), len(edges))
    cluster_of = {store: c.cluster_id for c in clusters for store in c.members}

    results = []
    kept = sorted(set(scored) | set(within))
    progress("pair results", 0, len(kept))
    for done, pair in enumerate(kept, start=1):
        if done % PROGRESS_EVERY == 0:
            progress("pair results", done, len(kept))
        operator_score, evidence = scored.get(pair, (0.0, []))
        overlap = overlaps[pair].overlap if pair in overlaps else None
        result = _pair_result(pair, operator_score, evidence, overlap, within.get(pair), cluster_of, settings,
                              verdicts.get(pair))
        if result is not None:
            results.append(replace(result, contributions=tuple(scorer.contributions(evidence))) if evidence
                           else result)
    progress("pair results", len(kept), len(kept))
    bundle = comparison.bundle
    return ScanResult(
        store_count=len(bundle.stores),
        pairs=results,
        clusters=clusters,
        hubs=comparison.hubs,
        rejected=list(bundle.rejected) + (comparison.catalog.rejected if comparison.catalog else []),
        catalog=comparison.catalog,
        bundle_root=bundle.root.resolve(),
        stats=comparison.stats,
        scorer=scorer.name,
    )


def scan(bundle: Bundle, settings: Settings, *, progress: Progress = no_progress,
         scorer: Scorer | None = None, review: ReviewState | None = None) -> ScanResult:
    """The whole scan: `compare`, then `decide` with the rule table or `scorer`, applying `review`'s decisions.

    Starts worker processes (spawn) for large catalogs: call it under ``if __name__ == "__main__":``."""
    return decide(compare(bundle, settings, progress=progress, review=review), settings, scorer=scorer, review=review,
                  progress=progress)


def _pair_result(pair: StorePair, operator_score: float, evidence: list[Evidence], overlap: float | None,
                 path_score: float | None, cluster_of: dict[str, str], settings: Settings,
                 verdict: Verdict | None = None) -> PairResult | None:
    store_a, store_b = pair
    cluster_id = cluster_of.get(store_a, "")
    same_cluster = bool(cluster_id) and cluster_id == cluster_of.get(store_b)
    forced = verdict.linked if verdict is not None and verdict.forced else None  # a reviewer's confirm/dismiss
    rule = overlap is not None and overlap >= settings.catalog_threshold and forced is not False
    direct = operator_score >= settings.link_threshold if forced is None else forced
    score = operator_score if forced is not False else 0.0
    if rule:
        score = max(score, catalog_rule_confidence(overlap, settings.catalog_threshold))
    if forced:
        score = max(score, settings.link_threshold)
    if same_cluster and path_score is not None:
        score = max(score, path_score)
    linked = direct or rule or same_cluster
    reportable = linked or verdict is not None or score >= settings.report_floor or (
        overlap is not None and overlap >= settings.catalog_report_floor)
    if not reportable:
        return None
    reasons = _reasons(evidence)
    if rule:
        reasons.append(f"catalog_overlap>={settings.catalog_threshold:.2f}")
    if same_cluster and not direct:
        reasons.append("via:cluster")
    if verdict is not None:
        reasons.append(verdict.reason)
    return PairResult(store_a=store_a, store_b=store_b, score=score, operator_score=operator_score,
                      linked=linked, catalog_overlap=overlap, evidence=tuple(evidence), reasons=tuple(reasons),
                      cluster_id=cluster_id if same_cluster else "")


def _reasons(evidence: Iterable[Evidence]) -> list[str]:
    """Distinct reason codes of the pieces that carry weight, strongest first."""
    out: list[str] = []
    for piece in evidence:
        if piece.weight > 0 and piece.code not in out:
            out.append(piece.code)
    return out
