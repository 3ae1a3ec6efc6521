"""deploy/Dockerfile: lints clean with hadolint, builds from the sources it needs, runs unprivileged."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.deployfiles import DEPLOY, DOCKERFILE, HADOLINT, console_scripts, pyproject, run
from tests.deploy.dockerfile import exec_form, final_stage, instructions

DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
ROOT_DOCKERIGNORE = DEPLOY.parent / ".dockerignore"


def test_hadolint_finds_nothing() -> None:
    result = run([HADOLINT, "--no-color", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_would_report_a_problem(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base image and pip install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run([HADOLINT, "--no-color", bad])
    assert result.returncode != 0
    assert "DL3007" in result.stdout
    assert "DL3013" in result.stdout


def test_builder_and_runtime_stages_share_the_base_image() -> None:
    """The runtime copies the builder's venv, whose interpreter links into the base image."""
    froms = [i.arguments for i in instructions(DOCKERFILE) if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runtime = final_stage(DOCKERFILE)
    assert [i.arguments for i in runtime if i.keyword == "COPY"] == ["--from=builder /opt/taskmesh /opt/taskmesh"]


def test_runtime_runs_as_an_unprivileged_user() -> None:
    users = [i.arguments for i in final_stage(DOCKERFILE) if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert user.isdigit()


def test_default_command_is_a_console_script() -> None:
    runtime = final_stage(DOCKERFILE)
    assert not [i for i in runtime if i.keyword == "ENTRYPOINT"], "the command alone picks the process"
    [cmd] = [exec_form(i.arguments) for i in runtime if i.keyword == "CMD"]
    assert cmd[0] in console_scripts()


def test_the_image_generates_its_code_with_the_project_s_tool_versions() -> None:
    builder = [i for i in instructions(DOCKERFILE) if i.stage == 0]
    runs = " && ".join(i.arguments for i in builder if i.keyword == "RUN")
    assert "scripts/generate.py" in runs
    pinned = [Requirement(r) for r in re.findall(r'"([A-Za-z0-9_.-]+[<>=!~][^"]*)"', runs)]
    # PyYAML: scripts/generate.py writes openapi.yaml.
    assert {r.name for r in pinned} == {"grpcio-tools", "mypy-protobuf", "googleapis-common-protos", "PyYAML"}
    project = pyproject()["project"]
    declared = {
        Requirement(r).name: Requirement(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    }
    for requirement in pinned:
        assert str(requirement.specifier) == str(declared[requirement.name].specifier), requirement.name


def test_the_build_context_holds_every_package_and_no_generated_code() -> None:
    copied = {
        source.rstrip("/")
        for i in instructions(DOCKERFILE)
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    }
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    packages = {
        pattern.rstrip("*") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed = packages | {"protos", "scripts/generate.py", "pyproject.toml", "README.md"}
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    assert needed <= allowed, f"left out of the build context: {needed - allowed}"
    ignored = set(DOCKERIGNORE.read_text().splitlines())
    assert {"taskmesh/v1/*_pb2*", "gateway/generated/"} <= ignored


def _patterns(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_every_builder_gets_the_same_small_context() -> None:
    """The legacy builder reads only the root .dockerignore (BuildKit prefers the Dockerfile's own):
    both must keep .venv, .git and local state out of the context."""
    assert _patterns(ROOT_DOCKERIGNORE) == _patterns(DOCKERIGNORE)
    assert _patterns(ROOT_DOCKERIGNORE)[0] == "*", "an allow-list: everything else stays out"
