"""deploy/docker-compose.yml for real: built, started, used through its published gateway port,
scaled, a worker killed mid-run, torn down. Run by `make deploy-test` (marker `compose`, left out of
the default pytest run): it needs a Docker engine (started here if none runs) and takes minutes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.stack import (
    APP_SERVICES,
    COMPOSE_FILE,
    THIRD_PARTY,
    Docker,
    Ports,
    Project,
    Standins,
    build_builder_stage,
    build_with_buildkit,
    cache_dir,
    engine,
    exclusive,
    log,
    override,
    standins,
)
from tests.support import free_port, wait_for

# A first run on a cold cache builds every image (over 15 minutes on a busy 2-core machine).
pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

APP_IMAGE = "taskmesh-deploytest:dev"
BUILDER_IMAGE = "taskmesh-deploytest:builder"
BUILDKIT_IMAGE = "taskmesh-deploytest:buildkit"
LONG_RUNNING = ("postgres", "rabbitmq", "redis", "api-server", "scheduler", "worker", "gateway")


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    cache = cache_dir()
    with exclusive(cache), engine(cache) as found:
        yield found


@pytest.fixture(scope="module")
def images(docker: Docker) -> Iterator[Standins]:
    started = time.monotonic()
    with standins(docker, cache_dir()) as found:
        log(f"stand-in images ready after {time.monotonic() - started:.0f}s")
        yield found


@pytest.fixture(scope="module")
def buildkit_image(docker: Docker, images: Standins) -> Iterator[Future[str]]:
    """The whole image built with BuildKit in the background (its own builder and cache), while
    the legacy builder builds it for compose: the two share no work, and side by side they take
    little more than the longer of them."""

    def build() -> str:
        started = time.monotonic()
        build_with_buildkit(docker, images, BUILDKIT_IMAGE)
        log(f"BuildKit build done in {time.monotonic() - started:.0f}s")
        return BUILDKIT_IMAGE

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(build)


@pytest.fixture(scope="module")
def project(docker: Docker, images: Standins, buildkit_image: Future[str]) -> Iterator[Project]:
    started = time.monotonic()
    build_builder_stage(docker, images, BUILDER_IMAGE)
    log(f"the Dockerfile's builder stage ready after {time.monotonic() - started:.0f}s")
    with tempfile.TemporaryDirectory(prefix="taskmesh-deploytest-") as work:
        override_file = Path(work) / "docker-compose.standins.yml"
        override_file.write_text(override(images, APP_IMAGE))
        ports = Ports(gateway=free_port(), envoy_admin=free_port(), rabbitmq_management=free_port())
        stack = Project(docker, f"taskmesh-deploytest-{os.getpid()}", override_file, ports)
        try:
            built = time.monotonic()
            stack.compose("up", "--build", "--detach", "--scale", "worker=1", timeout=900)
            log(f"compose up --build returned after {time.monotonic() - built:.0f}s")
            yield stack
        finally:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
            # Earlier app images, untagged by this build, and their layers (the tagged builder
            # stage and the stand-ins stay: the next run's cache).
            docker.run("image", "prune", "--force", check=False)
            log(f"compose test done after {time.monotonic() - started:.0f}s")


@pytest.fixture(scope="module")
def gateway(project: Project) -> str:
    return f"http://127.0.0.1:{project.ports.gateway}"


@pytest.fixture(scope="module")
def api(project: Project, gateway: str) -> Iterator[httpx.Client]:
    wait_for(lambda: _all_healthy(project), timeout=300, interval=2, message="every compose health check")
    with httpx.Client(base_url=gateway, timeout=30) as client:
        login = client.post("/api/auth/login", json={"username": "admin", "password": "admin"})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['accessToken']}"
        yield client


def _all_healthy(project: Project) -> bool:
    return all(project.healthy(service) for service in LONG_RUNNING)


def _run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


def _sleep_job(api: httpx.Client, seconds: int) -> str:
    created = api.post(
        "/api/jobs",
        json={"name": f"deploy-test-{uuid.uuid4().hex[:8]}", "executor": {"sleep": {"seconds": seconds}}},
    )
    assert created.status_code == 200, created.text
    job_id: str = created.json()["id"]
    return job_id


def _workers_registered(api: httpx.Client) -> int:
    health = api.get("/actuator/health").json()
    count: int = health["components"]["workers"]["details"]["count"]
    return count


def test_every_service_comes_up_from_the_committed_compose_file(project: Project) -> None:
    wait_for(lambda: _all_healthy(project), timeout=300, interval=2, message="every compose health check")
    [migrate] = project.containers("migrate")
    assert migrate["State"]["Status"] == "exited"
    assert migrate["State"]["ExitCode"] == 0
    config = project.compose("config", "--format", "json").stdout
    for service in THIRD_PARTY:
        # The official image names stay in the committed file; only the override replaces them.
        assert f"\n    image: {service}" in _committed_compose()
        assert f'"image": "taskmesh-standin/{THIRD_PARTY[service]}:' in config
    for service in APP_SERVICES:
        [*containers] = project.containers(service)
        assert all(c["Config"]["Image"] == APP_IMAGE for c in containers), service


def _committed_compose() -> str:
    return COMPOSE_FILE.read_text()


def test_readme_quickstart_through_the_published_gateway_port(api: httpx.Client) -> None:
    job_id = _sleep_job(api, 1)
    triggered = api.post(f"/api/jobs/{job_id}/trigger")
    assert triggered.status_code == 200, triggered.text

    def succeeded() -> bool:
        status = api.get(f"/api/jobs/{job_id}/status")
        assert status.status_code == 200, status.text
        return bool(status.json().get("state") == "SUCCEEDED")

    wait_for(succeeded, timeout=60, interval=0.5, message="the quickstart job's status SUCCEEDED")


def test_workers_scale_to_three(project: Project, api: httpx.Client) -> None:
    project.compose("up", "--detach", "--no-build", "--scale", "worker=3", timeout=300)
    wait_for(lambda: project.healthy("worker", count=3), timeout=180, interval=2, message="3 healthy workers")
    wait_for(lambda: _workers_registered(api) == 3, timeout=60, interval=1, message="3 workers registered")


def test_a_run_on_a_killed_worker_is_retried_on_another(project: Project, api: httpx.Client) -> None:
    job_id = _sleep_job(api, 15)
    triggered = api.post(f"/api/jobs/{job_id}/trigger")
    assert triggered.status_code == 200, triggered.text
    run_id: str = triggered.json()["id"]
    running = wait_for(
        lambda: (run := _run(api, run_id))["state"] == "RUNNING" and run,
        timeout=60,
        interval=0.2,
        message="the run RUNNING on a worker",
    )
    # worker_id is "<host name>-<pid>"; a container's host name is its short id.
    first_worker: str = running["workerId"]
    container = first_worker.rsplit("-", 1)[0]
    workers = {c["Id"][:12] for c in project.containers("worker")}
    assert container in workers, f"{first_worker} is not one of the workers {workers}"
    project.docker.run("rm", "--force", container)

    finished = wait_for(
        lambda: (run := _run(api, run_id))["state"] in ("SUCCEEDED", "FAILED") and run,
        timeout=180,
        interval=1,
        message="the run finished after its worker was killed",
    )
    assert finished["state"] == "SUCCEEDED", finished
    assert finished["attempt"] >= 2
    lost = finished["attempts"][0]
    assert lost["workerId"] == first_worker
    assert lost["state"] == "FAILED"
    assert lost["error"]["kind"] == "LOST"
    assert finished["workerId"] != first_worker


def test_workers_scale_back_to_one(project: Project, api: httpx.Client) -> None:
    project.compose("up", "--detach", "--no-build", "--scale", "worker=1", timeout=300)
    wait_for(lambda: len(project.containers("worker")) == 1, timeout=120, interval=1, message="one worker")
    wait_for(lambda: project.healthy("worker"), timeout=120, interval=2, message="the worker healthy")
    # The one left still runs work.
    test_readme_quickstart_through_the_published_gateway_port(api)


def test_down_removes_every_container_network_and_volume(project: Project) -> None:
    project.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
    label = f"label=com.docker.compose.project={project.name}"
    assert project.docker.run("ps", "--all", "--quiet", "--filter", label).stdout.split() == []
    assert project.docker.run("network", "ls", "--quiet", "--filter", label).stdout.split() == []
    assert project.docker.run("volume", "ls", "--quiet", "--filter", label).stdout.split() == []


def test_the_image_builds_with_buildkit_too(docker: Docker, buildkit_image: Future[str]) -> None:
    """compose builds with the legacy builder here (no buildx plugin); BuildKit must work too.
    (Built while the legacy builder and compose work, see the fixture; checked last.)"""
    tag = buildkit_image.result()
    [image] = json.loads(docker.run("image", "inspect", tag).stdout)
    assert image["Config"]["User"] == "10001:10001"
    assert image["Config"]["Cmd"] == ["taskmesh-api"]
    docker.run("rmi", tag)
