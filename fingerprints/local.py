"""This machine -> signals of the store it serves: NIC MACs, the router's MAC, local IPs, a salted machine id.

For ERP operators who record which machine serves which store. Everything is read without
root. On Linux: MACs of physical interfaces (/sys/class/net/*/device exists; virtual ones such as
bridges, veths and tunnels are skipped, as they repeat across unrelated machines), their IPv4
(SIOCGIFADDR) and IPv6 addresses (/proc/net/if_inet6, link-local left out), the default
gateway from /proc/net/route and its MAC from the ARP table (/proc/net/arp), and /etc/machine-id.
Elsewhere it reads what the standard library allows (uuid.getnode, the address of the default
route, the Windows MachineGuid or macOS IOPlatformUUID) and says in the report what it could not.

The machine id is never written as is: it is HMAC-SHA256 keyed with a salt, so bundles can be
compared (one salt across an organisation gives one id per machine) without exposing the id.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from assoc.records import Progress, no_progress

from .base import CollectReport
from .bundleio import BundleRows, write_into
from .errors import CollectError

SALT_ENV = "ASSOC_SALT"
_ARPHRD_LOOPBACK = "772"
_RTF_GATEWAY = 0x2
_ATF_COMPLETE = 0x2
_SIOCGIFADDR = 0x8915
_IPV6_SCOPE_LINK = 0x20


def _ipv4_of_interface(name: str) -> str | None:
    """The IPv4 address of interface `name` (Linux ioctl, no root needed); None if it has none."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


@dataclass(frozen=True)
class MachineSources:
    """Where the OS exposes the facts; tests point these at a fake tree."""

    sys_class_net: Path = Path("/sys/class/net")
    proc_net: Path = Path("/proc/net")
    machine_id_files: tuple[Path, ...] = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
    ipv4_of_interface: Callable[[str], str | None] = _ipv4_of_interface


@dataclass
class MachineFacts:
    """What was read from this machine, and what could not be read (with why)."""

    macs: dict[str, str] = field(default_factory=dict)  # interface -> MAC
    gateway_mac: str | None = None
    addresses: list[str] = field(default_factory=list)
    machine_id: str | None = None
    unread: list[str] = field(default_factory=list)


def read_machine(sources: MachineSources = MachineSources()) -> MachineFacts:
    """Read this machine's identifiers; the Linux sources when they exist, the portable fallbacks otherwise."""
    facts = MachineFacts()
    if sources.sys_class_net.is_dir():
        _linux_interfaces(sources, facts)
    else:
        _portable_interfaces(facts)
    if (sources.proc_net / "route").exists():
        _linux_gateway(sources, facts)
    else:
        facts.unread.append(f"router MAC: not readable on {sys.platform} without root (no /proc/net/route)")
    facts.machine_id = _machine_id(sources, facts)
    return facts


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _linux_interfaces(sources: MachineSources, facts: MachineFacts) -> None:
    physical = []
    for entry in sorted(sources.sys_class_net.iterdir()):
        if _read(entry / "type") == _ARPHRD_LOOPBACK or not (entry / "device").exists():
            continue  # loopback and virtual interfaces (bridges, veth, tun, docker0) are no machine's own
        mac = _read(entry / "address")
        if not mac or mac.strip("0:") == "":
            facts.unread.append(f"MAC of {entry.name}: none reported")
            continue
        facts.macs[entry.name] = mac
        physical.append(entry.name)
    if not physical:
        facts.unread.append("MACs: no physical network interface found (virtual ones are skipped)")
    for name in physical:
        address = sources.ipv4_of_interface(name)
        if address:
            facts.addresses.append(address)
    inet6 = _read(sources.proc_net / "if_inet6")
    if inet6 is None:
        facts.unread.append("IPv6 addresses: /proc/net/if_inet6 not readable")
        return
    for line in inet6.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[5] in physical and int(parts[3], 16) != _IPV6_SCOPE_LINK:
            facts.addresses.append(str(ipaddress.IPv6Address(bytes.fromhex(parts[0]))))


def _portable_interfaces(facts: MachineFacts) -> None:
    node = uuid.getnode()
    # getnode() falls back to a random number with the multicast bit set when it finds no MAC.
    if node >> 40 & 1:
        facts.unread.append(f"MACs: not readable on {sys.platform}")
    else:
        facts.macs["primary"] = ":".join(f"{node:012x}"[i:i + 2] for i in range(0, 12, 2))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # UDP connect sends nothing: it only picks the route's source address
            facts.addresses.append(sock.getsockname()[0])
    except OSError as exc:
        facts.unread.append(f"IP addresses: no default route ({exc.strerror or exc})")


def _linux_gateway(sources: MachineSources, facts: MachineFacts) -> None:
    gateway = None
    for line in (_read(sources.proc_net / "route") or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "00000000" and int(parts[3], 16) & _RTF_GATEWAY:
            gateway = socket.inet_ntoa(struct.pack("<I", int(parts[2], 16)))
            break
    if gateway is None:
        facts.unread.append("router MAC: no IPv4 default gateway in /proc/net/route")
        return
    for line in (_read(sources.proc_net / "arp") or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == gateway and int(parts[2], 16) & _ATF_COMPLETE:
            if parts[3].strip("0:"):
                facts.gateway_mac = parts[3]
                return
    facts.unread.append(f"router MAC: gateway {gateway} is not in the ARP table (no recent traffic to it); "
                        "reach the network once (e.g. ping it) and run again")


def _machine_id(sources: MachineSources, facts: MachineFacts) -> str | None:
    for path in sources.machine_id_files:
        value = _read(path)
        if value:
            return value
    if sys.platform == "win32":
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0])
        except OSError as exc:
            facts.unread.append(f"machine id: MachineGuid not readable ({exc})")
            return None
    if sys.platform == "darwin":
        try:
            output = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True,
                                    text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            facts.unread.append(f"machine id: ioreg failed ({exc})")
            return None
        for line in output.splitlines():
            if "IOPlatformUUID" in line:
                return line.split("=")[-1].strip().strip('"')
    facts.unread.append("machine id: none of " + ", ".join(str(p) for p in sources.machine_id_files) + " is readable")
    return None


def salted_id(machine_id: str, salt: str) -> str:
    """HMAC-SHA256 of the machine id keyed with `salt`, as hex."""
    return hmac.new(salt.encode("utf-8"), machine_id.encode("utf-8"), "sha256").hexdigest()


@dataclass(frozen=True)
class LocalCollector:
    """This machine's network and machine identifiers -> signals of one store."""

    name: ClassVar[str] = "local"
    summary: ClassVar[str] = "this machine: NIC and router MACs, local IPs, salted machine id"

    store_id: str
    salt: str | None = None  # None: from the environment variable ASSOC_SALT
    sources: MachineSources = field(default_factory=MachineSources)
    now: datetime | None = None  # the observation time written as seen_at; None: the current time

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport:
        """Read this machine and merge its signals into the bundle `out`."""
        salt = self.salt if self.salt is not None else os.environ.get(SALT_ENV, "")
        if not salt:
            raise CollectError(f"no salt for the machine id: pass --salt or set {SALT_ENV} to a secret shared by "
                               "all machines of your organisation (the same salt gives one machine the same id in "
                               "every bundle, and the id itself is never written)")
        if not self.store_id.strip():
            raise CollectError("the store id is empty; give the id the store has in stores.csv")
        facts = read_machine(self.sources)
        seen_at = (self.now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        store_id = self.store_id.strip()
        rows = BundleRows()
        rows.ensure_store(store_id, "this machine")
        for mac in facts.macs.values():
            rows.add_signal(store_id, "mac", mac, seen_at)
        if facts.gateway_mac:
            rows.add_signal(store_id, "mac", facts.gateway_mac, seen_at)
        for address in facts.addresses:
            rows.add_signal(store_id, "ip", address, seen_at)
        if facts.machine_id:
            rows.add_signal(store_id, "device_id", salted_id(facts.machine_id, salt), seen_at)
        write_into(out, rows)
        report = CollectReport(self.name, out, notes=[f"could not read {item}" for item in facts.unread])
        report.counts = {"macs": len(facts.macs), "router_mac": int(facts.gateway_mac is not None),
                         "addresses": len(facts.addresses), "machine_id": int(facts.machine_id is not None),
                         "signals": len(rows.signals)}
        return report
