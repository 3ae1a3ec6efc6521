"""The run lifecycle: every statement that writes a run, each transition one guarded statement.

Run creation (manual, scheduled, retry), claim, outcome, heartbeat, cancel, retry promotion and
expiry all live here, and nowhere else writes runs.state; taskmesh.db.schedules and the
scheduler's maintenance call in. Only this module knows the outbox rule (see _queueing).

A transition names the state(s) it expects and the attempt (the fencing token). A stale or
duplicate request matches no row and changes nothing; callers learn it from the missing row.
Statements take batches (arrays bound with unnest) so that a burst costs one round trip.
tests/integration/test_transitions.py checks the edges these statements take against
taskmesh.states.ALLOWED_TRANSITIONS, on the real database.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from taskmesh.audit import AuditContext
from taskmesh.db.audit import AUDIT_COLUMNS, audit_cte, audited
from taskmesh.db.outbox import route_of
from taskmesh.db.paging import Keyset, page_query
from taskmesh.db.pg import Connection, Database, Query, statement, transaction
from taskmesh.flow_policy import SKIPPED_FORMAT
from taskmesh.records import (
    AttemptRef,
    ClaimedAttempt,
    ClaimRequest,
    Condition,
    ExpiredAttempt,
    MaintenanceDue,
    OutcomeReport,
    Page,
    RunRecord,
    RunRequest,
)
from taskmesh.retry_policy import DEFAULT_ATTEMPT_TIMEOUT
from taskmesh.service_errors import FailedPrecondition, NotFound
from taskmesh.states import ACTIVE_STATES, LEASED_STATES, TERMINAL_STATES, RunState, Trigger, in_order

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# NOTIFY channel of the run_cancelling_notify trigger (migration 0002): 'run_id:attempt:worker_id'.
CANCEL_CHANNEL = "taskmesh_cancel"


def sql_states(states: frozenset[RunState]) -> str:
    """A set of states as an SQL list, always in the same order: ('RUNNING', 'CANCELLING')."""
    return "(" + ", ".join(f"'{state.value}'" for state in in_order(states)) + ")"


ACTIVE = sql_states(ACTIVE_STATES)
LEASED = sql_states(LEASED_STATES)
FINISHED = sql_states(TERMINAL_STATES)
# What an ended attempt may leave its run in (scheduler.outcomes decides which).
OUTCOMES = sql_states(frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.RETRY_WAIT, RunState.CANCELLED}))
# What cancelling may stop: QUEUED and RETRY_WAIT at once, RUNNING through CANCELLING.
CANCELLABLE = sql_states(frozenset({RunState.QUEUED, RunState.RETRY_WAIT, RunState.RUNNING}))

# Every query that returns runs selects these, with jobs joined as j for the name.
RUN_COLUMNS = """
    r.id::text AS id, r.job_id::text AS job_id, j.name AS job_name, r.state, r.attempt, r.trigger,
    r.version, r.queue_time, r.start_time, r.finish_time, r.worker_id, r.result, r.error, r.attempts,
    r.slot_time, r.retry_at, r.idempotency_key, r.retried_from::text AS retried_from, r.cancel_time,
    (SELECT min(k) FROM jsonb_object_keys(r.executor) AS k) AS executor_kind, r.parameters, r.output, r.pool,
    r.executor #>> '{python,task}' AS task, r.priority, r.concurrency_key, r.rate_limit_key, r.awaiting_admission
"""

# What a new run takes from its job (joined as `jobs`) for flow control: a job with a
# concurrency or rate limit makes its runs wait for admission (see ADMIT_RUNS), without a work unit.
FLOW_SNAPSHOT = """
    CASE WHEN jobs.concurrency IS NULL AND jobs.rate_limit IS NULL THEN NULL
         ELSE jsonb_build_object('concurrency', jobs.concurrency, 'rate_limit', jobs.rate_limit) END"""
AWAITS_ADMISSION = "(jobs.concurrency IS NOT NULL OR jobs.rate_limit IS NOT NULL)"
FLOW_FROM_JOB = f"{FLOW_SNAPSHOT}, {AWAITS_ADMISSION}"


def _queueing(*ctes: str) -> Query:
    """The outbox rule, written once: every run that enters QUEUED (a new run, or the next
    attempt of a retried one) gets its work unit in the outbox in the same statement, so the
    relay publishes it exactly when the run exists, unless it awaits admission (flow control):
    then ADMIT_RUNS writes its work unit when it admits it. `ctes` include `queued`, which
    returns (RETURNING *) the runs entering QUEUED; the statement returns those runs."""
    return Query(
        f"""
    WITH {", ".join(ctes)}, dispatched AS (
        INSERT INTO outbox (run_id, attempt, priority, route)
        SELECT q.id, q.attempt, q.priority, {route_of("q")} FROM queued q
        WHERE q.state = 'QUEUED' AND NOT q.awaiting_admission
    )
    SELECT {RUN_COLUMNS} FROM queued r JOIN jobs j ON j.id = r.job_id
    """
    )


# Manual runs: new QUEUED runs of the given jobs, with the parameters the caller merged and
# validated at job version :job_versions (the job's update_time): a job changed since creates
# nothing for that request, nor does a key already used for the job (the caller looks the
# earlier run up, or validates again). :parameters is ONE JSON array (an object or null per
# request): psycopg escapes every quote of every element of a jsonb[] with a regular expression,
# which cost more than the rest of the trigger path.
# The same statement writes the calls' audit rows: one per single TriggerJob (their calls are
# group-committed: each request names its caller, an index into the distinct callers of the
# statement, and its request id, so a row costs two bound values), written only if the job
# exists at the request's version (the guard of `queued`), as the call then succeeds (with a new
# run, or the run of its idempotency key): a request refused as stale writes none, so the one
# its caller makes after validating again writes the call's only row, unless its key is already
# used (the earlier run is then the answer, and the row is written now); and one for a
# BatchTriggerJobs call (:batch_*).
# Admission at trigger: a request whose concurrency key the caller rendered (:ckeys; see
# TRIGGER_KEY_LOCKS, taken first in the same transaction) is admitted by the insert itself
# (its work unit written at once) when nobody waits for its key and the key has room for it,
# counting the requests ranked before it in the statement (priority, then order); otherwise it
# waits with its keys (on_limit QUEUE: the pass admits it in turn) or ends CANCELLED (on_limit
# SKIP; a SKIP key that has waiters leaves the decision to the pass). Unrendered requests
# wait for the pass as before.
CREATE_RUNS = _queueing(
    """request AS (
        SELECT t.run_id, t.job_id, t.idempotency_key, t.job_version, t.priority,
               NULLIF(CAST(:parameters AS jsonb) -> CAST(t.position - 1 AS int), CAST('null' AS jsonb)) AS parameters,
               t.caller, t.request_id, t.ckey, t.climit, t.on_limit, t.position
        FROM unnest(CAST(:run_ids AS uuid[]), CAST(:job_ids AS uuid[]), CAST(:keys AS text[]),
                    CAST(:job_versions AS timestamptz[]), CAST(:priorities AS int[]),
                    CAST(:audit_callers AS int[]), CAST(:audit_request_ids AS text[]),
                    CAST(:ckeys AS text[]), CAST(:climits AS int[]), CAST(:on_limits AS text[])) WITH ORDINALITY
            AS t(run_id, job_id, idempotency_key, job_version, priority, caller, request_id, ckey, climit, on_limit,
                 position)
    )""",
    """keyed AS (
        SELECT r.run_id, r.ckey, r.climit, r.on_limit,
               row_number() OVER (PARTITION BY r.ckey ORDER BY COALESCE(r.priority, jobs.priority) DESC, r.position)
                   AS rank
        FROM request r JOIN jobs ON jobs.id = r.job_id
        WHERE r.ckey IS NOT NULL AND r.job_version IS NOT NULL
    )""",
    f"""key_state AS MATERIALIZED (
        SELECT k.ckey,
               (SELECT count(*) FROM runs a WHERE a.concurrency_key = k.ckey AND NOT a.awaiting_admission
                AND a.state IN {ACTIVE}) AS active,
               EXISTS (SELECT 1 FROM runs w WHERE w.concurrency_key = k.ckey AND w.awaiting_admission
                       AND w.state = 'QUEUED') AS waited
        FROM (SELECT DISTINCT ckey FROM keyed) k
    )""",
    """verdict AS MATERIALIZED (
        SELECT k.run_id, k.ckey, k.climit, k.on_limit, s.active,
               CASE WHEN NOT s.waited AND k.rank <= k.climit - s.active THEN 'ADMIT'
                    WHEN k.on_limit = 'QUEUE' THEN 'WAIT'
                    WHEN NOT s.waited THEN 'SKIP' END AS verdict
        FROM keyed k JOIN key_state s ON s.ckey = k.ckey
    )""",
    """caller AS (
        SELECT * FROM unnest(CAST(:caller_actors AS text[]), CAST(:caller_roles AS text[]),
                             CAST(:caller_keys AS text[]), CAST(:caller_methods AS text[]))
            WITH ORDINALITY AS c(actor, role, api_key_id, method, n)
    )""",
    f"""audited AS (
        INSERT INTO audit_events ({AUDIT_COLUMNS})
        SELECT c.actor, c.role, c.api_key_id, c.method, r.request_id, 'jobs/' || r.job_id::text, 'OK', NULL
        FROM request r JOIN caller c ON c.n = r.caller
        JOIN jobs ON jobs.id = r.job_id AND (
            r.job_version IS NULL OR jobs.update_time = r.job_version
            -- stale, but the run of its (used) key answers the call: no second try follows
            OR (r.idempotency_key IS NOT NULL AND EXISTS (
                SELECT 1 FROM runs k WHERE k.job_id = r.job_id AND k.idempotency_key = r.idempotency_key)))
        UNION ALL
        SELECT CAST(:batch_actor AS text), :batch_role, :batch_key, :batch_method, :batch_request_id,
               :batch_resource, 'OK', CAST(:batch_detail AS jsonb)
        WHERE CAST(:batch_actor AS text) IS NOT NULL
    )""",
    f"""queued AS (
        INSERT INTO runs (id, job_id, state, attempt, trigger, executor, retry_policy, attempt_timeout_seconds,
                          idempotency_key, queue_time, parameters, pool, start_deadline_at, priority, flow,
                          awaiting_admission, keys_rendered, concurrency_key, concurrency_limit, on_limit,
                          admit_time, finish_time, error)
        SELECT request.run_id, jobs.id, CASE WHEN v.verdict = 'SKIP' THEN 'CANCELLED' ELSE 'QUEUED' END, 1,
               :trigger, jobs.executor, jobs.retry_policy,
               jobs.attempt_timeout_seconds, request.idempotency_key, clock_timestamp(), request.parameters,
               jobs.pool, CASE WHEN jobs.start_deadline_seconds IS NULL OR v.verdict = 'SKIP' THEN NULL ELSE clock_timestamp() + make_interval(secs => jobs.start_deadline_seconds) END,
               -- a run whose keys are rendered needs no snapshot to render them from
               COALESCE(request.priority, jobs.priority), CASE WHEN v.verdict IS NULL THEN {FLOW_SNAPSHOT} END,
               CASE WHEN v.verdict IS NULL THEN {AWAITS_ADMISSION} ELSE v.verdict = 'WAIT' END,
               v.verdict IS NOT NULL, v.ckey, v.climit, v.on_limit,
               CASE WHEN v.verdict = 'ADMIT' THEN clock_timestamp() END,
               CASE WHEN v.verdict = 'SKIP' THEN clock_timestamp() END,
               CASE WHEN v.verdict = 'SKIP' THEN jsonb_build_object(
                   'kind', 'NOT_ADMITTED', 'retryable', false,
                   'message', format(:skipped_format, v.ckey, GREATEST(v.active, v.climit), v.climit)) END
        FROM request JOIN jobs ON jobs.id = request.job_id
        LEFT JOIN verdict v ON v.run_id = request.run_id
        WHERE request.job_version IS NULL OR jobs.update_time = request.job_version
        ON CONFLICT (job_id, idempotency_key) DO NOTHING
        RETURNING *
    )""",
)

# Taken before CREATE_RUNS admits at trigger, in its transaction (CREATE_RUNS then sees every
# earlier decision committed): the admission pass's lock, shared (triggers exclude the pass,
# not each other), then locks on the requests' keys, each list in ascending order, so that
# triggers of the same key exclude each other: a lock per key (:keys, a hash of each; triggers
# of different keys do not wait for each other), with the key's bucket (one of
# KEY_LOCK_BUCKETS) held shared; a call with more than MAX_KEY_LOCKS keys holds its buckets
# exclusively instead (:buckets), which bounds the locks a transaction holds. A trigger that
# stalls with them is ended by PostgreSQL, as a prepared firing batch is (taskmesh.db.schedules).
TRIGGER_KEY_LOCKS = Query(
    """
    SELECT set_config('idle_in_transaction_session_timeout', '2s', true) AS timeout,
           pg_advisory_xact_lock_shared(:admission_lock) AS admission,
           (SELECT count(pg_advisory_xact_lock_shared(:bucket_class, b))
            FROM unnest(CAST(:shared_buckets AS int[])) AS b) AS shared_buckets,
           (SELECT count(pg_advisory_xact_lock(:bucket_class, b)) FROM unnest(CAST(:buckets AS int[])) AS b) AS buckets,
           (SELECT count(pg_advisory_xact_lock(:key_class, k)) FROM unnest(CAST(:keys AS int[])) AS k) AS keys
    """
)


def scheduled_runs_statement(*bookkeeping: str) -> Query:
    """Scheduled runs: one new QUEUED run per fired slot (:run_ids, :fire_job_ids, :slot_times),
    with the job's default parameters; a slot that already has a run creates nothing. `bookkeeping` are the caller's CTEs
    (taskmesh.db.schedules: skipped slots, the jobs' next slot), run in the same statement; they
    may read `queued` but write no run."""
    return _queueing(
        """fire AS (
        SELECT * FROM unnest(CAST(:run_ids AS uuid[]), CAST(:fire_job_ids AS uuid[]),
                             CAST(:slot_times AS timestamptz[])) AS f(run_id, job_id, slot_time)
    )""",
        f"""queued AS (
        INSERT INTO runs (id, job_id, state, attempt, trigger, executor, queue_time, slot_time,
                          retry_policy, attempt_timeout_seconds, parameters, pool, start_deadline_at, priority, flow,
                          awaiting_admission)
        SELECT f.run_id, jobs.id, 'QUEUED', 1, 'SCHEDULE', jobs.executor, clock_timestamp(), f.slot_time,
               jobs.retry_policy, jobs.attempt_timeout_seconds, NULLIF(jobs.parameters, CAST('{{}}' AS jsonb)),
               jobs.pool, CASE WHEN jobs.start_deadline_seconds IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => jobs.start_deadline_seconds) END,
               jobs.priority, {FLOW_FROM_JOB}
        FROM fire f JOIN jobs ON jobs.id = f.job_id
        ON CONFLICT (job_id, slot_time) DO NOTHING
        RETURNING *
    )""",
        *bookkeeping,
    )


SELECT_BY_IDEMPOTENCY_KEY = Query(
    f"""
    SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id
    JOIN unnest(CAST(:job_ids AS uuid[]), CAST(:keys AS text[])) AS k(job_id, idempotency_key)
      ON r.job_id = k.job_id AND r.idempotency_key = k.idempotency_key
    """
)

# A key older than the idempotency window is released so that it can be used again.
RELEASE_EXPIRED_KEYS = Query(
    """
    UPDATE runs SET idempotency_key = NULL
    WHERE id = ANY(CAST(:run_ids AS uuid[])) AND queue_time < clock_timestamp() - :window
    """
)

# Replays: a finished run -> a fresh run (attempt 1) of the same executor, policies and
# parameters; the call's audit row names the source run and the new one.
RETRY_RUN = _queueing(
    f"""source AS (
        SELECT * FROM runs WHERE id = :source_id AND state IN {FINISHED}
    )""",
    f"""queued AS (
        INSERT INTO runs (id, job_id, state, attempt, trigger, executor, retry_policy, attempt_timeout_seconds,
                          retried_from, queue_time, parameters, pool, start_deadline_at, priority, flow,
                          awaiting_admission)
        SELECT :run_id, source.job_id, 'QUEUED', 1, 'RETRY', source.executor, source.retry_policy,
               source.attempt_timeout_seconds, source.id, clock_timestamp(), source.parameters, source.pool,
               CASE WHEN jobs.start_deadline_seconds IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => jobs.start_deadline_seconds) END, source.priority,
               {FLOW_FROM_JOB}
        FROM source JOIN jobs ON jobs.id = source.job_id
        RETURNING *
    )""",
    audit_cte("queued", "'runs/' || queued.retried_from", "jsonb_build_object('run_id', queued.id)"),
)

# QUEUED -> RUNNING, with a lease, owned by the claiming stream's session.
CLAIM_ATTEMPTS = Query(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = 'RUNNING', worker_id = claim.worker_id, worker_session = claim.session, start_time = now_ts.t,
        lease_expires_at = now_ts.t + make_interval(secs => :lease_seconds), version = r.version + 1,
        start_deadline_at = NULL
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
                CAST(:sessions AS text[]), CAST(:positions AS int[]))
         AS claim(run_id, attempt, worker_id, session, position),
         jobs j, now_ts
    WHERE r.id = claim.run_id AND r.attempt = claim.attempt AND r.state = 'QUEUED' AND j.id = r.job_id
    RETURNING claim.position, r.executor::text AS executor_json, COALESCE(r.attempt_timeout_seconds, {DEFAULT_ATTEMPT_TIMEOUT})
        AS timeout_seconds, {RUN_COLUMNS}
    """
)

# RUNNING or CANCELLING -> the state the outcome leads to; the attempt joins the history. Only the
# owning session reports (the reaper passes the owner's, NULL for attempts claimed before 0006).
# The attempt's output becomes the run's (NULL: it produced none) in the same statement, and
# joins the attempt's entry with the rendered request, each only when there is one.
RECORD_OUTCOMES = Query(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = report.new_state, result = report.result, error = report.error, lease_expires_at = NULL,
        output = extra.output,
        finish_time = CASE WHEN report.new_state = 'RETRY_WAIT' THEN NULL ELSE now_ts.t END,
        retry_at = now_ts.t + make_interval(secs => report.retry_delay),
        version = r.version + 1,
        attempts = r.attempts || jsonb_build_array(jsonb_build_object(
            'attempt', r.attempt, 'worker_id', r.worker_id, 'start_time', r.start_time,
            'finish_time', now_ts.t, 'state', report.attempt_status,
            'result', report.result, 'error', report.error)
            || CASE WHEN extra.output IS NULL THEN CAST('{{}}' AS jsonb)
                    ELSE jsonb_build_object('output', extra.output) END
            || CASE WHEN extra.rendered IS NULL THEN CAST('{{}}' AS jsonb)
                    ELSE jsonb_build_object('rendered', extra.rendered) END)
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
                CAST(:sessions AS text[]), CAST(:new_states AS text[]), CAST(:attempt_statuses AS text[]),
                CAST(:results AS jsonb[]), CAST(:errors AS jsonb[]), CAST(:retry_delays AS float8[]),
                CAST(:positions AS int[]))
         AS report(run_id, attempt, worker_id, session, new_state, attempt_status, result, error, retry_delay,
                   position),
         LATERAL (SELECT NULLIF(CAST(:outputs AS jsonb) -> report.position, CAST('null' AS jsonb)) AS output,
                         NULLIF(CAST(:rendered AS jsonb) -> report.position, CAST('null' AS jsonb)) AS rendered) extra,
         jobs j, now_ts
    WHERE r.id = report.run_id AND r.attempt = report.attempt AND r.worker_id = report.worker_id
      AND r.worker_session IS NOT DISTINCT FROM report.session
      AND r.state IN {LEASED} AND report.new_state IN {OUTCOMES} AND j.id = r.job_id
    RETURNING report.position, {RUN_COLUMNS}
    """
)

# Heartbeats: extend the leases of the attempts a worker's session still holds (no state change).
# A lease that ran out is not revived, even before the reaper closed it: the worker is told it is gone.
EXTEND_LEASES = Query(
    f"""
    UPDATE runs AS r SET lease_expires_at = clock_timestamp() + make_interval(secs => :lease_seconds)
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:attempts AS int[])) AS hb(run_id, attempt)
    WHERE r.id = hb.run_id AND r.attempt = hb.attempt AND r.worker_id = :worker_id
      AND r.worker_session = :session AND r.state IN {LEASED}
      AND r.lease_expires_at >= clock_timestamp()
    RETURNING r.id::text AS run_id, r.attempt, r.state
    """
)

# Attempts whose worker vanished (lease expired) or overran their timeout (the server's
# backstop to the worker's own timeout), locked for the reaper's transaction.
_EXPIRED = f"""
    r.state IN {LEASED}
      AND (r.lease_expires_at < clock_timestamp()
           OR r.start_time + make_interval(secs => COALESCE(r.attempt_timeout_seconds, :default_timeout)
                                                   + :grace_seconds) < clock_timestamp())"""
SELECT_EXPIRED = Query(
    f"""
    SELECT r.id::text AS run_id, r.attempt, r.state, r.worker_id, r.worker_session, r.retry_policy,
           r.lease_expires_at < clock_timestamp() AS lease_expired
    FROM runs r
    WHERE {_EXPIRED}
    ORDER BY r.lease_expires_at
    LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
    """
)

# RETRY_WAIT -> QUEUED as attempt + 1 when due (with its work unit, as every run entering QUEUED).
# A run waiting to retry keeps its concurrency slot; a rate-limited one waits for admission again
# (every attempt takes a token of its rate-limit key).
PROMOTE_RETRIES = _queueing(
    """due AS (
        SELECT id FROM runs WHERE state = 'RETRY_WAIT' AND retry_at <= clock_timestamp()
        ORDER BY retry_at LIMIT :limit FOR UPDATE SKIP LOCKED
    )""",
    """queued AS (
        UPDATE runs AS r
        SET state = 'QUEUED', attempt = r.attempt + 1, retry_at = NULL, start_time = NULL, worker_id = NULL,
            worker_session = NULL, lease_expires_at = NULL, version = r.version + 1,
            awaiting_admission = (r.rate_limit_key IS NOT NULL)
        FROM due WHERE r.id = due.id AND r.state = 'RETRY_WAIT'
        RETURNING r.*
    )""",
)

# QUEUED -> FAILED (NOT_STARTED) for runs still waiting past their job's start_deadline: nobody
# claimed them in time. A claim in the same instant loses or wins by the state guard alone.
FAIL_NOT_STARTED = Query(
    f"""
    WITH due AS (
        SELECT id FROM runs WHERE state = 'QUEUED' AND start_deadline_at IS NOT NULL
          AND start_deadline_at <= clock_timestamp()
        ORDER BY start_deadline_at LIMIT :limit FOR UPDATE SKIP LOCKED
    ), now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = 'FAILED', finish_time = now_ts.t, start_deadline_at = NULL, version = r.version + 1,
        error = jsonb_build_object('kind', 'NOT_STARTED', 'retryable', false,
            'message', 'not started within the start deadline of ' || COALESCE(j.start_deadline_seconds, 0)
                || 's: no worker of pool ' || r.pool || ' took it in time')
    FROM due, jobs j, now_ts
    WHERE r.id = due.id AND r.state = 'QUEUED' AND j.id = r.job_id
    RETURNING {RUN_COLUMNS}
    """
)

# What the maintenance loop has to do, in one statement: the earliest retry, whether an attempt
# expired (the reap takes a transaction, three round trips) and whether a start deadline passed.
# Nearly every look, every second on every scheduler, finds nothing.
MAINTENANCE_DUE = Query(
    f"""
    SELECT (SELECT min(retry_at) FROM runs WHERE state = 'RETRY_WAIT') AS next_retry,
           EXISTS (SELECT 1 FROM runs r WHERE {_EXPIRED}) AS expired,
           EXISTS (SELECT 1 FROM runs WHERE state = 'QUEUED' AND start_deadline_at IS NOT NULL
                     AND start_deadline_at <= clock_timestamp()) AS late,
           clock_timestamp() AS now
    """
)

# QUEUED or RETRY_WAIT -> CANCELLED at once (a work unit still queued is dropped at claim);
# RUNNING -> CANCELLING: the worker holding the attempt is told to stop it and reports CANCELLED.
# Runs in other states are left alone (and not returned).
CANCEL_RUNS = Query(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r
    SET state = CASE WHEN r.state = 'RUNNING' THEN 'CANCELLING' ELSE 'CANCELLED' END,
        finish_time = CASE WHEN r.state = 'RUNNING' THEN r.finish_time ELSE now_ts.t END,
        cancel_time = now_ts.t, retry_at = NULL, version = r.version + 1
    FROM jobs j, now_ts
    WHERE r.id = ANY(CAST(:run_ids AS uuid[])) AND r.state IN {CANCELLABLE}
      AND j.id = r.job_id
    RETURNING {RUN_COLUMNS}
    """
)

# Flow control: the admission pass (taskmesh.db.admission), one at a time across every scheduler
# (ADMISSION_LOCK, held for the pass's transaction; each statement after it sees every earlier
# pass committed). A key's active runs are its admitted runs in an active state: the statements
# that end a run free its slot, and nothing else has to.
ADMISSION_LOCK = Query("SELECT pg_advisory_xact_lock(:lock_id)")
# pg_advisory_xact_lock id of the admission pass ("tmadmit" in ASCII, in a bigint).
ADMISSION_LOCK_ID = 0x746D61646D6974
# Admission at trigger (TRIGGER_KEY_LOCKS): the classes ("tmky", "tmkb") of the two-key
# advisory locks on concurrency keys and on their buckets; how many buckets; the most keys a
# trigger locks one by one.
KEY_LOCK_CLASS = 0x746D6B79
BUCKET_LOCK_CLASS = 0x746D6B62
KEY_LOCK_BUCKETS = 64
MAX_KEY_LOCKS = 128

# Whether any run awaits admission (runs_awaiting_admission): a pass with nothing to do skips.
ANY_AWAITING = Query("SELECT EXISTS (SELECT 1 FROM runs r WHERE r.awaiting_admission AND r.state = 'QUEUED')")

# Runs awaiting admission whose keys are not rendered yet.
SELECT_UNRENDERED = Query(
    """
    SELECT r.id::text AS id, r.job_id::text AS job_id, j.name AS job_name, r.attempt, r.slot_time, r.flow,
           r.parameters
    FROM runs r JOIN jobs j ON j.id = r.job_id
    WHERE r.awaiting_admission AND r.state = 'QUEUED' AND NOT r.keys_rendered
    ORDER BY r.priority DESC, r.queue_time, r.id LIMIT :limit
    """
)

SET_KEYS = Query(
    """
    UPDATE runs AS r SET keys_rendered = true, concurrency_key = k.ckey, concurrency_limit = k.climit,
        on_limit = k.on_limit, rate_limit_key = k.rkey, rate_limit = k.rlimit, rate_period_seconds = k.rperiod
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:ckeys AS text[]), CAST(:climits AS int[]),
                CAST(:on_limits AS text[]), CAST(:rkeys AS text[]), CAST(:rlimits AS int[]),
                CAST(:rperiods AS float8[])) AS k(run_id, ckey, climit, on_limit, rkey, rlimit, rperiod)
    WHERE r.id = k.run_id AND r.state = 'QUEUED' AND r.awaiting_admission
    """
)

# Waiting runs whose on_limit is SKIP or CANCEL_OLDEST, with their key's admitted runs.
SELECT_KEY_POLICIES = Query(
    f"""
    SELECT w.id::text AS id, w.concurrency_key AS key, w.concurrency_limit AS limit, w.on_limit,
        (SELECT count(*) FROM runs a WHERE a.concurrency_key = w.concurrency_key
            AND NOT a.awaiting_admission AND a.state IN {ACTIVE}) AS active,
        (SELECT count(*) FROM runs a WHERE a.concurrency_key = w.concurrency_key
            AND NOT a.awaiting_admission AND a.state = 'CANCELLING') AS cancelling
    FROM runs w
    WHERE w.awaiting_admission AND w.state = 'QUEUED' AND w.keys_rendered AND w.on_limit IN ('SKIP', 'CANCEL_OLDEST')
    ORDER BY w.priority DESC, w.queue_time, w.id
    """
)

# The oldest admitted runs of a key that are not stopping yet (CANCEL_OLDEST cancels them).
SELECT_OLDEST_ACTIVE = Query(
    """
    SELECT r.id::text AS id FROM runs r
    WHERE r.concurrency_key = :key AND NOT r.awaiting_admission AND r.state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT')
    ORDER BY r.admit_time, r.queue_time, r.id LIMIT :limit
    """
)

# QUEUED, awaiting admission -> CANCELLED with an error (on_limit SKIP, a key that cannot render).
END_UNADMITTED = Query(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t)
    UPDATE runs AS r SET state = 'CANCELLED', finish_time = now_ts.t, error = e.error, awaiting_admission = false,
        version = r.version + 1
    FROM unnest(CAST(:run_ids AS uuid[]), CAST(:errors AS jsonb[])) AS e(run_id, error), jobs j, now_ts
    WHERE r.id = e.run_id AND r.state = 'QUEUED' AND r.awaiting_admission AND j.id = r.job_id
    RETURNING {RUN_COLUMNS}
    """
)

# Admit what fits, at most :limit runs: a run goes when its concurrency key has fewer admitted,
# active runs than its limit and its rate-limit key had fewer grants than its limit in the window
# (period plus margin, taskmesh.flow_policy.window_seconds), counting the runs ranked before it
# in its key (priority, then FIFO). Keys take turns: the first-ranked run of every key comes
# before any key's second (round-robin). Admitted runs get their work unit (and their grant).
# The runs whose keys this pass rendered (:run_ids ..., on_limit QUEUE: nothing reads their keys
# before this statement) take part with those keys, and the same UPDATE writes their keys and
# admits those that fit: one write per run, not one to store its keys and one to admit it.
ADMIT_RUNS = Query(
    f"""
    WITH now_ts AS (SELECT clock_timestamp() AS t),
    fresh AS (
        SELECT r.id, r.priority, r.queue_time, k.ckey AS concurrency_key, k.climit AS concurrency_limit,
               k.on_limit, k.rkey AS rate_limit_key, k.rlimit AS rate_limit, k.rperiod AS rate_period_seconds
        FROM unnest(CAST(:run_ids AS uuid[]), CAST(:ckeys AS text[]), CAST(:climits AS int[]),
                    CAST(:on_limits AS text[]), CAST(:rkeys AS text[]), CAST(:rlimits AS int[]),
                    CAST(:rperiods AS float8[])) AS k(run_id, ckey, climit, on_limit, rkey, rlimit, rperiod)
        JOIN runs r ON r.id = k.run_id AND r.awaiting_admission AND r.state = 'QUEUED' AND NOT r.keys_rendered
    ),
    waiting AS (
        SELECT r.id, r.priority, r.queue_time, r.concurrency_key, r.concurrency_limit, r.on_limit, r.rate_limit_key,
               r.rate_limit, r.rate_period_seconds, false AS fresh
        FROM runs r WHERE r.awaiting_admission AND r.state = 'QUEUED' AND r.keys_rendered
        UNION ALL
        SELECT *, true FROM fresh
    ),
    cand AS (
        SELECT w.*,
               row_number() OVER (PARTITION BY w.concurrency_key ORDER BY w.priority DESC, w.queue_time, w.id)
                   AS c_rank,
               row_number() OVER (PARTITION BY w.rate_limit_key ORDER BY w.priority DESC, w.queue_time, w.id)
                   AS r_rank
        FROM waiting w
    ),
    rwin AS (
        SELECT rate_limit_key AS key, max(rate_period_seconds) AS period
        FROM cand WHERE rate_limit_key IS NOT NULL GROUP BY rate_limit_key
    ),
    rkeys AS (
        SELECT w.key, (SELECT count(*) FROM rate_limit_grants g WHERE g.key = w.key
                       AND g.grant_time > now_ts.t - make_interval(
                           secs => w.period + LEAST(:max_margin, :margin_fraction * w.period))) AS used
        FROM rwin w, now_ts
    ),
    chosen AS (
        SELECT c.id FROM cand c
        LEFT JOIN rkeys rk ON rk.key = c.rate_limit_key
        WHERE (c.concurrency_key IS NULL OR (c.c_rank <= c.concurrency_limit
               AND c.c_rank <= c.concurrency_limit - (SELECT count(*) FROM runs a WHERE a.concurrency_key = c.concurrency_key
                                                      AND NOT a.awaiting_admission AND a.state IN {ACTIVE})))
          AND (c.rate_limit_key IS NULL OR c.r_rank <= c.rate_limit - rk.used)
        ORDER BY CASE WHEN c.concurrency_key IS NULL THEN c.r_rank ELSE c.c_rank END, c.priority DESC,
                 c.queue_time, c.id
        LIMIT :limit
    ),
    changes AS (
        SELECT w.*, w.id IN (SELECT id FROM chosen) AS admit FROM waiting w
        WHERE w.fresh OR w.id IN (SELECT id FROM chosen)
    ),
    written AS (
        UPDATE runs AS r SET keys_rendered = true, concurrency_key = c.concurrency_key,
            concurrency_limit = c.concurrency_limit, on_limit = c.on_limit, rate_limit_key = c.rate_limit_key,
            rate_limit = c.rate_limit, rate_period_seconds = c.rate_period_seconds,
            awaiting_admission = NOT c.admit,
            admit_time = CASE WHEN c.admit THEN now_ts.t ELSE r.admit_time END,
            version = r.version + CASE WHEN c.admit THEN 1 ELSE 0 END
        FROM changes c, now_ts WHERE r.id = c.id AND r.state = 'QUEUED' AND r.awaiting_admission
        RETURNING r.*, c.admit
    ),
    admitted AS (SELECT * FROM written WHERE admit),
    granted AS (
        INSERT INTO rate_limit_grants (key, grant_time, run_id)
        SELECT rate_limit_key, admit_time, id FROM admitted WHERE rate_limit_key IS NOT NULL
    ),
    dispatched AS (
        INSERT INTO outbox (run_id, attempt, priority, route)
        SELECT a.id, a.attempt, a.priority, {route_of("a")} FROM admitted a
    )
    SELECT {RUN_COLUMNS}, EXTRACT(EPOCH FROM r.admit_time - r.queue_time) AS wait_seconds
    FROM admitted r JOIN jobs j ON j.id = r.job_id
    """
)

# Grants older than any window (the longest period is 24h) count for nothing.
PRUNE_GRANTS = Query("DELETE FROM rate_limit_grants WHERE grant_time < clock_timestamp() - interval '25 hours'")

# Whether a rate-limited run still waits (its token comes with time, not with a NOTIFY).
RATE_WAITING = Query(
    """
    SELECT EXISTS (SELECT 1 FROM runs r WHERE r.awaiting_admission AND r.state = 'QUEUED'
                   AND r.rate_limit_key IS NOT NULL)
    """
)

# Waiting runs by reason, for the gauge: RATE_LIMITED when the rate window of the run's key is full.
WAITING_BY_REASON = Query(
    """
    SELECT CASE WHEN r.rate_limit_key IS NOT NULL AND (
                    SELECT count(*) FROM rate_limit_grants g WHERE g.key = r.rate_limit_key
                    AND g.grant_time > clock_timestamp() - make_interval(secs => r.rate_period_seconds)
                ) >= r.rate_limit THEN 'RATE_LIMITED' ELSE 'CONCURRENCY_LIMIT' END AS reason,
           count(*) AS runs
    FROM runs r WHERE r.awaiting_admission AND r.state = 'QUEUED' GROUP BY 1
    """
)

# ListConcurrencyKeys: keys with admitted active runs or waiting runs, by key (each branch
# within a partial index: runs_concurrency_active, runs_awaiting_admission).
LIST_CONCURRENCY_KEYS = Query(
    f"""
    SELECT u.key, sum(u.active) AS active, sum(u.waiting) AS waiting, min(u.lim) AS limit FROM (
        SELECT r.concurrency_key AS key, 1 AS active, 0 AS waiting, r.concurrency_limit AS lim FROM runs r
        WHERE r.concurrency_key IS NOT NULL AND NOT r.awaiting_admission AND r.state IN {ACTIVE}
          AND r.concurrency_key > :after AND starts_with(r.concurrency_key, :prefix)
        UNION ALL
        SELECT r.concurrency_key, 0, 1, r.concurrency_limit FROM runs r
        WHERE r.awaiting_admission AND r.state = 'QUEUED' AND r.concurrency_key IS NOT NULL
          AND r.concurrency_key > :after AND starts_with(r.concurrency_key, :prefix)
    ) u GROUP BY u.key ORDER BY u.key LIMIT :limit
    """
)

# Why runs wait for admission: their keys' counts now.
SELECT_WAITING_COUNTS = Query(
    f"""
    SELECT r.id::text AS id, r.keys_rendered, jsonb_typeof(r.flow -> 'concurrency') = 'object' AS has_concurrency,
        r.concurrency_key, r.concurrency_limit, r.rate_limit_key,
        r.rate_limit, r.rate_period_seconds,
        (SELECT count(*) FROM runs a WHERE r.concurrency_key IS NOT NULL AND a.concurrency_key = r.concurrency_key
            AND NOT a.awaiting_admission AND a.state IN {ACTIVE}) AS active,
        (SELECT count(*) FROM rate_limit_grants g WHERE r.rate_limit_key IS NOT NULL AND g.key = r.rate_limit_key
            AND g.grant_time > clock_timestamp() - make_interval(secs => r.rate_period_seconds)) AS used
    FROM runs r WHERE r.id = ANY(CAST(:run_ids AS uuid[])) AND r.awaiting_admission AND r.state = 'QUEUED'
    """
)

# CancelRun's: the same transition, with the call's audit row.
CANCEL_RUNS_AUDITED = audited(CANCEL_RUNS, "'runs/' || changed.id", "jsonb_build_object('state', changed.state)")

SELECT_RUN = Query(f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = :id")

SELECT_LATEST_RUN = Query(
    f"""
    SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id
    WHERE r.job_id = :job_id ORDER BY r.queue_time DESC, r.id DESC LIMIT 1
    """
)

SELECT_RETRY_POLICIES = Query(
    "SELECT id::text AS id, retry_policy FROM runs WHERE id = ANY(CAST(:run_ids AS uuid[]))"
)

# Decides what an expired attempt becomes (scheduler.outcomes.resolve_expired).
ExpiryDecision = Callable[[ExpiredAttempt], OutcomeReport]


class RunRepository:
    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(
        self, requests: Sequence[RunRequest], trigger: Trigger, batch_audit: AuditContext | None = None
    ) -> list[RunRecord | None]:
        """Insert QUEUED runs and their outbox rows in one statement. Each request gets its new
        run, the earlier run of the same idempotency key, or None when its job does not exist.
        The same statement writes one audit row per request that carries an audit context and
        one for `batch_audit` (a BatchTriggerJobs call), and marks them recorded."""
        audits = _trigger_audits(requests, batch_audit)
        created = await self._insert(requests, trigger, audits)
        for request in requests:
            if request.audit is not None:
                request.audit.mark_recorded()
        if batch_audit is not None:
            batch_audit.mark_recorded()
        by_id = {run.id: run for run in created}
        results: list[RunRecord | None] = [by_id.get(r.run_id) for r in requests]
        keyed = [i for i, r in enumerate(requests) if results[i] is None and r.idempotency_key]
        if keyed:
            await self._resolve_keys([requests[i] for i in keyed], trigger, keyed, results)
        return results

    async def _insert(
        self, requests: Sequence[RunRequest], trigger: Trigger, audits: dict[str, Any] | None = None
    ) -> list[RunRecord]:
        params = {
            "run_ids": [r.run_id for r in requests],
            "job_ids": [r.job_id for r in requests],
            "keys": [r.idempotency_key for r in requests],
            "parameters": _parameters_array(requests),
            "job_versions": [r.job_version for r in requests],
            "priorities": [r.priority for r in requests],
            "trigger": trigger.value,
            **_trigger_key_params(requests),
            **(audits or _NO_AUDITS),
        }
        keys = {r.flow_keys.concurrency_key or "" for r in requests if r.flow_keys}
        if not keys:
            async with statement(self._engine) as conn:
                rows = (await conn.execute(CREATE_RUNS, params)).all_rows()
            return [run_from_row(row) for row in rows]
        async with transaction(self._engine) as conn:
            await conn.execute(TRIGGER_KEY_LOCKS, trigger_key_locks(keys))
            rows = (await conn.execute(CREATE_RUNS, params)).all_rows()
        return [run_from_row(row) for row in rows]

    async def _resolve_keys(
        self, requests: list[RunRequest], trigger: Trigger, positions: list[int], results: list[RunRecord | None]
    ) -> None:
        """Requests whose key was taken: the earlier run, or a new one if the key has expired."""
        params = {"job_ids": [r.job_id for r in requests], "keys": [r.idempotency_key for r in requests]}
        async with statement(self._engine) as conn:
            earlier = {
                (run.job_id, run.idempotency_key): run
                for run in map(run_from_row, (await conn.execute(SELECT_BY_IDEMPOTENCY_KEY, params)).all_rows())
            }
            cutoff = datetime.now(UTC) - IDEMPOTENCY_WINDOW  # rechecked against the database clock
            expired = [run.id for run in earlier.values() if run.queue_time < cutoff]
            if expired:
                await conn.execute(RELEASE_EXPIRED_KEYS, {"run_ids": expired, "window": IDEMPOTENCY_WINDOW})
        retry = []
        for position, request in zip(positions, requests, strict=True):
            run = earlier.get((request.job_id, request.idempotency_key))
            if run is not None and run.id not in expired:
                results[position] = run
            elif run is not None:
                retry.append((position, request))
        if retry:
            recreated = {run.id: run for run in await self._insert([r for _, r in retry], trigger)}
            for position, request in retry:
                results[position] = recreated.get(request.run_id)

    async def retry_run(self, source_id: str, run_id: str, audit: AuditContext) -> RunRecord:
        """A fresh run from a finished one; FailedPrecondition while the source is active."""
        params = {"source_id": source_id, "run_id": run_id, **audit.params()}
        async with statement(self._engine) as conn:
            row = (await conn.execute(RETRY_RUN, params)).first_row()
        if row is not None:
            audit.mark_recorded()
            return run_from_row(row)
        source = await self.get(source_id)
        raise FailedPrecondition(
            f"run {source_id} is {source.state.value}; only SUCCEEDED, FAILED or CANCELLED runs can be retried"
        )

    async def claim(self, requests: Sequence[ClaimRequest], lease_seconds: float) -> list[ClaimedAttempt | None]:
        """QUEUED -> RUNNING for each request; None where the guard failed (stale or duplicate)."""
        params = {
            "run_ids": [r.ref.run_id for r in requests],
            "attempts": [r.ref.attempt for r in requests],
            "worker_ids": [r.worker_id for r in requests],
            "sessions": [r.session for r in requests],
            "positions": list(range(len(requests))),
            "lease_seconds": lease_seconds,
        }
        async with statement(self._engine) as conn:
            rows = (await conn.execute(CLAIM_ATTEMPTS, params)).all_rows()
        granted: list[ClaimedAttempt | None] = [None] * len(requests)
        for row in rows:
            granted[row.position] = ClaimedAttempt(
                run=run_from_row(row), executor_json=row.executor_json, timeout_seconds=float(row.timeout_seconds)
            )
        return granted

    async def record_outcomes(self, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
        """Close each reported attempt; None where the report lost the fencing race."""
        async with statement(self._engine) as conn:
            return await _record_outcomes(conn, reports)

    async def retry_policies(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        async with statement(self._engine) as conn:
            rows = (await conn.execute(SELECT_RETRY_POLICIES, {"run_ids": list(run_ids)})).all_rows()
        return {row.id: row.retry_policy for row in rows}

    async def extend_leases(
        self, worker_id: str, session: str, refs: Sequence[AttemptRef], lease_seconds: float
    ) -> dict[AttemptRef, RunState]:
        """Extend the leases the worker's session still holds; returns those attempts with their state."""
        params = {
            "run_ids": [r.run_id for r in refs],
            "attempts": [r.attempt for r in refs],
            "worker_id": worker_id,
            "session": session,
            "lease_seconds": lease_seconds,
        }
        async with statement(self._engine) as conn:
            rows = (await conn.execute(EXTEND_LEASES, params)).all_rows()
        return {AttemptRef(row.run_id, row.attempt): RunState(row.state) for row in rows}

    async def expire_attempts(
        self, decide: ExpiryDecision, grace_seconds: float, limit: int = 500
    ) -> list[RunRecord]:
        """Close attempts whose lease expired or that overran their timeout, as `decide` says.
        Several schedulers may reap at once: rows are locked with SKIP LOCKED."""
        params = {"grace_seconds": grace_seconds, "default_timeout": DEFAULT_ATTEMPT_TIMEOUT, "limit": limit}
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(SELECT_EXPIRED, params)).all_rows()
            if not rows:
                return []
            expired = [
                ExpiredAttempt(
                    ref=AttemptRef(row.run_id, row.attempt),
                    state=RunState(row.state),
                    worker_id=row.worker_id,
                    session=row.worker_session,
                    retry_policy=row.retry_policy,
                    lease_expired=bool(row.lease_expired),
                )
                for row in rows
            ]
            recorded = await _record_outcomes(conn, [decide(e) for e in expired])
        return [run for run in recorded if run is not None]

    async def promote_retries(self, limit: int = 500) -> list[RunRecord]:
        """Queue the next attempt of every run whose retry is due (with its work unit)."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(PROMOTE_RETRIES, {"limit": limit})).all_rows()
        return [run_from_row(row) for row in rows]

    async def fail_not_started(self, limit: int = 500) -> list[RunRecord]:
        """Fail (NOT_STARTED) the QUEUED runs whose start deadline passed."""
        async with statement(self._engine) as conn:
            rows = (await conn.execute(FAIL_NOT_STARTED, {"limit": limit})).all_rows()
        return [run_from_row(row) for row in rows]

    async def maintenance_due(self, grace_seconds: float) -> MaintenanceDue:
        params = {"grace_seconds": grace_seconds, "default_timeout": DEFAULT_ATTEMPT_TIMEOUT}
        async with statement(self._engine) as conn:
            row = (await conn.execute(MAINTENANCE_DUE, params)).one_row()
        return MaintenanceDue(row.next_retry, bool(row.expired), bool(row.late), row.now)

    async def cancel(self, run_ids: Sequence[str], audit: AuditContext) -> list[RunRecord]:
        """Cancel the given runs that are still active; returns them as they now are (with an
        audit row each, in the same statement)."""
        async with statement(self._engine) as conn:
            rows = (
                await conn.execute(CANCEL_RUNS_AUDITED, {"run_ids": list(run_ids), **audit.params()})
            ).all_rows()
        if rows:
            audit.mark_recorded()
        return [run_from_row(row) for row in rows]

    async def get(self, run_id: str) -> RunRecord:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_RUN, {"id": run_id})).first_row()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return run_from_row(row)

    async def latest_for_job(self, job_id: str) -> RunRecord | None:
        async with statement(self._engine) as conn:
            row = (await conn.execute(SELECT_LATEST_RUN, {"job_id": job_id})).first_row()
        return None if row is None else run_from_row(row)

    async def list_page(
        self, job_id: str | None, conditions: Sequence[Condition], page: Page | None, limit: int
    ) -> list[RunRecord]:
        """Runs newest first."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if job_id is not None:
            where.append("r.job_id = :job_id")
            params["job_id"] = job_id
        for index, cond in enumerate(conditions):
            column = {"state": "r.state", "trigger": "r.trigger"}[cond.field]
            operator = "=" if cond.op == "=" else "<>"
            where.append(f"{column} {operator} :f{index}")
            params[f"f{index}"] = cond.value
        select = f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id"
        order = Keyset("r.queue_time", "r.id", descending=True)
        query, values = page_query(select, where, params, order, page, limit)
        async with statement(self._engine) as conn:
            rows = (await conn.execute(query, values)).all_rows()
        return [run_from_row(row) for row in rows]


async def create_scheduled_runs(conn: Connection, sql: Query, params: dict[str, Any]) -> list[RunRecord]:
    """Run a scheduled_runs_statement() in the caller's transaction; returns the runs created."""
    return [run_from_row(row) for row in (await conn.execute(sql, params)).all_rows()]


async def cancel_runs(conn: Connection, run_ids: Sequence[str]) -> list[RunRecord]:
    """The guarded cancel transition, in the caller's transaction (see CANCEL_RUNS)."""
    return [run_from_row(row) for row in (await conn.execute(CANCEL_RUNS, {"run_ids": list(run_ids)})).all_rows()]


async def _record_outcomes(conn: Any, reports: Sequence[OutcomeReport]) -> list[RunRecord | None]:
    params = {
        "run_ids": [r.ref.run_id for r in reports],
        "attempts": [r.ref.attempt for r in reports],
        "worker_ids": [r.worker_id for r in reports],
        "sessions": [r.session for r in reports],
        "new_states": [r.new_state.value for r in reports],
        "attempt_statuses": [r.attempt_status.value for r in reports],
        "results": [_json_or_none(r.result) for r in reports],
        "errors": [_json_or_none(r.error) for r in reports],
        "retry_delays": [r.retry_delay for r in reports],
        "positions": list(range(len(reports))),
        # One JSON array each (an element, or null, per report): see CREATE_RUNS.
        "outputs": "[" + ",".join(r.output_json or "null" for r in reports) + "]",
        "rendered": json.dumps([r.rendered for r in reports], separators=(",", ":")),
    }
    rows = (await conn.execute(RECORD_OUTCOMES, params)).all_rows()
    recorded: list[RunRecord | None] = [None] * len(reports)
    for row in rows:
        recorded[row.position] = run_from_row(row)
    return recorded


_NO_AUDITS: dict[str, Any] = {
    "audit_callers": [],
    "audit_request_ids": [],
    "caller_actors": [],
    "caller_roles": [],
    "caller_keys": [],
    "caller_methods": [],
    "batch_actor": None,
    "batch_role": None,
    "batch_key": None,
    "batch_method": None,
    "batch_request_id": None,
    "batch_resource": None,
    "batch_detail": None,
}
# A batch's audit row lists at most this many of its jobs.
MAX_AUDITED_BATCH_JOBS = 100


def _parameters_array(requests: Sequence[RunRequest]) -> str:
    """CREATE_RUNS' :parameters, one JSON array, from the texts the callers made where they did."""
    texts = [
        r.parameters_json if r.parameters_json is not None else json.dumps(r.parameters, separators=(",", ":"))
        for r in requests
    ]
    return "[" + ",".join(texts) + "]"


def _trigger_key_params(requests: Sequence[RunRequest]) -> dict[str, Any]:
    """CREATE_RUNS' admission-at-trigger parameters: each request's rendered concurrency key."""
    keys = [r.flow_keys for r in requests]
    return {
        "ckeys": [k.concurrency_key if k else None for k in keys],
        "climits": [k.concurrency_limit if k else None for k in keys],
        "on_limits": [k.on_limit.value if k and k.on_limit else None for k in keys],
        "skipped_format": SKIPPED_FORMAT,
    }


def trigger_key_locks(keys: set[str]) -> dict[str, Any]:
    """TRIGGER_KEY_LOCKS' parameters for a trigger of these concurrency keys."""
    hashes = {zlib.crc32(key.encode()) for key in keys}
    buckets = sorted({h % KEY_LOCK_BUCKETS for h in hashes})
    one_by_one = len(hashes) <= MAX_KEY_LOCKS
    return {
        "admission_lock": ADMISSION_LOCK_ID,
        "key_class": KEY_LOCK_CLASS,
        "bucket_class": BUCKET_LOCK_CLASS,
        "shared_buckets": buckets if one_by_one else [],
        "buckets": [] if one_by_one else buckets,
        "keys": sorted(h - (1 << 32) if h >= 1 << 31 else h for h in hashes) if one_by_one else [],  # as int4
    }


def _trigger_audits(requests: Sequence[RunRequest], batch: AuditContext | None) -> dict[str, Any]:
    """CREATE_RUNS' audit parameters: per request, its caller (1-based, among the distinct
    callers) and request id (None without an audit context); for a batch, its one row (its one
    job as resource, or "jobs" and the jobs in the detail)."""
    params = dict(_NO_AUDITS)
    callers: dict[tuple[str, str, str, str], int] = {}
    positions: list[int | None] = []
    for request in requests:
        audit = request.audit
        if audit is None:
            positions.append(None)
            continue
        key = (audit.actor, audit.role, audit.api_key_id, audit.method)
        positions.append(callers.setdefault(key, len(callers) + 1))
    if callers:
        params["audit_callers"] = positions
        params["audit_request_ids"] = [r.audit.request_id if r.audit else None for r in requests]
        params["caller_actors"] = [k[0] for k in callers]
        params["caller_roles"] = [k[1] for k in callers]
        params["caller_keys"] = [k[2] for k in callers]
        params["caller_methods"] = [k[3] for k in callers]
    if batch is not None:
        jobs = sorted({r.job_id for r in requests})
        params.update(
            batch_actor=batch.actor,
            batch_role=batch.role,
            batch_key=batch.api_key_id,
            batch_method=batch.method,
            batch_request_id=batch.request_id,
            batch_resource=f"jobs/{jobs[0]}" if len(jobs) == 1 else "jobs",
            batch_detail=json.dumps({"triggers": len(requests), "jobs": jobs[:MAX_AUDITED_BATCH_JOBS]}),
        )
    return params


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def run_from_row(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        job_id=row.job_id,
        job_name=row.job_name,
        state=RunState(row.state),
        attempt=row.attempt,
        trigger=Trigger(row.trigger),
        version=row.version,
        queue_time=row.queue_time,
        start_time=row.start_time,
        finish_time=row.finish_time,
        worker_id=row.worker_id,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        slot_time=row.slot_time,
        retry_at=row.retry_at,
        idempotency_key=row.idempotency_key,
        retried_from=row.retried_from,
        cancel_time=row.cancel_time,
        executor_kind=row.executor_kind,
        parameters=row.parameters,
        output=row.output,
        pool=row.pool,
        task=row.task,
        priority=row.priority,
        concurrency_key=row.concurrency_key,
        rate_limit_key=row.rate_limit_key,
        awaiting_admission=row.awaiting_admission,
    )
