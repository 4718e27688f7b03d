"""Write a scan's results as the contract's CSV files plus hubs, rejects, matches and evidence.

Files are written to a temporary name and renamed into place, so a crash mid-write never
leaves a half-written pairs.csv that a downstream system could mistake for a result.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ..errors import OutputError
from ..evidence import Evidence, iso_time
from ..files import create_beside
from ..scan import ScanResult
from ..settings import Settings

PAIR_COLUMNS = ["store_a", "store_b", "score", "linked", "catalog_overlap", "reasons",
                "operator_score", "cluster_id"]
CLUSTER_COLUMNS = ["store_id", "cluster_id", "cluster_risk", "cluster_size", "bridge"]
HUB_COLUMNS = ["kind", "value", "stores", "note"]
REJECTED_COLUMNS = ["file", "line", "reason", "content"]
MATCH_COLUMNS = ["store_a", "product_a", "store_b", "product_b", "text_similarity", "image_distance"]


@contextmanager
def _atomic(path: Path) -> Iterator[TextIO]:
    """A text handle on a temporary file beside `path` (assoc.files: the mode open() would give it), renamed
    over `path` once written in full."""
    fd, temp = create_beside(path)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _write_csv(path: Path, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    with _atomic(path) as handle:
        writer = csv.writer(handle)  # RFC 4180: CRLF, so a lone CR in a value gets quoted
        writer.writerow(columns)
        writer.writerows(rows)


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_scan_outputs(result: ScanResult, outdir: Path, settings: Settings) -> dict[str, Any]:
    """Write every result file into `outdir` (created if needed); returns the summary."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output folder: {exc.strerror or exc}") from exc
    try:
        _write_all(result, outdir, settings)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot write results: {exc.strerror or exc}") from exc
    return summarise(result)


def _write_all(result: ScanResult, outdir: Path, settings: Settings) -> None:
    _write_csv(outdir / "pairs.csv", PAIR_COLUMNS, (
        [p.store_a, p.store_b, _num(p.score), "true" if p.linked else "false", _num(p.catalog_overlap),
         ";".join(p.reasons), _num(p.operator_score), p.cluster_id]
        for p in result.pairs))
    _write_csv(outdir / "clusters.csv", CLUSTER_COLUMNS, (
        [store, c.cluster_id, _num(c.risk), len(c.members), "true" if store in c.bridges else "false"]
        for c in result.clusters for store in c.members))
    _write_csv(outdir / "hubs.csv", HUB_COLUMNS, ([h.kind, h.value, h.stores, h.note] for h in result.hubs))
    _write_csv(outdir / "rejected.csv", REJECTED_COLUMNS,
               ([r.file, r.line, r.reason, r.content] for r in result.rejected))
    if result.catalog is not None:
        _write_csv(outdir / "catalog_matches.csv", MATCH_COLUMNS, (
            [m.store_a, m.product_a, m.store_b, m.product_b, _num(m.text_similarity, 3),
             "" if m.image_distance is None else m.image_distance]
            for m in result.catalog.matches))
    with _atomic(outdir / "evidence.jsonl") as handle:
        for p in result.pairs:
            record = {"store_a": p.store_a, "store_b": p.store_b, "score": round(p.score, 6),
                      "operator_score": round(p.operator_score, 6), "linked": p.linked,
                      "catalog_overlap": p.catalog_overlap, "reasons": list(p.reasons),
                      "cluster_id": p.cluster_id,
                      "contributions": [[name, round(bits, 4)] for name, bits in p.contributions],
                      "evidence": [_evidence_record(e) for e in p.evidence]}
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    with _atomic(outdir / "summary.json") as handle:
        json.dump({"summary": summarise(result), "settings": settings.to_dict(),
                   "bundle": str(result.bundle_root) if result.bundle_root else None},
                  handle, indent=2, sort_keys=True)
        handle.write("\n")


def _evidence_record(piece: Evidence) -> dict[str, Any]:
    # Spelled out rather than dataclasses.asdict, which deep-copies every field: a tenth of a large scan's time.
    return {"kind": piece.kind, "level": piece.level, "value": piece.value, "stores": piece.stores,
            "gap_hours": piece.gap_hours, "first_seen_a": iso_time(piece.first_seen_a),
            "first_seen_b": iso_time(piece.first_seen_b), "note": piece.note, "key": piece.key,
            "support": piece.support, "weight": round(piece.weight, 4), "code": piece.code}


def summarise(result: ScanResult, largest: int = 5) -> dict[str, Any]:
    return {
        "stores": result.store_count,
        "pairs_reported": len(result.pairs),
        "pairs_linked": result.linked_pairs,
        "clusters": len(result.clusters),
        "stores_in_clusters": sum(len(c.members) for c in result.clusters),
        "largest_clusters": [
            {"cluster_id": c.cluster_id, "size": len(c.members), "risk": round(c.risk, 4)}
            for c in sorted(result.clusters, key=lambda c: (-len(c.members), -c.risk, c.cluster_id))[:largest]
        ],
        "scorer": result.scorer,
        "hubs": len(result.hubs),
        "hubs_ignored": sum(1 for h in result.hubs if h.note.startswith("ignored:")),
        "rejected_rows": len(result.rejected),
        "stats": dict(sorted(result.stats.items())),
    }
