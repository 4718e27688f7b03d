"""What every command module shares: the documented exit codes, the failure that carries one, --config."""

from __future__ import annotations

from pathlib import Path

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
