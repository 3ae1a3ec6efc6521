"""Session tokens of worker streams (scheduler.sessions)."""

from __future__ import annotations

import pytest

from scheduler.sessions import checked_token, new_token, session_key
from taskmesh.service_errors import InvalidArgument


def test_a_first_stream_gets_a_fresh_unguessable_token() -> None:
    first, second = checked_token(""), checked_token("")
    assert first != second and len(first) == 43


def test_a_reconnect_keeps_its_token_and_so_its_session_key() -> None:
    token = new_token()
    assert checked_token(token) == token
    assert session_key(token) == session_key(checked_token(token)) != session_key(new_token())
    assert token not in session_key(token)  # the database never holds the token itself


@pytest.mark.parametrize("presented", ["guessable", "x" * 42, "x" * 44, "a" * 42 + "\n", "é" * 43])
def test_a_token_the_scheduler_cannot_have_minted_is_invalid(presented: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        checked_token(presented)
    assert error.value.field == "hello.session_token"
