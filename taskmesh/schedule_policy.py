"""Schedules: validation, fire times, jitter and the misfire/overlap decisions. Pure: no I/O.

Fire times of a cron schedule are computed in the schedule's local wall time, then mapped to
real instants around DST changes much as Vixie cron does:

- An expression that names its hours (e.g. `30 2 * * *`) fires once per wall-clock time it
  matches: a time that does not exist (spring forward) fires once at the first valid instant
  after the gap (a daily 02:30 fires at 03:00), a time that happens twice (fall back) fires
  at its first occurrence only.
- An expression whose hour field is a wildcard (`*`, `*/n`) fires at every real occurrence of
  its wall-clock times: none in the gap, both in the repeated hour (an hourly job fires 23
  times on spring-forward day and 25 times on fall-back day).

croniter does the calendar matching on naive wall times; the mapping is done here, because
croniter's own time zone handling fires explicit times twice on fall-back day.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain, islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.records import DueJob, FireDecision, FiredSlot, Json, SlotSkip
from taskmesh.service_errors import InvalidArgument
from taskmesh.states import MisfirePolicy, OverlapPolicy, SkipReason
from taskmesh.v1 import job_pb2

MIN_INTERVAL = timedelta(seconds=1)
MAX_JITTER = timedelta(days=1)
DEFAULT_CATCH_UP_WINDOW = timedelta(hours=1)
MAX_CATCH_UP_WINDOW = timedelta(days=30)
# Slots one decision looks at: a long outage of a fast schedule is worked off in chunks.
MAX_SLOTS_PER_DECISION = 1000
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MICROSECOND = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
# Time zone changes are months apart; probing the offset this often finds every one of them.
_PROBE = timedelta(hours=6)


@dataclass(frozen=True)
class Cron:
    expression: str  # 5 fields, or 6 with seconds first
    zone: ZoneInfo
    has_seconds: bool
    every_occurrence: bool  # the hour field is a wildcard: fire at every real occurrence


@dataclass(frozen=True)
class Interval:
    every: timedelta
    anchor: datetime | None  # None: the job's creation time (see with_default_anchor)


@dataclass(frozen=True)
class Once:
    at: datetime


@dataclass(frozen=True)
class Schedule:
    kind: Cron | Interval | Once
    jitter: timedelta = timedelta(0)
    misfire: MisfirePolicy = MisfirePolicy.FIRE_ONCE
    overlap: OverlapPolicy = OverlapPolicy.ALLOW
    catch_up_window: timedelta = DEFAULT_CATCH_UP_WINDOW

    def with_default_anchor(self, created: datetime) -> Schedule:
        """An interval without anchor_time counts from the job's creation time."""
        if isinstance(self.kind, Interval) and self.kind.anchor is None:
            return replace(self, kind=Interval(self.kind.every, _utc(created)))
        return self


# --- parsing and validation -------------------------------------------------------------------


def validate(message: job_pb2.Schedule, now: datetime, field: str = "job.schedule") -> Schedule:
    """A schedule from a request; InvalidArgument naming the field when it is not acceptable."""
    schedule = parse(message, field)
    if isinstance(schedule.kind, Once) and schedule.kind.at <= now:
        raise InvalidArgument(f"{field}.once.at", "must be in the future")
    if isinstance(schedule.kind, Cron) and not next_fire_times(schedule, now, 1):
        raise InvalidArgument(f"{field}.cron.expression", "never fires")
    return schedule


def parse(message: job_pb2.Schedule, field: str = "job.schedule") -> Schedule:
    kind_name = message.WhichOneof("kind")
    kind: Cron | Interval | Once
    if kind_name == "cron":
        kind = _cron(message.cron, f"{field}.cron")
    elif kind_name == "interval":
        kind = _interval(message.interval, f"{field}.interval")
    elif kind_name == "once":
        if not message.once.HasField("at"):
            raise InvalidArgument(f"{field}.once.at", "is required")
        kind = Once(_from_timestamp(message.once.at))
    else:
        raise InvalidArgument(field, "set exactly one of cron, interval, once")
    jitter = _duration(message.jitter, f"{field}.jitter", timedelta(0), MAX_JITTER, allow_zero=True)
    window = DEFAULT_CATCH_UP_WINDOW
    if message.HasField("catch_up_window"):
        window = _duration(message.catch_up_window, f"{field}.catch_up_window", _SECOND, MAX_CATCH_UP_WINDOW)
    return Schedule(
        kind=kind,
        jitter=jitter,
        misfire=_misfire(message.misfire_policy, f"{field}.misfire_policy"),
        overlap=_overlap(message.overlap_policy, f"{field}.overlap_policy"),
        catch_up_window=window,
    )


def from_json(data: Json) -> Schedule:
    """A stored schedule (protobuf JSON, validated when it was stored)."""
    return parse(json_format.ParseDict(data, job_pb2.Schedule()))


def _cron(spec: job_pb2.CronSchedule, field: str) -> Cron:
    expression = " ".join(spec.expression.split())
    expression = MACROS.get(expression.lower(), expression)
    fields = expression.split(" ")
    if not expression or len(fields) not in (5, 6):
        raise InvalidArgument(
            f"{field}.expression", "must have 5 fields (minute hour day month weekday), or 6 with seconds first"
        )
    # 'R' picks a random value at parse time: fire times would change at every parse.
    if any(part.upper() == "R" for f in fields for part in f.replace("/", ",").split(",")):
        raise InvalidArgument(f"{field}.expression", "random values (R) are not supported")
    has_seconds = len(fields) == 6
    try:
        valid = croniter.is_valid(expression, second_at_beginning=has_seconds)
    except CroniterError:
        valid = False
    if not valid:
        raise InvalidArgument(f"{field}.expression", f"{spec.expression!r} is not a valid cron expression")
    try:
        zone = ZoneInfo(spec.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidArgument(f"{field}.timezone", f"unknown IANA time zone {spec.timezone!r}") from error
    hour = fields[2] if has_seconds else fields[1]
    return Cron(expression, zone, has_seconds, every_occurrence=hour.startswith("*"))


def _interval(spec: job_pb2.IntervalSchedule, field: str) -> Interval:
    if not spec.HasField("every"):
        raise InvalidArgument(f"{field}.every", "is required (at least 1s)")
    every = _duration(spec.every, f"{field}.every", MIN_INTERVAL, timedelta(days=366))
    anchor = _from_timestamp(spec.anchor_time) if spec.HasField("anchor_time") else None
    return Interval(every, anchor)


def _duration(
    value: Duration, field: str, minimum: timedelta, maximum: timedelta, allow_zero: bool = False
) -> timedelta:
    seconds = value.seconds + value.nanos / 1e9
    if allow_zero and seconds == 0:
        return timedelta(0)
    if not minimum.total_seconds() <= seconds <= maximum.total_seconds() or seconds <= 0:
        raise InvalidArgument(field, f"must be between {_human(minimum)} and {_human(maximum)}")
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _human(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{value.total_seconds():g}s"


def _misfire(value: int, field: str) -> MisfirePolicy:
    if value == job_pb2.Schedule.MISFIRE_POLICY_UNSPECIFIED:
        return MisfirePolicy.FIRE_ONCE
    if value not in job_pb2.Schedule.MisfirePolicy.values():
        raise InvalidArgument(field, "must be FIRE_ONCE, SKIP or FIRE_ALL")
    return MisfirePolicy(job_pb2.Schedule.MisfirePolicy.Name(value))


def _overlap(value: int, field: str) -> OverlapPolicy:
    if value == job_pb2.Schedule.OVERLAP_POLICY_UNSPECIFIED:
        return OverlapPolicy.ALLOW
    if value not in job_pb2.Schedule.OverlapPolicy.values():
        raise InvalidArgument(field, "must be ALLOW, FORBID or REPLACE")
    return OverlapPolicy(job_pb2.Schedule.OverlapPolicy.Name(value))


def _from_timestamp(value: Timestamp) -> datetime:
    # PostgreSQL keeps microseconds: so do slot times, wherever they are computed.
    return datetime.fromtimestamp(value.seconds, UTC) + timedelta(microseconds=value.nanos // 1000)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


# --- fire times -------------------------------------------------------------------------------


def next_fire_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The first `count` slots strictly after `after` (UTC datetimes, ascending)."""
    return list(islice(iter_fire_times(schedule, after), count))


def iter_fire_times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Slots strictly after `after`, ascending. Intervals need an anchor (with_default_anchor)."""
    after = _utc(after)
    kind = schedule.kind
    if isinstance(kind, Once):
        if kind.at > after:
            yield kind.at
    elif isinstance(kind, Interval):
        if kind.anchor is None:
            raise ValueError("interval schedule without anchor: call with_default_anchor first")
        yield from _interval_times(kind.every, _utc(kind.anchor), after)
    else:
        yield from _cron_times(kind, after)


def _interval_times(every: timedelta, anchor: datetime, after: datetime) -> Iterator[datetime]:
    step = every // _MICROSECOND
    k = 0 if after < anchor else (after - anchor) // _MICROSECOND // step + 1
    while True:
        yield anchor + timedelta(microseconds=k * step)
        k += 1


def _cron_times(cron: Cron, after: datetime) -> Iterator[datetime]:
    last = after
    start, inclusive = after, False
    while True:
        # One segment of constant UTC offset: wall time = instant + offset.
        offset = _offset(cron.zone, start)
        wall = _naive(start + offset) - (_MICROSECOND if inclusive else timedelta(0))
        matches = _matcher(cron, wall)
        previous = start
        while True:
            try:
                candidate = _aware(matches.get_next(datetime)) - offset
            except CroniterBadDateError:  # no further match at all (e.g. a date in the past)
                return
            change = _first_change(cron.zone, previous, candidate, offset)
            if change is None:
                if candidate > last and (cron.every_occurrence or not _second_occurrence(cron.zone, candidate)):
                    last = candidate
                    yield candidate
                previous = candidate
                continue
            if _offset(cron.zone, change) > offset and not cron.every_occurrence:
                # Spring forward: explicit wall times inside the gap fire when the gap ends.
                gap = (_naive(change + offset), _naive(change + _offset(cron.zone, change)))
                if _matches_within(cron, *gap) and change > last:
                    last = change
                    yield change
            start, inclusive = change, True
            break


def _matches_within(cron: Cron, start: datetime, end: datetime) -> bool:
    """Whether the expression matches a naive wall time in [start, end)."""
    try:
        first = _matcher(cron, start - _SECOND).get_next(datetime)
    except CroniterBadDateError:
        return False
    return bool(first < end)


def _matcher(cron: Cron, start: datetime) -> croniter:
    """A croniter positioned at `start` (naive wall time): a copy of a parsed template, as
    parsing costs more than the matching itself."""
    matcher = copy.copy(_template(cron.expression, cron.has_seconds))
    matcher.set_current(start, force=True)
    return matcher


@lru_cache(maxsize=1024)
def _template(expression: str, has_seconds: bool) -> croniter:
    return croniter(expression, datetime(2000, 1, 1), second_at_beginning=has_seconds)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _second_occurrence(zone: ZoneInfo, instant: datetime) -> bool:
    """The instant's wall time happened once already (the repeated hour after a fall back)."""
    return instant.astimezone(zone).fold == 1


def _first_change(zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta) -> datetime | None:
    """The first instant in (low, high] whose UTC offset differs from `offset`, or None."""
    previous = low
    while True:
        probe = min(previous + _PROBE, high)
        if _offset(zone, probe) != offset:
            return _bisect_change(zone, previous, probe, offset)
        if probe >= high:
            return None
        previous = probe


def _bisect_change(zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta) -> datetime:
    """Offsets change on whole seconds: bisect epoch seconds between low (old) and high (new)."""
    lo = int(low.timestamp() // 1)
    hi = -int(-high.timestamp() // 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _naive(instant: datetime) -> datetime:
    return instant.replace(tzinfo=None)


def _aware(wall: datetime) -> datetime:
    return wall.replace(tzinfo=UTC)


# --- jitter -----------------------------------------------------------------------------------


def jitter_offset(schedule: Schedule, job_id: str, slot: datetime) -> timedelta:
    """A delay in [0, jitter), the same every time for the same job and slot."""
    if not schedule.jitter:
        return timedelta(0)
    key = f"{job_id}|{_utc(slot).isoformat()}".encode()
    fraction = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return timedelta(microseconds=int(fraction * (schedule.jitter // _MICROSECOND)))


def due_time(schedule: Schedule, job_id: str, slot: datetime) -> datetime:
    """When a slot fires: its nominal time plus its jitter."""
    return slot + jitter_offset(schedule, job_id, slot)


@dataclass(frozen=True)
class FirstSlot:
    slot: datetime
    due: datetime


def first_slot(schedule: Schedule, job_id: str, now: datetime) -> FirstSlot | None:
    """The slot a newly set (or changed) schedule fires first: the first one after now."""
    upcoming = next_fire_times(schedule, now, 1)
    if not upcoming:
        return None
    return FirstSlot(upcoming[0], due_time(schedule, job_id, upcoming[0]))


# --- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiringRules:
    """Deployment-wide firing rules (the same for every scheduler)."""

    # A slot fired more than this late counts as missed (no scheduler ran in time), and the
    # misfire policy decides about it and every other slot due with it.
    misfire_threshold: timedelta
    max_slots: int = MAX_SLOTS_PER_DECISION


def decide(schedule: Schedule, job: DueJob, rules: FiringRules, new_run_id: Callable[[], str]) -> FireDecision:
    """What to do about a due job: which slots fire, which are skipped (and why), which active
    runs REPLACE cancels, and the next slot. `schedule` must have its default anchor applied."""
    now = job.now
    due: list[datetime] = []
    pending: datetime | None = None
    for slot in slots_to_look_at(schedule, job.next_fire_at, now, rules.max_slots):
        if len(due) >= rules.max_slots or due_time(schedule, job.id, slot) > now:
            pending = slot
            break
        due.append(slot)
    more_due = pending is not None and due_time(schedule, job.id, pending) <= now
    missed = any(_is_missed(schedule, job, slot, rules) for slot in due)
    to_fire, skipped = _apply_misfire(schedule, due, now, missed, more_due)
    fired, overlap_skips, cancels = _apply_overlap(schedule.overlap, to_fire, job.active_run_ids, new_run_id)
    return FireDecision(
        job_id=job.id,
        fired=tuple(fired),
        skipped=tuple(skipped + overlap_skips),
        cancel_run_ids=tuple(cancels),
        next_slot=pending,
        next_due=None if pending is None else due_time(schedule, job.id, pending),
        misfired=len(fired) if missed else 0,
    )


@lru_cache(maxsize=256)
def slots_to_look_at(schedule: Schedule, first: datetime, now: datetime, max_slots: int) -> tuple[datetime, ...]:
    """`first` and the slots after it, through the first one after `now` (a slot is never due
    before its nominal time, whatever its jitter) or through max_slots + 1 slots. Jobs with the
    same schedule and next slot, claimed at once (the same `now`), share the walk: computed once
    per batch, not once per job (50,000 identical crons cost one croniter walk)."""
    slots: list[datetime] = []
    for slot in chain([first], iter_fire_times(schedule, first)):
        slots.append(slot)
        if slot > now or len(slots) > max_slots:
            break
    return tuple(slots)


def _is_missed(schedule: Schedule, job: DueJob, slot: datetime, rules: FiringRules) -> bool:
    due = due_time(schedule, job.id, slot)
    came_while_paused = job.resumed_at is not None and due < job.resumed_at
    return came_while_paused or job.now - due > rules.misfire_threshold


def _apply_misfire(
    schedule: Schedule, due: Sequence[datetime], now: datetime, missed: bool, more_due: bool
) -> tuple[list[datetime], list[SlotSkip]]:
    if not missed:
        return list(due), []
    policy = schedule.misfire
    if policy is MisfirePolicy.FIRE_ALL:
        cutoff = now - schedule.catch_up_window
        outside = [s for s in due if s < cutoff]
        return [s for s in due if s >= cutoff], [SlotSkip(s, SkipReason.OUTSIDE_CATCH_UP_WINDOW) for s in outside]
    if policy is MisfirePolicy.FIRE_ONCE and due and not more_due:
        # One catch-up run, for the latest missed slot; the earlier ones are recorded.
        return [due[-1]], [SlotSkip(s, SkipReason.MISFIRED) for s in due[:-1]]
    return [], [SlotSkip(s, SkipReason.MISFIRED) for s in due]


def _apply_overlap(
    policy: OverlapPolicy,
    to_fire: Sequence[datetime],
    active_run_ids: Sequence[str],
    new_run_id: Callable[[], str],
) -> tuple[list[FiredSlot], list[SlotSkip], list[str]]:
    fired: list[FiredSlot] = []
    skipped: list[SlotSkip] = []
    cancels: list[str] = []
    active = list(active_run_ids)
    for slot in to_fire:
        if policy is OverlapPolicy.FORBID and active:
            skipped.append(SlotSkip(slot, SkipReason.OVERLAP, active[0]))
            continue
        if policy is OverlapPolicy.REPLACE:
            cancels.extend(active)
            active = []
        run_id = new_run_id()
        fired.append(FiredSlot(slot, run_id))
        active.append(run_id)
    return fired, skipped, cancels
