"""The review queue: OUTDIR/review_queue.csv, one row per cluster, riskiest first, for a human to decide.

Reviewers fill in the `decision` and `note` columns. Writing the queue again (a new report
after a rescan) must not throw their work away: a decision is carried over to the cluster with
the same id when its members are unchanged; when the members changed, the old decision is
quoted in the note and the decision is left empty, because it was made about other stores.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from ..errors import OutputError
from .outdir import PairRecord, ScanOutput
from .tables import _atomic

QUEUE_FILE = "review_queue.csv"
QUEUE_COLUMNS = ["rank", "cluster_id", "risk", "size", "members", "bridges", "top_reasons", "strongest_pair",
                 "decision", "note"]
TOP_REASONS = 3


def top_reasons(pairs: list[PairRecord], limit: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The reason codes behind most of a cluster's pairs, as (code, pairs carrying it), most common first.

    `via:cluster` is left out: it says a pair has no direct evidence, not why the cluster exists.
    Ties go to the code with more evidence weight behind it, then alphabetically.
    """
    count: Counter[str] = Counter()
    weight: Counter[str] = Counter()
    for pair in pairs:
        for code in pair.reasons:
            if code != "via:cluster":
                count[code] += 1
        for piece in pair.evidence:
            weight[piece.code] += piece.weight
    ranked = sorted(count, key=lambda code: (-count[code], -weight[code], code))
    return [(code, count[code]) for code in ranked[:limit]]


def format_reasons(reasons: list[tuple[str, int]]) -> str:
    return "; ".join(f"{code} ({n} pair{'s' if n != 1 else ''})" for code, n in reasons)


def queue_rows(scan: ScanOutput) -> list[dict[str, str]]:
    """One row per cluster in the scan's risk order, decision and note empty."""
    rows = []
    for rank, cluster in enumerate(scan.clusters, start=1):
        pairs = scan.cluster_pairs(cluster.cluster_id)
        direct = [p for p in pairs if "via:cluster" not in p.reasons]
        strongest = f"{direct[0].store_a} + {direct[0].store_b} ({direct[0].score:.3f})" if direct else ""
        rows.append({
            "rank": str(rank), "cluster_id": cluster.cluster_id, "risk": f"{cluster.risk:.4f}",
            "size": str(len(cluster.members)), "members": ";".join(cluster.members),
            "bridges": ";".join(cluster.bridges), "top_reasons": format_reasons(top_reasons(pairs)),
            "strongest_pair": strongest, "decision": "", "note": "",
        })
    return rows


def write_review_queue(scan: ScanOutput, path: Path | None = None) -> Path:
    """Write the queue (default OUTDIR/review_queue.csv), keeping decisions already made; returns its path."""
    path = Path(path) if path is not None else scan.outdir / QUEUE_FILE
    rows = queue_rows(scan)
    _carry_over_decisions(rows, _read_previous(path))
    try:
        with _atomic(path) as handle:
            writer = csv.DictWriter(handle, fieldnames=QUEUE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the review queue: {exc.strerror or exc}") from exc
    return path


def _read_previous(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing queue that carry a decision or a note, by cluster id."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        # Overwriting a queue we cannot read could destroy a reviewer's work: stop instead.
        raise OutputError(f"{path}: exists but cannot be read ({exc}); move it away and run again") from exc
    return {row.get("cluster_id", ""): row for row in rows
            if (row.get("decision") or "").strip() or (row.get("note") or "").strip()}


def _carry_over_decisions(rows: list[dict[str, str]], previous: dict[str, dict[str, str]]) -> None:
    for row in rows:
        old = previous.get(row["cluster_id"])
        if old is None:
            continue
        if old.get("members", "") == row["members"]:
            row["decision"], row["note"] = old.get("decision", ""), old.get("note", "")
        else:
            earlier = f"decision {old.get('decision', '')!r} was for members {old.get('members', '')}"
            row["note"] = "; ".join(part for part in (f"membership changed: {earlier}", old.get("note", "")) if part)

