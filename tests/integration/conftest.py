from collections.abc import AsyncIterator

import pytest

from taskmesh.audit import AuditContext
from taskmesh.db.jobs import JobRepository
from taskmesh.db.pg import Database
from tests.support import Isolation

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(integration_isolation: Isolation) -> AsyncIterator[Database]:
    engine = Database(integration_isolation.database_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture
async def job_id(engine: Database, request: pytest.FixtureRequest) -> str:
    from taskmesh.ids import new_id

    name = f"{request.node.name[:80]}-{new_id()[-12:]}".replace("[", "-").replace("]", "")
    job = await JobRepository(engine).create(
        new_id(), name, "", {"noop": {}}, {}, audit=AuditContext.system("tests")
    )
    return job.id
