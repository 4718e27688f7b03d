"""`assoc evaluate OUTDIR --truth DIR`: flags -> assoc.evaluate -> rendering.

Registered on the main group at the end of assoc/cli.py.

Exit codes: 0 success; 2 invalid input (pairs.csv or a truth file missing, unreadable, without a
required column, or with values that cannot be read); 3 the curve could not be written.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_support import EXIT_OUTPUT, Failure
from .errors import AssocError, OutputError
from .evaluate import SHOWN_UNKNOWN_IDS, Evaluation, evaluate, plot_precision_recall

CURVE_NAME = "precision_recall.png"




@click.command("evaluate")
@click.argument("outdir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--truth", "truth_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The truth/ folder written by ../shared/bench/market.py (stores.csv, linked.csv).")
@click.option("--curve", "curve_path", type=click.Path(path_type=Path, dir_okay=False),
              help=f"Where to write the precision-recall curve PNG [OUTDIR/{CURVE_NAME}].")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing (the curve is still written).")
def evaluate_command(outdir: Path, truth_dir: Path, curve_path: Path | None, as_json: bool, quiet: bool) -> None:
    """Score OUTDIR/pairs.csv of a scan against a planted truth.

    Prints pairwise precision, recall and F1 of `linked` (with tp/fp/fn), recall by the truth's
    `why`, and the average precision of `score`, and writes the precision-recall curve as a PNG.
    Exit code 0: success; 2: invalid input; 3: the curve could not be written.
    """
    curve_path = curve_path or outdir / CURVE_NAME
    try:
        result = evaluate(outdir, truth_dir)
        plot_precision_recall(result, curve_path)
    except OutputError as exc:
        raise Failure(str(exc), EXIT_OUTPUT) from exc
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        figures = result.to_dict()
        figures["curve"]["path"] = str(curve_path)
        click.echo(json.dumps(figures, indent=2, sort_keys=True))
    elif not quiet:
        click.echo(_render(result, curve_path))
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)


def _render(result: Evaluation, curve_path: Path) -> str:
    p = result.pairwise
    curve = result.curve
    lines = [
        f"truth              {result.truth_stores} stores, {result.truth_linked} linked pairs ({result.truth_dir})",
        f"scan               {result.distinct_pairs} pairs, {result.linked_pairs} linked ({result.pairs_file})",
        f"pairwise           precision {p.precision:.4f}  recall {p.recall:.4f}  F1 {p.f1:.4f}"
        f"  (tp {p.tp}, fp {p.fp}, fn {p.fn})",
    ]
    for number, (why, recall) in enumerate(result.recall_by_why.items()):
        label = "recall by why" if number == 0 else ""
        lines.append(f"{label:18s} {why:18s} {recall.found:6d} / {recall.total:<6d} {recall.recall:.4f}")
    lines.append(f"average precision  {curve.average_precision:.4f} over {len(curve.points)} score thresholds; "
                 f"recall tops out at {curve.max_recall:.4f} ({curve.unscored_truth_pairs} truth pairs absent "
                 "from pairs.csv or scored 0)")
    if result.unknown_store_ids:
        ids = result.unknown_store_ids
        shown = ", ".join(ids[:SHOWN_UNKNOWN_IDS]) + (", ..." if len(ids) > SHOWN_UNKNOWN_IDS else "")
        lines.append(f"unknown store ids  {len(ids)} ({shown}) in {result.unknown_pairs} pairs")
    lines.append(f"curve              {curve_path}")
    return "\n".join(lines)
