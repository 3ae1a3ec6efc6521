"""The bearer token a client sends, and when it logs in (again) to get one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class IssuedToken:
    token: str
    # Seconds the token is valid for from the moment it was issued; None when unknown.
    expires_in: float | None


Login = Callable[[Credentials], IssuedToken]


class TokenManager:
    """Holds the current token. With credentials it logs in when it has no token, shortly before
    the token expires, and once more after the server rejected the token (renew()).
    Without credentials the token it was given is used as is."""

    def __init__(
        self,
        token: str | None,
        credentials: Credentials | None,
        login: Login,
        *,
        renew_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._credentials = credentials
        self._login = login
        self._renew_margin = renew_margin
        self._clock = clock
        self._expires_at: float | None = None
        self._lock = threading.Lock()

    @property
    def can_renew(self) -> bool:
        return self._credentials is not None

    def current(self) -> str | None:
        """The token to send, logging in first if it is missing or about to expire."""
        with self._lock:
            if self._credentials is not None and (self._token is None or self._expiring()):
                self._log_in(self._credentials)
            return self._token

    def renew(self, rejected: str | None) -> bool:
        """Log in again after the server refused `rejected`; False when there are no credentials."""
        with self._lock:
            if self._credentials is None:
                return False
            if self._token == rejected:  # another thread may have renewed it already
                self._log_in(self._credentials)
            return True

    def replace(self, issued: IssuedToken, credentials: Credentials | None) -> None:
        """Use this token from now on, renewing it with these credentials."""
        with self._lock:
            self._credentials = credentials
            self._set(issued)

    def _expiring(self) -> bool:
        return self._expires_at is not None and self._clock() >= self._expires_at - self._renew_margin

    def _log_in(self, credentials: Credentials) -> None:
        self._set(self._login(credentials))

    def _set(self, issued: IssuedToken) -> None:
        self._token = issued.token
        self._expires_at = None if issued.expires_in is None else self._clock() + issued.expires_in
