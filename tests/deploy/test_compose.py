"""deploy/docker-compose.yml: valid Compose, the seed's services, health checks and start order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskmesh.settings import (
    DEV_ADMIN_PASSWORD,
    DEV_JWT_SECRET,
    DEV_WORKER_PASSWORD,
    SERVER_ONLY_SETTINGS,
    WORKER_SECRETS,
    InsecureSettingsError,
    env_variable,
)
from tests.deploy.conftest import SettingsFrom
from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    MIGRATE_SCRIPT,
    PROCESSES,
    compose_config,
    compose_config_of,
)

TASKMESH_IMAGE = "taskmesh:dev"
SERVERS = ("migrate", "api-server", "scheduler")
SECRETS = frozenset(env_variable(name) for name in (*SERVER_ONLY_SETTINGS, *WORKER_SECRETS))


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose_config()["services"]
    return found


def taskmesh_services() -> dict[str, Any]:
    return {name: s for name, s in services().items() if s["image"] == TASKMESH_IMAGE}


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = compose_config_of(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    assert set(services()) >= {"postgres", "rabbitmq", "redis", "migrate", *(p.name for p in PROCESSES)}


@pytest.mark.parametrize(
    ("original", "broken", "complaint"),
    [
        ("    init: true\n", "    init: true\n    replica: 3\n", "additional properties 'replica' not allowed"),
        ('    command: ["taskmesh-worker"]\n', "    command: {run: taskmesh-worker}\n", "services.worker.command"),
        (
            "        condition: service_healthy\n",
            "        condition: healthy\n",
            "condition value must be one of 'service_started', 'service_healthy'",
        ),
    ],
)
def test_validation_rejects_what_the_specification_forbids(
    tmp_path: Path, original: str, broken: str, complaint: str
) -> None:
    """The check above can fail: the same file with one mistake is refused, naming it."""
    text = COMPOSE_FILE.read_text()
    assert original in text
    (tmp_path / "deploy").mkdir()
    mutated = tmp_path / "deploy" / "docker-compose.yml"
    mutated.write_text(text.replace(original, broken, 1))
    result = compose_config_of(mutated)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_the_seed_services_run_on_their_images() -> None:
    found = services()
    assert found["postgres"]["image"] == "postgres:15"
    assert found["rabbitmq"]["image"] == "rabbitmq:3-management"
    assert found["redis"]["image"].startswith("redis:")
    for process in PROCESSES:
        assert found[process.name]["image"] == TASKMESH_IMAGE
        assert found[process.name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert Path(found[process.name]["build"]["context"]) == COMPOSE_FILE.parent.parent


def test_workers_run_several_replicas() -> None:
    assert services()["worker"]["deploy"]["replicas"] >= 2


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in services().items():
        if name == "migrate":
            assert service["command"] == [MIGRATE_SCRIPT]
            assert service["restart"] == "no"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_services_start_after_what_they_need_is_healthy_or_migrated() -> None:
    found = services()
    for name, service in found.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if dependency == "migrate":
                assert rule["condition"] == "service_completed_successfully", name
            else:
                assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
                assert "healthcheck" in found[dependency]
    for server in ("api-server", "scheduler"):
        assert set(found[server]["depends_on"]) == {"migrate", "postgres", "rabbitmq", "redis"}
    assert set(found["worker"]["depends_on"]) >= {"api-server", "scheduler", "rabbitmq"}
    assert set(found["gateway"]["depends_on"]) == {"api-server", "scheduler"}
    assert set(found["migrate"]["depends_on"]) == {"postgres"}


def test_gateway_listens_beyond_loopback_and_is_published() -> None:
    gateway = services()["gateway"]
    assert gateway["environment"]["TASKMESH_GATEWAY_HOST"] == "0.0.0.0"
    assert {port["target"] for port in gateway["ports"]} == {8080, 9901}


def test_environment_is_valid_settings_with_development_secrets(settings_from: SettingsFrom) -> None:
    """The defaults are the development ones, so production mode refuses to start with them."""
    for name in SERVERS:
        env = taskmesh_services()[name]["environment"]
        assert env["TASKMESH_JWT_SECRET"] == DEV_JWT_SECRET, name
        assert env["TASKMESH_ADMIN_PASSWORD"] == DEV_ADMIN_PASSWORD, name
        assert env["TASKMESH_WORKER_PASSWORD"] == DEV_WORKER_PASSWORD, name
        settings = settings_from(env)
        assert settings.is_development
        settings.check_secure()
        production = settings_from({**env, "TASKMESH_ENVIRONMENT": "production"})
        with pytest.raises(InsecureSettingsError) as refused:
            production.check_secure()
        assert "TASKMESH_JWT_SECRET" in str(refused.value)
        assert "TASKMESH_ADMIN_PASSWORD" in str(refused.value)
        assert "TASKMESH_WORKER_PASSWORD" in str(refused.value)


def test_workers_and_the_gateway_hold_only_the_secrets_they_read() -> None:
    found = taskmesh_services()
    worker = found["worker"]["environment"]
    assert SECRETS & set(worker) == {env_variable(name) for name in WORKER_SECRETS}
    assert worker["TASKMESH_WORKER_PASSWORD"] == DEV_WORKER_PASSWORD
    assert not SECRETS & set(found["gateway"]["environment"])
    needed = {"TASKMESH_DATABASE_URL", "TASKMESH_REDIS_URL", "TASKMESH_JWT_SECRET", "TASKMESH_ADMIN_PASSWORD"}
    for name in SERVERS:
        assert set(found[name]["environment"]) >= needed, name
        for secret in WORKER_SECRETS:
            assert found[name]["environment"][env_variable(secret)] == worker[env_variable(secret)]


def test_processes_share_one_environment() -> None:
    environments = [
        {k: v for k, v in s["environment"].items() if k != "TASKMESH_GATEWAY_HOST" and k not in SECRETS}
        for s in taskmesh_services().values()
    ]
    assert all(env == environments[0] for env in environments)
    urls = taskmesh_services()["api-server"]["environment"]
    assert "@postgres:5432/" in urls["TASKMESH_DATABASE_URL"]
    assert "@rabbitmq:5672/" in urls["TASKMESH_AMQP_URL"]
    assert urls["TASKMESH_REDIS_URL"].startswith("redis://redis:6379/")
