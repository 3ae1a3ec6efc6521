"""`taskmesh runs ...`: list and inspect runs, cancel, retry, follow them live, read their logs."""

from __future__ import annotations

import argparse
import json

from taskmesh.cli import errors, output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import CliError
from taskmesh.cli.jobs import resolve_job
from taskmesh.v1 import run_pb2

EXIT_BY_FINAL_STATE = {
    run_pb2.Run.SUCCEEDED: errors.OK,
    run_pb2.Run.FAILED: errors.RUN_FAILED,
    run_pb2.Run.CANCELLED: errors.RUN_CANCELLED,
}


def list_runs(ctx: Context, args: argparse.Namespace) -> int:
    job_id = resolve_job(ctx, args.job) if args.job else ""
    conditions = [args.filter] if args.filter else []
    conditions += [f"state={state.upper()}" for state in args.state or ()]
    runs = ctx.client().iter_runs(job_id=job_id, filter=" AND ".join(conditions), page_size=args.page_size)
    ctx.show_list(runs, output.runs_table, args.limit)
    return 0


def get(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().get_run(args.run), output.run_fields)
    return 0


def cancel(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().cancel_run(args.run), output.run_fields)
    return 0


def retry(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().retry_run(args.run), output.run_fields)
    return 0


def logs(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().list_run_logs(args.run, attempt=args.attempt), output.logs_text)
    return 0


def watch(ctx: Context, args: argparse.Namespace) -> int:
    """Print state changes and log lines until the run finishes; the exit code tells how it ended."""
    last: run_pb2.Run | None = None
    for event in ctx.client().watch_run(args.run):
        kind = event.WhichOneof("event")
        if ctx.json:
            ctx.print(json.dumps(output.to_dict(event), separators=(",", ":")))
        elif kind == "log":
            ctx.print(output.log_line(event.log))
        elif kind == "run" and (
            last is None or (last.state, last.attempt) != (event.run.state, event.run.attempt)
        ):
            ctx.print(output.run_event_text(event.run))
        if kind == "run":
            last = event.run
    if last is None or last.state not in EXIT_BY_FINAL_STATE:
        state = output.state_name(last.state) if last is not None else "unknown"
        raise CliError(f"the watch of run {args.run} ended while the run was {state}")
    return EXIT_BY_FINAL_STATE[last.state]
