"""Bring the database to the schema this code knows, or refuse to run on one it does not.

Every process calls ensure_schema() at start-up. Concurrent starts are serialised by a
PostgreSQL advisory lock, so several processes may start at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, make_url, pool, text

from taskmesh.settings import get_settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every taskmesh process: "tm" in ASCII, then a serial.
MIGRATION_LOCK_ID = 0x746D_0001


class UnknownSchemaError(RuntimeError):
    """The database carries a revision this code does not know (it is newer)."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist (development convenience)."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
            log.info("created database %s", url.database)
    admin.dispose()


def ensure_schema(database_url: str, *, migrate: bool = True) -> str:
    """Migrate to head (when allowed) and return the revision; raise if the schema is unknown."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                current = _current_revision(conn)
                if current is not None and current != head and script.get_revision(current) is None:
                    raise UnknownSchemaError(
                        f"database schema is at revision {current}, unknown to this code (head {head}); "
                        "run a newer release"
                    )
                if current != head:
                    if not migrate:
                        raise UnknownSchemaError(f"database schema is at {current}, this code needs {head}")
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    conn.commit()
                    log.info("migrated database schema from %s to %s", current, head)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()
    assert head is not None
    return head


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def main() -> int:
    """taskmesh-migrate: create the database if needed and migrate it to head."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    ensure_database(settings.database_url)
    revision = ensure_schema(settings.database_url)
    print(f"database schema at {revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
