"""The exceptions collectors raise; each message names the cause and, where there is one, the fix."""

from __future__ import annotations

from assoc.errors import AssocError

# How many problems a message shows before "... and N more".
SHOWN_PROBLEMS = 20


class CollectError(AssocError):
    """A collector cannot run: bad options, an unreadable input, or an output it must not write."""


class UnknownCollectorError(CollectError):
    """A collector name that is not in the registry; the message lists the known names."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown collector {name!r}; the known collectors are {', '.join(known)}")


class InputError(CollectError):
    """Input rows are invalid; `problems` holds every problem kept (each with file and line)."""

    def __init__(self, problems: list[str], total: int, *, skippable: bool = True):
        self.problems = problems
        self.total = total
        shown = "\n".join(f"  - {p}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {total - SHOWN_PROBLEMS} more" if total > SHOWN_PROBLEMS else ""
        # A whole file that cannot be read has no good rows to keep, so skipping cannot help there.
        advice = ("Fix them, or pass --skip-invalid to collect the good rows and list the bad ones."
                  if skippable else "Fix them and run again.")
        super().__init__(f"the input has {total} problem(s):\n{shown}{more}\nNothing was written. {advice}")


class ConflictError(CollectError):
    """Two sources disagree about one store or one product; nothing was written."""

    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        shown = "\n".join(f"  - {c}" for c in conflicts[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(conflicts) - SHOWN_PROBLEMS} more" if len(conflicts) > SHOWN_PROBLEMS else ""
        super().__init__(f"{len(conflicts)} conflict(s) between the bundles:\n{shown}{more}\n"
                         "Nothing was written. Make the rows agree (edit one side), then run again.")
