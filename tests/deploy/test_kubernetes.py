"""deploy/k8s: the base, the dev overlay and the KEDA component render (kubectl kustomize) and
every resource validates offline against the Kubernetes JSON schemas (kubernetes-validate) or,
for KEDA's custom resources, the KEDA models (cloudcoil)."""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda import v1alpha1 as keda_models

from taskmesh.names import Names
from taskmesh.settings import SERVER_ONLY_SETTINGS, WORKER_SECRETS, InsecureSettingsError, env_variable
from tests.deploy.conftest import SettingsFrom
from tests.deploy.deployfiles import (
    K8S,
    MIGRATE_SCRIPT,
    PROCESSES,
    Resource,
    find,
    generated,
    host_of,
    is_taskmesh_image,
    kustomize,
    of_kind,
    port_of,
    rendered,
)

# The oldest Kubernetes these manifests are meant for (gRPC probes are GA since 1.27) and the
# newest the schemas know.
KUBERNETES_VERSIONS = ["1.28", kubernetes_validate.latest_version()]
KEDA_KINDS = {"ScaledObject": keda_models.ScaledObject, "TriggerAuthentication": keda_models.TriggerAuthentication}
GRPC_PROCESSES = [p for p in PROCESSES if p.name != "gateway"]


def validate(resource: Resource, version: str) -> None:
    """Raise if the resource does not match its schema; unknown kinds are an error, too."""
    model = KEDA_KINDS.get(resource["kind"]) if resource["apiVersion"].startswith("keda.sh/") else None
    if model is not None:
        # The models ignore unknown fields: a round trip that loses something found one.
        parsed = model.model_validate(resource).model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert parsed == resource, f"{resource['kind']} has fields KEDA does not know"
        return
    kubernetes_validate.validate(resource, version, strict=True)


def taskmesh_containers(resources: tuple[Resource, ...]) -> list[tuple[Resource, dict[str, Any]]]:
    """(Deployment, container) for every container and init container running the taskmesh image."""
    found = []
    for deployment in of_kind(resources, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if is_taskmesh_image(container["image"]):
                found.append((deployment, container))
    return found


def settings_data(resources: tuple[Resource, ...]) -> dict[str, str]:
    """What a process's environment holds from the ConfigMap and the (base64) Secret."""
    config = generated(resources, "ConfigMap", "taskmesh-settings")["data"]
    secret = generated(resources, "Secret", "taskmesh-secrets")["data"]
    return {**config, **{k: base64.b64decode(v).decode() for k, v in secret.items()}}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_validates_against_the_schemas(rendering: tuple[Resource, ...], version: str) -> None:
    assert rendering
    for resource in rendering:
        try:
            validate(resource, version)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {path}: {error.message}")


def test_validation_rejects_a_mistake(base: tuple[Resource, ...], keda: tuple[Resource, ...]) -> None:
    """The check above can fail: a misspelt probe field, a wrong type, an unknown KEDA field."""
    deployment = copy.deepcopy(find(base, "Deployment", "worker"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpcc"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBERNETES_VERSIONS[-1])
    deployment = copy.deepcopy(find(base, "Deployment", "worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBERNETES_VERSIONS[-1])
    scaled = copy.deepcopy(find(keda, "ScaledObject", "worker"))
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(AssertionError, match="fields KEDA does not know"):
        validate(scaled, KUBERNETES_VERSIONS[-1])


def test_a_broken_kustomization_fails_to_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    assert kustomize(tmp_path).returncode != 0


def test_every_process_is_deployed_from_its_console_script(rendering: tuple[Resource, ...]) -> None:
    for process in PROCESSES:
        deployment = find(rendering, "Deployment", process.name)
        spec = deployment["spec"]["template"]["spec"]
        assert [c["command"] for c in spec["containers"]] == [[process.script]]
    for name in ("api-server", "scheduler"):
        init = find(rendering, "Deployment", name)["spec"]["template"]["spec"]["initContainers"]
        assert [c["command"] for c in init] == [[MIGRATE_SCRIPT]]


def test_grpc_processes_are_probed_with_the_grpc_health_service(rendering: tuple[Resource, ...]) -> None:
    for process in GRPC_PROCESSES:
        container = find(rendering, "Deployment", process.name)["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, process.name
            assert container[probe]["grpc"].get("service", "") == ""
        # Liveness gives a dependency outage (NOT_SERVING) longer than readiness before a restart.
        liveness, readiness = container["livenessProbe"], container["readinessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 120
        assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 30


def test_gateway_is_probed_on_its_actuator_endpoints(rendering: tuple[Resource, ...]) -> None:
    container = find(rendering, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/actuator/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/actuator/health/liveness"
    assert container["startupProbe"]["httpGet"]["path"] == "/actuator/health/liveness"
    assert {"name": "TASKMESH_GATEWAY_HOST", "value": "0.0.0.0"} in container["env"]


def test_every_container_has_requests_and_limits(rendering: tuple[Resource, ...]) -> None:
    for deployment in of_kind(rendering, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) == {"cpu", "memory"}, f"{deployment['metadata']['name']} {kind}"


def test_taskmesh_containers_run_unprivileged(rendering: tuple[Resource, ...]) -> None:
    containers = taskmesh_containers(rendering)
    assert len(containers) == len(PROCESSES) + 2  # and the two migrate init containers
    for deployment, container in containers:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        if container in pod["containers"]:
            # A read-only root: Envoy's rendered config and shell jobs write to /tmp.
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_config_comes_from_the_configmap_and_secrets_from_the_secret(rendering: tuple[Resource, ...]) -> None:
    config = generated(rendering, "ConfigMap", "taskmesh-settings")
    secret = generated(rendering, "Secret", "taskmesh-secrets")
    from_config = {"configMapRef": {"name": config["metadata"]["name"]}}
    for deployment, container in taskmesh_containers(rendering):
        if deployment["metadata"]["name"] in ("api-server", "scheduler"):
            assert container["envFrom"] == [from_config, {"secretRef": {"name": secret["metadata"]["name"]}}]
        else:  # workers and the gateway: see the next test
            assert container["envFrom"] == [from_config]
    secret_keys = {"TASKMESH_DATABASE_URL", "TASKMESH_AMQP_URL", "TASKMESH_REDIS_URL", "TASKMESH_JWT_SECRET"}
    assert secret_keys | {"TASKMESH_ADMIN_PASSWORD", "TASKMESH_WORKER_PASSWORD"} <= set(secret["data"])
    assert not secret_keys & set(config["data"]), "secrets belong in the Secret"


def test_workers_and_the_gateway_get_only_the_secrets_they_read(rendering: tuple[Resource, ...]) -> None:
    """Jobs run on workers: the database URL, JWT key and admin password must not be there."""
    secret = generated(rendering, "Secret", "taskmesh-secrets")["metadata"]["name"]
    worker = find(rendering, "Deployment", "worker")["spec"]["template"]["spec"]
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["containers"][0]["env"] if "valueFrom" in e
    }
    assert from_secret == {env_variable(n): {"name": secret, "key": env_variable(n)} for n in WORKER_SECRETS}
    assert not {env_variable(n) for n in SERVER_ONLY_SETTINGS} & set(from_secret)
    gateway = find(rendering, "Deployment", "gateway")["spec"]["template"]["spec"]
    assert all("valueFrom" not in e for e in gateway["containers"][0]["env"])
    for spec in (worker, gateway):
        assert spec["automountServiceAccountToken"] is False


def test_base_placeholders_are_refused_in_production(
    base: tuple[Resource, ...], settings_from: SettingsFrom
) -> None:
    settings = settings_from(settings_data(base))
    assert settings.environment == "production"
    with pytest.raises(InsecureSettingsError) as refused:
        settings.check_secure()
    for name in ("TASKMESH_JWT_SECRET", "TASKMESH_ADMIN_PASSWORD", "TASKMESH_WORKER_PASSWORD"):
        assert name in str(refused.value)


def test_dev_overlay_runs_in_development_against_its_own_dependencies(
    dev: tuple[Resource, ...], settings_from: SettingsFrom
) -> None:
    settings = settings_from(settings_data(dev))
    assert settings.is_development
    settings.check_secure()
    assert (
        find(dev, "Deployment", "postgres")["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:15"
    )
    rabbitmq = find(dev, "Deployment", "rabbitmq")["spec"]["template"]["spec"]["containers"][0]
    assert rabbitmq["image"] == "rabbitmq:3-management"
    assert find(dev, "Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "redis:"
    )
    for url, service in [
        (settings.database_url, "postgres"),
        (settings.amqp_url, "rabbitmq"),
        (settings.redis_url, "redis"),
    ]:
        assert find(dev, "Service", service)
        assert f"@{service}:" in url or f"//{service}:" in url
    postgres_env = {
        e["name"]: e["value"]
        for e in find(dev, "Deployment", "postgres")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert f":{postgres_env['POSTGRES_PASSWORD']}@" in settings.database_url
    rabbit_env = {e["name"]: e["value"] for e in rabbitmq["env"]}
    assert f"{rabbit_env['RABBITMQ_DEFAULT_USER']}:{rabbit_env['RABBITMQ_DEFAULT_PASS']}@" in settings.amqp_url


def test_dev_overlay_runs_one_of_each_in_its_namespace(dev: tuple[Resource, ...]) -> None:
    for name in ("api-server", "scheduler", "gateway"):
        assert find(dev, "Deployment", name)["spec"]["replicas"] == 1
    hpa = find(dev, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["minReplicas"] == 1
    find(dev, "Namespace", "taskmesh-dev")
    for resource in dev:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "taskmesh-dev", resource["metadata"]["name"]
    assert {c["image"] for _, c in taskmesh_containers(dev)} == {"taskmesh:dev"}


def test_processes_find_each_other_through_services(
    rendering: tuple[Resource, ...], settings_from: SettingsFrom
) -> None:
    settings = settings_from(settings_data(rendering))
    for address in (settings.api_address, settings.scheduler_address):
        service = find(rendering, "Service", host_of(address))
        assert port_of(address) in {p["port"] for p in service["spec"]["ports"]}
        # Headless: Envoy's STRICT_DNS clusters see (and health-check) every ready pod.
        assert service["spec"]["clusterIP"] == "None"


def test_workers_scale_with_a_cpu_autoscaler_by_default(base: tuple[Resource, ...]) -> None:
    worker = find(base, "Deployment", "worker")
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker count"
    hpa = find(base, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert not of_kind(base, "ScaledObject")


def test_keda_scales_workers_on_the_work_queue_depth(
    keda: tuple[Resource, ...], settings_from: SettingsFrom
) -> None:
    assert not of_kind(keda, "HorizontalPodAutoscaler"), "KEDA's own HPA would fight the base one"
    scaled = find(keda, "ScaledObject", "worker")
    assert scaled["spec"]["scaleTargetRef"] == {"name": "worker"}
    find(keda, "Deployment", "worker")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["mode"] == "QueueLength"
    settings = settings_from(settings_data(keda))
    assert trigger["metadata"]["queueName"] == Names(settings.namespace).work_queue
    # The broker URL comes from the very Secret the processes read (name with its hash).
    auth = find(keda, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [ref] = auth["spec"]["secretTargetRef"]
    secret = generated(keda, "Secret", "taskmesh-secrets")
    assert ref == {"parameter": "host", "name": secret["metadata"]["name"], "key": "TASKMESH_AMQP_URL"}


def test_the_documented_production_overlay_replaces_the_placeholders(
    tmp_path: Path, settings_from: SettingsFrom
) -> None:
    """README's recipe: base + KEDA + a secretGenerator replacing the Secret from an env file."""
    overlay = tmp_path / "prod"
    overlay.mkdir()
    k8s = Path(os.path.relpath(K8S, overlay))
    (overlay / "secrets.env").write_text(
        "TASKMESH_DATABASE_URL=postgresql+psycopg://taskmesh:s3cret@db.internal:5432/taskmesh\n"
        "TASKMESH_AMQP_URL=amqps://taskmesh:s3cret@mq.internal:5671/%2F\n"
        "TASKMESH_REDIS_URL=rediss://:s3cret@cache.internal:6380/0\n"
        f"TASKMESH_JWT_SECRET={'x' * 48}\n"
        "TASKMESH_ADMIN_USERNAME=root\n"
        "TASKMESH_ADMIN_PASSWORD=a-long-admin-password\n"
        "TASKMESH_WORKER_USERNAME=worker\n"
        "TASKMESH_WORKER_PASSWORD=a-long-worker-password\n"
    )
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{k8s / 'base'}]\n"
        f"components: [{k8s / 'components' / 'keda'}]\n"
        "secretGenerator:\n"
        "  - name: taskmesh-secrets\n"
        "    behavior: replace\n"
        "    envs: [secrets.env]\n"
        "images:\n"
        "  - name: taskmesh\n"
        "    newName: registry.example.com/taskmesh\n"
        '    newTag: "0.1.0"\n'
    )
    resources = rendered(overlay)
    settings = settings_from(settings_data(resources))
    assert settings.environment == "production"
    settings.check_secure()
    assert settings.database_url.endswith("@db.internal:5432/taskmesh")
    assert {c["image"] for _, c in taskmesh_containers(resources)} == {"registry.example.com/taskmesh:0.1.0"}
    for resource in resources:
        validate(resource, KUBERNETES_VERSIONS[-1])
