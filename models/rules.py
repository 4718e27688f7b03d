"""The transparent rule scorer: a table of log2 Bayes factors, adjusted for rarity and time.

score = P(same operator) = 1 / (1 + 2 ** -(PRIOR + sum of weights))

Each weight reads as "this piece makes a shared operator 2**weight times more likely". The base
weights are m/u ratios in spirit (splink): how often stores of one operator share such a value,
over how often two unrelated stores do.

Why these numbers (measured on bench/market.py bundles, see BENCHMARKS.md):
- PRIOR = -10: among candidate pairs (pairs that share any key at all) most are unrelated;
  a pair needs about 10 bits of evidence to reach 0.5.
- A payout account, tax id, email, phone, device id or (globally unique) MAC is rarely shared
  by unrelated sellers: 13-16 bits, so one such match links on its own, as platforms do.
- A full postal unit (street, number, building, room) is strong (11 bits) unless written as a
  care-of / returns address (a forwarder's warehouse serves many sellers: 2 bits).
- A browser fingerprint collides across identical browser builds: 8 bits, below the bar alone.
- One IP, a person name, a shared /24 or a shared building never link on their base weight alone
  (5, 5, 1.5, 2 bits): they need corroboration from another family, or, for an IP, time (below).
Rarity: a value shared by k stores loses log2(k - 1) bits (Splink's term-frequency adjustment
in its simplest form): two stores sharing it are full weight, ten are about 3 bits less. Above
the hub cap a value is not evidence at all (it never becomes a candidate key).
Time: for session-bound kinds (ip, device, MAC, browser), two stores seen with the same value
within 6 hours gain 6 bits, within a day 3, within a week 0.5; more than a year apart lose 1.
So one IP does not link on its own, but the same IP used by both stores within six hours (a
shared session) does when no more than three stores ever used it, or when every sighting of it,
in every store, falls within six hours: then the holders are one session (one operator signing
in to all of them) and the value loses nothing to rarity (evidence.session_values; measured in
BENCHMARKS.md "Session values": no such value of 3-25 holders in four generated markets belonged
to two operators) (DESIGN_NOTES §4).
A missing time is unknown, not long. An IP only the two stores hold, dated in one of them and
undated in the other, gains 5.5 bits and links alone, half a bit below a shared session, when at
most three stores use its /24 (/64): the export records times and this row lost its time, and in
33 generated markets a pair sharing such an IP and nothing else was one operator's 58 times in 58
(BENCHMARKS.md "Undated sightings"). In a busy /24 (a mobile carrier's NAT pool, a data centre)
the same pairs were two operators' 5 times in 5, so there it gains nothing. When neither store's
sighting is dated nothing is added: the export may record no times at all.
Corroboration: a value held by k >= 3 stores whose holder pairs are rarely corroborated by
anything else (support s, see evidence.value_support) loses a further 2 (1 - s) (log2(k - 1) - 1)
bits, and when at most one holder pair in five is corroborated (s <= 0.2) it is shared
infrastructure and counts 2 bits at most, as a care-of address does: a pooled agency account or
a forwarder's warehouse links nobody, while an operator's payout account, shared along with
names, devices, logins or products, keeps its weight. (Measured on generated markets of 150 to
20,000 stores, BENCHMARKS.md "Shared infrastructure": every link that needed a value with
s <= 0.2 joined two operators; from s = 0.34 up some joined one operator's stores.)
A pair whose two stores other evidence chains into one group of the value's holders (three or
more of them, evidence.ValueSupport) takes the group's share of the holders as its support when
that is larger: a careful operator's stores each share a name or a phone with only one or two
of the others, and the account they all share keeps its weight among them, while a pool's
unrelated clients, sharing nothing else, form no such group (BENCHMARKS.md "Corroborated groups").
When that group holds at least half of the holders of a value one party controls (a payout account,
phone, e-mail, tax id, device or MAC; evidence.CONTROLLED_KINDS), every holder pair takes its share:
the value is mostly one operator's, and a holder that shares nothing else is that operator's careful
store far more often than an unrelated seller (BENCHMARKS.md "Majority groups").
Several values of one kind are not independent (two IPs of one home): the strongest counts in
full, the next half, the next a quarter, and so on.
"""

from __future__ import annotations

import math
from collections import defaultdict

from assoc.evidence import SESSION_HOURS, Evidence

PRIOR = -10.0

EXACT_WEIGHTS = {
    "payment_account": 16.0,
    "tax_id": 16.0,
    "email": 15.0,
    "phone": 14.0,
    "device_id": 14.0,
    "mac": 13.0,
    "address": 11.0,
    "browser_fp": 8.0,
    "ip": 5.0,
    "person_name": 5.0,
}
UNKNOWN_KIND_WEIGHT = 6.0  # kinds the format does not define are compared exactly, trusted moderately

LEVEL_WEIGHTS = {
    "prefix": 1.5,  # same IPv4 /24 or IPv6 /64
    "building": 2.0,  # same building, other or unknown unit
    "national": 12.0,  # same national phone number, country unknown or read differently
}
WEAK_WEIGHTS = {  # values their normaliser marked weak, by kind
    "mac": 4.0,  # locally administered / randomised MACs repeat across machines
    "address": 2.0,  # care-of / returns / warehouse addresses
}
WEAK_DEFAULT = 0.5  # private, reserved and carrier-NAT IPs and the like

SESSION_KINDS = frozenset({"ip", "device_id", "mac", "browser_fp"})
TIME_BONUS = ((SESSION_HOURS, 6.0), (24.0, 3.0), (24.0 * 7, 0.5))  # (within hours, bits)
STALE_HOURS, STALE_PENALTY = 24.0 * 365, -1.0
# An IP only two stores hold, dated in one of them and undated in the other: the export keeps times and
# this one was lost, so the gap is unknown rather than long; it counts where the IP's /24 (/64) is quiet,
# as a home line's is, and not in a carrier's or a data centre's busy pool (BENCHMARKS.md "Undated sightings").
UNDATED_IP_BONUS, QUIET_PREFIX_STORES = 5.5, 3

CATALOG_OWN_SLOPE, CATALOG_OWN_CAP = 20.0, 8.0  # own products: 0.30 of the smaller catalog = 6 bits, never enough alone
CATALOG_SUPPLIER_SLOPE, CATALOG_SUPPLIER_CAP = 3.0, 2.0  # common stock says little about the operator

DIMINISHING = 0.5


def base_weight(piece: Evidence) -> float:
    if piece.kind == "catalog":
        share = float(piece.value)
        if piece.level == "own":
            return min(CATALOG_OWN_CAP, CATALOG_OWN_SLOPE * share)
        return min(CATALOG_SUPPLIER_CAP, CATALOG_SUPPLIER_SLOPE * share)
    if piece.level == "weak":
        return WEAK_WEIGHTS.get(piece.kind, WEAK_DEFAULT)
    if piece.level in LEVEL_WEIGHTS:
        return LEVEL_WEIGHTS[piece.level]
    return EXACT_WEIGHTS.get(piece.kind, UNKNOWN_KIND_WEIGHT)


def in_quiet_prefix(piece: Evidence) -> bool:
    """An IP whose /24 (/64) at most QUIET_PREFIX_STORES stores use (a home line's, not a busy pool's)."""
    return piece.prefix_stores is not None and piece.prefix_stores <= QUIET_PREFIX_STORES


def time_adjustment(piece: Evidence) -> float:
    if piece.kind not in SESSION_KINDS or piece.level == "weak":
        return 0.0
    if piece.gap_hours is None:
        one_side_dated = (piece.first_seen_a is None) != (piece.first_seen_b is None)
        lost_time = piece.kind == "ip" and piece.stores == 2 and one_side_dated and in_quiet_prefix(piece)
        return UNDATED_IP_BONUS if lost_time else 0.0
    for within, bonus in TIME_BONUS:
        if piece.gap_hours <= within:
            return bonus
    return STALE_PENALTY if piece.gap_hours > STALE_HOURS else 0.0


UNCORROBORATED_SLOPE = 2.0
INFRASTRUCTURE_SUPPORT, INFRASTRUCTURE_WEIGHT = 0.2, 2.0


def rarity_adjustment(piece: Evidence, support: float | None = None) -> float:
    if piece.stores <= 2:
        return 0.0
    rarity = math.log2(piece.stores - 1)
    support = 1.0 if support is None else support
    # The doubt grows faster than rarity: three holders may be one careful operator, twenty are not.
    return -rarity - UNCORROBORATED_SLOPE * (1.0 - support) * max(0.0, rarity - 1.0)


def weigh(evidence: list[Evidence], support: dict[tuple[str, str], float] | None = None,
          sessions: frozenset[tuple[str, str]] = frozenset()) -> list[Evidence]:
    """Each piece with its weight; within a kind, the strongest first at full weight.

    `support` (evidence.ValueSupport.for_pair: each value as this pair sees it) is recorded on the
    pieces it covers; values in `sessions` (evidence.session_values) are one login session and
    lose nothing to rarity."""
    support = support or {}
    by_kind: dict[tuple[str, bool], list[tuple[float, float | None, Evidence]]] = defaultdict(list)
    for piece in evidence:
        value_support = support.get(piece.identity)
        rarity = 0.0 if piece.identity in sessions else rarity_adjustment(piece, value_support)
        raw = max(0.0, base_weight(piece) + rarity + time_adjustment(piece))
        if piece.stores >= 3 and value_support is not None and value_support <= INFRASTRUCTURE_SUPPORT:
            raw = min(raw, INFRASTRUCTURE_WEIGHT)
        by_kind[(piece.kind, piece.level == "supplier")].append((raw, value_support, piece))
    weighted = []
    for pieces in by_kind.values():
        pieces.sort(key=lambda item: (-item[0], item[2].value))
        weighted.extend(piece.weighted(raw * DIMINISHING**rank, value_support)
                        for rank, (raw, value_support, piece) in enumerate(pieces))
    return sorted(weighted, key=lambda p: (-p.weight, p.kind, p.value))


def probability(evidence: list[Evidence]) -> float:
    """Association probability from weighted evidence."""
    logit = PRIOR + sum(p.weight for p in evidence)
    return 1.0 / (1.0 + 2.0 ** (-logit))
