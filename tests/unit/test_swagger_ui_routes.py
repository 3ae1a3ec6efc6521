"""The gateway routes that serve the OpenAPI document and Swagger UI."""

from __future__ import annotations

from typing import Any

from gateway import console_ui
from gateway.config import DESCRIPTOR_SET, GatewayConfig, Upstream, envoy_config
from gateway.swagger_ui import MAX_DIRECT_RESPONSE_BYTES, TRANSCODER, static_files


def _route_config() -> dict[str, Any]:
    config = GatewayConfig("127.0.0.1", 1, 2, Upstream("api_server", "a:1"), Upstream("scheduler", "s:2"))
    manager = envoy_config(config)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return dict(manager["typed_config"]["route_config"])


def test_every_served_file_exists_and_fits_envoys_direct_response_cap() -> None:
    files = static_files(DESCRIPTOR_SET.parent)
    assert {f.path for f in files} >= {"/openapi.json", "/openapi.yaml", "/swagger-ui/index.html"}
    for static in files:
        assert static.file.is_file(), static.file
        assert 0 < static.file.stat().st_size < MAX_DIRECT_RESPONSE_BYTES, static.file
    assert _route_config()["max_direct_response_body_size_bytes"] == MAX_DIRECT_RESPONSE_BYTES


def test_file_routes_come_first_without_the_transcoder_and_with_their_content_type() -> None:
    routes = _route_config()["virtual_hosts"][0]["routes"]
    # Swagger UI's files and the console's (tests/unit/test_console_routes.py).
    served = {f.path: f for f in [*static_files(DESCRIPTOR_SET.parent), *console_ui.static_files()]}
    file_routes = [r for r in routes if "direct_response" in r or "redirect" in r]
    assert routes[: len(file_routes)] == file_routes  # before the gRPC prefix routes
    for route in file_routes:
        assert route["typed_per_filter_config"][TRANSCODER]["disabled"] is True
        if "direct_response" in route:
            static = served[route["match"]["path"]]
            assert route["direct_response"]["body"] == {"filename": str(static.file)}
            headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
            assert headers["content-type"] == static.content_type
    assert {r["match"]["path"] for r in file_routes if "direct_response" in r} == set(served)
