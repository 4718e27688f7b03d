"""This-machine collector, on a fake /sys and /proc tree (and once on the real machine)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc import read_bundle
from fingerprints import CollectError, LocalCollector, MachineSources
from fingerprints.cli import collect
from fingerprints.local import read_machine

ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "enp3s0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
         "enp3s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
ARP = ("IP address       HW type     Flags       HW address            Mask     Device\n"
       "192.168.1.7      0x1         0x0         00:00:00:00:00:00     *        enp3s0\n"
       "192.168.1.1      0x1         0x2         a4:2b:b0:11:22:33     *        enp3s0\n")
IF_INET6 = ("00000000000000000000000000000001 01 80 10 80       lo\n"
            "fe800000000000003e22fbfffe1a2b3c 02 40 20 80   enp3s0\n"
            "20010db8000000000000000000000042 02 40 00 00   enp3s0\n"
            "fd000000000000000000000000000002 05 40 00 80  docker0\n")


def _machine(tmp_path: Path, *, arp: str = ARP) -> MachineSources:
    net = tmp_path / "sys" / "class" / "net"
    for name, mac, kind, physical in (("enp3s0", "3c:22:fb:1a:2b:3c", "1", True),
                                      ("wlp2s0", "5c:e0:c5:00:11:22", "1", True),
                                      ("docker0", "02:42:ac:11:00:01", "1", False),
                                      ("lo", "00:00:00:00:00:00", "772", False)):
        entry = net / name
        entry.mkdir(parents=True)
        (entry / "address").write_text(mac + "\n")
        (entry / "type").write_text(kind + "\n")
        if physical:
            (entry / "device").mkdir()
    proc = tmp_path / "proc" / "net"
    proc.mkdir(parents=True)
    (proc / "route").write_text(ROUTE)
    (proc / "arp").write_text(arp)
    (proc / "if_inet6").write_text(IF_INET6)
    (tmp_path / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    addresses = {"enp3s0": "192.168.1.7", "wlp2s0": None, "docker0": "172.17.0.1"}
    return MachineSources(sys_class_net=net, proc_net=proc, machine_id_files=(tmp_path / "machine-id",),
                          ipv4_of_interface=addresses.get)


def test_reads_physical_macs_router_addresses_and_salted_id(tmp_path):
    out = tmp_path / "bundle"
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    report = LocalCollector(store_id="S1", salt="pepper", sources=_machine(tmp_path), now=now).collect(out)
    signals = {(s.kind, s.value) for s in read_bundle(out).signals}
    expected_id = hmac.new(b"pepper", b"0123456789abcdef0123456789abcdef", hashlib.sha256).hexdigest()
    assert signals == {
        ("mac", "3c:22:fb:1a:2b:3c"), ("mac", "5c:e0:c5:00:11:22"),  # physical NICs; docker0 and lo skipped
        ("mac", "a4:2b:b0:11:22:33"),  # the router, from the complete ARP entry of the default gateway
        ("ip", "192.168.1.7"), ("ip", "2001:db8::42"),  # link-local and docker0 addresses left out
        ("device_id", expected_id),
    }
    assert all(s.seen_at == now for s in read_bundle(out).signals)
    assert "0123456789abcdef" not in (out / "signals.csv").read_text()  # the raw id never leaves the machine
    assert report.notes == []


def test_says_what_it_could_not_read(tmp_path):
    sources = _machine(tmp_path, arp=ARP.splitlines()[0] + "\n")
    report = LocalCollector(store_id="S1", salt="x", sources=sources).collect(tmp_path / "bundle")
    assert report.notes == ["could not read router MAC: gateway 192.168.1.1 is not in the ARP table (no recent "
                            "traffic to it); reach the network once (e.g. ping it) and run again"]


def test_salt_is_required_and_taken_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSOC_SALT", raising=False)
    sources = _machine(tmp_path)
    with pytest.raises(CollectError, match="no salt for the machine id: pass --salt or set ASSOC_SALT"):
        LocalCollector(store_id="S1", sources=sources).collect(tmp_path / "bundle")
    with pytest.raises(CollectError, match="no salt"):
        LocalCollector(store_id="S1", salt="", sources=sources).collect(tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    monkeypatch.setenv("ASSOC_SALT", "pepper")
    LocalCollector(store_id="S1", sources=sources).collect(tmp_path / "bundle")
    expected_id = hmac.new(b"pepper", b"0123456789abcdef0123456789abcdef", hashlib.sha256).hexdigest()
    assert expected_id in (tmp_path / "bundle" / "signals.csv").read_text()


def test_this_machine_without_root(tmp_path, monkeypatch):
    facts = read_machine()
    assert isinstance(facts.macs, dict) and isinstance(facts.unread, list)
    monkeypatch.setenv("ASSOC_SALT", "pepper")
    result = CliRunner().invoke(collect, ["local", "--store-id", "S1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "local -> " in result.output
    monkeypatch.delenv("ASSOC_SALT")
    result = CliRunner().invoke(collect, ["local", "--store-id", "S1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "no salt" in result.output
