"""Fixtures for every test layer: unit tests need none of the services, the rest get a private
database, namespace and ports (see tests/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmesh.db.schema import ensure_database, ensure_schema
from tests.support import Isolation, PrivateRedis

# The folders whose files start whole meshes go first, the many short unit files last: under
# pytest-xdist (make test) they then fill the gaps at the end instead of one slow security file
# running alone on one worker while the other idles.
_FOLDER_ORDER = ("e2e", "security", "faults", "pools", "integration", "deploy", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = item.nodeid.split("/")
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
        return _FOLDER_ORDER.index(folder) if folder in _FOLDER_ORDER else len(_FOLDER_ORDER)

    items.sort(key=rank)  # stable: the order within a folder and a file stays as collected


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
