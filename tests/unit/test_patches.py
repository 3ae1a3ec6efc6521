"""taskmesh.patches: each patch still fits the library it patches, and still does its job.

These fail loudly when pika changes the internals the patch relies on (or starts batching its
writes by itself, which would make the patch useless)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport, _AsyncTransportBase

from taskmesh.patches import coalesce_pika_writes

FRAMES = [b"method-frame", b"header-frame", b"body-frame"]


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return 99

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


class ShortSendSocket(RecordingSocket):
    """Takes five bytes, then would block."""

    def send(self, data: bytes) -> int:
        if self.sent:
            raise BlockingIOError(errno.EAGAIN, "would block")
        self.sent.append(bytes(data[:5]))
        return 5


class QuietLoop:
    """The few pika nbio calls a plaintext transport makes while writing."""

    def set_reader(self, fd: int, on_readable: Any) -> None: ...

    def set_writer(self, fd: int, on_writable: Any) -> None: ...

    def remove_writer(self, fd: int) -> bool:
        return True


def _sent_when_writable(frames: list[bytes]) -> list[bytes]:
    """What pika's own write path hands to send(): buffer frames, then the socket turns writable."""
    sock = RecordingSocket()
    transport = _AsyncPlaintextTransport(sock, None, QuietLoop())  # type: ignore[arg-type]
    for frame in frames:
        transport.write(frame)
    transport._on_socket_writable()
    assert transport.get_write_buffer_size() == 0
    return sock.sent


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    produce = _AsyncTransportBase._produce
    monkeypatch.setattr(_AsyncTransportBase, "_produce", getattr(produce, "__wrapped__", produce))
    yield


def test_unpatched_pika_still_sends_every_frame_with_its_own_call(unpatched: None) -> None:
    # When this fails, pika batches by itself: delete coalesce_pika_writes.
    assert _sent_when_writable(FRAMES) == FRAMES


def test_coalesced_writes_reach_the_socket_in_one_send_with_nothing_lost() -> None:
    coalesce_pika_writes()
    coalesce_pika_writes()  # idempotent: applied once however often it is called
    assert _sent_when_writable(FRAMES) == [b"".join(FRAMES)]
    assert _sent_when_writable([b"ack"]) == [b"ack"]


def test_a_partial_send_keeps_the_rest_for_the_next_writable_turn() -> None:
    coalesce_pika_writes()
    sock = ShortSendSocket()
    transport = _AsyncPlaintextTransport(sock, None, QuietLoop())  # type: ignore[arg-type]
    for frame in FRAMES:
        transport.write(frame)
    transport._on_socket_writable()
    assert b"".join(sock.sent) + b"".join(transport._tx_buffers) == b"".join(FRAMES)
    assert transport.get_write_buffer_size() == len(b"".join(FRAMES)) - len(b"".join(sock.sent))
