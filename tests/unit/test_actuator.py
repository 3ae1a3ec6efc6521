"""The actuator documents (from a health snapshot), its HTTP routes, and the aggregate of the
api_server's metrics with the schedulers'."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

from api_server.actuator import Actuator, ScrapeTarget, aggregate, health, liveness, readiness
from taskmesh.health import CheckResult, Snapshot
from taskmesh.metrics import parse_exposition

STALE = 10.0
BROKER_UP = CheckResult(True, {"queue": "q", "messages": 0, "consumers": 2})


def _snapshot(serving: bool = True, age: float = 0.0, **results: CheckResult) -> Snapshot:
    everything = {
        "database": CheckResult(True),
        "cache": CheckResult(True),
        "broker": BROKER_UP,
        "scheduler": CheckResult(True, {"grpc": "SERVING"}),
        **results,
    }
    return Snapshot(everything, serving, time.monotonic() - age)


def test_everything_reachable_is_up_with_every_component() -> None:
    status, document = health(_snapshot(), STALE)
    assert status == 200 and document["status"] == "UP"
    components = document["components"]
    assert set(components) == {"database", "broker", "cache", "api_server", "scheduler", "workers"}
    assert all(c["status"] == "UP" for c in components.values())
    assert components["workers"]["details"]["count"] == 2
    assert components["broker"]["details"]["consumers"] == 2


def test_a_dependency_away_makes_health_down_with_its_reason() -> None:
    status, document = health(_snapshot(cache=CheckResult(False, {"error": "ConnectionError: refused"})), STALE)
    assert status == 503 and document["status"] == "DOWN"
    assert document["components"]["cache"] == {"status": "DOWN", "details": {"error": "ConnectionError: refused"}}
    assert document["components"]["database"]["status"] == "UP"
    assert readiness(_snapshot(cache=CheckResult(False)), STALE)[0] == 200  # the cache is not needed to serve


def test_no_database_means_not_ready_and_the_api_server_down() -> None:
    snapshot = _snapshot(serving=False, database=CheckResult(False, {"error": "refused"}))
    status, document = readiness(snapshot, STALE)
    assert status == 503 and document["components"]["database"]["status"] == "DOWN"
    components = health(snapshot, STALE)[1]["components"]
    assert components["api_server"] == {"status": "DOWN", "details": {"grpc": "NOT_SERVING"}}
    assert liveness(snapshot, STALE) == (200, {"status": "UP"})  # the process itself is fine


def test_workers_follow_the_work_queue_consumers() -> None:
    idle = health(_snapshot(broker=CheckResult(True, {"consumers": 0})), STALE)
    assert idle[0] == 503 and idle[1]["components"]["workers"]["status"] == "DOWN"
    unknown = health(_snapshot(broker=CheckResult(False, {"error": "x"})), STALE)[1]["components"]["workers"]
    assert unknown["status"] == "DOWN" and "broker" in unknown["details"]["error"]


def test_a_monitor_that_stopped_checking_fails_liveness() -> None:
    stale = _snapshot(age=STALE + 1)
    assert liveness(stale, STALE) == (503, {"status": "DOWN"})
    assert health(stale, STALE)[0] == 503 and readiness(stale, STALE)[0] == 503


def _call(app: Actuator, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": ""}, start_response))
    return seen["status"], seen["headers"], body


def test_routes_answer_with_status_codes_and_json() -> None:
    snapshot = _snapshot(cache=CheckResult(False))
    app = Actuator(lambda: snapshot, STALE, "api:9101", lambda: [], CollectorRegistry())
    status, headers, body = _call(app, "/actuator/health")
    assert status.startswith("503") and headers["Content-Type"] == "application/json"
    assert json.loads(body)["components"]["cache"]["status"] == "DOWN"
    assert _call(app, "/actuator/health/readiness/")[0].startswith("200")
    assert _call(app, "/actuator/health/liveness")[0].startswith("200")
    assert "/actuator/prometheus" in json.loads(_call(app, "/actuator")[2])["_links"]
    assert _call(app, "/actuator/nothing")[0].startswith("404")
    assert _call(app, "/actuator/health", "POST")[0].startswith("405")


def _scheduler_exposition() -> str:
    registry = CollectorRegistry()
    Counter("taskmesh_runs_finished", "runs", ["state"], registry=registry).labels("SUCCEEDED").inc(4)
    Histogram("grpc_server_handling_seconds", "rpc", ["grpc_method"], registry=registry).labels("Connect").observe(
        2
    )
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_the_aggregate_labels_each_process_and_merges_families() -> None:
    local = CollectorRegistry()
    Histogram("grpc_server_handling_seconds", "rpc", ["grpc_method"], registry=local).labels("GetJob").observe(
        0.01
    )
    targets = [
        ScrapeTarget("scheduler", "10.0.0.1:9102", "http://10.0.0.1:9102/metrics"),
        ScrapeTarget("scheduler", "10.0.0.2:9102", "http://10.0.0.2:9102/metrics"),
    ]

    def fetch(url: str) -> str:
        if "10.0.0.2" in url:
            raise httpx.ConnectError("refused")
        return _scheduler_exposition()

    text = aggregate(local, "api:9101", targets, fetch).decode()
    families = {f.name: f for f in parse_exposition(text)}  # valid exposition format
    latency = families["grpc_server_handling_seconds"]
    counts = {
        (s.labels["process"], s.labels["grpc_method"]): s.value
        for s in latency.samples
        if s.name.endswith("_count")
    }
    assert counts == {("api_server", "GetJob"): 1.0, ("scheduler", "Connect"): 1.0}
    finished = families["taskmesh_runs_finished"].samples
    assert [(s.labels["instance"], s.value) for s in finished] == [("10.0.0.1:9102", 4.0)]
    up = {s.labels["instance"]: s.value for s in families["taskmesh_aggregate_up"].samples}
    assert up == {"api:9101": 1.0, "10.0.0.1:9102": 1.0, "10.0.0.2:9102": 0.0}
