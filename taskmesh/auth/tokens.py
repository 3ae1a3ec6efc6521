"""JWT access tokens (HS256) carrying the username and role."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from taskmesh.errors import Unauthenticated
from taskmesh.states import Role

ALGORITHM = "HS256"
ISSUER = "taskmesh"


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
        return Principal(username=str(claims["sub"]), role=role)


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an 'authorization: Bearer <token>' metadata value."""
    if not authorization:
        raise Unauthenticated("missing authorization: send 'authorization: Bearer <token>' (see Login)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()
