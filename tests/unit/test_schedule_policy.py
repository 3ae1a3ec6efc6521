"""taskmesh.schedule_policy: validation, fire times (DST included), jitter and firing decisions."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh import schedule_policy
from taskmesh.records import DueJob, FiredSlot, SlotSkip
from taskmesh.schedule_policy import FiringRules, Schedule
from taskmesh.service_errors import InvalidArgument
from taskmesh.states import MisfirePolicy, OverlapPolicy, SkipReason
from taskmesh.v1 import job_pb2

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
JOB = "0190a4c2-0000-7000-8000-000000000001"
S = timedelta(seconds=1)


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def cron(expression: str, timezone: str = "", **fields: object) -> Schedule:
    message = job_pb2.Schedule(cron=job_pb2.CronSchedule(expression=expression, timezone=timezone), **fields)
    return schedule_policy.parse(message)


def every(seconds: float, anchor: datetime | None = None, **fields: object) -> Schedule:
    interval = job_pb2.IntervalSchedule(every=Duration(seconds=int(seconds), nanos=round(seconds % 1 * 1e9)))
    if anchor is not None:
        interval.anchor_time.CopyFrom(ts(anchor))
    return schedule_policy.parse(job_pb2.Schedule(interval=interval, **fields))


def local_day(schedule: Schedule, zone: str, day: date) -> list[datetime]:
    """The slots of one local calendar day, as local times."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = (datetime(day.year, day.month, day.day) + timedelta(days=1)).replace(tzinfo=tz)
    slots = schedule_policy.next_fire_times(schedule, start - timedelta(microseconds=1), 500)
    return [slot.astimezone(tz) for slot in slots if slot < end]


def hhmm(values: list[datetime]) -> list[str]:
    return [v.strftime("%H:%M%z") for v in values]


# --- validation -------------------------------------------------------------------------------


def _field(message: job_pb2.Schedule) -> str:
    with pytest.raises(InvalidArgument) as caught:
        schedule_policy.validate(message, NOW)
    return caught.value.field


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (job_pb2.Schedule(), "job.schedule"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="")), "job.schedule.cron.expression"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="61 * * * *")), "job.schedule.cron.expression"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * *")), "job.schedule.cron.expression"),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="0 0 1 1 * 2030 1")),
            "job.schedule.cron.expression",
        ),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="R * * * *")), "job.schedule.cron.expression"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="not cron")), "job.schedule.cron.expression"),
        (job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="0 0 30 2 *")), "job.schedule.cron.expression"),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *", timezone="Mars/Olympus")),
            "job.schedule.cron.timezone",
        ),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *", timezone="../etc/passwd")),
            "job.schedule.cron.timezone",
        ),
        (job_pb2.Schedule(interval=job_pb2.IntervalSchedule()), "job.schedule.interval.every"),
        (
            job_pb2.Schedule(interval=job_pb2.IntervalSchedule(every=Duration(nanos=999_000_000))),
            "job.schedule.interval.every",
        ),
        (
            job_pb2.Schedule(interval=job_pb2.IntervalSchedule(every=Duration(seconds=-5))),
            "job.schedule.interval.every",
        ),
        (job_pb2.Schedule(once=job_pb2.OnceSchedule()), "job.schedule.once.at"),
        (job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(NOW - S))), "job.schedule.once.at"),
        (job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(NOW))), "job.schedule.once.at"),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *"), jitter=Duration(seconds=-1)),
            "job.schedule.jitter",
        ),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *"), jitter=Duration(seconds=86_401)),
            "job.schedule.jitter",
        ),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *"), catch_up_window=Duration()),
            "job.schedule.catch_up_window",
        ),
        (
            job_pb2.Schedule(
                cron=job_pb2.CronSchedule(expression="* * * * *"), catch_up_window=Duration(seconds=-60)
            ),
            "job.schedule.catch_up_window",
        ),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *"), misfire_policy=9),  # type: ignore[arg-type]
            "job.schedule.misfire_policy",
        ),
        (
            job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="* * * * *"), overlap_policy=9),  # type: ignore[arg-type]
            "job.schedule.overlap_policy",
        ),
    ],
)
def test_invalid_schedules_name_the_field(message: job_pb2.Schedule, field: str) -> None:
    assert _field(message) == field


def test_valid_schedules_and_defaults() -> None:
    five = schedule_policy.validate(job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="*/5 * * * *")), NOW)
    assert isinstance(five.kind, schedule_policy.Cron)
    assert five.kind.zone == ZoneInfo("UTC") and not five.kind.has_seconds
    assert five.misfire is MisfirePolicy.FIRE_ONCE and five.overlap is OverlapPolicy.ALLOW
    assert five.catch_up_window == timedelta(hours=1) and five.jitter == timedelta(0)
    six = schedule_policy.validate(job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="*/10 * * * * *")), NOW)
    assert isinstance(six.kind, schedule_policy.Cron) and six.kind.has_seconds
    assert schedule_policy.next_fire_times(six, NOW, 2) == [NOW + 10 * S, NOW + 20 * S]
    daily = schedule_policy.validate(job_pb2.Schedule(cron=job_pb2.CronSchedule(expression="@daily")), NOW)
    assert schedule_policy.next_fire_times(daily, NOW, 1) == [datetime(2024, 6, 2, tzinfo=UTC)]
    named = cron("0 9 * JAN,JUN MON-FRI", "Europe/Berlin")
    assert schedule_policy.next_fire_times(named, NOW, 1) == [datetime(2024, 6, 3, 7, 0, tzinfo=UTC)]
    interval = schedule_policy.validate(
        job_pb2.Schedule(
            interval=job_pb2.IntervalSchedule(every=Duration(seconds=1)),
            jitter=Duration(seconds=5),
            misfire_policy=job_pb2.Schedule.FIRE_ALL,
            overlap_policy=job_pb2.Schedule.REPLACE,
            catch_up_window=Duration(seconds=30),
        ),
        NOW,
    )
    assert interval.kind == schedule_policy.Interval(S, None)
    assert (interval.jitter, interval.catch_up_window) == (5 * S, 30 * S)
    assert (interval.misfire, interval.overlap) == (MisfirePolicy.FIRE_ALL, OverlapPolicy.REPLACE)


def test_stored_schedules_round_trip_through_protobuf_json() -> None:
    data = {"cron": {"expression": "30 2 * * *", "timezone": "Asia/Kolkata"}, "misfirePolicy": "SKIP"}
    parsed = schedule_policy.from_json(data)
    assert isinstance(parsed.kind, schedule_policy.Cron) and parsed.misfire is MisfirePolicy.SKIP


# --- cron fire times and DST ------------------------------------------------------------------


DST_DAYS = [
    # zone, spring-forward day, fall-back day, the repeated wall-clock hour on fall-back day
    ("America/New_York", date(2024, 3, 10), date(2024, 11, 3), 1),
    ("Europe/Berlin", date(2024, 3, 31), date(2024, 10, 27), 2),
]


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
def test_daily_0230_fires_once_on_spring_forward_day_at_the_end_of_the_gap(
    zone: str, spring: date, fall: date, repeated: int
) -> None:
    assert hhmm(local_day(cron("30 2 * * *", zone), zone, spring)) == [
        "03:00" + local_day(cron("0 3 * * *", zone), zone, spring)[0].strftime("%z")
    ]
    # the day before and after: 02:30 as usual
    for day in (spring - timedelta(days=1), spring + timedelta(days=1)):
        assert [v.strftime("%H:%M") for v in local_day(cron("30 2 * * *", zone), zone, day)] == ["02:30"]


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
def test_a_daily_job_in_the_repeated_hour_fires_once_on_fall_back_day(
    zone: str, spring: date, fall: date, repeated: int
) -> None:
    for expression in (f"30 {repeated} * * *", "30 2 * * *", f"0 {repeated} * * *"):
        slots = local_day(cron(expression, zone), zone, fall)
        assert len(slots) == 1, (expression, hhmm(slots))
    # the first occurrence (still summer time)
    (first,) = local_day(cron(f"30 {repeated} * * *", zone), zone, fall)
    assert first.fold == 0 and first.dst() != timedelta(0)


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
@pytest.mark.parametrize("expression", ["0 * * * *", "17 * * * *", "0 0 * * * *"])
def test_an_hourly_job_fires_at_every_real_hour(
    zone: str, spring: date, fall: date, repeated: int, expression: str
) -> None:
    on_spring = local_day(cron(expression, zone), zone, spring)
    on_fall = local_day(cron(expression, zone), zone, fall)
    assert len(on_spring) == 23
    assert len(on_fall) == 25
    for slots in (on_spring, on_fall):
        gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(slots)}
        assert gaps == {timedelta(hours=1)}, "one real hour between consecutive fires"
    # the repeated hour fires twice, once per real occurrence
    assert [s.fold for s in on_fall if s.hour == repeated] == [0, 1]


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
def test_a_job_every_15_minutes_fires_every_real_quarter_hour(
    zone: str, spring: date, fall: date, repeated: int
) -> None:
    assert len(local_day(cron("*/15 * * * *", zone), zone, spring)) == 23 * 4
    assert len(local_day(cron("*/15 * * * *", zone), zone, fall)) == 25 * 4


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
def test_named_hours_with_minute_steps_fire_once_per_wall_time(
    zone: str, spring: date, fall: date, repeated: int
) -> None:
    # every 20 minutes during the hour that disappears: all collapse into the end of the gap
    gap_hour = 2
    spring_slots = local_day(cron(f"*/20 {gap_hour} * * *", zone), zone, spring)
    assert [s.strftime("%H:%M") for s in spring_slots] == ["03:00"]
    # in the repeated hour: the first occurrence only
    fall_slots = local_day(cron(f"*/20 {repeated} * * *", zone), zone, fall)
    assert [s.strftime("%H:%M") for s in fall_slots] == [
        f"{repeated:02}:00",
        f"{repeated:02}:20",
        f"{repeated:02}:40",
    ]
    assert {s.fold for s in fall_slots} == {0}


def test_the_new_york_instants_on_both_transition_days() -> None:
    zone = "America/New_York"
    spring = local_day(cron("30 2 * * *", zone), zone, date(2024, 3, 10))
    assert [s.astimezone(UTC) for s in spring] == [datetime(2024, 3, 10, 7, 0, tzinfo=UTC)]
    fall = local_day(cron("30 1 * * *", zone), zone, date(2024, 11, 3))
    assert [s.astimezone(UTC) for s in fall] == [datetime(2024, 11, 3, 5, 30, tzinfo=UTC)]
    hourly = local_day(cron("0 * * * *", zone), zone, date(2024, 11, 3))
    assert [s.astimezone(UTC).hour for s in hourly[:4]] == [4, 5, 6, 7]


def test_asia_kolkata_half_hour_offset() -> None:
    zone = "Asia/Kolkata"
    daily = cron("0 9 * * *", zone)
    assert schedule_policy.next_fire_times(daily, NOW, 2) == [
        datetime(2024, 6, 2, 3, 30, tzinfo=UTC),
        datetime(2024, 6, 3, 3, 30, tzinfo=UTC),
    ]
    hourly = schedule_policy.next_fire_times(cron("0 * * * *", zone), NOW, 3)
    assert [s.minute for s in hourly] == [30, 30, 30]
    assert {b - a for a, b in itertools.pairwise(hourly)} == {timedelta(hours=1)}
    # no DST: every local day of the year has 24 hourly slots
    start = datetime(2024, 1, 1, tzinfo=ZoneInfo(zone))
    year = schedule_policy.next_fire_times(cron("0 * * * *", zone), start, 366 * 24)
    assert {b - a for a, b in itertools.pairwise(year)} == {timedelta(hours=1)}


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "UTC"])
def test_a_whole_year_of_hourly_slots_is_every_real_hour(zone: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    slots = schedule_policy.next_fire_times(cron("0 * * * *", zone), start, 24 * 366)
    assert slots == sorted(set(slots))
    if zone != "Australia/Lord_Howe":  # a half-hour shift: one real hour is 30 minutes there
        assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(hours=1)}
    assert all(s.astimezone(ZoneInfo(zone)).minute == 0 for s in slots)


@pytest.mark.parametrize(("zone", "spring", "fall", "repeated"), DST_DAYS)
def test_fire_times_do_not_depend_on_where_the_computation_starts(
    zone: str, spring: date, fall: date, repeated: int
) -> None:
    """next_fire_times(after=x) continues the same sequence from any x, mid-transition too."""
    for expression in (
        "30 2 * * *",
        f"30 {repeated} * * *",
        "0 * * * *",
        "*/20 * * * *",
        f"*/20 {repeated} * * *",
    ):
        schedule = cron(expression, zone)
        for day in (spring, fall):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
            full = schedule_policy.next_fire_times(schedule, start, 200)
            probes = [start + timedelta(minutes=13 * k) for k in range(1, 230)]
            for after in probes:
                expected = [s for s in full if s > after][:3]
                if len(expected) == 3 and expected[-1] <= full[-1]:
                    assert schedule_policy.next_fire_times(schedule, after, 3) == expected, (expression, after)


def test_cron_fire_times_are_strictly_after() -> None:
    schedule = cron("* * * * * *")
    assert schedule_policy.next_fire_times(schedule, NOW, 1) == [NOW + S]
    assert schedule_policy.next_fire_times(schedule, NOW - timedelta(microseconds=1), 1) == [NOW]
    assert schedule_policy.next_fire_times(schedule, NOW + timedelta(milliseconds=500), 1) == [NOW + S]


# --- intervals and once -----------------------------------------------------------------------


def test_interval_slots_fall_on_the_anchor_grid() -> None:
    anchor = datetime(2024, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    schedule = every(90, anchor)
    slots = schedule_policy.next_fire_times(schedule, NOW, 3)
    assert all((s - anchor) % timedelta(seconds=90) == timedelta(0) for s in slots)
    assert slots[0] > NOW and slots[0] - NOW <= timedelta(seconds=90)
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(seconds=90)}
    # a slot itself is not "after" itself
    assert schedule_policy.next_fire_times(schedule, slots[0], 1) == [slots[1]]


def test_interval_anchor_in_the_future_starts_there() -> None:
    anchor = NOW + timedelta(hours=2)
    assert schedule_policy.next_fire_times(every(60, anchor), NOW, 2) == [anchor, anchor + timedelta(minutes=1)]


def test_interval_without_anchor_counts_from_creation() -> None:
    created = NOW - timedelta(seconds=10, milliseconds=300)
    schedule = every(1.5).with_default_anchor(created)
    (first,) = schedule_policy.next_fire_times(schedule, NOW, 1)
    assert (first - created) % timedelta(milliseconds=1500) == timedelta(0)
    assert NOW < first <= NOW + timedelta(milliseconds=1500)
    with pytest.raises(ValueError):
        schedule_policy.next_fire_times(every(1.5), NOW, 1)


def test_interval_keeps_microseconds_exact_over_many_slots() -> None:
    anchor = datetime(2020, 1, 1, tzinfo=UTC)
    schedule = every(1.000001, anchor)
    far = schedule_policy.next_fire_times(schedule, anchor + timedelta(days=1000), 1)[0]
    assert (far - anchor) // timedelta(microseconds=1) % 1_000_001 == 0


def test_once_fires_once() -> None:
    at = NOW + timedelta(minutes=5)
    schedule = schedule_policy.parse(job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(at))))
    assert schedule_policy.next_fire_times(schedule, NOW, 5) == [at]
    assert schedule_policy.next_fire_times(schedule, at, 5) == []


# --- jitter -----------------------------------------------------------------------------------


def test_jitter_is_deterministic_and_bounded() -> None:
    schedule = cron("* * * * *", jitter=Duration(seconds=30))
    slots = schedule_policy.next_fire_times(schedule, NOW, 500)
    offsets = [schedule_policy.jitter_offset(schedule, JOB, s) for s in slots]
    assert offsets == [schedule_policy.jitter_offset(schedule, JOB, s) for s in slots]
    assert all(timedelta(0) <= o < timedelta(seconds=30) for o in offsets)
    assert len(set(offsets)) > 450, "spread, not constant"
    assert max(offsets) > timedelta(seconds=25) and min(offsets) < timedelta(seconds=5)
    other = [schedule_policy.jitter_offset(schedule, JOB.replace("1", "2"), s) for s in slots]
    assert other != offsets, "another job spreads differently"
    assert schedule_policy.due_time(schedule, JOB, slots[0]) == slots[0] + offsets[0]
    no_jitter = cron("* * * * *")
    assert schedule_policy.jitter_offset(no_jitter, JOB, slots[0]) == timedelta(0)


def test_first_slot_of_a_new_schedule() -> None:
    schedule = cron("0 * * * *", jitter=Duration(seconds=60))
    first = schedule_policy.first_slot(schedule, JOB, NOW)
    assert first is not None and first.slot == NOW + timedelta(hours=1)
    assert first.due == schedule_policy.due_time(schedule, JOB, first.slot)
    gone = schedule_policy.parse(job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(NOW - S))))
    assert schedule_policy.first_slot(gone, JOB, NOW) is None


# --- decisions --------------------------------------------------------------------------------

RULES = FiringRules(misfire_threshold=timedelta(seconds=5))
START = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"run-{next(counter)}"


def due(
    next_fire_at: datetime,
    now: datetime,
    active: tuple[str, ...] = (),
    resumed_at: datetime | None = None,
) -> DueJob:
    return DueJob(
        id=JOB,
        schedule={},
        create_time=START - timedelta(hours=1),
        next_fire_at=next_fire_at,
        resumed_at=resumed_at,
        active_run_ids=active,
        now=now,
    )


def per_second(**fields: object) -> Schedule:
    return every(1, START - timedelta(hours=1), **fields)


def test_an_on_time_slot_fires_and_moves_to_the_next() -> None:
    decision = schedule_policy.decide(per_second(), due(START, START + timedelta(milliseconds=3)), RULES, ids())
    assert decision.fired == (FiredSlot(START, "run-1"),)
    assert decision.skipped == () and decision.cancel_run_ids == ()
    assert (decision.next_slot, decision.next_due) == (START + S, START + S)
    assert decision.misfired == 0


def test_a_scheduler_running_late_within_the_threshold_catches_up_every_slot() -> None:
    for policy in MisfirePolicy:
        schedule = per_second(misfire_policy=job_pb2.Schedule.MisfirePolicy.Value(policy.value))
        decision = schedule_policy.decide(schedule, due(START, START + 3.5 * S), RULES, ids())
        assert [f.slot_time for f in decision.fired] == [START + k * S for k in range(4)], policy
        assert decision.skipped == () and decision.misfired == 0
        assert decision.next_slot == START + 4 * S


def _missed(policy: MisfirePolicy, **fields: object) -> tuple[Schedule, DueJob]:
    schedule = per_second(misfire_policy=job_pb2.Schedule.MisfirePolicy.Value(policy.value), **fields)
    # no scheduler ran for 20 s: slots START .. START+20s are due, the oldest 20 s late
    return schedule, due(START, START + 20 * S + timedelta(milliseconds=10))


def test_fire_once_fires_one_catch_up_run_for_all_missed_slots() -> None:
    schedule, job = _missed(MisfirePolicy.FIRE_ONCE)
    decision = schedule_policy.decide(schedule, job, RULES, ids())
    assert decision.fired == (FiredSlot(START + 20 * S, "run-1"),)
    assert decision.skipped == tuple(SlotSkip(START + k * S, SkipReason.MISFIRED) for k in range(20))
    assert decision.next_slot == START + 21 * S, "back on the grid"
    assert decision.misfired == 1


def test_skip_fires_nothing_and_records_every_missed_slot() -> None:
    schedule, job = _missed(MisfirePolicy.SKIP)
    decision = schedule_policy.decide(schedule, job, RULES, ids())
    assert decision.fired == ()
    assert [s.slot_time for s in decision.skipped] == [START + k * S for k in range(21)]
    assert {s.reason for s in decision.skipped} == {SkipReason.MISFIRED}
    assert decision.next_slot == START + 21 * S
    assert decision.misfired == 0


def test_fire_all_fires_every_missed_slot_within_the_catch_up_window() -> None:
    schedule, job = _missed(MisfirePolicy.FIRE_ALL, catch_up_window=Duration(seconds=8))
    decision = schedule_policy.decide(schedule, job, RULES, ids())
    fired = [f.slot_time for f in decision.fired]
    assert fired == [START + k * S for k in range(13, 21)]
    assert [s.slot_time for s in decision.skipped] == [START + k * S for k in range(13)]
    assert {s.reason for s in decision.skipped} == {SkipReason.OUTSIDE_CATCH_UP_WINDOW}
    assert decision.misfired == 8
    assert len({f.run_id for f in decision.fired}) == 8


def test_fire_all_default_window_is_one_hour() -> None:
    schedule = per_second(misfire_policy=job_pb2.Schedule.FIRE_ALL)
    decision = schedule_policy.decide(schedule, due(START, START + timedelta(minutes=10)), RULES, ids())
    assert len(decision.fired) == 601 and decision.skipped == ()


def test_slots_that_came_while_paused_are_missed_even_if_recent() -> None:
    # paused over START..START+2s, resumed at START+2.5s; the scheduler sees it at once
    job = due(START, START + 2.6 * S, resumed_at=START + 2.5 * S)
    once = schedule_policy.decide(per_second(), job, RULES, ids())
    assert [f.slot_time for f in once.fired] == [START + 2 * S]
    assert [s.slot_time for s in once.skipped] == [START, START + S]
    skip = schedule_policy.decide(per_second(misfire_policy=job_pb2.Schedule.SKIP), job, RULES, ids())
    assert skip.fired == () and len(skip.skipped) == 3
    fire_all = schedule_policy.decide(per_second(misfire_policy=job_pb2.Schedule.FIRE_ALL), job, RULES, ids())
    assert len(fire_all.fired) == 3 and fire_all.misfired == 3
    # slots after the resume are not affected by it
    later = schedule_policy.decide(
        per_second(), due(START + 3 * S, START + 3 * S, resumed_at=START + 2.5 * S), RULES, ids()
    )
    assert len(later.fired) == 1 and later.misfired == 0


def test_a_long_outage_is_worked_off_in_chunks() -> None:
    rules = FiringRules(misfire_threshold=timedelta(seconds=5), max_slots=100)
    job = due(START, START + timedelta(seconds=250))
    first = schedule_policy.decide(per_second(), job, rules, ids())
    assert first.fired == () and len(first.skipped) == 100, "the catch-up run waits for the last chunk"
    assert first.next_slot == START + 100 * S
    third = schedule_policy.decide(
        per_second(), due(START + 200 * S, START + timedelta(seconds=250)), rules, ids()
    )
    assert [f.slot_time for f in third.fired] == [START + 250 * S]
    assert len(third.skipped) == 50


def test_the_slot_walk_stops_at_the_first_slot_after_now_or_after_max_slots_plus_one() -> None:
    walk = schedule_policy.slots_to_look_at(per_second(), START, START + 2.5 * S, 1000)
    assert walk == (START, START + S, START + 2 * S, START + 3 * S)
    assert schedule_policy.slots_to_look_at(per_second(), START, START + 250 * S, 100) == tuple(
        START + k * S for k in range(101)
    )
    once = schedule_policy.parse(job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(START))))
    assert schedule_policy.slots_to_look_at(once, START, START + S, 1000) == (START,), "no slot after it"


def test_jobs_sharing_a_schedule_and_slot_decide_on_their_own_jitter() -> None:
    """One walk serves every job of the batch; each job's jitter still decides whether it is due."""
    schedule = every(60, START - timedelta(hours=1), jitter=Duration(seconds=30))
    job_ids = [f"0190a4c2-0000-7000-8000-{k:012d}" for k in range(40)]
    now = START + 15 * S
    decisions = [schedule_policy.decide(schedule, replace(due(START, now), id=j), RULES, ids()) for j in job_ids]
    for job_id, decision in zip(job_ids, decisions, strict=True):
        fires = schedule_policy.due_time(schedule, job_id, START) <= now
        assert [f.slot_time for f in decision.fired] == ([START] if fires else [])
        assert decision.next_slot == (START + timedelta(minutes=1) if fires else START)
    assert 0 < sum(bool(d.fired) for d in decisions) < len(job_ids), "some jobs due, some not yet"


def test_jitter_delays_the_fire_but_not_the_slot() -> None:
    schedule = every(3600, START - timedelta(hours=1), jitter=Duration(seconds=600))
    slot = START
    delay = schedule_policy.jitter_offset(schedule, JOB, slot)
    early = schedule_policy.decide(schedule, due(slot, slot + delay - timedelta(microseconds=1)), RULES, ids())
    assert early.fired == () and early.skipped == () and early.next_slot == slot
    on_time = schedule_policy.decide(schedule, due(slot, slot + delay), RULES, ids())
    assert on_time.fired[0].slot_time == slot
    assert on_time.next_due == schedule_policy.due_time(schedule, JOB, on_time.next_slot or slot)


def test_once_is_exhausted_after_its_slot() -> None:
    at = START
    schedule = schedule_policy.parse(job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(at))))
    decision = schedule_policy.decide(schedule, due(at, at + S), RULES, ids())
    assert [f.slot_time for f in decision.fired] == [at]
    assert decision.next_slot is None and decision.next_due is None
    late = schedule_policy.decide(
        schedule_policy.parse(
            job_pb2.Schedule(once=job_pb2.OnceSchedule(at=ts(at)), misfire_policy=job_pb2.Schedule.SKIP)
        ),
        due(at, at + timedelta(hours=1)),
        RULES,
        ids(),
    )
    assert late.fired == () and late.skipped == (SlotSkip(at, SkipReason.MISFIRED),)


def test_forbid_skips_while_a_run_is_active() -> None:
    schedule = per_second(overlap_policy=job_pb2.Schedule.FORBID)
    blocked = schedule_policy.decide(schedule, due(START, START, active=("old-1", "old-2")), RULES, ids())
    assert blocked.fired == ()
    assert blocked.skipped == (SlotSkip(START, SkipReason.OVERLAP, "old-1"),)
    assert blocked.next_slot == START + S
    free = schedule_policy.decide(schedule, due(START, START), RULES, ids())
    assert free.fired == (FiredSlot(START, "run-1"),)
    # two slots due at once: the first run is active when the second comes
    both = schedule_policy.decide(schedule, due(START, START + S), RULES, ids())
    assert both.fired == (FiredSlot(START, "run-1"),)
    assert both.skipped == (SlotSkip(START + S, SkipReason.OVERLAP, "run-1"),)


def test_replace_cancels_the_active_runs_then_fires() -> None:
    schedule = per_second(overlap_policy=job_pb2.Schedule.REPLACE)
    decision = schedule_policy.decide(schedule, due(START, START, active=("old-1", "old-2")), RULES, ids())
    assert decision.cancel_run_ids == ("old-1", "old-2")
    assert decision.fired == (FiredSlot(START, "run-1"),)
    # several slots at once: each replaces the one before, the last one stays
    burst = schedule_policy.decide(schedule, due(START, START + 2 * S, active=("old-1",)), RULES, ids())
    assert [f.run_id for f in burst.fired] == ["run-1", "run-2", "run-3"]
    assert burst.cancel_run_ids == ("old-1", "run-1", "run-2")


def test_allow_ignores_active_runs() -> None:
    decision = schedule_policy.decide(per_second(), due(START, START, active=("old-1",)), RULES, ids())
    assert decision.fired == (FiredSlot(START, "run-1"),) and decision.cancel_run_ids == ()


def test_overlap_applies_to_the_misfire_catch_up() -> None:
    schedule = per_second(overlap_policy=job_pb2.Schedule.FORBID, misfire_policy=job_pb2.Schedule.FIRE_ALL)
    decision = schedule_policy.decide(schedule, due(START, START + 10 * S, active=("old",)), RULES, ids())
    assert decision.fired == ()
    assert {s.reason for s in decision.skipped} == {SkipReason.OVERLAP}
    assert len(decision.skipped) == 11
