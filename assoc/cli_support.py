"""What every command module shares: the documented exit codes, the failure that carries one, --config, and
the progress display."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import click

EXIT_INVALID = 2  # invalid input, settings, index or usage
EXIT_OUTPUT = 3  # results could not be written


class Failure(click.ClickException):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_INVALID):
        super().__init__(message)
        self.exit_code = exit_code


CONFIG_OPTION = click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                             help="TOML or JSON settings file (the keys of summary.json's settings); flags "
                                  "override it.")


PROGRESS_DELAY = 1.0  # seconds a stage runs before its bar appears: short stages leave nothing behind


class ProgressDisplay:
    """tqdm bars, one per stage, shown only for stages that last over PROGRESS_DELAY; silent when disabled."""

    def __init__(self, stream: TextIO | None, *, delay: float = PROGRESS_DELAY):
        self.stream = stream  # None: show nothing
        self.delay = delay
        self.bars: dict[str, Any] = {}

    @classmethod
    def for_command(cls, quiet: bool) -> ProgressDisplay:
        """Bars on stderr only when it is a terminal and --quiet was not given.

        Off a terminal (a pipe, a log file, CI) bars would be carriage-return noise in the output.
        """
        return cls(None if quiet or not sys.stderr.isatty() else sys.stderr, delay=PROGRESS_DELAY)

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.stream is None:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, delay=self.delay, file=self.stream, leave=False,
                                          dynamic_ncols=True)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
