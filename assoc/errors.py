"""The exceptions assoc raises. Every message names the cause and, where there is one, the fix."""

from __future__ import annotations


class AssocError(Exception):
    """Base class: anything assoc reports to a user as a clean error rather than a crash."""


class BundleError(AssocError):
    """A bundle is unreadable or invalid; `problems` holds every problem found, each with file and line."""

    def __init__(self, problems: list[str], *, skippable: bool = False):
        self.problems = problems
        self.total = len(problems)
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {self.total - 20} more" if self.total > 20 else ""
        # Only row problems can be skipped: a file that cannot be read has no good rows to keep.
        advice = ("Fix them, or pass --skip-invalid to skip the bad rows (they are written to OUTDIR/rejected.csv)."
                  if skippable else "Fix them and run again.")
        super().__init__(f"the bundle has {self.total} problem(s):\n{shown}{more}\n{advice}")


class SettingsError(AssocError):
    """Settings are invalid; the message lists every problem at once."""


class OutputError(AssocError):
    """An output folder or file cannot be written."""
