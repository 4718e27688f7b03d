"""The `assoc` command line: flags -> Settings -> library call -> rendering. Nothing else lives here.

Exit codes: 0 success; 2 invalid input, settings or usage; 3 results could not be written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .bundle import read_bundle
from .cli_model import MODEL_OPTION, load_scorer
from .cli_support import EXIT_INVALID, EXIT_OUTPUT, Failure, ProgressDisplay
from .decisions import ReviewError, load_review, record_clusters
from .errors import AssocError, BundleError, OutputError, SettingsError
from .explain import Explanation, explain_pair
from .records import Progress
from .report import (
    read_scan_output,
    write_graph_exports,
    write_html_report,
    write_review_queue,
    write_sarif,
    write_scan_outputs,
)
from .report.html import MATCHES_PER_PAIR
from .scan import ScanResult, scan
from .settings import Settings
from .store import IndexStore


def _fail(exc: AssocError) -> Failure:
    code = EXIT_OUTPUT if isinstance(exc, OutputError) else EXIT_INVALID
    return Failure(str(exc), code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assoc")
def main() -> None:
    """assoc: find seller accounts that look like one operator, and explain why."""


@main.command("scan")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--out", "outdir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for pairs.csv, clusters.csv, hubs.csv and the rest (created if missing).")
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False),
              help="Scan the stores of this index (built by `assoc index add`) instead of BUNDLE, applying its "
                   "reviewer decisions and recording its clusters for `assoc review --cluster`.")
@click.option("--decisions", type=click.Path(path_type=Path, dir_okay=False),
              help="Apply the reviewer decisions stored in this index file (`assoc review`) to a BUNDLE scan.")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TOML or JSON settings file; flags override it.")
@click.option("--link-threshold", type=float, help="Probability at or above which a pair is linked [0.5].")
@click.option("--catalog-threshold", type=float, help="Catalog overlap that links on its own [0.30].")
@click.option("--hub-cap", type=int, help="Values shared by more stores than this are hubs and ignored [25].")
@click.option("--no-images", is_flag=True, help="Compare product text only (both: compare no catalog).")
@click.option("--no-text", is_flag=True, help="Compare product images only (both: compare no catalog).")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Cache of image hashes and of the last catalog comparisons [$XDG_CACHE_HOME/assoc].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the cache (image hashes, catalog comparisons).")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid rows (listed in OUTDIR/rejected.csv).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary table.")
@click.option("--report", "with_report", is_flag=True,
              help="Also write report.html and review_queue.csv (as `assoc report OUTDIR` does).")
@click.option("--export", "with_export", is_flag=True,
              help="Also write graph exports to OUTDIR/graph (as `assoc export OUTDIR` does).")
@click.option("--format", "formats", type=click.Choice(["csv", "html", "sarif"]), multiple=True,
              help="Extra output formats: sarif writes findings.sarif, html is --report. The CSV files are "
                   "always written. Repeatable.")
@click.option("--reveal-pii", is_flag=True,
              help="Show payout accounts, phones, e-mails and tax ids unmasked in the report, exports and SARIF.")
@MODEL_OPTION
def scan_command(bundle: Path | None, outdir: Path, db: Path | None, decisions: Path | None, config: Path | None,
                 link_threshold: float | None,
                 catalog_threshold: float | None, hub_cap: int | None, no_images: bool, no_text: bool,
                 cache_dir: Path | None, no_cache: bool, skip_invalid: bool, as_json: bool, quiet: bool,
                 with_report: bool, with_export: bool, formats: tuple[str, ...], reveal_pii: bool,
                 model_path: Path | None) -> None:
    """Scan BUNDLE (a bundle directory or stores.jsonl), or the index --db, and write the results to --out."""
    if (bundle is None) == (db is None):
        raise Failure("give either BUNDLE or --db INDEX", EXIT_INVALID)
    if db is not None and decisions is not None:
        raise Failure("--decisions goes with BUNDLE; `scan --db` applies the decisions of its own index", EXIT_INVALID)
    try:
        settings = Settings.from_file(config) if config else Settings()
        changes: dict[str, Any] = {"skip_invalid": skip_invalid or settings.skip_invalid}
        for name, value in (("link_threshold", link_threshold), ("catalog_threshold", catalog_threshold),
                            ("hub_cap", hub_cap), ("cache_dir", cache_dir)):
            if value is not None:
                changes[name] = value
        if no_images:
            changes["use_images"] = False
        if no_text:
            changes["use_text"] = False
        if no_cache:
            changes["cache_dir"] = None
        settings = settings.replace(**changes)
    except (SettingsError, TypeError) as exc:
        raise Failure(str(exc), EXIT_INVALID) from exc
    scorer = load_scorer(model_path)
    display = ProgressDisplay.for_command(quiet)
    progress: Progress = display
    try:
        if db is not None:
            with IndexStore.open(db) as index:
                data = index.load_bundle()
                review = load_review(index)
        else:
            data = read_bundle(bundle, skip_invalid=settings.skip_invalid, progress=progress)
            review = None
            if decisions is not None:
                with IndexStore.open(decisions) as index:
                    review = load_review(index)
        result = scan(data, settings, progress=progress, review=review, scorer=scorer)
        if db is not None:
            _record_clusters(db, result)
        summary = write_scan_outputs(result, outdir, settings)
        extras = _write_reviews(outdir, html=with_report or "html" in formats, sarif="sarif" in formats,
                                export=with_export, reveal_pii=reveal_pii, progress=progress)
    except BundleError as exc:
        raise Failure(f"{bundle}: {exc}", EXIT_INVALID) from exc
    except AssocError as exc:
        raise _fail(exc) from exc
    finally:
        display.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        click.echo(_render_summary(summary, outdir))
        _echo_written(extras)


def _record_clusters(db: Path, result: ScanResult) -> None:
    """Remember the scan's clusters in the index for `assoc review --cluster`; a read-only index still scans."""
    try:
        with IndexStore.open(db) as index:
            record_clusters(index, result.clusters)
    except ReviewError as exc:
        click.echo(f"warning: {exc}; `assoc review --cluster` will not know this scan's clusters", err=True)


def _write_reviews(outdir: Path, *, html: bool, sarif: bool, export: bool, reveal_pii: bool,
                   matches_per_pair: int = MATCHES_PER_PAIR, progress: Progress) -> list[Path]:
    """Write the review outputs asked for from a scan's OUTDIR; returns the files written."""
    if not (html or sarif or export):
        return []
    results = read_scan_output(outdir)
    written: list[Path] = []
    if html:
        written.append(write_html_report(results, reveal_pii=reveal_pii, matches_per_pair=matches_per_pair,
                                         progress=progress))
        written.append(write_review_queue(results))
    if sarif:
        written.append(write_sarif(results, reveal_pii=reveal_pii))
    if export:
        written.extend(write_graph_exports(results, reveal_pii=reveal_pii, progress=progress))
    return written


def _echo_written(paths: list[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}")


_REVEAL_PII = click.option("--reveal-pii", is_flag=True,
                           help="Show payout accounts, phones, e-mails and tax ids unmasked.")
_QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress display and no list of files written.")
_OUTDIR = click.argument("outdir", type=click.Path(path_type=Path, file_okay=False))


@main.command("report")
@_OUTDIR
@click.option("--format", "formats", type=click.Choice(["html", "sarif"]), multiple=True, default=("html",),
              show_default=True,
              help="html: report.html and review_queue.csv; sarif: findings.sarif. Repeatable.")
@click.option("--matches-per-pair", type=click.IntRange(min=0), default=MATCHES_PER_PAIR, show_default=True,
              help="Catalog matches shown side by side per pair (all are in catalog_matches.csv).")
@_REVEAL_PII
@_QUIET
def report_command(outdir: Path, formats: tuple[str, ...], matches_per_pair: int, reveal_pii: bool,
                   quiet: bool) -> None:
    """Write the review report of the scan in OUTDIR (the --out folder of `assoc scan`).

    A reviewer's decisions and notes in an existing review_queue.csv are kept.
    """
    display = ProgressDisplay.for_command(quiet)
    try:
        written = _write_reviews(outdir, html="html" in formats, sarif="sarif" in formats, export=False,
                                 reveal_pii=reveal_pii, matches_per_pair=matches_per_pair, progress=display)
    except AssocError as exc:
        raise _fail(exc) from exc
    finally:
        display.close()
    if not quiet:
        _echo_written(written)


@main.command("export")
@_OUTDIR
@_REVEAL_PII
@_QUIET
def export_command(outdir: Path, reveal_pii: bool, quiet: bool) -> None:
    """Write the scan in OUTDIR as graphs to OUTDIR/graph: GraphML, GEXF, Cytoscape.js JSON, Neo4j CSV + Cypher."""
    display = ProgressDisplay.for_command(quiet)
    try:
        written = _write_reviews(outdir, html=False, sarif=False, export=True, reveal_pii=reveal_pii,
                                 progress=display)
    except AssocError as exc:
        raise _fail(exc) from exc
    finally:
        display.close()
    if not quiet:
        _echo_written(written)


@main.command("explain")
@_OUTDIR
@click.argument("store_a")
@click.argument("store_b")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@_REVEAL_PII
def explain_command(outdir: Path, store_a: str, store_b: str, as_json: bool, reveal_pii: bool) -> None:
    """Show why the scan in OUTDIR linked STORE_A and STORE_B (in either order): the evidence waterfall.

    Exit 0 with "no evidence between them" when both stores exist but the scan reported no pair;
    exit 2 when a store id is not in the scanned bundle.
    """
    try:
        explanation = explain_pair(read_scan_output(outdir), store_a, store_b)
    except AssocError as exc:
        raise _fail(exc) from exc
    if as_json:
        click.echo(json.dumps(explanation.to_dict(reveal_pii), indent=2, sort_keys=True))
    else:
        click.echo(_render_explanation(explanation, reveal_pii), nl=False)


def _render_explanation(explanation: Explanation, reveal_pii: bool) -> str:
    """The waterfall as a terminal table (rich), plain text when stdout is not a terminal."""
    from rich.console import Console
    from rich.table import Table

    data = explanation.to_dict(reveal_pii)
    # Off a terminal rich would wrap at 80 columns; a wide table is easier to read in a log or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    with console.capture() as captured:
        console.print(data["message"], markup=False)
        if explanation.pair is not None:
            table = Table("evidence", "value", "weight", "stores", "total -> p", f"first seen {data['store_a']}",
                          f"first seen {data['store_b']}", "gap h", box=None, pad_edge=False)
            table.add_row("prior", "", "", "", f"{data['prior_bits']:.1f}", "", "", "")
            for step in data["waterfall"]:
                value = step["value"] + (f" ({step['note']})" if step["note"] else "")
                table.add_row(step["code"], value, f"{step['weight']:.1f}", str(step["stores"]),
                              f"{step['bits_after']:.1f} -> {step['p_after']:.3f}", step["first_seen_a"],
                              step["first_seen_b"], "" if step["gap_hours"] is None else f"{step['gap_hours']:.1f}")
            console.print(table)
            if data["model_contributions"]:
                console.print("the operator score is a learned model's (scan --model); the weights above are the "
                              "rule table's. The model's terms, in bits of log-odds:", markup=False)
                model = Table("feature", "bits", box=None, pad_edge=False)
                for term in data["model_contributions"]:
                    model.add_row(term["feature"], f"{term['bits']:+.2f}")
                console.print(model)
            console.print(f"reasons: {'; '.join(data['reasons'])}", markup=False)
    # rich pads every cell of the last column; trailing blanks only get in the way of grep and diff.
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def _render_summary(summary: dict[str, Any], outdir: Path) -> str:
    """The scan summary as rich tables: styled on a terminal, plain text (no escape codes) in a pipe or a log."""
    from rich.table import Table

    facts = Table(box=None, pad_edge=False, show_header=False)
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("stores scanned", str(summary["stores"]))
    facts.add_row("pairs linked", f"{summary['pairs_linked']} (of {summary['pairs_reported']} reported)")
    facts.add_row("clusters", f"{summary['clusters']} ({summary['stores_in_clusters']} stores)")
    facts.add_row("hubs", f"{summary['hubs']} ({summary['hubs_ignored']} ignored, see hubs.csv)")
    if summary["rejected_rows"]:
        facts.add_row("rejected rows", f"{summary['rejected_rows']} (see {outdir / 'rejected.csv'})")
    facts.add_row("results in", str(outdir))
    tables = [facts]
    if summary["largest_clusters"]:
        largest = Table(box=None, pad_edge=False)
        largest.add_column("largest clusters")
        largest.add_column("size", justify="right")
        largest.add_column("risk", justify="right")
        for cluster in summary["largest_clusters"]:
            largest.add_row(cluster["cluster_id"], str(cluster["size"]), f"{cluster['risk']:.3f}")
        tables.append(largest)
    return _rich_text(*tables)


def _rich_text(*renderables: Any) -> str:
    """Renderables as text for stdout: colours and bold only when stdout is a terminal.

    Off a terminal no escape code is written, even under FORCE_COLOR, and lines are not wrapped
    at rich's default 80 columns (a long path stays on one line for grep); trailing blanks that
    rich pads cells with are dropped.
    """
    from rich.console import Console

    terminal = sys.stdout.isatty()
    console = Console(width=None if terminal else 200, highlight=False, emoji=False, markup=False,
                      color_system="auto" if terminal else None, force_terminal=terminal)
    with console.capture() as captured:
        for number, renderable in enumerate(renderables):
            if number:
                console.line()
            console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


from fingerprints.cli import collect  # noqa: E402, I001 - the collectors' commands live in their package
main.add_command(collect)

from .cli_index import check_command, index_group, serve_command  # noqa: E402, I001 - registered like collect
main.add_command(index_group)
main.add_command(check_command)
main.add_command(serve_command)

from .cli_evaluate import evaluate_command  # noqa: E402, I001 - registered like collect
main.add_command(evaluate_command)

from .cli_review import review_group  # noqa: E402, I001 - registered like collect
main.add_command(review_group)

from .cli_model import suggest_command, train_command  # noqa: E402, I001 - registered like collect
main.add_command(train_command)
review_group.add_command(suggest_command)


if __name__ == "__main__":
    main()
