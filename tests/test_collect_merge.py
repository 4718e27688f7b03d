"""Merging bundles, atomic and locked writes, the collector registry, and the `assoc collect` command wiring."""

from __future__ import annotations

import csv
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from assoc import OutputError, Settings, read_bundle, scan
from assoc.cli import main
from fingerprints import (
    COLLECTORS,
    ConflictError,
    LoginsCollector,
    MergeCollector,
    UnknownCollectorError,
    bundleio,
    make_collector,
    registry,
)
from fingerprints.cli import collect


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _picture(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


def test_merge_deduplicates_fills_in_and_copies_pictures(tmp_path):
    a = _write(tmp_path / "a", {
        "stores.csv": "store_id,name,country\nS1,Shop One,\nS2,,US\n",
        "signals.csv": "store_id,kind,value,seen_at\nS1,phone,+86 138 0013 8000,2024-05-01T10:00:00Z\n"
                       "S2,phone,+86 138 0013 8000,\n",
        "products.csv": "store_id,product_id,title,images\nS1,p1,Lamp,images/lamp.png\n",
    })
    _picture(a / "images" / "lamp.png", (255, 0, 0))
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    record = {"store_id": "S1", "country": "cn", "signals": [
        {"kind": "phone", "value": "+86 138 0013 8000", "seen_at": "2024-05-01T18:00:00+08:00"},  # same instant
        {"kind": "email", "value": "owner@example.com"}],
        "products": [{"product_id": "p2", "title": "Mug", "images": ["images/lamp.png"]}]}
    (b_dir / "stores.jsonl").write_text(json.dumps(record) + "\n" + json.dumps({"store_id": "S3"}) + "\n")
    _picture(b_dir / "images" / "lamp.png", (0, 0, 255))  # same path, other picture

    out = tmp_path / "merged"
    report = MergeCollector(bundles=(a, b_dir)).collect(out)
    stores = {r["store_id"]: r for r in _rows(out / "stores.csv")}
    assert set(stores) == {"S1", "S2", "S3"}
    assert (stores["S1"]["name"], stores["S1"]["country"]) == ("Shop One", "cn")  # filled in from b
    signals = _rows(out / "signals.csv")
    assert len(signals) == 3  # the phone seen at one instant, written two ways, is one row
    products = {r["product_id"]: r for r in _rows(out / "products.csv")}
    assert products["p1"]["images"] == "images/lamp.png"
    assert products["p2"]["images"].startswith("images/merged/")  # the other picture, moved aside
    assert (out / products["p2"]["images"]).read_bytes() == (b_dir / "images" / "lamp.png").read_bytes()
    assert report.counts["pictures_copied"] == 2
    scan(read_bundle(out), Settings(cache_dir=None))

    # Merging again changes nothing.
    before = {name: (out / name).read_bytes() for name in ("stores.csv", "signals.csv", "products.csv")}
    MergeCollector(bundles=(a, b_dir)).collect(out)
    assert {name: (out / name).read_bytes() for name in before} == before


def test_disagreeing_store_metadata_stops_with_files_and_lines(tmp_path):
    a = _write(tmp_path / "a", {"stores.csv": "store_id,name,platform\nS0,Zero,\nS1,Shop One,amazon\n"})
    b = _write(tmp_path / "b", {"stores.csv": "store_id,name,platform\nS1,Shop 1,amazon\n"})
    out = tmp_path / "merged"
    with pytest.raises(ConflictError) as caught:
        MergeCollector(bundles=(a, b)).collect(out)
    assert caught.value.conflicts == [f"store 'S1': name 'Shop One' ({a}/stores.csv line 3) vs 'Shop 1' "
                                      f"({b}/stores.csv line 2)"]
    assert not (out / "stores.csv").exists()

    result = CliRunner().invoke(collect, ["merge", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 2
    assert "1 conflict(s) between the bundles" in result.output and f"{b}/stores.csv line 2" in result.output


def test_registry_lists_known_collectors_for_an_unknown_name():
    assert sorted(COLLECTORS) == ["images", "local", "logins", "merge", "products"]
    with pytest.raises(UnknownCollectorError, match="unknown collector 'ftp'; the known collectors are "
                                                    "images, local, logins, merge, products"):
        make_collector("ftp")


def test_cli_wiring_logins_and_products(tmp_path):
    log = tmp_path / "access.log"
    log.write_text('203.0.113.5 - s1 [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5\nnonsense\n')
    out = tmp_path / "bundle"
    result = CliRunner().invoke(collect, ["logins", str(log), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{log} line 2: not a combined/common log line" in result.output and "--skip-invalid" in result.output
    result = CliRunner().invoke(collect, ["logins", str(log), "--out", str(out), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "skipped (bad rows): 1" in result.output
    assert [s.value for s in read_bundle(out).signals] == ["203.0.113.5"]

    source = tmp_path / "p.csv"
    source.write_text("Item,Name,Cost\nx1,Lamp,9.5\n")
    result = CliRunner().invoke(collect, ["products", str(source), "--store-id", "s1", "--out", str(out),
                                          "--id-col", "Item", "--title-col", "Name", "--price-col", "Cost"])
    assert result.exit_code == 0, result.output
    assert [(p.product_id, p.title, p.price) for p in read_bundle(out).products] == [("x1", "Lamp", 9.5)]
    result = CliRunner().invoke(collect, ["products", str(source), "--store-id", "s1", "--out", str(out),
                                          "--id-col", "Nope"])
    assert result.exit_code == 2 and "no column 'Nope'" in result.output
    result = CliRunner().invoke(main, ["scan", str(out), "--out", str(tmp_path / "scan"), "--no-cache"])
    assert result.exit_code == 0, result.output


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    log = tmp_path / "logins.csv"
    log.write_text("store_id,ip\ns1,203.0.113.1\n")
    out = tmp_path / "bundle"
    LoginsCollector(files=(log,)).collect(out)
    before = (out / "signals.csv").read_bytes()

    def full_disk(handle, columns, rows):
        handle.write("store_id,kind,va")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundleio, "_csv_to", full_disk)
    log.write_text("store_id,ip\ns1,203.0.113.2\n")
    with pytest.raises(OutputError, match="No space left on device"):
        LoginsCollector(files=(log,)).collect(out)
    assert (out / "signals.csv").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["signals.csv", "stores.csv"]  # no temporary file left


def test_collectors_writing_one_bundle_at_once_lose_nothing(tmp_path):
    out = tmp_path / "bundle"
    files = []
    for i in range(6):
        files.append(tmp_path / f"logins{i}.csv")
        files[-1].write_text("store_id,ip\n" + "".join(f"s{i},203.0.{i}.{k}\n" for k in range(1, 50)))
    threads = [threading.Thread(target=LoginsCollector(files=(f,)).collect, args=(out,)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_bundle(out).signals) == 6 * 49 and len(read_bundle(out).stores) == 6


def test_unwritable_output_exits_3(tmp_path):
    log = tmp_path / "logins.csv"
    log.write_text("store_id,ip\ns1,203.0.113.1\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(collect, ["logins", str(log), "--out", str(blocker / "bundle")])
    assert result.exit_code == 3 and "cannot create the bundle directory" in result.output


def test_collect_is_a_command_of_assoc():
    result = CliRunner().invoke(main, ["collect", "--help"])
    assert result.exit_code == 0
    for name in ("logins", "products", "images", "local", "merge"):
        assert name in result.output


def test_unknown_collector_is_a_usage_error_naming_every_collector(monkeypatch):
    result = CliRunner().invoke(main, ["collect", "ftp", "--out", "x"])
    assert result.exit_code == 2
    assert "Usage: " in result.output
    assert ("unknown collector 'ftp'; the known collectors are images, local, logins, merge, products"
            in result.output)
    # The list comes from the registry: a collector registered there is named too.
    monkeypatch.setattr(registry, "COLLECTORS", {**registry.COLLECTORS, "ftp-logs": LoginsCollector})
    result = CliRunner().invoke(collect, ["ftp"])
    assert result.exit_code == 2
    assert "the known collectors are ftp-logs, images, local, logins, merge, products" in result.output
    assert CliRunner().invoke(collect, ["--nope"]).exit_code == 2  # an unknown option stays click's error


def test_json_report_on_stdout(tmp_path):
    log = tmp_path / "access.log"
    log.write_text('203.0.113.5 - s1 [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5\nnonsense\n')
    out = tmp_path / "bundle"
    result = CliRunner().invoke(collect, ["logins", str(log), "--out", str(out), "--skip-invalid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert report["collector"] == "logins" and report["out"] == str(out)
    assert report["counts"]["rows_used"] == 1 and report["counts"]["signals"] == 1
    assert report["problem_count"] == 1
    [problem] = report["problems"]
    assert problem["file"] == str(log) and problem["line"] == 2
    assert problem["message"].startswith("not a combined/common log line")
    assert report["notes"] == []

    other = _write(tmp_path / "other", {"stores.csv": "store_id\ns2\n"})
    result = CliRunner().invoke(collect, ["merge", str(other), "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["bundle_stores"] == 2
    result = CliRunner().invoke(collect, ["merge", str(tmp_path / "nowhere"), "--out", str(out), "--json"])
    assert result.exit_code == 2 and result.stdout == ""  # errors go to stderr


def test_every_collect_command_has_json():
    assert set(collect.commands) == set(COLLECTORS)
    for command in collect.commands.values():
        assert "--json" in [o for p in command.params for o in p.opts], command.name


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_umask_mode(tmp_path, umask):
    log = tmp_path / "logins.csv"
    log.write_text("store_id,ip\ns1,203.0.113.1\n")
    out = tmp_path / "bundle"
    old = os.umask(umask)
    try:
        LoginsCollector(files=(log,)).collect(out)
        log.write_text("store_id,ip\ns1,203.0.113.2\n")
        LoginsCollector(files=(log,)).collect(out)  # rewriting keeps the mode
    finally:
        os.umask(old)
    for name in ("stores.csv", "signals.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in out.iterdir()) == ["signals.csv", "stores.csv"]
