"""`assoc index add/stats/remove`, `assoc check` and `assoc serve`: flags -> library call -> rendering.

Registered on the main group at the end of assoc/cli.py.

Exit codes: 0 success (for `check`: no association); 1 `check` found an association; 2 invalid
input, settings, index or usage.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from .bundle import read_bundle
from .check import check_bundle, read_candidate
from .cli_model import MODEL_OPTION, load_scorer
from .cli_support import CONFIG_OPTION, Failure, ProgressDisplay
from .errors import AssocError, BundleError, SettingsError
from .settings import Settings
from .store import BATCH_STORES, IndexStore

EXIT_ASSOCIATED = 1




def _settings(config: Path | None, **flags: Any) -> Settings:
    try:
        settings = Settings.from_file(config) if config else Settings()
        return settings.replace(**{name: value for name, value in flags.items() if value is not None})
    except (SettingsError, TypeError) as exc:
        raise Failure(str(exc)) from exc


_DB = click.option("--db", "db", required=True, type=click.Path(path_type=Path, dir_okay=False),
                   help="The index file (SQLite).")



@click.group("index")
def index_group() -> None:
    """Build and maintain the persistent index that `assoc check` and `assoc serve` read."""


@index_group.command("add")
@click.argument("bundle", type=click.Path(path_type=Path))
@_DB
@CONFIG_OPTION
@click.option("--skip-invalid", is_flag=True, help="Skip invalid rows instead of stopping.")
@click.option("--no-image-hashes", is_flag=True, help="Do not fingerprint local product pictures.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Image hash cache folder of the catalog refresh [$XDG_CACHE_HOME/assoc].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the image hash cache.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_STORES, show_default=True,
              help="Stores written per transaction.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary.")
def index_add(bundle: Path, db: Path, config: Path | None, skip_invalid: bool, no_image_hashes: bool,
              cache_dir: Path | None, no_cache: bool, batch_size: int, quiet: bool) -> None:
    """Add or update the stores of BUNDLE in the index (created if missing). Unchanged stores are skipped."""
    settings = _settings(config, skip_invalid=skip_invalid or None, cache_dir=cache_dir)
    if no_cache:
        settings = settings.replace(cache_dir=None)
    display = ProgressDisplay.for_command(quiet)
    try:
        data = read_bundle(bundle, skip_invalid=settings.skip_invalid, progress=display)
        with IndexStore.open(db, create=True) as index:
            report = index.add_bundle(data, settings, hash_images=not no_image_hashes, batch_stores=batch_size,
                                      progress=display)
    except BundleError as exc:
        raise Failure(f"{bundle}: {exc}") from exc
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    except sqlite3.Error as exc:  # e.g. the disk is full, or another process holds a lock too long
        raise Failure(f"{db}: the index could not be written: {exc}; run the same command again") from exc
    finally:
        display.close()
    if not quiet:
        click.echo(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged} stores"
                   + ("; catalog refreshed" if report.catalog_refreshed else ""))


@index_group.command("stats")
@_DB
@click.option("--hub-cap", type=int, default=Settings().hub_cap, show_default=True,
              help="Count keys held by more stores than this as hubs.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def index_stats(db: Path, hub_cap: int, as_json: bool) -> None:
    """Stores, signals, listings, keys, hubs and file size of the index."""
    try:
        with IndexStore.open(db) as index:
            stats = index.stats(hub_cap)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    for name in ("stores", "signals", "listings", "keys", "hubs", "file_bytes", "catalog", "schema_version"):
        label = {"hubs": f"hubs (> {hub_cap} stores)", "file_bytes": "file size (bytes)"}.get(name, name)
        click.echo(f"{label:22s} {stats[name]}")


@index_group.command("remove")
@click.argument("store_id")
@_DB
def index_remove(store_id: str, db: Path) -> None:
    """Remove STORE_ID and everything about it from the index."""
    try:
        with IndexStore.open(db) as index:
            index.remove_store(store_id)
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    click.echo(f"removed {store_id}")


@click.command("check")
@click.argument("candidate", type=click.Path(path_type=Path, exists=True))
@_DB
@CONFIG_OPTION
@click.option("--link-threshold", type=float, help="Probability at or above which a pair is linked [0.5].")
@click.option("--catalog-threshold", type=float, help="Catalog overlap that links on its own [0.30].")
@click.option("--hub-cap", type=int, help="Values shared by more stores than this are hubs and ignored [25].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@MODEL_OPTION
def check_command(candidate: Path, db: Path, config: Path | None, link_threshold: float | None,
                  catalog_threshold: float | None, hub_cap: int | None, as_json: bool, model_path: Path | None) -> None:
    """Check CANDIDATE (a bundle, or a .json file of one store) against the index without a rescan.

    Exit code 0: no association; 1: associated with an indexed store; 2: error.
    """
    settings = _settings(config, link_threshold=link_threshold, catalog_threshold=catalog_threshold,
                         hub_cap=hub_cap, cache_dir=None)
    scorer = load_scorer(model_path)
    try:
        bundle = read_candidate(candidate)
        with IndexStore.open(db) as index:
            results = check_bundle(index, bundle, settings, scorer=scorer)
    except BundleError as exc:
        raise Failure(f"{candidate}: {exc}") from exc
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        click.echo("\n".join(_render(r.to_dict()) for r in results))
    if any(r.associated for r in results):
        sys.exit(EXIT_ASSOCIATED)


def _render(result: dict[str, Any]) -> str:
    verdict = "ASSOCIATED" if result["associated"] else "clear"
    lines = [f"{result['store_id']}: {verdict} ({len(result['pairs'])} pair(s) reported, "
             f"{result['listings']} listings)"]
    for pair in result["pairs"]:
        overlap = "" if pair["catalog_overlap"] is None else f"  catalog {pair['catalog_overlap']:.2f}"
        mark = "linked" if pair["linked"] else "      "
        lines.append(f"  {pair['store_id']:16s} {pair['score']:.3f} {mark}{overlap}  {';'.join(pair['reasons'])}")
    if not result["catalog_fresh"]:
        lines.append("  note: stores were written since the last catalog refresh; run `assoc index add` to refresh")
    return "\n".join(lines)


@click.command("serve")
@_DB
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="File holding the bearer token [default: $ASSOC_TOKEN].")
@click.option("--no-auth", is_flag=True, help="Serve without a token (refused unless --host is a loopback address).")
@click.option("--max-body", default=4 * 1024 * 1024, show_default=True, type=int,
              help="Largest request body in bytes (larger ones get 413).")
@MODEL_OPTION
def serve_command(db: Path, config: Path | None, host: str, port: int, token_file: Path | None, no_auth: bool,
                  max_body: int, model_path: Path | None) -> None:
    """Serve checks and store updates over HTTP for ERP systems, until SIGTERM or Ctrl-C."""
    from .server import ServerConfig, is_loopback, serve

    settings = _settings(config, cache_dir=None)
    scorer = load_scorer(model_path)
    token = token_file.read_text(encoding="utf-8").strip() if token_file else os.environ.get("ASSOC_TOKEN", "")
    if not token and not no_auth:
        raise Failure("no token: set ASSOC_TOKEN or pass --token-file (or --no-auth on a loopback address)")
    if no_auth and not is_loopback(host):
        raise Failure(f"--no-auth is allowed on loopback addresses only, not {host!r}; give a token instead")
    try:
        IndexStore.open(db).close()  # fail before listening: a missing or foreign index is a usage error
        serve(ServerConfig(db=db, settings=settings, token=None if no_auth else token, max_body=max_body,
                           scorer=scorer),
              host, port, ready=lambda address: click.echo(f"listening on http://{address[0]}:{address[1]}",
                                                           err=True))
    except AssocError as exc:
        raise Failure(str(exc)) from exc
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
