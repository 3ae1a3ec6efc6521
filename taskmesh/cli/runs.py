"""`taskmesh runs ...`: list and inspect runs, cancel, retry, follow them live, read their logs."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from taskmesh.cli import errors, output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import CliError, UsageError
from taskmesh.cli.jobs import resolve_job
from taskmesh.v1 import job_service_pb2, run_pb2

EXIT_BY_FINAL_STATE = {
    run_pb2.Run.SUCCEEDED: errors.OK,
    run_pb2.Run.FAILED: errors.RUN_FAILED,
    run_pb2.Run.CANCELLED: errors.RUN_CANCELLED,
}

LineKey = tuple[int, int, int, str]


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
    """Every page of the run's log lines: printed page by page, or as one JSON response."""
    if args.attempt < 0:
        raise UsageError("--attempt must be an attempt number (1, 2, ...), or 0 for all attempts")
    client = ctx.client()
    merged = job_service_pb2.ListRunLogsResponse()
    token = ""
    while True:
        page = client.list_run_logs(args.run, attempt=args.attempt, page_size=args.page_size, page_token=token)
        if ctx.json:
            merged.lines.extend(page.lines)
        else:
            ctx.print("\n".join(output.log_line(line) for line in page.lines))
        token = page.next_page_token
        if not token:
            break
    merged.truncated_attempts.extend(page.truncated_attempts)  # the last page's word is the latest
    if ctx.json:
        ctx.print(output.json_text(output.to_dict(merged)))
    else:
        ctx.print(output.truncation_notes(merged.truncated_attempts))
    return 0


def watch(ctx: Context, args: argparse.Namespace) -> int:
    """Print state changes and log lines until the run finishes; the exit code tells how it ended.

    The stream only carries lines written after it began, so once it has begun (its first event)
    the lines written before are read with ListRunLogs and printed first; a line that then also
    comes through the stream is printed once."""
    client = ctx.client()
    printer = _WatchPrinter(ctx)
    backlog: Counter[LineKey] | None = None
    for event in client.watch_run(args.run):
        kind = event.WhichOneof("event")
        if kind == "log" and backlog is not None and backlog[_key(event.log)] > 0:
            backlog[_key(event.log)] -= 1
            continue
        if backlog is None and kind == "run":
            earlier = list(client.iter_run_logs(args.run))
            backlog = Counter(_key(line) for line in earlier)
            finished = event.run.state in EXIT_BY_FINAL_STATE  # then: its lines, and how it ended
            if not finished:
                printer.show(event)
            for line in earlier:
                printer.show(job_service_pb2.RunEvent(log=line))
            if not finished:
                continue
        printer.show(event)
    last = printer.last
    if last is None or last.state not in EXIT_BY_FINAL_STATE:
        state = output.state_name(last.state) if last is not None else "unknown"
        raise CliError(f"the watch of run {args.run} ended while the run was {state}")
    return EXIT_BY_FINAL_STATE[last.state]


class _WatchPrinter:
    """Prints watch events: one JSON object per line, or a line per log line and state change."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.last: run_pb2.Run | None = None

    def show(self, event: job_service_pb2.RunEvent) -> None:
        kind = event.WhichOneof("event")
        if self._ctx.json:
            self._ctx.print(json.dumps(output.to_dict(event), separators=(",", ":")))
        elif kind == "log":
            self._ctx.print(output.log_line(event.log))
        elif self.last is None or (self.last.state, self.last.attempt) != (event.run.state, event.run.attempt):
            self._ctx.print(output.run_event_text(event.run, self.last))
        if kind == "run":
            self.last = event.run


def _key(line: run_pb2.LogLine) -> LineKey:
    return (line.attempt, line.time.seconds, line.time.nanos, line.text)
