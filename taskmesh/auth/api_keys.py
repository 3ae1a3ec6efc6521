"""API keys, pure: their format, their hash and the check of a presented key.

A key is `tmk_<id>_<secret>`: `tmk_` tells it from a JWT (which starts `eyJ` and holds dots),
`<id>` (16 hex digits, not secret) names the row it is checked against, and `<secret>` is 32
random bytes in base64url (256 bits). Only the SHA-256 of the whole key is stored: a key
carries far more entropy than any password, so a slow hash (argon2) would buy nothing, and a
fast one lets every call be checked in microseconds. The stored and computed digests are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

PREFIX = "tmk_"
ID_BYTES = 8
SECRET_BYTES = 32
_FORMAT = re.compile(r"tmk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class NewKey:
    """A key just made: `key` is shown once and never stored."""

    key_id: str
    key: str
    secret_hash: str


@dataclass(frozen=True)
class KeyCredential:
    """What a presented key is checked against (a row of api_keys, as the credential map holds it)."""

    key_id: str
    service_account: str
    secret_hash: str
    expire_time: datetime


def looks_like_key(bearer: str) -> bool:
    """Whether a bearer credential is meant as an API key (rather than an access token)."""
    return bearer.startswith(PREFIX)


def new_key() -> NewKey:
    key_id = secrets.token_hex(ID_BYTES)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(key_id=key_id, key=key, secret_hash=hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    match = _FORMAT.fullmatch(key)
    return match.group(1) if match else None


def matches(credential: KeyCredential, key: str) -> bool:
    """Constant-time: whether `key` is the one `credential` was made from."""
    return hmac.compare_digest(hash_key(key), credential.secret_hash)


def expired(credential: KeyCredential, now: datetime) -> bool:
    return now >= credential.expire_time


def display(key_id: str) -> str:
    """How a key is named in listings and logs: its prefix and id, never its secret."""
    return f"{PREFIX}{key_id}_..."
