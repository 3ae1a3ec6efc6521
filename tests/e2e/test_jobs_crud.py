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
