"""Image fetching against a real HTTP server on 127.0.0.1: limits, retries, resumption, cache and the SSRF guard."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from assoc import Settings, read_bundle, scan
from fingerprints import FetchLimits, ImagesCollector, ProductsCollector, netguard
from fingerprints.cli import collect
from fingerprints.images import image_extension


def _picture(fmt: str, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, fmt)
    return buffer.getvalue()


PNG = _picture("PNG", (200, 30, 30))
JPEG = _picture("JPEG", (30, 30, 200))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (timeouts, size limits) break the pipe: expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "image/png", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", headers.pop("length", str(len(body))))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # one branch per kind of response, read top to bottom
        path = self.path
        with self.server.lock:
            self.server.hits[path] += 1
            self.server.hosts.append(self.headers.get("Host", ""))
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        try:
            if path in ("/good.png", "/%E5%9B%BE%E7%89%87.png"):
                self._send(200, PNG)
            elif path == "/photo.jpg":
                self._send(200, JPEG, "image/jpeg; charset=binary")
            elif path == "/octet":
                self._send(200, JPEG, "application/octet-stream")
            elif path == "/huge-declared.png":
                self._send(200, PNG[:100], length=str(50 * 2**20))
            elif path == "/huge-streamed.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(PNG[:16] + b"\0" * (2 * 2**20))  # no length: read until the limit trips
            elif path == "/page.html":
                self._send(200, b"<html>not a picture</html>", "text/html")
            elif path == "/liar.jpg":
                self._send(200, b"<html>not a picture, whatever the header says</html>", "image/jpeg")
            elif path == "/slow.png":
                time.sleep(2)
                self._send(200, PNG)
            elif path == "/trickle.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                for byte in PNG[:40]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif path == "/redirect":
                self._send(302, Location="/good.png")
            elif path == "/loop":
                self._send(302, Location="/loop")
            elif path == "/to-private":
                self._send(302, Location="http://10.255.255.1/x.png")
            elif path == "/to-metadata":
                self._send(302, Location="http://169.254.169.254/latest/meta-data/")
            elif path == "/flaky.png":
                if self.server.hits[path] == 1:
                    self._send(503, b"busy", "text/plain", Retry_After="0")
                else:
                    self._send(200, PNG)
            elif path.startswith("/sleepy/"):
                time.sleep(0.15)
                self._send(200, PNG)
            else:
                self._send(404, b"no", "text/plain")
        finally:
            with self.server.lock:
                self.server.active -= 1


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: _Server, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


def _bundle(tmp_path: Path, images: list[str], name: str = "bundle") -> Path:
    out = tmp_path / name
    out.mkdir()
    (out / "stores.csv").write_text("store_id\r\nS1\r\n")
    lines = ["store_id,product_id,title,images"]
    lines += [f"S1,p{i},Product {i},{image}" for i, image in enumerate(images)]
    (out / "products.csv").write_text("\r\n".join(lines) + "\r\n")
    return out


def _products(bundle: Path) -> dict[str, dict[str, str]]:
    with open(bundle / "products.csv", newline="", encoding="utf-8") as handle:
        return {r["product_id"]: r for r in csv.DictReader(handle)}


FAST = FetchLimits(timeout=0.5, total_timeout=1.5, max_bytes=2**20, max_redirects=3, retries=1, backoff=0.01,
                   allow_private=True)


def test_fetch_rewrite_failures_and_resume(tmp_path, server):
    paths = ["/good.png", "/photo.jpg", "/octet", "/redirect", "/flaky.png", "/huge-declared.png",
             "/huge-streamed.png", "/page.html", "/liar.jpg", "/slow.png", "/trickle.png", "/loop", "/missing.png"]
    urls = [_url(server, p) for p in paths]
    out = _bundle(tmp_path, [urls[0] + "|images/local.png|" + urls[1], *urls[1:]])
    (out / "images").mkdir()
    Image.new("RGB", (32, 32), (0, 200, 0)).save(out / "images" / "local.png")

    original = (out / "products.csv").read_bytes()
    started = time.monotonic()
    report = ImagesCollector(limits=FAST, workers=6).collect(out)
    assert time.monotonic() - started < 10
    assert report.counts["fetched"] == 5 and report.counts["failed"] == 8 and report.counts["urls"] == 13
    products = _products(out)
    first = products["p0"]
    local = first["images"].split("|")
    assert local[1] == "images/local.png" and all(p.startswith("images/url/") for p in (local[0], local[2]))
    assert local[0].endswith(".png") and local[2].endswith(".jpg")
    assert first["image_urls"].split("|") == [urls[0], "", urls[1]]  # provenance, one entry per image
    assert products["p2"]["images"].endswith(".jpg")  # octet-stream accepted, the bytes say JPEG
    messages = [str(p) for p in report.problems]
    reasons = {url.rsplit("/", 1)[1]: message for message in messages
               for url in urls if f": {url}: " in message}
    assert "is over the limit" in reasons["huge-declared.png"]
    assert "more than 1048576 bytes" in reasons["huge-streamed.png"]
    assert "content type 'text/html' is not an image" in reasons["page.html"]
    assert "not an image the scanner reads" in reasons["liar.jpg"]
    assert "timed out" in reasons["slow.png"]
    assert "took longer than 1.5 s" in reasons["trickle.png"]
    assert "more than 3 redirects" in reasons["loop"]
    assert "HTTP 404" in reasons["missing.png"]
    assert all(m.startswith(f"{out}/products.csv line ") for m in messages)
    assert all(p.file == f"{out}/products.csv" and isinstance(p.line, int) for p in report.problems)
    failed = products["p12"]
    assert failed["images"] == urls[12] and failed["image_urls"] == ""  # a failed URL stays in its cell
    assert server.hits["/flaky.png"] == 2  # retried after a 503

    bundle = read_bundle(out)
    assert all(not p.startswith("http") for p in bundle.products[0].images)
    scan(bundle, Settings(cache_dir=None))

    # Interrupted before the cells were rewritten (the old products.csv is back): a second run keeps every
    # file fetched and asks the server only for the failed URLs again.
    (out / "products.csv").write_bytes(original)
    hits_before = Counter(server.hits)
    again = ImagesCollector(limits=FetchLimits(timeout=0.3, total_timeout=0.5, retries=0, max_bytes=2**20,
                                               allow_private=True), workers=6).collect(out)
    assert again.counts["already_local"] == 5 and again.counts["failed"] == 8
    for path in ("/good.png", "/photo.jpg", "/octet", "/redirect", "/flaky.png"):
        assert server.hits[path] == hits_before[path]
    assert _products(out)["p0"]["image_urls"].split("|") == [urls[0], "", urls[1]]


def test_private_targets_are_refused_by_default(tmp_path, server):
    out = _bundle(tmp_path, [_url(server, "/good.png"), _url(server, "/good.png", "localhost")])
    report = ImagesCollector(limits=FetchLimits(timeout=1, retries=0)).collect(out)
    assert report.counts["refused"] == 2 and report.counts["fetched"] == 0
    assert any(f": {_url(server, '/good.png')}: refused: 127.0.0.1 is loopback; only public addresses are fetched"
               in str(p) for p in report.problems)
    assert any("localhost (" in p.message and ") is loopback" in p.message for p in report.problems)
    assert sum(server.hits.values()) == 0  # refused before connecting


def test_redirect_to_a_private_or_metadata_address_is_refused(tmp_path, server):
    out = _bundle(tmp_path, [_url(server, "/to-private"), _url(server, "/to-metadata"), _url(server, "/redirect")])
    # Only the test server's own address is exempt: the hop to 10.255.255.1 is checked like any URL.
    limits = FetchLimits(timeout=1, retries=0, allowed_networks=("127.0.0.1/32",))
    report = ImagesCollector(limits=limits).collect(out)
    assert report.counts["fetched"] == 1 and report.counts["refused"] == 2
    assert any("10.255.255.1 is private" in p.message for p in report.problems)
    assert any("169.254.169.254 is a cloud metadata service" in p.message for p in report.problems)
    # Metadata services stay refused even when private addresses are allowed.
    out2 = _bundle(tmp_path, [_url(server, "/to-metadata")], "bundle2")
    report = ImagesCollector(limits=FetchLimits(timeout=1, retries=0, allow_private=True)).collect(out2)
    assert report.counts["refused"] == 1


def test_connection_goes_to_the_checked_address(tmp_path, server, monkeypatch):
    """A rebinding DNS answers differently on a second lookup; there is none, the connection is pinned."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["10.0.0.1"] * 10)

    def rebinding(host, port, *args, **kwargs):
        if host == "images.test":
            return real(next(answers), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(netguard.socket, "getaddrinfo", rebinding)
    out = _bundle(tmp_path, [_url(server, "/good.png", "images.test")])
    report = ImagesCollector(limits=FetchLimits(timeout=1, retries=0, allowed_networks=("127.0.0.1/32",))).collect(out)
    assert report.counts["fetched"] == 1
    assert server.hosts == [f"images.test:{server.server_address[1]}"]  # the name in Host, the checked address dialled


def test_a_name_with_one_private_answer_is_refused(monkeypatch):
    def mixed(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ("93.184.215.14", "192.168.1.1")]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", mixed)
    with pytest.raises(netguard.Refused, match=r"cdn.test \(192.168.1.1\) is private"):
        netguard.resolve("cdn.test", 80)


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.0.1", "private"),
    ("169.254.1.1", "link-local"), ("169.254.169.254", "a cloud metadata service"),
    ("100.100.100.200", "a cloud metadata service"), ("100.64.0.1", "not a public address"),
    ("0.0.0.0", "unspecified (connecting to it reaches this machine)"), ("224.0.0.1", "not a public address"),
    ("::1", "loopback"), ("fe80::1", "link-local"), ("fd00::1", "private"),
    ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
    ("2002:7f00:1::1", "loopback (embedded in 2002:7f00:1::1)"),
    ("64:ff9b::a00:1", "private (embedded in 64:ff9b::a00:1)"),
    ("8.8.8.8", None), ("2606:4700::1111", None),
])
def test_address_policy(address, problem):
    assert netguard.address_problem(ipaddress.ip_address(address)) == problem


def test_concurrency_is_bounded_and_cache_is_shared(tmp_path, server):
    urls = [_url(server, f"/sleepy/{i}") for i in range(6)]
    cache = tmp_path / "cache"
    out = _bundle(tmp_path, urls)
    report = ImagesCollector(limits=FAST, workers=2, cache_dir=cache).collect(out)
    assert report.counts["fetched"] == 6 and server.max_active == 2
    other = _bundle(tmp_path, urls, "other")
    report = ImagesCollector(limits=FAST, workers=2, cache_dir=cache).collect(other)
    assert report.counts["already_local"] == 6 and sum(server.hits.values()) == 6  # served from the cache


def test_non_ascii_and_malformed_urls(tmp_path, server):
    out = _bundle(tmp_path, [_url(server, "/图片.png"), "http://[::1/x.png"])
    report = ImagesCollector(limits=FAST).collect(out)
    assert report.counts["fetched"] == 1 and server.hits["/%E5%9B%BE%E7%89%87.png"] == 1
    assert "not a valid URL" in report.problems[0].message


def test_cli_reports_failures_without_failing(tmp_path, server):
    out = _bundle(tmp_path, [_url(server, "/good.png"), _url(server, "/missing.png")])
    result = CliRunner().invoke(collect, ["images", str(out), "--allow-private", "--retries", "0"])
    assert result.exit_code == 0, result.output
    assert "fetched                1" in result.output and "failed: 1" in result.output
    assert "HTTP 404 Not Found" in result.output
    result = CliRunner().invoke(collect, ["images", str(tmp_path / "none")])
    assert result.exit_code == 2


def test_magic_bytes():
    assert image_extension(PNG[:12]) == ".png" and image_extension(JPEG[:12]) == ".jpg"
    assert image_extension(b"RIFF\0\0\0\0WEBPVP8 ") == ".webp"
    assert image_extension(b"<html><body>") is None


def test_recollecting_products_keeps_the_downloaded_images(tmp_path, server):
    export = tmp_path / "export.csv"
    export.write_text(f"product_id,title,images\nx1,Lamp,{_url(server, '/good.png')}\n")
    out = tmp_path / "bundle"
    ProductsCollector(file=export, store_id="S1").collect(out)
    ImagesCollector(limits=FAST).collect(out)
    fetched = _products(out)["x1"]
    ProductsCollector(file=export, store_id="S1").collect(out)  # the same listing, still with its URL: no conflict
    assert _products(out)["x1"] == fetched and fetched["images"].startswith("images/url/")


def test_jsonl_bundle_is_rewritten_in_place_keeping_the_urls(tmp_path, server):
    good, photo, missing = _url(server, "/good.png"), _url(server, "/photo.jpg"), _url(server, "/missing.png")
    out = tmp_path / "bundle"
    (out / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), (0, 200, 0)).save(out / "images" / "local.png")
    lines = [
        {"store_id": "S1", "name": "Shop 图", "signals": [{"kind": "ip", "value": "203.0.113.9"}], "products": [
            {"product_id": "p1", "title": "Lamp", "images": [good, "images/local.png", photo]},
            {"product_id": "p2", "title": "Mug", "images": f"{missing}|{good}"}]},  # the |-joined form too
        {"store_id": "S2", "products": [{"product_id": "q1", "title": "Cup", "images": ["images/local.png"]}]},
        {"store_id": "S3", "products": [{"product_id": "r1", "title": "Pen", "images": [missing]}]},
    ]
    untouched = json.dumps(lines[1]) + "\r\n" + json.dumps(lines[2], indent=None) + "\r\n"
    (out / "stores.jsonl").write_text(json.dumps(lines[0], ensure_ascii=False) + "\r\n" + untouched,
                                      encoding="utf-8", newline="")

    report = ImagesCollector(limits=FAST).collect(out)
    assert report.counts["fetched"] == 2 and report.counts["failed"] == 1 and report.counts["products_rewritten"] == 2
    assert str(report.problems[0]).startswith(f"{out}/stores.jsonl line 1: {missing}: HTTP 404")
    assert not (out / "products.csv").exists() and not (out / "stores.csv").exists()
    text = (out / "stores.jsonl").read_bytes().decode("utf-8")
    assert text.endswith("\r\n" + untouched)  # lines without a downloaded image are left byte for byte
    first = json.loads(text.split("\r\n")[0])
    assert first["name"] == "Shop 图" and first["signals"] == lines[0]["signals"]
    p1, p2 = first["products"]
    assert p1["images"][1] == "images/local.png" and p1["image_urls"] == [good, "", photo]
    assert all(p.startswith("images/url/") for p in (p1["images"][0], p1["images"][2]))
    assert p2["images"] == f"{missing}|{p1['images'][0]}" and p2["image_urls"] == f"|{good}"
    assert (out / p1["images"][2]).read_bytes() == JPEG

    bundle = read_bundle(out)  # still a valid bundle, scanned with the local pictures
    assert {p.product_id: p.images for p in bundle.products}["p1"] == tuple(p1["images"])
    scan(bundle, Settings(cache_dir=None))
    before = (out / "stores.jsonl").read_bytes()
    again = ImagesCollector(limits=FAST).collect(out)  # resumed: nothing new, the file unchanged
    assert again.counts["already_local"] == 0 and again.counts["urls"] == 1 and again.counts["products_rewritten"] == 0
    assert (out / "stores.jsonl").read_bytes() == before


def test_downloaded_images_get_the_umask_mode(tmp_path, server):
    out = _bundle(tmp_path, [_url(server, "/good.png")])
    old = os.umask(0o022)
    try:
        ImagesCollector(limits=FAST, cache_dir=tmp_path / "cache").collect(out)
    finally:
        os.umask(old)
    [picture] = (out / "images" / "url").iterdir()
    [cached] = (tmp_path / "cache").iterdir()
    assert oct(picture.stat().st_mode & 0o777) == oct(cached.stat().st_mode & 0o777) == "0o644"
    assert oct((out / "products.csv").stat().st_mode & 0o777) == "0o644"
