"""Log lines of attempts, capped per attempt: past the cap lines are dropped and the attempt is
marked truncated (its first lines are kept, which usually say what went wrong)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from taskmesh.db.pg import Database, Query, statement, transaction
from taskmesh.limits import MAX_LOG_BYTES_PER_ATTEMPT
from taskmesh.listing import page_length
from taskmesh.records import AttemptRef, LogEntry, RunLogs

MAX_BYTES_PER_ATTEMPT = MAX_LOG_BYTES_PER_ATTEMPT
# A LogLine's bytes besides its text (attempt, time, field tags), for page budgets.
LINE_OVERHEAD = 32

# Count the bytes offered for each attempt the worker's session holds; returns the new totals.
ADD_USAGE = Query(
    """
    INSERT INTO attempt_log_usage (run_id, attempt, bytes)
    SELECT r.id, r.attempt, u.bytes
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:bytes AS bigint[]))
        AS u(run_id, attempt, bytes)
    JOIN runs r ON r.id = u.run_id AND r.attempt = u.attempt AND r.worker_id = :worker_id
        AND r.worker_session = :session
    ON CONFLICT (run_id, attempt) DO UPDATE SET bytes = attempt_log_usage.bytes + EXCLUDED.bytes
    RETURNING run_id::text AS run_id, attempt, bytes
    """
)
INSERT_LINES = Query(
    """
    INSERT INTO run_logs (run_id, attempt, time, text)
    SELECT * FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:times AS timestamptz[]),
                         CAST(:texts AS text[]))
    """
)
MARK_TRUNCATED = Query(
    """
    UPDATE attempt_log_usage SET truncated = true
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[])) AS t(run_id, attempt)
    WHERE attempt_log_usage.run_id = t.run_id AND attempt_log_usage.attempt = t.attempt
    """
)
# Lines in the order they were stored (attempts run one after another); keyset by id.
SELECT_LINES = Query(
    """
    SELECT id, attempt, time, text FROM run_logs
    WHERE run_id = :run_id AND (CAST(:attempt AS int) IS NULL OR attempt = :attempt) AND id > :after_id
    ORDER BY id LIMIT :limit
    """
)
SELECT_TRUNCATED = Query(
    "SELECT attempt FROM attempt_log_usage WHERE run_id = :run_id AND truncated ORDER BY attempt"
)


class LogRepository:
    def __init__(self, engine: Database, max_bytes_per_attempt: int = MAX_BYTES_PER_ATTEMPT) -> None:
        self._engine = engine
        self._cap = max_bytes_per_attempt

    async def append(
        self,
        worker_id: str,
        session: str,
        entries: Sequence[LogEntry],
        truncated_by_worker: Sequence[AttemptRef] = (),
    ) -> list[LogEntry]:
        """Store the lines of attempts this worker's session holds, within the cap; returns those
        stored. Attempts in `truncated_by_worker` (whose lines are among `entries`) are marked
        truncated: the worker discarded their output past the cap."""
        offered: dict[AttemptRef, int] = defaultdict(int)
        for entry in entries:
            offered[entry.ref] += len(entry.text.encode())
        refs = list(offered)
        async with transaction(self._engine) as conn:
            rows = (
                await conn.execute(
                    ADD_USAGE,
                    {
                        "run_ids": [r.run_id for r in refs],
                        "attempts": [r.attempt for r in refs],
                        "bytes": [offered[r] for r in refs],
                        "worker_id": worker_id,
                        "session": session,
                    },
                )
            ).all_rows()
            room = {
                AttemptRef(row.run_id, row.attempt): self._cap
                - (row.bytes - offered[AttemptRef(row.run_id, row.attempt)])
                for row in rows
            }
            kept, truncated = _within_cap(entries, room)
            truncated = sorted(
                set(truncated) | {r for r in truncated_by_worker if r in room}, key=lambda r: (r.run_id, r.attempt)
            )
            if kept:
                await conn.execute(
                    INSERT_LINES,
                    {
                        "run_ids": [e.ref.run_id for e in kept],
                        "attempts": [e.ref.attempt for e in kept],
                        "times": [e.time for e in kept],
                        "texts": [e.text for e in kept],
                    },
                )
            if truncated:
                await conn.execute(
                    MARK_TRUNCATED,
                    {"run_ids": [r.run_id for r in truncated], "attempts": [r.attempt for r in truncated]},
                )
        return kept

    async def read(self, run_id: str, attempt: int | None, after_id: int = 0, limit: int = 1000) -> RunLogs:
        """Up to `limit` lines after the line `after_id`, fewer if they would exceed the page
        byte budget (taskmesh.listing.PAGE_BYTES); next_after_id is set when more remain."""
        params = {"run_id": run_id, "attempt": attempt, "after_id": after_id, "limit": limit + 1}
        async with statement(self._engine) as conn:
            lines = (await conn.execute(SELECT_LINES, params)).all_rows()
            truncated = (await conn.execute(SELECT_TRUNCATED, {"run_id": run_id})).first_column()
        count = page_length((len(row.text.encode()) + LINE_OVERHEAD for row in lines), limit)
        more = len(lines) > count
        lines = lines[:count]
        return RunLogs(
            lines=[LogEntry(AttemptRef(run_id, row.attempt), row.time, row.text) for row in lines],
            truncated_attempts=[int(a) for a in truncated if attempt is None or a == attempt],
            next_after_id=int(lines[-1].id) if more else None,
            last_line_id=int(lines[-1].id) if lines else None,
        )


def _within_cap(
    entries: Sequence[LogEntry], room: dict[AttemptRef, int]
) -> tuple[list[LogEntry], list[AttemptRef]]:
    """Keep lines in order while their attempt has room; attempts not in `room` are not held."""
    kept: list[LogEntry] = []
    truncated: set[AttemptRef] = set()
    for entry in entries:
        if entry.ref not in room:
            continue
        size = len(entry.text.encode())
        if size <= room[entry.ref]:
            kept.append(entry)
            room[entry.ref] -= size
        else:
            room[entry.ref] = 0
            truncated.add(entry.ref)
    return kept, sorted(truncated, key=lambda r: (r.run_id, r.attempt))
