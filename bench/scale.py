"""Taskmesh with a large history: the same figures on an empty and on a seeded database.

  python -m bench.scale seed --scale 1       # 100k jobs, 10M runs, 20M log lines (COPY)
  python -m bench.scale measure --scale 1    # empty vs seeded, side by side

TASKMESH_BENCH_DATABASE names the seeded database, so that it is seeded once and reused
(`measure` seeds it first when it holds no seed); the empty database is always a fresh one.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import psycopg

from bench.common import PG
from bench.scale_seed import SeedSize, is_seeded, seed
from taskmesh.db.schema import ensure_database, ensure_schema

SEEDED_DB = os.environ.get("TASKMESH_BENCH_DATABASE", f"taskmesh_bench_scale_{os.getpid()}")


def sqlalchemy_url(database: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"


def prepare_seeded(database: str, scale: float) -> None:
    """Create, migrate and seed `database` unless it already holds a seed."""
    ensure_database(sqlalchemy_url(database))
    ensure_schema(sqlalchemy_url(database))
    with psycopg.connect(f"{PG}/{database}", autocommit=True) as conn:
        if is_seeded(conn):
            row = conn.execute("SELECT jobs, runs, log_lines, seeded_at FROM bench_seed").fetchone()
            print(f"database {database} already seeded: {row}")
            return
        size = SeedSize.at(scale)
        print(f"seeding {database}: {size}", flush=True)
        started = time.monotonic()
        seed(conn, size, datetime.now(UTC))
        print(f"seeded in {time.monotonic() - started:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("seed", "measure"))
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 100k jobs, 10M runs, 20M log lines")
    args = parser.parse_args()
    if args.command == "seed":
        prepare_seeded(SEEDED_DB, args.scale)


if __name__ == "__main__":
    main()
