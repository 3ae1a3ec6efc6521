"""The web console (gateway/console/) in real Chromium (Debian's, driven by Playwright) against
a real mesh: log in, a bad cron shown on its field, a live log tail, cancel, a viewer's page
without write buttons, a phone-sized viewport. Screenshots of every page are kept as test
artifacts in .taskmesh/artifacts/console/ (the path is printed)."""

from __future__ import annotations

import re
import sys

import httpx
from playwright.sync_api import APIResponse, Browser, Route, expect

from tests.e2e.console_page import DESKTOP, PHONE, WIDEST_ELEMENT, browser, open_console, shoot, viewer
from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal

__all__ = ["browser"]  # the fixture, shared with the other console tests

# Prints a numbered line every 0.2 s for a minute: a run that is still writing when cancelled.
SLOW_PRINTER = "import time; [(print('console line', i, flush=True), time.sleep(0.2)) for i in range(300)]"


def test_the_console_is_served_with_a_strict_policy_and_no_build_files(gateway: str) -> None:
    root = httpx.get(f"{gateway}/")
    assert root.status_code == 301 and root.headers["location"].endswith("/console/")
    index = httpx.get(f"{gateway}/console/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in index.text  # no inline script
    module = httpx.get(f"{gateway}/console/vendor/preact.mjs")
    assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
    for private in ("package.json", "package-lock.json", "vendor.mjs", "node_modules/preact/package.json"):
        assert httpx.get(f"{gateway}/console/{private}").status_code == 404, private


def test_create_with_a_bad_cron_fix_trigger_watch_live_logs_cancel(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    create_job(api, "console-listed", {"noop": {}}, labels={"team": "console"})  # the list is not empty
    page.reload()
    expect(page.locator("tr[data-job^='console-listed-']").first).to_be_visible(timeout=15_000)
    shoot(page, "jobs-list")

    page.get_by_role("link", name="New job").click()
    name = unique("console-live")
    page.fill("#f-name", name)
    page.select_option("#f-kind", "shell")
    page.fill("#f-argv", "\n".join([sys.executable, "-u", "-c", SLOW_PRINTER]))
    page.select_option("#f-scheduleKind", "cron")
    page.fill("#f-cron", "61 * * * *")
    page.get_by_role("button", name="Create job").click()
    # The server's INVALID_ARGUMENT names job.schedule.cron.expression: shown under that field.
    field_error = page.locator("#f-cron ~ .field-error[data-field='job.schedule.cron.expression']")
    expect(field_error).to_be_visible(timeout=15_000)
    expect(page.locator(".field-error")).to_have_count(1)  # on that field only, not on the schedule's kind
    expect(page.locator("#f-cron")).to_have_attribute("aria-invalid", "true")
    assert "#/jobs/new" in page.url  # nothing was created
    shoot(page, "job-form-field-error")

    page.fill("#f-cron", "0 0 1 1 *")  # once a year: it will not fire during the test
    expect(page.locator(".preview li").first).to_be_visible(timeout=15_000)  # the server's preview
    expect(field_error).to_have_count(0)
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible(timeout=15_000)

    page.get_by_role("button", name="Trigger", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/runs/"), timeout=15_000)
    log = page.locator("pre.log")
    expect(log).to_contain_text("console line 2", timeout=60_000)
    expect(page.locator("h1 .state")).to_have_text("RUNNING")
    # Lines keep arriving on the same page (no reload): a later line appears.
    seen = log.locator(".line").count()
    expect(log).to_contain_text(f"console line {seen + 3}", timeout=30_000)
    shoot(page, "run-live-log")

    # The cancel's answer (CANCELLING) is held back until the watch has shown the run CANCELLED,
    # as a loaded machine can order them: the page keeps the newer state.
    held: list[tuple[Route, APIResponse]] = []
    page.route(re.compile(r"/api/runs/[^/]+:cancel$"), lambda route: held.append((route, route.fetch())))
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("h1 .state")).to_have_text("CANCELLED", timeout=30_000)
    assert len(held) == 1
    route, answer = held[0]
    assert answer.json()["state"] == "CANCELLING"
    with page.expect_response(re.compile(r":cancel$")):
        route.fulfill(response=answer)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 50)))")
    expect(page.locator("h1 .state")).to_have_text("CANCELLED", timeout=5_000)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    shoot(page, "run-cancelled")

    page.locator(".crumbs a").nth(1).click()  # back to the job
    expect(page.locator("table.runs tbody tr").first).to_contain_text("CANCELLED", timeout=15_000)
    shoot(page, "job-page")

    page.get_by_role("link", name="Workers").click()
    expect(page.locator("[data-overall]")).to_have_attribute("data-overall", "UP", timeout=15_000)
    expect(page.locator("table.workers tbody tr")).to_have_count(2, timeout=15_000)
    shoot(page, "workers")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.reload()  # the token is gone from storage, not just from the page
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_filters_narrow_the_jobs_list(browser: Browser, gateway: str, api: httpx.Client) -> None:
    tag = unique("flt")
    wanted = create_job(api, f"console-{tag}-a", {"noop": {}}, labels={"console": tag})
    create_job(api, f"console-{tag}-b", {"noop": {}})
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.fill("input[name=name]", tag)
    expect(page.locator("tbody tr[data-job]")).to_have_count(2, timeout=15_000)
    page.fill("input[name=label]", f"console={tag}")
    expect(page.locator("tbody tr[data-job]")).to_have_count(1, timeout=15_000)
    expect(page.locator("tbody tr[data-job]")).to_have_attribute("data-job", wanted["name"])
    assert "label=" in page.url  # the filter is in the address, for a link or a reload


def test_names_and_logs_are_text_not_markup(browser: Browser, gateway: str, api: httpx.Client) -> None:
    marker = unique("xss")
    hostile = f'<img src=x id="{marker}" onerror="document.title=1">'
    job = create_job(api, "console-" + marker, {"shell": {"argv": [sys.executable, "-c", f"print({hostile!r})"]}})
    run = trigger(api, job["id"])
    wait_run_terminal(api, run["id"])
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.goto(f"{gateway}/console/#/runs/{run['id']}")
    expect(page.locator("pre.log")).to_contain_text(hostile, timeout=30_000)
    assert page.locator(f"[id='{marker}']").count() == 0


def test_a_viewer_sees_no_write_buttons(browser: Browser, gateway: str, api: httpx.Client) -> None:
    job = create_job(api, "console-viewer-job", {"noop": {}})
    run = trigger(api, job["id"])
    wait_run_terminal(api, run["id"])
    username, password = viewer(api)
    page = open_console(browser, gateway, username, password, DESKTOP)
    expect(page.locator(".role")).to_have_text("VIEWER")
    expect(page.locator("tbody tr[data-job]").first).to_be_visible(timeout=15_000)
    write_controls = "[data-write], button:has-text('Pause'), button:has-text('Resume'), a:has-text('New job')"
    assert page.locator(write_controls).count() == 0
    shoot(page, "viewer-jobs-list")
    page.goto(f"{gateway}/console/#/jobs/{job['id']}")
    expect(page.get_by_role("heading", name=job["name"])).to_be_visible(timeout=15_000)
    expect(page.locator("table.runs tbody tr")).to_have_count(1, timeout=15_000)
    assert page.locator(f"{write_controls}, button:has-text('Trigger'), a:has-text('Edit')").count() == 0
    page.goto(f"{gateway}/console/#/runs/{run['id']}")
    expect(page.locator("h1 .state")).to_have_text("SUCCEEDED", timeout=15_000)
    assert page.locator(f"{write_controls}, button:has-text('Retry'), button:has-text('Cancel')").count() == 0
    shoot(page, "viewer-run")


def test_a_phone_sized_viewport_renders_without_sideways_scrolling(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    job = create_job(api, "console-phone", {"noop": {}}, schedule={"cron": {"expression": "0 0 1 1 *"}})
    run = trigger(api, job["id"])
    wait_run_terminal(api, run["id"])
    page = open_console(browser, gateway, "admin", "admin", PHONE)
    expect(page.locator("tbody tr[data-job]").first).to_be_visible(timeout=15_000)
    for route, name, ready in [
        ("#/jobs", "phone-jobs-list", "tbody tr[data-job]"),
        (f"#/jobs/{job['id']}", "phone-job-page", "table.runs tbody tr"),
        (f"#/runs/{run['id']}", "phone-run", "h1 .state"),
        ("#/workers", "phone-workers", "table.queues tbody tr"),  # queue names are long: once they are in
    ]:
        page.goto(f"{gateway}/console/{route}")
        expect(page.locator(ready).first).to_be_visible(timeout=15_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        widest = page.evaluate(WIDEST_ELEMENT)  # names what sticks out, if anything does
        assert width <= PHONE["width"], f"{route} is {width} px wide: {widest}"
        shoot(page, name)


def test_dark_mode_and_keyboard_navigation(browser: Browser, gateway: str) -> None:
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.get_by_role("button", name="theme: auto").click()  # auto -> light -> dark
    page.get_by_role("button", name="theme: light").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    # Tab from the top reaches the navigation and opens Workers with Enter.
    # From the navigation's first link, Tab moves to the next one and Enter opens it (the page
    # below it re-renders as its lists refresh, so the walk starts at a known element).
    page.get_by_role("navigation", name="main").get_by_role("link", name="Jobs").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Workers"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Workers and queues")).to_be_visible(timeout=15_000)
    expect(page.locator("table.workers tbody tr")).to_have_count(2, timeout=15_000)
    shoot(page, "workers-dark")


def test_a_job_page_with_history_for_the_readme(browser: Browser, gateway: str, api: httpx.Client) -> None:
    """A job with a dozen runs of varied durations, one failed: the page docs/console-job.png shows."""
    program = "import sys, time; n = int(sys.argv[1]); time.sleep(0.1 + n % 5 * 0.15); print('step', n); sys.exit(n == 7)"
    job = create_job(
        api,
        "nightly-export",
        {"shell": {"argv": [sys.executable, "-c", program, "0"]}},
        labels={"team": "data"},
        schedule={"cron": {"expression": "30 2 * * *", "timezone": "Europe/Berlin"}},
        retryPolicy={"maxAttempts": 2, "initialBackoff": "0.1s"},
    )
    runs = []
    for n in range(12):
        argv = [sys.executable, "-c", program, str(n)]
        changed = api.patch(
            f"/api/jobs/{job['id']}",
            params={"updateMask": "executor"},
            json={"executor": {"shell": {"argv": argv}}},
        )
        assert changed.status_code == 200, changed.text
        runs.append(wait_run_terminal(api, trigger(api, job["id"])["id"]))
    assert {run["state"] for run in runs} == {"SUCCEEDED", "FAILED"}
    page = open_console(browser, gateway, "admin", "admin", {"width": 1280, "height": 1000})
    page.goto(f"{gateway}/console/#/jobs/{job['id']}")
    expect(page.locator("table.runs tbody tr")).to_have_count(12, timeout=15_000)
    expect(page.locator(".chart .empty")).to_have_count(1, timeout=15_000)  # only fire lag: no scheduled run yet
    shoot(page, "readme-job")
    page.goto(f"{gateway}/console/#/runs/{runs[7]['id']}")
    expect(page.locator("h1 .state")).to_have_text("FAILED", timeout=15_000)
    expect(page.locator("pre.log")).to_contain_text("step 7", timeout=15_000)
    shoot(page, "readme-failed-run")


def test_trigger_with_a_form_from_the_parameter_schema_and_see_the_output(
    browser: Browser, gateway: str, api: httpx.Client
) -> None:
    program = (
        "import json, os, sys; json.dump({'customer': int(sys.argv[1]), 'region': sys.argv[2]},"
        " open(os.environ['TASKMESH_OUTPUT'], 'w'))"
    )
    schema = {
        "type": "object",
        "required": ["customer_id"],
        "properties": {
            "customer_id": {"type": "integer", "title": "Customer", "description": "whose rows to export"},
            "region": {"type": "string", "enum": ["eu", "us"]},
        },
    }
    argv = [sys.executable, "-c", program, "{{ params.customer_id }}", "{{ params.region }}"]
    job = create_job(
        api, "console-params", {"shell": {"argv": argv}}, parameters={"region": "eu"}, parameterSchema=schema
    )
    page = open_console(browser, gateway, "admin", "admin", DESKTOP)
    page.goto(f"{gateway}/console/#/jobs/{job['id']}")
    page.get_by_role("button", name="Trigger…").click()
    page.get_by_role("button", name="Trigger run").click()  # customer_id is required: the server says so
    expect(page.locator(".trigger-form .error")).to_contain_text("customer_id", timeout=15_000)
    page.get_by_label("Customer *").fill("42")
    page.get_by_label("region").select_option("us")
    shoot(page, "job-trigger-parameters")
    page.get_by_role("button", name="Trigger run").click()
    expect(page).to_have_url(re.compile(r"#/runs/"), timeout=15_000)
    expect(page.locator("h1 .state")).to_have_text("SUCCEEDED", timeout=60_000)
    expect(page.locator(".card", has_text="Parameters").locator("pre.json").first).to_contain_text(
        '"customer_id": 42'
    )
    output = page.locator("h3:has-text('Output') + pre.json")
    expect(output).to_contain_text('"customer": 42')
    expect(output).to_contain_text('"region": "us"')
    shoot(page, "run-output")
