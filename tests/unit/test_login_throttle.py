"""The login throttling policy and the client address it counts per."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import pytest

from taskmesh.auth.throttle import ThrottlePolicy, admit, delay_after, fresh, give_back
from taskmesh.rpc.peers import client_address, parse_networks, peer_address

POLICY = ThrottlePolicy(
    limit=3, window=timedelta(minutes=15), base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10)
)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_attempts_up_to_the_limit_pass_then_each_waits_longer() -> None:
    state = fresh(T0)
    for _ in range(2):
        admission = admit(state, T0, POLICY)
        assert admission.retry_after is None and admission.state.blocked_until is None
        state = admission.state
    admission = admit(state, T0, POLICY)  # the third: admitted, and the next one must wait
    assert admission.retry_after is None
    assert admission.state.blocked_until == T0 + timedelta(seconds=1)
    refused = admit(admission.state, T0 + timedelta(seconds=0.5), POLICY)
    assert refused.retry_after == timedelta(seconds=0.5) and refused.state == admission.state
    later = admit(admission.state, T0 + timedelta(seconds=1), POLICY)
    assert later.retry_after is None and later.state.blocked_until == T0 + timedelta(seconds=3)


def test_delays_double_up_to_the_maximum() -> None:
    assert [delay_after(n, POLICY).total_seconds() for n in range(3, 9)] == [1, 2, 4, 8, 10, 10]
    assert delay_after(10**6, POLICY) == POLICY.max_delay


def test_parallel_attempts_cannot_all_pass_before_a_failure_is_recorded() -> None:
    state, admitted = fresh(T0), 0
    for _ in range(100):  # none has finished: each is still counted as a failure
        admission = admit(state, T0, POLICY)
        admitted += admission.retry_after is None
        state = admission.state
    assert admitted == POLICY.limit


def test_a_success_gives_back_only_its_own_attempt() -> None:
    state = fresh(T0)
    for _ in range(3):
        state = admit(state, T0, POLICY).state
    assert give_back(state).failures == 2  # the other failures still count


def test_the_window_starts_afresh() -> None:
    state = admit(fresh(T0), T0, POLICY).state
    assert admit(state, T0 + POLICY.window, POLICY).state.failures == 1


TRUSTED = [ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("ipv4:127.0.0.1:5000", "10.1.2.3", "10.1.2.3"),  # behind the gateway
        ("ipv4:127.0.0.1:5000", "6.6.6.6, 10.1.2.3", "10.1.2.3"),  # what the client sent is ignored
        ("ipv4:10.9.9.9:5000", "6.6.6.6", "10.9.9.9"),  # not the gateway: the header is ignored
        ("ipv4:127.0.0.1:5000", None, "127.0.0.1"),
        ("ipv4:127.0.0.1:5000", "garbage", "127.0.0.1"),
        ("ipv6:[2001:db8::1:2]:5000", None, "2001:db8::/64"),
        ("ipv6:[::ffff:10.0.0.1]:5000", None, "10.0.0.1"),
        ("unix:/tmp/socket", None, "unknown"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_peer_and_network_parsing() -> None:
    assert str(peer_address("ipv6:%5B::1%5D:80")) == "::1"
    assert parse_networks("127.0.0.1/32, ::1/128,") == [ip_network("127.0.0.1/32"), ip_network("::1/128")]
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_networks("nope")
