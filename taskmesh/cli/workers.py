"""`taskmesh workers list` and `taskmesh tasks schema`."""

from __future__ import annotations

import argparse
import sys

from taskmesh.cli import output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import UsageError
from taskmesh.tasks import load_registry


def list_workers(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show_list(ctx.client().list_workers(args.pool or ""), output.workers_table)
    return 0


def task_schema(ctx: Context, args: argparse.Namespace) -> int:
    """The registry is imported here, on this machine (as a worker would): no server is asked."""
    if "" not in sys.path:  # the current directory's modules, as `python -m` would find them
        sys.path.insert(0, "")
    try:
        registry = load_registry(args.registry)
    except (ValueError, ImportError) as error:
        raise UsageError(f"{args.registry}: {error}") from None
    schemas = registry.schemas()
    if args.task is not None:
        if args.task not in schemas:
            raise UsageError(
                f"--task {args.task!r}: not in {args.registry} (it has {', '.join(schemas) or 'none'})"
            )
        ctx.print(output.json_text(schemas[args.task]))
    else:
        ctx.print(output.json_text(schemas))
    return 0
