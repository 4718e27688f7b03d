"""`assoc review`: store reviewer decisions in an index file (assoc.decisions); flags -> library call -> rendering.

    assoc review --db PATH (--pair A B | --cluster ID) --decision WORD [--note TEXT] [--reviewer NAME]
    assoc review decide ...          the same, as a subcommand
    assoc review import --db PATH review_queue.csv
    assoc review list --db PATH [--json]
    assoc review suggest ...         in assoc/cli_model.py, with the learned scorer it serves

Registered on the main group at the end of assoc/cli.py. Exit codes: 0 success; 2 invalid input,
index or usage (nothing is stored then).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .cli_support import Failure
from .decisions import DECISIONS, StoredDecision, decide_cluster, decide_pair, import_queue, list_decisions
from .errors import AssocError
from .store import IndexStore


def default_reviewer() -> str:
    return os.environ.get("USER") or "unknown"


def _db_option(required: bool) -> Callable[[Any], Any]:
    return click.option("--db", "db", required=required, type=click.Path(path_type=Path, dir_okay=False),
                        help="The index file (SQLite) the decisions are stored in.")


_REVIEWER = click.option("--reviewer", default=None,
                         help="Who decides, stored with each decision [$USER, else 'unknown'].")


def _decide_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        _db_option(required=False),
        click.option("--pair", nargs=2, default=None, metavar="A B", help="The two stores decided about."),
        click.option("--cluster", "cluster_id", default=None,
                     help="A cluster id of the latest `assoc scan --db` of this index (e.g. C-T00003)."),
        click.option("--decision", type=click.Choice(DECISIONS, case_sensitive=False), default=None,
                     help="confirmed: one operator; dismissed: not linked; shared-infrastructure: the values "
                          "they share are hubs."),
        click.option("--note", default="", help="Free text stored with the decision."),
        _REVIEWER,
    ]):
        function = option(function)
    return function


@click.group("review", invoke_without_command=True)
@_decide_options
@click.pass_context
def review_group(ctx: click.Context, db: Path | None, pair: tuple[str, str] | None, cluster_id: str | None,
                 decision: str | None, note: str, reviewer: str | None) -> None:
    """Store reviewer decisions in an index; later `assoc scan --db` (or `scan BUNDLE --decisions`) applies them.

    \b
    assoc review --db PATH (--pair A B | --cluster ID) --decision confirmed|dismissed|shared-infrastructure
    """
    given = db is not None or pair is not None or cluster_id is not None or decision is not None or note or reviewer
    if ctx.invoked_subcommand is not None:
        if given:
            raise Failure(f"options before `{ctx.invoked_subcommand}` belong to the decide form; put them after "
                           f"the subcommand: `assoc review {ctx.invoked_subcommand} --db PATH ...`")
        return
    if not given:
        click.echo(ctx.get_help())
        return
    _decide(db, pair, cluster_id, decision, note, reviewer)


@review_group.command("decide")
@_decide_options
def decide_command(db: Path | None, pair: tuple[str, str] | None, cluster_id: str | None, decision: str | None,
                   note: str, reviewer: str | None) -> None:
    """Store one decision about a pair or a cluster (the same as the bare `assoc review ...` form)."""
    _decide(db, pair, cluster_id, decision, note, reviewer)


def _decide(db: Path | None, pair: tuple[str, str] | None, cluster_id: str | None, decision: str | None,
            note: str, reviewer: str | None) -> None:
    missing = [name for name, value in (("--db PATH", db), ("--decision WORD", decision)) if value is None]
    if (pair is None) == (cluster_id is None):
        missing.append("exactly one of --pair A B and --cluster ID")
    if missing:
        raise Failure(f"give {', '.join(missing)}; for example: assoc review --db index.db --pair S1 S2 "
                       "--decision dismissed")
    assert db is not None and decision is not None
    try:
        with _open(db) as index:
            if pair is not None:
                stored = decide_pair(index, pair[0], pair[1], decision, reviewer=reviewer or default_reviewer(),
                                     note=note)
            else:
                assert cluster_id is not None
                stored = decide_cluster(index, cluster_id, decision, reviewer=reviewer or default_reviewer(),
                                        note=note)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    click.echo(_describe(stored))


@review_group.command("import")
@click.argument("queue", type=click.Path(path_type=Path, dir_okay=False))
@_db_option(required=True)
@_REVIEWER
def import_command(queue: Path, db: Path, reviewer: str | None) -> None:
    """Store the decisions filled in QUEUE (the review_queue.csv of `assoc report`): all of them, or none.

    Rows with an empty decision are skipped; rows already stored with the same decision and note are
    not stored again.
    """
    try:
        with _open(db) as index:
            report = import_queue(index, queue, reviewer=reviewer or default_reviewer())
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    click.echo(f"stored {report.stored} decision(s); {report.unchanged} unchanged; "
               f"{report.skipped} row(s) without a decision skipped")


@review_group.command("list")
@_db_option(required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def list_command(db: Path, as_json: bool) -> None:
    """Show the stored decisions, oldest first."""
    try:
        with _open(db) as index:
            decisions = list_decisions(index)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in decisions], indent=2))
        return
    if not decisions:
        click.echo("no decisions")
    for d in decisions:
        note = f"  {d.note}" if d.note else ""
        click.echo(f"{d.decision_id:5d}  {d.decided_at}  {d.reviewer:12s} {d.decision:22s} {d.subject}{note}")


@contextmanager
def _open(db: Path) -> Iterator[IndexStore]:
    """IndexStore.open for the review commands: the index must exist; SQLite failures are usage errors."""
    try:
        with IndexStore.open(db) as index:
            yield index
    except sqlite3.Error as exc:
        raise Failure(f"{db}: the index could not be read: {exc}; nothing was stored") from exc


def _describe(stored: StoredDecision) -> str:
    kinds = ", ".join(stored.kinds) or "none"
    text = (f"stored decision {stored.decision_id}: {stored.decision} {stored.subject} by {stored.reviewer} "
            f"({stored.pairs} pair(s); evidence kinds at decision time: {kinds})")
    if stored.decision == "shared-infrastructure":
        values = ", ".join(f"{kind}:{value}" for kind, value in stored.keys)
        text += (f"\n{len(stored.keys)} value(s) are hubs from now on: {values}" if stored.keys else
                 "\nno shared value to mark: the stores share no identifier in the index")
    return text
