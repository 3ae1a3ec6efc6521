"""JWT access tokens (HS256) carrying the username, role and credential version.

A token is only as long-lived as the configured TTL: one whose lifetime (exp - iat) is longer,
or that has no iat, is refused even when its signature is right. Whether its user still holds
that role and version is taskmesh.auth.credentials' question.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from taskmesh.service_errors import Unauthenticated
from taskmesh.states import Role

ALGORITHM = "HS256"
ISSUER = "taskmesh"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    username: str
    role: Role
    # The API key the call was made with ("" for an access token).
    api_key_id: str = ""


@dataclass(frozen=True)
class TokenClaims:
    principal: Principal
    # The user's credential version when the token was issued.
    version: int
    expires_at: float


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


class TokenCodec:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        # Tokens already verified: a client sends the same token many times.
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, principal: Principal, version: int = 0) -> IssuedToken:
        now = int(time.time())
        claims = {
            "sub": principal.username,
            "role": principal.role.value,
            "ver": version,
            "iat": now,
            "exp": now + self._ttl,
            "iss": ISSUER,
        }
        return IssuedToken(token=jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_in=self._ttl)

    def verify(self, token: str) -> Principal:
        return self.claims(token).principal

    def claims(self, token: str) -> TokenClaims:
        """The token's verified claims; raises Unauthenticated for a bad or expired token."""
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at > time.time():
            return cached
        claims = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> TokenClaims:
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
        self._check_lifetime(claims)
        try:
            role = Role(claims["role"])
        except ValueError as error:
            raise Unauthenticated("the access token carries an unknown role") from error
        version = claims.get("ver")
        if not isinstance(version, int) or isinstance(version, bool):
            raise Unauthenticated("the access token is from an older release; log in again")
        principal = Principal(username=str(claims["sub"]), role=role)
        return TokenClaims(principal=principal, version=version, expires_at=float(claims["exp"]))

    def _check_lifetime(self, claims: dict[str, object]) -> None:
        issued_at, expires_at = claims.get("iat"), claims.get("exp")
        if not isinstance(issued_at, int | float) or not isinstance(expires_at, int | float):
            raise Unauthenticated("the access token is invalid: it has no issue time")
        if expires_at - issued_at > self._ttl:
            raise Unauthenticated("the access token is invalid: it lives longer than this server allows")


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an 'authorization: Bearer <token>' metadata value."""
    if not authorization:
        raise Unauthenticated("missing authorization: send 'authorization: Bearer <token>' (see Login)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()
