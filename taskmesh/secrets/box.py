"""Encryption of secret values at rest: AES-256-GCM under a keyring from the settings.

TASKMESH_SECRET_KEYS is a comma-separated list of `key_id:key`, each key 32 bytes in URL-safe
base64 (`python -c "import secrets,base64;print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"`).
The first key encrypts every new value; all of them decrypt, so rotating is: put a new key
first, keep the old ones, call RotateSecrets (which re-encrypts under the first), then remove
the old ones. Each ciphertext is bound to its secret's name (associated data), so a value
cannot be moved to another name in the database and still decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
# The key `make up` and the tests use when TASKMESH_SECRET_KEYS is empty in development: it is
# in this repository, so production refuses it (Settings.check_secure).
DEV_SECRET_KEYS = "dev:" + base64.urlsafe_b64encode(b"taskmesh-development-secrets-key").decode()


class KeyringError(ValueError):
    """TASKMESH_SECRET_KEYS is malformed."""


class UndecryptableSecret(Exception):
    """No key of the keyring opens the value (a removed key, or a tampered row)."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes  # nonce + AES-GCM output (with its tag)


class SecretBox:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not KEY_ID.match(key_id):
                raise KeyringError(f"TASKMESH_SECRET_KEYS: {key_id!r} is not `key_id:base64key`")
            if key_id in keys:
                raise KeyringError(f"TASKMESH_SECRET_KEYS: key id {key_id!r} appears twice")
            keys[key_id] = _decode_key(key_id, encoded)
        if not keys:
            raise KeyringError("TASKMESH_SECRET_KEYS holds no key")
        return cls(keys, next(iter(keys)))

    def seal(self, name: str, value: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        data = self._ciphers[self.current].encrypt(nonce, value.encode(), name.encode())
        return Sealed(self.current, nonce + data)

    def open(self, name: str, sealed: Sealed) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise UndecryptableSecret(
                f"secret {name!r} is encrypted under key {sealed.key_id!r}, which is not configured"
            )
        nonce, data = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, data, name.encode()).decode()
        except InvalidTag:
            raise UndecryptableSecret(f"secret {name!r} does not decrypt under key {sealed.key_id!r}") from None


def _decode_key(key_id: str, encoded: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise KeyringError(f"TASKMESH_SECRET_KEYS: key {key_id!r} is not base64") from None
    if len(key) != 32:
        raise KeyringError(f"TASKMESH_SECRET_KEYS: key {key_id!r} must be 32 bytes, not {len(key)}")
    return key
