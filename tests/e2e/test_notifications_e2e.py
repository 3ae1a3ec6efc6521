"""Notifications through the gateway, on a mesh of this module's own (fast retries): a failing
job delivers exactly one signed webhook to a local receiver, which gets it once it is back up
after being down; the signature verifies with the README's own snippet; a channel aimed at the
gateway admin port is refused."""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmesh.client import TaskmeshClient
from taskmesh.launcher import Mesh
from tests.e2e.cli import Taskmesh, as_json, cli_env, ok
from tests.support import Isolation, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "receiver-secret-0123456789"
FAST = {
    "TASKMESH_WORKER_SHELL_ENABLED": "true",
    "TASKMESH_NOTIFICATION_SCAN_INTERVAL": "0.2",
    "TASKMESH_NOTIFICATION_SCAN_SETTLE_SECONDS": "0.5",
    "TASKMESH_NOTIFICATION_DELIVERY_POLL_INTERVAL": "0.2",
    "TASKMESH_NOTIFICATION_RETRY_INITIAL_SECONDS": "0.5",
    "TASKMESH_NOTIFICATION_RETRY_MAX_SECONDS": "1",
    "TASKMESH_NOTIFICATION_TIMEOUT_SECONDS": "5",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on a fixed local port that can be taken down and brought back."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    isolation = Isolation.create("n")
    mesh = Mesh({**os.environ, **isolation.env(), **FAST}, log_dir=tmp_path_factory.mktemp("notify-logs"))
    try:
        mesh.start_all(workers=1)
        yield mesh
    finally:
        mesh.stop_all()
        isolation.drop()


@pytest.fixture(scope="module")
def api(mesh: Mesh) -> Iterator[httpx.Client]:
    gateway = f"http://127.0.0.1:{mesh.settings.gateway_port}"

    def login() -> str | None:
        try:
            response = httpx.post(f"{gateway}/api/auth/login", json={"username": "admin", "password": "admin"})
        except httpx.TransportError:
            return None
        return str(response.json()["accessToken"]) if response.status_code == 200 else None

    token = wait_for(login, timeout=30, interval=0.2, message="a login through the gateway")
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


def readme_verifier() -> Any:
    """verify_taskmesh_signature, executed from the README's Notifications section as written."""
    section = README.read_text().split("## Notifications", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["verify_taskmesh_signature"]


def _deliveries(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.get("/api/notification-deliveries", params={"filter": f'run_id="{run_id}"'})
    assert response.status_code == 200, response.text
    return list(response.json().get("deliveries", []))


def test_a_failing_job_delivers_one_signed_webhook_after_the_receiver_was_down(api: httpx.Client) -> None:
    receiver = Receiver()
    receiver.start()  # to learn a free port, then down until the first attempt has failed
    receiver.stop()
    channel = api.post(
        "/api/notification-channels",
        json={"name": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook", "secret": SECRET},
    )
    assert channel.status_code == 200, channel.text
    assert channel.json()["secret"] == "<redacted>"
    job = api.post(
        "/api/jobs",
        json={
            "name": "always-fails",
            "executor": {"shell": {"argv": ["sh", "-c", "exit 3"]}},
            "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.1s"},
        },
    )
    assert job.status_code == 200, job.text
    rule = api.post(
        "/api/notification-rules",
        json={
            "name": "failures",
            "channelId": channel.json()["id"],
            "jobId": job.json()["id"],
            "events": ["RUN_FAILED"],
        },
    )
    assert rule.status_code == 200, rule.text
    run = api.post(f"/api/jobs/{job.json()['id']}/trigger", json={})
    assert run.status_code == 200, run.text
    run_id = run.json()["id"]

    failed_once = wait_for(
        lambda: [d for d in _deliveries(api, run_id) if d.get("attempts", 0) >= 1 and d.get("lastError")],
        timeout=60,
        interval=0.2,
        message="a failed first attempt while the receiver is down",
    )
    assert failed_once[0]["state"] == "PENDING"
    receiver.start()
    try:
        delivered = wait_for(
            lambda: [d for d in _deliveries(api, run_id) if d["state"] == "DELIVERED"],
            timeout=60,
            interval=0.2,
            message="the delivery once the receiver is back",
        )
    finally:
        receiver.stop()

    [delivery] = _deliveries(api, run_id)  # one event, one channel: one delivery
    assert delivery == delivered[0]
    assert delivery["eventType"] == "RUN_FAILED" and delivery["attempts"] >= 2
    [request] = receiver.requests  # exactly one webhook reached the receiver
    assert request.path == "/hook"
    assert request.headers["taskmesh-event-id"] == delivery["eventId"]
    assert request.headers["taskmesh-event-type"] == "RUN_FAILED"
    verify = readme_verifier()
    assert verify(SECRET, request.headers["taskmesh-signature"], request.body)
    assert not verify("another-secret-0123456789", request.headers["taskmesh-signature"], request.body)
    assert not verify(SECRET, request.headers["taskmesh-signature"], request.body + b" ")
    payload = httpx.Response(200, content=request.body).json()
    assert payload["id"] == delivery["eventId"]
    assert (
        payload["run"]["id"] == run_id and payload["run"]["state"] == "FAILED" and payload["run"]["attempt"] == 2
    )
    assert payload["job"]["name"] == "always-fails"


def test_a_channel_aimed_at_the_gateway_admin_port_is_refused(mesh: Mesh, api: httpx.Client) -> None:
    admin = mesh.settings.gateway_admin_port
    for url in (f"http://127.0.0.1:{admin}/quitquitquit", f"http://localhost:{admin}/ready"):
        response = api.post("/api/notification-channels", json={"name": "admin", "url": url, "secret": SECRET})
        assert response.status_code == 400, response.text
        assert "channel.url" in response.json()["message"]
        assert "gateway admin port" in response.json()["message"]
    ok = api.post(
        "/api/notification-channels", json={"name": "fine", "url": "http://127.0.0.1:9/x", "secret": SECRET}
    )
    assert ok.status_code == 200, ok.text
    moved = api.patch(
        f"/api/notification-channels/{ok.json()['id']}",
        json={"url": f"http://127.0.0.1:{admin}/quitquitquit"},
        params={"updateMask": "url"},
    )
    assert moved.status_code == 400 and "channel.url" in moved.json()["message"], moved.text


def test_a_viewer_reads_rules_and_deliveries_but_no_channel_and_writes_nothing(api: httpx.Client) -> None:
    created = api.post(
        "/api/users", json={"username": "watcher", "password": "watcher-password-1", "role": "VIEWER"}
    )
    assert created.status_code == 200, created.text
    token = httpx.post(
        f"{api.base_url}/api/auth/login", json={"username": "watcher", "password": "watcher-password-1"}
    ).json()["accessToken"]
    viewer = {"Authorization": f"Bearer {token}"}
    for path in ("/api/notification-rules", "/api/notification-deliveries"):
        listed = httpx.get(f"{api.base_url}{path}", headers=viewer)
        assert listed.status_code == 200, listed.text
        assert SECRET not in listed.text
    # A webhook URL may be a credential itself (Slack's): channels are for those who write them.
    assert httpx.get(f"{api.base_url}/api/notification-channels", headers=viewer).status_code == 403
    assert SECRET not in api.get("/api/notification-channels").text  # and the secret for nobody
    refused = httpx.post(
        f"{api.base_url}/api/notification-channels",
        headers=viewer,
        json={"name": "v", "url": "http://127.0.0.1:9/", "secret": SECRET},
    )
    assert refused.status_code == 403, refused.text


def test_the_cli_and_the_client_manage_channels_rules_and_a_slack_test_delivery(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gateway = f"http://127.0.0.1:{mesh.settings.gateway_port}"
    run = Taskmesh(cli_env(gateway, tmp_path_factory.mktemp("cli") / "config.json"))
    ok(run("login", "--username", "admin", "--password-stdin", stdin="admin\n"))
    receiver = Receiver()
    receiver.start()
    try:
        url = f"http://127.0.0.1:{receiver.port}/slack"
        args = ("notifications", "channels", "create", "slacky", url, "--secret-stdin", "--format", "SLACK")
        channel = as_json(run(*args, "-o", "json", stdin=SECRET + "\n"))
        assert channel["format"] == "SLACK" and channel["secret"] == "<redacted>"
        rule = as_json(
            run(
                *("notifications", "rules", "create", "data team", "--channel", channel["id"]),
                *("--label", "team=data", "--event", "JOB_RECOVERED", "--event", "RUN_STUCK", "-o", "json"),
            )
        )
        assert rule["labelSelector"] == {"team": "data"}
        assert sorted(rule["events"]) == ["JOB_RECOVERED", "RUN_STUCK"]
        with TaskmeshClient(gateway, username="admin", password="admin") as client:
            [listed] = list(client.iter_notification_rules(filter=f'channel_id="{channel["id"]}"'))
            assert listed.id == rule["id"]
            disabled = client.update_notification_rule(rule["id"], ["disabled"], disabled=True)
            assert disabled.disabled
            test = client.test_notification_channel(channel["id"])
            wait_for(lambda: receiver.requests, timeout=60, interval=0.2, message="the TEST notification")
        [request] = receiver.requests
        body = httpx.Response(200, content=request.body).json()
        assert body["taskmesh_event_id"] == test.event_id == request.headers["taskmesh-event-id"]
        assert body["text"] == "Taskmesh: a test notification from Taskmesh"
        assert readme_verifier()(SECRET, request.headers["taskmesh-signature"], request.body)
        delivered = wait_for(
            lambda: [
                d
                for d in as_json(run("notifications", "deliveries", "--filter", "event_type=TEST", "-o", "json"))
                if d["eventId"] == test.event_id and d["state"] == "DELIVERED"
            ],
            timeout=30,
            interval=0.2,
            message="the TEST delivery recorded as DELIVERED",
        )
        assert delivered[0]["lastStatusCode"] == 200 and delivered[0]["responseExcerpt"] == "ok"
        ok(run("notifications", "rules", "delete", rule["id"]))
        ok(run("notifications", "channels", "delete", channel["id"]))
        refused = run("notifications", "channels", "get", channel["id"])
        assert refused.returncode == 1 and "not found" in refused.stderr
    finally:
        receiver.stop()
