"""Swagger UI, loaded through the gateway in headless Chromium, renders the Taskmesh API; the
screenshot is kept as a test artifact (.taskmesh/artifacts/swagger-ui.png)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.e2e.chromium import LAUNCH_ARGS, chromium, dump_dom, screenshot
from tests.e2e.helpers import create_job
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


def _try_it_out(
    page: Page, operation_id: str, body: str | None = None, parameters: dict[str, str] | None = None
) -> Locator:
    """Open an operation, run it with *Try it out*, wait for the answer; return the operation."""
    operation = page.locator(f"#operations-{operation_id.split('_')[0]}-{operation_id}")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    for name, value in (parameters or {}).items():
        operation.locator(f'tr[data-param-name="{name}"] input').fill(value)
    if body is not None:
        operation.locator("textarea.body-param__text").fill(body)
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200", timeout=60_000
    )
    return operation


def test_a_user_logs_in_and_calls_the_api_from_swagger_ui(gateway: str, api: httpx.Client) -> None:
    job = create_job(api, "swagger", {"noop": {}})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{gateway}/swagger-ui/index.html")
            authorize = page.locator(".auth-wrapper .authorize")
            expect(authorize).not_to_have_class("authorize locked")
            _try_it_out(page, "AuthService_Login", '{"username": "admin", "password": "admin"}')
            # The Login answer authorized the page: the padlock is closed.
            expect(authorize).to_have_class("btn authorize locked", timeout=10_000)
            get_job = _try_it_out(page, "JobService_GetJob", parameters={"id": job["id"]})
            expect(get_job.locator(".curl-command")).to_contain_text("Authorization: Bearer ")
            expect(get_job.locator(".live-responses-table tbody .response-col_description")).to_contain_text(
                job["name"]
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "swagger-ui-try-it-out.png"))
            page.reload()  # persistAuthorization keeps the token across reloads
            expect(page.locator(".auth-wrapper .authorize")).to_have_class("btn authorize locked", timeout=60_000)
        finally:
            browser.close()
