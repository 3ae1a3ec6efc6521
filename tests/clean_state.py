"""`make clean-test-state`: drop what test sessions and benchmarks left behind when they died
before their teardown (a killed pytest, a benchmark stopped with SIGKILL).

Every test session names its database `tm_<label>_<pid>_<hex>` and its namespace (RabbitMQ
queues and exchanges, Redis keys) `tm<label><pid>_<hex>` (tests/support.Isolation); every
benchmark `taskmesh_bench_<pid>` and `tmbench<pid>` (bench/common.py). Only the state whose
creating process is no longer running is deleted: other engineers' tests and benchmarks on the
same machine keep theirs. Run it with `--dry-run` to see what would go.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable

import psycopg
import redis

from taskmesh.broker.cleanup import listed_names
from tests.support import PG_ADMIN_URL, delete_rabbitmq_namespace

DATABASE = re.compile(r"^(?:tm_[a-z]+_(?P<pid>\d+)_[0-9a-f]{6}|taskmesh_bench_(?P<bench>\d+))$")
NAMESPACE = re.compile(r"^(?:tm[a-z]+?(?P<pid>\d+)_[0-9a-f]{6}|tmbench(?P<bench>\d+))$")


def creator(name: str, pattern: re.Pattern[str]) -> int | None:
    """The pid a test or benchmark name carries, None for a name of no test or benchmark."""
    match = pattern.match(name)
    if match is None:
        return None
    return int(match.group("pid") or match.group("bench"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def orphans(names: Iterable[str], pattern: re.Pattern[str]) -> list[str]:
    """The names whose creating process is no longer running."""
    found = []
    for name in sorted(set(names)):
        pid = creator(name, pattern)
        if pid is not None and not alive(pid):
            found.append(name)
    return found


def broker_namespaces() -> set[str]:
    """Namespaces that have a queue or an exchange (`<namespace>.<rest>`)."""
    names = listed_names("queues") + listed_names("exchanges")
    return {name.split(".", 1)[0] for name in names if "." in name}


def clean_databases(dry_run: bool) -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]
        dropped = orphans(names, DATABASE)
        for name in [] if dry_run else dropped:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return dropped


def clean_broker(dry_run: bool) -> list[str]:
    namespaces = orphans(broker_namespaces(), NAMESPACE)
    for namespace in [] if dry_run else namespaces:
        delete_rabbitmq_namespace(namespace)
    return namespaces


def clean_redis(dry_run: bool) -> list[str]:
    client = redis.Redis()
    keys = [key.decode() for key in client.scan_iter("tm*", count=1000)]
    namespaces = orphans((key.split(":", 1)[0] for key in keys if ":" in key), NAMESPACE)
    for namespace in [] if dry_run else namespaces:
        doomed = list(client.scan_iter(f"{namespace}:*", count=1000))
        if doomed:
            client.delete(*doomed)
    return namespaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    args = parser.parse_args()
    verb = "would delete" if args.dry_run else "deleted"
    for what, clean in (
        ("databases", clean_databases),
        ("RabbitMQ namespaces", clean_broker),
        ("Redis namespaces", clean_redis),
    ):
        names = clean(args.dry_run)
        print(f"{verb} {len(names)} {what} of processes no longer running" + (":" if names else ""))
        for name in names:
            print(f"  {name}")


if __name__ == "__main__":
    main()
