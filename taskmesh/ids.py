"""Identifiers: time-ordered UUIDs (version 7, RFC 9562) keep primary-key indexes append-mostly."""

from __future__ import annotations

import os
import re
import time
import uuid

# The canonical text form only: uuid.UUID() also takes braces, "urn:uuid:" and bare hex, which
# PostgreSQL's uuid type does not all take.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def new_id() -> str:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits (rand_b)
    return str(uuid.UUID(int=value))


def is_uuid(value: str) -> bool:
    """8-4-4-4-12 hex digits, nothing around them."""
    return _UUID.fullmatch(value) is not None
