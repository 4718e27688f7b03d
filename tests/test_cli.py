"""CLI wiring: flags reach the library, files are written, exit codes and messages are right."""

from __future__ import annotations

import csv
import json
import re

from click.testing import CliRunner

from assoc.cli import main
from fixtures.market import generate


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_scan_writes_contract_files_and_summary(tmp_path):
    generate(tmp_path / "bundle", stores=30, seed=2)
    out = tmp_path / "out"
    result = _run("scan", str(tmp_path / "bundle"), "--out", str(out), "--no-cache")
    assert result.exit_code == 0, result.output
    assert re.search(r"^stores scanned +30$", result.output, re.M)
    for name in ("pairs.csv", "clusters.csv", "hubs.csv", "rejected.csv", "evidence.jsonl", "summary.json"):
        assert (out / name).exists(), name
    with open(out / "pairs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0])[:6] == ["store_a", "store_b", "score", "linked", "catalog_overlap", "reasons"]
    assert all(r["store_a"] < r["store_b"] and r["linked"] in ("true", "false") for r in rows)
    with open(out / "clusters.csv", newline="", encoding="utf-8") as handle:
        clusters = list(csv.DictReader(handle))
    assert {"store_id", "cluster_id", "cluster_risk"} <= set(clusters[0])


def test_json_summary_and_quiet(tmp_path):
    generate(tmp_path / "bundle", stores=20, seed=5)
    result = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"), "--json", "--no-cache")
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["stores"] == 20 and summary["pairs_linked"] >= 0
    quiet = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "out2"), "--quiet", "--no-cache")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_link_threshold_flag_reaches_the_scan(tmp_path):
    generate(tmp_path / "bundle", stores=30, seed=2)
    strict = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "a"), "--json", "--no-cache",
                  "--link-threshold", "1", "--catalog-threshold", "1")
    loose = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "b"), "--json", "--no-cache")
    assert json.loads(strict.output)["pairs_linked"] < json.loads(loose.output)["pairs_linked"]
    used = json.loads((tmp_path / "a" / "summary.json").read_text())["settings"]
    assert used["link_threshold"] == 1 and used["catalog_threshold"] == 1


def test_bad_settings_exit_2_with_every_problem(tmp_path):
    generate(tmp_path / "bundle", stores=5, seed=1)
    result = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"), "--link-threshold", "2",
                  "--hub-cap", "1")
    assert result.exit_code == 2
    assert "link_threshold must be a number in [0, 1]" in result.output
    assert "hub_cap must be a whole number >= 2" in result.output


def test_config_file_is_read_and_flags_override_it(tmp_path):
    generate(tmp_path / "bundle", stores=10, seed=1)
    config = tmp_path / "assoc.toml"
    config.write_text("hub_cap = 7\nlink_threshold = 0.8\n", encoding="utf-8")
    result = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"), "--config", str(config),
                  "--link-threshold", "0.6", "--quiet", "--no-cache")
    assert result.exit_code == 0
    used = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert used["hub_cap"] == 7 and used["link_threshold"] == 0.6
    config.write_text("hub_capp = 7\n", encoding="utf-8")
    bad = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"), "--config", str(config))
    assert bad.exit_code == 2 and "unknown setting(s): hub_capp" in bad.output


def test_unwritable_output_exits_3(tmp_path):
    generate(tmp_path / "bundle", stores=5, seed=1)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = _run("scan", str(tmp_path / "bundle"), "--out", str(blocker / "out"), "--no-cache")
    assert result.exit_code == 3
    assert "cannot create the output folder" in result.output


def test_no_text_and_no_images_together_scan_identifiers_only(tmp_path):
    """Both flags: the products are read (and validated) but no catalog is compared, so the pairs are those
    of the same bundle without products.csv."""
    generate(tmp_path / "bundle", stores=40, seed=3)
    without = tmp_path / "without"
    without.mkdir()
    for name in ("stores.csv", "signals.csv"):
        (without / name).write_bytes((tmp_path / "bundle" / name).read_bytes())
    both = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "both"), "--no-text", "--no-images",
                "--no-cache", "--quiet")
    assert both.exit_code == 0, both.output
    assert _run("scan", str(without), "--out", str(tmp_path / "plain"), "--no-cache", "--quiet").exit_code == 0
    pairs = {name: (tmp_path / name / "pairs.csv").read_text(encoding="utf-8") for name in ("both", "plain")}
    assert pairs["both"] == pairs["plain"] and "catalog" not in pairs["both"].split("\n", 1)[1]
    assert not (tmp_path / "both" / "catalog_matches.csv").exists()
    summary = json.loads((tmp_path / "both" / "summary.json").read_text(encoding="utf-8"))
    with_catalog = _run("scan", str(tmp_path / "bundle"), "--out", str(tmp_path / "whole"), "--no-cache", "--quiet")
    assert with_catalog.exit_code == 0
    assert (tmp_path / "whole" / "pairs.csv").read_text(encoding="utf-8") != pairs["both"]
    assert summary["settings"]["use_text"] is False and summary["settings"]["use_images"] is False
