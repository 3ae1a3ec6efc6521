"""A work unit delivered twice runs once: the claim is fenced by state and attempt."""

import asyncio

import httpx
import psycopg

from taskmesh.broker.amqp import AmqpConnection
from taskmesh.launcher import Mesh
from taskmesh.names import WORK_ROUTING_KEY, Names
from taskmesh.v1 import worker_service_pb2
from tests.e2e.helpers import create_job, wait_run_terminal
from tests.support import Isolation, queue_counts, wait_for

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
WORK_UNIT = worker_service_pb2.WorkUnit.DESCRIPTOR.full_name


async def _publish(names: Names, bodies: list[bytes], message_type: str) -> None:
    connection = await AmqpConnection.open(AMQP)
    channel = await connection.channel()
    await channel.enable_confirms()
    await channel.publish_confirmed(names.work_exchange, WORK_ROUTING_KEY, bodies, message_type)
    await connection.close()


def _queued_run_without_outbox(isolation: Isolation, job_id: str) -> str:
    """A QUEUED run whose work unit the test publishes itself (instead of the relay)."""
    with psycopg.connect(isolation.libpq_url) as conn:
        row = conn.execute(
            """INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time)
               SELECT gen_random_uuid(), id, 'QUEUED', 1, 'MANUAL', executor, clock_timestamp()
               FROM jobs WHERE id = %s RETURNING id::text""",
            (job_id,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_the_same_work_unit_published_twice_runs_once(
    api: httpx.Client, mesh: Mesh, e2e_isolation: Isolation, target_server: tuple[str, dict]
) -> None:
    base, hits = target_server
    job = create_job(api, "twice", {"http": {"url": f"{base}/twice"}})
    run_id = _queued_run_without_outbox(e2e_isolation, job["id"])
    unit = worker_service_pb2.WorkUnit(run_id=run_id, attempt=1).SerializeToString()
    asyncio.run(_publish(Names(e2e_isolation.namespace), [unit, unit, unit], WORK_UNIT))

    run = wait_run_terminal(api, run_id)
    assert run["state"] == "SUCCEEDED"
    # every copy has been taken off the queue and settled (acked) by a worker ...
    wait_for(lambda: queue_counts(e2e_isolation.namespace)[0] == 0, timeout=20, message="queue drained")
    # ... yet the job ran once, as one attempt
    assert hits["/twice"] == 1
    with psycopg.connect(e2e_isolation.libpq_url) as conn:
        attempts = conn.execute(
            "SELECT jsonb_array_length(attempts) FROM runs WHERE id = %s", (run_id,)
        ).fetchone()
    assert attempts == (1,)


def test_garbage_on_the_queue_goes_to_the_dead_letter_queue(mesh: Mesh, e2e_isolation: Isolation) -> None:
    names = Names(e2e_isolation.namespace)
    before = queue_counts(e2e_isolation.namespace, "runs.dead")[0]
    asyncio.run(_publish(names, [b"\x00garbage\xff"], "something.Else"))
    asyncio.run(_publish(names, [b"not a protobuf at all"], WORK_UNIT))
    wait_for(
        lambda: queue_counts(e2e_isolation.namespace, "runs.dead")[0] == before + 2,
        timeout=20,
        message="two messages dead-lettered",
    )
    assert all(p.alive() for name, p in mesh.processes.items() if name.startswith("worker"))
