"""The argparse tree of `taskmesh`: every command, its flags and its handler."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from taskmesh.cli import access, account, jobs, notifications, runs, secrets, workers
from taskmesh.cli.errors import UsageError

DESCRIPTION = """Manage Taskmesh jobs and runs over gRPC.

The server address and token come from --server/--token, else TASKMESH_SERVER and
TASKMESH_API_KEY (a service account's key) or TASKMESH_TOKEN, else the config file `taskmesh login` writes (~/.config/taskmesh/config.json, or
TASKMESH_CONFIG). With TASKMESH_USERNAME and TASKMESH_PASSWORD set, the CLI logs in by itself.
A JOB is a job id or a job name."""

EPILOG = """exit codes: 0 ok; 1 the server refused the request; 2 bad usage; 3 server unreachable;
4 `runs watch`: the run FAILED; 5 `runs watch`: the run was CANCELLED; 130 interrupted."""


class Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (through UsageError) rather than usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build() -> Parser:
    parser = Parser(
        prog="taskmesh",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_flags(parser, argparse.SUPPRESS)  # may come before or after the command
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    common = _common_parent()
    listing = _output_parent()

    login = commands.add_parser("login", parents=[common, listing], help="log in and store the token")
    login.add_argument("-u", "--username", help="default: TASKMESH_USERNAME, else asked")
    _password_flags(login, "default: TASKMESH_PASSWORD, else asked without echo")
    login.set_defaults(handler=account.login)
    logout = commands.add_parser("logout", parents=[common], help="forget the stored token")
    logout.set_defaults(handler=account.logout)

    for name, text, add, dest in (
        ("jobs", "create, list, change and trigger jobs", _jobs, "action"),
        ("runs", "list, inspect, cancel and follow runs", _runs, "action"),
        ("notifications", "webhook channels, rules and deliveries", _notifications, "area"),
        ("workers", "the connected workers", _workers, "action"),
        ("tasks", "Python task registries", _tasks, "action"),
        ("users", "manage users (admin)", _users, "action"),
        ("secrets", "manage secrets (values are write-only)", _secrets, "action"),
        ("service-accounts", "manage service accounts and their API keys (admin)", _service_accounts, "action"),
        ("audit", "read the audit log (admin)", _audit, "action"),
    ):
        actions = commands.add_parser(name, help=text).add_subparsers(
            dest=dest, metavar=dest.upper(), required=True, parser_class=Parser
        )
        add(actions, common, listing)
    return parser


def _workers(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    listed = actions.add_parser("list", parents=[common, listing], help="list connected workers")
    listed.add_argument("--pool", help="only the workers of this pool")
    listed.set_defaults(handler=workers.list_workers)


def _tasks(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    schema = actions.add_parser(
        "schema",
        help="print the parameter JSON Schema of a registry's tasks",
        description="Loads module:attribute (a taskmesh.tasks.TaskRegistry) and prints "
        "{\"task name\": schema, ...}, or one task's schema (a job's parameter_schema) with --task.",
    )
    schema.add_argument("registry", metavar="MODULE:ATTRIBUTE")
    schema.add_argument("--task", help="only this task's schema")
    schema.set_defaults(handler=workers.task_schema)


def _connection_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--server", default=default, help="host:port or http(s)://host:port (default 127.0.0.1:8080)"
    )
    parser.add_argument("--token", default=default, help="bearer token (prefer TASKMESH_TOKEN or `login`)")
    parser.add_argument("--timeout", type=float, default=default, help="seconds per call (default 30)")


def _common_parent() -> Parser:
    parent = Parser(add_help=False)
    _connection_flags(parent, argparse.SUPPRESS)
    return parent


def _output_parent() -> Parser:
    parent = Parser(add_help=False)
    parent.add_argument("-o", "--output", choices=("table", "json"), default="table", help="default: table")
    return parent


def _password_flags(parser: argparse.ArgumentParser, note: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    group.add_argument("--password", help=f"visible to other local users; {note}")


def _jobs(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    parents = [common, listing]
    create = actions.add_parser(
        "create",
        parents=parents,
        help="create a job",
        description="Create a job from flags and/or --from-file (the REST API's JSON form of a job; "
        "flags override it). Shell jobs take their program after --: "
        "taskmesh jobs create build --shell -- make -C /srv/app",
    )
    create.add_argument("name", nargs="?", help="unique name (letters, digits, '.', '_', '-')")
    _job_flags(create)
    create.set_defaults(handler=jobs.create)

    listed = actions.add_parser("list", parents=parents, help="list jobs, oldest first")
    listed.add_argument("--filter", help='e.g. name:"nightly" AND state=FAILED AND labels.team=data')
    _paging_flags(listed, default_limit=0)
    listed.set_defaults(handler=jobs.list_jobs)

    for name, handler, text in (
        ("get", jobs.get, "show a job"),
        ("status", jobs.status, "show the state of a job's latest run"),
        ("pause", jobs.pause, "stop a job's schedule from firing"),
        ("resume", jobs.resume, "let a job's schedule fire again"),
    ):
        action = actions.add_parser(name, parents=parents, help=text)
        action.add_argument("job", metavar="JOB")
        action.set_defaults(handler=handler)

    updated = actions.add_parser(
        "update",
        parents=parents,
        help="change a job",
        description="Change the fields the flags (or --from-file) name; the rest stay as they are. "
        "--label adds or replaces one label, --remove-label removes one.",
    )
    updated.add_argument("job", metavar="JOB")
    updated.add_argument("--name", help="rename the job")
    updated.add_argument("--remove-label", action="append", metavar="KEY")
    updated.add_argument("--no-schedule", action="store_true", help="remove the schedule (manual triggers only)")
    _job_flags(updated)
    updated.set_defaults(handler=jobs.update)

    deleted = actions.add_parser("delete", parents=parents, help="delete jobs and their runs")
    deleted.add_argument("jobs", metavar="JOB", nargs="+")
    deleted.set_defaults(handler=jobs.delete)

    triggered = actions.add_parser("trigger", parents=parents, help="start a run now")
    triggered.add_argument("job", metavar="JOB")
    triggered.add_argument(
        "--idempotency-key",
        help="repeats with the same key (within 24h) return the same run; default: a fresh key per call",
    )
    triggered.add_argument("--priority", type=int, metavar="0-9", help="this run's priority instead of the job's")
    triggered.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="start N runs at once (1-1000, one BatchTriggerJobs call)",
    )
    triggered.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a parameter (repeatable); VALUE is read as JSON when it parses (42, true, [1,2], "
        '"quoted"), as a string otherwise; it overrides --params-file',
    )
    triggered.add_argument(
        "--params-file", metavar="FILE", help="a JSON object of parameters ('-' reads standard input)"
    )
    triggered.set_defaults(handler=jobs.trigger)

    keys = actions.add_parser(
        "concurrency-keys", parents=[common, listing], help="concurrency keys in use: active and waiting runs"
    )
    keys.add_argument("--prefix", default="", help="only keys starting with this")
    _paging_flags(keys, default_limit=100)
    keys.set_defaults(handler=jobs.concurrency_keys)

    slots = actions.add_parser("skipped-slots", parents=parents, help="schedule slots that did not fire")
    slots.add_argument("job", metavar="JOB")
    _paging_flags(slots, default_limit=50)
    slots.set_defaults(handler=jobs.skipped_slots)


def _job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-file", metavar="FILE", help="a job as JSON ('-' for stdin)")
    parser.add_argument("--description")
    parser.add_argument("--label", action="append", metavar="KEY=VALUE")

    executor = parser.add_argument_group("executor (one of)")
    kinds = executor.add_mutually_exclusive_group()
    kinds.add_argument("--noop", action="store_true", help="do nothing and succeed")
    kinds.add_argument("--sleep", metavar="DURATION", help="sleep, e.g. 2 or 1.5s")
    kinds.add_argument("--http-url", metavar="URL", help="call this URL; 2xx is success")
    kinds.add_argument("--shell", action="store_true", help="run the program given after --")
    kinds.add_argument("--python", metavar="TASK", help="call a registered Python task (taskmesh.tasks)")
    executor.add_argument("--http-method", metavar="METHOD", help="GET (default), POST, PUT, PATCH, DELETE, HEAD")
    executor.add_argument("--http-header", action="append", metavar="'NAME: VALUE'")
    executor.add_argument("--http-body", metavar="TEXT")
    executor.add_argument("--http-timeout", metavar="DURATION")
    executor.add_argument("--shell-env", action="append", metavar="NAME=VALUE")
    executor.add_argument("--shell-timeout", metavar="DURATION")

    schedule = parser.add_argument_group("schedule (one of --cron, --every, --at; none: manual triggers only)")
    when = schedule.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help='5 fields, or 6 with seconds first: "*/5 * * * *"')
    when.add_argument("--every", metavar="DURATION", help="fixed interval, e.g. 30s, 5m, 1h")
    when.add_argument("--at", metavar="TIME", help="once, at an RFC 3339 time: 2030-01-01T09:00:00Z")
    schedule.add_argument("--timezone", metavar="TZ", help="IANA zone of a cron schedule, e.g. Europe/Berlin")
    schedule.add_argument("--anchor", metavar="TIME", help="--every: slots fall on anchor + k * interval")
    schedule.add_argument("--misfire", metavar="POLICY", help="missed slots: fire-once (default), skip, fire-all")
    schedule.add_argument("--overlap", metavar="POLICY", help="slot while a run is active: allow, forbid, replace")
    schedule.add_argument("--schedule-jitter", metavar="DURATION", help="spread each fire by up to this much")
    schedule.add_argument("--catch-up-window", metavar="DURATION", help="fire-all: how far back to catch up")

    retry = parser.add_argument_group("retries and timeouts (unset: the server's defaults)")
    retry.add_argument("--max-attempts", type=int, metavar="N", help="attempts in all; 1 disables retries")
    retry.add_argument("--initial-backoff", metavar="DURATION")
    retry.add_argument("--backoff-multiplier", type=float, metavar="X")
    retry.add_argument("--max-backoff", metavar="DURATION")
    retry.add_argument("--retry-jitter", type=float, metavar="FRACTION", help="0-1")
    retry.add_argument("--non-retryable-http-status", type=int, action="append", metavar="CODE")
    retry.add_argument("--non-retryable-exit-code", type=int, action="append", metavar="CODE")
    retry.add_argument("--attempt-timeout", metavar="DURATION", help="longest an attempt may run")

    keep = parser.add_argument_group("retention (unset: the server's settings; 0s keeps forever)")
    keep.add_argument("--keep-succeeded", metavar="DURATION", help="keep SUCCEEDED runs this long, e.g. 14d")
    keep.add_argument("--keep-failed", metavar="DURATION", help="keep FAILED runs this long")
    keep.add_argument("--keep-cancelled", metavar="DURATION", help="keep CANCELLED runs this long")
    keep.add_argument("--keep-logs", metavar="DURATION", help="keep log lines of finished runs this long")
    routing = parser.add_argument_group("worker pools")
    routing.add_argument("--pool", metavar="POOL", help="the pool whose workers run it (default: default)")
    routing.add_argument(
        "--start-deadline", metavar="DURATION", help="a run not started this long after queueing fails NOT_STARTED"
    )
    flow = parser.add_argument_group('flow control (README "Flow control")')
    flow.add_argument("--priority", type=int, metavar="0-9", help="higher starts first (default 5)")
    flow.add_argument("--concurrency-limit", type=int, metavar="N", help="at most N active runs per key")
    flow.add_argument("--concurrency-key", metavar="TEMPLATE", help='e.g. "customer-{{ params.customer_id }}"')
    flow.add_argument(
        "--on-limit", choices=("queue", "skip", "cancel-oldest"), help="at the limit (default queue)"
    )
    flow.add_argument("--rate-limit", metavar="N/PERIOD", help="at most N starts per period and key, e.g. 20/10s")
    flow.add_argument("--rate-limit-key", metavar="TEMPLATE", help="default: the job")


def _paging_flags(parser: argparse.ArgumentParser, default_limit: int) -> None:
    parser.add_argument(
        "--limit", type=int, default=default_limit, help=f"at most this many (0: all; default {default_limit})"
    )
    parser.add_argument("--page-size", type=int, default=0, help="items per request (server default 50)")


def _runs(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    parents = [common, listing]
    listed = actions.add_parser("list", parents=parents, help="list runs, newest first")
    listed.add_argument("--job", metavar="JOB", help="only this job's runs")
    listed.add_argument("--state", action="append", metavar="STATE", help="e.g. FAILED (joined by AND)")
    listed.add_argument("--filter", help="e.g. state=FAILED AND trigger=SCHEDULE")
    _paging_flags(listed, default_limit=50)
    listed.set_defaults(handler=runs.list_runs)

    for name, handler, text in (
        ("get", runs.get, "show a run and its attempts"),
        ("cancel", runs.cancel, "cancel a queued, waiting or running run"),
        ("retry", runs.retry, "start a fresh run of a finished run's job"),
    ):
        action = actions.add_parser(name, parents=parents, help=text)
        action.add_argument("run", metavar="RUN")
        action.set_defaults(handler=handler)

    watched = actions.add_parser(
        "watch",
        parents=parents,
        help="follow a run live until it finishes",
        description="Print the run's state changes and log lines until it finishes, starting with "
        "the lines it already wrote (-o json: one event per line, as the REST stream gives them). "
        "Exit code 0 if it SUCCEEDED, 4 if it FAILED, 5 if it was CANCELLED.",
    )
    watched.add_argument("run", metavar="RUN")
    watched.set_defaults(handler=runs.watch)

    logged = actions.add_parser(
        "logs",
        parents=parents,
        help="print a run's log lines",
        description="Print every log line of the run (or of one attempt), oldest first, reading page after page.",
    )
    logged.add_argument("run", metavar="RUN")
    logged.add_argument("--attempt", type=int, default=0, help="only this attempt's lines (default: all)")
    logged.add_argument("--page-size", type=int, default=0, help="lines per request (server default 1000)")
    logged.set_defaults(handler=runs.logs)


def _users(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    listed = actions.add_parser("list", parents=[common, listing], help="list users")
    listed.set_defaults(handler=account.users_list)
    created = actions.add_parser("create", parents=[common, listing], help="create a user")
    created.add_argument("username")
    created.add_argument("--role", required=True, choices=("admin", "operator", "viewer", "worker"))
    _password_flags(created, "else asked without echo")
    created.set_defaults(handler=account.users_create)
    deleted = actions.add_parser("delete", parents=[common, listing], help="delete a user")
    deleted.add_argument("username")
    deleted.set_defaults(handler=account.users_delete)


def _notifications(areas: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    parents = [common, listing]
    channels = areas.add_parser("channels", help="webhook channels").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    created = channels.add_parser("create", parents=parents, help="create a webhook channel")
    created.add_argument("name")
    created.add_argument("url")
    secret = created.add_mutually_exclusive_group()
    secret.add_argument("--secret-stdin", action="store_true", help="read the signing secret from stdin")
    secret.add_argument("--secret", help="visible to other local users; prefer --secret-stdin")
    created.add_argument("--format", choices=("GENERIC", "SLACK"), default="GENERIC")
    created.add_argument("--description")
    created.set_defaults(handler=notifications.channels_create)
    channels.add_parser("list", parents=parents, help="list channels").set_defaults(
        handler=notifications.channels_list
    )
    for name, handler, text in (
        ("get", notifications.channels_get, "show a channel"),
        ("delete", notifications.channels_delete, "delete a channel, its rules and deliveries"),
        ("test", notifications.channels_test, "queue a TEST event for a channel"),
    ):
        action = channels.add_parser(name, parents=parents, help=text)
        action.add_argument("channel", metavar="CHANNEL_ID")
        action.set_defaults(handler=handler)

    rules = areas.add_parser("rules", help="which events of which jobs go to a channel").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    rule = rules.add_parser("create", parents=parents, help="create a rule")
    rule.add_argument("name")
    rule.add_argument("--channel", required=True, metavar="CHANNEL_ID")
    rule.add_argument("--job", metavar="JOB", help="one job (id or name); else --label selects jobs")
    rule.add_argument("--label", action="append", metavar="KEY=VALUE", help="jobs with this label (repeatable)")
    rule.add_argument(
        "--event",
        action="append",
        required=True,
        choices=("RUN_FAILED", "JOB_RECOVERED", "SLOT_MISFIRED", "SLOT_SKIPPED", "RUN_STUCK", "RUN_FINISHED"),
    )
    rule.add_argument("--stuck-after", type=float, metavar="SECONDS", help="RUN_STUCK threshold (default 300)")
    rule.set_defaults(handler=notifications.rules_create)
    listed = rules.add_parser("list", parents=parents, help="list rules")
    listed.add_argument("--filter", help='e.g. channel_id="..."')
    listed.set_defaults(handler=notifications.rules_list)
    deleted = rules.add_parser("delete", parents=parents, help="delete a rule")
    deleted.add_argument("rule", metavar="RULE_ID")
    deleted.set_defaults(handler=notifications.rules_delete)

    deliveries = areas.add_parser("deliveries", parents=parents, help="deliveries, newest first")
    deliveries.add_argument("--filter", help='e.g. state=FAILED AND job_id="..."')
    _paging_flags(deliveries, default_limit=50)
    deliveries.set_defaults(handler=notifications.deliveries)


def _secrets(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    parents = [common, listing]
    actions.add_parser("list", parents=parents, help="list secret names").set_defaults(
        handler=secrets.secrets_list
    )
    for name, text, handler in (
        ("create", "create a secret (value from stdin, --from-file or --from-env)", secrets.secrets_create),
        ("update", "replace a secret's value (from stdin, --from-file or --from-env)", secrets.secrets_update),
    ):
        action = actions.add_parser(name, parents=parents, help=text)
        action.add_argument("name")
        secrets.add_value_flags(action)
        action.set_defaults(handler=handler)
    deleted = actions.add_parser("delete", parents=parents, help="delete a secret")
    deleted.add_argument("name")
    deleted.set_defaults(handler=secrets.secrets_delete)
    rotated = actions.add_parser(
        "rotate", parents=parents, help="re-seal every secret under the current key (admin)"
    )
    rotated.set_defaults(handler=secrets.secrets_rotate)


def _service_accounts(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    parents = [common, listing]
    listed = actions.add_parser("list", parents=parents, help="list service accounts")
    listed.set_defaults(handler=access.accounts_list)
    created = actions.add_parser("create", parents=parents, help="create a service account")
    created.add_argument("name")
    created.add_argument("--role", required=True, choices=("admin", "operator", "viewer"))
    created.add_argument("--description", default="")
    created.set_defaults(handler=access.accounts_create)
    deleted = actions.add_parser("delete", parents=parents, help="delete a service account and its keys")
    deleted.add_argument("name")
    deleted.set_defaults(handler=access.accounts_delete)
    key = actions.add_parser("create-key", parents=parents, help="create an API key (printed once)")
    key.add_argument("name", metavar="ACCOUNT")
    key.add_argument("--key-name", required=True, help="a label for the key, e.g. ci-deploy")
    key.add_argument("--ttl", metavar="DURATION", help="e.g. 30d, 12h (default: the server's, 90 days)")
    key.set_defaults(handler=access.keys_create)
    keys = actions.add_parser("keys", parents=parents, help="list an account's API keys")
    keys.add_argument("name", metavar="ACCOUNT")
    keys.set_defaults(handler=access.keys_list)
    revoke = actions.add_parser("revoke-key", parents=parents, help="revoke an API key")
    revoke.add_argument("name", metavar="ACCOUNT")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(handler=access.keys_revoke)


def _audit(actions: Any, common: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    listed = actions.add_parser("list", parents=[common, listing], help="audit events, newest first")
    listed.add_argument("--actor")
    listed.add_argument("--resource", help="e.g. jobs/<id>, runs/<id>, users/<name>, apiKeys/<id>")
    listed.add_argument("--method", help="full method, e.g. /taskmesh.v1.JobService/CreateJob")
    listed.add_argument("--since", metavar="TIME", help="RFC 3339 time, inclusive")
    listed.add_argument("--until", metavar="TIME", help="RFC 3339 time, exclusive")
    _paging_flags(listed, default_limit=50)
    listed.set_defaults(handler=access.audit_list)
