"""TLS in deploy/ (issue 14, item 7): the compose override and the Kubernetes component turn on
the TLS settings for every long-running process, mount the certificates and keep every health
check working over TLS (Kubernetes' grpc probes cannot speak it: they become exec probes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from taskmesh.settings import Settings
from tests.deploy.deployfiles import COMPOSE_FILE, DEPLOY, DOCKER_COMPOSE, K8S, Resource, of_kind, rendered, run
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, validate

TLS_OVERRIDE = DEPLOY / "docker-compose.tls.yml"
LONG_RUNNING = ("api-server", "scheduler", "worker", "gateway")


def _compose_with_tls() -> dict[str, Any]:
    result = run(
        [
            DOCKER_COMPOSE,
            "--env-file",
            os.devnull,
            "-f",
            COMPOSE_FILE,
            "-f",
            TLS_OVERRIDE,
            "config",
            "--format",
            "json",
        ],
        DEPLOY,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _settings(environment: dict[str, str]) -> Settings:
    return Settings.model_validate({k.removeprefix("TASKMESH_").lower(): v for k, v in environment.items()})


def test_the_compose_override_turns_tls_on_for_every_long_running_process() -> None:
    services = _compose_with_tls()["services"]
    for name in LONG_RUNNING:
        settings = _settings({k: v for k, v in services[name]["environment"].items() if "_TLS_" in k})
        assert settings.tls_enabled, name
        mounted = {Path(v["target"]) for v in services[name]["volumes"]}
        for path in (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file):
            assert Path(path).parent in mounted, (name, path)
    gateway = _settings({k: v for k, v in services["gateway"]["environment"].items() if "_TLS_" in k})
    assert gateway.gateway_tls_cert_file and gateway.gateway_tls_key_file
    assert services["gateway"]["healthcheck"]["test"][-1].startswith("https://127.0.0.1:8080/")
    # The migration talks to PostgreSQL only; the base file's secrets are still merged in.
    assert "TASKMESH_TLS_ENABLED" not in services["migrate"]["environment"]
    assert "TASKMESH_DATABASE_URL" in services["api-server"]["environment"]


@pytest.fixture(scope="module")
def with_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Resource, ...]:
    overlay = tmp_path_factory.mktemp("tls-overlay")
    k8s = Path(os.path.relpath(K8S, overlay))
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {k8s / 'base'}\n"
        f"components:\n  - {k8s / 'components' / 'tls'}\n"
    )
    return rendered(overlay)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kubernetes_component_validates(with_tls: tuple[Resource, ...], version: str) -> None:
    for resource in with_tls:
        validate(resource, version)


def test_the_kubernetes_component_sets_tls_mounts_certificates_and_probes_over_tls(
    with_tls: tuple[Resource, ...],
) -> None:
    [config_map] = of_kind(with_tls, "ConfigMap")
    settings = _settings({k: v for k, v in config_map["data"].items() if "_TLS_" in k})
    assert settings.tls_enabled and settings.gateway_tls_cert_file
    deployments = {d["metadata"]["name"]: d for d in of_kind(with_tls, "Deployment")}
    assert set(deployments) == set(LONG_RUNNING)
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        [container] = [c for c in spec["containers"] if c["name"] == name]
        mounts = {Path(m["mountPath"]) for m in container["volumeMounts"]}
        assert Path(settings.tls_ca_file).parent in mounts, name
        secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert "taskmesh-tls" in secrets, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler = container[probe]
            assert "grpc" not in handler, (name, probe)  # a grpc probe cannot speak TLS
            if name == "gateway":
                assert handler["httpGet"]["scheme"] == "HTTPS"
            else:
                assert handler["exec"]["command"][0] == "taskmesh-healthcheck", (name, probe)
    gateway_volumes = {
        v["secret"]["secretName"]
        for v in deployments["gateway"]["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert "taskmesh-gateway-tls" in gateway_volumes
