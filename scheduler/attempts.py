"""Claims and outcome reports from every connected worker, group-committed to PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

from taskmesh.batching import GroupCommitter
from taskmesh.cache.status import CacheWriter
from taskmesh.db.runs import RunRepository
from taskmesh.records import ClaimedAttempt, ClaimRequest, OutcomeReport, RunRecord
from taskmesh.states import RunState


def next_state(attempt_status: RunState) -> RunState:
    """The state a run moves to when its attempt ends this way."""
    return attempt_status


class AttemptLedger:
    def __init__(self, runs: RunRepository, cache_writer: CacheWriter, lease_seconds: float) -> None:
        self._runs = runs
        self._cache_writer = cache_writer
        self._lease_seconds = lease_seconds
        self._claims: GroupCommitter[ClaimRequest, ClaimedAttempt | None] = GroupCommitter(self._claim_batch)
        self._reports: GroupCommitter[OutcomeReport, RunRecord | None] = GroupCommitter(self._report_batch)

    async def claim(self, request: ClaimRequest) -> ClaimedAttempt | None:
        """The claimed attempt, or None if it is not claimable (stale, duplicate, cancelled, gone)."""
        return await self._claims.submit(request)

    async def record(self, report: OutcomeReport) -> RunRecord | None:
        """The run after the outcome, or None if the report lost the fencing race."""
        return await self._reports.submit(report)

    async def _claim_batch(self, requests: Sequence[ClaimRequest]) -> list[ClaimedAttempt | None]:
        claimed = await self._runs.claim(requests, self._lease_seconds)
        self._cache_writer.enqueue([c.run for c in claimed if c is not None])
        return claimed

    async def _report_batch(self, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
        recorded = await self._runs.record_outcomes(reports)
        self._cache_writer.enqueue([r for r in recorded if r is not None])
        return recorded
