"""Where a channel may post: an http(s) URL whose addresses the egress policy allows.

Checked when a channel is written (so that a URL aimed at the mesh's own control planes, the
gateway admin port for one, is INVALID_ARGUMENT at once) and again on every connection a
delivery makes (taskmesh.guarded_http: the name is resolved there and then, so a name that
changes its address later gains nothing). A URL with credentials in it is refused: URLs are
shown to every reader, secrets go in the channel's write-only secret.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from taskmesh.egress import EgressPolicy, decide, parse_address
from taskmesh.guarded_http import Resolver
from taskmesh.service_errors import InvalidArgument

MAX_URL = 2048
RESOLVE_SECONDS = 2.0


def check_url(url: str, field: str) -> str:
    """The URL, stripped, if it is a well-formed http(s) URL with a host and no credentials."""
    url = url.strip()
    if not url:
        raise InvalidArgument(field, "is required")
    if len(url) > MAX_URL:
        raise InvalidArgument(field, f"must be at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(field, "must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidArgument(field, "has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(field, "must not carry credentials (put the secret in the channel's secret)")
    try:
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError as error:
        raise InvalidArgument(field, f"has an invalid port: {error}") from error
    return url


async def check_allowed(url: str, policy: EgressPolicy, resolver: Resolver, field: str) -> None:
    """InvalidArgument unless some address the URL's host has now is allowed. A name that does
    not resolve is let through: the delivery will say so (last_error) and try again."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [str(parse_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                addresses = await resolver(host, port)
        except (OSError, UnicodeError, ValueError, TimeoutError):  # no such name (yet), or none at all
            return
    decisions = [decide(policy, address, port) for address in addresses]
    if decisions and not any(d.allowed for d in decisions):
        raise InvalidArgument(field, f"is refused by the egress policy: {decisions[0]}")
