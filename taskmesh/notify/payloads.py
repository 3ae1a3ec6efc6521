"""The bytes a channel receives for an event: Taskmesh's JSON event, or a Slack message.

GENERIC: the event object itself ({"id", "type", "time", "job", and "run" / "slot" /
"waited_seconds" by type}), compact JSON with sorted keys. SLACK: {"text": a one-line summary,
"taskmesh_event_id": the id}, the text escaped as Slack asks (& < >), so that a job name cannot
mention @channel or forge a link. Either way the body is signed as sent (taskmesh.notify.signing).
"""

from __future__ import annotations

import json
from typing import Any

from taskmesh.notify.records import Format, Json


def body(event: Json, channel_format: Format) -> bytes:
    if channel_format is Format.SLACK:
        message = {"text": _slack_escape(summary(event)), "taskmesh_event_id": event.get("id", "")}
        return _dump(message)
    return _dump(event)


def summary(event: Json) -> str:
    """One line a person reads: what happened to which job."""
    kind = str(event.get("type", ""))
    job = _name(event.get("job"))
    run: dict[str, Any] = event.get("run") or {}
    run_id = str(run.get("id", ""))
    if kind == "RUN_FAILED":
        error = (run.get("error") or {}).get("message", "")
        return f"Taskmesh: run {run_id} of job {job} FAILED after attempt {run.get('attempt')}" + (
            f": {error}" if error else ""
        )
    if kind == "JOB_RECOVERED":
        return f"Taskmesh: job {job} recovered: run {run_id} SUCCEEDED after a failed run"
    if kind == "RUN_FINISHED":
        return f"Taskmesh: run {run_id} of job {job} finished {run.get('state')}"
    if kind in ("SLOT_MISFIRED", "SLOT_SKIPPED"):
        slot: dict[str, Any] = event.get("slot") or {}
        return f"Taskmesh: job {job}: the slot of {slot.get('time')} did not fire ({slot.get('reason')})"
    if kind == "RUN_STUCK":
        return f"Taskmesh: run {run_id} of job {job} has waited {event.get('waited_seconds')} s to start"
    return f"Taskmesh: {event.get('message', kind)}"


def _name(job: object) -> str:
    return str(job.get("name", "")) if isinstance(job, dict) else "(none)"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
