"""`taskmesh login`, `logout` and `users ...`."""

from __future__ import annotations

import argparse
import getpass

from taskmesh.cli import config, output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import UsageError


def login(ctx: Context, args: argparse.Namespace) -> int:
    """Log in and store the server and token in the config file (mode 0600)."""
    username = args.username or ctx.env.get(config.ENV_USERNAME) or _ask(ctx, "username: ")
    password = _password(ctx, args)
    response = ctx.client().login(username, password)
    path = ctx.config_path
    config.save(path, config.StoredConfig(server=ctx.connection.server, token=response.access_token))
    minutes = response.expires_in // 60
    if ctx.json:
        ctx.print(
            output.json_text({"server": ctx.connection.server, "config": str(path), **output.to_dict(response)})
        )
    else:
        ctx.print(
            f"logged in to {ctx.connection.server} as {username}; token valid {minutes} min, stored in {path}"
        )
    return 0


def logout(ctx: Context, args: argparse.Namespace) -> int:
    stored = config.load(ctx.config_path)
    if stored.token:
        config.save(ctx.config_path, config.StoredConfig(server=stored.server, token=None))
    ctx.print(f"removed the token from {ctx.config_path}")
    return 0


def _password(ctx: Context, args: argparse.Namespace, env: bool = True) -> str:
    """From --password-stdin, --password, $TASKMESH_PASSWORD (when `env`), or a prompt."""
    if args.password_stdin:
        password = ctx.stdin.readline().rstrip("\r\n")
    else:
        password = args.password or (ctx.env.get(config.ENV_PASSWORD) if env else None) or ""
        if not password:
            password = _ask(ctx, "password: ", secret=True)
    if not password:
        raise UsageError("a password is required: use --password-stdin or --password")
    return password


def _ask(ctx: Context, prompt: str, secret: bool = False) -> str:
    if not ctx.stdin.isatty():
        raise UsageError(f"no {prompt.rstrip(': ')} given (and no terminal to ask on): see --help")
    try:
        return getpass.getpass(prompt) if secret else input(prompt)
    except EOFError:
        raise UsageError(f"no {prompt.rstrip(': ')} given and none could be read from the terminal") from None


def users_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().list_users(), output.users_table)
    return 0


def users_create(ctx: Context, args: argparse.Namespace) -> int:
    password = _password(ctx, args, env=False)  # $TASKMESH_PASSWORD is the caller's own
    user = ctx.client().create_user(args.username, password, args.role)
    ctx.show(user, lambda u: output.users_table([u]))
    return 0


def users_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_user(args.username)
    ctx.print(
        output.json_text({"username": args.username, "deleted": True})
        if ctx.json
        else f"deleted user {args.username}"
    )
    return 0
