"""The outbox relay against the real PostgreSQL and RabbitMQ."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.relay import WORK_UNIT_TYPE, OutboxRelay
from taskmesh.broker.amqp import AmqpConnection, Delivery
from taskmesh.broker.topology import declare_topology
from taskmesh.db.outbox import OutboxRepository
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
    engine: AsyncEngine, job_id: str, integration_isolation: Isolation
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
    try:
        await asyncio.wait_for(all_ours.wait(), 20)
    finally:
        task.cancel()
    assert sorted(u.run_id for u in ours()) == sorted(run_ids)  # each exactly once
    assert all(u.attempt == 1 for u in ours())
    assert all(d.message_type == WORK_UNIT_TYPE for d in received)
    async with engine.connect() as conn:
        left = await conn.execute(
            text("SELECT count(*) FROM outbox WHERE run_id = ANY(CAST(:ids AS uuid[]))"), {"ids": run_ids}
        )
        assert left.scalar_one() == 0
    await connection.close()
    delete_rabbitmq_namespace(names.namespace)
