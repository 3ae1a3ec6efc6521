"""Which events happened, and which channels hear of them: pure functions over plain records.

Event ids are derived from the facts (uuid5 of the event type and what it is about), never
drawn at random: two schedulers that see the same finished run make the same event, and the
deliveries table keeps one row per (event id, channel). A run finishes once (a retried run is
a new run), so its events are keyed by run id; a stuck run by run id and attempt; a skipped
slot by job and slot time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from taskmesh.notify.records import (
    Event,
    EventType,
    FinishedRun,
    JobRef,
    NewDelivery,
    RuleRecord,
    SkippedSlot,
    WaitingRun,
)

EVENT_NAMESPACE = uuid.UUID("6c1f0d0e-8f0b-4a57-9a38-1e1f3b6a0c11")
RUN_EVENTS = frozenset({EventType.RUN_FAILED, EventType.JOB_RECOVERED, EventType.RUN_FINISHED})
SLOT_EVENTS = frozenset({EventType.SLOT_MISFIRED, EventType.SLOT_SKIPPED})
RULE_EVENTS = RUN_EVENTS | SLOT_EVENTS | {EventType.RUN_STUCK}
MISFIRE_REASONS = frozenset({"MISFIRED"})


def event_id(event_type: EventType, *facts: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, ":".join((event_type.value, *facts))))


def selects(rule: RuleRecord, job: JobRef) -> bool:
    """Is the job one of the rule's? Its own job, or (no job) every label of the selector."""
    if rule.job_id is not None:
        return rule.job_id == job.id
    return all(job.labels.get(key) == value for key, value in rule.label_selector.items())


def run_events(run: FinishedRun) -> list[Event]:
    """What a run's end means: RUN_FINISHED always; RUN_FAILED when it FAILED (a run only ends
    FAILED after its last attempt); JOB_RECOVERED when it SUCCEEDED right after a FAILED one."""
    types = [EventType.RUN_FINISHED]
    if run.state == "FAILED":
        types.append(EventType.RUN_FAILED)
    if run.state == "SUCCEEDED" and run.previous_state == "FAILED":
        types.append(EventType.JOB_RECOVERED)
    return [_run_event(t, run) for t in types]


def slot_event(slot: SkippedSlot) -> Event:
    kind = EventType.SLOT_MISFIRED if slot.reason in MISFIRE_REASONS else EventType.SLOT_SKIPPED
    ident = event_id(kind, slot.job.id, slot.slot_time.isoformat())
    return Event(
        id=ident,
        type=kind,
        job=slot.job,
        run_id=None,
        time=slot.record_time,
        data={
            **_header(ident, kind, slot.job, slot.record_time),
            "slot": {"time": _iso(slot.slot_time), "reason": slot.reason},
        },
    )


def stuck_event(run: WaitingRun, now: datetime) -> Event:
    ident = event_id(EventType.RUN_STUCK, run.id, str(run.attempt))
    data = {
        **_header(ident, EventType.RUN_STUCK, run.job, now),
        "run": {"id": run.id, "state": "QUEUED", "attempt": run.attempt, "queue_time": _iso(run.queue_time)},
        "waited_seconds": round(run.waited_seconds, 3),
    }
    return Event(
        id=ident,
        type=EventType.RUN_STUCK,
        job=run.job,
        run_id=run.id,
        time=now,
        data=data,
        waited_seconds=run.waited_seconds,
    )


def matches(rule: RuleRecord, event: Event) -> bool:
    if rule.disabled or event.type not in rule.events or not selects(rule, event.job):
        return False
    if event.type is EventType.RUN_STUCK:
        return (event.waited_seconds or 0.0) >= rule.stuck_after_seconds
    return True


def deliveries(events: Iterable[Event], rules: Sequence[RuleRecord]) -> list[NewDelivery]:
    """One delivery per (event, channel) among the rules that match, the first rule (in the
    order given) naming it; disabled channels are the caller's to leave out of `rules`."""
    chosen: dict[tuple[str, str], NewDelivery] = {}
    for event in events:
        for rule in rules:
            key = (event.id, rule.channel_id)
            if key not in chosen and matches(rule, event):
                chosen[key] = NewDelivery(event=event, channel_id=rule.channel_id, rule_id=rule.id)
    return list(chosen.values())


def wanted(rules: Sequence[RuleRecord]) -> frozenset[EventType]:
    """The event types some enabled rule asks for (a scan needs no source nobody listens to)."""
    return frozenset(t for rule in rules if not rule.disabled for t in rule.events)


def test_event(job: JobRef, now: datetime, nonce: str) -> Event:
    ident = event_id(EventType.TEST, nonce)
    return Event(
        id=ident,
        type=EventType.TEST,
        job=job,
        run_id=None,
        time=now,
        data={**_header(ident, EventType.TEST, job, now), "message": "a test notification from Taskmesh"},
    )


def _run_event(kind: EventType, run: FinishedRun) -> Event:
    ident = event_id(kind, run.id)
    data = {
        **_header(ident, kind, run.job, run.finish_time),
        "run": {
            "id": run.id,
            "state": run.state,
            "attempt": run.attempt,
            "trigger": run.trigger,
            "queue_time": _iso(run.queue_time),
            "start_time": _iso(run.start_time) if run.start_time else None,
            "finish_time": _iso(run.finish_time),
            "error": run.error,
        },
    }
    return Event(id=ident, type=kind, job=run.job, run_id=run.id, time=run.finish_time, data=data)


def _header(ident: str, kind: EventType, job: JobRef, time: datetime) -> dict[str, object]:
    job_data: dict[str, object] | None = {"id": job.id, "name": job.name} if job.id else None
    return {"id": ident, "type": kind.value, "time": _iso(time), "job": job_data}


def _iso(time: datetime) -> str:
    return time.isoformat().replace("+00:00", "Z")
