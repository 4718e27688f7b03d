"""Login logs -> ip, device_id and mac signals (and user_agent on request), with bounded sightings per value.

Sources: CSV or JSON Lines with a column mapping, and web-server logs in the "combined" (or
"common") format, where the authenticated user (%u) is the store. Gzip is read transparently.

What is kept. A store's logins repeat the same values thousands of times, and the scanner needs
only one thing from the repeats: how close in time two stores used one value (README, "Time":
within 6 hours, a day, a week). So for each (store, kind, value) the collector keeps the earliest
login in each hour it was used, plus the last login. Past `max_sightings` distinct hours the
hours are merged pairwise into 2-hour buckets (then 4, 8, ...), each keeping its earliest login:
the sightings still cover the whole period, evenly, and a time gap the scanner measures is off by
at most one bucket width. The result does not depend on line order. Memory grows with the number
of distinct (store, kind, value) keys, never with the number of lines.

User agents are off by default: the scanner weighs kinds it does not define at 6 bits, and one
browser build is shared by many unrelated sellers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from assoc.records import Progress, no_progress

from .base import CollectReport, Problems
from .bundleio import BundleRows, write_into
from .errors import CollectError
from .sources import STREAM_ERRORS, Field, check_encoding, first_line, has_bad_bytes, open_text, read_rows
from .timestamps import TimeParser, iso_utc, zone

FORMATS = ("auto", "csv", "jsonl", "combined")
DEFAULT_MAX_SIGHTINGS = 168  # a week of hourly sightings before buckets widen
_HOUR = 3600.0
_PROGRESS_EVERY = 100_000

# Apache/nginx "combined": host ident user [time] "request" status bytes "referer" "agent"; "common"
# stops after bytes. Anything after the agent (extra fields some setups add) is ignored.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
COMBINED = re.compile(rf'(\S+) (\S+) (\S+|"[^"]*") \[([^\]]+)\] {_QUOTED} (\d{{3}}|-) (\d+|-)'
                      rf'(?: {_QUOTED} {_QUOTED})?')
# Statuses of a request whose credentials were refused: %u then names who tried, not who logged in.
_REFUSED = frozenset({"401", "407"})
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?:[:.-]?[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}")
_IPV4_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_IPV6_PORT = re.compile(r"\[([0-9A-Fa-f:.%\w]+)\](?::\d{1,5})?")


@dataclass(frozen=True, slots=True)
class LoginColumns:
    """Which column (CSV) or key (JSON Lines; dotted for nested objects) holds each value.

    `explicit` names the fields the user set: those must exist; the others are taken if present.
    `ua` is None unless user agents are wanted.
    """

    store: str = "store_id"
    ip: str = "ip"
    time: str = "time"
    device: str = "device_id"
    mac: str = "mac"
    ua: str | None = None
    explicit: frozenset[str] = frozenset()

    def fields(self) -> dict[str, Field]:
        aliases = {"time": ("seen_at", "timestamp", "login_time"), "ip": ("ip_address", "client_ip"),
                   "store": ("store",)}
        fields = {"store": Field(self.store, required=True, explicit="store" in self.explicit,
                                 aliases=aliases["store"])}
        for name in ("ip", "time", "device", "mac"):
            fields[name] = Field(getattr(self, name), explicit=name in self.explicit, aliases=aliases.get(name, ()))
        if self.ua is not None:
            fields["ua"] = Field(self.ua, explicit=True)
        return fields


class _Sightings:
    """The sightings of one (store, kind, value): the earliest time per bucket, and the last time."""

    __slots__ = ("buckets", "level", "last", "untimed")

    def __init__(self) -> None:
        self.buckets: dict[int, float] = {}
        self.level = 0  # bucket width is 2**level hours
        self.last = float("-inf")
        self.untimed = False  # seen at least once without a time

    def add(self, seconds: float, cap: int) -> None:
        bucket = int(seconds // _HOUR) >> self.level
        earliest = self.buckets.get(bucket)
        if earliest is None:
            self.buckets[bucket] = seconds
            if len(self.buckets) > cap:
                self._widen(cap)
        elif seconds < earliest:
            self.buckets[bucket] = seconds
        if seconds > self.last:
            self.last = seconds

    def _widen(self, cap: int) -> None:
        while len(self.buckets) > cap:
            self.level += 1
            wider: dict[int, float] = {}
            for bucket, seconds in self.buckets.items():
                key = bucket >> 1
                if key not in wider or seconds < wider[key]:
                    wider[key] = seconds
            self.buckets = wider

    def times(self) -> list[float]:
        times = sorted(self.buckets.values())
        if times and self.last > times[-1]:
            times.append(self.last)
        return times


@dataclass(frozen=True)
class LoginsCollector:
    """Login records of many stores -> their network and device signals."""

    name: ClassVar[str] = "logins"
    summary: ClassVar[str] = "login logs (CSV, JSON Lines, combined web-server logs) -> ip, device_id, mac signals"

    files: tuple[Path, ...]
    fmt: str = "auto"
    columns: LoginColumns = field(default_factory=LoginColumns)
    timezone: str = "UTC"  # for timestamps without a zone
    time_format: str | None = None  # strptime pattern, when the timestamps are in no recognised format
    encoding: str = "utf-8-sig"
    max_sightings: int = DEFAULT_MAX_SIGHTINGS
    user_agents: bool = False  # from combined logs; in CSV/JSON Lines a `columns.ua` asks for them
    skip_invalid: bool = False

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport:
        """Read every file, then merge the signals into the bundle `out`.

        Raises InputError (writing nothing) if a row is bad, unless `skip_invalid`.
        """
        if self.fmt not in FORMATS:
            raise CollectError(f"unknown login format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        check_encoding(self.encoding)
        if self.max_sightings < 1:
            raise CollectError(f"max_sightings must be at least 1, not {self.max_sightings}")
        try:
            parser = TimeParser(default_zone=zone(self.timezone), fmt=self.time_format)
        except ValueError as exc:
            raise CollectError(str(exc)) from exc
        report = CollectReport(self.name, out)
        problems = Problems()
        table: dict[tuple[str, str, str], _Sightings] = {}
        counts = {"rows": 0, "rows_used": 0, "rows_skipped": 0}
        for path in self.files:
            fmt = self.fmt if self.fmt != "auto" else detect_format(path, self.encoding)
            rows = (_combined_rows(path, self.encoding, problems, self.user_agents) if fmt == "combined"
                    else read_rows(path, fmt, self.columns.fields(), problems, encoding=self.encoding))
            self._aggregate(path, rows, parser, table, counts, problems, progress)
        problems.check(self.skip_invalid)
        rows = BundleRows()
        for store_id, _, _ in table:
            rows.ensure_store(store_id, "login logs")
        distinct = len(table)
        # The signals stream from the table to the file: held once, as sightings, never also as rows.
        merged = write_into(out, rows, stream=_signal_rows(table))
        report.counts = {**counts, "values": distinct, "signals": merged.streamed, "stores": len(rows.stores),
                         "bundle_signals": len(merged.signals) + merged.streamed}
        report.take_problems(problems)
        return report

    def _aggregate(self, path: Path, rows: Iterator[tuple[int, dict[str, str]]], parser: TimeParser,
                   table: dict[tuple[str, str, str], _Sightings], counts: dict[str, int], problems: Problems,
                   progress: Progress) -> None:
        name = str(path)
        cap = self.max_sightings
        addresses: dict[str, str] = {}  # IP text -> address: validating each repeat again is most of the cost
        for line, row in rows:
            counts["rows"] += 1
            if line % _PROGRESS_EVERY == 0:
                progress(f"read {path.name}", line, None)
            store = row.get("store", "")
            if not store:  # combined-log lines without an authenticated user
                counts["rows_skipped"] += 1
                continue
            values = _values(row, name, line, problems, addresses)
            if values is None:
                continue
            if not values:
                counts["rows_skipped"] += 1
                continue
            seconds = None
            if row.get("time"):
                try:
                    seconds = parser.seconds(row["time"])
                except ValueError as exc:
                    problems.add(name, line, str(exc))
                    continue
            counts["rows_used"] += 1
            for kind, value in values:
                key = (store, kind, value)
                sightings = table.get(key)
                if sightings is None:
                    sightings = table[key] = _Sightings()
                if seconds is None:
                    sightings.untimed = True
                else:
                    sightings.add(seconds, cap)


def _signal_rows(table: dict[tuple[str, str, str], _Sightings]) -> Iterator[tuple[str, str, str, str]]:
    """(store_id, kind, value, seen_at) of every kept sighting, in key order; the table empties as it goes."""
    for key in sorted(table):
        store_id, kind, value = key
        sightings = table.pop(key)
        for seconds in sightings.times():
            yield store_id, kind, value, iso_utc(seconds)
        if sightings.untimed and not sightings.buckets:
            yield store_id, kind, value, ""


def _values(row: dict[str, str], file: str, line: int, problems: Problems,
            addresses: dict[str, str]) -> list[tuple[str, str]] | None:
    """The (kind, value) pairs of one row; None (reported) if one of them is malformed."""
    values = []
    ip = row.get("ip", "")
    if ip:
        address = addresses.get(ip) or _ip(ip)
        if address is None:
            problems.add(file, line, f"ip {ip!r} is not an IP address")
            return None
        addresses[ip] = address
        values.append(("ip", address))
    mac = row.get("mac", "")
    if mac:
        if not _MAC.fullmatch(mac):
            problems.add(file, line, f"mac {mac!r} is not a MAC address (six hex pairs, e.g. 3c:22:fb:1a:2b:3c)")
            return None
        values.append(("mac", mac))
    if row.get("device"):
        values.append(("device_id", row["device"]))
    if row.get("ua"):
        values.append(("user_agent", row["ua"]))
    return values


def _ip(text: str) -> str | None:
    """The address of `text` as written, without a port ('1.2.3.4:80', '[::1]:80'); None if not an address."""
    match = _IPV4_PORT.fullmatch(text) or _IPV6_PORT.fullmatch(text)
    address = match.group(1) if match else text
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return address


def detect_format(path: Path, encoding: str = "utf-8-sig") -> str:
    """csv, jsonl or combined, from the file name (ignoring .gz) and else from its first line."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".gzip")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    line = first_line(path, encoding)
    if line.startswith("{"):
        return "jsonl"
    if COMBINED.match(line):
        return "combined"
    return "csv"


def _combined_rows(path: Path, encoding: str, problems: Problems,
                   user_agents: bool) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {store, ip, time[, ua]}) of each request line; store '' where no user authenticated."""
    name = str(path)
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                match = COMBINED.match(line)
                if match is None:
                    if line.strip():
                        problems.add(name, number, "not a combined/common log line "
                                                   "(host ident user [time] \"request\" status bytes ...)")
                    continue
                host, _, user, when, _, status, _, _, agent = match.groups()
                user = user.strip('"')
                if user == "-" or not user or status in _REFUSED:
                    yield number, {"store": ""}
                    continue
                if not line.isascii() and (has_bad_bytes(user) or has_bad_bytes(host)):
                    problems.add(name, number, "bad encoding in the user or host; pass --encoding")
                    continue
                row = {"store": user, "ip": host, "time": when}
                if user_agents and agent and agent != "-":
                    row["ua"] = agent.replace('\\"', '"')
                yield number, row
    except FileNotFoundError:
        problems.file(name, "not found")
    except STREAM_ERRORS as exc:
        problems.file(name, f"cannot read: {exc}; if it is gzip, the file may be truncated")
