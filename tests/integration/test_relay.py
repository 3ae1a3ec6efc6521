"""The outbox relay against the real PostgreSQL and RabbitMQ."""

import asyncio

import pytest

from scheduler.relay import WORK_UNIT_TYPE, OutboxRelay
from taskmesh.broker.amqp import AmqpConnection, Delivery
from taskmesh.broker.topology import declare_topology
from taskmesh.db.outbox import OutboxBatch, OutboxRepository
from taskmesh.db.pg import Database, Query
from taskmesh.db.runs import RunRepository
from taskmesh.ids import new_id
from taskmesh.names import Names
from taskmesh.records import RunRequest
from taskmesh.states import Trigger
from taskmesh.v1 import worker_service_pb2
from tests.support import Isolation, delete_rabbitmq_namespace

pytestmark = pytest.mark.integration
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


async def test_relay_publishes_each_outbox_row_and_deletes_it(
    engine: Database, job_id: str, integration_isolation: Isolation
) -> None:
    names = Names(integration_isolation.namespace + "relay")
    run_ids = [new_id() for _ in range(25)]
    await RunRepository(engine).create([RunRequest(r, job_id) for r in run_ids], Trigger.MANUAL)

    connection = await AmqpConnection.open(AMQP)
    channel = await connection.channel()
    await declare_topology(channel, names)
    received: list[Delivery] = []
    all_ours = asyncio.Event()

    def on_delivery(delivery: Delivery) -> None:
        received.append(delivery)
        if len(ours()) == len(run_ids):
            all_ours.set()

    def ours() -> list[worker_service_pb2.WorkUnit]:
        units = [worker_service_pb2.WorkUnit.FromString(d.body) for d in received]
        return [u for u in units if u.run_id in run_ids]  # other tests' runs share the outbox

    channel.consume(names.work_queue, on_delivery)

    wake = asyncio.Event()
    relay = OutboxRelay(OutboxRepository(engine), AMQP, names, wake, batch_size=10, poll_interval=0.1)
    task = asyncio.create_task(relay.run_forever())

    async def rows_left() -> int:
        async with engine.statement() as conn:
            left = await conn.execute(
                Query("SELECT count(*) FROM outbox WHERE run_id = ANY(CAST(:ids AS uuid[]))"), {"ids": run_ids}
            )
            return int(left.one_value())

    try:
        await asyncio.wait_for(all_ours.wait(), 20)
        async with asyncio.timeout(20):  # deleted once RabbitMQ confirmed them (just after delivery)
            while await rows_left():  # noqa: ASYNC110 (the database has nothing to await)
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await connection.close()
        delete_rabbitmq_namespace(names.namespace)
    assert sorted(u.run_id for u in ours()) == sorted(run_ids)  # each exactly once
    assert all(u.attempt == 1 for u in ours())
    assert all(d.message_type == WORK_UNIT_TYPE for d in received)


async def test_rows_of_a_relay_that_died_mid_publish_are_taken_again_after_its_lease(
    engine: Database, job_id: str
) -> None:
    run_ids = [new_id() for _ in range(3)]
    await RunRepository(engine).create([RunRequest(r, job_id) for r in run_ids], Trigger.MANUAL)
    outbox = OutboxRepository(engine)

    def ours(batch: OutboxBatch) -> set[str]:
        return {u.run_id for u in batch.units} & set(run_ids)

    first = await outbox.take(limit=1000, lease_seconds=0.2)  # this relay "dies" before publishing
    assert ours(first) == set(run_ids)
    assert ours(await outbox.take(limit=1000)) == set()  # leased: no other relay takes them
    await asyncio.sleep(0.3)
    second = await outbox.take(limit=1000)
    assert ours(second) == set(run_ids)
    await outbox.published(second)
    await asyncio.sleep(0.3)
    assert ours(await outbox.take(limit=1000, lease_seconds=0.1)) == set()  # deleted for good


async def test_rows_released_after_a_failed_publish_are_taken_again_at_once(engine: Database, job_id: str) -> None:
    run_ids = [new_id() for _ in range(3)]
    await RunRepository(engine).create([RunRequest(r, job_id) for r in run_ids], Trigger.MANUAL)
    outbox = OutboxRepository(engine)

    def ours(batch: OutboxBatch) -> set[str]:
        return {u.run_id for u in batch.units} & set(run_ids)

    first = await outbox.take(limit=1000)  # leased for the full lease: its publish then fails
    assert ours(first) == set(run_ids)
    await outbox.release(first)
    second = await outbox.take(limit=1000)  # no waiting for the lease
    assert ours(second) == set(run_ids)
    await outbox.published(second)
