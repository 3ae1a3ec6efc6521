"""The lifecycle table itself, and the places derived from it that are not SQL statements
(tests/integration/test_transitions.py checks the statements against the database)."""

import ast
import re
from pathlib import Path

from taskmesh.db import models, runs
from taskmesh.states import (
    ACTIVE_STATES,
    ALLOWED_TRANSITIONS,
    LEASED_STATES,
    TERMINAL_STATES,
    RunState,
    in_order,
)
from taskmesh.v1 import run_pb2

VERSIONS = Path(models.__file__).parent / "migrations" / "versions"
ROOT = Path(runs.__file__).parents[2]
RUN_WRITE = re.compile(r"\b(INSERT\s+INTO\s+(runs|outbox)|UPDATE\s+runs|DELETE\s+FROM\s+runs)\b", re.IGNORECASE)


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL_STATES:
        assert ALLOWED_TRANSITIONS[state] == frozenset()
        assert state.is_terminal


def test_every_state_has_an_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RunState)


def test_lifecycle_edges_from_the_design() -> None:
    assert RunState.RUNNING in ALLOWED_TRANSITIONS[RunState.QUEUED]
    assert RunState.CANCELLED in ALLOWED_TRANSITIONS[RunState.QUEUED]
    assert RunState.RETRY_WAIT in ALLOWED_TRANSITIONS[RunState.RUNNING]
    assert RunState.QUEUED in ALLOWED_TRANSITIONS[RunState.RETRY_WAIT]
    assert RunState.CANCELLING in ALLOWED_TRANSITIONS[RunState.RUNNING]
    assert RunState.CANCELLED in ALLOWED_TRANSITIONS[RunState.CANCELLING]
    assert RunState.SUCCEEDED not in ALLOWED_TRANSITIONS[RunState.QUEUED]
    assert RunState.QUEUED not in ALLOWED_TRANSITIONS[RunState.SUCCEEDED]
    assert RunState.RUNNING not in ALLOWED_TRANSITIONS[RunState.FAILED]


def test_the_enum_mirrors_the_proto_states() -> None:
    proto = set(run_pb2.Run.State.keys()) - {"STATE_UNSPECIFIED"}
    assert {state.value for state in RunState} == proto


def test_active_states_are_the_unfinished_ones_and_leased_ones_are_active() -> None:
    assert {RunState.QUEUED, RunState.RUNNING, RunState.RETRY_WAIT, RunState.CANCELLING} == ACTIVE_STATES
    assert LEASED_STATES < ACTIVE_STATES
    assert not ACTIVE_STATES & TERMINAL_STATES


def test_state_lists_in_sql_follow_the_enum_order() -> None:
    assert in_order(frozenset({RunState.CANCELLING, RunState.RUNNING})) == (RunState.RUNNING, RunState.CANCELLING)
    assert runs.LEASED == "('RUNNING', 'CANCELLING')"
    assert runs.ACTIVE == "('QUEUED', 'RUNNING', 'RETRY_WAIT', 'CANCELLING')"


def test_model_check_and_index_predicates_derive_from_the_states() -> None:
    table = models.Run.__table__
    check = next(c for c in table.constraints if c.name == "runs_state_valid")
    assert str(check.sqltext) == "state IN (" + ", ".join(f"'{s.value}'" for s in RunState) + ")"
    predicates = {index.name: str(index.dialect_options["postgresql"]["where"]) for index in table.indexes}
    assert predicates["runs_active_per_job"] == f"state IN {runs.ACTIVE}"
    assert predicates["runs_leased"] == f"state IN {runs.LEASED}"


def _literal(path: Path, name: str) -> object:
    """A module-level constant of a migration, read without importing it (alembic's op is unbound)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} has no literal {name}")


def _latest_state_migration() -> Path:
    """The newest migration that writes the runs.state check (each defines RUN_STATES)."""
    candidates = [path for path in sorted(VERSIONS.glob("[0-9]*.py")) if "RUN_STATES =" in path.read_text()]
    assert candidates, "no migration writes the runs.state check"
    return candidates[-1]


def test_the_latest_state_migration_lists_exactly_the_enum() -> None:
    """Adding a RunState without a migration (or the reverse) fails here."""
    migration = _latest_state_migration()
    assert _literal(migration, "RUN_STATES") == tuple(state.value for state in RunState), migration.name


def test_migration_0007_is_frozen_to_its_own_literal_list() -> None:
    """A migration must not follow the code: it imports nothing of ours and writes its list out."""
    tree = ast.parse((VERSIONS / "0007_run_states.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name.startswith("taskmesh")]
    assert _literal(VERSIONS / "0007_run_states.py", "RUN_STATES") == (
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "RETRY_WAIT",
        "CANCELLING",
        "CANCELLED",
    )


def test_only_the_lifecycle_module_writes_runs_or_queues_work_units() -> None:
    """One home for run writes: schedules and maintenance call taskmesh.db.runs, they do not
    write runs (or outbox rows, the outbox rule) themselves; deleting finished runs (retention)
    has its one home beside it, taskmesh.db.run_purge. Migrations are history."""
    sources = [p for d in ("taskmesh", "api_server", "scheduler", "worker") for p in (ROOT / d).rglob("*.py")]
    writers = {
        str(path.relative_to(ROOT))
        for path in sources
        if "migrations" not in path.parts and RUN_WRITE.search(path.read_text())
    }
    assert writers == {"taskmesh/db/runs.py", "taskmesh/db/run_purge.py"}
