"""The SSRF guard for downloads: which addresses a URL from an export may reach, and connections pinned to them.

URLs in a product export come from sellers, so a download must not become a way into the
operator's own network: loopback, private, link-local, carrier-NAT, multicast and reserved
addresses are refused, and so are addresses that embed one of those (IPv4-mapped IPv6, 6to4,
Teredo, NAT64). `allow_private` lifts this, and `allowed` networks are exempt (an operator's own
image host). Cloud metadata services are refused even then: no product image lives there, and
their answers are credentials.

The host is resolved here, every address it resolves to is checked, and the connection goes to
the checked address (TLS still verifies the certificate against the host name). So a DNS server
that answers with a public address for the check and a private one for the connection
(rebinding) has nothing to rebind: there is no second lookup. The connected peer is checked once
more. Environment proxies are not used, as a proxy would make its own lookup.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """A destination the guard does not allow; the message says which address and why."""


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def address_problem(address: IPAddress, *, allow_private: bool = False, allowed: Networks = ()) -> str | None:
    """Why `address` may not be reached (None if it may); `allowed` networks are exempt, metadata services never."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service"
    if allow_private or any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            problem = address_problem(embedded)
            if problem:
                return f"{problem} (embedded in {address})"
    if address.is_unspecified:
        return "unspecified (connecting to it reaches this machine)"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_multicast or not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve(host: str, port: int, *, allow_private: bool = False, allowed: Networks = ()) -> str:
    """The address to connect to for `host`: every address it resolves to must pass the guard.

    Raises Refused when one does not (a name with one private answer among public ones is refused
    whole: it is how rebinding is set up), OSError when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for text in addresses:
        problem = address_problem(ipaddress.ip_address(text.split("%")[0]), allow_private=allow_private,
                                  allowed=allowed)
        if problem:
            shown = host if host == text else f"{host} ({text})"
            raise Refused(f"{shown} is {problem}; only public addresses are fetched"
                          + ("" if allow_private or problem.startswith("a cloud") else
                             " (--allow-private or --allow-network lift this for private and loopback addresses)"))
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses[0]


def _check_peer(sock: socket.socket, host: str, allow_private: bool, allowed: Networks) -> None:
    peer = sock.getpeername()[0]
    problem = address_problem(ipaddress.ip_address(peer.split("%")[0]), allow_private=allow_private, allowed=allowed)
    if problem:
        sock.close()
        raise Refused(f"{host} connected to {peer}, which is {problem}")


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `address`, with `host` in the Host header; the peer is checked after connecting."""

    def __init__(self, host: str, port: int, address: str, *, timeout: float, allow_private: bool,
                 allowed: Networks):
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.allow_private = allow_private
        self.allowed = allowed

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        _check_peer(self.sock, self.host, self.allow_private, self.allowed)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to `address`; the certificate is verified against `host` (SNI too)."""

    def __init__(self, host: str, port: int, address: str, *, timeout: float, allow_private: bool,
                 allowed: Networks, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.allow_private = allow_private
        self.allowed = allowed
        self.tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        _check_peer(sock, self.host, self.allow_private, self.allowed)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def connection(scheme: str, host: str, port: int, *, timeout: float, allow_private: bool = False,
               allowed: Networks = (), context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """A connection to `host` pinned to an address the guard allows (raises Refused or OSError)."""
    address = resolve(host, port, allow_private=allow_private, allowed=allowed)
    if scheme == "https":
        return PinnedHTTPSConnection(host, port, address, timeout=timeout, allow_private=allow_private,
                                     allowed=allowed, context=context or ssl.create_default_context())
    return PinnedHTTPConnection(host, port, address, timeout=timeout, allow_private=allow_private, allowed=allowed)
