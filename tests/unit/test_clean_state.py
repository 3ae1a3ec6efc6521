"""make clean-test-state (tests/clean_state.py): which names are a dead process's leftovers."""

from __future__ import annotations

import os
import subprocess

from tests.clean_state import DATABASE, NAMESPACE, creator, orphans
from tests.support import Isolation


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_names_carry_the_pid_of_the_process_that_made_them() -> None:
    isolation = Isolation.create("e")
    assert creator(isolation.database, DATABASE) == os.getpid()
    assert creator(isolation.namespace, NAMESPACE) == os.getpid()
    assert creator("taskmesh_bench_4242", DATABASE) == 4242
    assert creator("tmbench4242", NAMESPACE) == 4242
    assert creator("tmtls4242_a1b2c3", NAMESPACE) == 4242
    for other in ("taskmesh", "test", "postgres", "tm_e_12", "tm_e_12_zzzzzz", "tmbench", "amq.direct"):
        assert creator(other, DATABASE) is None and creator(other, NAMESPACE) is None


def test_only_the_state_of_processes_no_longer_running_is_an_orphan() -> None:
    dead, live = _dead_pid(), os.getpid()
    names = [f"tm_s_{dead}_abcdef", f"tm_s_{live}_abcdef", f"taskmesh_bench_{dead}", "taskmesh"]
    assert orphans(names, DATABASE) == sorted([f"tm_s_{dead}_abcdef", f"taskmesh_bench_{dead}"])
    namespaces = [f"tmf{dead}_012345", f"tmf{live}_012345", f"tmbench{live}", "prod"]
    assert orphans(namespaces, NAMESPACE) == [f"tmf{dead}_012345"]
