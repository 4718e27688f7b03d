"""HTTP API for ERP integration: pre-flight checks and store updates against the persistent index.

    POST   /v1/check                    body: one store (a line of stores.jsonl) -> the check result
    PUT    /v1/stores/{store_id}        body: one store -> write it (replacing its rows)
    DELETE /v1/stores/{store_id}        remove it
    GET    /v1/stores/{store_id}/links  its direct pairs, as a scan of the index reports them
    GET    /healthz                     liveness (no token needed)
    GET    /openapi.json                this API as OpenAPI 3.1

Built on the standard library's ThreadingHTTPServer rather than FastAPI + uvicorn: the API is
six routes with one body schema, which the bundle reader already validates (so errors carry the
same messages as the CLI's); a thread per connection maps directly onto SQLite's rule of one
connection per thread; and it adds no dependency to a tool that reads personal data. Each
connection thread opens its own IndexStore; WAL mode lets readers run while a writer commits.

Every route but /healthz needs `Authorization: Bearer TOKEN` (compared in constant time). Bodies
above `max_body` bytes are refused with 413 before they are read. Errors are JSON:
{"error": {"status": ..., "message": ..., "problems": [...]}}. SIGTERM stops accepting
connections, lets requests in flight finish, then returns.

Speed (notes/check.md): before listening, the server reads into memory the index's listing tables and
the store, group and token maps that checks look up (assoc.check.prewarm: for 20,000 stores about 10 s,
and the process holds about 510 MB; again in a background thread once the index has been written and
left alone PREWARM_QUIET seconds), freezes what it has loaded out of the garbage collector's way, and
lets the collector run less often (YOUNG_GC_THRESHOLD). Responses leave in one segment with Nagle
off. Checks are Python: the GIL runs one at a time per process, so one process serves about one
core's worth (1 / CPU time per check); for more, run several `assoc serve` processes on other ports
of the same index (readers do not block each other in WAL mode) behind a local balancer.
"""

from __future__ import annotations

import gc
import hmac
import ipaddress
import json
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .check import CandidateError, candidate_from_record, check_store, links, prewarm, prewarmed, put_store, records_of
from .errors import AssocError, BundleError
from .scan import Scorer
from .settings import Settings
from .store import IndexStore, UnknownStoreError

# Young-generation threshold of the garbage collector while serving (Python's default: 700). A check makes
# thousands of short-lived containers: at 700 the collector ran about four times per check, 1.1-1.6 ms of a
# 20-30 ms check; at 10,000 it runs once per 25 checks, 0.15 ms a check, with the same peak memory (BENCHMARKS.md).
YOUNG_GC_THRESHOLD = 10_000
# A connection idle this long is closed, so a shutdown never waits on a keep-alive client.
IDLE_SECONDS = 5.0
# After a write, the listing tables are read into memory again once the index has been left alone this long
# (checks read the file meanwhile); the index's write count is looked at every PREWARM_POLL seconds.
PREWARM_QUIET = 10.0
PREWARM_POLL = 1.0
_STORE_PATH = re.compile(r"/v1/stores/([^/]+)(/links)?")


@dataclass(frozen=True)
class ServerConfig:
    db: Path
    settings: Settings
    token: str | None  # None: no authentication (loopback only, enforced by the CLI)
    max_body: int = 4 * 1024 * 1024
    scorer: Scorer | None = None  # a learned model (assoc serve --model); None: the rule table
    prewarm: bool = True  # hold the index's listing tables in memory for checks (assoc.check.prewarm)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.problems = problems or []


class AssocHTTPServer(ThreadingHTTPServer):
    """A thread per connection; threads are joined on close, so requests in flight finish."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], config: ServerConfig):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.config = config


class _Handler(BaseHTTPRequestHandler):
    server: AssocHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: an ERP client reuses its connection
    timeout = IDLE_SECONDS
    server_version = "assoc"
    # A response leaves in one send(): headers and body are buffered (handle_one_request flushes after each
    # request) and Nagle is off. Unbuffered, the body went as a second small segment that waited for the
    # client's delayed ACK: up to 40 ms per response on Linux loopback.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        self.index: IndexStore | None = None  # opened on first use, by and for this connection's thread
        self.body_read = False

    def finish(self) -> None:
        if self.index is not None:
            self.index.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Quiet: access logs of fingerprint lookups are personal data; errors still reach stderr."""

    def _store(self) -> IndexStore:
        if self.index is None:
            self.index = IndexStore.open(self.server.config.db)
        return self.index

    # ------------------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self.body_read = False
        try:
            if path == "/healthz" and method == "GET":
                self._send(HTTPStatus.OK, {"status": "ok"})
                return
            self._authorise()
            status, body = self._route(method, path)
            self._send(status, body)
        except _HttpError as exc:
            self._error(exc.status, str(exc), exc.problems)
        except UnknownStoreError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except BundleError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, "the store record is invalid", exc.problems)
        except CandidateError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except AssocError as exc:  # the index cannot be opened or read
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    def _error(self, status: HTTPStatus, message: str, problems: list[str] | None = None) -> None:
        if not self.body_read and self.headers.get("Content-Length", "0") not in ("", "0"):
            self.close_connection = True  # an unread body must not be taken for the next request
        self._send(status, {"error": {"status": status.value, "message": message, "problems": problems or []}})

    def _route(self, method: str, path: str) -> tuple[HTTPStatus, Any]:
        config = self.server.config
        if path == "/openapi.json" and method == "GET":
            return HTTPStatus.OK, openapi()
        if path == "/v1/check":
            self._allow(method, "POST")
            record = self._json_body()
            bundle = candidate_from_record(record, root=config.db.parent)
            result = check_store(self._store(), records_of(bundle)[0], config.settings, scorer=config.scorer)
            return HTTPStatus.OK, result.to_dict()
        match = _STORE_PATH.fullmatch(path)
        if match is None:
            raise _HttpError(HTTPStatus.NOT_FOUND, f"no route {path}; see /openapi.json")
        store_id = match.group(1)
        if match.group(2):
            self._allow(method, "GET")
            return HTTPStatus.OK, links(self._store(), store_id, config.settings, scorer=config.scorer).to_dict()
        self._allow(method, "PUT", "DELETE")
        if method == "DELETE":
            self._store().remove_store(store_id)
            return HTTPStatus.OK, {"store_id": store_id, "removed": True}
        record = self._json_body()
        if isinstance(record, dict):
            if str(record.setdefault("store_id", store_id)) != store_id:
                raise _HttpError(HTTPStatus.UNPROCESSABLE_ENTITY,
                                 f"store_id {record['store_id']!r} in the body differs from {store_id!r} in the path")
        bundle = candidate_from_record(record, root=config.db.parent)
        index = self._store()
        existed = index.has_store(store_id)
        changed = put_store(index, records_of(bundle)[0], config.settings)
        status = HTTPStatus.OK if existed else HTTPStatus.CREATED
        return status, {"store_id": store_id, "created": not existed, "changed": changed}

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed here; use {', '.join(allowed)}")

    def _authorise(self) -> None:
        token = self.server.config.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise _HttpError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token: send "
                                                      "'Authorization: Bearer TOKEN'")

    def _json_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "a body with Content-Length is required")
        try:
            length = int(length_text)
        except ValueError:
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"Content-Length {length_text!r} is not a number") from None
        if length > self.server.config.max_body:
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"body of {length} bytes; the limit is {self.server.config.max_body}")
        raw = self.rfile.read(length)
        self.body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"the body is not UTF-8 JSON: {exc}") from None

    def _send(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="assoc"')
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def serve(config: ServerConfig, host: str, port: int, *,
          ready: Callable[[tuple[str, int]], None] = lambda address: None) -> None:
    """Serve until SIGTERM or SIGINT; requests in flight finish before this returns."""
    server = AssocHTTPServer((host, port), config)
    stopping = threading.Event()
    if config.prewarm:  # before listening: the first check is as fast as the next ones
        with IndexStore.open(config.db) as index:
            prewarm(index)
        threading.Thread(target=_keep_warm, args=(config.db, stopping), daemon=True,
                         name="assoc-prewarm").start()
    # Everything loaded so far (modules, the scorer) lives as long as the process: leave it out of the
    # garbage collector's full passes, which otherwise walk it again and again (pauses of tens of ms).
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *threshold[1:])

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever to return, which runs in this very thread: ask from another.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ready(server.server_address[:2])
        server.serve_forever(poll_interval=0.2)
    finally:
        stopping.set()
        server.server_close()  # joins the connection threads
        gc.set_threshold(*threshold)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _keep_warm(db: Path, stopping: threading.Event) -> None:
    """Read the listing tables into memory again after writes, once the index has been left alone PREWARM_QUIET
    seconds (a steady stream of writes would otherwise keep this thread reloading)."""
    try:
        with IndexStore.open(db) as index:
            seen, since = index.writes(), time.monotonic()
            while not stopping.wait(PREWARM_POLL):
                writes = index.writes()
                if writes != seen:
                    seen, since = writes, time.monotonic()
                elif time.monotonic() - since >= PREWARM_QUIET and not prewarmed(index):
                    prewarm(index)
    except AssocError as exc:  # the index went away: checks report it; nothing to keep warm
        print(f"assoc serve: stopped keeping the index in memory: {exc}", file=sys.stderr)
    except sqlite3.Error as exc:
        print(f"assoc serve: stopped keeping the index in memory: {exc}", file=sys.stderr)


# ----------------------------------------------------------------------------------------- OpenAPI

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad JSON", 401: "Missing or wrong bearer token", 404: "Unknown store or route",
            411: "Content-Length missing", 413: "Body too large", 422: "Invalid store record"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API."""
    store_body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Store"}}}}
    store_id = {"name": "store_id", "in": "path", "required": True, "schema": {"type": "string"}}
    result = {"description": "Check result", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/CheckResult"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "assoc", "version": "1",
                 "description": "Pre-flight association checks against a persistent assoc index."},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": {"description": "Up"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"},
                                                                               **_errors(401)}}},
            "/v1/check": {"post": {
                "summary": "Check one store (new, or indexed with new rows) without writing it",
                "requestBody": store_body, "responses": {"200": result, **_errors(400, 401, 411, 413, 422)}}},
            "/v1/stores/{store_id}": {
                "put": {"summary": "Write a store, replacing its rows", "parameters": [store_id],
                        "requestBody": store_body,
                        "responses": {"200": {"description": "Replaced or unchanged"},
                                      "201": {"description": "Created"}, **_errors(400, 401, 411, 413, 422)}},
                "delete": {"summary": "Remove a store", "parameters": [store_id],
                           "responses": {"200": {"description": "Removed"}, **_errors(401, 404)}}},
            "/v1/stores/{store_id}/links": {"get": {
                "summary": "The store's direct pairs, as a scan of the index reports them",
                "parameters": [store_id], "responses": {"200": result, **_errors(401, 404)}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Store": {"type": "object", "required": ["store_id"],
                          "description": "One store as one line of stores.jsonl (BUNDLE_FORMAT.md).",
                          "properties": {
                              "store_id": {"type": "string"}, "name": {"type": "string"},
                              "platform": {"type": "string"}, "country": {"type": "string"},
                              "created_at": {"type": "string"},
                              "signals": {"type": "array", "items": {"type": "object", "required": ["kind", "value"],
                                          "properties": {"kind": {"type": "string"}, "value": {"type": "string"},
                                                         "seen_at": {"type": "string"}}}},
                              "products": {"type": "array", "items": {
                                  "type": "object", "required": ["product_id"],
                                  "properties": {"product_id": {"type": "string"}, "title": {"type": "string"},
                                                 "description": {"type": "string"}, "price": {"type": "number"},
                                                 "currency": {"type": "string"},
                                                 "images": {"type": "array", "items": {"type": "string"}}}}}}},
                "CheckResult": {"type": "object", "properties": {
                    "store_id": {"type": "string"}, "known": {"type": "boolean"},
                    "associated": {"type": "boolean"}, "listings": {"type": "integer"},
                    "catalog_fresh": {"type": "boolean"},
                    "pairs": {"type": "array", "items": {"type": "object", "properties": {
                        "store_id": {"type": "string"}, "score": {"type": "number"},
                        "operator_score": {"type": "number"}, "linked": {"type": "boolean"},
                        "catalog_overlap": {"type": ["number", "null"]},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                        "evidence": {"type": "array", "items": {"type": "object"}}}}},
                    "hubs": {"type": "array", "items": {"type": "object"}}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "message": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "string"}}}}}},
            },
        },
    }
