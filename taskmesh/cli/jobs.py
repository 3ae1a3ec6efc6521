"""`taskmesh jobs ...`: define, list, change, trigger and pause jobs."""

from __future__ import annotations

import argparse

from taskmesh.cli import jobspec, output
from taskmesh.cli.context import Context
from taskmesh.cli.errors import CliError, UsageError
from taskmesh.ids import is_uuid
from taskmesh.v1 import job_pb2


def resolve_job(ctx: Context, ref: str) -> str:
    """A job id from an id or a name."""
    if is_uuid(ref):
        return ref
    job = ctx.client().find_job(ref)
    if job is None:
        raise CliError(f"not found: no job named {ref!r}")
    return job.id


def create(ctx: Context, args: argparse.Namespace) -> int:
    job = job_pb2.Job()
    if args.from_file:
        job, _ = jobspec.load_job_file(args.from_file, ctx.stdin)
    jobspec.apply_flags(job, args)
    ctx.show(ctx.client().create_job_from(job), output.job_fields)
    return 0


def list_jobs(ctx: Context, args: argparse.Namespace) -> int:
    jobs = ctx.client().iter_jobs(filter=args.filter or "", page_size=args.page_size)
    ctx.show_list(jobs, output.jobs_table, args.limit)
    return 0


def get(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().get_job(resolve_job(ctx, args.job)), output.job_fields)
    return 0


def update(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    job = client.get_job(resolve_job(ctx, args.job))
    touched: set[str] = set()
    if args.from_file:
        file_job, touched = jobspec.load_job_file(args.from_file, ctx.stdin)
        jobspec.overlay_file(job, file_job, touched)
    touched |= jobspec.apply_flags(job, args)
    if not touched:
        raise UsageError("nothing to update: give flags (see taskmesh jobs update --help) or --from-file")
    ctx.show(client.update_job_from(job, sorted(touched)), output.job_fields)
    return 0


def delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for ref in args.jobs:
        job_id = resolve_job(ctx, ref)
        client.delete_job(job_id)
        ctx.print(output.json_text({"id": job_id, "deleted": True}) if ctx.json else f"deleted job {job_id}")
    return 0


def trigger(ctx: Context, args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 1000:
        raise UsageError("--count must be between 1 and 1000")
    parameters = jobspec.trigger_parameters(args.params_file, args.param or [])
    job_id = resolve_job(ctx, args.job)
    if args.count == 1:
        run = ctx.client().trigger_job(job_id, args.idempotency_key, parameters=parameters, priority=args.priority)
        ctx.show(run, output.run_fields)
        return 0
    if args.idempotency_key:
        raise UsageError("--idempotency-key names one run; it cannot go with --count")
    runs = ctx.client().batch_trigger_jobs(
        [job_id] * args.count, parameters=[parameters] * args.count, priority=args.priority
    )
    ctx.show_list(runs, output.runs_table)
    return 0


def concurrency_keys(ctx: Context, args: argparse.Namespace) -> int:
    keys = ctx.client().iter_concurrency_keys(prefix=args.prefix, page_size=args.page_size)
    ctx.show_list(keys, output.concurrency_keys_table, args.limit)
    return 0


def status(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().get_job_status(resolve_job(ctx, args.job)), output.status_fields)
    return 0


def pause(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().pause_job(resolve_job(ctx, args.job)), output.job_fields)
    return 0


def resume(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client().resume_job(resolve_job(ctx, args.job)), output.job_fields)
    return 0


def skipped_slots(ctx: Context, args: argparse.Namespace) -> int:
    slots = ctx.client().iter_skipped_slots(resolve_job(ctx, args.job), page_size=args.page_size)
    ctx.show_list(slots, output.skipped_slots_table, args.limit)
    return 0
