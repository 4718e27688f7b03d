"""What every collector shares: the Collector protocol, the report it returns, and a bounded problem list.

A collector is a frozen dataclass whose fields are its options. `collect(out)` reads its sources,
merges what it found into the bundle directory `out` (creating it if needed) and returns a
CollectReport. Collectors never print: counts, problems and notes go into the report, and the
CLI decides how to show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from assoc.records import Progress, no_progress

from .errors import InputError

# Row problems kept in memory per run; past this only the count grows, so a log with millions of
# bad lines cannot exhaust memory while the user still learns how many there were.
MAX_KEPT_PROBLEMS = 1000


class Collector(Protocol):
    """A source of fingerprints: configured by its fields, run by `collect`."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: the file, the line (None: the whole file), and what is wrong; str() is 'FILE line N: ...'."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file} line {self.line}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int | None]:
        return {"file": self.file, "line": self.line, "message": self.message}


class Problems:
    """Row problems found so far, each with file and line; the first MAX_KEPT_PROBLEMS are kept."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.total = 0
        self.fatal = False  # a whole file could not be read: skipping rows cannot help

    def add(self, file: str, line: int | None, message: str) -> None:
        self.total += 1
        if len(self.kept) < MAX_KEPT_PROBLEMS:
            self.kept.append(Problem(file, line, message))

    def add_at(self, origin: str, message: str) -> None:
        """A problem of the bundle row from `origin`, as bundleio writes it ('FILE line N')."""
        file, _, line = origin.rpartition(" line ")
        if file and line.isdigit():
            self.add(file, int(line), message)
        else:
            self.add(origin, None, message)

    def file(self, file: str, message: str, line: int | None = None) -> None:
        """A problem with a whole file (unreadable, a named column missing): no row of it can be trusted."""
        self.fatal = True
        self.add(file, line, message)

    def check(self, skip_invalid: bool) -> None:
        """Raise InputError unless there are no problems, or only row problems and `skip_invalid`."""
        if self.total and (self.fatal or not skip_invalid):
            raise InputError([str(p) for p in self.kept], self.total, skippable=not self.fatal)


@dataclass
class CollectReport:
    """What a collector did: counts by name, row problems with file and line, and notes."""

    collector: str
    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # the first MAX_KEPT_PROBLEMS
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)  # what could not be read or done, not tied to a row

    def take_problems(self, problems: Problems) -> None:
        self.problems = problems.kept
        self.problem_count = problems.total

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (`assoc collect ... --json`)."""
        return {"collector": self.collector, "out": str(self.out), "counts": dict(self.counts),
                "problem_count": self.problem_count, "problems": [p.to_dict() for p in self.problems],
                "notes": list(self.notes)}
