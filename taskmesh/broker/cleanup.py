"""Deleting a namespace's queues and exchanges from a local RabbitMQ: for test sessions and
benchmarks, which each declare a namespace of their own and must not leave it behind (thousands
of leftover quorum queues slow a broker's boot and hold its file descriptors).

Queues are found by name prefix with `rabbitmqctl` (queues per pool or task have names no
process knows in advance); best effort: a broker that cannot be reached is left alone.
"""

from __future__ import annotations

import subprocess

import pika
import pika.exceptions

from taskmesh.names import Names


def listed_names(kind: str = "queues") -> list[str]:
    """The names of every queue (or exchange: kind "exchanges") of the local broker; none if
    it cannot be asked."""
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", f"list_{kind}", "name", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [name for name in (line.strip() for line in listed.splitlines()) if name]


def namespace_queues(namespace: str) -> list[str]:
    return [name for name in listed_names() if name.startswith(f"{namespace}.")]


def delete_namespace(namespace: str, host: str = "127.0.0.1") -> int:
    """Delete every queue named `<namespace>.*` and the namespace's exchanges; how many queues."""
    names = Names(namespace)
    queues = set(namespace_queues(namespace)) | {*names.work_queues(), names.dead_letter_queue}
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(host))
    except pika.exceptions.AMQPError:
        return 0
    try:
        channel = connection.channel()
        for queue in sorted(queues):
            channel.queue_delete(queue)
        for exchange in (names.work_exchange, names.dead_letter_exchange):
            channel.exchange_delete(exchange)
    finally:
        connection.close()
    return len(queues)
