"""`assoc collect ...`: flags -> a collector from the registry -> collect -> a short report. Nothing else lives here.

Exit codes as for `assoc scan`: 0 success (images that failed to download are reported, not
fatal); 2 invalid input, options, conflicting bundles or an unknown collector; 3 the bundle could
not be written. The README's "Collectors" section documents them for users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from assoc.cli_support import EXIT_INVALID, EXIT_OUTPUT, Failure, ProgressDisplay
from assoc.errors import AssocError, OutputError

from .base import CollectReport
from .errors import SHOWN_PROBLEMS, UnknownCollectorError
from .images import FetchLimits
from .logins import DEFAULT_MAX_SIGHTINGS, LoginColumns
from .logins import FORMATS as LOGIN_FORMATS
from .products import FORMATS as PRODUCT_FORMATS
from .products import ProductColumns
from .registry import collector_class, make_collector

_existing_file = click.Path(path_type=Path, exists=True, dir_okay=False)
_bundle_dir = click.Path(path_type=Path, file_okay=False)


def _run(name: str, out: Path, quiet: bool, as_json: bool, **options: Any) -> None:
    progress = ProgressDisplay.for_command(quiet)
    try:
        report = make_collector(name, **options).collect(out, progress=progress)
    except OutputError as exc:
        raise Failure(str(exc), EXIT_OUTPUT) from exc
    except AssocError as exc:
        raise Failure(str(exc), EXIT_INVALID) from exc
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif not quiet:
        click.echo(_render(report))


def _render(report: CollectReport) -> str:
    lines = [f"{report.collector} -> {report.out}"]
    lines += [f"  {name.replace('_', ' '):22s} {count}" for name, count in report.counts.items()]
    if report.problem_count:
        what = "failed" if report.collector == "images" else "skipped (bad rows)"
        lines.append(f"  {what}: {report.problem_count}")
        lines += [f"    - {p}" for p in report.problems[:SHOWN_PROBLEMS]]
        if report.problem_count > SHOWN_PROBLEMS:
            lines.append(f"    ... and {report.problem_count - SHOWN_PROBLEMS} more")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _explicit(**named: str | None) -> frozenset[str]:
    return frozenset(name for name, value in named.items() if value is not None)


class _CollectGroup(click.Group):
    """The collect commands; an unknown one is a usage error naming every collector of the registry."""

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            if not args or args[0].startswith("-"):
                raise
            try:
                collector_class(args[0])
            except UnknownCollectorError as exc:
                raise click.UsageError(f"{exc}; see 'assoc collect COLLECTOR --help'", ctx) from None
            raise  # a registered collector without a command: click's own message


@click.group("collect", cls=_CollectGroup)
def collect() -> None:
    """Turn exports, logs and this machine into fingerprint bundles (merging into an existing --out)."""


_out = click.option("--out", "out", required=True, type=_bundle_dir,
                    help="Bundle directory to write; an existing bundle is merged into, never overwritten.")
_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress display, and no report unless --json.")
_json = click.option("--json", "as_json", is_flag=True,
                     help="Print the report (counts, problems with file and line, notes) as one JSON object.")
_skip = click.option("--skip-invalid", is_flag=True, help="Collect the good rows and list the bad ones "
                                                         "(default: stop without writing).")
_encoding = click.option("--encoding", default="utf-8-sig", show_default=True,
                         help="Text encoding of the input (e.g. gb18030).")


@collect.command("logins")
@click.argument("files", nargs=-1, required=True, type=_existing_file)
@_out
@click.option("--format", "fmt", type=click.Choice(LOGIN_FORMATS), default="auto", show_default=True,
              help="Input format; auto goes by the file name, then by the first line.")
@click.option("--store-col", help="Column/key of the store id [store_id].")
@click.option("--ip-col", help="Column/key of the IP address [ip].")
@click.option("--time-col", help="Column/key of the login time [time, seen_at or timestamp].")
@click.option("--device-col", help="Column/key of the device id [device_id].")
@click.option("--mac-col", help="Column/key of the MAC address [mac].")
@click.option("--ua-col", help="Column/key of the user agent (collected only when given).")
@click.option("--with-ua", is_flag=True, help="Collect user agents from combined logs.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of times written without one.")
@click.option("--time-format", help="strptime pattern of the times, when no recognised format fits.")
@click.option("--max-sightings", type=int, default=DEFAULT_MAX_SIGHTINGS, show_default=True,
              help="Distinct hours kept per store and value before the buckets widen.")
@_encoding
@_skip
@_quiet
@_json
def logins_command(files: tuple[Path, ...], out: Path, fmt: str, store_col: str | None, ip_col: str | None,
                   time_col: str | None, device_col: str | None, mac_col: str | None, ua_col: str | None,
                   with_ua: bool, timezone: str, time_format: str | None, max_sightings: int, encoding: str,
                   skip_invalid: bool, quiet: bool, as_json: bool) -> None:
    """Login logs -> ip, device_id and mac signals.

    FILES are CSV, JSON Lines or combined/common web-server logs (the authenticated user is the
    store), gzipped or not. Per store and value the first login of each hour and the last are kept.
    """
    given = {"store": store_col, "ip": ip_col, "time": time_col, "device": device_col, "mac": mac_col}
    columns = LoginColumns(**{k: v for k, v in given.items() if v is not None}, ua=ua_col,
                           explicit=_explicit(**given))
    _run("logins", out, quiet, as_json, files=files, fmt=fmt, columns=columns, timezone=timezone,
         time_format=time_format, encoding=encoding, max_sightings=max_sightings, user_agents=with_ua,
         skip_invalid=skip_invalid)


@collect.command("products")
@click.argument("file", type=_existing_file)
@_out
@click.option("--store-id", help="The store the export belongs to (required for Shopify exports).")
@click.option("--format", "fmt", type=click.Choice(PRODUCT_FORMATS), default="auto", show_default=True,
              help="Input format; auto recognises Shopify's header, else CSV or JSON Lines.")
@click.option("--id-col", help="Column/key of the product id [product_id, id or sku].")
@click.option("--title-col", help="Column/key of the title [title].")
@click.option("--description-col", help="Column/key of the description, text or HTML [description].")
@click.option("--price-col", help="Column/key of the price [price].")
@click.option("--currency-col", help="Column/key of the currency [currency].")
@click.option("--images-col", help="Column/key of the images, |-separated or a JSON list [images].")
@click.option("--store-col", help="Column/key of the store id, for exports of many stores (no --store-id).")
@click.option("--currency", default="", help="ISO 4217 currency of prices without one (Shopify exports).")
@click.option("--replace", is_flag=True, help="Let these rows replace differing products already in the bundle.")
@_encoding
@_skip
@_quiet
@_json
def products_command(file: Path, out: Path, store_id: str | None, fmt: str, id_col: str | None,
                     title_col: str | None, description_col: str | None, price_col: str | None,
                     currency_col: str | None, images_col: str | None, store_col: str | None, currency: str,
                     replace: bool, encoding: str, skip_invalid: bool, quiet: bool,
                     as_json: bool) -> None:
    """Product exports -> products.

    FILE is Shopify's product CSV export, or a CSV / JSON Lines export read by a column mapping.
    """
    given = {"product_id": id_col, "title": title_col, "description": description_col, "price": price_col,
             "currency": currency_col, "images": images_col, "store": store_col}
    columns = ProductColumns(**{k: v for k, v in given.items() if v is not None}, explicit=_explicit(**given))
    _run("products", out, quiet, as_json, file=file, store_id=store_id, fmt=fmt, columns=columns, currency=currency,
         encoding=encoding, replace=replace, skip_invalid=skip_invalid)


@collect.command("images")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--allow-private", is_flag=True,
              help="Also fetch from loopback and private addresses (never from cloud metadata services).")
@click.option("--allow-network", "allowed_networks", multiple=True, metavar="CIDR",
              help="A network to fetch from although it is private (repeatable), e.g. an internal image host.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to connect and per read.")
@click.option("--total-timeout", type=float, default=60.0, show_default=True, help="Seconds per download.")
@click.option("--max-mb", type=float, default=20.0, show_default=True, help="Largest image, in MiB.")
@click.option("--max-redirects", type=int, default=5, show_default=True)
@click.option("--retries", type=int, default=2, show_default=True, help="Retries of a transient failure.")
@click.option("--backoff", type=float, default=0.5, show_default=True, help="Seconds before the first retry.")
@click.option("--workers", type=int, default=8, show_default=True, help="Downloads at once.")
@click.option("--cache-dir", type=_bundle_dir, help="Also keep and reuse downloads here, across bundles.")
@_quiet
@_json
def images_command(bundle: Path, allow_private: bool, allowed_networks: tuple[str, ...], timeout: float,
                   total_timeout: float, max_mb: float, max_redirects: int, retries: int, backoff: float,
                   workers: int, cache_dir: Path | None, quiet: bool, as_json: bool) -> None:
    """Download the products' image URLs into the bundle.

    BUNDLE holds products.csv, or stores.jsonl (the JSONL form, rewritten in place). Files go to
    BUNDLE/images/url; the products' images then name them and image_urls keeps the URLs.
    Loopback, private, link-local and metadata addresses are refused unless allowed.
    """
    limits = FetchLimits(timeout=timeout, total_timeout=total_timeout, max_bytes=int(max_mb * 2**20),
                         max_redirects=max_redirects, retries=retries, backoff=backoff, allow_private=allow_private,
                         allowed_networks=allowed_networks)
    _run("images", bundle, quiet, as_json, limits=limits, workers=workers, cache_dir=cache_dir)


@collect.command("local")
@click.option("--store-id", required=True, help="The store this machine serves.")
@_out
@click.option("--salt", help="Secret for the machine id hash [$ASSOC_SALT]; the same across your machines.")
@_quiet
@_json
def local_command(store_id: str, out: Path, salt: str | None, quiet: bool, as_json: bool) -> None:
    """This machine's MACs, IPs and machine id -> signals.

    Physical NIC MACs, the router's MAC, local addresses and an HMAC-SHA256 of the machine id,
    recorded for --store-id.
    """
    _run("local", out, quiet, as_json, store_id=store_id, salt=salt)


@collect.command("merge")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@_out
@_quiet
@_json
def merge_command(bundles: tuple[Path, ...], out: Path, quiet: bool, as_json: bool) -> None:
    """Merge bundles into --out.

    Identical rows are kept once; where BUNDLES disagree about a store or product, nothing is
    written and the files and lines are named.
    """
    _run("merge", out, quiet, as_json, bundles=bundles)
