"""Alembic environment: runs on the connection taskmesh.db.schema hands over, or on its own
engine from TASKMESH_DATABASE_URL when invoked through the alembic command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from taskmesh.db.models import Base
from taskmesh.settings import get_settings

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(get_settings().database_url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
