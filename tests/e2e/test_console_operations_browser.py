"""The console's notifications, concurrency keys and pools/workers pages in real Chromium against
the e2e mesh: a channel (its secret generated, shown once, never again) and rules made in the
console, a failing job's deliveries appearing with their state, attempts and last error, the
server's INVALID_ARGUMENT on the field it names, a viewer's pages without write buttons, a key
with active and waiting runs, ListWorkers' pools and workers, a phone-sized viewport. Screenshots
go to .taskmesh/artifacts/console/ like the other console tests'."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskmesh.launcher import Mesh
from tests.e2e.console_page import (
    DESKTOP,
    PHONE,
    WIDEST_ELEMENT,
    browser,
    open_console,
    page_errors,
    shoot,
    viewer,
)
from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal
from tests.support import wait_for

__all__ = ["browser"]  # the fixture

TYPED_SECRET = "typed-secret-never-shown-0123456789"
EVENTS = ["RUN_FAILED", "JOB_RECOVERED", "SLOT_MISFIRED", "SLOT_SKIPPED", "RUN_STUCK", "RUN_FINISHED"]
WRITE_CONTROLS = (
    "[data-write], button:has-text('New rule'), button:has-text('New channel'), button:has-text('Delete'),"
    " button:has-text('Disable'), button:has-text('Enable'), button:has-text('Test'), button:has-text('Edit')"
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on a free local port, answering 200 "ok" to every POST."""

    requests: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> None:
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    started.start()
    yield started
    started.stop()


def signed_with(secret: str, request: Received) -> bool:
    """Whether Taskmesh-Signature (t=...,v1=...) is the HMAC of "<t>.<body>" keyed with secret."""
    parts = dict(part.split("=", 1) for part in request.headers["taskmesh-signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def storage_text(page: Page) -> str:
    return str(page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, location.href])"))


def everything_shown(page: Page) -> str:
    """The page's markup, its text, every input's current value (a property, not in the markup),
    the browser's storage and the address: wherever a secret could show up."""
    values = page.evaluate("() => [...document.querySelectorAll('input, textarea, select')].map((e) => e.value)")
    return "\n".join([page.content(), page.evaluate("() => document.body.innerText"), *values, storage_text(page)])


def create_channel_in_the_console(page: Page, name: str, url: str) -> str:
    """Creates a channel with a generated secret; returns that secret, read from its one showing."""
    page.get_by_role("button", name="New channel").click()
    page.fill("#f-name", name)
    page.fill("#f-url", url)
    page.fill("#f-secret", "short")  # the server wants 16-512 characters: shown on the secret's field
    page.get_by_role("button", name="Create channel").click()
    secret_field = page.locator(".field", has=page.locator("#f-secret"))
    expect(secret_field.locator(".field-error[data-field='channel.secret']")).to_be_visible(timeout=15_000)
    expect(page.locator("#f-secret")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error")).to_have_count(1)
    page.get_by_role("button", name="Generate").click()
    assert page.locator("#f-secret").get_attribute("type") == "password"  # typed or generated: masked
    page.get_by_role("button", name="Create channel").click()
    shown = page.get_by_label("generated secret")
    expect(shown).to_be_visible(timeout=15_000)
    secret = shown.input_value()
    assert len(secret) >= 32
    expect(page.locator(f"tr[data-channel='{name}']")).to_contain_text("write-only")
    expect(page.locator(f"tr[data-channel='{name}']")).not_to_contain_text(secret)
    return secret


def test_a_channel_and_rules_made_in_the_console_deliver_a_failing_jobs_events(
    browser: Browser, gateway: str, api: httpx.Client, receiver: Receiver
) -> None:
    tag = unique("notify")
    job = create_job(api, "console-fails", {"shell": {"argv": ["sh", "-c", "exit 3"]}}, labels={"alerts": tag})
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.get_by_role("navigation", name="main").get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    page.get_by_role("navigation", name="notifications").get_by_role("link", name="Channels").click()

    good, dead = unique("ops"), unique("dead")
    secret = create_channel_in_the_console(page, good, receiver.url)
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_label("generated secret")).to_have_count(0)
    # A second channel, to a port nobody listens on, with a secret typed in: never shown.
    page.get_by_role("button", name="New channel").click()
    page.fill("#f-name", dead)
    page.fill("#f-url", "http://127.0.0.1:9/nobody")
    page.fill("#f-secret", TYPED_SECRET)
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator(f"tr[data-channel='{dead}']")).to_be_visible(timeout=15_000)
    expect(page.get_by_label("generated secret")).to_have_count(0)  # only a generated one is shown, once
    shown = everything_shown(page)
    assert secret not in shown and TYPED_SECRET not in shown and "redacted" not in shown
    shoot(page, "notifications-channels")

    page.get_by_role("link", name="Rules").click()
    page.get_by_role("button", name="New rule").click()
    page.fill("#f-name", unique("job failures"))
    page.select_option("#f-channelId", label=good)
    page.select_option("#f-jobId", job["id"])
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("table.rules tbody tr").filter(has_text=job["name"])).to_be_visible(timeout=15_000)

    page.get_by_role("button", name="New rule").click()
    labelled = unique("labelled failures")
    page.fill("#f-name", labelled)
    page.select_option("#f-channelId", label=dead)
    page.select_option("#f-target", "labels")
    page.fill("#f-labels", f"alerts={tag}")
    page.get_by_label("RUN_FAILED", exact=True).uncheck()  # no event at all: the server names rule.events
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator(".rule-form .field-error[data-field='rule.events']")).to_be_visible(timeout=15_000)
    page.get_by_label("RUN_FAILED", exact=True).check()
    page.get_by_label("RUN_FINISHED", exact=True).check()
    page.get_by_role("button", name="Create rule").click()
    row = page.locator(f"tr[data-rule='{labelled}']")
    expect(row).to_contain_text(f"alerts={tag}", timeout=15_000)
    expect(row).to_contain_text(dead)
    shoot(page, "notifications-rules")

    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED"
    page.get_by_role("link", name="Deliveries").click()
    short_run = run["id"][-8:]
    delivered = page.locator("tr[data-delivery][data-state='DELIVERED']").filter(has_text=short_run)
    expect(delivered).to_have_count(1, timeout=60_000)  # live: no reload
    expect(delivered).to_contain_text(good)
    expect(delivered).to_contain_text("HTTP 200")
    expect(delivered.locator("td.attempts")).to_have_text("1")
    # The dead channel's two events (RUN_FAILED, RUN_FINISHED) wait for a retry, their error shown.
    refused = page.locator("tr[data-delivery][data-state='PENDING']").filter(has_text=short_run)
    expect(refused).to_have_count(2, timeout=60_000)
    for n in range(2):  # each tried at least once (a retry may have followed: 5 s backoff)
        expect(refused.nth(n).locator(".error-line")).to_be_visible(timeout=30_000)
        expect(refused.nth(n).locator("td.attempts")).to_have_text(re.compile(r"^[1-9][0-9]*$"))
    page.select_option("select[name=delivery-state]", "DELIVERED")
    expect(page.locator("tr[data-delivery]").filter(has_text=short_run)).to_have_count(1, timeout=15_000)
    page.select_option("select[name=delivery-state]", "")
    shoot(page, "notifications-deliveries")

    page.get_by_role("link", name="Rules").click()
    row.get_by_role("button", name="Edit").click()  # the labelled rule: fields filled in from it
    expect(page.locator("#f-labels")).to_have_value(f"alerts={tag}")
    expect(page.get_by_label("RUN_FINISHED", exact=True)).to_be_checked()
    page.get_by_label("RUN_FINISHED", exact=True).uncheck()
    page.get_by_label("RUN_STUCK", exact=True).check()
    page.fill("#f-stuckAfter", "30")
    page.get_by_role("button", name="Save rule").click()
    expect(row).to_contain_text("after 30 s", timeout=15_000)
    expect(row).not_to_contain_text("RUN_FINISHED")
    [edited] = [r for r in api.get("/api/notification-rules").json()["rules"] if r["name"] == labelled]
    assert sorted(edited["events"]) == ["RUN_FAILED", "RUN_STUCK"] and edited["stuckAfter"] == "30s"
    assert edited["labelSelector"] == {"alerts": tag} and not edited.get("jobId")

    [request] = receiver.requests  # the good channel's one event
    assert request.headers["taskmesh-event-type"] == "RUN_FAILED"
    assert signed_with(secret, request)  # the secret shown once is the one the server signs with
    assert page_errors(page) == []
    shown = everything_shown(page)
    assert secret not in shown and TYPED_SECRET not in shown
    for channel in api.get("/api/notification-channels", params={"pageSize": 1000}).json()["channels"]:
        if channel["name"] in (good, dead):
            assert api.delete(f"/api/notification-channels/{channel['id']}").status_code == 200


def test_a_viewer_sees_rules_and_deliveries_but_no_channel_and_no_write_button(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    channel = api.post(
        "/api/notification-channels",
        json={"name": unique("viewer-sees"), "url": "http://127.0.0.1:9/x", "secret": TYPED_SECRET},
    ).json()
    rule = api.post(
        "/api/notification-rules",
        json={
            "name": unique("for viewers"),
            "channelId": channel["id"],
            "labelSelector": {"team": "ops"},
            "events": ["RUN_STUCK"],
            "stuckAfter": "60s",
        },
    )
    assert rule.status_code == 200, rule.text
    test = api.post(f"/api/notification-channels/{channel['id']}:test", json={})
    assert test.status_code == 200, test.text
    username, password = viewer(api)
    page = open_console(browser, gateway, username, password, DESKTOP)
    try:
        page.goto(f"{gateway}/console/#/notifications/rules")
        expect(page.locator(f"tr[data-rule='{rule.json()['name']}']")).to_contain_text("team=ops", timeout=15_000)
        expect(page.locator(f"tr[data-rule='{rule.json()['name']}']")).to_contain_text("after 60 s")
        assert page.locator(WRITE_CONTROLS).count() == 0
        shoot(page, "viewer-notification-rules")
        page.get_by_role("link", name="Deliveries").click()
        test_row = page.locator(f"tr[data-delivery='{test.json()['id']}']")
        expect(test_row).to_be_visible(timeout=15_000)
        expect(test_row).to_have_attribute("data-event", "TEST")
        assert page.locator(WRITE_CONTROLS).count() == 0
        page.get_by_role("link", name="Channels").click()
        expect(page.locator(".forbidden")).to_contain_text("operators and admins")
        assert page.locator(WRITE_CONTROLS).count() == 0
        page.goto(f"{gateway}/console/#/concurrency")
        expect(page.get_by_role("heading", name="Concurrency keys")).to_be_visible(timeout=15_000)
        page.goto(f"{gateway}/console/#/workers")
        expect(page.locator("table.listed-workers tbody tr")).to_have_count(2, timeout=15_000)
        assert page.locator(WRITE_CONTROLS).count() == 0
        assert TYPED_SECRET not in everything_shown(page)
        assert page_errors(page) == []
    finally:
        api.delete(f"/api/notification-channels/{channel['id']}")


def keys_of(api: httpx.Client, key: str) -> list[dict[str, Any]]:
    return list(api.get("/api/concurrency-keys", params={"prefix": key}).json().get("keys", []))


def test_the_concurrency_page_shows_a_keys_active_and_waiting_runs(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    key = unique("console-key")
    job = create_job(api, "console-limited", {"sleep": {"seconds": 120}}, concurrency={"key": key, "limit": 1})
    runs = [trigger(api, job["id"]) for _ in range(3)]
    try:
        wait_for(
            lambda: keys_of(api, key) == [{"key": key, "active": 1, "waiting": 2, "limit": 1}],
            timeout=30,
            message="one run of the key active and two waiting",
        )
        page = open_console(browser, gateway, "admin", "admin", DESKTOP)
        page.get_by_role("navigation", name="main").get_by_role("link", name="Concurrency").click()
        page.fill("input[name=prefix]", key)
        row = page.locator(f"tr[data-key='{key}']")
        expect(row.locator("td.active")).to_have_text("1", timeout=15_000)
        expect(row.locator("td.waiting-count")).to_have_text("2")
        expect(row.locator("td.limit")).to_have_text("1")
        expect(row).to_have_class("full")
        expect(page.locator("tr[data-key]")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"#/concurrency\?prefix="))  # the filter is in the address
        shoot(page, "concurrency-keys")
        api.post(f"/api/runs/{runs[2]['id']}:cancel")  # one waiting run fewer, seen without a reload
        expect(row.locator("td.waiting-count")).to_have_text("1", timeout=15_000)
        assert page_errors(page) == []
    finally:
        for run in runs:
            api.post(f"/api/runs/{run['id']}:cancel")
        for run in runs:
            wait_run_terminal(api, run["id"], timeout=60)


def test_the_workers_page_lists_pools_and_workers_from_list_workers(browser: Browser, gateway: str) -> None:
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.goto(f"{gateway}/console/#/workers")
    workers = page.locator("table.listed-workers tbody tr")
    expect(workers).to_have_count(2, timeout=15_000)
    expect(workers.first).to_contain_text("shell")  # executors, as the worker registered them
    default = page.locator("tr[data-pool='default']")
    expect(default).to_be_visible()
    expect(default.locator("td").nth(1)).to_have_text("2")  # both workers serve the default pool
    default.get_by_role("button", name="default").press("Enter")  # keyboard: the pool filters the list
    expect(page.locator("select[name=pool]")).to_have_value("default")
    expect(workers).to_have_count(2)
    shoot(page, "workers-pools")
    assert page_errors(page) == []


def test_the_new_pages_fit_a_phone_and_the_keyboard_reaches_them(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    channel = api.post(
        "/api/notification-channels",
        json={
            "name": unique("phone-channel-with-a-long-name"),
            "url": "http://127.0.0.1:9/a/rather/long/path/for/a/phone",
            "secret": TYPED_SECRET,
        },
    ).json()
    rule = {
        "name": unique("phone rule"),
        "channelId": channel["id"],
        "labelSelector": {"team": "phone"},
        "events": EVENTS,
    }
    assert api.post("/api/notification-rules", json=rule).status_code == 200
    assert api.post(f"/api/notification-channels/{channel['id']}:test", json={}).status_code == 200
    try:
        phone_pages(browser, gateway)
    finally:
        api.delete(f"/api/notification-channels/{channel['id']}")


def fits(page: Page, route: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    widest = page.evaluate(WIDEST_ELEMENT)  # names what sticks out, if anything does
    assert width <= PHONE["width"], f"{route} is {width} px wide: {widest}"


def phone_pages(browser: Browser, gateway: str) -> None:
    page = open_console(browser, gateway, "admin", "admin", PHONE)
    for route, name, ready in [
        ("#/notifications/deliveries", "phone-notification-deliveries", "tr[data-event='TEST']"),
        ("#/notifications/rules", "phone-notification-rules", "tr[data-rule]"),
        ("#/notifications/channels", "phone-notification-channels", "tr[data-channel]"),
        ("#/concurrency", "phone-concurrency", "main h1"),  # no key in use here: an empty table
        ("#/workers", "phone-workers-pools", "table.listed-workers tbody tr"),
    ]:
        page.goto(f"{gateway}/console/{route}")
        expect(page.locator(ready).first).to_be_visible(timeout=15_000)
        fits(page, route)
        shoot(page, name)
    page.goto(f"{gateway}/console/#/notifications/channels")
    page.get_by_role("button", name="New channel").click()
    page.get_by_role("button", name="Generate").click()
    fits(page, "the new channel form")
    page.goto(f"{gateway}/console/#/notifications/rules")
    page.get_by_role("button", name="New rule").click()
    page.get_by_label("RUN_STUCK", exact=True).check()
    fits(page, "the new rule form")
    shoot(page, "phone-notification-rule-form")
    page.set_viewport_size(DESKTOP)
    page.get_by_role("navigation", name="main").get_by_role("link", name="Workers").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Concurrency"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Notifications"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Notifications")).to_be_focused(timeout=15_000)
    page.get_by_role("navigation", name="notifications").get_by_role("link", name="Channels").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Notifications")).to_be_focused(timeout=15_000)
    for expected in ("Deliveries", "Rules", "Channels", "New channel"):  # the tabs, then the page
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == expected
    page.keyboard.press("Enter")
    expect(page.locator("#f-name")).to_be_visible()
    page.get_by_role("button", name="theme: auto").click()  # auto -> light -> dark
    page.get_by_role("button", name="theme: light").click()
    page.get_by_role("link", name="Deliveries").click()
    expect(page.locator("tr[data-event='TEST']").first).to_be_visible(timeout=15_000)
    shoot(page, "notifications-deliveries-dark")
    assert page_errors(page) == []


def test_editing_a_channel_shows_the_servers_refusals_on_their_fields(
    browser: Browser, gateway: str, mesh: Mesh, api: httpx.Client, receiver: Receiver
) -> None:
    name = unique("edited")
    created = api.post(
        "/api/notification-channels", json={"name": name, "url": receiver.url, "secret": TYPED_SECRET}
    )
    assert created.status_code == 200, created.text
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    try:
        page.goto(f"{gateway}/console/#/notifications/channels")
        row = page.locator(f"tr[data-channel='{name}']")
        row.get_by_role("button", name="Edit").click()
        assert page.locator("#f-secret").input_value() == ""  # never filled in from the server
        url_field = page.locator(".field", has=page.locator("#f-url"))
        page.fill("#f-url", f"http://127.0.0.1:{mesh.settings.gateway_admin_port}/quitquitquit")
        page.get_by_role("button", name="Save channel").click()
        expect(url_field.locator(".field-error[data-field='channel.url']")).to_contain_text(
            "gateway admin port", timeout=15_000
        )
        expect(page.locator("#f-url")).to_have_attribute("aria-invalid", "true")
        page.fill("#f-url", "http://127.0.0.1:9/elsewhere")  # another origin: the secret must come again
        page.get_by_role("button", name="Save channel").click()
        secret_field = page.locator(".field", has=page.locator("#f-secret"))
        expect(secret_field.locator(".field-error[data-field='channel.secret']")).to_be_visible(timeout=15_000)
        expect(page.locator(".field-error")).to_have_count(1)
        shoot(page, "notifications-channel-edit-error")
        page.fill("#f-url", receiver.url.replace("/hook", "/moved"))  # the same origin: the secret is kept
        page.fill("#f-description", "moved within its origin")
        page.get_by_role("button", name="Save channel").click()
        expect(row).to_contain_text("moved within its origin", timeout=15_000)
        expect(row).to_contain_text("/moved")
        row.get_by_role("button", name="Test").click()
        expect(page.get_by_role("status")).to_contain_text("TEST event was queued", timeout=15_000)
        wait_for(lambda: receiver.requests, timeout=60, interval=0.2, message="the TEST notification")
        [request] = receiver.requests
        assert request.headers["taskmesh-event-type"] == "TEST"
        assert signed_with(TYPED_SECRET, request)  # the kept secret
        page.get_by_role("status").get_by_role("link", name="Deliveries").click()  # the notice's link
        page.select_option("select[name=delivery-event]", "TEST")
        page.select_option("select[name=delivery-channel]", label=name)
        test_row = page.locator("tr[data-delivery][data-event='TEST']")
        expect(test_row).to_have_count(1, timeout=15_000)
        expect(test_row).to_have_attribute("data-state", "DELIVERED", timeout=30_000)
        assert TYPED_SECRET not in everything_shown(page)
        assert page_errors(page) == []
    finally:
        api.delete(f"/api/notification-channels/{created.json()['id']}")


def test_secret_values_a_run_used_appear_nowhere_in_the_console(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    name, value = f"CONSOLE_{uuid.uuid4().hex[:8].upper()}", f"tm-console-secret-{uuid.uuid4().hex}"
    created = api.post("/api/secrets", json={"name": name, "value": value})
    assert created.status_code == 200, created.text
    script = (
        "import json, os, sys\n"
        "print('token is', os.environ['TOKEN'], 'and', sys.argv[1])\n"
        "json.dump({'token': os.environ['TOKEN']}, open(os.environ['TASKMESH_OUTPUT'], 'w'))\n"
        "sys.exit('failing with ' + os.environ['TOKEN'])\n"
    )
    reference = "{{ secrets." + name + " }}"
    argv = [sys.executable, "-c", script, reference]
    job = create_job(api, "console-secret", {"shell": {"argv": argv, "env": {"TOKEN": reference}}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED", run
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    try:
        page.goto(f"{gateway}/console/#/runs/{run['id']}")
        expect(page.locator("pre.log")).to_contain_text("token is *** and ***", timeout=30_000)
        expect(page.locator("body")).to_contain_text("failing with ***")
        shoot(page, "run-with-a-secret")
        pages = [f"#/runs/{run['id']}", f"#/jobs/{job['id']}", f"#/jobs/{job['id']}/edit", "#/workers"]
        for route in pages:
            page.goto(f"{gateway}/console/{route}")
            expect(page.locator("main h1")).to_be_visible(timeout=15_000)
            page.wait_for_load_state("networkidle")
            assert value not in everything_shown(page), route
        assert page_errors(page) == []
    finally:
        api.delete(f"/api/secrets/{name}")
