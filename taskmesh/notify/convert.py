"""Notification records -> protos (the secret never leaves: it reads back as REDACTED)."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from taskmesh.convert import duration, timestamp
from taskmesh.notify.records import ChannelRecord, DeliveryRecord, RuleRecord
from taskmesh.redaction import REDACTED
from taskmesh.v1 import notification_service_pb2 as pb


def channel_to_proto(channel: ChannelRecord) -> pb.NotificationChannel:
    return pb.NotificationChannel(
        id=channel.id,
        name=channel.name,
        url=channel.url,
        secret=REDACTED,
        format=channel.format.value,
        disabled=channel.disabled,
        description=channel.description,
        create_time=timestamp(channel.create_time),
        update_time=timestamp(channel.update_time),
    )


def rule_to_proto(rule: RuleRecord) -> pb.NotificationRule:
    return pb.NotificationRule(
        id=rule.id,
        name=rule.name,
        channel_id=rule.channel_id,
        job_id=rule.job_id or "",
        label_selector=rule.label_selector,
        events=sorted(e.value for e in rule.events),
        stuck_after=duration(rule.stuck_after_seconds),
        disabled=rule.disabled,
        create_time=timestamp(rule.create_time),
        update_time=timestamp(rule.update_time),
    )


def delivery_to_proto(delivery: DeliveryRecord) -> pb.NotificationDelivery:
    event = Struct()
    event.update(delivery.event)
    return pb.NotificationDelivery(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type.value,
        channel_id=delivery.channel_id,
        rule_id=delivery.rule_id or "",
        job_id=delivery.job_id or "",
        run_id=delivery.run_id or "",
        state=delivery.state.value,
        attempts=delivery.attempts,
        create_time=timestamp(delivery.create_time),
        next_attempt_time=timestamp(delivery.next_attempt_at) if delivery.state.value == "PENDING" else None,
        last_attempt_time=timestamp(delivery.last_attempt_time),
        deliver_time=timestamp(delivery.deliver_time),
        last_error=delivery.last_error,
        last_status_code=delivery.last_status_code,
        response_excerpt=delivery.response_excerpt,
        event=event,
    )
