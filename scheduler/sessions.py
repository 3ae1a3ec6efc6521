"""Worker session tokens: the secret that makes a Connect stream the owner of what it claims.

The scheduler mints a token for a worker's first stream and sends it in Welcome only; attempts
are recorded with its SHA-256 (the session key), and outcome, heartbeat and log statements are
guarded by that key. A reconnecting worker presents its token again and so keeps its attempts;
no other stream can, whatever worker_id it claims.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from taskmesh.service_errors import InvalidArgument

TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def checked_token(presented: str) -> str:
    """A token a Hello presented (only ever one the scheduler minted), or a new one if none."""
    if not presented:
        return new_token()
    if _TOKEN.fullmatch(presented) is None:
        raise InvalidArgument("hello.session_token", "must be the token a Welcome gave this worker")
    return presented


def session_key(token: str) -> str:
    """What the database stores: the token itself never leaves the stream it was minted for."""
    return hashlib.sha256(token.encode()).hexdigest()
