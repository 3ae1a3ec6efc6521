"""What NotificationService does, free of gRPC: validated channels and rules, test events,
delivery history. Protos in, records out; taskmesh.db.notifications holds the SQL.

A channel's secret is write-only (as job secrets are, taskmesh.redaction): it reads back as
REDACTED, and an update may send REDACTED (or leave the secret out) to keep it, but only while
the URL's origin stays the same, so that whoever cannot read a secret cannot have it sign
requests to a receiver of their choosing either.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from api_server import validation
from taskmesh.audit import AuditContext
from taskmesh.db.notifications import NotificationRepository
from taskmesh.egress import EgressPolicy
from taskmesh.guarded_http import Resolver, resolve
from taskmesh.notify import events, targets
from taskmesh.notify.records import (
    ChannelRecord,
    DeliveryRecord,
    EventType,
    Format,
    JobRef,
    NewDelivery,
    RuleRecord,
)
from taskmesh.redaction import REDACTED, origin
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import notification_service_pb2 as pb

CHANNEL_PATHS = ("name", "url", "secret", "format", "disabled", "description")
RULE_PATHS = ("name", "channel_id", "job_id", "label_selector", "events", "stuck_after", "disabled")
MIN_SECRET, MAX_SECRET = 16, 512
MAX_NAME, MAX_DESCRIPTION = 200, 2000
MIN_STUCK, MAX_STUCK, DEFAULT_STUCK = 1.0, 7 * 86400.0, 300.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Notifications:
    def __init__(
        self, repository: NotificationRepository, egress: EgressPolicy, resolver: Resolver = resolve
    ) -> None:
        self._repository = repository
        self._egress = egress
        self._resolve = resolver

    # --- channels ---
    async def create_channel(self, channel: pb.NotificationChannel, audit: AuditContext) -> ChannelRecord:
        values = {
            "name": _name(channel.name, "channel.name"),
            "url": await self._url(channel.url),
            "secret": _secret(channel.secret),
            "format": _format(channel.format),
            "disabled": channel.disabled,
            "description": _description(channel.description),
        }
        return await self._repository.create_channel(values, _now(), audit)

    async def get_channel(self, channel_id: str) -> ChannelRecord:
        return await self._repository.get_channel(channel_id)

    async def update_channel(
        self, channel: pb.NotificationChannel, paths: Sequence[str], audit: AuditContext
    ) -> ChannelRecord:
        stored = await self._repository.get_channel(channel.id)
        changes: dict[str, Any] = {}
        if "name" in paths:
            changes["name"] = _name(channel.name, "channel.name")
        if "url" in paths:
            changes["url"] = await self._url(channel.url)
        if "format" in paths:
            changes["format"] = _format(channel.format)
        if "disabled" in paths:
            changes["disabled"] = channel.disabled
        if "description" in paths:
            changes["description"] = _description(channel.description)
        new_secret = channel.secret if "secret" in paths and channel.secret not in ("", REDACTED) else None
        if new_secret is not None:
            changes["secret"] = _secret(new_secret)
        elif origin(changes.get("url", stored.url)) != origin(stored.url):
            raise InvalidArgument("channel.secret", "must be sent again when the URL's origin changes")
        return await self._repository.update_channel(stored.id, changes, _now(), audit)

    async def delete_channel(self, channel_id: str, audit: AuditContext) -> None:
        await self._repository.delete_channel(channel_id, audit)

    async def test_channel(self, channel_id: str, audit: AuditContext) -> DeliveryRecord:
        channel = await self._repository.get_channel(channel_id)
        event = events.test_event(JobRef("", ""), _now(), str(uuid.uuid4()))
        delivery_id = await self._repository.enqueue_test(NewDelivery(event, channel.id, None), audit)
        return await self._repository.get_delivery(delivery_id)

    async def _url(self, url: str) -> str:
        checked = targets.check_url(url, "channel.url")
        await targets.check_allowed(checked, self._egress, self._resolve, "channel.url")
        return checked

    # --- rules ---
    async def create_rule(self, rule: pb.NotificationRule, audit: AuditContext) -> RuleRecord:
        values = {
            "name": _name(rule.name, "rule.name"),
            "channel_id": validation.require_id(rule.channel_id, "rule.channel_id"),
            **self._target(rule),
            "events": _events(rule.events),
            "stuck_after_seconds": _stuck_after(rule),
            "disabled": rule.disabled,
        }
        return await self._repository.create_rule(values, _now(), audit)

    async def update_rule(
        self, rule: pb.NotificationRule, paths: Sequence[str], audit: AuditContext
    ) -> RuleRecord:
        stored = await self._repository.get_rule(rule.id)
        changes: dict[str, Any] = {}
        if "name" in paths:
            changes["name"] = _name(rule.name, "rule.name")
        if "channel_id" in paths:
            changes["channel_id"] = validation.require_id(rule.channel_id, "rule.channel_id")
        if "job_id" in paths or "label_selector" in paths:
            merged = pb.NotificationRule(
                job_id=rule.job_id if "job_id" in paths else (stored.job_id or ""),
                label_selector=dict(rule.label_selector) if "label_selector" in paths else stored.label_selector,
            )
            changes.update(self._target(merged))
        if "events" in paths:
            changes["events"] = _events(rule.events)
        if "stuck_after" in paths:
            changes["stuck_after_seconds"] = _stuck_after(rule)
        if "disabled" in paths:
            changes["disabled"] = rule.disabled
        return await self._repository.update_rule(stored.id, changes, _now(), audit)

    async def delete_rule(self, rule_id: str, audit: AuditContext) -> None:
        await self._repository.delete_rule(rule_id, audit)

    @staticmethod
    def _target(rule: pb.NotificationRule) -> dict[str, Any]:
        selector = validation.labels(dict(rule.label_selector), "rule.label_selector")
        if rule.job_id and selector:
            raise InvalidArgument("rule.label_selector", "must be empty when job_id names a job")
        job_id = validation.require_id(rule.job_id, "rule.job_id") if rule.job_id else None
        return {"job_id": job_id, "label_selector": selector}

    @property
    def repository(self) -> NotificationRepository:
        return self._repository


def update_paths(message: Any, paths: list[str], allowed: tuple[str, ...], field: str) -> list[str]:
    """The fields an update names; with no mask, every field the request populates (AIP-134)."""
    if not paths:
        paths = [p for p in allowed if _populated(message, p)]
        if not paths:
            raise InvalidArgument(field, "names no field to update")
    unknown = [p for p in paths if p not in allowed]
    if unknown:
        raise InvalidArgument("update_mask", f"unknown or read-only paths {unknown}; use {list(allowed)}")
    return paths


def _populated(message: Any, path: str) -> bool:
    value = getattr(message, path)
    if path == "stuck_after":
        return bool(message.HasField("stuck_after"))
    if hasattr(value, "__len__"):
        return len(value) > 0
    return bool(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _name(value: str, field: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidArgument(field, "is required")
    if len(name) > MAX_NAME or _CONTROL.search(name):
        raise InvalidArgument(field, f"must be 1-{MAX_NAME} characters without control characters")
    return name


def _description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise InvalidArgument("channel.description", f"must be at most {MAX_DESCRIPTION} characters")
    return value


def _secret(value: str) -> str:
    if value == REDACTED:
        raise InvalidArgument("channel.secret", f"is the redaction placeholder {REDACTED}; send the secret")
    if not MIN_SECRET <= len(value) <= MAX_SECRET:
        raise InvalidArgument("channel.secret", f"must be {MIN_SECRET}-{MAX_SECRET} characters")
    return value


def _format(value: int) -> str:
    if value == pb.NotificationChannel.FORMAT_UNSPECIFIED:
        return Format.GENERIC.value
    if value not in pb.NotificationChannel.Format.values():
        raise InvalidArgument("channel.format", "must be GENERIC or SLACK")
    return pb.NotificationChannel.Format.Name(value)


def _events(values: Sequence[int]) -> list[str]:
    if not values:
        raise InvalidArgument("rule.events", "must name at least one event type")
    chosen = set()
    for value in values:
        if value not in pb.NotificationEventType.values():
            raise InvalidArgument("rule.events", f"unknown event type {value}")
        kind = EventType(pb.NotificationEventType.Name(value))
        if kind not in events.RULE_EVENTS:
            raise InvalidArgument("rule.events", f"{kind.value} is not an event a rule can ask for")
        chosen.add(kind.value)
    return sorted(chosen)


def _stuck_after(rule: pb.NotificationRule) -> float:
    if not rule.HasField("stuck_after"):
        return DEFAULT_STUCK
    seconds = rule.stuck_after.seconds + rule.stuck_after.nanos / 1e9
    if not MIN_STUCK <= seconds <= MAX_STUCK:
        raise InvalidArgument("rule.stuck_after", "must be between 1s and 7 days")
    return seconds
