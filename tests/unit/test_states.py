from taskmesh.db import runs
from taskmesh.states import ALLOWED_TRANSITIONS, TERMINAL_STATES, RunState, can_transition


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL_STATES:
        assert ALLOWED_TRANSITIONS[state] == frozenset()
        assert state.is_terminal


def test_every_state_has_an_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RunState)


def test_lifecycle_edges_from_the_design() -> None:
    assert can_transition(RunState.QUEUED, RunState.RUNNING)
    assert can_transition(RunState.QUEUED, RunState.CANCELLED)
    assert can_transition(RunState.RUNNING, RunState.RETRY_WAIT)
    assert can_transition(RunState.RETRY_WAIT, RunState.QUEUED)
    assert can_transition(RunState.RUNNING, RunState.CANCELLING)
    assert can_transition(RunState.CANCELLING, RunState.CANCELLED)
    assert not can_transition(RunState.QUEUED, RunState.SUCCEEDED)
    assert not can_transition(RunState.SUCCEEDED, RunState.QUEUED)
    assert not can_transition(RunState.FAILED, RunState.RUNNING)


def test_guarded_statements_only_move_along_allowed_edges() -> None:
    for name, edges in runs.TRANSITIONS.items():
        for source, target in edges:
            assert can_transition(source, target), f"{name}: {source} -> {target} is not in the lifecycle"


def test_claim_statement_is_guarded_by_state_and_attempt() -> None:
    sql = str(runs.CLAIM_ATTEMPTS)
    assert "r.state = 'QUEUED'" in sql
    assert "r.attempt = claim.attempt" in sql


def test_outcome_statement_is_guarded_by_state_attempt_and_worker() -> None:
    sql = str(runs.RECORD_OUTCOMES)
    assert "r.state IN ('RUNNING', 'CANCELLING')" in sql
    assert "r.attempt = report.attempt" in sql
    assert "r.worker_id = report.worker_id" in sql
