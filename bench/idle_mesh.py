"""What an idle mesh costs: CPU of every process while no run exists, and the database
connections each process holds.

Starts a private mesh (a database and namespace of its own, free ports, 2 workers, the gateway),
lets it settle, then measures for the given time:

  python -m bench.idle_mesh                  # 30 s
  python -m bench.idle_mesh --seconds 60

Prints each process's CPU as a percentage of one core, their total, and the PostgreSQL
connections of the mesh's database by application_name (each process names its connections).
"""

from __future__ import annotations

import argparse
import time

import psycopg

from bench.common import BENCH_DB, PG, bench_mesh, cpu_seconds


def connections_by_process() -> dict[str, int]:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(nullif(application_name, ''), '(unnamed)'), count(*) FROM pg_stat_activity"
            " WHERE datname = %s GROUP BY 1 ORDER BY 1",
            (BENCH_DB,),
        ).fetchall()
    return {name: count for name, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after start-up")
    args = parser.parse_args()
    with bench_mesh(workers=2) as mesh:
        time.sleep(args.settle)  # start-up work (migrations, first connections) is not idle cost
        pids = {name: process.pid for name, process in mesh.processes.items()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        connections = connections_by_process()
    shares = ", ".join(f"{name} {100 * seconds / elapsed:.2f}%" for name, seconds in used.items())
    print(
        f"idle mesh for {elapsed:.0f}s, CPU of one core: {shares} (total {100 * sum(used.values()) / elapsed:.2f}%)"
    )
    total = sum(connections.values())
    print(f"database connections: {total} ({', '.join(f'{name} {n}' for name, n in connections.items())})")


if __name__ == "__main__":
    main()
