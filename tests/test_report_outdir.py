"""Reading a scan's OUTDIR back (assoc.report.outdir), masking, explain and the review queue.

Most tests run on a live scan of the committed example bundle, so a change in what the scan
writes shows up here; masking and edge cases use small hand-written OUTDIRs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from assoc.bundle import read_bundle
from assoc.explain import UnknownStoreError, explain_pair
from assoc.report import write_scan_outputs
from assoc.report.outdir import (
    EvidenceRecord,
    PairRecord,
    ScanOutputError,
    bits_to_probability,
    mask_value,
    read_scan_output,
)
from assoc.report.queue import QUEUE_COLUMNS, queue_rows, top_reasons, write_review_queue
from assoc.scan import scan
from assoc.settings import Settings
from models.rules import PRIOR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(cache_dir=None)
    outdir = tmp_path_factory.mktemp("example") / "out"
    write_scan_outputs(scan(read_bundle(ROOT / "examples" / "bundle"), settings), outdir, settings)
    return outdir


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_reader_returns_every_pair_and_cluster_the_csv_files_hold(example_outdir):
    results = read_scan_output(example_outdir)
    rows = _csv(example_outdir / "pairs.csv")
    assert [p.key for p in results.pairs] == [(r["store_a"], r["store_b"]) for r in rows]
    assert [p.linked for p in results.pairs] == [r["linked"] == "true" for r in rows]
    assert all(abs(p.score - float(r["score"])) < 1e-4 for p, r in zip(results.pairs, rows, strict=True))
    by_cluster: dict[str, set[str]] = {}
    for row in _csv(example_outdir / "clusters.csv"):
        by_cluster.setdefault(row["cluster_id"], set()).add(row["store_id"])
    assert {c.cluster_id: set(c.members) for c in results.clusters} == by_cluster
    assert len(results.catalog_matches) == len(_csv(example_outdir / "catalog_matches.csv"))
    assert results.bundle == (ROOT / "examples" / "bundle").resolve()


def test_clusters_are_ranked_by_risk_then_size(example_outdir):
    clusters = read_scan_output(example_outdir).clusters
    keys = [(-c.risk, -len(c.members), c.cluster_id) for c in clusters]
    assert keys == sorted(keys) and len(clusters) >= 2


def test_pair_lookup_ignores_the_order_of_the_two_ids(example_outdir):
    results = read_scan_output(example_outdir)
    first = results.pairs[0]
    assert results.pair(first.store_b, first.store_a) is first
    assert results.pair(first.store_a, first.store_b) is first


def test_waterfall_adds_up_to_the_operator_score(example_outdir):
    for pair in read_scan_output(example_outdir).pairs:
        steps = pair.waterfall()
        if not steps:
            continue
        assert steps[-1].bits_after == pytest.approx(PRIOR + sum(e.weight for e in pair.evidence))
        assert steps[-1].probability_after == pytest.approx(pair.operator_score, abs=1e-4)
        assert [s.evidence.weight for s in steps] == sorted((s.evidence.weight for s in steps), reverse=True)


def test_bits_to_probability_is_the_logistic_in_base_two():
    assert bits_to_probability(0) == 0.5
    assert bits_to_probability(10) == pytest.approx(1024 / 1025)
    assert bits_to_probability(-5000) == 0.0


@pytest.mark.parametrize(("kind", "value", "shown"), [
    ("payment_account", "6222021234560123", "6222 **** **** 0123"),
    ("payment_account", "owner@alipay.example", "o***@alipay.example"),
    ("payment_account", "12345", "****"),
    ("phone", "+8613800138000", "+86 **** 8000"),
    ("email", "shop.owner@gmail.com", "s***@gmail.com"),
    ("tax_id", "91440300MA5XXXXX12", "9144 **** 12"),
    ("mac", "3c:da:1e:4b:1b:37", "3c:da:1e:4b:1b:37"),
    ("person_name", "fang liu", "fang liu"),
])
def test_masking_keeps_only_a_recognisable_fragment(kind, value, shown):
    assert mask_value(kind, value) == shown


def test_missing_outdir_and_missing_files_name_the_problem(tmp_path, example_outdir):
    with pytest.raises(ScanOutputError, match="not a folder"):
        read_scan_output(tmp_path / "nope")
    partial = tmp_path / "partial"
    shutil.copytree(example_outdir, partial)
    (partial / "evidence.jsonl").unlink()
    with pytest.raises(ScanOutputError, match=r"evidence\.jsonl: missing"):
        read_scan_output(partial)
    (partial / "evidence.jsonl").write_text('{"store_a": "A"}\n', encoding="utf-8")
    with pytest.raises(ScanOutputError, match=r"evidence\.jsonl line 1: not a pair record"):
        read_scan_output(partial)


def test_explain_gives_the_same_answer_in_either_order(example_outdir):
    results = read_scan_output(example_outdir)
    pair = next(p for p in results.pairs if p.linked and p.evidence)
    forward = explain_pair(results, pair.store_a, pair.store_b)
    backward = explain_pair(results, pair.store_b, pair.store_a)
    assert forward == backward and forward.pair is pair
    data = forward.to_dict()
    assert data["reported"] and data["linked"] and len(data["waterfall"]) == len(pair.evidence)
    assert json.loads(json.dumps(data)) == data


def test_explain_two_known_stores_without_a_pair_says_no_evidence(example_outdir):
    results = read_scan_output(example_outdir)
    clusters = results.clusters
    a, b = clusters[0].members[0], clusters[1].members[0]
    assert results.pair(a, b) is None
    explanation = explain_pair(results, b, a)
    assert explanation.pair is None and explanation.store_a == min(a, b)
    assert explanation.message.startswith(f"no evidence between {min(a, b)} and {max(a, b)}")
    # A store that is in the bundle but in no result file is still known: the bundle says so.
    lonely = sorted(set(read_bundle(ROOT / "examples" / "bundle").stores) - results.known_stores())[0]
    assert explain_pair(results, a, lonely).pair is None


def test_explain_unknown_or_repeated_store_is_an_error(example_outdir):
    results = read_scan_output(example_outdir)
    store = results.pairs[0].store_a
    with pytest.raises(UnknownStoreError, match="unknown store id 'NOPE'"):
        explain_pair(results, store, "NOPE")
    with pytest.raises(UnknownStoreError, match="give two different stores"):
        explain_pair(results, store, store)


def test_explain_without_the_bundle_cannot_vouch_for_a_store_in_no_result_file(example_outdir, tmp_path):
    moved = tmp_path / "out"
    shutil.copytree(example_outdir, moved)
    summary = json.loads((moved / "summary.json").read_text(encoding="utf-8"))
    summary["bundle"] = str(tmp_path / "gone")
    (moved / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    results = read_scan_output(moved)
    with pytest.raises(UnknownStoreError, match="check the spelling"):
        explain_pair(results, results.pairs[0].store_a, "T99999")


def test_queue_has_one_row_per_cluster_in_risk_order(example_outdir):
    results = read_scan_output(example_outdir)
    rows = queue_rows(results)
    assert [r["cluster_id"] for r in rows] == [c.cluster_id for c in results.clusters]
    assert [r["rank"] for r in rows] == [str(n) for n in range(1, len(rows) + 1)]
    for row, cluster in zip(rows, results.clusters, strict=True):
        assert row["members"].split(";") == list(cluster.members) and row["size"] == str(len(cluster.members))
        assert row["top_reasons"] and "via:cluster" not in row["top_reasons"]
        assert row["decision"] == row["note"] == ""


def test_top_reasons_count_pairs_and_leave_out_via_cluster(example_outdir):
    results = read_scan_output(example_outdir)
    pairs = results.cluster_pairs(results.clusters[0].cluster_id)
    reasons = top_reasons(pairs, limit=10)
    for code, count in reasons:
        assert count == sum(1 for p in pairs if code in p.reasons)
    assert "via:cluster" not in dict(reasons)


def test_top_reasons_rank_by_pairs_then_weight_and_skip_via_cluster():
    def pair(b: str, reasons: tuple[str, ...], weights: dict[str, float]) -> PairRecord:
        evidence = tuple(EvidenceRecord(code=code, kind=code.split(":")[1], level="exact", value="v", stores=2,
                                        weight=w, first_seen_a="", first_seen_b="", gap_hours=None, note="", key="",
                                        support=None) for code, w in weights.items())
        return PairRecord("A", b, 1.0, 1.0, True, None, reasons, "C-A", evidence, line=1)

    pairs = [pair("B", ("shared:phone", "shared:ip"), {"shared:phone": 14, "shared:ip": 5}),
             pair("C", ("shared:email", "shared:ip"), {"shared:email": 15, "shared:ip": 5}),
             pair("D", ("via:cluster",), {}), pair("E", ("via:cluster",), {}), pair("F", ("via:cluster",), {})]
    assert top_reasons(pairs) == [("shared:ip", 2), ("shared:email", 1), ("shared:phone", 1)]


def test_rewriting_the_queue_keeps_reviewer_decisions(example_outdir, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(example_outdir, outdir)
    results = read_scan_output(outdir)
    path = write_review_queue(results)
    rows = _csv(path)
    assert list(rows[0]) == QUEUE_COLUMNS
    rows[0]["decision"], rows[0]["note"] = "confirmed", "same payout account"
    rows[1]["decision"], rows[1]["members"] = "cleared", "X1;X2"  # decided when the cluster had other members
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=QUEUE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    again = _csv(write_review_queue(results))
    assert (again[0]["decision"], again[0]["note"]) == ("confirmed", "same payout account")
    assert again[1]["decision"] == ""
    assert "membership changed" in again[1]["note"] and "'cleared'" in again[1]["note"]
    assert all(r["decision"] == "" for r in again[2:])


def test_explain_says_when_a_pair_is_linked_only_through_its_cluster(example_outdir, tmp_path):
    outdir = tmp_path / "out"
    shutil.copytree(example_outdir, outdir)
    # A third store joined to a linked pair's cluster through one of them only: the scan writes
    # the pair it forms with the other store with no evidence and the reason via:cluster.
    results = read_scan_output(outdir)
    linked = next(p for p in results.pairs if p.cluster_id)
    via = {"store_a": linked.store_a, "store_b": "ZZZ", "score": 0.61, "operator_score": 0.0, "linked": True,
           "catalog_overlap": None, "reasons": ["via:cluster"], "cluster_id": linked.cluster_id, "evidence": []}
    with open(outdir / "evidence.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(via) + "\n")
    explanation = explain_pair(read_scan_output(outdir), "ZZZ", linked.store_a)
    assert explanation.message == (f"{linked.store_a} + ZZZ: linked, score 0.610 (operator score 0.000), "
                                   f"cluster {linked.cluster_id}; no direct evidence: linked through other stores "
                                   "of the cluster")
    assert explanation.to_dict()["waterfall"] == []
