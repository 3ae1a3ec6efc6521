"""JWT access tokens (HS256) carrying the username and role."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from taskmesh.errors import Unauthenticated
from taskmesh.states import Role

ALGORITHM = "HS256"
ISSUER = "taskmesh"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    username: str
    role: Role


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


class TokenCodec:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        # Tokens already verified, with their expiry: a client sends the same token many times.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, principal: Principal) -> IssuedToken:
        now = int(time.time())
        claims = {
            "sub": principal.username,
            "role": principal.role.value,
            "iat": now,
            "exp": now + self._ttl,
            "iss": ISSUER,
        }
        return IssuedToken(token=jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_in=self._ttl)

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal, expires_at = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires_at)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the access token has expired; log in again") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated("the access token is invalid") from error
        try:
            role = Role(claims["role"])
        except ValueError as error:
            raise Unauthenticated("the access token carries an unknown role") from error
        return Principal(username=str(claims["sub"]), role=role), float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an 'authorization: Bearer <token>' metadata value."""
    if not authorization:
        raise Unauthenticated("missing authorization: send 'authorization: Bearer <token>' (see Login)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()
