"""Failed logins throttled per username and per client address, across every api_server replica
(the counters live in PostgreSQL, the policy in taskmesh.auth.throttle)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskmesh.auth.throttle import ThrottlePolicy, ThrottleState, admit, give_back
from taskmesh.db.throttle import ThrottleRepository
from taskmesh.service_errors import ResourceExhausted, TaskmeshError
from taskmesh.settings import Settings

log = logging.getLogger(__name__)

CLEAN_UP_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class LoginLimits:
    user: ThrottlePolicy
    address: ThrottlePolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        def policy(limit: int) -> ThrottlePolicy:
            return ThrottlePolicy(
                limit=limit,
                window=timedelta(seconds=settings.login_window_seconds),
                base_delay=timedelta(seconds=settings.login_base_delay_seconds),
                max_delay=timedelta(seconds=settings.login_max_delay_seconds),
            )

        return cls(user=policy(settings.login_user_failures), address=policy(settings.login_address_failures))


@dataclass(frozen=True)
class LoginTicket:
    """An admitted attempt, counted as failed until `succeeded`."""

    keys: tuple[str, ...]


def user_key(username: str) -> str:
    # Hashed: any string a client sends (of any length, NUL included) makes a valid key.
    return "user:" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()


def address_key(address: str) -> str:
    return f"addr:{address}"


class LoginThrottle:
    def __init__(self, repository: ThrottleRepository, limits: LoginLimits) -> None:
        self._repository = repository
        self._limits = limits

    async def admit(self, username: str, address: str) -> LoginTicket:
        """Count the attempt, or raise ResourceExhausted while its username or address must wait."""
        policies = {user_key(username): self._limits.user, address_key(address): self._limits.address}
        waits: list[timedelta] = []

        def change(current: Mapping[str, ThrottleState], now: datetime) -> Mapping[str, ThrottleState]:
            admissions = {key: admit(current[key], now, policy) for key, policy in policies.items()}
            waits.extend(a.retry_after for a in admissions.values() if a.retry_after is not None)
            return {} if waits else {key: a.state for key, a in admissions.items()}

        await self._repository.change(list(policies), change)
        if waits:
            seconds = max(1, math.ceil(max(waits).total_seconds()))
            raise ResourceExhausted(f"too many failed logins; retry in {seconds} s", retry_after=seconds)
        return LoginTicket(tuple(policies))

    async def succeeded(self, ticket: LoginTicket) -> None:
        await self._repository.change(
            ticket.keys, lambda current, now: {key: give_back(state) for key, state in current.items()}
        )

    async def run_forever(self) -> None:
        """Delete counters whose window is over, now and then."""
        window = max(self._limits.user.window, self._limits.address.window)
        while True:
            try:
                await self._repository.delete_stale(window)
            except TaskmeshError as error:
                log.warning("cannot clean up login throttling counters: %s", error.message)
            await asyncio.sleep(CLEAN_UP_INTERVAL_SECONDS)
