"""The web console's files (gateway/console/) and the gateway routes that serve them: what is
served and with which headers, that the sources load nothing the gateway does not serve, and
that the vendored libraries are the versions package-lock.json pins."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from gateway import console_ui
from gateway.config import GatewayConfig, Upstream, envoy_config
from gateway.swagger_ui import MAX_DIRECT_RESPONSE_BYTES, TRANSCODER

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = console_ui.CONSOLE
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}/[^"']+)["']""")


def _routes() -> list[dict[str, Any]]:
    config = GatewayConfig("127.0.0.1", 1, 2, Upstream("api_server", "a:1"), Upstream("scheduler", "s:2"))
    manager = envoy_config(config)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return list(manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"])


def _served() -> dict[str, Path]:
    return {f.path: f.file for f in console_ui.static_files()}


def test_every_file_route_carries_the_security_headers_and_fits_envoys_cap() -> None:
    console = [r for r in _routes() if r["match"].get("path", "").startswith("/console/")]
    assert {r["match"]["path"] for r in console} == set(_served())
    for route in console:
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert headers["content-security-policy"] == console_ui.CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert route["typed_per_filter_config"][TRANSCODER]["disabled"] is True
        size = Path(route["direct_response"]["body"]["filename"]).stat().st_size
        assert 0 < size < MAX_DIRECT_RESPONSE_BYTES
    policy = console_ui.CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "default-src 'none'" in policy


def test_root_and_the_bare_folder_redirect_to_the_console() -> None:
    redirects = {r["match"]["path"]: r["redirect"] for r in _routes() if "redirect" in r}
    assert redirects["/"] == {"path_redirect": "/console/"}
    assert redirects["/console"] == {"path_redirect": "/console/"}
    assert _served()["/console/"] == CONSOLE / "index.html"


def test_build_files_are_never_served() -> None:
    served = {path.removeprefix("/console/") for path in _served()}
    assert served >= {"index.html", "app.js", "style.css", "vendor/preact.mjs", "vendor/uplot.mjs"}
    assert not {"package.json", "package-lock.json", "vendor.mjs", "vendor/VERSIONS.json"} & served
    assert not any(path.startswith("node_modules") for path in served)


def test_the_python_package_ships_every_served_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "gateway"
    ]
    gateway = ROOT / "gateway"
    for file in set(_served().values()):
        relative = file.relative_to(gateway)
        assert any(relative.match(pattern) for pattern in patterns), relative


def test_modules_import_only_served_files_and_index_has_no_inline_script() -> None:
    served = set(_served().values())
    for module in [f for f in served if f.suffix in (".js", ".mjs")]:
        for target in IMPORT.findall(module.read_text()):
            assert (module.parent / target).resolve() in served, f"{module.name} imports {target}"
    index = (CONSOLE / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", index):
        assert "src=" in tag, tag
    assert "<style" not in index and " style=" not in index


def test_the_sources_never_write_markup_from_strings() -> None:
    for source in sorted(CONSOLE.glob("*.js")):
        text = source.read_text()
        for unsafe in (
            "innerHTML",
            "outerHTML",
            "dangerouslySetInnerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
        ):
            assert unsafe not in text, f"{source.name} uses {unsafe}"


def test_vendored_libraries_are_the_locked_versions() -> None:
    lock = json.loads((CONSOLE / "package-lock.json").read_text())["packages"]
    vendored = json.loads((CONSOLE / "vendor" / "VERSIONS.json").read_text())
    assert vendored == {name: lock[f"node_modules/{name}"]["version"] for name in vendored}
    assert set(vendored) == set(lock[""]["dependencies"])


def test_index_preloads_every_module_so_imports_do_not_wait_on_each_other() -> None:
    index = (CONSOLE / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/console/([^"]+)"', index))
    modules = {p.relative_to(CONSOLE).as_posix() for p in set(_served().values()) if p.suffix in (".js", ".mjs")}
    assert preloaded == modules
