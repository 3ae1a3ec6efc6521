"""Connection losses to RabbitMQ, PostgreSQL and Redis lose nothing and run nothing twice."""

import subprocess
import threading
import time
from collections import Counter

import httpx
import psycopg

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger, wait_run_terminal
from tests.faults.conftest import ensure_workers
from tests.support import PG_ADMIN_URL, EffectServer, Isolation, PrivateRedis, close_rabbitmq_connections, wait_for

BURST = 500


def _trigger_many(api: httpx.Client, job_id: str, count: int, threads: int = 8) -> list[str]:
    run_ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for _ in range(n):
            run_id = trigger(api, job_id)["id"]
            with lock:
                run_ids.append(run_id)

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return run_ids


def _terminal_counts(isolation: Isolation, job_id: str) -> Counter[str]:
    with psycopg.connect(isolation.libpq_url) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM runs WHERE job_id = %s GROUP BY state", (job_id,)
        ).fetchall()
    return Counter({state: count for state, count in rows})


def test_closing_broker_connections_during_a_burst_loses_and_doubles_nothing(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, effects: EffectServer
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "burst", {"http": {"url": f"{effects.base}/burst"}})
    closer_done = threading.Event()
    closed: list[int] = []

    def chaos() -> None:
        for _ in range(3):
            time.sleep(0.7)
            closed.append(close_rabbitmq_connections(isolation.namespace))
        closer_done.set()

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    run_ids = _trigger_many(api, job["id"], BURST)
    chaos_thread.join()
    assert sum(closed) > 0  # the chaos really cut connections

    wait_for(
        lambda: _terminal_counts(isolation, job["id"])["SUCCEEDED"] == BURST,
        timeout=120,
        interval=0.5,
        message=f"{BURST} runs SUCCEEDED",
    )
    hits = Counter(effects.runs_hit("/burst"))
    assert set(hits) == set(run_ids)  # every run had its effect ...
    assert max(hits.values()) == 1  # ... exactly once
    with psycopg.connect(isolation.libpq_url) as conn:
        retried = conn.execute(
            "SELECT attempts FROM runs WHERE job_id = %s AND jsonb_array_length(attempts) > 1", (job["id"],)
        ).fetchall()
    assert retried == []  # and no attempt was lost either


def test_a_database_outage_delays_runs_but_loses_none(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, effects: EffectServer
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "db-outage", {"http": {"url": f"{effects.base}/db-outage"}})
    run_ids = [trigger(api, job["id"])["id"] for _ in range(20)]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        # what clients see during a restart: every connection dropped, new ones refused
        admin.execute(f'ALTER DATABASE "{isolation.database}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (isolation.database,)
        )
        time.sleep(3)
        admin.execute(f'ALTER DATABASE "{isolation.database}" ALLOW_CONNECTIONS true')
    # The api_server said NOT_SERVING meanwhile and Envoy stopped routing to it: wait until both
    # have seen the database back.
    wait_for(lambda: api.get(f"/api/jobs/{job['id']}").status_code == 200, timeout=30, message="routing again")
    run_ids += [trigger(api, job["id"])["id"] for _ in range(20)]
    for run_id in run_ids:
        assert wait_run_terminal(api, run_id, timeout=90)["state"] == "SUCCEEDED"
    hits = Counter(effects.runs_hit("/db-outage"))
    assert set(hits) == set(run_ids) and max(hits.values()) == 1


def test_status_falls_back_to_postgresql_while_redis_is_down_and_the_cache_recovers(
    api: httpx.Client, fault_mesh: Mesh, private_redis: PrivateRedis
) -> None:
    ensure_workers(fault_mesh)
    job = create_job(api, "no-redis", {"noop": {}})
    private_redis.stop()
    try:
        run = wait_run_terminal(api, trigger(api, job["id"])["id"])
        status = api.get(f"/api/jobs/{job['id']}/status")
        assert status.status_code == 200
        assert status.json()["state"] == "SUCCEEDED" and status.json()["lastRun"]["id"] == run["id"]
    finally:
        private_redis.start()
    second = wait_run_terminal(api, trigger(api, job["id"])["id"])
    import redis

    cached = redis.Redis(port=private_redis.port)
    wait_for(
        lambda: cached.exists(f"{fault_mesh.settings.namespace}:job-status:{job['id']}"),
        timeout=10,
        message="the status cache to be written again",
    )
    assert api.get(f"/api/jobs/{job['id']}/status").json()["lastRun"]["id"] == second["id"]


def test_a_rabbitmq_restart_loses_nothing(
    api: httpx.Client, fault_mesh: Mesh, isolation: Isolation, effects: EffectServer
) -> None:
    """The broker itself goes down and comes back (queues and messages are durable)."""
    ensure_workers(fault_mesh)
    job = create_job(api, "broker-restart", {"http": {"url": f"{effects.base}/broker-restart"}})
    run_ids = [trigger(api, job["id"])["id"] for _ in range(20)]
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True)
    try:
        run_ids += [trigger(api, job["id"])["id"] for _ in range(20)]  # accepted: they wait in the outbox
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, capture_output=True)
    for run_id in run_ids:
        assert wait_run_terminal(api, run_id, timeout=90)["state"] == "SUCCEEDED"
    hits = Counter(effects.runs_hit("/broker-restart"))
    assert set(hits) == set(run_ids) and max(hits.values()) == 1
