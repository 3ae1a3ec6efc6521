"""A process's view of its dependencies: named checks run every couple of seconds.

Each process builds a HealthMonitor from small checks (a `SELECT 1`, the state of a broker
connection...). Some checks gate serving: while any of them fails, the process's gRPC health
service says NOT_SERVING (Envoy then routes nothing to it, Kubernetes takes it out of its
Service); once they pass again, SERVING. A serving process whose gating check merely timed out
once keeps serving: under load its own event loop may be what was slow, and taking a busy but
healthy process out of routing only moves its load elsewhere. A second timeout in a row, or
any error, stops serving. The others only inform (the actuator's detail).
The latest results are kept as an immutable snapshot that other threads may read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# A check returns details to show (or None) and raises when the dependency is out of reach.
Check = Callable[[], Awaitable[dict[str, Any] | None]]
OnServing = Callable[[bool], Awaitable[None]]


# Rounds in a row a gating check of a serving process may time out before serving stops.
TOLERATED_TIMEOUTS = 1


@dataclass(frozen=True)
class CheckResult:
    up: bool
    details: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False


@dataclass(frozen=True)
class Snapshot:
    results: Mapping[str, CheckResult]
    serving: bool
    taken_at: float  # time.monotonic()

    def up(self, name: str) -> bool:
        result = self.results.get(name)
        return result is not None and result.up

    def age(self) -> float:
        return time.monotonic() - self.taken_at


NOT_CHECKED = Snapshot(results={}, serving=False, taken_at=float("-inf"))


def is_serving(results: Mapping[str, CheckResult], gating: Collection[str]) -> bool:
    return all(name in results and results[name].up for name in gating)


async def run_check(check: Check, timeout: float) -> CheckResult:
    try:
        details = await asyncio.wait_for(check(), timeout)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return CheckResult(False, {"error": f"no answer within {timeout:g}s"}, timed_out=True)
    except Exception as error:
        return CheckResult(False, {"error": describe(error)})
    return CheckResult(True, details or {})


def describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class HealthMonitor:
    def __init__(
        self,
        checks: Mapping[str, Check],
        gating: Collection[str],
        on_serving: OnServing,
        interval: float = 2.0,
    ) -> None:
        self._checks = dict(checks)
        self._gating = frozenset(gating)
        self._on_serving = on_serving
        self._interval = interval
        self._serving: bool | None = None  # unknown until the first round
        self._timeouts = dict.fromkeys(self._gating, 0)  # rounds in a row each has timed out
        self.snapshot = NOT_CHECKED

    async def check_once(self) -> Snapshot:
        """Run every check at once; tell on_serving when the gating checks' verdict changed."""
        timeout = max(self._interval, 1.0)
        names = list(self._checks)
        results = await asyncio.gather(*(run_check(self._checks[name], timeout) for name in names))
        by_name = dict(zip(names, results, strict=True))
        serving = self._verdict(by_name)
        if serving != self._serving:
            self._log_change(serving, by_name)
            await self._on_serving(serving)
            self._serving = serving
        self.snapshot = Snapshot(results=by_name, serving=serving, taken_at=time.monotonic())
        return self.snapshot

    def _verdict(self, results: Mapping[str, CheckResult]) -> bool:
        for name in self._gating:
            result = results.get(name)
            self._timeouts[name] = self._timeouts[name] + 1 if result is not None and result.timed_out else 0
        if is_serving(results, self._gating):
            return True
        failed = [name for name in self._gating if not (name in results and results[name].up)]
        return self._serving is True and all(0 < self._timeouts[name] <= TOLERATED_TIMEOUTS for name in failed)

    def delay_after(self, snapshot: Snapshot) -> float:
        """The interval; a quarter of it while not serving, to come back quickly."""
        return self._interval if snapshot.serving else self._interval / 4

    async def run_forever(self) -> None:
        while True:
            snapshot = await self.check_once()
            await asyncio.sleep(self.delay_after(snapshot))

    def _log_change(self, serving: bool, results: Mapping[str, CheckResult]) -> None:
        if serving:
            log.info("dependencies reachable: serving")
            return
        failed = {
            name: results[name].details.get("error", "down") for name in self._gating if not results[name].up
        }
        reasons = "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
        if self._serving is None:  # starting up: connections may simply not be open yet
            log.info("not serving yet: %s", reasons)
        else:
            log.warning("not serving: %s", reasons)
