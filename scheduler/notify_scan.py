"""The notification event scan: every scheduler runs it; cursor rows locked SKIP LOCKED keep
the passes apart (taskmesh.db.notifications). It reads what the run lifecycle already wrote,
after the fact, and turns it into deliveries; nothing on a run's hot path waits for it.

Each pass: finished runs (RUN_FAILED, JOB_RECOVERED, RUN_FINISHED) and skipped slots
(SLOT_MISFIRED, SLOT_SKIPPED) since their cursors, and, at a slower pace, runs waiting longer
than a rule's stuck_after (RUN_STUCK). A full batch is followed by another pass at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from taskmesh.db.notifications import NotificationRepository, ScanResult
from taskmesh.notify import events
from taskmesh.notify.records import FinishedRun, NewDelivery, RuleRecord, SkippedSlot, WaitingRun
from taskmesh.reconnect import Reconnect
from taskmesh.service_errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanConfig:
    interval: float = 1.0
    settle: float = 2.0
    batch_size: int = 1000
    stuck_interval: float = 15.0


def detect_run_events(runs: Sequence[FinishedRun], rules: Sequence[RuleRecord]) -> list[NewDelivery]:
    return events.deliveries((e for run in runs for e in events.run_events(run)), rules)


def detect_slot_events(slots: Sequence[SkippedSlot], rules: Sequence[RuleRecord]) -> list[NewDelivery]:
    return events.deliveries((events.slot_event(slot) for slot in slots), rules)


def detect_stuck(runs: Sequence[WaitingRun], rules: Sequence[RuleRecord]) -> list[NewDelivery]:
    now = datetime.now(UTC)
    return events.deliveries((events.stuck_event(run, now) for run in runs), rules)


class NotificationScan:
    def __init__(self, repository: NotificationRepository, config: ScanConfig, wake: asyncio.Event) -> None:
        self._repository = repository
        self._config = config
        self._wake = wake  # the delivery loop's: set when deliveries were created
        self._reconnect = Reconnect("notification scan", logger=log)
        self._next_stuck = 0.0

    async def run_forever(self) -> None:
        while True:
            try:
                more = await self.scan_once()
                self._reconnect.connected()
            except Unavailable as error:
                await self._reconnect.failed(error)
                continue
            if not more:
                await asyncio.sleep(self._config.interval)

    async def scan_once(self) -> bool:
        """One pass over every source; True when a batch was full (scan again at once)."""
        config = self._config
        if not await self._repository.move_on_without_rules(config.settle):
            await self._scan_stuck()  # moves its cursor on at its own pace
            return False
        runs = await self._repository.scan_finished_runs(config.batch_size, config.settle, detect_run_events)
        slots = await self._repository.scan_skipped_slots(config.batch_size, config.settle, detect_slot_events)
        stuck = await self._scan_stuck()
        created = runs.created + slots.created + stuck.created
        if created:
            self._wake.set()
            log.info("notifications: %d deliveries queued", created)
        return runs.full or slots.full

    async def _scan_stuck(self) -> ScanResult:
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_stuck:
            return ScanResult(None, 0)
        self._next_stuck = loop.time() + self._config.stuck_interval
        return await self._repository.scan_waiting_runs(
            self._config.batch_size, self._config.stuck_interval, detect_stuck
        )
