"""The egress policy, exhaustively: each rule, their order, the settings that build it."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from taskmesh.egress import (
    EgressPolicy,
    EgressRuleError,
    MeshEndpoint,
    Rule,
    Scope,
    decide,
    mesh_endpoints,
    parse_address,
    parse_rules,
    policy_for,
)
from taskmesh.settings import Settings

LOCAL, INTERNAL = Scope.LOCAL, Scope.INTERNAL
OPEN = EgressPolicy(allow_loopback=True, allow_private=True)
CLOSED = EgressPolicy()
SECRET = "a-production-secret-of-more-than-32-characters"


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def _production(**values: object) -> Settings:
    return _settings(
        environment="production", jwt_secret=SECRET, admin_password="p", worker_password="w", **values
    )


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("0.0.0.0", "an unspecified address"),
        ("0.1.2.3", "an unspecified address"),
        ("::", "an unspecified address"),
        ("::ffff:0.0.0.0", "an unspecified address"),
        ("169.254.169.254", "a link-local address"),
        ("169.254.0.1", "a link-local address"),
        ("::ffff:169.254.169.254", "a link-local address"),
        ("[::ffff:a9fe:a9fe]", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("febf::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
    ],
)
def test_always_denied_whatever_the_switches_and_allow_list(address: str, rule: str) -> None:
    everything = EgressPolicy(
        allow=(Rule(ipaddress.ip_network("0.0.0.0/0")), Rule(ipaddress.ip_network("::/0"))),
        allow_loopback=True,
        allow_private=True,
    )
    for policy in (CLOSED, OPEN, everything):
        decision = decide(policy, address, 80)
        assert not decision.allowed
        assert decision.rule == rule


@pytest.mark.parametrize("address", ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "[::1]"])
def test_loopback_follows_its_switch(address: str) -> None:
    assert not decide(CLOSED, address, 8000).allowed
    assert decide(EgressPolicy(allow_loopback=True), address, 8000).allowed
    assert not decide(EgressPolicy(allow_private=True), address, 8000).allowed
    assert "TASKMESH_EGRESS_ALLOW_LOOPBACK is off" in decide(CLOSED, address, 8000).rule


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "100.64.0.1",
        "fd00::1",
        "fc00::1",
        "::ffff:10.1.2.3",
    ],
)
def test_private_ranges_follow_their_switch(address: str) -> None:
    assert not decide(CLOSED, address, 443).allowed
    assert decide(EgressPolicy(allow_private=True), address, 443).allowed
    assert not decide(EgressPolicy(allow_loopback=True), address, 443).allowed
    assert "TASKMESH_EGRESS_ALLOW_PRIVATE is off" in str(decide(CLOSED, address, 443))


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    decision = decide(CLOSED, address, 443)
    assert decision.allowed and decision.rule == "a public address"


def test_the_deny_list_wins_over_the_allow_list_and_over_public() -> None:
    policy = EgressPolicy(
        deny=parse_rules("8.8.8.0/24, :25", "D"),
        allow=parse_rules("8.8.8.8, 10.0.0.0/8", "A"),
    )
    assert not decide(policy, "8.8.8.8", 443).allowed
    assert "TASKMESH_EGRESS_DENY (8.8.8.0/24)" in decide(policy, "8.8.8.8", 443).rule
    assert not decide(policy, "1.2.3.4", 25).allowed
    assert not decide(policy, "2001:db8::1", 25).allowed
    assert decide(policy, "1.2.3.4", 26).allowed


def test_the_allow_list_opens_loopback_and_private_by_network_and_port() -> None:
    policy = EgressPolicy(allow=parse_rules("127.0.0.1:8000, 10.1.0.0/16, [fd00::/8]:443", "A"))
    assert decide(policy, "127.0.0.1", 8000).allowed
    assert "TASKMESH_EGRESS_ALLOW (127.0.0.1/32:8000)" in decide(policy, "127.0.0.1", 8000).rule
    assert not decide(policy, "127.0.0.1", 8001).allowed
    assert decide(policy, "10.1.2.3", 5432).allowed
    assert not decide(policy, "10.2.0.1", 80).allowed
    assert decide(policy, "fd12::1", 443).allowed
    assert not decide(policy, "fd12::1", 80).allowed


def test_an_ipv4_mapped_allow_rule_matches_the_ipv4_address() -> None:
    policy = EgressPolicy(allow=parse_rules("::ffff:10.0.0.0/104", "A"))
    assert decide(policy, "10.9.9.9", 80).allowed
    assert decide(policy, "::ffff:10.9.9.9", 80).allowed


MESH = EgressPolicy(
    mesh=(
        MeshEndpoint("gateway admin port", 9901),
        MeshEndpoint("scheduler gRPC port", 50052, scope=Scope.INTERNAL),
        MeshEndpoint("api_server gRPC port", 50051, address=ipaddress.ip_address("10.0.0.5")),
    ),
    allow=parse_rules("0.0.0.0/0, ::/0", "A"),
    allow_loopback=True,
    allow_private=True,
    local_addresses=frozenset({ipaddress.ip_address("192.168.7.7")}),
)


@pytest.mark.parametrize(
    ("address", "port", "rule"),
    [
        ("127.0.0.1", 9901, "the mesh's gateway admin port"),
        ("127.1.2.3", 9901, "the mesh's gateway admin port"),
        ("::1", 9901, "the mesh's gateway admin port"),
        ("::ffff:127.0.0.1", 9901, "the mesh's gateway admin port"),
        ("192.168.7.7", 9901, "the mesh's gateway admin port"),
        ("10.9.9.9", 50052, "the mesh's scheduler gRPC port"),
        ("127.0.0.1", 50052, "the mesh's scheduler gRPC port"),
        ("10.0.0.5", 50051, "the mesh's api_server gRPC port"),
    ],
)
def test_mesh_ports_are_denied_even_when_everything_is_allowed(address: str, port: int, rule: str) -> None:
    decision = decide(MESH, address, port)
    assert not decision.allowed
    assert decision.rule == rule


@pytest.mark.parametrize(
    ("address", "port"),
    [("127.0.0.1", 9902), ("8.8.8.8", 9901), ("8.8.8.8", 50052), ("10.0.0.6", 50051), ("10.0.0.5", 50052 + 1)],
)
def test_other_ports_and_hosts_are_not_mesh_endpoints(address: str, port: int) -> None:
    assert decide(MESH, address, port).allowed


def test_the_decision_names_the_address_and_the_rule() -> None:
    assert str(decide(MESH, "127.0.0.1", 9901)) == "egress denied: 127.0.0.1:9901 is the mesh's gateway admin port"
    assert str(decide(CLOSED, "::1", 80)).startswith("egress denied: [::1]:80 is a loopback address")
    assert str(decide(CLOSED, "8.8.8.8", 443)) == "egress allowed: 8.8.8.8:443 is a public address"


def test_mesh_endpoints_come_from_every_listen_the_settings_name() -> None:
    settings = _settings(
        api_listen="0.0.0.0:7001",
        api_address="api-server:7001",
        scheduler_listen="127.0.0.1:7002",
        scheduler_address="10.0.0.9:7002",
        api_metrics_listen="0.0.0.0:7101",
        scheduler_metrics_listen="[::]:7102",
        worker_metrics_listen="127.0.0.1:7103",
        worker_health_listen="localhost:7053",
        gateway_port=7080,
        gateway_admin_port=7901,
    )
    endpoints = {(e.name, e.port, e.address, e.scope) for e in mesh_endpoints(settings)}
    ip = ipaddress.ip_address
    assert endpoints == {
        ("api_server gRPC port", 7001, None, INTERNAL),  # 0.0.0.0 and api-server: one entry
        ("scheduler gRPC port", 7002, None, LOCAL),
        ("scheduler gRPC port", 7002, ip("10.0.0.9"), LOCAL),
        ("api_server metrics port", 7101, None, INTERNAL),  # also the actuator at api-server
        ("scheduler metrics port", 7102, None, INTERNAL),
        ("worker metrics port", 7103, None, LOCAL),
        ("worker health port", 7053, None, LOCAL),
        ("gateway port", 7080, None, LOCAL),
        ("gateway admin port", 7901, None, INTERNAL),
    }


def test_a_wildcard_listen_is_denied_on_private_addresses_a_loopback_listen_on_this_machine_only() -> None:
    settings = _settings(api_listen="0.0.0.0:7001", worker_metrics_listen="127.0.0.1:7103")
    policy = policy_for(settings, [ipaddress.ip_address("192.168.5.5")])
    assert decide(policy, "10.20.30.40", 7001).rule == "the mesh's api_server gRPC port"
    assert decide(policy, "fd00::9", 7001).rule == "the mesh's api_server gRPC port"
    assert decide(policy, "8.8.8.8", 7001).allowed
    assert decide(policy, "192.168.5.5", 7103).rule == "the mesh's worker metrics port"
    assert decide(policy, "10.20.30.40", 7103).allowed


def test_disabled_listens_are_no_endpoints() -> None:
    settings = _settings(api_metrics_listen="", scheduler_metrics_listen="", worker_metrics_listen="")
    names = {e.name for e in mesh_endpoints(settings)}
    assert "worker metrics port" not in names and "api_server metrics port" not in names


def test_development_allows_loopback_and_private_production_does_not() -> None:
    development = policy_for(_settings())
    assert development.allow_loopback and development.allow_private
    production = policy_for(_production())
    assert not production.allow_loopback and not production.allow_private
    assert not decide(production, "127.0.0.1", 8000).allowed


def test_the_switches_override_the_environment() -> None:
    assert policy_for(_production(egress_allow_loopback=True, egress_allow_private=True)).allow_loopback
    closed = policy_for(_settings(egress_allow_loopback=False, egress_allow_private=False))
    assert not decide(closed, "127.0.0.1", 8000).allowed
    assert not decide(closed, "10.0.0.1", 80).allowed


def test_settings_lists_build_the_policy() -> None:
    policy = policy_for(_production(egress_allow="127.0.0.1:8000,10.0.0.0/8", egress_deny="10.9.0.0/16,:25"))
    assert decide(policy, "127.0.0.1", 8000).allowed
    assert decide(policy, "10.1.1.1", 80).allowed
    assert not decide(policy, "10.9.1.1", 80).allowed
    assert not decide(policy, "8.8.8.8", 25).allowed


def test_an_allow_list_entry_cannot_open_a_mesh_port() -> None:
    policy = policy_for(_settings(gateway_admin_port=7901, egress_allow="127.0.0.1:7901"))
    decision = decide(policy, "127.0.0.1", 7901)
    assert not decision.allowed and decision.rule == "the mesh's gateway admin port"


def test_local_addresses_count_as_loopback() -> None:
    policy = policy_for(_production(), [ipaddress.ip_address("10.1.1.1"), ipaddress.ip_address("127.0.0.1")])
    assert policy.local_addresses == frozenset({ipaddress.ip_address("10.1.1.1")})
    assert "loopback" in decide(policy, "10.1.1.1", 80).rule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (" , ", ()),
        ("10.0.0.0/8", (Rule(ipaddress.ip_network("10.0.0.0/8")),)),
        ("10.1.2.3:80", (Rule(ipaddress.ip_network("10.1.2.3/32"), 80),)),
        ("10.1.2.3/8", (Rule(ipaddress.ip_network("10.0.0.0/8")),)),
        ("fd00::/8", (Rule(ipaddress.ip_network("fd00::/8")),)),
        ("[fd00::1]:443", (Rule(ipaddress.ip_network("fd00::1/128"), 443),)),
        ("[fd00::/8]", (Rule(ipaddress.ip_network("fd00::/8")),)),
        (":25", (Rule(ipaddress.ip_network("0.0.0.0/0"), 25), Rule(ipaddress.ip_network("::/0"), 25))),
        ("*:25", (Rule(ipaddress.ip_network("0.0.0.0/0"), 25), Rule(ipaddress.ip_network("::/0"), 25))),
    ],
)
def test_rule_syntax(text: str, expected: tuple[Rule, ...]) -> None:
    assert parse_rules(text, "S") == expected


@pytest.mark.parametrize(
    "text", ["bogus", "10.0.0.0/33", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:http", "*", "[fd00::1]:x"]
)
def test_bad_rules_are_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(EgressRuleError, match=r"^SETTING: "):
        parse_rules(text, "SETTING")


def test_settings_refuse_bad_rules_at_start_up() -> None:
    with pytest.raises(ValidationError, match="TASKMESH_EGRESS_DENY"):
        _settings(egress_deny="10.0.0.0/40")
    with pytest.raises(ValidationError, match="TASKMESH_EGRESS_ALLOW"):
        _settings(egress_allow="nope")


def test_addresses_parse_with_brackets_zones_and_mapping() -> None:
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("::ffff:1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    with pytest.raises(ValueError):
        parse_address("localhost")
