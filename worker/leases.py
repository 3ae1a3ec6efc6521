"""What this worker knows of its leases, on its own monotonic clock.

A lease counts from the moment the claim (or the heartbeat that extended it) was sent, which is
no later than the scheduler started it, less a safety margin: the worker never believes in a
lease the scheduler may already have let go. A pause of the whole process (SIGSTOP, a stalled
event loop, a suspended machine) shows as a deadline passed, since the monotonic clock runs on
meanwhile. A lease that expired here stays expired: the attempt is stopped, not resumed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from taskmesh.records import AttemptRef

Clock = Callable[[], float]
MAX_MARGIN_SECONDS = 1.0
MARGIN_FRACTION = 0.1


class Leases:
    def __init__(self, lease_seconds: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.lease_seconds = lease_seconds  # the scheduler says how long, when it welcomes us
        self._clock = clock
        self._deadlines: dict[AttemptRef, float] = {}

    def now(self) -> float:
        return self._clock()

    @property
    def margin(self) -> float:
        return min(MAX_MARGIN_SECONDS, MARGIN_FRACTION * self.lease_seconds)

    def granted(self, ref: AttemptRef, sent_at: float) -> None:
        """The claim sent at `sent_at` was granted."""
        self._deadlines[ref] = sent_at + self.lease_seconds - self.margin

    def extended(self, refs: Iterable[AttemptRef], sent_at: float) -> None:
        """The heartbeat sent at `sent_at` extended these leases (those still valid here)."""
        deadline = sent_at + self.lease_seconds - self.margin
        for ref in refs:
            if self.valid(ref):
                self._deadlines[ref] = max(self._deadlines[ref], deadline)

    def revoke(self, ref: AttemptRef) -> None:
        """The scheduler says the attempt is gone."""
        if ref in self._deadlines:
            self._deadlines[ref] = -math.inf

    def forget(self, ref: AttemptRef) -> None:
        self._deadlines.pop(ref, None)

    def remaining(self, ref: AttemptRef) -> float:
        """Seconds the lease has left (zero or less: expired, or never granted)."""
        return self._deadlines.get(ref, -math.inf) - self._clock()

    def valid(self, ref: AttemptRef) -> bool:
        return self.remaining(ref) > 0
