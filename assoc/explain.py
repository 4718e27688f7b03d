"""Explain one store pair from a scan's OUTDIR: the evidence waterfall behind its score.

The order of the two store ids does not matter. Three outcomes:
- the scan reported the pair: its waterfall (evidence, weights, running total from the prior);
- both stores exist but the scan reported nothing between them: an explanation with no pair,
  which says so (their score, if they share anything at all, is below the report floor). That
  is an answer, not an error: "these two look unrelated" is what a reviewer asked to know;
- a store id the scan never saw: UnknownStoreError, naming it. A store that is in no reported
  pair appears in no result file, so the scanned bundle's store list decides; when the bundle
  is gone, a store in no result file cannot be told from a typo and is reported as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.rules import PRIOR

from .bundle import read_bundle
from .errors import AssocError
from .report.outdir import PairRecord, ScanOutput


class UnknownStoreError(AssocError):
    """A store id given to explain is not in the scanned bundle."""


@dataclass(frozen=True, slots=True)
class Explanation:
    store_a: str  # store_a < store_b, as in pairs.csv
    store_b: str
    pair: PairRecord | None  # None: the scan reported nothing between the two stores
    cluster_a: str  # cluster of each store ('' for none)
    cluster_b: str
    report_floor: float

    @property
    def message(self) -> str:
        """One line saying what the scan concluded about the two stores."""
        if self.pair is None:
            return (f"no evidence between {self.store_a} and {self.store_b}: the scan reported no pair "
                    f"(anything they share scores below the report floor {self.report_floor:g})")
        pair = self.pair
        state = "linked" if pair.linked else "not linked"
        overlap = "" if pair.catalog_overlap is None else f", catalog overlap {pair.catalog_overlap:.2f}"
        cluster = f", cluster {pair.cluster_id}" if pair.cluster_id else ""
        via = ""
        if "via:cluster" in pair.reasons:
            via = "; no direct evidence: linked through other stores of the cluster"
        return (f"{self.store_a} + {self.store_b}: {state}, score {pair.score:.3f} "
                f"(operator score {pair.operator_score:.3f}){overlap}{cluster}{via}")

    def to_dict(self, reveal_pii: bool = False) -> dict[str, Any]:
        pair = self.pair
        return {
            "store_a": self.store_a, "store_b": self.store_b, "reported": pair is not None,
            "message": self.message, "clusters": {self.store_a: self.cluster_a, self.store_b: self.cluster_b},
            "prior_bits": PRIOR,
            "score": pair.score if pair else None, "operator_score": pair.operator_score if pair else None,
            "linked": pair.linked if pair else False, "catalog_overlap": pair.catalog_overlap if pair else None,
            "reasons": list(pair.reasons) if pair else [], "cluster_id": pair.cluster_id if pair else "",
            "waterfall": [step.to_dict(reveal_pii) for step in pair.waterfall()] if pair else [],
            # under a learned model (scan --model) the operator score is the model's: these are its terms
            "model_contributions": [{"feature": name, "bits": bits} for name, bits in pair.contributions]
            if pair else [],
        }


def explain_pair(scan: ScanOutput, store_x: str, store_y: str) -> Explanation:
    """Why the scan linked (or did not link) two stores. Raises UnknownStoreError for an id it never saw."""
    if store_x == store_y:
        raise UnknownStoreError(f"both store ids are {store_x!r}; give two different stores")
    store_a, store_b = sorted((store_x, store_y))
    pair = scan.pair(store_a, store_b)
    if pair is None:
        _check_stores_exist(scan, (store_a, store_b))
    return Explanation(store_a=store_a, store_b=store_b, pair=pair, cluster_a=scan.cluster_of(store_a),
                       cluster_b=scan.cluster_of(store_b),
                       report_floor=float(scan.settings.get("report_floor", 0.0)))


def _check_stores_exist(scan: ScanOutput, stores: tuple[str, str]) -> None:
    missing = [s for s in stores if s not in scan.known_stores()]
    if not missing:
        return
    bundle_stores: set[str] | None = None
    if scan.bundle is not None and scan.bundle.exists():
        try:
            bundle_stores = set(read_bundle(scan.bundle, skip_invalid=True).stores)
        except AssocError:
            bundle_stores = None
    if bundle_stores is None:
        where = f"the scanned bundle {scan.bundle} is not readable" if scan.bundle else "summary.json names no bundle"
        raise UnknownStoreError(f"store {', '.join(map(repr, missing))} appears in no result file of {scan.outdir}, "
                                f"and {where} to check the id: check the spelling")
    unknown = [s for s in missing if s not in bundle_stores]
    if unknown:
        raise UnknownStoreError(f"unknown store id {', '.join(map(repr, unknown))}: not in the scanned bundle "
                                f"{scan.bundle}")
