"""`taskmesh service-accounts ...` and `taskmesh audit list`."""

from __future__ import annotations

import argparse

from taskmesh.cli import output
from taskmesh.cli.context import Context, take
from taskmesh.cli.jobspec import _convert
from taskmesh.client import builders


def accounts_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().list_service_accounts(), output.service_accounts_table)
    return 0


def accounts_create(ctx: Context, args: argparse.Namespace) -> int:
    account = ctx.client().create_service_account(args.name, args.role, description=args.description)
    ctx.show(account, lambda a: output.service_accounts_table([a]))
    return 0


def accounts_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_service_account(args.name)
    ctx.print(
        output.json_text({"name": args.name, "deleted": True})
        if ctx.json
        else f"deleted service account {args.name} and its API keys"
    )
    return 0


def keys_create(ctx: Context, args: argparse.Namespace) -> int:
    """Prints the key once: it cannot be read back later."""
    ttl = _convert("--ttl", builders.parse_duration, args.ttl) if args.ttl else None
    created = ctx.client().create_api_key(args.name, args.key_name, ttl=ttl)
    if ctx.json:
        ctx.print(output.json_text(output.to_dict(created)))
    else:
        ctx.print(output.api_keys_table([created.api_key]))
        ctx.print(f"\nkey (shown only now; use it as TASKMESH_API_KEY):\n{created.key}")
    return 0


def keys_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().list_api_keys(args.name), output.api_keys_table)
    return 0


def keys_revoke(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().revoke_api_key(args.name, args.key_id)
    ctx.print(
        output.json_text({"key_id": args.key_id, "revoked": True})
        if ctx.json
        else f"revoked API key {args.key_id} of {args.name}"
    )
    return 0


def audit_list(ctx: Context, args: argparse.Namespace) -> int:
    events = ctx.client().iter_audit_events(
        actor=args.actor or "",
        resource=args.resource or "",
        method=args.method or "",
        start_time=_convert("--since", builders.parse_time, args.since) if args.since else None,
        end_time=_convert("--until", builders.parse_time, args.until) if args.until else None,
        page_size=args.page_size,
    )
    ctx.show_list(take(events, args.limit), output.audit_events_table)
    return 0
