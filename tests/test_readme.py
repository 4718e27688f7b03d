"""The README's two set-up commands are the ones CI runs, and the first one's scan works."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from assoc.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in quick.splitlines() if line.startswith("    ")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    install_and_scan, run_tests = _commands()
    assert install_and_scan.startswith("pip install -e . && assoc scan ")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run_tests in ci.splitlines()


def test_readme_scan_command_runs_on_the_committed_example(tmp_path, monkeypatch):
    scan_part = _commands()[0].split("&&", 1)[1].split()
    assert scan_part[:2] == ["assoc", "scan"]
    bundle = scan_part[2]
    assert (ROOT / bundle).is_dir()
    monkeypatch.chdir(ROOT)
    args = [a if a != scan_part[scan_part.index("--out") + 1] else str(tmp_path / "out") for a in scan_part[2:]]
    result = CliRunner().invoke(main, ["scan", *args, "--no-cache"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(r"pairs linked\s+[1-9]", result.output)
    assert (tmp_path / "out" / "pairs.csv").exists()
