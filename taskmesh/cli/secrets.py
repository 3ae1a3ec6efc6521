"""`taskmesh secrets ...`: values are read from stdin, a file or an environment variable, never
from the command line (which ends up in shell history and in `ps`), and never printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from taskmesh.cli import output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import UsageError


def add_value_flags(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-file", metavar="PATH", help="the value is this file's content")
    source.add_argument("--from-env", metavar="VAR", help="the value is this environment variable's")
    parser.add_argument("--description", help="what the secret is for")


def _value(ctx: Context, args: argparse.Namespace) -> str:
    """From --from-file, --from-env, else stdin (one trailing newline removed)."""
    if args.from_file:
        try:
            value = Path(args.from_file).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--from-file: cannot read {args.from_file}: {error}") from None
    elif args.from_env:
        if args.from_env not in ctx.env:
            raise UsageError(f"--from-env: ${args.from_env} is not set")
        value = ctx.env[args.from_env]
    else:
        if ctx.stdin.isatty():
            raise UsageError("give the value on stdin (e.g. `printf %s VALUE | taskmesh secrets create NAME`)")
        value = ctx.stdin.read()
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise UsageError("the secret's value is empty")
    return value


def secrets_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().list_secrets(), output.secrets_table)
    return 0


def secrets_create(ctx: Context, args: argparse.Namespace) -> int:
    secret = ctx.client().create_secret(args.name, _value(ctx, args), args.description or "")
    ctx.show(secret, lambda s: output.secrets_table([s]))
    return 0


def secrets_update(ctx: Context, args: argparse.Namespace) -> int:
    secret = ctx.client().update_secret(args.name, _value(ctx, args), args.description)
    ctx.show(secret, lambda s: output.secrets_table([s]))
    return 0


def secrets_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_secret(args.name)
    ctx.print(
        output.json_text({"name": args.name, "deleted": True}) if ctx.json else f"deleted secret {args.name}"
    )
    return 0


def secrets_rotate(ctx: Context, args: argparse.Namespace) -> int:
    rotated = ctx.client().rotate_secrets()
    ctx.show(rotated, lambda r: f"re-sealed {r.rotated} secrets; every secret is under key {r.key_id}")
    return 0
