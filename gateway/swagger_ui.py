"""Envoy routes that serve the OpenAPI document and Swagger UI from files, with no extra process.

GET /openapi.json, /openapi.yaml   the generated document (gateway/generated/, scripts/generate.py)
GET /swagger-ui/index.html         Swagger UI (assets from the swagger-ui-bundle package, plus our
                                   index.html and swagger-initializer.js in gateway/static/)

Each file is a route with a `direct_response` whose body Envoy reads from the file when it loads
its configuration, so the gateway must be restarted to serve a regenerated document. These
routes are not REST bindings, so the gRPC-JSON transcoder is disabled on them (it would answer
404 for any path it does not know).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).parent / "static"
SWAGGER_UI_PREFIX = "/swagger-ui/"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# Envoy refuses direct_response bodies above this (default 4 KiB); swagger-ui-bundle.js is ~1 MiB.
MAX_DIRECT_RESPONSE_BYTES = 8 * 1024 * 1024

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".yaml": "application/yaml",
}

# Files Swagger UI's index.html loads, from the swagger-ui-bundle package.
BUNDLE_ASSETS = [
    "swagger-ui.css",
    "index.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
]
OUR_ASSETS = ["index.html", "swagger-initializer.js"]


@dataclass(frozen=True)
class StaticFile:
    path: str  # URL path
    file: Path

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.file.suffix]


def static_files(generated: Path) -> list[StaticFile]:
    """Everything these routes serve; `generated` is the folder holding openapi.json/.yaml."""
    bundle = Path(str(swagger_ui_path))
    return [
        StaticFile("/openapi.json", generated / "openapi.json"),
        StaticFile("/openapi.yaml", generated / "openapi.yaml"),
        *(StaticFile(SWAGGER_UI_PREFIX + name, STATIC / name) for name in OUR_ASSETS),
        *(StaticFile(SWAGGER_UI_PREFIX + name, bundle / name) for name in BUNDLE_ASSETS),
    ]


def routes(generated: Path) -> list[dict[str, Any]]:
    """Routes for the document and Swagger UI; place them before the gRPC routes."""
    files = static_files(generated)
    missing = [str(f.file) for f in files if not f.file.is_file()]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}: run scripts/generate.py (make generate)")
    redirect = {"path_redirect": SWAGGER_UI_PREFIX + "index.html"}
    return [
        *(_file_route(f) for f in files),
        without_transcoder({"match": {"path": SWAGGER_UI_PREFIX.rstrip("/")}, "redirect": redirect}),
        without_transcoder({"match": {"path": SWAGGER_UI_PREFIX}, "redirect": redirect}),
    ]


def _file_route(static: StaticFile) -> dict[str, Any]:
    return without_transcoder(
        {
            "match": {"path": static.path},
            "direct_response": {"status": 200, "body": {"filename": str(static.file)}},
            "response_headers_to_add": [
                _header("content-type", static.content_type),
                _header("cache-control", "no-cache"),
                _header("x-content-type-options", "nosniff"),
            ],
        }
    )


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def without_transcoder(route: dict[str, Any]) -> dict[str, Any]:
    disabled = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    return {**route, "typed_per_filter_config": {TRANSCODER: disabled}}
