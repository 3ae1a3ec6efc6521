"""Swagger UI, loaded through the gateway in headless Chromium, renders the Taskmesh API; the
screenshot is kept as a test artifact (.taskmesh/artifacts/swagger-ui.png)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import httpx

from tests.e2e.chromium import dump_dom, screenshot
from tests.support import wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / ".taskmesh" / "artifacts"


def _operation_ids(gateway: str) -> list[str]:
    document = httpx.get(f"{gateway}/openapi.json").json()
    return [
        f"operations-{operation['tags'][0]}-{operation['operationId']}"
        for operations in document["paths"].values()
        for operation in operations.values()
    ]


def test_swagger_ui_renders_every_operation(gateway: str) -> None:
    expected = _operation_ids(gateway)

    def rendered() -> str | None:
        dom = dump_dom(f"{gateway}/swagger-ui/index.html")
        return dom if all(f'id="{element}"' in dom for element in expected) else None

    dom = wait_for(rendered, timeout=120, interval=1, message="Swagger UI to render every operation")
    assert "Taskmesh API" in dom
    assert "Failed to load API definition" not in dom
    assert "Authorize" in dom  # the bearer security scheme offers the Authorize button


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_screenshot_of_swagger_ui_through_the_gateway(gateway: str, tmp_path: Path) -> None:
    shot = screenshot(f"{gateway}/swagger-ui/index.html", tmp_path / "swagger-ui.png")
    assert _png_size(shot) == (1280, 2200)
    # A blank page compresses to a few KB; the rendered operations list is well over 100 KB.
    assert shot.stat().st_size > 100_000, shot.stat().st_size
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "swagger-ui.png")
    print(f"screenshot: {ARTIFACTS / 'swagger-ui.png'}")
