"""What the image, the compose file and the manifests run are pyproject's console scripts: the
same ones the end-to-end tests start (taskmesh.launcher.Mesh)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.deployfiles import (
    DOCKERFILE,
    K8S,
    MIGRATE_SCRIPT,
    PROCESSES,
    ROOT,
    compose_config,
    console_scripts,
    is_taskmesh_image,
    rendered,
)
from tests.deploy.dockerfile import exec_form, instructions

LAUNCHER = ROOT / "taskmesh" / "launcher.py"


def dockerfile_commands() -> list[list[str]]:
    return [exec_form(i.arguments) for i in instructions(DOCKERFILE) if i.keyword in ("CMD", "ENTRYPOINT")]


def compose_commands() -> dict[str, list[str]]:
    """Every command a taskmesh container runs under compose, health checks included."""
    found: dict[str, list[str]] = {}
    for name, service in compose_config()["services"].items():
        if service["image"] != "taskmesh:dev":
            continue
        assert service.get("entrypoint") is None, name
        found[name] = service["command"]
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD", f"{name}: exec form, no shell in between"
            found[f"{name} healthcheck"] = test[1:]
    return found


def manifest_commands(directory: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for resource in rendered(directory):
        if resource["kind"] != "Deployment":
            continue
        spec = resource["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if is_taskmesh_image(container["image"]):
                assert "args" not in container
                found[f"{resource['metadata']['name']}/{container['name']}"] = container["command"]
    return found


def launched_by_the_tests() -> set[str]:
    """The console scripts taskmesh.launcher.Mesh starts for the end-to-end tests."""
    return set(re.findall(r'_bin\("(taskmesh-[a-z-]+)"\)', LAUNCHER.read_text()))


def test_every_command_is_a_console_script() -> None:
    scripts = console_scripts()
    commands = {
        **{f"Dockerfile {c}": c for c in map(tuple, dockerfile_commands())},
        **{f"compose {k}": v for k, v in compose_commands().items()},
        **{f"k8s base {k}": v for k, v in manifest_commands(K8S / "base").items()},
        **{f"k8s dev {k}": v for k, v in manifest_commands(K8S / "overlays" / "dev").items()},
    }
    assert len(commands) > 10
    for where, command in commands.items():
        assert command[0] in scripts, f"{where}: {command[0]} is not in [project.scripts]"


def test_the_deployment_runs_the_processes_the_tests_run() -> None:
    tested = launched_by_the_tests()
    assert tested == {p.script for p in PROCESSES}
    compose = {name: command[0] for name, command in compose_commands().items()}
    for process in PROCESSES:
        assert compose[process.name] == process.script
    assert compose["migrate"] == MIGRATE_SCRIPT
    for directory in (K8S / "base", K8S / "overlays" / "dev"):
        deployed = {command[0] for command in manifest_commands(directory).values()}
        assert deployed == tested | {MIGRATE_SCRIPT}
