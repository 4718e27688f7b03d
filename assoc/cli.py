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
from .errors import AssocError, BundleError, OutputError, SettingsError
from .records import Progress
from .report import write_scan_outputs
from .scan import scan
from .settings import Settings

EXIT_INVALID = 2
EXIT_OUTPUT = 3


class _Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _fail(exc: AssocError) -> _Failure:
    code = EXIT_OUTPUT if isinstance(exc, OutputError) else EXIT_INVALID
    return _Failure(str(exc), code)


class _ProgressDisplay:
    """tqdm bars on stderr, one per stage, shown only for stages that last over a second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, delay=1.0, file=sys.stderr, leave=False,
                                          dynamic_ncols=True)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assoc")
def main() -> None:
    """assoc: find seller accounts that look like one operator, and explain why."""


@main.command("scan")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--out", "outdir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for pairs.csv, clusters.csv, hubs.csv and the rest (created if missing).")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TOML or JSON settings file; flags override it.")
@click.option("--link-threshold", type=float, help="Probability at or above which a pair is linked [0.5].")
@click.option("--catalog-threshold", type=float, help="Catalog overlap that links on its own [0.30].")
@click.option("--hub-cap", type=int, help="Values shared by more stores than this are hubs and ignored [25].")
@click.option("--no-images", is_flag=True, help="Compare product text only.")
@click.option("--no-text", is_flag=True, help="Compare product images only.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Image hash cache folder [$XDG_CACHE_HOME/assoc].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the image hash cache.")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid rows (listed in OUTDIR/rejected.csv).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary table.")
def scan_command(bundle: Path, outdir: Path, config: Path | None, link_threshold: float | None,
                 catalog_threshold: float | None, hub_cap: int | None, no_images: bool, no_text: bool,
                 cache_dir: Path | None, no_cache: bool, skip_invalid: bool, as_json: bool, quiet: bool) -> None:
    """Scan BUNDLE (a bundle directory or stores.jsonl) and write the results to --out."""
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
        raise _Failure(str(exc), EXIT_INVALID) from exc
    display = _ProgressDisplay(enabled=not quiet and sys.stderr.isatty())
    progress: Progress = display
    try:
        data = read_bundle(bundle, skip_invalid=settings.skip_invalid)
        result = scan(data, settings, progress=progress)
        summary = write_scan_outputs(result, outdir, settings)
    except BundleError as exc:
        raise _Failure(f"{bundle}: {exc}", EXIT_INVALID) from exc
    except AssocError as exc:
        raise _fail(exc) from exc
    finally:
        display.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        click.echo(_render_summary(summary, outdir))


def _render_summary(summary: dict[str, Any], outdir: Path) -> str:
    lines = [
        f"stores scanned     {summary['stores']}",
        f"pairs linked       {summary['pairs_linked']} (of {summary['pairs_reported']} reported)",
        f"clusters           {summary['clusters']} ({summary['stores_in_clusters']} stores)",
        f"hubs ignored       {summary['hubs']}",
    ]
    if summary["rejected_rows"]:
        lines.append(f"rejected rows      {summary['rejected_rows']} (see {outdir / 'rejected.csv'})")
    if summary["largest_clusters"]:
        lines.append("largest clusters   id                 size   risk")
        for c in summary["largest_clusters"]:
            lines.append(f"                   {c['cluster_id']:18s} {c['size']:4d}  {c['risk']:.3f}")
    lines.append(f"results in         {outdir}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
