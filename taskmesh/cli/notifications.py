"""`taskmesh notifications ...`: channels, rules and the deliveries they made."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from taskmesh.cli import output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import UsageError
from taskmesh.cli.jobs import resolve_job
from taskmesh.v1 import notification_service_pb2 as pb


def channels_create(ctx: Context, args: argparse.Namespace) -> int:
    secret = _secret(ctx, args)
    channel = ctx.client().create_notification_channel(
        args.name, args.url, secret, format=args.format, description=args.description or ""
    )
    ctx.show(channel, channel_fields)
    return 0


def channels_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().iter_notification_channels(), channels_table)
    return 0


def channels_get(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().get_notification_channel(args.channel), channel_fields)
    return 0


def channels_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_notification_channel(args.channel)
    return 0


def channels_test(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().test_notification_channel(args.channel), delivery_fields)
    return 0


def rules_create(ctx: Context, args: argparse.Namespace) -> int:
    selector = dict(_pair(label) for label in args.label or ())
    job_id = resolve_job(ctx, args.job) if args.job else ""
    rule = ctx.client().create_notification_rule(
        args.name,
        args.channel,
        args.event,
        job_id=job_id,
        label_selector=selector,
        stuck_after_seconds=args.stuck_after,
    )
    ctx.show(rule, rule_fields)
    return 0


def rules_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().iter_notification_rules(filter=args.filter or ""), rules_table)
    return 0


def rules_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_notification_rule(args.rule)
    return 0


def deliveries(ctx: Context, args: argparse.Namespace) -> int:
    items = ctx.client().iter_notification_deliveries(filter=args.filter or "", page_size=args.page_size)
    ctx.show_list(items, deliveries_table, args.limit)
    return 0


def _secret(ctx: Context, args: argparse.Namespace) -> str:
    if args.secret_stdin:
        return str(ctx.stdin.readline().rstrip("\r\n"))
    if args.secret:
        return str(args.secret)
    raise UsageError("a signing secret is required: use --secret-stdin or --secret")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--label expects KEY=VALUE, got {text!r}")
    return key, value


def _format(value: int) -> str:
    return pb.NotificationChannel.Format.Name(value)


def _events(values: Iterable[int]) -> str:
    return ",".join(pb.NotificationEventType.Name(v) for v in values)


def channel_fields(channel: pb.NotificationChannel) -> str:
    return output.fields(
        [
            ("id", channel.id),
            ("name", channel.name),
            ("url", channel.url),
            ("format", _format(channel.format)),
            ("disabled", str(channel.disabled).lower()),
            ("secret", channel.secret),
        ]
    )


def channels_table(channels: Iterable[pb.NotificationChannel]) -> str:
    rows = [(c.id, c.name, _format(c.format), c.url, "yes" if c.disabled else "") for c in channels]
    return output.table(("ID", "NAME", "FORMAT", "URL", "DISABLED"), rows)


def rule_fields(rule: pb.NotificationRule) -> str:
    return output.fields(
        [
            ("id", rule.id),
            ("name", rule.name),
            ("channel", rule.channel_id),
            ("job", rule.job_id or "-"),
            ("labels", output.labels_text(rule.label_selector) or "-"),
            ("events", _events(rule.events)),
            ("stuck after", output.duration_text(rule.stuck_after)),
        ]
    )


def rules_table(rules: Iterable[pb.NotificationRule]) -> str:
    rows = [
        (
            r.id,
            r.name,
            r.channel_id,
            r.job_id or output.labels_text(r.label_selector) or "(every job)",
            _events(r.events),
        )
        for r in rules
    ]
    return output.table(("ID", "NAME", "CHANNEL", "JOB/LABELS", "EVENTS"), rows)


def delivery_fields(delivery: pb.NotificationDelivery) -> str:
    return output.fields(
        [
            ("id", delivery.id),
            ("event", f"{pb.NotificationEventType.Name(delivery.event_type)} {delivery.event_id}"),
            ("state", pb.NotificationDelivery.State.Name(delivery.state)),
            ("attempts", str(delivery.attempts)),
            ("last error", delivery.last_error or "-"),
        ]
    )


def deliveries_table(items: Iterable[pb.NotificationDelivery]) -> str:
    rows = [
        (
            d.id,
            output.time_text(d.create_time),
            pb.NotificationEventType.Name(d.event_type),
            pb.NotificationDelivery.State.Name(d.state),
            str(d.attempts),
            d.run_id or "-",
            d.last_error[:60] or "-",
        )
        for d in items
    ]
    return output.table(("ID", "CREATED", "EVENT", "STATE", "ATTEMPTS", "RUN", "LAST ERROR"), rows)
