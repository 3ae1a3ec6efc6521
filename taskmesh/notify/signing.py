"""Webhook signatures: HMAC-SHA256 over `timestamp + "." + body`, as Stripe signs its webhooks.

The header is `Taskmesh-Signature: t=<unix seconds>,v1=<hex digest>`. A receiver recomputes
the digest with the channel's secret over the timestamp it was given and the raw body bytes,
compares in constant time, and refuses a timestamp further than its tolerance (REPLAY_WINDOW
by default) from its own clock; it dedupes on the event id (Taskmesh-Event-Id, also the body's
"id"), since a delivery may be repeated (at least once). Several v1= entries may appear (a
secret being rotated): any match verifies.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Taskmesh-Signature"
EVENT_ID_HEADER = "Taskmesh-Event-Id"
EVENT_TYPE_HEADER = "Taskmesh-Event-Type"
ATTEMPT_HEADER = "Taskmesh-Delivery-Attempt"
SCHEME = "v1"
REPLAY_WINDOW = 300  # seconds


def digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under the secret (UTF-8)."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = REPLAY_WINDOW) -> bool:
    """Does the header sign this body with this secret, at a time within tolerance of now?"""
    timestamp, signatures = parse_header(header)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def parse_header(header: str) -> tuple[int | None, list[str]]:
    """(t, [v1 signatures]) of a `t=...,v1=...` header; (None, []) when it has no valid t."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME and value:
            signatures.append(value)
    return timestamp, signatures
