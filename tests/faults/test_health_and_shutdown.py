"""Health follows the dependencies (this mesh's own Redis and database are taken away), and
SIGTERM stops workers and schedulers without losing anything."""

from __future__ import annotations

import json
import signal
from typing import Any

import grpc
import httpx
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers
from tests.support import PG_ADMIN_URL, Isolation, PrivateRedis, free_port, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _gateway(mesh: Mesh) -> str:
    return f"http://127.0.0.1:{mesh.settings.gateway_port}"


def _answer(mesh: Mesh, path: str, status: int) -> httpx.Response:
    """Wait until the gateway answers `path` with `status`."""
    url = f"{_gateway(mesh)}{path}"

    def answered() -> httpx.Response | None:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.TransportError:  # e.g. a slow answer while the dependency comes back
            return None
        return response if response.status_code == status else None

    return wait_for(
        answered,
        timeout=30,
        interval=0.2,
        message=f"{path} to answer {status}",
    )


def _grpc_status(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return None


def _log(mesh: Mesh, process: str) -> list[dict[str, Any]]:
    assert mesh.log_dir is not None
    lines = (mesh.log_dir / f"{process}.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _logged(mesh: Mesh, process: str, text: str) -> bool:
    assert mesh.log_dir is not None
    started = (mesh.log_dir / f"{process}.log").exists()
    return started and any(text in entry["message"] for entry in _log(mesh, process))


def test_without_the_cache_health_is_down_with_the_reason_and_readiness_stays_up(
    fault_mesh: Mesh, private_redis: PrivateRedis
) -> None:
    ensure_workers(fault_mesh)
    _answer(fault_mesh, "/actuator/health", 200)
    private_redis.stop()
    try:
        document = _answer(fault_mesh, "/actuator/health", 503).json()
        assert document["status"] == "DOWN"
        cache = document["components"]["cache"]
        assert cache["status"] == "DOWN" and cache["details"]["error"]
        assert document["components"]["database"]["status"] == "UP"
        assert document["components"]["api_server"]["status"] == "UP"
        assert httpx.get(f"{_gateway(fault_mesh)}/actuator/health/readiness").status_code == 200
    finally:
        private_redis.start()
    _answer(fault_mesh, "/actuator/health", 200)


def test_without_the_database_the_servers_stop_serving_and_readiness_is_down(
    fault_mesh: Mesh, isolation: Isolation
) -> None:
    ensure_workers(fault_mesh)
    _answer(fault_mesh, "/actuator/health", 200)
    settings = fault_mesh.settings
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{isolation.database}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (isolation.database,)
            )
            readiness = _answer(fault_mesh, "/actuator/health/readiness", 503).json()
            assert readiness["components"]["database"]["status"] == "DOWN"
            assert readiness["components"]["database"]["details"]["error"]
            for address in (settings.api_address, settings.scheduler_address):
                wait_for(
                    lambda a=address: _grpc_status(a) == NOT_SERVING, timeout=20, message=f"{address} NOT_SERVING"
                )

            def both_down() -> dict | None:  # the actuator polls the servers' health in the background
                document = _answer(fault_mesh, "/actuator/health", 503).json()
                components = document["components"]
                down = components["api_server"]["status"] == components["scheduler"]["status"] == "DOWN"
                return document if down else None

            document = wait_for(both_down, timeout=30, message="the actuator to see both servers DOWN")
            assert document["status"] == "DOWN"
            assert document["components"]["api_server"] == {"status": "DOWN", "details": {"grpc": "NOT_SERVING"}}
            assert httpx.get(f"{_gateway(fault_mesh)}/actuator/health/liveness").status_code == 200
        finally:
            admin.execute(f'ALTER DATABASE "{isolation.database}" ALLOW_CONNECTIONS true')
    _answer(fault_mesh, "/actuator/health/readiness", 200)
    for address in (settings.api_address, settings.scheduler_address):
        wait_for(lambda a=address: _grpc_status(a) == SERVING, timeout=20, message=f"{address} SERVING again")
    _answer(fault_mesh, "/actuator/health", 200)
    login = {"username": "admin", "password": "admin"}

    def logged_in() -> bool:
        try:
            return httpx.post(f"{_gateway(fault_mesh)}/api/auth/login", json=login, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    # Envoy routes to the api_server again once its own health check saw it SERVING
    wait_for(logged_in, message="the gateway to route to the api_server again")


def _worker_gauges(mesh: Mesh, name: str) -> dict[str, float]:
    text = httpx.get(f"http://{mesh.worker_listens[name].metrics}/metrics", timeout=5).text
    return {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taskmesh_worker_")
    }


def test_sigterm_finishes_the_running_attempt_hands_back_the_rest_and_exits_0(
    api: httpx.Client, fault_mesh: Mesh
) -> None:
    for name, process in list(fault_mesh.processes.items()):  # the victim must hold the work alone
        if name.startswith("worker") and process.alive():
            assert process.stop() == 0
    victim_process = fault_mesh.start_worker({"TASKMESH_WORKER_SLOTS": "1", "TASKMESH_WORKER_PREFETCH_EXTRA": "4"})
    victim = victim_process.name
    wait_for(
        lambda: _grpc_status(fault_mesh.worker_listens[victim].health) == SERVING, message="the victim consuming"
    )

    job = create_job(api, "graceful", {"sleep": {"seconds": 3}})
    run_ids = [trigger(api, job["id"])["id"] for _ in range(5)]
    wait_for(
        lambda: (
            (g := _worker_gauges(fault_mesh, victim))["taskmesh_worker_busy_slots"] == 1
            and g["taskmesh_worker_waiting_work_units"] == 4
        ),
        message="the victim running one attempt and holding four work units",
    )
    running = [r for r in (api.get(f"/api/runs/{i}").json() for i in run_ids) if r["state"] == "RUNNING"]
    assert [r["workerId"] for r in running] == [victim]

    victim_process.signal(signal.SIGTERM)
    wait_for(
        lambda: _grpc_status(fault_mesh.worker_listens[victim].health) != SERVING,
        message="the stopping worker to say NOT_SERVING",
    )
    rescuer = fault_mesh.start_worker().name
    assert victim_process.popen is not None and victim_process.popen.wait(60) == 0

    finished = {run_id: wait_run_terminal(api, run_id, timeout=60) for run_id in run_ids}
    assert {run["state"] for run in finished.values()} == {"SUCCEEDED"}
    executed_by_victim = finished[running[0]["id"]]
    assert executed_by_victim["workerId"] == victim and len(executed_by_victim["attempts"]) == 1
    others = [run for run_id, run in finished.items() if run_id != running[0]["id"]]
    assert [(run["workerId"], run["attempt"], len(run["attempts"])) for run in others] == [(rescuer, 1, 1)] * 4
    messages = [entry["message"] for entry in _log(fault_mesh, victim)]
    assert "handed back 4 work units not started yet" in messages


def test_a_stopped_scheduler_ends_worker_streams_cleanly_and_work_goes_on_elsewhere(
    api: httpx.Client, fault_mesh: Mesh
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "scheduler-stop", {"sleep": {"seconds": 2}})
    run = trigger(api, job["id"])
    worker = wait_for(
        lambda: (r := api.get(f"/api/runs/{run['id']}").json())["state"] == "RUNNING" and r["workerId"],
        message="the run RUNNING",
    )
    name, scheduler = next(
        (n, p) for n, p in fault_mesh.processes.items() if n.startswith("scheduler") and p.alive()
    )
    # The replacement listens beside it (gRPC binds with SO_REUSEPORT) before the old one stops,
    # so that the worker finds a scheduler within its 3 s lease even on a loaded machine.
    replacement = f"{name}-next"
    fault_mesh.start_scheduler(replacement, {"TASKMESH_SCHEDULER_METRICS_LISTEN": f"127.0.0.1:{free_port()}"})
    wait_for(
        lambda: _logged(fault_mesh, replacement, "listening on"),
        timeout=60,
        message="the replacement scheduler listening",
    )
    scheduler.signal(signal.SIGTERM)
    assert scheduler.popen is not None and scheduler.popen.wait(30) == 0
    after_stop = _log(fault_mesh, name)
    stopping = next(i for i, e in enumerate(after_stop) if e["message"].startswith("scheduler stopping"))
    assert not [e for e in after_stop[stopping:] if e.get("method") == "/taskmesh.v1.WorkerService/Connect"]  # OK

    final = wait_run_terminal(api, run["id"], timeout=60)
    assert final["state"] == "SUCCEEDED" and final["attempt"] == 1 and final["workerId"] == worker
    assert any("closed the stream" in e["message"] for e in _log(fault_mesh, worker))
