"""What the console's browser tests share: a Chromium (Debian's, driven by Playwright), a page
logged in through the console's login page, screenshots kept as test artifacts in
.taskmesh/artifacts/console/, a viewer account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.chromium import LAUNCH_ARGS, chromium
from tests.e2e.helpers import unique

ARTIFACTS = Path(__file__).resolve().parents[2] / ".taskmesh" / "artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}
WIDEST_ELEMENT = """() => {
  let widest = null;
  for (const e of document.querySelectorAll("body *")) {
    const right = e.getBoundingClientRect().right;
    if (!widest || right > widest.right) widest = { right, tag: e.tagName, cls: e.className, text: (e.textContent || "").slice(0, 60) };
  }
  return widest;
}"""
PHONE = {"width": 390, "height": 844}
PAGE_ERRORS: dict[Page, list[str]] = {}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def page_errors(page: Page) -> list[str]:
    """The uncaught script errors of a page open_console opened, since it opened."""
    return PAGE_ERRORS[page]


def open_console(browser: Browser, gateway: str, username: str, password: str, viewport: dict[str, int]) -> Page:
    """A fresh browser context logged in through the console's login page."""
    page = browser.new_context(viewport=viewport).new_page()  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    PAGE_ERRORS[page] = errors
    page.goto(f"{gateway}/")  # redirects to /console/
    expect(page).to_have_url(f"{gateway}/console/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible(timeout=30_000)
    assert errors == [], errors
    return page


def viewer(api: httpx.Client) -> tuple[str, str]:
    name, password = unique("console-viewer"), "viewer-pass-1"
    created = api.post("/api/users", json={"username": name, "password": password, "role": "VIEWER"})
    assert created.status_code == 200, created.text
    return name, password
