"""An attempt's output as the worker ships it: lines cut at MAX_LOG_LINE_BYTES, and no more than
the scheduler would store (MAX_LOG_BYTES_PER_ATTEMPT). Past the cap one marker line is shipped,
flagged so that the attempt is marked truncated, and the rest is discarded here, on the worker,
so that no output size costs the scheduler more than the cap."""

from __future__ import annotations

from collections.abc import Callable

from taskmesh.limits import MAX_LOG_BYTES_PER_ATTEMPT, MAX_LOG_LINE_BYTES

# Ships one line; `truncated` flags the marker line. Returns False if the line was dropped
# (the worker's send buffer is full).
Ship = Callable[[str, bool], bool]
MARKER_ROOM = 256  # kept free under the cap for the marker line
# Counted for each line besides its text: a flood of empty lines costs the scheduler too.
LINE_COST_BYTES = 16
TRUNCATED_MARKER = (
    "[taskmesh: output truncated: this attempt passed the {cap}-byte output cap; the rest was discarded]"
)
DROPPED_MARKER = "[taskmesh: output truncated: the worker could not send it fast enough; the rest was discarded]"


def cut_line(text: str, max_bytes: int = MAX_LOG_LINE_BYTES) -> str:
    """The line, cut to at most `max_bytes` of UTF-8 (never inside a character)."""
    if len(text) * 4 <= max_bytes:  # cannot be longer: skip the encoding
        return text
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


class CappedLog:
    """The log sink of one attempt."""

    def __init__(self, ship: Ship, cap: int = MAX_LOG_BYTES_PER_ATTEMPT) -> None:
        self._ship = ship
        self._room = cap - MARKER_ROOM
        self._cap = cap
        self.full = False

    def __call__(self, text: str) -> None:
        if self.full:
            return
        text = cut_line(text)
        size = len(text.encode()) + LINE_COST_BYTES  # short lines are not free either
        if size > self._room:
            self._truncate(TRUNCATED_MARKER.format(cap=self._cap))
        elif self._ship(text, False):
            self._room -= size
        else:
            self._truncate(DROPPED_MARKER)

    def _truncate(self, marker: str) -> None:
        self.full = True
        self._ship(marker, True)


class LineSplitter:
    """Splits a byte stream into lines (without their newline), cutting each at `max_bytes`."""

    def __init__(self, max_bytes: int = MAX_LOG_LINE_BYTES) -> None:
        self._max = max_bytes
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            lines.append(bytes(self._partial))
            self._partial.clear()
            start = end + 1
        self._add(chunk[start:])
        return lines

    def finish(self) -> list[bytes]:
        """The last line, if the stream did not end with a newline."""
        last = [bytes(self._partial)] if self._partial else []
        self._partial.clear()
        return last

    def _add(self, data: bytes) -> None:
        room = self._max - len(self._partial)
        if room > 0:
            self._partial += data[:room]
