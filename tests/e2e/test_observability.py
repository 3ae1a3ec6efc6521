"""Operating the mesh: actuator health and aggregated metrics through Envoy, each worker's
metrics and health server, and request ids from the gateway in the servers' logs."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskmesh.broker.amqp import AmqpConnection
from taskmesh.healthcheck import main as healthcheck
from taskmesh.launcher import Mesh
from taskmesh.metrics import parse_exposition
from taskmesh.names import WORK_ROUTING_KEY, Names
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.support import Isolation, wait_for

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def _samples(text: str) -> Samples:
    found: Samples = defaultdict(list)
    for family in parse_exposition(text):
        for sample in family.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def _total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))


def test_health_is_up_with_every_dependency_through_the_gateway(gateway: str) -> None:
    response = wait_for(
        lambda: (r := httpx.get(f"{gateway}/actuator/health")).status_code == 200 and r,
        timeout=30,
        message="/actuator/health to be UP",
    )
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["status"] == "UP"
    components = document["components"]
    assert set(components) == {"database", "broker", "cache", "api_server", "scheduler", "workers"}
    assert all(component["status"] == "UP" for component in components.values())
    assert components["workers"]["details"]["count"] >= 1
    assert components["scheduler"]["details"]["grpc"] == "SERVING"
    for probe in ("liveness", "readiness"):
        answer = httpx.get(f"{gateway}/actuator/health/{probe}")
        assert answer.status_code == 200 and answer.json()["status"] == "UP"
    assert httpx.get(f"{gateway}/actuator/nope").status_code == 404


def test_each_worker_answers_the_grpc_health_service(mesh: Mesh) -> None:
    workers = {name: listens for name, listens in mesh.worker_listens.items() if mesh.processes[name].alive()}
    assert len({listens.health for listens in workers.values()}) == len(workers) >= 2  # a port each

    def serving(address: str) -> bool:
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    for listens in workers.values():
        wait_for(lambda address=listens.health: serving(address), timeout=20, message=f"{listens.health} SERVING")
        assert healthcheck([listens.health]) == 0  # what the containers' health checks run


async def _publish_garbage(names: Names) -> None:
    connection = await AmqpConnection.open(AMQP)
    channel = await connection.channel()
    await channel.enable_confirms()
    await channel.publish_confirmed(names.work_exchange, WORK_ROUTING_KEY, [b"\x00not a work unit"], "junk")
    await connection.close()


def test_metrics_after_a_few_runs(
    api: httpx.Client,
    gateway: str,
    mesh: Mesh,
    e2e_isolation: Isolation,
    target_server: tuple[str, dict[str, int]],
) -> None:
    noop = create_job(api, "metrics-noop", {"noop": {}})
    failing = create_job(
        api, "metrics-fail", {"http": {"url": f"{target_server[0]}/fail-metrics"}}, retryPolicy={"maxAttempts": 1}
    )
    runs = [trigger(api, noop["id"])["id"] for _ in range(3)] + [trigger(api, failing["id"])["id"]]
    states = [wait_run_terminal(api, run_id)["state"] for run_id in runs]
    assert states == ["SUCCEEDED"] * 3 + ["FAILED"]
    for _ in range(2):
        assert api.get(f"/api/jobs/{noop['id']}/status").status_code == 200  # the cache has it
    asyncio.run(_publish_garbage(Names(e2e_isolation.namespace)))

    def aggregated() -> Samples | None:
        samples = _samples(httpx.get(f"{gateway}/actuator/prometheus").text)
        dead = _total(samples, "taskmesh_queue_messages", queue=Names(e2e_isolation.namespace).dead_letter_queue)
        return (
            samples if dead >= 1 and _total(samples, "taskmesh_runs_finished_total", state="FAILED") >= 1 else None
        )

    samples = wait_for(
        aggregated, timeout=30, interval=0.5, message="the aggregate to show the runs and the dead letter"
    )
    # runs by terminal state and executor, latencies (scheduler)
    assert _total(samples, "taskmesh_runs_finished_total", state="SUCCEEDED", executor="noop") >= 3
    assert _total(samples, "taskmesh_runs_finished_total", state="FAILED", executor="http") >= 1
    assert _total(samples, "taskmesh_run_trigger_to_start_seconds_count", executor="noop") >= 3
    assert 0 < _total(samples, "taskmesh_run_trigger_to_start_seconds_sum", executor="noop") < 60
    assert _total(samples, "taskmesh_attempt_execution_seconds_count", executor="http", state="FAILED") >= 1
    # queue, outbox, leases, workers (scheduler)
    work_queue = Names(e2e_isolation.namespace).work_queue
    assert _total(samples, "taskmesh_queue_consumers", queue=work_queue) >= 1
    assert "taskmesh_outbox_backlog" in samples and "taskmesh_active_leases" in samples
    assert _total(samples, "taskmesh_active_leases") >= 0
    assert _total(samples, "taskmesh_workers_connected", process="scheduler") >= 1
    assert _total(samples, "taskmesh_connected_worker_slots") >= 16
    assert "taskmesh_connected_worker_busy_slots" in samples
    assert "taskmesh_schedule_fire_lag_seconds_count" in samples
    # RPCs by method and code with latencies, on both servers
    assert (
        _total(
            samples, "grpc_server_handled_total", process="api_server", grpc_method="TriggerJob", grpc_code="OK"
        )
        >= 4
    )
    assert (
        _total(samples, "grpc_server_handling_seconds_count", process="api_server", grpc_method="TriggerJob") >= 4
    )
    assert (
        _total(samples, "grpc_server_handled_total", process="scheduler", grpc_method="Check", grpc_code="OK") >= 1
    )
    # the status cache
    assert _total(samples, "taskmesh_status_cache_lookups_total", result="hit") >= 1
    assert 0 < _total(samples, "taskmesh_status_cache_hit_ratio") <= 1
    assert {labels["process"] for labels, up in samples["taskmesh_aggregate_up"] if up == 1} == {
        "api_server",
        "scheduler",
    }

    # each worker's own endpoint: dead-lettered work units, executed attempts
    workers = [
        _samples(httpx.get(f"http://{listens.metrics}/metrics").text)
        for listens in mesh.worker_listens.values()
        if listens.metrics
    ]
    assert sum(_total(w, "taskmesh_worker_dead_lettered_total") for w in workers) >= 1
    assert sum(_total(w, "taskmesh_worker_executed_total") for w in workers) >= 4
    assert all(_total(w, "taskmesh_worker_consuming") == 1 for w in workers)


def _log_entries(mesh: Mesh, process: str) -> list[dict[str, Any]]:
    assert mesh.log_dir is not None
    lines = (mesh.log_dir / f"{process}.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_gateways_request_id_is_in_the_server_logs(api: httpx.Client, mesh: Mesh) -> None:
    job = create_job(api, "request-id", {"sleep": {"seconds": 30}})
    run = trigger(api, job["id"])
    cancel = api.post(f"/api/runs/{run['id']}:cancel")
    assert cancel.status_code == 200, cancel.text
    request_id = cancel.headers["x-request-id"]  # Envoy made it up and passed it on
    missing = api.get("/api/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404

    def logged() -> list[dict[str, Any]]:
        return [
            e
            for e in _log_entries(mesh, "api_server")
            if e.get("request_id") in (request_id, missing.headers["x-request-id"])
        ]

    entries = wait_for(
        lambda: len(found := logged()) >= 2 and found, timeout=20, message="the request ids in the log"
    )
    cancelled = [e for e in entries if e["request_id"] == request_id]
    assert cancelled and cancelled[0]["run_id"] == run["id"] and cancelled[0]["job_id"] == job["id"]
    failure = [e for e in entries if e["request_id"] == missing.headers["x-request-id"]]
    assert failure == [
        {**failure[0], "message": "rpc /taskmesh.v1.JobService/GetJob failed: NOT_FOUND", "code": "NOT_FOUND"}
    ]
    assert failure[0]["method"] == "/taskmesh.v1.JobService/GetJob"
    wait_run_terminal(api, run["id"])
