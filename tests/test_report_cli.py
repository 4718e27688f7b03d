"""CLI wiring of the review outputs: report, explain, export, scan --report/--export/--format sarif, --reveal-pii."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc.cli import main
from assoc.report.outdir import read_scan_output

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "bundle")


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    result = _run("scan", EXAMPLE, "--out", str(out), "--no-cache", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def _payout_value(outdir: Path) -> str:
    return next(e.value for p in read_scan_output(outdir).pairs for e in p.evidence if e.kind == "payment_account")


def test_report_writes_html_and_queue_and_lists_them(outdir):
    result = _run("report", str(outdir))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"wrote {outdir / 'report.html'}", f"wrote {outdir / 'review_queue.csv'}"]
    assert _payout_value(outdir) not in (outdir / "report.html").read_text(encoding="utf-8")


def test_report_reveal_pii_and_sarif_format(outdir):
    result = _run("report", str(outdir), "--format", "sarif", "--format", "html", "--reveal-pii", "--quiet")
    assert result.exit_code == 0 and result.output == ""
    assert _payout_value(outdir) in (outdir / "report.html").read_text(encoding="utf-8")
    assert _payout_value(outdir) in (outdir / "findings.sarif").read_text(encoding="utf-8")
    _run("report", str(outdir), "--format", "sarif", "--quiet")
    assert _payout_value(outdir) not in (outdir / "findings.sarif").read_text(encoding="utf-8")


def test_report_matches_per_pair_reaches_the_page(outdir, tmp_path):
    assert _run("report", str(outdir), "--matches-per-pair", "0", "-q").exit_code == 0
    html = (outdir / "report.html").read_text(encoding="utf-8")
    assert '"matches":[]' in html and '<script id="assoc-pictures" type="application/json">{}</script>' in html


def test_report_on_a_folder_without_a_scan_exits_2_naming_the_file(tmp_path):
    result = _run("report", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path / 'summary.json'}: missing" in result.output


def test_explain_prints_the_waterfall_in_either_order(outdir):
    pair = next(p for p in read_scan_output(outdir).pairs if p.linked and p.evidence)
    forward = _run("explain", str(outdir), pair.store_a, pair.store_b)
    backward = _run("explain", str(outdir), pair.store_b, pair.store_a)
    assert forward.exit_code == 0 and forward.output == backward.output
    lines = forward.output.splitlines()
    assert lines[0].startswith(f"{pair.store_a} + {pair.store_b}: linked, score")
    assert any(line.startswith("prior") and "-10.0" in line for line in lines)
    for piece in pair.evidence:
        assert any(line.startswith(piece.code) for line in lines), piece.code


def test_explain_json_masks_unless_revealed(outdir):
    results = read_scan_output(outdir)
    pair = next(p for p in results.pairs if any(e.kind == "payment_account" for e in p.evidence))
    masked = json.loads(_run("explain", str(outdir), pair.store_b, pair.store_a, "--json").output)
    assert masked["store_a"] == pair.store_a and masked["reported"] and masked["linked"]
    raw = next(e.value for e in pair.evidence if e.kind == "payment_account")
    assert raw not in json.dumps(masked) and "****" in json.dumps(masked)
    revealed = _run("explain", str(outdir), pair.store_a, pair.store_b, "--json", "--reveal-pii")
    assert raw in revealed.output


def test_explain_no_evidence_exits_0_and_unknown_store_exits_2(outdir):
    clusters = read_scan_output(outdir).clusters
    a, b = clusters[0].members[0], clusters[1].members[0]
    none = _run("explain", str(outdir), a, b)
    assert none.exit_code == 0 and none.output.startswith(f"no evidence between {min(a, b)} and {max(a, b)}")
    assert json.loads(_run("explain", str(outdir), a, b, "--json").output)["reported"] is False
    unknown = _run("explain", str(outdir), a, "NOPE")
    assert unknown.exit_code == 2 and "unknown store id 'NOPE'" in unknown.output


def test_export_writes_every_graph_format(outdir):
    result = _run("export", str(outdir))
    assert result.exit_code == 0
    graph = outdir / "graph"
    expected = [graph / "graph.graphml", graph / "graph.gexf", graph / "cytoscape.json"] + [
        graph / "neo4j" / name for name in ("stores.csv", "identifiers.csv", "uses.csv", "linked.csv", "load.cypher")]
    assert result.output.splitlines() == [f"wrote {p}" for p in expected]
    assert all(p.stat().st_size > 0 for p in expected)


def test_scan_with_report_export_and_sarif_writes_them_all(tmp_path):
    out = tmp_path / "out"
    result = _run("scan", EXAMPLE, "--out", str(out), "--no-cache", "--report", "--export", "--format", "sarif")
    assert result.exit_code == 0, result.output
    assert "stores scanned     40" in result.output
    for name in ("report.html", "review_queue.csv", "findings.sarif", "graph/graph.graphml", "graph/neo4j/load.cypher"):
        assert (out / name).is_file(), name
        assert f"wrote {out / name}" in result.output
    assert _payout_value(out) not in (out / "graph" / "cytoscape.json").read_text(encoding="utf-8")


def test_scan_format_html_is_report_and_plain_scan_writes_no_review_files(tmp_path):
    plain = tmp_path / "plain"
    assert _run("scan", EXAMPLE, "--out", str(plain), "--no-cache", "-q").exit_code == 0
    assert not (plain / "report.html").exists() and not (plain / "graph").exists()
    assert not (plain / "findings.sarif").exists()
    html = tmp_path / "html"
    result = _run("scan", EXAMPLE, "--out", str(html), "--no-cache", "-q", "--format", "html", "--reveal-pii")
    assert result.exit_code == 0 and result.output == ""
    assert _payout_value(html) in (html / "report.html").read_text(encoding="utf-8")
