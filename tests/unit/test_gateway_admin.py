"""Envoy's admin interface: only on a Unix socket; the admin port serves read-only paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import ADMIN_CLUSTER, READ_ONLY_ADMIN_PATHS, GatewayConfig, Upstream, envoy_config
from gateway.main import gateway_config
from taskmesh.settings import Settings


def _config(**extra: Any) -> dict[str, Any]:
    config = GatewayConfig(
        "127.0.0.1", 8123, 9123, Upstream("api_server", "api:1"), Upstream("scheduler", "s:2"), **extra
    )
    return envoy_config(config)


def _listeners(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {listener["name"]: listener for listener in config["static_resources"]["listeners"]}


def test_the_admin_interface_listens_on_a_private_unix_socket_only() -> None:
    admin = _config(admin_socket=Path("/run/x/admin.sock"))["admin"]
    assert admin["address"] == {"pipe": {"path": "/run/x/admin.sock", "mode": 0o600}}
    assert "socket_address" not in str(admin)


def test_the_default_socket_is_named_after_the_gateway_port() -> None:
    path = _config()["admin"]["address"]["pipe"]["path"]
    assert path.endswith("/taskmesh-gateway-8123-admin.sock")


def test_the_socket_can_be_set() -> None:
    config = gateway_config(Settings(gateway_admin_socket="/var/run/tm/admin.sock"))
    assert config.admin_socket_path == Path("/var/run/tm/admin.sock")


def test_the_admin_port_routes_only_get_and_head_of_read_only_paths_to_the_socket() -> None:
    config = _config(admin_socket=Path("/s.sock"))
    listener = _listeners(config)["admin_read_only"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9123}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["normalize_path"] and manager["merge_slashes"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    forwarded = [r for r in routes if "route" in r]
    assert (
        [r["match"]["path"] for r in forwarded] == list(READ_ONLY_ADMIN_PATHS) == ["/ready", "/stats/prometheus"]
    )
    for route in forwarded:
        assert route["route"]["cluster"] == ADMIN_CLUSTER
        assert route["match"]["headers"] == [
            {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
        ]
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["direct_response"]["status"] == 404
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters[ADMIN_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/s.sock"}}


def test_no_route_of_the_main_listener_reaches_the_admin_interface() -> None:
    gateway = _listeners(_config())["gateway"]
    assert ADMIN_CLUSTER not in str(gateway)
