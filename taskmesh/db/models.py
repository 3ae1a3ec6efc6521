"""Table definitions (SQLAlchemy 2 declarative). Alembic migrations create and evolve them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "RETRY_WAIT", "CANCELLING", "CANCELLED")
ROLES = ("ADMIN", "OPERATOR", "VIEWER", "WORKER")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="users_role_valid"),)

    username: Mapped[str] = mapped_column(Text, primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("jobs_create_time_id", "create_time", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    # taskmesh.v1.Executor in protobuf JSON form.
    executor: Mapped[dict[str, Any]] = mapped_column(JSONB)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("state", RUN_STATES), name="runs_state_valid"),
        CheckConstraint("attempt >= 1", name="runs_attempt_positive"),
        Index("runs_job_recent", "job_id", text("queue_time DESC"), text("id DESC")),
        Index("runs_recent", text("queue_time DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("jobs.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(Text)
    # The current attempt: the fencing token every transition is guarded by.
    attempt: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(Text)
    # Bumped by every transition; orders writes to the status cache.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # Snapshot of the job's executor when the run was created.
    executor: Mapped[dict[str, Any]] = mapped_column(JSONB)
    queue_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finish_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # One object per finished attempt: attempt, worker_id, start/finish time, status, result, error.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class Outbox(Base):
    """Work units waiting to be published to RabbitMQ (transactional outbox)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID)
    attempt: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
