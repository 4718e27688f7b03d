"""Images from URLs: download the http(s) images a bundle's products name, and point them at the local copies.

Each URL is saved once as BUNDLE/images/url/<sha256 of the URL><extension>: the name is the cache
key, so a second run (or a run after an interruption) keeps what is there and fetches only the
rest, and a URL listed by many products is fetched once. With a cache directory, files are also
looked up there and stored there, for the next bundle. The `images` cells then hold the local
paths and the `image_urls` column the URLs they came from (one entry per image, '' for an image
that was local already), so the provenance of every picture stays in the bundle. A bundle in the
JSONL form gets the same in stores.jsonl: each product's `images` names the local files and an
`image_urls` list beside it the URLs (products.csv is not created).

A download is bounded: a connect/read timeout and a total time, a maximum size (by
Content-Length and while reading), a content type that may be an image, the first bytes of a
format the scanner reads (JPEG, PNG, GIF, WebP, BMP, TIFF), at most `max_redirects` redirects,
each checked by the SSRF guard (netguard) like the first URL. Connection errors, timeouts, 429
and 5xx are retried with exponential backoff; anything else fails at once. A failed URL is
reported (with the products.csv line naming it) and counted, and its cell keeps the URL; it never
stops the other downloads.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import random
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

from assoc.errors import OutputError
from assoc.records import Progress, no_progress

from .base import CollectReport, Problems
from .bundleio import (
    IMAGE_URLS,
    BundleRows,
    Row,
    atomic_write,
    locked,
    read_bundle_rows,
    rewrite_jsonl_products,
    write_rows,
)
from .errors import CollectError
from .netguard import Networks, Refused, connection

IMAGE_DIR = "images/url"
JSONL = "stores.jsonl"
_SIGNATURES = (  # (offset, bytes, extension)
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"GIF87a", ".gif"),
    (0, b"GIF89a", ".gif"),
    (8, b"WEBP", ".webp"),
    (0, b"BM", ".bmp"),
    (0, b"II*\x00", ".tif"),
    (0, b"MM\x00*", ".tif"),
)
EXTENSIONS = tuple(dict.fromkeys(ext for _, _, ext in _SIGNATURES))
_SNIFF_BYTES = 12
# Types a server may send for an image: image/*, and the generic binary types of misconfigured hosts.
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_USER_AGENT = "assoc-collect (product image fetcher)"
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"  # reserved characters and escapes stay as written; only the rest is encoded


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How far one download may go."""

    timeout: float = 10.0  # seconds to connect, and for each read
    total_timeout: float = 60.0  # seconds for a whole download, so a trickling server cannot hold a worker
    max_bytes: int = 20 * 2**20
    max_redirects: int = 5
    retries: int = 2  # further attempts after a transient failure
    backoff: float = 0.5  # seconds before the first retry; doubled for each further one
    allow_private: bool = False  # let URLs reach loopback and private addresses (never metadata services)
    allowed_networks: tuple[str, ...] = ()  # CIDR networks exempt from the guard, e.g. an internal image host

    def networks(self) -> Networks:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)

    def problems(self) -> list[str]:
        checks = [(self.timeout > 0, "timeout must be positive"),
                  (self.total_timeout > 0, "total timeout must be positive"),
                  (self.max_bytes > 0, "max bytes must be positive"),
                  (self.max_redirects >= 0, "max redirects cannot be negative"),
                  (self.retries >= 0, "retries cannot be negative"),
                  (self.backoff >= 0, "backoff cannot be negative")]
        problems = [message for ok, message in checks if not ok]
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                problems.append(f"{network!r} is not a network (e.g. 10.1.2.0/24)")
        return problems


class FetchError(Exception):
    """One download failed; `transient` failures are worth another attempt."""

    def __init__(self, reason: str, *, transient: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.transient = transient
        self.retry_after = retry_after


def image_extension(head: bytes) -> str | None:
    """The file extension of an image whose file starts with `head`; None if it is no format the scanner reads."""
    for offset, signature, extension in _SIGNATURES:
        if head[offset:offset + len(signature)] == signature and (extension != ".webp" or head[:4] == b"RIFF"):
            return extension
    return None


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]


def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def fetch(url: str, limits: FetchLimits) -> tuple[bytes, str]:
    """Download one image: (bytes, extension). Raises FetchError after retries, Refused by the guard."""
    attempt = 0
    while True:
        try:
            return _fetch_once(url, limits)
        except FetchError as exc:
            if not exc.transient or attempt >= limits.retries:
                raise
            delay = limits.backoff * 2**attempt * (1 + random.random() / 4)  # jitter: retries do not align
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, 4 * limits.backoff * 2**limits.retries))
            time.sleep(delay)
            attempt += 1


def _fetch_once(url: str, limits: FetchLimits) -> tuple[bytes, str]:
    networks = limits.networks()
    deadline = time.monotonic() + limits.total_timeout
    current = url
    for _ in range(limits.max_redirects + 1):
        try:
            parts = urlsplit(current)
        except ValueError as exc:
            raise FetchError(f"{current}: not a valid URL ({exc})") from exc
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"{current}: only http and https URLs are fetched")
        if parts.username is not None or parts.password is not None:
            raise FetchError(f"{current}: URLs with credentials are not fetched")
        if not parts.hostname:
            raise FetchError(f"{current}: no host in the URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise FetchError(f"{current}: bad port") from exc
        try:
            conn = connection(parts.scheme, parts.hostname, port, timeout=limits.timeout,
                              allow_private=limits.allow_private, allowed=networks)
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {parts.hostname}: {exc}", transient=True) from exc
        try:
            # Sellers paste URLs with raw non-ASCII paths (图片.jpg); HTTP needs them percent-encoded.
            target = quote(parts.path or "/", safe=_URL_SAFE) + (f"?{quote(parts.query, safe=_URL_SAFE)}"
                                                                  if parts.query else "")
            conn.request("GET", target, headers={"User-Agent": _USER_AGENT, "Accept": "image/*"})
            response = conn.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"HTTP {response.status} without a Location")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise _status_error(response)
            return _read_image(response, conn, limits, deadline)
        except (OSError, http.client.HTTPException) as exc:  # Refused and FetchError are neither: they pass
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise FetchError(reason, transient=True) from exc
        finally:
            conn.close()
    raise FetchError(f"more than {limits.max_redirects} redirects")


def _status_error(response: http.client.HTTPResponse) -> FetchError:
    status = response.status
    transient = status == 429 or status >= 500
    retry_after = None
    header = response.getheader("Retry-After", "")
    if header.isdigit():
        retry_after = float(header)
    return FetchError(f"HTTP {status} {response.reason}", transient=transient, retry_after=retry_after)


def _read_image(response: http.client.HTTPResponse, conn: http.client.HTTPConnection, limits: FetchLimits,
                deadline: float) -> tuple[bytes, str]:
    content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if not content_type.startswith("image/") and content_type not in _BINARY_TYPES:
        raise FetchError(f"content type {content_type!r} is not an image")
    length = response.getheader("Content-Length", "")
    if length.isdigit() and int(length) > limits.max_bytes:
        raise FetchError(f"{int(length)} bytes is over the limit of {limits.max_bytes}")
    body = bytearray()
    extension = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"took longer than {limits.total_timeout:g} s", transient=True)
        if conn.sock is not None:
            conn.sock.settimeout(min(limits.timeout, remaining))
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        body += chunk
        if len(body) > limits.max_bytes:
            raise FetchError(f"more than {limits.max_bytes} bytes")
        if extension is None and len(body) >= _SNIFF_BYTES:
            extension = _sniffed(body)
    return bytes(body), extension or _sniffed(body)


def _sniffed(body: bytes | bytearray) -> str:
    extension = image_extension(bytes(body[:_SNIFF_BYTES]))
    if extension is None:
        raise FetchError("the content is not an image the scanner reads (JPEG, PNG, GIF, WebP, BMP, TIFF)")
    return extension


@dataclass(frozen=True)
class ImagesCollector:
    """Downloads the URL images of a bundle's products (products.csv or stores.jsonl) into it, and relinks them."""

    name: ClassVar[str] = "images"
    summary: ClassVar[str] = "download http(s) images of a bundle's products into it (SSRF-guarded)"

    limits: FetchLimits = FetchLimits()
    workers: int = 8
    cache_dir: Path | None = None

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport:
        """Fetch the URL images of the bundle `out`; failures are reported in the result, never raised."""
        problems = self.limits.problems() + ([] if self.workers >= 1 else ["workers must be at least 1"])
        if problems:
            raise CollectError("; ".join(problems))
        # The form read_bundle_rows reads: the CSV form wherever stores.csv exists.
        jsonl = not (out / "stores.csv").exists() and (out / JSONL).is_file()
        if not jsonl and not (out / "products.csv").exists():
            raise CollectError(f"{out}: no products.csv (nor stores.jsonl); collect products into the bundle first")
        wanted = _urls_by_first_origin(read_bundle_rows(out))
        folder = out / IMAGE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        local: dict[str, str] = {}
        to_fetch = []
        for url in wanted:
            found = _existing(folder, url_key(url)) or self._from_cache(url, folder)
            if found:
                local[url] = f"{IMAGE_DIR}/{found}"
            else:
                to_fetch.append(url)
        report = CollectReport(self.name, out)
        failures = Problems()
        refused = 0
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(self._download, url, folder): url for url in to_fetch}
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    url = futures[future]
                    progress("download images", done, len(futures))
                    try:
                        local[url] = f"{IMAGE_DIR}/{future.result()}"
                    except Refused as exc:
                        refused += 1
                        failures.add_at(wanted[url], f"{url}: refused: {exc}")
                    except FetchError as exc:
                        failures.add_at(wanted[url], f"{url}: {exc}")
            except BaseException:
                # The bundle cannot be written (disk full, ^C): stop, keeping the files saved so far for a rerun.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        with locked(out):
            # Read again under the lock: another collector may have written rows while images downloaded.
            if jsonl:
                rewritten = rewrite_jsonl_products(out / JSONL, lambda item: _relink_item(item, local))
            else:
                rows = read_bundle_rows(out)
                rewritten = _rewrite(rows, local)
                if rewritten:
                    write_rows(out, rows, tables=("products",))
        report.counts = {"urls": len(wanted), "already_local": len(wanted) - len(to_fetch),
                         "fetched": len(to_fetch) - failures.total, "failed": failures.total, "refused": refused,
                         "products_rewritten": rewritten}
        report.take_problems(failures)
        return report

    def _download(self, url: str, folder: Path) -> str:
        body, extension = fetch(url, self.limits)
        name = url_key(url) + extension
        atomic_write(folder / name, lambda handle: handle.write(body), text=False)
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                atomic_write(self.cache_dir / name, lambda handle: handle.write(body), text=False)
            except (OSError, OutputError):
                pass  # the cache only saves work; the bundle has its copy
        return name

    def _from_cache(self, url: str, folder: Path) -> str | None:
        if self.cache_dir is None:
            return None
        found = _existing(self.cache_dir, url_key(url))
        if found is None:
            return None
        try:
            temp = folder / f".{found}.tmp"
            shutil.copyfile(self.cache_dir / found, temp)
            os.replace(temp, folder / found)
        except OSError:
            return None
        return found


def _existing(folder: Path, key: str) -> str | None:
    for extension in EXTENSIONS:
        if (folder / (key + extension)).is_file():
            return key + extension
    return None


def _urls_by_first_origin(rows: BundleRows) -> dict[str, str]:
    """Every http(s) image URL of the products, with the origin (file and line) of the first row naming it."""
    urls: dict[str, str] = {}
    for row in rows.products.values():
        for image in row.cells.get("images", "").split("|"):
            image = image.strip()
            if is_url(image) and image not in urls:
                urls[image] = row.origin
    return urls


def _relink(images: list[str], old_urls: list[str], local: Mapping[str, str]) -> tuple[list[str], list[str]] | None:
    """(`images` with downloaded URLs replaced by their local paths, each image's URL); None if none was downloaded.

    An image's URL is '' where it was local already (or what `old_urls` kept from an earlier run).
    """
    if not any(image in local for image in images):
        return None
    urls = [old_urls[i].strip() if i < len(old_urls) else "" for i in range(len(images))]
    images = list(images)
    for i, image in enumerate(images):
        if image in local:
            images[i], urls[i] = local[image], image
    return images, urls


def _rewrite(rows: BundleRows, local: Mapping[str, str]) -> int:
    """Point image cells at the downloaded files, keeping each URL in image_urls; returns rows changed."""
    changed = 0
    for key, row in list(rows.products.items()):
        images = [p.strip() for p in row.cells.get("images", "").split("|") if p.strip()]
        old_urls = row.cells.get(IMAGE_URLS, "").split("|") if row.cells.get(IMAGE_URLS) else []
        relinked = _relink(images, old_urls, local)
        if relinked is None:
            continue
        cells = dict(row.cells, images="|".join(relinked[0]), **{IMAGE_URLS: "|".join(relinked[1])})
        rows.products[key] = Row(cells, row.origin)
        changed += 1
    if changed and IMAGE_URLS not in rows.columns["products"]:
        rows.columns["products"].append(IMAGE_URLS)
    return changed


def _relink_item(item: dict[str, Any], local: Mapping[str, str]) -> bool:
    """_rewrite for one product object of stores.jsonl, keeping its form: lists stay lists, '|'-strings strings."""
    value, old = item.get("images"), item.get(IMAGE_URLS)
    if not isinstance(value, list | str):
        return False
    images = [p.strip() for p in (value.split("|") if isinstance(value, str) else map(_text, value)) if p.strip()]
    if isinstance(old, str):
        old_urls = old.split("|") if old else []
    else:
        old_urls = [_text(u) for u in old] if isinstance(old, list) else []
    relinked = _relink(images, old_urls, local)
    if relinked is None:
        return False
    if isinstance(value, list):
        item["images"], item[IMAGE_URLS] = relinked
    else:
        item["images"], item[IMAGE_URLS] = "|".join(relinked[0]), "|".join(relinked[1])
    return True


def _text(value: Any) -> str:
    return "" if value is None else str(value)
