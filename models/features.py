"""Pair features for learned scorers: a fixed-length vector from a pair's weighted evidence.

The features are the rule table's evidence regrouped, for data to re-weigh: per signal kind,
the bits the rule table gives that kind's shared values (already discounted for rarity and
lack of corroboration and adjusted for time, models/rules.py), the partial and weak matches,
whether the two stores used a session value within hours of each other, how much of their
catalogs they share (own products and common stock apart), how many independent families of
identifiers agree, and the rule table's own log-odds, so a model trained on few labels starts
from the rules and corrects them.

Why weights rather than raw counts of holders: a raw rarity feature lets a linear model learn
"values held by many stores are good" from one marketplace's big operators and then link a
cloud egress IP shared by twenty unrelated stores on the next; the rule weight of a value can
only fall as its holders grow, so a positive coefficient on it can never reward a hub.

Every feature is 0 when its evidence is absent, so a linear model's contribution of a feature
(coefficient x value) is 0 for evidence the pair does not have and explanations list only what
is there. `FEATURE_SET` names this list; a saved model records it and is refused by code whose
list differs.
"""

from __future__ import annotations

from assoc.evidence import Evidence

from . import rules

FEATURE_SET = "pair-features-2"

# Signal kinds with a feature of their own; the format's other kinds share "other".
KINDS = ("payment_account", "tax_id", "email", "phone", "device_id", "mac", "address", "browser_fp", "ip",
         "person_name")
_EXACT_LEVELS = frozenset({"exact", "close", "national"})
_PARTIAL_LEVELS = frozenset({"prefix", "building"})
RULE_LOGIT_UNIT = _BITS = 10.0  # weights enter in tens of bits, to keep features of similar scale
_RULE_LOGIT_CLIP = 40.0  # bits; beyond this the rule table is certain either way
_FAMILY_BITS = 4.0  # a family counts as agreeing when its shared values carry this many bits

FEATURE_NAMES: tuple[str, ...] = (
    "rule_logit",
    *(f"bits:{kind}" for kind in KINDS),
    "bits:other",
    "bits:ip/24",
    "bits:address/building",
    "bits:weak",
    "session_within_6h",
    "session_within_24h",
    "catalog_own",
    "catalog_supplier",
    "families",
)
_POSITION = {name: i for i, name in enumerate(FEATURE_NAMES)}


def pair_features(evidence: list[Evidence]) -> list[float]:
    """The feature vector (in FEATURE_NAMES order) of one pair's weighted evidence (models.rules.weigh)."""
    row = [0.0] * len(FEATURE_NAMES)
    logit = rules.PRIOR + sum(piece.weight for piece in evidence)
    row[_POSITION["rule_logit"]] = max(-_RULE_LOGIT_CLIP, min(_RULE_LOGIT_CLIP, logit)) / _BITS
    family_bits: dict[str, float] = {}
    for piece in evidence:
        if piece.kind == "catalog":
            name = "catalog_own" if piece.level == "own" else "catalog_supplier"
            row[_POSITION[name]] = max(row[_POSITION[name]], float(piece.value))
            continue
        if piece.level in _EXACT_LEVELS:
            name = f"bits:{piece.kind}" if piece.kind in KINDS else "bits:other"
            family_bits[piece.family] = family_bits.get(piece.family, 0.0) + piece.weight
        elif piece.level in _PARTIAL_LEVELS:
            name = "bits:ip/24" if piece.level == "prefix" else "bits:address/building"
        else:
            name = "bits:weak"
        row[_POSITION[name]] += piece.weight / _BITS
        if (piece.kind in rules.SESSION_KINDS and piece.gap_hours is not None and piece.level in _EXACT_LEVELS
                and piece.weight > 0):
            if piece.gap_hours <= 6.0:
                row[_POSITION["session_within_6h"]] = 1.0
            elif piece.gap_hours <= 24.0:
                row[_POSITION["session_within_24h"]] = 1.0
    row[_POSITION["families"]] = float(sum(1 for bits in family_bits.values() if bits >= _FAMILY_BITS))
    return row
