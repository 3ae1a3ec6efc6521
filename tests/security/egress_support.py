"""A loopback HTTP server of the test's own, for the egress tests: records what reached it,
redirects where told (/redirect?status=307&to=URL), and drips a body one byte every 1.5 s
(/drip)."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.helpers import create_job, trigger, wait_run_terminal

DRIP_INTERVAL = 1.5
DRIP_BYTES = 40  # a minute of dripping: far beyond any timeout the tests set


@dataclass
class Target:
    base: str
    port: int
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, path, headers

    def paths(self) -> list[str]:
        return [urllib.parse.urlsplit(path).path for _, path, _ in self.requests]


@contextmanager
def target_server() -> Iterator[Target]:
    target = Target("", 0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            target.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/redirect":
                self.send_response(int(query.get("status", "302")))
                self.send_header("Location", query["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/drip":
                self._drip()
            else:
                self._answer(200, f"hello from {url.path}".encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drip(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            try:
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(DRIP_INTERVAL)  # the slow server under test, not a test timing
            except OSError:
                pass  # the client gave up, as it should

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    target.port = int(server.server_address[1])
    target.base = f"http://127.0.0.1:{target.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()


def redirect_url(target: Target, to: str, status: int = 302) -> str:
    return f"{target.base}/redirect?" + urllib.parse.urlencode({"status": status, "to": to})


def run_http(api: httpx.Client, http: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Create an http job, trigger it and wait for its run to end (generously: a loaded machine)."""
    job = create_job(api, "egress", {"http": http}, **fields)
    return wait_run_terminal(api, trigger(api, job["id"])["id"], timeout=90)


def log_lines(api: httpx.Client, run_id: str) -> list[str]:
    response = api.get(f"/api/runs/{run_id}/logs")
    assert response.status_code == 200, response.text
    return [str(line["text"]) for line in response.json().get("lines", [])]


def assert_denied(run: dict[str, Any], message: str) -> None:
    """The run failed for good at its first attempt, with this egress message and no body."""
    assert run["state"] == "FAILED", run
    assert run["error"]["message"] == message
    assert run["error"]["retryable"] is False
    assert run["attempt"] == 1
    assert not run.get("result", {}).get("http", {}).get("bodyExcerpt")
