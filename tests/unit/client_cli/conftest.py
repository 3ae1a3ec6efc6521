"""A fake Taskmesh server per test, and the environment the CLI reads, pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.client_cli.fake import FakeTaskmesh


@pytest.fixture
def fake() -> Iterator[FakeTaskmesh]:
    server = FakeTaskmesh()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "taskmesh.json"


@pytest.fixture
def cli_env(fake: FakeTaskmesh, config_file: Path) -> dict[str, str]:
    """Environment for main(): the fake's address and a token it accepts; no real config file."""
    return {"TASKMESH_SERVER": fake.address, "TASKMESH_TOKEN": fake.token(), "TASKMESH_CONFIG": str(config_file)}
