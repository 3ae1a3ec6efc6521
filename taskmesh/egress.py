"""The egress policy of the http executor and of notification webhooks: may a request connect to
this address and port?

A pure decision, taken on the address a connection is actually made to (taskmesh/guarded_http.py
checks every connection, redirect hops included). Rules, in order:

1. Always denied: unspecified (0.0.0.0/8, ::), link-local (169.254.0.0/16, fe80::/10: cloud
   metadata endpoints), multicast and broadcast. IPv4-mapped IPv6 addresses are judged as the
   IPv4 address they carry.
2. Always denied: every address:port the mesh itself listens on (gRPC, metrics, health, gateway
   and its admin), as the worker's settings name them: a listen on loopback covers that port
   on this machine (every loopback address and the machine's own); a wildcard listen or a
   host name (a Kubernetes Service) covers it on every non-public address, where replicas of
   the process listen. No allow rule opens a control plane.
3. The deny list (TASKMESH_EGRESS_DENY).
4. The allow list (TASKMESH_EGRESS_ALLOW), which may open loopback or private addresses.
5. Loopback (127.0.0.0/8, ::1) and private ranges (10/8, 172.16/12, 192.168/16, 100.64/10,
   fc00::/7): allowed only when switched on (by default in development, not in production).
6. Anything else (public addresses) is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmesh.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network
ALWAYS_DENIED: tuple[tuple[IPNetwork, str], ...] = (
    (_net("0.0.0.0/8"), "an unspecified address"),
    (_net("::/128"), "an unspecified address"),
    (_net("169.254.0.0/16"), "a link-local address"),
    (_net("fe80::/10"), "a link-local address"),
    (_net("224.0.0.0/4"), "a multicast address"),
    (_net("ff00::/8"), "a multicast address"),
    (_net("255.255.255.255/32"), "the broadcast address"),
)
LOOPBACK: tuple[IPNetwork, ...] = (_net("127.0.0.0/8"), _net("::1/128"))
PRIVATE: tuple[IPNetwork, ...] = (
    _net("10.0.0.0/8"),
    _net("172.16.0.0/12"),
    _net("192.168.0.0/16"),
    _net("100.64.0.0/10"),
    _net("fc00::/7"),
)
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


class EgressRuleError(ValueError):
    """A TASKMESH_EGRESS_ALLOW / TASKMESH_EGRESS_DENY entry that cannot be parsed."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    address: str
    port: int
    rule: str  # why, e.g. "the mesh's gateway admin port", "a link-local address"

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"egress {verdict}: {_endpoint(self.address, self.port)} is {self.rule}"


@dataclass(frozen=True)
class Rule:
    """A network, optionally limited to one port (None: every port)."""

    network: IPNetwork
    port: int | None = None

    def matches(self, address: IPAddress, port: int) -> bool:
        return address in self.network and self.port in (None, port)

    def __str__(self) -> str:
        return f"{self.network}" if self.port is None else f"{self.network}:{self.port}"


class Scope(StrEnum):
    """Where a mesh port is denied when its listen names no single address."""

    LOCAL = "local"  # this machine: loopback and its own addresses (a listen on loopback)
    # Every non-public address too: a listen on a wildcard address or behind a host name is
    # where every replica of the process listens, on whatever private address it has.
    INTERNAL = "internal"


@dataclass(frozen=True)
class MeshEndpoint:
    """A port the mesh listens on: at one address, or anywhere in a scope."""

    name: str  # e.g. "gateway admin port"
    port: int
    address: IPAddress | None = None
    scope: Scope = Scope.LOCAL

    def matches(self, address: IPAddress, port: int, local: frozenset[IPAddress]) -> bool:
        if port != self.port:
            return False
        if self.address is not None:
            return address == self.address
        if _in(address, LOOPBACK) or address in local:
            return True
        return self.scope is Scope.INTERNAL and not _is_public(address)


@dataclass(frozen=True)
class EgressPolicy:
    mesh: tuple[MeshEndpoint, ...] = ()
    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    # This machine's own addresses (besides loopback): a wildcard listen is reachable there.
    local_addresses: frozenset[IPAddress] = field(default_factory=frozenset)


def decide(policy: EgressPolicy, address: str, port: int) -> Decision:
    """May a connection be made to address:port? `address` is an IP address literal."""
    ip = parse_address(address)

    def verdict(allowed: bool, rule: str) -> Decision:
        return Decision(allowed, address, port, rule)

    for network, reason in ALWAYS_DENIED:
        if ip in network:
            return verdict(False, reason)
    for endpoint in policy.mesh:
        if endpoint.matches(ip, port, policy.local_addresses):
            return verdict(False, f"the mesh's {endpoint.name}")
    for rule in policy.deny:
        if rule.matches(ip, port):
            return verdict(False, f"denied by TASKMESH_EGRESS_DENY ({rule})")
    for rule in policy.allow:
        if rule.matches(ip, port):
            return verdict(True, f"allowed by TASKMESH_EGRESS_ALLOW ({rule})")
    if _in(ip, LOOPBACK) or ip in policy.local_addresses:
        return verdict(policy.allow_loopback, f"a loopback address ({_switch('LOOPBACK', policy.allow_loopback)})")
    if _in(ip, PRIVATE):
        return verdict(policy.allow_private, f"a private address ({_switch('PRIVATE', policy.allow_private)})")
    return verdict(True, "a public address")


def parse_address(address: str) -> IPAddress:
    """An IP literal (brackets and an IPv6 zone allowed); IPv4-mapped IPv6 becomes IPv4."""
    ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_rules(text: str, setting: str) -> tuple[Rule, ...]:
    """Comma-separated CIDRs or addresses, each optionally with :port; [v6]:port for IPv6 with a
    port; a bare :port (or *:port) means that port on every address."""
    return tuple(
        rule for entry in text.split(",") if entry.strip() for rule in _parse_rule(entry.strip(), setting)
    )


def _parse_rule(entry: str, setting: str) -> tuple[Rule, ...]:
    network_text, port = _split_port(entry, setting)
    if network_text in ("", "*"):
        if port is None:
            raise EgressRuleError(f"{setting}: {entry!r} names no network and no port")
        return Rule(_net("0.0.0.0/0"), port), Rule(_net("::/0"), port)
    try:
        network = _net(network_text, strict=False)
    except ValueError as error:
        raise EgressRuleError(f"{setting}: {entry!r} is not a CIDR or address: {error}") from error
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        network = _net(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return (Rule(network, port),)


def _split_port(entry: str, setting: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port or [v6/len]:port
        host, _, rest = entry[1:].partition("]")
        return host, (_port(rest.removeprefix(":"), entry, setting) if rest else None)
    if entry.count(":") == 1:  # v4:port, :port
        host, _, port = entry.partition(":")
        return host, _port(port, entry, setting)
    return entry, None


def _port(text: str, entry: str, setting: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EgressRuleError(f"{setting}: {entry!r} has no valid port (1-65535)")
    return int(text)


def mesh_endpoints(settings: Settings) -> tuple[MeshEndpoint, ...]:
    """Every address:port of the mesh that the worker's settings name."""
    listens = [
        ("api_server gRPC port", settings.api_listen),
        ("api_server gRPC port", settings.api_address),
        ("scheduler gRPC port", settings.scheduler_listen),
        ("scheduler gRPC port", settings.scheduler_address),
        ("api_server metrics port", settings.api_metrics_listen),
        ("scheduler metrics port", settings.scheduler_metrics_listen),
        ("worker metrics port", settings.worker_metrics_listen),
        ("worker health port", settings.worker_health_listen),
        # The gateway's host is not in the worker's settings. Its main port is the public API
        # (tokens required): denied on this machine only; its admin port wherever it may be.
        ("gateway port", f"127.0.0.1:{settings.gateway_port}"),
        ("gateway admin port", f"*:{settings.gateway_admin_port}"),
    ]
    # The actuator the gateway routes to: the api_server's host at its metrics port.
    if settings.api_metrics_listen:
        host = settings.api_address.rsplit(":", 1)[0]
        listens.append(("api_server metrics port", f"{host}:{settings.api_metrics_listen.rsplit(':', 1)[1]}"))
    endpoints = {_endpoint_of(name, listen) for name, listen in listens if listen}
    return tuple(sorted(endpoints, key=lambda e: (e.port, e.name, str(e.address), e.scope)))


def _endpoint_of(name: str, listen: str) -> MeshEndpoint:
    host, _, text = listen.rpartition(":")
    port = int(text)
    if host in _WILDCARD_HOSTS:
        return MeshEndpoint(name, port, scope=Scope.INTERNAL)
    if host == "localhost":
        return MeshEndpoint(name, port)
    try:
        address = parse_address(host)
    except ValueError:  # a host name: it may resolve to any replica
        return MeshEndpoint(name, port, scope=Scope.INTERNAL)
    if address.is_unspecified:
        return MeshEndpoint(name, port, scope=Scope.INTERNAL)
    return MeshEndpoint(name, port) if _in(address, LOOPBACK) else MeshEndpoint(name, port, address=address)


def policy_for(settings: Settings, local_addresses: Iterable[IPAddress] = ()) -> EgressPolicy:
    """The policy the worker's settings describe; loopback and private addresses are open by
    default in development only."""
    development = settings.is_development
    allow_loopback = settings.egress_allow_loopback
    allow_private = settings.egress_allow_private
    return EgressPolicy(
        mesh=mesh_endpoints(settings),
        allow=parse_rules(settings.egress_allow, "TASKMESH_EGRESS_ALLOW"),
        deny=parse_rules(settings.egress_deny, "TASKMESH_EGRESS_DENY"),
        allow_loopback=development if allow_loopback is None else allow_loopback,
        allow_private=development if allow_private is None else allow_private,
        local_addresses=frozenset(a for a in local_addresses if not _in(a, LOOPBACK)),
    )


def _switch(name: str, on: bool) -> str:
    return f"TASKMESH_EGRESS_ALLOW_{name} is {'on' if on else 'off'}"


def _in(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def _is_public(address: IPAddress) -> bool:
    return not (_in(address, LOOPBACK) or _in(address, PRIVATE) or any(address in n for n, _ in ALWAYS_DENIED))


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
