"""Findings as SARIF 2.1.0 (OUTDIR/findings.sarif), so CI and ERP pipelines can gate on linked stores.

One result per linked pair. Its rule is the evidence family that weighs most in the pair
(payout, identity, hardware, network, address, catalog), or `ASSOC-CLUSTER` for a pair linked
only through other stores of its cluster. Level `error` means the identifiers alone say one
operator (operator score at the link threshold); `warning` means the link comes from the
catalog rule or the cluster. Each result points at the pair's line in evidence.jsonl and
carries a partialFingerprint computed from the two store ids alone, so a finding keeps its
identity across rescans while its score and evidence change, and baselining tools can
tell new associations from known ones. Personal values are masked unless revealed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..errors import OutputError
from .outdir import PairRecord, ScanOutput
from .tables import _atomic

SARIF_FILE = "findings.sarif"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "assocStorePair/v1"


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    name: str
    short: str
    full: str


RULES: dict[str, Rule] = {rule.rule_id: rule for rule in (
    Rule("ASSOC-PAYOUT", "SharedPayoutAccount", "Stores share a payout account",
         "Two stores are paid into the same bank, card or wallet account: marketplaces treat that as one operator."),
    Rule("ASSOC-IDENTITY", "SharedIdentity", "Stores share contact or legal identity data",
         "Two stores share a phone number, e-mail, tax id or legal representative."),
    Rule("ASSOC-HARDWARE", "SharedDevice", "Stores were operated from the same device",
         "Two stores share a device id, a network card MAC or a browser fingerprint."),
    Rule("ASSOC-NETWORK", "SharedNetwork", "Stores share network addresses",
         "Two stores logged in from the same IP address or network prefix, often at close times."),
    Rule("ASSOC-ADDRESS", "SharedAddress", "Stores share a postal address",
         "Two stores use the same postal unit or building as their shipping, return or registered address."),
    Rule("ASSOC-CATALOG", "OverlappingCatalog", "Store catalogs overlap",
         "Two stores list near-duplicate products: their own listings, or an overlap above the marketplace rule."),
    Rule("ASSOC-OTHER", "SharedIdentifier", "Stores share another identifier",
         "Two stores share an identifier of a kind outside the bundle format's defined kinds."),
    Rule("ASSOC-CLUSTER", "LinkedThroughCluster", "Stores are linked through other stores of their cluster",
         "The two stores share nothing directly, but each is linked to stores of one cluster."),
)}
FAMILY_RULES = {"payout": "ASSOC-PAYOUT", "identity": "ASSOC-IDENTITY", "hardware": "ASSOC-HARDWARE",
                "network": "ASSOC-NETWORK", "address": "ASSOC-ADDRESS", "catalog": "ASSOC-CATALOG",
                "other": "ASSOC-OTHER"}


def rule_for(pair: PairRecord) -> str:
    """The rule of a pair's heaviest evidence family; ASSOC-CLUSTER when no direct evidence links it."""
    by_family: dict[str, float] = {}
    for piece in pair.evidence:
        by_family[piece.family] = by_family.get(piece.family, 0.0) + piece.weight
    heaviest = sorted(by_family.items(), key=lambda item: (-item[1], item[0]))
    if heaviest and heaviest[0][1] > 0:
        return FAMILY_RULES[heaviest[0][0]]
    if any(reason.startswith("catalog_overlap") for reason in pair.reasons):
        return "ASSOC-CATALOG"
    return "ASSOC-CLUSTER"


def fingerprint(pair: PairRecord) -> str:
    # The unit separator cannot occur in a CSV store id, so no two pairs join to the same text.
    return hashlib.sha256(f"{pair.store_a}\x1f{pair.store_b}".encode()).hexdigest()


def sarif_log(scan: ScanOutput, *, reveal_pii: bool = False) -> dict[str, Any]:
    """The SARIF log of a scan: one run, one result per linked pair, in pairs.csv order."""
    rule_ids = list(RULES)
    threshold = float(scan.settings.get("link_threshold", 0.5))
    results = []
    for pair in scan.pairs:
        if not pair.linked:
            continue
        rule_id = rule_for(pair)
        direct = pair.operator_score >= threshold
        reasons = "; ".join(pair.reasons)
        results.append({
            "ruleId": rule_id,
            "ruleIndex": rule_ids.index(rule_id),
            "level": "error" if direct else "warning",
            "rank": round(pair.score * 100, 2),
            "message": {"text": f"Stores {pair.store_a} and {pair.store_b} look associated "
                                f"(score {pair.score:.3f}): {reasons}."},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": "evidence.jsonl", "uriBaseId": "OUTDIR", "index": 0},
                                     "region": {"startLine": pair.line}},
                "logicalLocations": [{"name": store, "kind": "store"} for store in pair.key],
            }],
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint(pair)},
            "properties": {
                "storeA": pair.store_a, "storeB": pair.store_b, "score": pair.score,
                "operatorScore": pair.operator_score, "catalogOverlap": pair.catalog_overlap,
                "clusterId": pair.cluster_id, "reasons": list(pair.reasons),
                "evidence": [{"code": p.code, "value": p.shown_value(reveal_pii), "weight": p.weight,
                              "stores": p.stores} for p in pair.evidence],
            },
        })
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "assoc", "version": _assoc_version(),
                "rules": [{"id": r.rule_id, "name": r.name, "shortDescription": {"text": r.short},
                           "fullDescription": {"text": r.full},
                           "defaultConfiguration": {"level": "warning" if r.rule_id == "ASSOC-CLUSTER" else "error"}}
                          for r in RULES.values()],
            }},
            "originalUriBaseIds": {"OUTDIR": {"uri": scan.outdir.resolve().as_uri() + "/"}},
            "artifacts": [{"location": {"uri": "evidence.jsonl", "uriBaseId": "OUTDIR"},
                           "description": {"text": "every reported pair's evidence with weights"}}],
            "results": results,
            "properties": {"summary": scan.summary, "piiRevealed": reveal_pii},
        }],
    }


def _assoc_version() -> str:
    try:
        return version("assoc")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def write_sarif(scan: ScanOutput, path: Path | None = None, *, reveal_pii: bool = False) -> Path:
    """Write the SARIF log (default OUTDIR/findings.sarif); returns its path."""
    path = Path(path) if path is not None else scan.outdir / SARIF_FILE
    try:
        with _atomic(path) as handle:
            json.dump(sarif_log(scan, reveal_pii=reveal_pii), handle, indent=1, ensure_ascii=False)
            handle.write("\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write SARIF findings: {exc.strerror or exc}") from exc
    return path
