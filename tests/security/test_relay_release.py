"""Finding 13: when the relay's RabbitMQ connection breaks, the outbox rows it was publishing
are released at once (not left leased for 30 s), so runs flow again as soon as it reconnects."""

from __future__ import annotations

import threading

import httpx
import psycopg

from taskmesh.launcher import Mesh
from tests.e2e.helpers import create_job, trigger
from tests.support import Isolation, close_rabbitmq_connections, wait_for

BURST = 150
# Well below the outbox lease (30 s): rows left leased by a failed publish would still be there.
DRAINED_WITHIN = 15.0


def _outbox_rows(isolation: Isolation) -> int:
    with psycopg.connect(isolation.libpq_url) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])  # type: ignore[index]


def _succeeded(isolation: Isolation, job_id: str) -> int:
    with psycopg.connect(isolation.libpq_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE job_id = %s AND state = 'SUCCEEDED'", (job_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_broken_relay_connection_releases_its_rows_at_once(
    api: httpx.Client, mesh: Mesh, isolation: Isolation
) -> None:
    job = create_job(api, "relay-release", {"noop": {}})
    run_ids = [trigger(api, job["id"])["id"]]
    wait_for(lambda: _succeeded(isolation, job["id"]) == 1, timeout=30, message="a first run")

    stop = threading.Event()

    def burst() -> None:
        while not stop.is_set() or len(run_ids) < BURST:
            run_ids.append(trigger(api, job["id"])["id"])

    burster = threading.Thread(target=burst)
    burster.start()
    try:
        closed = [close_rabbitmq_connections(isolation.namespace, "relay") for _ in range(2)]
        # a few more after the last cut, so that a batch is taken after it whatever happens
        for _ in range(5):
            run_ids.append(trigger(api, job["id"])["id"])
    finally:
        stop.set()
        burster.join()
    assert all(closed)  # the relay's connection really was cut, twice
    # From here on no row may stay leased by a relay whose publish failed.
    wait_for(lambda: _outbox_rows(isolation) == 0, timeout=DRAINED_WITHIN, message="the outbox to drain")
    wait_for(
        lambda: _succeeded(isolation, job["id"]) == len(run_ids),
        timeout=60,
        interval=0.2,
        message=f"{len(run_ids)} runs SUCCEEDED",
    )
    assert mesh.log_dir is not None
    assert "outbox relay interrupted" in (mesh.log_dir / "scheduler.log").read_text()
