"""Envoy routes that serve the web console (gateway/console/) from files, as Swagger UI is served.

GET /                        redirects to /console/
GET /console, /console/      the console's index.html (one page; its routes live in the URL hash)
GET /console/<file>          its ES modules and styles, and vendor/ (third-party libraries copied
                             from node_modules by gateway/console/vendor.mjs and committed)

The console talks only to the REST API on the same origin, so every file carries a strict
Content-Security-Policy: scripts and styles from this origin only (no inline script, no eval),
requests to this origin only, no framing. Only the listed kinds of files are served: the npm
manifest, the lockfile, vendor.mjs and node_modules never are. Like every direct_response route,
Envoy reads the files when it loads its configuration: restart the gateway to serve changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.swagger_ui import StaticFile, without_transcoder

CONSOLE = Path(__file__).parent / "console"
PREFIX = "/console/"
# What is served, relative to CONSOLE (package-data in pyproject.toml ships the same patterns).
PATTERNS = ["*.html", "*.js", "*.css", "*.svg", "vendor/*.mjs", "vendor/*.css"]
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def static_files(root: Path = CONSOLE) -> list[StaticFile]:
    """Every file the console serves (its index.html also at PREFIX itself)."""
    found = sorted({path for pattern in PATTERNS for path in root.glob(pattern) if path.is_file()})
    files = [StaticFile(PREFIX + path.relative_to(root).as_posix(), path) for path in found]
    return [*files, StaticFile(PREFIX, root / "index.html")]


def routes(root: Path = CONSOLE) -> list[dict[str, Any]]:
    """Routes for the console and the redirects to it; place them before the gRPC routes."""
    index = root / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"missing {index}: the console's sources are gateway/console/")
    return [
        *(_file_route(f) for f in static_files(root)),
        without_transcoder({"match": {"path": PREFIX.rstrip("/")}, "redirect": {"path_redirect": PREFIX}}),
        without_transcoder({"match": {"path": "/"}, "redirect": {"path_redirect": PREFIX}}),
    ]


def _file_route(static: StaticFile) -> dict[str, Any]:
    headers = {"content-type": static.content_type, **HEADERS}
    return without_transcoder(
        {
            "match": {"path": static.path},
            "direct_response": {"status": 200, "body": {"filename": str(static.file)}},
            "response_headers_to_add": [
                {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for key, value in headers.items()
            ],
        }
    )
