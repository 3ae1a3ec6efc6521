"""A webhook receiver for benchmarks, and the notification rule that sends it every run's events."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Sequence

import psycopg
from grpc import aio

from taskmesh.v1 import notification_service_pb2 as pb
from taskmesh.v1 import notification_service_pb2_grpc as pb_grpc


class NotifySink:
    """Answers 204 to every POST and counts them (and when the last one came)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.count += 1
                sink.last = time.monotonic()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def add_notification_rule(channel: aio.Channel, metadata: tuple, url: str, events: Sequence[str]) -> None:
    stub = pb_grpc.NotificationServiceStub(channel)
    created = await stub.CreateNotificationChannel(
        pb.CreateNotificationChannelRequest(
            channel=pb.NotificationChannel(name="bench", url=url, secret="bench-secret-0123456789")
        ),
        metadata=metadata,
    )
    rule = pb.NotificationRule(name="every run", channel_id=created.id, events=[e.strip() for e in events])
    await stub.CreateNotificationRule(pb.CreateNotificationRuleRequest(rule=rule), metadata=metadata)


def delivery_report(sink: NotifySink, database_url: str, expected: int, timeout: float = 300.0) -> str:
    """Waits for `expected` deliveries to be DELIVERED; says how many and how long after."""
    started = time.monotonic()
    with psycopg.connect(database_url) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'DELIVERED'), count(*) FROM notification_deliveries"
            ).fetchone()
            conn.commit()
            assert row is not None
            if row[0] >= expected or time.monotonic() - started > timeout:
                break
            time.sleep(0.1)
    waited = time.monotonic() - started
    return (
        f"notifications: {row[0]} of {row[1]} deliveries DELIVERED ({sink.count} posts received), "
        f"the last {waited:.1f}s after the last run SUCCEEDED"
    )
