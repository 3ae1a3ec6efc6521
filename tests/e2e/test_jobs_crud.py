"""Jobs CRUD, listing with filters and pages, runs listing, through REST."""

import httpx

from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal


def test_get_update_delete(api: httpx.Client) -> None:
    job = create_job(api, "crud", {"noop": {}}, description="first", labels={"team": "data"})
    assert api.get(f"/api/jobs/{job['id']}").json()["description"] == "first"

    patched = api.patch(
        f"/api/jobs/{job['id']}",
        params={"updateMask": "description"},
        json={"description": "second", "name": "ignored"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "second"
    assert patched.json()["name"] == job["name"]  # not in the mask
    assert patched.json()["updateTime"] > job["updateTime"]

    replaced = api.patch(f"/api/jobs/{job['id']}", json={"executor": {"sleep": {"seconds": 0.1}}})
    assert replaced.json()["executor"] == {"sleep": {"seconds": 0.1}}
    assert replaced.json()["labels"] == {"team": "data"}

    assert api.delete(f"/api/jobs/{job['id']}").status_code == 200
    assert api.get(f"/api/jobs/{job['id']}").status_code == 404


def test_list_filters_and_pages(api: httpx.Client) -> None:
    marker = unique("page")
    created = [create_job(api, f"{marker}-{i}", {"noop": {}}, labels={"batch": marker}) for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = api.get(
            "/api/jobs", params={"filter": f"labels.batch={marker}", "pageSize": 2, "pageToken": token}
        ).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == [j["id"] for j in created]
    by_name = api.get("/api/jobs", params={"filter": f'name:"{marker}-3"'}).json()["jobs"]
    assert [j["id"] for j in by_name] == [created[3]["id"]]


def test_filter_jobs_by_last_run_state(api: httpx.Client, target_server: tuple[str, dict]) -> None:
    base, _ = target_server
    marker = unique("state")
    good = create_job(api, f"{marker}-good", {"noop": {}}, labels={"batch": marker})
    bad = create_job(api, f"{marker}-bad", {"http": {"url": f"{base}/fail-state"}}, labels={"batch": marker})
    wait_run_terminal(api, trigger(api, good["id"])["id"])
    wait_run_terminal(api, trigger(api, bad["id"])["id"])
    failed = api.get("/api/jobs", params={"filter": f"labels.batch={marker} AND state=FAILED"}).json()["jobs"]
    assert [j["id"] for j in failed] == [bad["id"]]


def test_runs_listed_newest_first_per_job_and_globally(api: httpx.Client) -> None:
    job = create_job(api, "runs", {"noop": {}})
    run_ids = [trigger(api, job["id"])["id"] for _ in range(3)]
    for run_id in run_ids:
        wait_run_terminal(api, run_id)
    listed = api.get(f"/api/jobs/{job['id']}/runs").json()["runs"]
    assert [r["id"] for r in listed] == list(reversed(run_ids))
    succeeded = api.get(
        "/api/runs", params={"jobId": job["id"], "filter": "state=SUCCEEDED", "pageSize": 2}
    ).json()
    assert [r["id"] for r in succeeded["runs"]] == list(reversed(run_ids))[:2]
    assert succeeded["nextPageToken"]


def test_batch_trigger_starts_every_run_in_order(api: httpx.Client) -> None:
    first = create_job(api, "batch-a", {"noop": {}})
    second = create_job(api, "batch-b", {"noop": {}})
    requests = [{"id": first["id"]}, {"id": second["id"]}, {"id": first["id"], "idempotencyKey": "once"}]
    response = api.post("/api/jobs:batchTrigger", json={"requests": requests})
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert [r["jobId"] for r in runs] == [first["id"], second["id"], first["id"]]
    assert len({r["id"] for r in runs}) == 3
    for run in runs:
        assert wait_run_terminal(api, run["id"])["state"] == "SUCCEEDED"
    again = api.post("/api/jobs:batchTrigger", json={"requests": [{"id": first["id"], "idempotencyKey": "once"}]})
    assert again.json()["runs"][0]["id"] == runs[2]["id"]


def test_batch_trigger_with_an_unknown_job_creates_nothing(api: httpx.Client) -> None:
    job = create_job(api, "batch-none", {"noop": {}})
    missing = "01a21a18-3bc8-7342-ba21-baae2f33716d"
    response = api.post("/api/jobs:batchTrigger", json={"requests": [{"id": job["id"]}, {"id": missing}]})
    assert response.status_code == 404 and missing in response.json()["message"]
    assert api.get(f"/api/jobs/{job['id']}/runs").json()["runs"] == []
    empty = api.post("/api/jobs:batchTrigger", json={"requests": []})
    assert empty.status_code == 400 and empty.json()["message"].startswith("requests:")
    bad = api.post("/api/jobs:batchTrigger", json={"requests": [{"id": "nope"}]})
    assert bad.status_code == 400 and bad.json()["message"].startswith("requests[0].id:")


def test_a_log_page_token_only_pages_its_own_run(api: httpx.Client) -> None:
    script = "i=0; while [ $i -lt 5 ]; do echo line-$i; i=$((i+1)); done"
    job = create_job(api, "paged-logs", {"shell": {"argv": ["sh", "-c", script]}})
    one = wait_run_terminal(api, trigger(api, job["id"])["id"])
    other = wait_run_terminal(api, trigger(api, job["id"])["id"])
    page = api.get(f"/api/runs/{one['id']}/logs", params={"pageSize": 2}).json()
    assert [line["text"] for line in page["lines"]] == ["line-0", "line-1"]
    token = page["nextPageToken"]
    rest = api.get(f"/api/runs/{one['id']}/logs", params={"pageSize": 10, "pageToken": token}).json()
    assert [line["text"] for line in rest["lines"]] == ["line-2", "line-3", "line-4"]
    foreign = api.get(f"/api/runs/{other['id']}/logs", params={"pageToken": token})
    assert foreign.status_code == 400 and foreign.json()["message"].startswith("page_token:")


def test_retention_is_set_shown_updated_cleared_and_validated(api: httpx.Client) -> None:
    job = create_job(api, "kept", {"noop": {}}, retention={"failed": "7776000s", "logs": "0s"})
    assert api.get(f"/api/jobs/{job['id']}").json()["retention"] == {"failed": "7776000s", "logs": "0s"}
    patched = api.patch(
        f"/api/jobs/{job['id']}", params={"updateMask": "retention"}, json={"retention": {"succeeded": "86400s"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["retention"] == {"succeeded": "86400s"}
    cleared = api.patch(f"/api/jobs/{job['id']}", params={"updateMask": "retention"}, json={})
    assert "retention" not in cleared.json()
    bad = api.patch(
        f"/api/jobs/{job['id']}", params={"updateMask": "retention"}, json={"retention": {"cancelled": "60s"}}
    )
    assert bad.status_code == 400 and "job.retention.cancelled" in bad.json()["message"]
