"""Flow control through the gateway: priorities, a concurrency limit with its waiting reason,
ListConcurrencyKeys, SKIP, update and bad input (README "Flow control")."""

import httpx

from tests.e2e.helpers import create_job, trigger, unique, wait_run_terminal
from tests.support import wait_for


def test_a_full_key_makes_runs_wait_with_a_reason_until_a_slot_frees(api: httpx.Client) -> None:
    key = unique("e2e-key")
    job = create_job(api, "limited", {"sleep": {"seconds": 1}}, priority=7, concurrency={"key": key, "limit": 1})
    assert job["priority"] == 7 and job["concurrency"] == {"key": key, "limit": 1, "onLimit": "QUEUE"}
    assert trigger(api, create_job(api, "free", {"noop": {}})["id"])["waitingReason"] == ""
    first, second = trigger(api, job["id"]), trigger(api, job["id"])
    assert first["priority"] == 7 and second["waitingReason"].startswith("CONCURRENCY_LIMIT: ")

    def waiting() -> dict | None:
        run = api.get(f"/api/runs/{second['id']}").json()
        # the admission pass renders the key (concurrencyKey) within a pass of the trigger
        rendered = run.get("concurrencyKey") == key
        return run if rendered and run.get("waitingReason", "").startswith("CONCURRENCY_LIMIT: key") else None

    run = wait_for(waiting, timeout=30, message="the second run waiting for the slot")
    assert run["waitingReason"] == f"CONCURRENCY_LIMIT: key {key} has 1 of 1 active"
    assert run["state"] == "QUEUED" and run["concurrencyKey"] == key
    keys = api.get("/api/concurrency-keys", params={"prefix": key}).json()["keys"]
    assert keys == [{"key": key, "active": 1, "waiting": 1, "limit": 1}]
    assert wait_run_terminal(api, first["id"])["state"] == "SUCCEEDED"
    final = wait_run_terminal(api, second["id"])
    assert final["state"] == "SUCCEEDED"
    assert final["startTime"] >= api.get(f"/api/runs/{first['id']}").json()["finishTime"]
    assert api.get("/api/concurrency-keys", params={"prefix": key}).json().get("keys", []) == []


def test_skip_ends_a_run_whose_key_is_full(api: httpx.Client) -> None:
    job = create_job(
        api,
        "skipping",
        {"sleep": {"seconds": 2}},
        concurrency={"key": unique("skip"), "limit": 1, "onLimit": "SKIP"},
    )
    first, skipped = trigger(api, job["id"]), trigger(api, job["id"])
    assert first["state"] == "QUEUED"
    assert skipped["state"] == "CANCELLED"  # the trigger's own answer: skipped at once
    assert skipped["error"]["kind"] == "NOT_ADMITTED" and skipped["error"]["message"].startswith("SKIPPED:")
    assert api.get(f"/api/runs/{skipped['id']}").json()["state"] == "CANCELLED"
    assert wait_run_terminal(api, first["id"])["state"] == "SUCCEEDED"


def test_trigger_priority_override_and_updates(api: httpx.Client) -> None:
    job = create_job(api, "prioritised", {"noop": {}})
    assert job["priority"] == 5
    response = api.post(f"/api/jobs/{job['id']}/trigger", json={"priority": 9})
    assert response.status_code == 200 and response.json()["priority"] == 9
    updated = api.patch(
        f"/api/jobs/{job['id']}",
        params={"updateMask": "priority,rate_limit"},
        json={"priority": 1, "rateLimit": {"limit": 5, "period": "1s"}},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["priority"] == 1
    assert updated.json()["rateLimit"] == {"key": "", "limit": 5, "period": "1s"}
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED" and run["rateLimitKey"] == f"job:{job['id']}"
    cleared = api.patch(f"/api/jobs/{job['id']}", params={"updateMask": "rate_limit"}, json={})
    assert "rateLimit" not in cleared.json()


def test_bad_flow_control_input_is_a_400_naming_the_field(api: httpx.Client) -> None:
    cases = [
        ({"priority": 10}, "job.priority"),
        ({"concurrency": {"limit": 0}}, "job.concurrency.limit"),
        ({"concurrency": {"key": "{{ broken", "limit": 1}}, "job.concurrency.key"),
        ({"rateLimit": {"limit": 1}}, "job.rate_limit.period"),
    ]
    for fields, field in cases:
        response = api.post("/api/jobs", json={"name": unique("bad"), "executor": {"noop": {}}, **fields})
        assert response.status_code == 400, (fields, response.text)
        assert response.json()["message"].startswith(field)
    job = create_job(api, "bad-trigger", {"noop": {}})
    response = api.post(f"/api/jobs/{job['id']}/trigger", json={"priority": -1})
    assert response.status_code == 400 and response.json()["message"].startswith("priority")
    assert api.get("/api/concurrency-keys", params={"pageToken": "nope"}).status_code == 400
