"""Fixtures for every test layer: unit tests need none of the services, the rest get a private
database, namespace and ports (see tests/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmesh.db.schema import ensure_database, ensure_schema
from tests.support import Isolation, PrivateRedis


@pytest.fixture(scope="session")
def integration_isolation() -> Iterator[Isolation]:
    isolation = Isolation.create("i")
    ensure_database(isolation.database_url)
    ensure_schema(isolation.database_url)
    yield isolation
    isolation.drop()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of the module's own, which its tests may stop."""
    server = PrivateRedis(str(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()
