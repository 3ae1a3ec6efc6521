"""The console's jobs list with 2,000 jobs, in Chromium: load and filter times.

Starts a private mesh (a database and namespace of its own, free ports), creates 2,000 jobs
(10 label values, one run each so every history strip has a square), then drives Debian's
Chromium through Playwright, logged in as admin:

  python -m bench.console_jobs                   # 2,000 jobs, 5 rounds
  python -m bench.console_jobs --jobs 5000 --rounds 10

Prints, per measure, the median and worst of the rounds, in milliseconds of page time
(performance.now() in the page, polled every animation frame):
- load: navigation start to the first page of jobs (50 rows) rendered; and to every row's
  history strip filled in (one ListRuns per row, 6 at a time);
- filter by name, by label, by last run state: the keystroke (or choice) to the rows all
  matching. The list waits 250 ms after the last keystroke before it asks (typing does not send
  a request per key); the figures include it, and "server" subtracts it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from grpc import aio
from playwright.sync_api import Page, sync_playwright

from bench.common import BENCH_ENV, bench_mesh, login
from taskmesh.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.e2e.chromium import LAUNCH_ARGS, chromium

DEBOUNCE_MS = 250
SHOWN = "document.querySelector('table.jobs').dataset.filter"  # the filter the shown rows answer
FAILED_T7 = 'labels.team="t7" AND state=FAILED'
ROWS = "document.querySelectorAll('tbody tr[data-job]')"


async def populate(address: str, jobs: int) -> None:
    async with aio.insecure_channel(address) as channel:
        token = await login(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        ids: list[str] = []
        queue = list(range(jobs))

        async def creator() -> None:
            while queue:
                i = queue.pop()
                job = job_pb2.Job(
                    name=f"bench-job-{i:05d}",
                    executor=job_pb2.Executor(noop=job_pb2.NoopExecutor()),
                    labels={"team": f"t{i % 10}"},
                )
                created = await stub.CreateJob(job_service_pb2.CreateJobRequest(job=job), metadata=metadata)
                ids.append(created.id)

        started = time.perf_counter()
        await asyncio.gather(*(creator() for _ in range(32)))
        print(f"created {jobs} jobs in {time.perf_counter() - started:.1f} s")
        for at in range(0, len(ids), 1000):
            requests = [job_service_pb2.TriggerJobRequest(id=i) for i in ids[at : at + 1000]]
            await stub.BatchTriggerJobs(
                job_service_pb2.BatchTriggerJobsRequest(requests=requests), metadata=metadata
            )
        print(f"triggered one run of each ({time.perf_counter() - started:.1f} s in all)")


def wait_ms(page: Page, condition: str, timeout: float = 60_000) -> float:
    """performance.now() in the page when `condition` first holds (checked every frame)."""
    handle = page.wait_for_function(f"() => ({condition}) && performance.now()", polling="raf", timeout=timeout)
    return float(handle.json_value())


def filter_ms(page: Page, act: str, condition: str) -> float:
    started = float(page.evaluate(f"() => {{ const t = performance.now(); {act}; return t; }}"))
    return wait_ms(page, condition) - started


def type_into(selector: str, value: str) -> str:
    # What typing does: set the value, dispatch input (Preact listens to onInput).
    return (
        f"const e = document.querySelector({selector!r}); e.value = {value!r};"
        " e.dispatchEvent(new Event('input', {bubbles: true}))"
    )


def choose(selector: str, value: str) -> str:
    return (
        f"const e = document.querySelector({selector!r}); e.value = {value!r};"
        " e.dispatchEvent(new Event('change', {bubbles: true}))"
    )


def all_rows(test: str, count: int, filter: str) -> str:
    """The rows shown answer `filter` (the table says which filter its rows answer), and pass `test`."""
    rows = f"[...{ROWS}]"
    shown = f"document.querySelector('table.jobs').dataset.filter === {filter!r}"
    return f"{shown} && {rows}.length === {count} && {rows}.every(r => {test})"


def rounds(gateway: str, count: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    record = lambda name, value: results.setdefault(name, []).append(value)  # noqa: E731
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{gateway}/console/")
        page.fill("#username", "admin")
        page.fill("#password", "admin")
        page.click("button[type=submit]")
        page.wait_for_selector("tbody tr[data-job]", timeout=60_000)
        for _ in range(count):
            page.goto(f"{gateway}/console/#/jobs")
            page.reload()
            record("load: first 50 rows", wait_ms(page, f"{ROWS}.length === 50"))
            record("load: every strip filled", wait_ms(page, "!document.querySelector('.strip.muted')"))
            record(
                "filter name (100 match)",
                filter_ms(
                    page,
                    type_into("input[name=name]", "bench-job-019"),
                    all_rows("r.dataset.job.includes('bench-job-019')", 50, 'name:"bench-job-019"'),
                ),
            )
            record(
                "filter name+label (10 match)",
                filter_ms(
                    page,
                    type_into("input[name=label]", "team=t3"),
                    all_rows(
                        "r.dataset.job.includes('bench-job-019')", 10, 'name:"bench-job-019" AND labels.team="t3"'
                    ),
                ),
            )
            page.evaluate(type_into("input[name=name]", ""))
            page.evaluate(type_into("input[name=label]", ""))
            wait_ms(page, f"document.querySelector('table.jobs').dataset.filter === '' && {ROWS}.length === 50")
            record(
                "filter label only (200 match)",
                filter_ms(
                    page,
                    type_into("input[name=label]", "team=t7"),
                    all_rows("Number(r.dataset.job.slice(-1)) === 7", 50, 'labels.team="t7"'),
                ),
            )
            record(
                "filter label+state=FAILED (0)",
                filter_ms(
                    page,
                    choose("select[name=state]", "FAILED"),
                    f"{SHOWN} === {FAILED_T7!r} && document.querySelector('.empty')",
                ),
            )
            page.evaluate(choose("select[name=state]", ""))
            page.evaluate(type_into("input[name=label]", ""))
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with bench_mesh(workers=1) as mesh:
        asyncio.run(populate(BENCH_ENV["TASKMESH_API_ADDRESS"], args.jobs))
        time.sleep(3)  # let the runs finish, so the strips show settled states
        gateway = f"http://127.0.0.1:{mesh.settings.gateway_port}"
        results = rounds(gateway, args.rounds)
    print(f"\nconsole jobs list, {args.jobs} jobs, {args.rounds} rounds (ms, Chromium page time)")
    for name, values in results.items():
        line = f"  {name:32s} median {statistics.median(values):7.0f}  worst {max(values):7.0f}"
        if name.startswith("filter"):
            line += f"   (server+render: median {statistics.median(values) - DEBOUNCE_MS:5.0f})"
        print(line)


if __name__ == "__main__":
    main()
