"""Every port in deploy/ is the one the process listens on: the table in deployfiles.PORTS is
checked against the Settings defaults, and the compose file, the manifests and the Dockerfile
against the table."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskmesh.settings import Settings
from tests.deploy.deployfiles import (
    DOCKERFILE,
    EXTRA_ENV,
    K8S,
    PENDING_SETTINGS,
    PORTS,
    PROCESSES,
    Resource,
    compose_config,
    find,
    generated,
    host_of,
    port_of,
    rendered,
)
from tests.deploy.dockerfile import final_stage

FIELDS = Settings.model_fields
SETTING_PORT = {port.setting: port.number for port in PORTS.values()}


def env_name(setting: str) -> str:
    return f"TASKMESH_{setting.upper()}"


def taskmesh_environments() -> dict[str, dict[str, str]]:
    services = compose_config()["services"]
    return {name: s["environment"] for name, s in services.items() if s["image"] == "taskmesh:dev"}


def configured_environments() -> dict[str, dict[str, str]]:
    """Each place that sets the process environment: compose services and the ConfigMaps."""
    found = {f"compose {name}": env for name, env in taskmesh_environments().items()}
    for overlay in ("base", "overlays/dev"):
        found[f"k8s {overlay}"] = generated(rendered(K8S / overlay), "ConfigMap", "taskmesh-settings")["data"]
    return found


def test_port_table_matches_the_settings_defaults() -> None:
    for port in PORTS.values():
        if port.setting in PENDING_SETTINGS:
            continue
        assert port.setting in FIELDS, f"no setting {port.setting}"
        default = FIELDS[port.setting].default
        assert (default if isinstance(default, int) else port_of(default)) == port.number, port.setting


def test_pending_settings_do_not_exist_yet() -> None:
    landed = sorted(PENDING_SETTINGS & set(FIELDS))
    assert not landed, (
        f"{landed} now exist in taskmesh/settings.py: remove them from PENDING_SETTINGS in "
        "tests/deploy/deployfiles.py so that their defaults are checked against the deployment"
    )


def test_every_listen_and_port_setting_is_in_the_table() -> None:
    """A new listening setting must be deployed too (and bound to 0.0.0.0 in containers)."""
    listening = {f for f in [*FIELDS, *PENDING_SETTINGS] if f.endswith(("_listen", "_port"))}
    assert listening == set(SETTING_PORT)


def test_every_environment_name_is_a_setting() -> None:
    known = {env_name(f) for f in [*FIELDS, *PENDING_SETTINGS]} | EXTRA_ENV
    for where, env in configured_environments().items():
        assert set(env) <= known, f"{where}: unknown {set(env) - known}"
    for overlay in ("base", "overlays/dev"):
        secret = generated(rendered(K8S / overlay), "Secret", "taskmesh-secrets")
        assert set(secret["data"]) <= known, overlay


def test_containers_listen_on_every_interface_at_the_table_s_ports() -> None:
    for where, env in configured_environments().items():
        for setting, number in SETTING_PORT.items():
            value = env[env_name(setting)]
            if setting.endswith("_listen"):
                assert value == f"0.0.0.0:{number}", f"{where}: {env_name(setting)}={value}"
            else:
                assert int(value) == number, f"{where}: {env_name(setting)}={value}"
        assert port_of(env["TASKMESH_API_ADDRESS"]) == PORTS["api"].number, where
        assert port_of(env["TASKMESH_SCHEDULER_ADDRESS"]) == PORTS["scheduler"].number, where
        assert host_of(env["TASKMESH_API_ADDRESS"]) == "api-server", where
        assert host_of(env["TASKMESH_SCHEDULER_ADDRESS"]) == "scheduler", where


def test_compose_health_checks_and_ports_match_the_table() -> None:
    services = compose_config()["services"]
    for process in PROCESSES:
        service = services[process.name]
        health = PORTS[process.health].number
        command, target = service["healthcheck"]["test"][1], service["healthcheck"]["test"][2]
        assert command == "taskmesh-healthcheck"
        port = urlsplit(target).port if target.startswith("http") else port_of(target)
        assert port == health, process.name
        opened = {int(p) for p in service.get("expose", [])} | {p["target"] for p in service.get("ports", [])}
        assert opened == {PORTS[key].number for key in process.ports}, process.name


def _probe_port(probe: dict[str, Any], named: dict[str, int]) -> int:
    action = probe.get("grpc") or probe["httpGet"]
    port = action["port"]
    return named[port] if isinstance(port, str) else int(port)


def _check_process_ports(resources: tuple[Resource, ...]) -> None:
    for process in PROCESSES:
        deployment = find(resources, "Deployment", process.name)
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(named.values()) == {PORTS[key].number for key in process.ports}, process.name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert _probe_port(container[probe], named) == PORTS[process.health].number, f"{process.name} {probe}"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(PORTS[process.metrics].number), process.name
        services = [r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == process.name]
        for service in services:
            assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
            for port in service["spec"]["ports"]:
                target = port["targetPort"]
                assert (named[target] if isinstance(target, str) else target) == port["port"], process.name


def test_manifest_ports_and_probes_match_the_table() -> None:
    for overlay in ("base", "overlays/dev"):
        _check_process_ports(rendered(K8S / overlay))


def test_dockerfile_exposes_every_port() -> None:
    exposed = {int(p) for i in final_stage(DOCKERFILE) if i.keyword == "EXPOSE" for p in i.arguments.split()}
    assert exposed == {port.number for port in PORTS.values()}
