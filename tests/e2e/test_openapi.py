"""The OpenAPI document and Swagger UI, served by the gateway."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

import httpx
import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from gateway.openapi import DESCRIPTOR_SET, GENERATED, GRPC_TO_HTTP
from tests.e2e.helpers import create_job, unique

VARIABLE = re.compile(r"\{[^}]*\}")


def _descriptor_routes() -> set[tuple[str, str]]:
    """(verb, path shape) of every google.api.http rule in the descriptor set, read directly."""
    file_set = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    routes = set()
    for file in file_set.file:
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    routes.add((verb.upper(), VARIABLE.sub("{}", getattr(binding, verb))))
    return routes


def test_every_rest_route_in_the_descriptor_is_in_the_served_document(gateway: str) -> None:
    document = httpx.get(f"{gateway}/openapi.json").json()
    documented = {
        (verb.upper(), VARIABLE.sub("{}", path))
        for path, operations in document["paths"].items()
        for verb in operations
    }
    expected = _descriptor_routes()
    assert ("POST", "/api/auth/login") in expected and len(expected) > 20
    assert documented == expected


def test_served_documents_are_the_generated_files(gateway: str) -> None:
    as_json = httpx.get(f"{gateway}/openapi.json")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.content == (GENERATED / "openapi.json").read_bytes()
    as_yaml = httpx.get(f"{gateway}/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"] == "application/yaml"
    assert as_yaml.content == (GENERATED / "openapi.yaml").read_bytes()
    assert yaml.safe_load(as_yaml.text) == as_json.json()


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def test_swagger_ui_and_every_asset_it_loads_come_through_the_gateway(gateway: str) -> None:
    index = httpx.get(f"{gateway}/swagger-ui/index.html")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    parser = _Assets()
    parser.feed(index.text)
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    assert {url.rsplit(".", 1)[-1] for url in parser.urls} == {"js", "css", "png"}
    for url in parser.urls:
        asset = httpx.get(f"{gateway}/swagger-ui/{url.removeprefix('./')}")
        assert asset.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(expected_types[suffix]), url
        assert len(asset.content) > 100, url
    bundle = httpx.get(f"{gateway}/swagger-ui/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000  # the whole bundle, past Envoy's default 4 KiB direct-response cap
    initializer = httpx.get(f"{gateway}/swagger-ui/swagger-initializer.js").text
    assert 'url: "/openapi.json"' in initializer and "persistAuthorization: true" in initializer


def test_swagger_ui_folder_redirects_to_its_index(gateway: str) -> None:
    for path in ("/swagger-ui", "/swagger-ui/"):
        response = httpx.get(f"{gateway}{path}")
        assert response.status_code == 301
        assert response.headers["location"].endswith("/swagger-ui/index.html")


def test_api_routes_are_still_transcoded_and_unknown_paths_refused(gateway: str) -> None:
    assert httpx.get(f"{gateway}/api/jobs").status_code == 401
    assert httpx.get(f"{gateway}/swagger-ui/nope.js").status_code == 404
    assert httpx.get(f"{gateway}/openapi.jsonx").status_code == 404


def _status(response: httpx.Response) -> tuple[int, int]:
    return response.json()["code"], response.status_code


def test_error_statuses_are_the_documented_mapping(gateway: str, api: httpx.Client) -> None:
    documented = {code: status for code, _, status in GRPC_TO_HTTP}
    job = create_job(api, "mapped", {"noop": {}})
    observed: list[tuple[int, int]] = [
        _status(api.post("/api/jobs", json={"name": "bad name!", "executor": {"noop": {}}})),  # INVALID_ARGUMENT
        _status(httpx.get(f"{gateway}/api/jobs")),  # UNAUTHENTICATED
        _status(api.get(f"/api/jobs/{uuid.uuid4()}")),  # NOT_FOUND
        _status(api.post("/api/jobs", json={"name": job["name"], "executor": {"noop": {}}})),  # ALREADY_EXISTS
        _status(api.delete("/api/users/admin")),  # FAILED_PRECONDITION: one's own account
    ]
    name = unique("viewer")
    api.post("/api/users", json={"username": name, "password": "viewer-pass-1", "role": "VIEWER"})
    token = httpx.post(f"{gateway}/api/auth/login", json={"username": name, "password": "viewer-pass-1"})
    viewer = {"Authorization": f"Bearer {token.json()['accessToken']}"}
    observed.append(_status(httpx.get(f"{gateway}/api/users", headers=viewer)))  # PERMISSION_DENIED
    assert [code for code, _ in observed] == [3, 16, 5, 6, 9, 7]
    assert all(status == documented[code] for code, status in observed), observed


def _operation(document: dict[str, Any], verb: str, path: str) -> dict[str, Any]:
    return dict(document["paths"][path][verb])


def test_documented_parameters_work_against_the_gateway(gateway: str, api: httpx.Client) -> None:
    """The names the document gives query parameters and bodies are the ones the gateway takes."""
    document = httpx.get(f"{gateway}/openapi.json").json()
    list_runs = _operation(document, "get", "/api/runs")
    assert [p["name"] for p in list_runs["parameters"]] == ["jobId", "pageSize", "pageToken", "filter"]
    job = create_job(api, "documented", {"noop": {}})
    assert api.get("/api/runs", params={"jobId": job["id"], "pageSize": 5}).status_code == 200
    update = _operation(document, "patch", "/api/jobs/{id}")
    assert [p["name"] for p in update["parameters"]] == ["id", "updateMask"]
    response = api.patch(f"/api/jobs/{job['id']}", params={"updateMask": "description"}, json={"description": "d"})
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "d"
