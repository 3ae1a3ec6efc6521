"""Who may read the aggregated metrics at /actuator/prometheus (through the gateway, to anyone
who can reach it): in production, a caller with an admin or operator access token, or the
dedicated TASKMESH_METRICS_TOKEN a Prometheus scraper is given; in development anyone, unless
TASKMESH_ACTUATOR_PROMETHEUS_PUBLIC says otherwise. /actuator/health* is always open (probes)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from taskmesh.auth.credentials import CredentialDirectory
from taskmesh.auth.tokens import Principal, TokenCodec, bearer_token
from taskmesh.service_errors import Unauthenticated
from taskmesh.settings import Settings
from taskmesh.states import Role

READERS = frozenset({Role.ADMIN, Role.OPERATOR})


class Access(StrEnum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # no credentials, or credentials that do not verify
    FORBIDDEN = "forbidden"  # a valid token of a role that may not read metrics


@dataclass(frozen=True)
class PrometheusAccess:
    public: bool
    metrics_token: str
    verify: Callable[[str], Principal]

    def check(self, authorization: str | None) -> Access:
        if self.public:
            return Access.ALLOWED
        try:
            token = bearer_token(authorization)
        except Unauthenticated:
            return Access.UNAUTHENTICATED
        if self.metrics_token and hmac.compare_digest(token.encode(), self.metrics_token.encode()):
            return Access.ALLOWED
        try:
            principal = self.verify(token)
        except Unauthenticated:
            return Access.UNAUTHENTICATED
        return Access.ALLOWED if principal.role in READERS else Access.FORBIDDEN


PUBLIC = PrometheusAccess(public=True, metrics_token="", verify=lambda token: Principal("", Role.VIEWER))


def prometheus_access(settings: Settings, credentials: CredentialDirectory) -> PrometheusAccess:
    """Tokens are checked as the guard checks them: a revoked user's token reads no metrics."""
    public = settings.actuator_prometheus_public
    codec = TokenCodec(settings.jwt_secret, settings.jwt_ttl_seconds)
    return PrometheusAccess(
        public=settings.is_development if public is None else public,
        metrics_token=settings.metrics_token,
        verify=lambda token: credentials.check_now(codec.claims(token)),
    )
