"""The README's Collectors section stays true to the commands: its examples, the options it names, its exit codes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from assoc.cli_support import EXIT_INVALID, EXIT_OUTPUT
from fingerprints import COLLECTORS
from fingerprints.cli import collect

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    return README.read_text(encoding="utf-8").split("\n## Collectors\n", 1)[1].split("\n## ", 1)[0]


def _examples() -> list[list[str]]:
    """Each indented `assoc collect` command of the section as its words, continuation lines joined."""
    commands = re.sub(r"\\\n\s+", " ", _section())
    words = [shlex.split(line) for line in commands.splitlines() if line.startswith("    ")]
    return [w[w.index("assoc"):] for w in words if "assoc" in w]


def _options(name: str) -> set[str]:
    return {option for param in collect.commands[name].params for option in param.opts}


def test_every_collector_has_an_example_with_real_options():
    examples = _examples()
    assert {words[2] for words in examples} == set(COLLECTORS)
    for words in examples:
        assert words[:2] == ["assoc", "collect"]
        unknown = [w for w in words[3:] if w.startswith("-") and w not in _options(words[2])]
        assert not unknown, f"{' '.join(words)}: {unknown}"


def test_every_option_the_section_names_exists():
    every = set().union(*(_options(name) for name in collect.commands))
    named = set(re.findall(r"`(--[a-z-]+)", _section()))
    assert named and named <= every, named - every


def test_the_exit_codes_in_use_are_documented():
    table = dict(re.findall(r"^\| (\d) \| (.+) \|$", _section(), flags=re.MULTILINE))
    assert set(table) == {"0", str(EXIT_INVALID), str(EXIT_OUTPUT)}
    assert "unknown collector" in table[str(EXIT_INVALID)] and "written" in table[str(EXIT_OUTPUT)]
