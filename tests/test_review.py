"""Reviewer decisions (assoc.decisions, `assoc review`): stored in the index file, applied by later scans."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc import Settings, read_bundle
from assoc.cli import main
from assoc.decisions import (
    ReviewError,
    ReviewState,
    decide_cluster,
    decide_pair,
    import_queue,
    list_decisions,
    parse_decision,
)
from assoc.evidence import Evidence
from assoc.normalise import normalise
from assoc.scan import ScanResult, scan
from assoc.store import IndexStore
from fixtures.market import generate

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(cache_dir=None)
POOLED = "6222 9999 0000 1234 567"  # a payout account planted into two unrelated stores


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("review") / "bundle"
    generate(path, stores=40, seed=3)
    return path


@pytest.fixture(scope="module")
def plain(bundle_dir) -> ScanResult:
    return scan(read_bundle(bundle_dir), SETTINGS)


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _copy(bundle_dir: Path, dest: Path, rows: list[tuple[str, str, str]]) -> Path:
    """The bundle with extra signals.csv rows (store_id, kind, value)."""
    shutil.copytree(bundle_dir, dest)
    with open(dest / "signals.csv", "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([(s, k, v, "") for s, k, v in rows])
    return dest


def _index(path: Path, bundle: Path) -> Path:
    with IndexStore.open(path, create=True) as index:
        index.add_bundle(read_bundle(bundle), SETTINGS)
    return path


def _rescan(db: Path, bundle: Path | None = None) -> ScanResult:
    """What `assoc scan --db` computes (or `scan BUNDLE --decisions db` when `bundle` is given)."""
    with IndexStore.open(db) as index:
        data = index.load_bundle() if bundle is None else read_bundle(bundle)
        review = ReviewState.load(index.connection)
    return scan(data, SETTINGS, review=review)


def _pair(result: ScanResult, a: str, b: str):
    a, b = sorted((a, b))
    return next((p for p in result.pairs if (p.store_a, p.store_b) == (a, b)), None)


def _loners(result: ScanResult) -> list[str]:
    """Stores of the scan in no cluster and no reported pair."""
    assert result.bundle_root is not None
    busy = {s for p in result.pairs for s in (p.store_a, p.store_b)} | {s for c in result.clusters for s in c.members}
    return sorted(s for s in read_bundle(result.bundle_root).stores if s not in busy)


@pytest.fixture(scope="module")
def pooled(bundle_dir, plain, tmp_path_factory) -> tuple[Path, str, str]:
    """A bundle where two otherwise unrelated stores share one payout account, and those stores."""
    a, b = _loners(plain)[:2]
    path = _copy(bundle_dir, tmp_path_factory.mktemp("pooled") / "bundle",
                 [(a, "payment_account", POOLED), (b, "payment_account", POOLED)])
    return path, a, b


def test_decisions_persist_across_a_process_level_reopen(tmp_path, pooled):
    bundle, a, b = pooled
    db = _index(tmp_path / "i.db", bundle)
    result = _run("review", "--db", db, "--pair", b, a, "--decision", "dismissed", "--note", "agency account",
                  "--reviewer", "alice")
    assert result.exit_code == 0, result.output
    assert f"dismissed {a} + {b} by alice" in result.output and "payment_account" in result.output
    listed = subprocess.run([sys.executable, "-m", "assoc.cli", "review", "list", "--db", str(db), "--json"],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    (stored,) = json.loads(listed.stdout)
    assert (stored["decision"], stored["members"], stored["reviewer"], stored["note"]) == (
        "dismissed", [a, b], "alice", "agency account")
    assert stored["decided_at"].endswith("Z") and len(stored["decided_at"]) == len("2024-01-01T00:00:00Z")
    assert "payment_account" in stored["kinds"] and stored["pairs"] == 1
    with IndexStore.open(db) as index:
        state = ReviewState.load(index.connection)
    assert state.pairs[(a, b)].decision == "dismissed" and "payment_account" in state.pairs[(a, b)].kinds


def test_a_dismissed_pair_stays_unlinked_until_evidence_of_a_new_kind_appears(tmp_path, bundle_dir, pooled):
    bundle, a, b = pooled
    db = _index(tmp_path / "i.db", bundle)
    before = _pair(_rescan(db), a, b)
    assert before is not None and before.linked and "shared:payment_account" in before.reasons
    with IndexStore.open(db) as index:
        decide_pair(index, a, b, "dismissed", reviewer="alice")

    after = _pair(_rescan(db), a, b)
    assert after is not None and not after.linked and after.score == 0.0
    assert after.reasons[-1] == "review:dismissed" and after.operator_score == pytest.approx(before.operator_score)

    # another value of a kind they already shared does not undo the dismissal ...
    same_kind = _copy(bundle, tmp_path / "same_kind", [(a, "payment_account", "6222 5555 4444 3333 111"),
                                                       (b, "payment_account", "6222 5555 4444 3333 111")])
    with IndexStore.open(db) as index:
        index.add_bundle(read_bundle(same_kind), SETTINGS)
    assert not _pair(_rescan(db), a, b).linked
    # ... evidence of a kind they did not share at decision time does: the evidence decides again
    new_kind = _copy(same_kind, tmp_path / "new_kind", [(a, "tax_id", "91440300MA5TEST01"),
                                                        (b, "tax_id", "91440300MA5TEST01")])
    with IndexStore.open(db) as index:
        index.add_bundle(read_bundle(new_kind), SETTINGS)
    reopened = _pair(_rescan(db), a, b)
    assert reopened.linked and reopened.score >= SETTINGS.link_threshold
    assert "shared:tax_id" in reopened.reasons and "review:reopened" in reopened.reasons
    assert "review:dismissed" not in reopened.reasons


def test_a_dismissed_pair_does_not_chain_clusters(tmp_path, bundle_dir, plain):
    first, second = plain.clusters[0], plain.clusters[1]
    a, b = first.members[0], second.members[0]
    # a device id: a planted payout account with no time would be a fragile edge (an agency's pool looks
    # the same), which joins no cluster to begin with
    device = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    bundle = _copy(bundle_dir, tmp_path / "bundle", [(a, "device_id", device), (b, "device_id", device)])
    db = _index(tmp_path / "i.db", bundle)
    merged = {c.members for c in _rescan(db).clusters}
    assert tuple(sorted(first.members + second.members)) in merged  # the planted link joins the two groups
    with IndexStore.open(db) as index:
        decide_pair(index, a, b, "dismissed", reviewer="alice")
    rescanned = _rescan(db)
    assert {c.members for c in rescanned.clusters} == {c.members for c in plain.clusters}
    assert not _pair(rescanned, a, b).linked


def test_a_pair_dismissed_inside_a_cluster_stays_in_it_through_the_others(tmp_path, bundle_dir, plain):
    cluster = next(c for c in plain.clusters if len(c.members) >= 3)
    a, b = cluster.members[:2]
    db = _index(tmp_path / "i.db", bundle_dir)
    with IndexStore.open(db) as index:
        decide_pair(index, a, b, "dismissed", reviewer="alice")
    pair = _pair(_rescan(db), a, b)
    # the contract writes every pair of a cluster as linked: the conflict is shown, not hidden
    assert pair.linked and pair.reasons[-2:] == ("via:cluster", "review:dismissed")


def test_shared_infrastructure_makes_the_values_hubs(tmp_path, pooled):
    bundle, a, b = pooled
    db = _index(tmp_path / "i.db", bundle)
    with IndexStore.open(db) as index:
        stored = decide_pair(index, a, b, "shared-infrastructure", reviewer="alice", note="agency")
    key = ("payment_account", normalise("payment_account", POOLED).value)
    assert key in stored.keys
    out = tmp_path / "out"
    assert _run("scan", "--db", db, "--out", out, "-q", "--no-cache").exit_code == 0
    with open(out / "pairs.csv", encoding="utf-8") as handle:
        row = next((r for r in csv.DictReader(handle) if {r["store_a"], r["store_b"]} == {a, b}), None)
    assert row is None or row["linked"] == "false"
    with open(out / "hubs.csv", encoding="utf-8") as handle:
        hubs = {(r["kind"], r["value"]): r for r in csv.DictReader(handle)}
    assert hubs[key]["stores"] == "2" and "shared infrastructure" in hubs[key]["note"]
    assert f"{a} + {b}" in hubs[key]["note"]


def test_a_confirmed_pair_stays_linked(tmp_path, bundle_dir, plain):
    a, b = _loners(plain)[:2]
    assert _pair(plain, a, b) is None
    db = _index(tmp_path / "i.db", bundle_dir)
    result = _run("review", "--db", db, "--pair", a, b, "--decision", "confirmed", "--reviewer", "bob")
    assert result.exit_code == 0, result.output
    rescanned = _rescan(db)
    pair = _pair(rescanned, a, b)
    assert pair.linked and pair.score >= SETTINGS.link_threshold and pair.reasons == ("review:confirmed",)
    assert (a, b) in {c.members for c in rescanned.clusters}


def test_cluster_decisions_resolve_the_latest_scan_of_the_index(tmp_path, bundle_dir):
    db = _index(tmp_path / "i.db", bundle_dir)
    with IndexStore.open(db) as index, pytest.raises(ReviewError, match="run `assoc scan --db"):
        decide_cluster(index, "C-T00001", "dismissed", reviewer="alice")
    assert _run("scan", "--db", db, "--out", tmp_path / "out", "-q", "--no-cache").exit_code == 0
    with open(tmp_path / "out" / "clusters.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cluster_id = rows[0]["cluster_id"]
    members = {r["store_id"] for r in rows if r["cluster_id"] == cluster_id}
    result = _run("review", "--db", db, "--cluster", cluster_id, "--decision", "dismissed")
    assert result.exit_code == 0, result.output
    assert f"({len(members) * (len(members) - 1) // 2} pair(s)" in result.output
    rescanned = _rescan(db)
    assert all(len(members & set(c.members)) <= 1 for c in rescanned.clusters)
    inside = [p for p in rescanned.pairs if {p.store_a, p.store_b} <= members]
    assert inside and all(not p.linked and "review:dismissed" in p.reasons for p in inside)
    unknown = _run("review", "--db", db, "--cluster", "C-NOPE", "--decision", "confirmed")
    assert unknown.exit_code == 2 and "no cluster 'C-NOPE'" in unknown.output
    assert "run `assoc scan --db" in unknown.output


@pytest.fixture
def queue(tmp_path, bundle_dir) -> tuple[Path, Path, list[dict[str, str]]]:
    """An index, and the review queue of a real `scan --db --report` of it."""
    db = _index(tmp_path / "i.db", bundle_dir)
    out = tmp_path / "out"
    assert _run("scan", "--db", db, "--out", out, "-q", "--no-cache", "--report").exit_code == 0
    with open(out / "review_queue.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 3
    return db, out / "review_queue.csv", rows


def _write_queue(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_import_of_a_filled_review_queue(queue):
    db, path, rows = queue
    rows[0]["decision"] = "dismissed"
    rows[1]["decision"], rows[1]["note"] = "Confirmed", "same warehouse staff"
    _write_queue(path, rows)
    result = _run("review", "import", path, "--db", db, "--reviewer", "carol")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"stored 2 decision(s); 0 unchanged; {len(rows) - 2} row(s) without a "
                                     "decision skipped")
    again = _run("review", "import", path, "--db", db)
    assert "stored 0 decision(s); 2 unchanged" in again.output
    with IndexStore.open(db) as index:
        stored = list_decisions(index)
    assert [(d.cluster_id, d.decision, d.reviewer) for d in stored] == [
        (rows[0]["cluster_id"], "dismissed", "carol"), (rows[1]["cluster_id"], "confirmed", "carol")]
    assert stored[0].source == f"{path.name} line 2" and stored[1].note == "same warehouse staff"
    rescanned = _rescan(db)
    dismissed = set(rows[0]["members"].split(";"))
    assert all(len(dismissed & set(c.members)) <= 1 for c in rescanned.clusters)
    confirmed = tuple(rows[1]["members"].split(";"))
    assert confirmed in {c.members for c in rescanned.clusters}
    assert all("review:confirmed" in p.reasons for p in rescanned.pairs if {p.store_a, p.store_b} <= set(confirmed))


def test_import_stores_nothing_when_a_row_is_bad(queue):
    db, path, rows = queue
    rows[0]["decision"] = "dismissed"
    rows[2]["decision"] = "maybe"
    _write_queue(path, rows)
    result = _run("review", "import", path, "--db", db)
    assert result.exit_code == 2
    assert "review_queue.csv line 4: unknown decision 'maybe'" in result.output
    assert "nothing was stored" in result.output
    with IndexStore.open(db) as index:
        assert list_decisions(index) == []
        with pytest.raises(ReviewError, match="column"):
            bad = path.with_name("other.csv")
            bad.write_text("cluster_id,decision\nC-T1,dismissed\n", encoding="utf-8")
            import_queue(index, bad, reviewer="x")
    rows[2]["decision"], rows[2]["members"] = "confirmed", "T00001;NOPE"
    _write_queue(path, rows)
    unknown = _run("review", "import", path, "--db", db)
    assert unknown.exit_code == 2 and "line 4: store(s) 'NOPE' not in the index" in unknown.output


def test_apply_follows_the_decision_and_the_kinds_seen_at_decision_time():
    from assoc.decisions import PairDecision

    state = ReviewState(pairs={("A", "B"): PairDecision("dismissed", frozenset({"ip"}), 1),
                               ("A", "C"): PairDecision("confirmed", frozenset(), 2)})
    ip = Evidence(kind="ip", level="exact", value="203.0.113.7", stores=2, weight=5.0)
    phone = Evidence(kind="phone", level="exact", value="+8613800138000", stores=2, weight=14.0)
    assert state.apply(("A", "B"), [ip], True).linked is False
    assert state.apply(("A", "B"), [ip, phone.weighted(0.0, None)], True).linked is False  # no weight: not new
    reopened = state.apply(("A", "B"), [ip, phone], True)
    assert (reopened.decision, reopened.linked, reopened.forced, reopened.new_kinds) == (
        "reopened", True, False, ("phone",))
    assert state.apply(("A", "C"), [], False).linked is True
    assert state.apply(("B", "C"), [phone], True) is None
    assert ReviewState.edges({("A", "B"): 0.9}, state.verdicts({("A", "B"): (0.9, [ip])}, 0.5), 0.5) == {
        ("A", "C"): 0.5}
    assert parse_decision(" Shared_Infrastructure ") == "shared-infrastructure" and parse_decision("maybe") is None


def test_no_decisions_change_nothing_and_old_index_files_still_open(tmp_path, bundle_dir, plain):
    db = _index(tmp_path / "i.db", bundle_dir)  # an index as `assoc index add` wrote it before decisions
    with IndexStore.open(db) as index:
        assert list_decisions(index) == []
        empty = ReviewState.load(index.connection)
    assert empty == ReviewState()
    again = scan(read_bundle(bundle_dir), SETTINGS, review=empty)
    assert again.pairs == plain.pairs and again.clusters == plain.clusters and again.hubs == plain.hubs
    with IndexStore.open(db) as index:
        decide_pair(index, *plain.clusters[0].members[:2], "confirmed", reviewer="x")
    assert _run("index", "stats", "--db", db).exit_code == 0
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'review_schema'")
    listed = _run("review", "list", "--db", db)
    assert listed.exit_code == 2 and "newer assoc" in listed.output


def test_cli_wiring(tmp_path, pooled):
    bundle, a, b = pooled
    db = _index(tmp_path / "i.db", bundle)
    usage = _run("review", "--db", db, "--pair", a, b)
    assert usage.exit_code == 2 and "give --decision WORD" in usage.output
    both = _run("review", "--db", db, "--pair", a, b, "--cluster", "C-X", "--decision", "dismissed")
    assert both.exit_code == 2 and "exactly one of --pair A B and --cluster ID" in both.output
    misplaced = _run("review", "--db", db, "list")
    assert misplaced.exit_code == 2 and "put them after the subcommand" in misplaced.output
    missing = _run("review", "--db", tmp_path / "none.db", "--pair", a, b, "--decision", "dismissed")
    assert missing.exit_code == 2 and "no index there" in missing.output
    stranger = _run("review", "decide", "--db", db, "--pair", a, "NOPE", "--decision", "dismissed")
    assert stranger.exit_code == 2 and "no store 'NOPE'" in stranger.output
    assert _run("review", "list", "--db", db).output.strip() == "no decisions"

    decided = _run("review", "decide", "--db", db, "--pair", a, b, "--decision", "DISMISSED")
    assert decided.exit_code == 0, decided.output
    assert _run("review", "list", "--db", db).output.split()[3:4] == ["dismissed"]
    out = tmp_path / "out"
    scanned = _run("scan", bundle, "--decisions", db, "--out", out, "-q", "--no-cache")
    assert scanned.exit_code == 0, scanned.output
    with open(out / "pairs.csv", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if {r["store_a"], r["store_b"]} == {a, b})
    assert row["linked"] == "false" and row["reasons"].endswith("review:dismissed")
    both_sources = _run("scan", "--db", db, "--decisions", db, "--out", out)
    assert both_sources.exit_code == 2 and "--decisions goes with BUNDLE" in both_sources.output
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE t (x)")
    refused = _run("scan", bundle, "--decisions", foreign, "--out", out)
    assert refused.exit_code == 2 and "not an assoc index" in refused.output
