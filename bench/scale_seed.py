"""Seed a realistic finished history with COPY (no RPCs), for bench/scale.py.

At scale 1: 100,000 jobs (labels team/env/app), 10,000,000 finished runs (90% SUCCEEDED, 7%
FAILED, 3% CANCELLED; 70% scheduled, 25% manual, 5% replays with retried_from), 20,000,000 log
lines with their per-attempt usage rows, and 500,000 skipped slots, spread over the last 60
days. Runs are written oldest first and interleaved across jobs (as a live mesh inserts them),
with time-ordered UUIDv7 ids as taskmesh.ids makes them, so that the heap and the primary key
have the layout a real history has.

Indexes and constraints of the loaded tables are dropped before the load and rebuilt after it
(foreign keys NOT VALID, then validated), from the database's own definitions, so the seed
keeps working as migrations add indexes. A `bench_seed` row records what was seeded: a database
that has it is reused as is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

TABLES = ("runs", "run_logs", "attempt_log_usage", "skipped_slots")
SPAN = timedelta(days=60)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SeedSize:
    jobs: int
    runs_per_job: int
    log_lines_per_run: int
    skipped_slots: int

    @classmethod
    def at(cls, scale: float) -> SeedSize:
        return cls(
            jobs=max(10, int(100_000 * scale)),
            runs_per_job=100,
            log_lines_per_run=2,
            skipped_slots=int(500_000 * scale),
        )

    @property
    def runs(self) -> int:
        return self.jobs * self.runs_per_job


def uuid7(millis: int, rng: random.Random) -> str:
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def job_id(index: int) -> str:
    h = f"{0x5CA1E << 108 | index:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def job_labels(index: int) -> str:
    env = ("prod", "staging", "dev")[index % 3]
    return f'{{"team": "team-{index % 100}", "env": "{env}", "app": "app-{index % 1000}"}}'


def is_seeded(conn: psycopg.Connection) -> bool:
    exists = conn.execute("SELECT to_regclass('bench_seed') IS NOT NULL").fetchone()
    return bool(exists and exists[0] and conn.execute("SELECT 1 FROM bench_seed").fetchone())


def seed(conn: psycopg.Connection, size: SeedSize, now: datetime) -> None:
    """Load the history into a migrated, empty database (conn in autocommit)."""
    started = time.monotonic()
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    saved = _drop_indexes_and_constraints(conn)
    _copy(conn, "jobs (id, name, description, executor, labels, create_time, update_time)", _jobs(size, now))
    print(f"  jobs: {size.jobs:,} in {time.monotonic() - started:.0f}s", flush=True)
    with conn.cursor() as cur:
        runs = cur.copy(
            "COPY runs (id, job_id, state, attempt, trigger, version, executor, queue_time, start_time, "
            "finish_time, worker_id, result, error, attempts, slot_time, idempotency_key, retried_from, "
            "cancel_time) FROM STDIN"
        )
        with runs as copy_runs:
            logs_conn = psycopg.connect(conn.info.dsn, autocommit=True)
            with logs_conn, logs_conn.cursor() as logs_cur:
                logs_cur.execute("SET synchronous_commit = off")
                with (
                    logs_cur.copy("COPY run_logs (run_id, attempt, time, text) FROM STDIN") as copy_logs,
                    psycopg.connect(conn.info.dsn, autocommit=True) as usage_conn,
                    usage_conn.cursor() as usage_cur,
                    usage_cur.copy("COPY attempt_log_usage (run_id, attempt, bytes) FROM STDIN") as copy_usage,
                ):
                    for run_block, log_block, usage_block in _runs(size, now):
                        copy_runs.write(run_block)
                        copy_logs.write(log_block)
                        copy_usage.write(usage_block)
    print(
        f"  runs, logs: {size.runs:,} + {size.runs * size.log_lines_per_run:,} in "
        f"{time.monotonic() - started:.0f}s",
        flush=True,
    )
    _copy(conn, "skipped_slots (job_id, slot_time, reason, record_time)", _skipped(size, now))
    _restore(conn, saved)
    print(f"  indexes and constraints rebuilt at {time.monotonic() - started:.0f}s", flush=True)
    conn.execute("VACUUM (ANALYZE) jobs, runs, run_logs, attempt_log_usage, skipped_slots")
    conn.execute(
        "CREATE TABLE bench_seed (jobs int, runs bigint, log_lines bigint, seeded_at timestamptz, seconds float8)"
    )
    conn.execute(
        "INSERT INTO bench_seed VALUES (%s, %s, %s, %s, %s)",
        (size.jobs, size.runs, size.runs * size.log_lines_per_run, now, time.monotonic() - started),
    )
    print(f"  seeded and vacuumed in {time.monotonic() - started:.0f}s", flush=True)


def _copy(conn: psycopg.Connection, target: str, blocks: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {target} FROM STDIN") as copy:
        for block in blocks:
            copy.write(block)


def _jobs(size: SeedSize, now: datetime) -> Iterator[str]:
    created = (now - SPAN - timedelta(days=1)).isoformat()
    lines = []
    for index in range(size.jobs):
        lines.append(
            f"{job_id(index)}\tscale-job-{index}\tseeded by bench/scale.py\t"
            f'{{"noop": {{}}}}\t{job_labels(index)}\t{created}\t{created}\n'
        )
        if len(lines) >= 10_000:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


def _runs(size: SeedSize, now: datetime) -> Iterator[tuple[str, str, str]]:
    """Rounds of one run per job, oldest round first: (runs, log lines, log usage) text blocks."""
    rng = random.Random(14)
    start_ms = int((now - SPAN).timestamp() * 1000)
    round_ms = int(SPAN.total_seconds() * 1000 / size.runs_per_job)
    previous: list[str | None] = [None] * size.jobs
    runs: list[str] = []
    logs: list[str] = []
    usage: list[str] = []
    pending = 0
    for round_index in range(size.runs_per_job):
        base = start_ms + round_index * round_ms
        for job in range(size.jobs):
            queued_ms = base + (job * 7919) % round_ms
            run_id = uuid7(queued_ms, rng)
            runs.append(_run_line(run_id, job, queued_ms, previous[job], rng))
            previous[job] = run_id
            text_bytes = 0
            for line in range(size.log_lines_per_run):
                text = f"step {line + 1} of {size.log_lines_per_run}: processed {rng.randrange(10_000)} records"
                text_bytes += len(text)
                logs.append(f"{run_id}\t1\t{_ts(queued_ms + 20 + line)}\t{text}\n")
            usage.append(f"{run_id}\t1\t{text_bytes}\n")
            pending += 1
            if pending >= 5_000:
                yield "".join(runs), "".join(logs), "".join(usage)
                runs, logs, usage, pending = [], [], [], 0
    yield "".join(runs), "".join(logs), "".join(usage)


def _ts(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat()


def _run_line(run_id: str, job: int, queued_ms: int, previous: str | None, rng: random.Random) -> str:
    draw = rng.random()
    state = "SUCCEEDED" if draw < 0.90 else "FAILED" if draw < 0.97 else "CANCELLED"
    kind = rng.random()
    trigger = "SCHEDULE" if kind < 0.70 else "MANUAL" if kind < 0.95 or previous is None else "RETRY"
    queued = _ts(queued_ms)
    started = _ts(queued_ms + 15)
    finished = _ts(queued_ms + 15 + rng.randrange(5, 2_000))
    worker = f"worker-{rng.randrange(20)}"
    result = r"\N"
    error = r"\N"
    if state == "SUCCEEDED":
        result = '{"shell": {"exitCode": 0, "outputExcerpt": "done"}}'
    elif state == "FAILED":
        error = '{"kind": "EXECUTOR_FAILED", "message": "exit status 1", "retryable": true}'
    cancel = finished if state == "CANCELLED" else r"\N"
    attempts = (
        f'[{{"attempt": 1, "worker_id": "{worker}", "start_time": "{started}", "finish_time": "{finished}", '
        f'"state": "{state}", "result": {"null" if result == chr(92) + "N" else result}, '
        f'"error": {"null" if error == chr(92) + "N" else error}}}]'
    )
    slot = _ts(queued_ms - queued_ms % 60_000) if trigger == "SCHEDULE" else r"\N"
    key = f"key-{run_id[-12:]}" if trigger == "MANUAL" else r"\N"
    retried = previous if trigger == "RETRY" else r"\N"
    return (
        f"{run_id}\t{job_id(job)}\t{state}\t1\t{trigger}\t4\t"
        f'{{"noop": {{}}}}\t{queued}\t{started}\t{finished}\t{worker}\t{result}\t{error}\t{attempts}\t'
        f"{slot}\t{key}\t{retried}\t{cancel}\n"
    )


def _skipped(size: SeedSize, now: datetime) -> Iterator[str]:
    start_ms = int((now - SPAN).timestamp() * 1000)
    span_ms = int(SPAN.total_seconds() * 1000)
    step = max(1, span_ms // max(1, size.skipped_slots))
    lines = []
    for index in range(size.skipped_slots):
        at = start_ms + index * step
        slot = at - at % 60_000 + 30  # between run slots: never a slot that has a run
        # job by turn: a job's slots lie jobs * step apart, never in the same minute
        lines.append(f"{job_id(index % size.jobs)}\t{_ts(slot)}\tOVERLAP\t{_ts(at)}\n")
        if len(lines) >= 10_000:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


@dataclass(frozen=True)
class Saved:
    constraints: list[tuple[str, str, str, str]]  # table, name, type, definition
    indexes: list[str]


def _drop_indexes_and_constraints(conn: psycopg.Connection) -> Saved:
    tables = list(TABLES)
    constraints = [
        (str(t), str(n), str(c), str(d))
        for t, n, c, d in conn.execute(
            """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
               FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('p', 'u', 'f')
               ORDER BY contype = 'f', conname""",
            (tables,),
        ).fetchall()
    ]
    indexes = [
        str(d)
        for (d,) in conn.execute(
            """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
               WHERE i.indrelid::regclass::text = ANY(%s)
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
            (tables,),
        ).fetchall()
    ]
    for table, name, _kind, _ in sorted(constraints, key=lambda c: c[2] != "f"):
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for definition in indexes:
        name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
        conn.execute(f"DROP INDEX {name}")
    return Saved(constraints, indexes)


def _restore(conn: psycopg.Connection, saved: Saved) -> None:
    for table, name, kind, definition in saved.constraints:
        if kind == "f":
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition} NOT VALID')
            conn.execute(f'ALTER TABLE {table} VALIDATE CONSTRAINT "{name}"')
        else:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        print(f"    {table}.{name}", flush=True)
    for definition in saved.indexes:
        conn.execute(definition)
        print(f"    {definition[:80]}", flush=True)
