"""NotificationService: thin gRPC adapters over api_server.notifications."""

from __future__ import annotations

from typing import Any

from google.protobuf.empty_pb2 import Empty

from api_server import validation
from api_server.notifications import CHANNEL_PATHS, RULE_PATHS, Notifications, update_paths
from taskmesh import listing
from taskmesh.notify.convert import channel_to_proto, delivery_to_proto, rule_to_proto
from taskmesh.notify.records import EventType
from taskmesh.notify.retries import DeliveryState
from taskmesh.rpc.guard import current_audit
from taskmesh.service_errors import InvalidArgument
from taskmesh.v1 import notification_service_pb2 as pb
from taskmesh.v1 import notification_service_pb2_grpc as pb_grpc

Context = Any  # grpc.aio.ServicerContext

RULE_FILTER_FIELDS = {"channel_id": ("=",), "job_id": ("=",)}
DELIVERY_FILTER_FIELDS = {
    "state": ("=", "!="),
    "event_type": ("=", "!="),
    "channel_id": ("=",),
    "rule_id": ("=",),
    "job_id": ("=",),
    "run_id": ("=",),
    "event_id": ("=",),
}
DELIVERY_FILTER_VALUES = {
    "state": frozenset(s.value for s in DeliveryState),
    "event_type": frozenset(e.value for e in EventType),
}


def _token(items: list[Any], count: int) -> str:
    if len(items) <= count:
        return ""
    last = items[count - 1]
    return listing.encode_page_token(last.create_time, last.id)


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, notifications: Notifications) -> None:
        self._notifications = notifications
        self._repository = notifications.repository

    async def CreateNotificationChannel(
        self, request: pb.CreateNotificationChannelRequest, context: Context
    ) -> pb.NotificationChannel:
        if not request.HasField("channel"):
            raise InvalidArgument("channel", "is required")
        return channel_to_proto(await self._notifications.create_channel(request.channel, current_audit()))

    async def GetNotificationChannel(
        self, request: pb.GetNotificationChannelRequest, context: Context
    ) -> pb.NotificationChannel:
        return channel_to_proto(await self._repository.get_channel(validation.require_id(request.id)))

    async def ListNotificationChannels(
        self, request: pb.ListNotificationChannelsRequest, context: Context
    ) -> pb.ListNotificationChannelsResponse:
        limit = listing.page_size(request.page_size)
        items = await self._repository.list_channels(listing.decode_page_token(request.page_token), limit + 1)
        count = min(limit, len(items))
        return pb.ListNotificationChannelsResponse(
            channels=[channel_to_proto(c) for c in items[:count]], next_page_token=_token(items, count)
        )

    async def UpdateNotificationChannel(
        self, request: pb.UpdateNotificationChannelRequest, context: Context
    ) -> pb.NotificationChannel:
        if not request.HasField("channel"):
            raise InvalidArgument("channel", "is required")
        validation.require_id(request.channel.id, "channel.id")
        paths = update_paths(request.channel, list(request.update_mask.paths), CHANNEL_PATHS, "channel")
        return channel_to_proto(await self._notifications.update_channel(request.channel, paths, current_audit()))

    async def DeleteNotificationChannel(
        self, request: pb.DeleteNotificationChannelRequest, context: Context
    ) -> Empty:
        await self._notifications.delete_channel(validation.require_id(request.id), current_audit())
        return Empty()

    async def TestNotificationChannel(
        self, request: pb.TestNotificationChannelRequest, context: Context
    ) -> pb.NotificationDelivery:
        channel_id = validation.require_id(request.id)
        return delivery_to_proto(await self._notifications.test_channel(channel_id, current_audit()))

    async def CreateNotificationRule(
        self, request: pb.CreateNotificationRuleRequest, context: Context
    ) -> pb.NotificationRule:
        if not request.HasField("rule"):
            raise InvalidArgument("rule", "is required")
        return rule_to_proto(await self._notifications.create_rule(request.rule, current_audit()))

    async def GetNotificationRule(
        self, request: pb.GetNotificationRuleRequest, context: Context
    ) -> pb.NotificationRule:
        return rule_to_proto(await self._repository.get_rule(validation.require_id(request.id)))

    async def ListNotificationRules(
        self, request: pb.ListNotificationRulesRequest, context: Context
    ) -> pb.ListNotificationRulesResponse:
        limit = listing.page_size(request.page_size)
        conditions = listing.parse_filter(request.filter, RULE_FILTER_FIELDS)
        for condition in conditions:
            validation.require_id(condition.value, "filter")
        page = listing.decode_page_token(request.page_token)
        items = await self._repository.list_rules(conditions, page, limit + 1)
        count = min(limit, len(items))
        return pb.ListNotificationRulesResponse(
            rules=[rule_to_proto(r) for r in items[:count]], next_page_token=_token(items, count)
        )

    async def UpdateNotificationRule(
        self, request: pb.UpdateNotificationRuleRequest, context: Context
    ) -> pb.NotificationRule:
        if not request.HasField("rule"):
            raise InvalidArgument("rule", "is required")
        validation.require_id(request.rule.id, "rule.id")
        paths = update_paths(request.rule, list(request.update_mask.paths), RULE_PATHS, "rule")
        return rule_to_proto(await self._notifications.update_rule(request.rule, paths, current_audit()))

    async def DeleteNotificationRule(self, request: pb.DeleteNotificationRuleRequest, context: Context) -> Empty:
        await self._notifications.delete_rule(validation.require_id(request.id), current_audit())
        return Empty()

    async def ListNotificationDeliveries(
        self, request: pb.ListNotificationDeliveriesRequest, context: Context
    ) -> pb.ListNotificationDeliveriesResponse:
        limit = listing.page_size(request.page_size)
        conditions = listing.parse_filter(request.filter, DELIVERY_FILTER_FIELDS, DELIVERY_FILTER_VALUES)
        for condition in conditions:
            if condition.field.endswith("_id") and condition.field != "event_id":
                validation.require_id(condition.value, "filter")
        page = listing.decode_page_token(request.page_token)
        items = await self._repository.list_deliveries(conditions, page, limit + 1)
        messages = [delivery_to_proto(d) for d in items]
        count = listing.page_length((m.ByteSize() for m in messages), limit)
        return pb.ListNotificationDeliveriesResponse(
            deliveries=messages[:count], next_page_token=_token(items, count)
        )

    async def GetNotificationDelivery(
        self, request: pb.GetNotificationDeliveryRequest, context: Context
    ) -> pb.NotificationDelivery:
        return delivery_to_proto(await self._repository.get_delivery(validation.require_id(request.id)))
