"""Which address a call comes from, for per-client limits.

Behind the gateway every call's peer is Envoy, which appends the address it accepted the
connection from to X-Forwarded-For (use_remote_address). So when the peer is a trusted proxy,
the client is the *last* X-Forwarded-For entry, the one Envoy wrote; earlier entries are
whatever the client sent and are ignored. From any other peer X-Forwarded-For is ignored and
the peer is the client. IPv6 clients count per /64, the block one host usually holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import unquote

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
UNKNOWN = "unknown"


def parse_networks(cidrs: str) -> list[IPNetwork]:
    """'127.0.0.1/32, ::1/128' -> networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in filter(None, (part.strip() for part in cidrs.split(","))):
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError as error:
            raise ValueError(f"not a CIDR: {entry!r}") from error
    return networks


def peer_address(peer: str) -> IPAddress | None:
    """The IP of a gRPC peer string ('ipv4:1.2.3.4:5', 'ipv6:[::1]:5'); None for unix sockets."""
    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host = rest.rsplit(":", 1)[0].strip("[]").split("%", 1)[0]
    try:
        return ip_address(host)
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's address (an IPv6 one as its /64), or 'unknown'."""
    address = peer_address(peer)
    if address is not None and forwarded_for and any(address in network for network in trusted):
        with contextlib.suppress(ValueError):  # a proxy that writes no address: count the proxy
            address = ip_address(forwarded_for.rsplit(",", 1)[-1].strip())
    if address is None:
        return UNKNOWN
    if isinstance(address, IPv6Address) and address.ipv4_mapped is None:
        return str(IPv6Network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped if isinstance(address, IPv6Address) else address)
