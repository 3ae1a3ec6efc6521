"""runs.state holds a known run state, and this is where the list lives: a migration that adds a
state copies this one with the new list (tests/unit/test_states.py keeps the latest list equal
to taskmesh.states.RunState).

The check itself dates from 0001 (runs_state_valid); it is replaced the way a larger table
needs: the new check is added NOT VALID (a brief lock), validated (rows stay readable and
writable meanwhile), and only then takes the old one's name.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen: what taskmesh.states.RunState held when this revision was written.
RUN_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "RETRY_WAIT", "CANCELLING", "CANCELLED")
# The list of 0001, which downgrade restores.
PREVIOUS_RUN_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "RETRY_WAIT", "CANCELLING", "CANCELLED")


def upgrade() -> None:
    _replace_state_check(RUN_STATES)


def downgrade() -> None:
    _replace_state_check(PREVIOUS_RUN_STATES)


def _replace_state_check(states: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{state}'" for state in states)
    op.execute(f"ALTER TABLE runs ADD CONSTRAINT runs_state_next CHECK (state IN ({listed})) NOT VALID")
    op.execute("ALTER TABLE runs VALIDATE CONSTRAINT runs_state_next")
    op.execute("ALTER TABLE runs DROP CONSTRAINT runs_state_valid")
    op.execute("ALTER TABLE runs RENAME CONSTRAINT runs_state_next TO runs_state_valid")
