"""Read a finished scan's OUTDIR back into typed records, for the reports written after a scan.

`assoc report`, `assoc explain` and `assoc export` work from the files `assoc scan` wrote
(evidence.jsonl, clusters.csv, hubs.csv, catalog_matches.csv, summary.json), not from a live
ScanResult: a reviewer can rebuild a report or explain a pair long after the scan, on another
machine, without the bundle. The bundle (pictures, titles, store names) is optional extra.

Masking lives here too, because every reader shows identifier values: payout accounts, phones,
e-mails and tax ids are personal data and are masked unless a caller asks to reveal them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.rules import PRIOR

from ..errors import AssocError
from ..evidence import FAMILIES

# Signal kinds whose values are personal data: masked in every report unless revealed.
PII_KINDS = frozenset({"payment_account", "phone", "email", "tax_id"})


class ScanOutputError(AssocError):
    """A scan's output folder is missing, incomplete or unreadable."""


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One piece of a pair's evidence as evidence.jsonl holds it (see assoc.evidence.Evidence)."""

    code: str  # reason code, e.g. shared:payment_account
    kind: str
    level: str
    value: str  # canonical value, unmasked
    stores: int  # how many stores share the value
    weight: float  # bits
    first_seen_a: str  # ISO 8601 UTC or ''
    first_seen_b: str
    gap_hours: float | None
    note: str
    key: str  # index key kind ('ip/24', 'address/unit', ...); '' for catalog evidence
    support: float | None

    @property
    def family(self) -> str:
        return FAMILIES.get(self.kind, "other")

    @property
    def is_identifier(self) -> bool:
        """True for a shared value (an identifier node in graphs); catalog evidence is a share, not a value."""
        return self.kind != "catalog"

    @property
    def identity(self) -> tuple[str, str]:
        """The shared value as the scan's index knew it: (key kind, canonical value)."""
        return (self.key or self.kind, self.value)

    def shown_value(self, reveal_pii: bool = False) -> str:
        return self.value if reveal_pii else mask_value(self.kind, self.value)


@dataclass(frozen=True, slots=True)
class WaterfallStep:
    """One row of a score waterfall: a piece of evidence and where the running total stands after it."""

    evidence: EvidenceRecord
    bits_after: float
    probability_after: float

    def to_dict(self, reveal_pii: bool = False) -> dict[str, Any]:
        """The step as JSON-ready data (rounded for display), as the HTML report and `explain --json` give it."""
        piece = self.evidence
        return {
            "code": piece.code, "value": piece.shown_value(reveal_pii), "family": piece.family,
            "weight": round(piece.weight, 4), "bits_after": round(self.bits_after, 4),
            "p_after": round(self.probability_after, 4), "stores": piece.stores,
            "first_seen_a": piece.first_seen_a, "first_seen_b": piece.first_seen_b,
            "gap_hours": None if piece.gap_hours is None else round(piece.gap_hours, 1), "note": piece.note,
        }


@dataclass(frozen=True, slots=True)
class PairRecord:
    store_a: str
    store_b: str
    score: float
    operator_score: float
    linked: bool
    catalog_overlap: float | None
    reasons: tuple[str, ...]
    cluster_id: str
    evidence: tuple[EvidenceRecord, ...]
    line: int  # line of evidence.jsonl that holds this pair (1-based), for pointers back into the files
    contributions: tuple[tuple[str, float], ...] = ()  # a learned scorer's (feature, bits); empty under the rules

    @property
    def key(self) -> tuple[str, str]:
        return (self.store_a, self.store_b)

    def waterfall(self) -> list[WaterfallStep]:
        """The evidence in order of weight with the running total from the scoring model's prior.

        The operator score is 1 / (1 + 2 ** -(prior + bits)) (models/rules.py); the steps show how
        each piece moves it. The pair's final score can be higher than the last step: the catalog
        rule and a path through the cluster raise it without being bits of evidence.
        """
        steps = []
        bits = PRIOR
        for piece in sorted(self.evidence, key=lambda p: (-p.weight, p.code, p.value)):
            bits += piece.weight
            steps.append(WaterfallStep(piece, bits, bits_to_probability(bits)))
        return steps


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    cluster_id: str
    risk: float
    members: tuple[str, ...]  # sorted
    bridges: tuple[str, ...]  # stores whose removal splits the cluster


@dataclass(frozen=True, slots=True)
class HubRecord:
    kind: str
    value: str
    stores: int
    note: str

    def shown_value(self, reveal_pii: bool = False) -> str:
        return self.value if reveal_pii else mask_value(self.kind.split("/")[0], self.value)


@dataclass(frozen=True, slots=True)
class CatalogMatch:
    store_a: str
    product_a: str
    store_b: str
    product_b: str
    text_similarity: float | None
    image_distance: int | None


@dataclass
class ScanOutput:
    """Everything a scan wrote, typed. Pairs keep the order of evidence.jsonl (the order of pairs.csv)."""

    outdir: Path
    summary: dict[str, Any]
    settings: dict[str, Any]
    bundle: Path | None  # the scanned bundle's directory as summary.json records it; may no longer exist
    pairs: list[PairRecord]
    clusters: list[ClusterRecord]  # ranked: highest risk first, then largest, then id
    hubs: list[HubRecord]
    catalog_matches: list[CatalogMatch]

    def __post_init__(self) -> None:
        self._pairs_by_key = {p.key: p for p in self.pairs}
        self._cluster_of = {store: c.cluster_id for c in self.clusters for store in c.members}
        self._pairs_by_cluster: dict[str, list[PairRecord]] = {}
        for pair in self.pairs:
            if pair.cluster_id:
                self._pairs_by_cluster.setdefault(pair.cluster_id, []).append(pair)

    def pair(self, store_x: str, store_y: str) -> PairRecord | None:
        """The reported pair of two stores, in either order; None if the scan reported nothing between them."""
        return self._pairs_by_key.get((min(store_x, store_y), max(store_x, store_y)))

    def cluster_of(self, store: str) -> str:
        return self._cluster_of.get(store, "")

    def cluster_pairs(self, cluster_id: str) -> list[PairRecord]:
        """Pairs inside one cluster, strongest first."""
        inside = self._pairs_by_cluster.get(cluster_id, [])
        return sorted(inside, key=lambda p: (-p.score, -p.operator_score, p.key))

    def linked_outside_clusters(self) -> list[PairRecord]:
        """Linked pairs in no cluster: catalog-rule links, and links through a doubtful shared value,
        join stores pairwise without merging them into clusters (assoc/cluster.py)."""
        outside = [p for p in self.pairs if p.linked and not p.cluster_id]
        return sorted(outside, key=lambda p: (-p.score, p.key))

    def matches_by_pair(self) -> dict[tuple[str, str], list[CatalogMatch]]:
        grouped: dict[tuple[str, str], list[CatalogMatch]] = {}
        for match in self.catalog_matches:
            grouped.setdefault((match.store_a, match.store_b), []).append(match)
        return grouped

    def known_stores(self) -> set[str]:
        """Stores that appear in any result file (a store with no reported pair appears in none)."""
        return {s for p in self.pairs for s in p.key} | set(self._cluster_of)


def bits_to_probability(bits: float) -> float:
    # 2 ** -bits overflows a float past about 1,000 bits; the probability is 0 there anyway.
    return 0.0 if bits < -1000 else 1.0 / (1.0 + 2.0 ** (-bits))


def mask_value(kind: str, value: str) -> str:
    """A personal value shown safely: enough to tell values apart, not enough to use one.

    `6222021234560123` -> `6222 **** **** 0123`; `+8613800138000` -> `+86 **** 8000`;
    `shop.owner@gmail.com` -> `s***@gmail.com`; `91440300MA5XXXXX12` -> `9144 **** 12`.
    Other kinds are returned unchanged.
    """
    if kind not in PII_KINDS or not value:
        return value
    if kind == "email" or (kind == "payment_account" and "@" in value):
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else "***"
    if kind == "phone":
        return f"{value[:3]} **** {value[-4:]}" if len(value) >= 9 else "****"
    if kind == "tax_id":
        return f"{value[:4]} **** {value[-2:]}" if len(value) >= 10 else "****"
    # Payout accounts: card and bank numbers keep the issuer prefix and the last four, as banks print them.
    if len(value) >= 12:
        return f"{value[:4]} **** **** {value[-4:]}"
    return f"**** {value[-2:]}" if len(value) >= 6 else "****"


def read_scan_output(outdir: Path | str) -> ScanOutput:
    """Load a scan's OUTDIR. Raises ScanOutputError naming the missing or broken file."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise ScanOutputError(f"{outdir}: not a folder; give the --out folder of an `assoc scan` run")
    summary_file = _required(outdir, "summary.json")
    try:
        meta = json.loads(summary_file.read_text(encoding="utf-8"))
        summary, settings = meta["summary"], meta["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ScanOutputError(f"{summary_file}: unreadable ({exc}); run `assoc scan` again") from exc
    bundle = Path(meta["bundle"]) if meta.get("bundle") else None
    pairs = list(_read_pairs(_required(outdir, "evidence.jsonl")))
    clusters = _read_clusters(_required(outdir, "clusters.csv"))
    hubs = [HubRecord(row["kind"], row["value"], int(row["stores"]), row.get("note", ""))
            for _, row in _csv_rows(outdir / "hubs.csv")]
    matches = [CatalogMatch(row["store_a"], row["product_a"], row["store_b"], row["product_b"],
                            _float(row.get("text_similarity", "")), _int(row.get("image_distance", "")))
               for _, row in _csv_rows(outdir / "catalog_matches.csv")]
    return ScanOutput(outdir=outdir, summary=summary, settings=settings, bundle=bundle, pairs=pairs,
                      clusters=clusters, hubs=hubs, catalog_matches=matches)


def _required(outdir: Path, name: str) -> Path:
    path = outdir / name
    if not path.is_file():
        raise ScanOutputError(f"{path}: missing; {outdir} does not hold a complete `assoc scan` output, "
                              "run the scan again with --out pointing there")
    return path


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of an optional result file with their line numbers; nothing if the file is absent."""
    if not path.is_file():
        return
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            yield from enumerate(csv.DictReader(handle), start=2)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScanOutputError(f"{path}: unreadable ({exc}); run `assoc scan` again") from exc


def _read_pairs(path: Path) -> Iterator[PairRecord]:
    with open(path, encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                yield PairRecord(
                    store_a=record["store_a"], store_b=record["store_b"], score=float(record["score"]),
                    operator_score=float(record["operator_score"]), linked=bool(record["linked"]),
                    catalog_overlap=record["catalog_overlap"], reasons=tuple(record["reasons"]),
                    cluster_id=record.get("cluster_id", ""),
                    evidence=tuple(_evidence(piece) for piece in record["evidence"]), line=line,
                    contributions=tuple((str(name), float(bits)) for name, bits in record.get("contributions", ())))
            except (ValueError, KeyError, TypeError) as exc:
                raise ScanOutputError(f"{path} line {line}: not a pair record ({exc!r}); "
                                      "run `assoc scan` again") from exc


def _evidence(piece: dict[str, Any]) -> EvidenceRecord:
    return EvidenceRecord(
        code=piece["code"], kind=piece["kind"], level=piece["level"], value=str(piece["value"]),
        stores=int(piece["stores"]), weight=float(piece["weight"]), first_seen_a=piece.get("first_seen_a") or "",
        first_seen_b=piece.get("first_seen_b") or "", gap_hours=piece.get("gap_hours"), note=piece.get("note", ""),
        key=piece.get("key", ""), support=piece.get("support"))


def _read_clusters(path: Path) -> list[ClusterRecord]:
    members: dict[str, list[str]] = {}
    bridges: dict[str, list[str]] = {}
    risk: dict[str, float] = {}
    for line, row in _csv_rows(path):
        try:
            cluster_id = row["cluster_id"]
            risk[cluster_id] = float(row["cluster_risk"])
        except (KeyError, ValueError) as exc:
            raise ScanOutputError(f"{path} line {line}: bad cluster row ({exc!r}); run `assoc scan` again") from exc
        members.setdefault(cluster_id, []).append(row["store_id"])
        if row.get("bridge") == "true":
            bridges.setdefault(cluster_id, []).append(row["store_id"])
    clusters = [ClusterRecord(cid, risk[cid], tuple(sorted(stores)), tuple(sorted(bridges.get(cid, []))))
                for cid, stores in members.items()]
    return sorted(clusters, key=lambda c: (-c.risk, -len(c.members), c.cluster_id))


def _float(text: str) -> float | None:
    return float(text) if text else None


def _int(text: str) -> int | None:
    return int(float(text)) if text else None
