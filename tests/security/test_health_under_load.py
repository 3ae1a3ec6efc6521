"""Issue 8, finding 10: a busy but healthy api_server is never taken out of routing.

Before: during a login flood Envoy's 1 s health check of the only api_server timed out and
every route answered 503 "no healthy upstream" while the api_server was alive. Now argon2 runs
on a few low-priority threads of its own behind a bounded queue (the event loop keeps
answering; excess logins get 429 at once) and the gateway's health check tolerates a slow
answer. Here hundreds of parallel logins (every one hashed: the throttle is set out of the
way) saturate the machine while an authenticated cheap route is polled: every poll must be
answered 200, none 503, and Envoy must have counted no failed health check of the api_server
(a slow answer counts even before it is enough to take the host out of routing).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.config import default_admin_socket
from taskmesh.auth import passwords
from taskmesh.launcher import Mesh

FLOOD_CONCURRENCY = 300
FLOOD_LOGINS = 3000
FLOOD_SECONDS = 30.0


@pytest.fixture(scope="module")
def mesh_settings() -> dict[str, str]:
    # argon2 at its real cost (tests/support.Isolation lowers it): the flood is of real hashing
    return {
        "TASKMESH_LOGIN_USER_FAILURES": "1000000",
        "TASKMESH_LOGIN_ADDRESS_FAILURES": "1000000",
        "TASKMESH_PASSWORD_HASH_TIME_COST": str(passwords.DEFAULT_TIME_COST),
        "TASKMESH_PASSWORD_HASH_MEMORY_KIB": str(passwords.DEFAULT_MEMORY_KIB),
    }


async def _flood(gateway: str) -> dict[int | str, int]:
    """Wrong and right logins, FLOOD_CONCURRENCY at a time, until FLOOD_LOGINS were sent or
    FLOOD_SECONDS passed; returns how many got each answer."""
    deadline = time.monotonic() + FLOOD_SECONDS
    answers: dict[int | str, int] = {}
    limits = httpx.Limits(max_connections=FLOOD_CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway, timeout=120, limits=limits) as client:

        async def logins(lane: int) -> None:
            for attempt in range(lane, FLOOD_LOGINS, FLOOD_CONCURRENCY):
                if time.monotonic() > deadline:
                    return
                password = "admin" if attempt % 4 == 0 else "wrong-password"
                try:
                    response = await client.post(
                        "/api/auth/login", json={"username": "admin", "password": password}
                    )
                    answer: int | str = response.status_code
                except httpx.TransportError as error:
                    answer = type(error).__name__
                answers[answer] = answers.get(answer, 0) + 1

        await asyncio.gather(*(logins(lane) for lane in range(FLOOD_CONCURRENCY)))
    return answers


def _health_check_stats(mesh: Mesh) -> dict[str, int]:
    """Envoy's counters of its active health checks of the api_server (admin interface)."""
    socket = mesh.settings.gateway_admin_socket or str(default_admin_socket(mesh.settings.gateway_port))
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket), timeout=10) as admin:
        params = {"filter": r"^cluster\.api_server\.health_check\."}
        text = admin.get("http://envoy-admin/stats", params=params).text
    pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {name.rsplit(".", 1)[-1]: int(value) for name, value in pairs}


def test_a_login_flood_never_takes_the_api_server_out_of_routing(
    gateway: str, admin_token: str, mesh: Mesh
) -> None:
    before = _health_check_stats(mesh)
    polls: list[tuple[int, str]] = []
    with ThreadPoolExecutor(1) as pool:
        flood = pool.submit(asyncio.run, _flood(gateway))
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=gateway, headers=headers, timeout=60) as client:
            while not flood.done():
                response = client.get("/api/jobs", params={"pageSize": 1})
                polls.append((response.status_code, response.text[:200]))
        answers = flood.result()
    assert sum(answers.values()) >= FLOOD_CONCURRENCY, answers
    assert answers.get(200, 0) + answers.get(401, 0) > 0, answers  # passwords were checked
    assert 503 not in answers, answers
    unhealthy = [text for status, text in polls if status == 503]
    assert not unhealthy, f"{len(unhealthy)} of {len(polls)} polls answered 503: {unhealthy[:3]}"
    assert polls and all(status == 200 for status, _ in polls), (polls[:5], answers)
    after = _health_check_stats(mesh)
    assert after["attempt"] > before["attempt"], after  # Envoy did check during the flood
    assert after["failure"] == before["failure"], (before, after)
