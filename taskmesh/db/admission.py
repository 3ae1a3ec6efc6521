"""The admission pass of flow control (README "Flow control"): one transaction, under an
advisory lock that every scheduler's pass takes, so passes never overlap and each one counts
what the passes before it committed. There is no leader: whichever scheduler is woken takes
the lock, others wait for it and find less to do.

A pass renders the keys of newly arrived runs (a key that cannot render ends its run
CANCELLED, kind NOT_ADMITTED), applies on_limit SKIP (a full key ends the run) and
CANCEL_OLDEST (cancels the key's oldest active runs), then admits what fits (ADMIT_RUNS in
taskmesh.db.runs, where every statement that writes runs lives). The keys of on_limit QUEUE runs
are written by ADMIT_RUNS itself, with their admission (one write per run); SKIP and
CANCEL_OLDEST runs have theirs written first (SET_KEYS), as their policies read them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskmesh import flow_policy
from taskmesh.db.outbox import OutboxRepository
from taskmesh.db.pg import Connection, Database, statement, transaction
from taskmesh.db.runs import (
    ADMISSION_LOCK,
    ADMISSION_LOCK_ID,
    ADMIT_RUNS,
    ANY_AWAITING,
    END_UNADMITTED,
    LIST_CONCURRENCY_KEYS,
    PRUNE_GRANTS,
    RATE_WAITING,
    SELECT_KEY_POLICIES,
    SELECT_OLDEST_ACTIVE,
    SELECT_UNRENDERED,
    SELECT_WAITING_COUNTS,
    SET_KEYS,
    WAITING_BY_REASON,
    cancel_runs,
    run_from_row,
)
from taskmesh.flow_keys import KeyTemplateError
from taskmesh.records import RunRecord

NOT_ADMITTED = "NOT_ADMITTED"
# Keys rendered per pass at most (rendering is Python work, per run).
RENDER_BATCH = 2000
# NOTIFY channel of the runs_admission_* triggers (migration 0010).
ADMISSION_CHANNEL = "taskmesh_admission"


# A run's id and its rendered keys.
RenderedKeys = tuple[str, flow_policy.FlowKeys]
# on_limit policies the pass applies before admitting (they read the keys from the runs).
_POLICIES = frozenset({flow_policy.OnLimit.SKIP, flow_policy.OnLimit.CANCEL_OLDEST})


@dataclass(frozen=True)
class KeyUsage:
    key: str
    active: int
    waiting: int
    limit: int


@dataclass
class PassResult:
    admitted: list[RunRecord] = field(default_factory=list)
    wait_seconds: list[float] = field(default_factory=list)
    ended: list[RunRecord] = field(default_factory=list)  # SKIP, unrenderable keys, CANCEL_OLDEST victims
    rendered: int = 0
    idle: bool = False  # nothing awaited admission: the pass skipped its transaction


class AdmissionRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def admit(self, limit: int = 1000, render_limit: int = RENDER_BATCH) -> PassResult:
        """One pass: render up to `render_limit` new runs' keys, admit up to `limit` runs."""
        result = PassResult()
        if not await self._any_awaiting():
            # Most wake-ups (a keyed run ended) find nobody waiting: one index probe instead of
            # a transaction of five statements. A run that arrives after the probe notifies.
            result.idle = True
            return result
        async with transaction(self._engine) as conn:
            await conn.execute(ADMISSION_LOCK, {"lock_id": ADMISSION_LOCK_ID})
            fresh = await self._render_keys(conn, render_limit, result)
            await self._apply_policies(conn, result)
            params = {
                "limit": limit,
                "max_margin": flow_policy.MAX_WINDOW_MARGIN_SECONDS,
                "margin_fraction": flow_policy.WINDOW_MARGIN_FRACTION,
                **_key_params(fresh),
            }
            rows = (await conn.execute(ADMIT_RUNS, params)).all_rows()
        result.admitted = [run_from_row(row) for row in rows]
        result.wait_seconds = [float(row.wait_seconds) for row in rows]
        return result

    async def _render_keys(self, conn: Connection, limit: int, result: PassResult) -> list[RenderedKeys]:
        """Render new runs' keys: those of on_limit SKIP or CANCEL_OLDEST runs are written now
        (the policies read them); the others' are returned, for ADMIT_RUNS to write."""
        rows = (await conn.execute(SELECT_UNRENDERED, {"limit": limit})).all_rows()
        if not rows:
            return []
        rendered: list[RenderedKeys] = []
        failed: list[tuple[str, str]] = []
        for row in rows:
            context = flow_policy.RunContext(
                run_id=row.id,
                attempt=row.attempt,
                job_id=row.job_id,
                job_name=row.job_name,
                slot_time=row.slot_time.isoformat().replace("+00:00", "Z") if row.slot_time else None,
                params=row.parameters,
            )
            try:
                rendered.append((row.id, flow_policy.keys_for(row.flow, context)))
            except (KeyTemplateError, KeyError, ValueError) as error:
                failed.append((row.id, f"the run's key cannot be rendered: {error}"))
        policed = [(run_id, k) for run_id, k in rendered if k.on_limit in _POLICIES]
        if policed:
            await conn.execute(SET_KEYS, _key_params(policed))
        result.rendered = len(rendered)
        result.ended += await _end_unadmitted(conn, failed)
        return [(run_id, k) for run_id, k in rendered if k.on_limit not in _POLICIES]

    async def _apply_policies(self, conn: Connection, result: PassResult) -> None:
        rows = (await conn.execute(SELECT_KEY_POLICIES)).all_rows()
        if not rows:
            return
        skipped: list[tuple[str, str]] = []
        free: dict[str, int] = {}
        cancel_oldest: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            if row.on_limit == flow_policy.OnLimit.SKIP:
                left = free.setdefault(row.key, row.limit - row.active)
                if left > 0:
                    free[row.key] = left - 1  # goes to the admission below
                else:  # full, counting the slots promised to the SKIP runs before it
                    shown = max(row.active, row.limit)
                    skipped.append((row.id, flow_policy.skipped_message(row.key, shown, row.limit)))
            else:
                cancel_oldest[row.key].append(row)
        result.ended += await _end_unadmitted(conn, skipped)
        for key, waiters in cancel_oldest.items():
            first = waiters[0]
            count = flow_policy.to_cancel(
                first.active - first.cancelling, first.cancelling, len(waiters), first.limit
            )
            if count <= 0:
                continue
            victims = (await conn.execute(SELECT_OLDEST_ACTIVE, {"key": key, "limit": count})).first_column()
            result.ended += await cancel_runs(conn, victims)

    async def _any_awaiting(self) -> bool:
        async with statement(self._engine) as conn:
            return bool((await conn.execute(ANY_AWAITING)).one_value())

    async def rate_limited_waiting(self) -> bool:
        async with statement(self._engine) as conn:
            return bool((await conn.execute(RATE_WAITING)).one_value())

    async def prune_grants(self) -> None:
        async with statement(self._engine) as conn:
            await conn.execute(PRUNE_GRANTS)

    async def waiting_by_reason(self) -> dict[str, int]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(WAITING_BY_REASON)).all_rows()
        return {row.reason: int(row.runs) for row in rows}

    async def list_keys(self, prefix: str, after: str, limit: int) -> list[KeyUsage]:
        async with statement(self._engine) as conn:
            rows = (
                await conn.execute(LIST_CONCURRENCY_KEYS, {"prefix": prefix, "after": after, "limit": limit})
            ).all_rows()
        return [KeyUsage(row.key, int(row.active), int(row.waiting), int(row.limit or 0)) for row in rows]

    async def dispatch_reasons(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Why each of these admitted runs (if its work unit is not out yet) waits: the bound."""
        if not run_ids:
            return {}
        held = await OutboxRepository(self._engine).held(run_ids)
        return {run_id: flow_policy.dispatch_reason(ahead) for run_id, ahead in held.items()}

    async def waiting_reasons(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Why each of these runs (if it awaits admission) waits; runs that do not are left out."""
        if not run_ids:
            return {}
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_WAITING_COUNTS, {"run_ids": list(run_ids)})).all_rows()
        return {row.id: _reason(row) for row in rows}


def _key_params(rendered: Sequence[RenderedKeys]) -> dict[str, list[Any]]:
    """Rendered keys as SET_KEYS and ADMIT_RUNS take them: one array per field."""
    return {
        "run_ids": [run_id for run_id, _ in rendered],
        "ckeys": [k.concurrency_key for _, k in rendered],
        "climits": [k.concurrency_limit for _, k in rendered],
        "on_limits": [k.on_limit.value if k.on_limit else None for _, k in rendered],
        "rkeys": [k.rate_limit_key for _, k in rendered],
        "rlimits": [k.rate_limit for _, k in rendered],
        "rperiods": [k.rate_period_seconds for _, k in rendered],
    }


def _reason(row: Any) -> str:
    if not row.keys_rendered:
        return flow_policy.pending_reason(bool(row.has_concurrency))
    if row.rate_limit_key is not None and row.used >= row.rate_limit:
        return flow_policy.rate_reason(row.rate_limit_key, int(row.used), row.rate_limit, row.rate_period_seconds)
    if row.concurrency_key is not None:
        return flow_policy.concurrency_reason(row.concurrency_key, int(row.active), row.concurrency_limit)
    return flow_policy.rate_reason(row.rate_limit_key, int(row.used), row.rate_limit, row.rate_period_seconds)


async def _end_unadmitted(conn: Connection, ended: list[tuple[str, str]]) -> list[RunRecord]:
    if not ended:
        return []
    errors = [json.dumps({"kind": NOT_ADMITTED, "message": message, "retryable": False}) for _, message in ended]
    rows = (await conn.execute(END_UNADMITTED, {"run_ids": [i for i, _ in ended], "errors": errors})).all_rows()
    return [run_from_row(row) for row in rows]
