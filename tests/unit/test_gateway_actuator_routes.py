"""The gateway's actuator routes, its request ids and the upstream health checks."""

from __future__ import annotations

from typing import Any

from gateway.config import GatewayConfig, Upstream, envoy_config
from gateway.main import actuator_upstream
from gateway.swagger_ui import TRANSCODER
from taskmesh.settings import Settings

ACTUATOR = Upstream("api_server_actuator", "api:9101")


def _config(actuator: Upstream | None = ACTUATOR) -> dict[str, Any]:
    config = GatewayConfig(
        "127.0.0.1", 1, 2, Upstream("api_server", "api:1"), Upstream("scheduler", "s:2"), actuator
    )
    return envoy_config(config)


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"])


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def test_actuator_paths_go_to_the_api_servers_metrics_listener_before_any_grpc_route() -> None:
    config = _config()
    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    actuator = [i for i, r in enumerate(routes) if r["match"].get("prefix") == "/actuator"]
    grpc = [i for i, r in enumerate(routes) if r["match"].get("prefix", "").startswith("/taskmesh.v1.")]
    assert len(actuator) == 1 and actuator[0] < min(grpc)
    route = routes[actuator[0]]
    assert route["route"]["cluster"] == "api_server_actuator"
    assert route["typed_per_filter_config"][TRANSCODER]["disabled"] is True
    cluster = _clusters(config)["api_server_actuator"]
    assert "health_checks" not in cluster  # a DOWN answer is an answer: 503 with the detail
    assert cluster["outlier_detection"]["enforcing_consecutive_5xx"] == 0
    assert "typed_extension_protocol_options" not in cluster  # plain HTTP/1.1


def test_grpc_upstreams_are_health_checked_without_panic_routing() -> None:
    clusters = _clusters(_config())
    for name in ("api_server", "scheduler"):
        assert "grpc_health_check" in clusters[name]["health_checks"][0]
        assert clusters[name]["common_lb_config"]["healthy_panic_threshold"]["value"] == 0


def test_every_request_gets_an_id_that_is_returned_to_the_caller() -> None:
    manager = _manager(_config())
    assert manager["generate_request_id"] is True and manager["always_set_request_id_in_response"] is True


def test_the_actuator_upstream_is_the_api_servers_host_at_its_metrics_port() -> None:
    settings = Settings(api_address="api-server:50051", api_metrics_listen="0.0.0.0:9101")
    assert actuator_upstream(settings) == Upstream("api_server_actuator", "api-server:9101")
    assert actuator_upstream(Settings(api_metrics_listen="")) is None
    without = _config(actuator=None)
    assert "api_server_actuator" not in _clusters(without)
    routes = _manager(without)["route_config"]["virtual_hosts"][0]["routes"]
    assert not [r for r in routes if r["match"].get("prefix") == "/actuator"]
