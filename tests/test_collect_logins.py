"""Login-log collector: real formats (CSV, JSON Lines, combined logs, gzip), timestamps, bounded sightings, merging."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assoc import Settings, read_bundle, scan
from fingerprints import CollectError, InputError, LoginColumns, LoginsCollector, make_collector
from fingerprints.timestamps import TimeParser, iso_utc, zone

COMBINED_LOG = (
    '203.0.113.7 - shop-a [10/Oct/2024:13:55:36 -0700] "GET /admin HTTP/1.1" 200 2326 "https://x.example/" '
    '"Mozilla/5.0 (X11; Linux x86_64)"\n'
    '203.0.113.7 - shop-a [10/Oct/2024:13:59:01 -0700] "POST /admin/save HTTP/1.1" 302 0 "-" "Mozilla/5.0"\n'
    '198.51.100.20 - - [10/Oct/2024:14:00:00 -0700] "GET / HTTP/1.1" 200 512 "-" "curl/8.0"\n'
    '198.51.100.21 - shop-c [10/Oct/2024:14:00:00 -0700] "POST /login HTTP/1.1" 401 0 "-" "curl/8.0"\n'
    'this is not a log line\n'
    '2001:db8::7 - shop-b [11/Oct/2024:02:00:00 +0000] "GET /admin HTTP/2.0" 200 99\n'
)


def _signals(bundle: Path) -> list[dict[str, str]]:
    with open(bundle / "signals.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _collect(tmp_path: Path, *files: Path, **options) -> tuple[Path, object]:
    out = tmp_path / "bundle"
    report = LoginsCollector(files=files, **options).collect(out)
    return out, report


def test_combined_log_gzip_user_is_store_and_bad_line_is_reported(tmp_path):
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress(COMBINED_LOG.encode()))
    with pytest.raises(InputError) as caught:
        _collect(tmp_path, log)
    assert f"{log} line 5: not a combined/common log line" in str(caught.value)
    assert not (tmp_path / "bundle" / "signals.csv").exists()  # a bad line stops the write by default

    out, report = _collect(tmp_path, log, skip_invalid=True)
    rows = _signals(out)
    assert {(r["store_id"], r["kind"], r["value"], r["seen_at"]) for r in rows} == {
        ("shop-a", "ip", "203.0.113.7", "2024-10-10T20:55:36Z"),
        ("shop-a", "ip", "203.0.113.7", "2024-10-10T20:59:01Z"),  # the last sighting, same hour
        ("shop-b", "ip", "2001:db8::7", "2024-10-11T02:00:00Z"),
    }
    assert report.problem_count == 1 and report.counts["rows_skipped"] == 2  # anonymous and refused (401)
    bundle = read_bundle(out)
    assert set(bundle.stores) == {"shop-a", "shop-b"}


def test_csv_with_column_mapping_zones_and_formats(tmp_path):
    source = tmp_path / "logins.csv"
    source.write_text(
        "Shop,Client IP,When,Machine,NIC\n"
        "s1,203.0.113.5:51234,2024-05-01 10:00:00+08:00,dev-1,3C-22-FB-1A-2B-3C\n"
        "s1,203.0.113.5,2024/05/01 03:30:00,dev-1,\n"
        "s2,[2001:db8::5]:443,1714557600,,\n"
        "s2,198.51.100.9,\"Wed, 01 May 2024 12:00:00 +0200\",dev-9,\n"
        "s3,198.51.100.10,2024-05-01 10:00:00 Asia/Shanghai,,\n", encoding="utf-8")
    columns = LoginColumns(store="Shop", ip="Client IP", time="When", device="Machine", mac="NIC",
                           explicit=frozenset({"store", "ip", "time", "device", "mac"}))
    out, _ = _collect(tmp_path, source, columns=columns, timezone="Asia/Shanghai")
    got = {(r["store_id"], r["kind"], r["value"], r["seen_at"]) for r in _signals(out)}
    assert ("s1", "ip", "203.0.113.5", "2024-05-01T02:00:00Z") in got
    assert ("s1", "ip", "203.0.113.5", "2024-04-30T19:30:00Z") in got  # naive time in --timezone
    assert ("s1", "mac", "3C-22-FB-1A-2B-3C", "2024-05-01T02:00:00Z") in got  # raw value, not normalised
    assert ("s2", "ip", "2001:db8::5", "2024-05-01T10:00:00Z") in got  # epoch seconds, port removed
    assert ("s2", "device_id", "dev-9", "2024-05-01T10:00:00Z") in got
    assert ("s3", "ip", "198.51.100.10", "2024-05-01T02:00:00Z") in got


def test_jsonl_nested_keys_and_bad_rows_have_line_numbers(tmp_path):
    lines = [
        {"account": {"id": "j1"}, "net": {"ip": "203.0.113.1"}, "ts": "2024-05-01T00:00:00Z", "device": "d-1"},
        {"account": {"id": "j1"}, "net": {"ip": "not-an-ip"}, "ts": "2024-05-01T00:00:00Z"},
        {"account": {"id": "j2"}, "net": {"ip": "203.0.113.2"}, "ts": "05/01/2024 10:00"},
        "[1, 2]",
        {"account": {"id": ""}, "net": {"ip": "203.0.113.3"}},
        {"account": {"id": "j3"}, "mac": "00:11:22:33:44"},
    ]
    source = tmp_path / "logins.jsonl"
    source.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    columns = LoginColumns(store="account.id", ip="net.ip", time="ts", device="device",
                           explicit=frozenset({"store", "ip", "time", "device"}))
    with pytest.raises(InputError) as caught:
        _collect(tmp_path, source, columns=columns)
    problems = caught.value.problems
    assert problems[0] == f"{source} line 2: ip 'not-an-ip' is not an IP address"
    assert problems[1].startswith(f"{source} line 3: timestamp '05/01/2024 10:00' is ambiguous")
    assert problems[2] == f"{source} line 4: malformed row: each line must be a JSON object"
    assert problems[3] == f"{source} line 5: empty 'account.id'; every row needs it"
    assert problems[4].startswith(f"{source} line 6: mac '00:11:22:33:44' is not a MAC address")


def test_named_column_missing_is_a_file_problem(tmp_path):
    source = tmp_path / "logins.csv"
    source.write_text("store_id,ip\ns1,203.0.113.1\n")
    with pytest.raises(InputError) as caught:
        _collect(tmp_path, source, columns=LoginColumns(device="Machine", explicit=frozenset({"device"})),
                 skip_invalid=True)
    assert "line 1: no column 'Machine'; the header is store_id,ip" in str(caught.value)
    assert "--skip-invalid" not in str(caught.value)  # skipping cannot help a file without the column


def test_sightings_are_bounded_and_cover_the_whole_period(tmp_path):
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    # One store logs in every 20 minutes for 30 days from one IP: 2160 logins, 720 distinct hours.
    lines = ["store_id,ip,time"] + [f"s1,203.0.113.1,{int(start + i * 1200)}" for i in range(2160)]
    lines.append("s2,203.0.113.1,")  # a login without a time
    source = tmp_path / "logins.csv"
    source.write_text("\n".join(lines) + "\n")
    out, report = _collect(tmp_path, source, max_sightings=50)
    times = sorted(r["seen_at"] for r in _signals(out) if r["store_id"] == "s1")
    assert len(times) <= 51  # the cap, plus the last login
    assert times[0] == iso_utc(start) and times[-1] == iso_utc(start + 2159 * 1200)
    # Evenly spread: no gap between kept sightings wider than the final bucket width (16 hours here).
    seconds = [datetime.fromisoformat(t).timestamp() for t in times]
    assert max(b - a for a, b in zip(seconds, seconds[1:], strict=False)) <= 16 * 3600
    assert [r["seen_at"] for r in _signals(out) if r["store_id"] == "s2"] == [""]
    assert report.counts["rows_used"] == 2161

    # Line order does not matter.
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    out2 = tmp_path / "bundle2"
    LoginsCollector(files=(shuffled,), max_sightings=50).collect(out2)
    assert sorted(r["seen_at"] for r in _signals(out2) if r["store_id"] == "s1") == times


def test_collecting_twice_merges_and_keeps_existing_rows(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stores.csv").write_text("store_id,name,country\r\ns1,First Shop,CN\r\ns9,Other,US\r\n")
    (out / "signals.csv").write_text("store_id,kind,value,seen_at\r\ns9,email,a@example.com,\r\n")
    source = tmp_path / "logins.csv"
    source.write_text("store_id,ip,time\ns1,203.0.113.1,2024-05-01T00:00:00Z\n")
    LoginsCollector(files=(source,)).collect(out)
    first = (out / "signals.csv").read_bytes()
    report = make_collector("logins", files=(source,)).collect(out)
    assert (out / "signals.csv").read_bytes() == first  # identical rows are kept once
    assert report.counts["bundle_signals"] == 2
    stores = list(csv.DictReader(open(out / "stores.csv", newline="", encoding="utf-8")))
    assert [(s["store_id"], s["name"], s["country"]) for s in stores] == [("s1", "First Shop", "CN"),
                                                                          ("s9", "Other", "US")]
    assert first.startswith(b"store_id,kind,value,seen_at\r\n")  # RFC 4180 line ends
    assert not list(out.glob(".*.tmp"))


def test_values_with_a_lone_cr_are_quoted(tmp_path):
    source = tmp_path / "logins.jsonl"
    source.write_text(json.dumps({"store_id": "s1", "device_id": "dev\rX", "time": "2024-05-01T00:00:00Z"}) + "\n")
    out, _ = _collect(tmp_path, source)
    assert b'"dev\rX"' in (out / "signals.csv").read_bytes()
    assert [s.value for s in read_bundle(out).signals] == ["dev\rX"]


def test_collected_logins_scan_and_link_a_shared_session(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '203.0.113.50 - alpha [01/May/2024:10:00:00 +0000] "GET /admin HTTP/1.1" 200 1\n'
        '203.0.113.50 - beta [01/May/2024:11:00:00 +0000] "GET /admin HTTP/1.1" 200 1\n'
        '198.51.100.77 - gamma [01/May/2024:11:00:00 +0000] "GET /admin HTTP/1.1" 200 1\n')
    source = tmp_path / "devices.csv"
    source.write_text("store_id,device_id,time\nalpha,PC-1,2024-05-01T10:00:00Z\nbeta,PC-1,2024-05-01T12:00:00Z\n")
    out = tmp_path / "bundle"
    LoginsCollector(files=(log, source)).collect(out)
    result = scan(read_bundle(out), Settings(cache_dir=None))
    linked = {(p.store_a, p.store_b) for p in result.pairs if p.linked}
    assert linked == {("alpha", "beta")}


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
    ("2024-05-01 10:00:00.123456-05:00", "2024-05-01T15:00:00Z"),
    ("20240501T100000+0100", "2024-05-01T09:00:00Z"),
    ("10/Oct/2024:13:55:36 -0700", "2024-10-10T20:55:36Z"),
    ("1714557600000", "2024-05-01T10:00:00Z"),
    ("Wed, 01 May 2024 10:00:00 GMT", "2024-05-01T10:00:00Z"),
    ("May 1, 2024 10:00:00", "2024-05-01T02:00:00Z"),  # naive: the default zone (Shanghai)
    ("2024-05-01 10:00:00 UTC", "2024-05-01T10:00:00Z"),
    ("2024-05-01 10:00:00 Europe/Berlin", "2024-05-01T08:00:00Z"),
    ("2024-05-01 10:00:00 +0800", "2024-05-01T02:00:00Z"),
])
def test_timestamp_formats(text, expected):
    assert iso_utc(TimeParser(default_zone=zone("Asia/Shanghai")).seconds(text)) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("01/05/2024 10:00", "ambiguous"),
    ("2024-05-01 10:00 CST", "abbreviation 'CST' is ambiguous"),
    ("yesterday", "not in a recognised format"),
])
def test_timestamps_refused_with_the_fix(text, message):
    with pytest.raises(ValueError, match=message):
        TimeParser().seconds(text)


def test_time_format_option():
    assert iso_utc(TimeParser(fmt="%d.%m.%Y %H:%M").seconds("01.05.2024 10:00")) == "2024-05-01T10:00:00Z"


def test_encoding_option_and_undecodable_rows(tmp_path):
    source = tmp_path / "logins.csv"
    source.write_bytes("store_id,ip\n店铺A,203.0.113.1\n".encode("gb18030"))
    with pytest.raises(InputError, match=r"line 2: bad encoding in 'store_id'.*pass --encoding"):
        _collect(tmp_path, source)
    out, _ = _collect(tmp_path, source, encoding="gb18030")
    assert [s.store_id for s in read_bundle(out).signals] == ["店铺A"]
    with pytest.raises(CollectError, match="unknown encoding 'latin-9x'"):
        _collect(tmp_path, source, encoding="latin-9x")
