"""CLI wiring of the review outputs: report, explain, export, scan --report/--export/--format sarif, --reveal-pii."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc import cli, cli_support
from assoc.cli import main
from assoc.report.outdir import read_scan_output
from fixtures.market import generate

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
    assert re.search(r"^stores scanned +40$", result.output, re.M)
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


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr or stdout in an interactive shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("small") / "bundle"
    generate(bundle, stores=20, seed=3)
    return bundle


def _command_args(command: str, outdir: Path, small_bundle: Path, tmp_path: Path) -> list[str]:
    if command == "scan":
        return ["scan", str(small_bundle), "--out", str(tmp_path / "out"), "--no-cache", "--export"]
    if command == "index":
        return ["index", "add", str(small_bundle), "--db", str(tmp_path / "index.db"), "--no-cache"]
    return [command, str(outdir)]


@pytest.mark.parametrize("command", ["scan", "report", "export", "index"])
@pytest.mark.parametrize(("terminal", "quiet", "bars"), [(True, False, True), (False, False, False),
                                                          (True, True, False)])
def test_progress_bars_only_on_a_terminal_and_never_with_quiet(command, terminal, quiet, bars, outdir, small_bundle,
                                                              tmp_path, monkeypatch):
    # No delay, so every stage of even a tiny scan would draw its bar: only the gate keeps stderr clean.
    monkeypatch.setattr(cli_support, "PROGRESS_DELAY", 0.0)
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    args = _command_args(command, outdir, small_bundle, tmp_path) + (["--quiet"] if quiet else [])
    main.main(args, standalone_mode=False)
    if not bars:
        assert stderr.getvalue() == ""
        return
    # export (alone or after a scan) reports each file written; report its pictures; scan every stage.
    stages = {"scan": ["read signals.csv", "normalise signals", "compare pairs", "graph export"],
              "report": ["report pictures"], "export": ["graph export"],
              "index": ["read signals.csv", "index: write stores"]}[command]
    for stage in stages:
        assert f"{stage}:" in stderr.getvalue(), stage


def test_scan_summary_is_a_plain_text_table_off_a_terminal_and_json_is_unchanged(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["scan", EXAMPLE, "--out", str(out), "--no-cache"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))["summary"]
    assert "\x1b" not in result.output
    lines = result.output.splitlines()
    assert lines[:5] == [
        f"stores scanned  {summary['stores']}",
        f"pairs linked    {summary['pairs_linked']} (of {summary['pairs_reported']} reported)",
        f"clusters        {summary['clusters']} ({summary['stores_in_clusters']} stores)",
        f"hubs            {summary['hubs']} ({summary['hubs_ignored']} ignored, see hubs.csv)",
        f"results in      {out}",
    ]
    header = lines.index("largest clusters  size   risk")
    rows = [line.split() for line in lines[header + 1:header + 1 + len(summary["largest_clusters"])]]
    assert rows == [[c["cluster_id"], str(c["size"]), f"{c['risk']:.3f}"] for c in summary["largest_clusters"]]
    as_json = _run("scan", EXAMPLE, "--out", str(tmp_path / "json"), "--no-cache", "--json")
    assert as_json.output == json.dumps(summary, indent=2, sort_keys=True) + "\n"


def test_summary_table_is_styled_by_rich_only_on_a_terminal(monkeypatch):
    summary = {"stores": 3, "pairs_linked": 1, "pairs_reported": 2, "clusters": 1, "stores_in_clusters": 2, "hubs": 0,
               "hubs_ignored": 0,
               "rejected_rows": 1, "largest_clusters": [{"cluster_id": "C-A", "size": 2, "risk": 0.75}]}
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    plain = cli._render_summary(summary, Path("out"))
    assert "\x1b" not in plain and "rejected rows   1 (see out/rejected.csv)" in plain.splitlines()
    monkeypatch.setenv("FORCE_COLOR", "1")  # a pipe stays plain even when the environment asks for colour
    assert cli._render_summary(summary, Path("out")) == plain
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setattr(sys, "stdout", _Terminal())
    styled = cli._render_summary(summary, Path("out"))
    assert "\x1b[1m" in styled  # bold labels and headers
    assert re.sub(r"\x1b\[[0-9;]*m", "", styled).replace("\r", "").splitlines()[:2] == plain.splitlines()[:2]
