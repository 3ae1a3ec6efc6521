"""Server addresses -> gRPC channels."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

DEFAULT_ADDRESS = "127.0.0.1:8080"


@dataclass(frozen=True)
class Target:
    host_port: str
    secure: bool


def parse_address(address: str, secure: bool | None = None) -> Target:
    """ "host:port" (plaintext unless `secure`), "http://host:port" or "https://host[:port]" (TLS).

    The gateway's URL and its native gRPC address are the same, so the URL people use with curl
    works here too."""
    text = address.strip()
    if not text:
        raise ValueError("the server address is empty")
    if "://" not in text:
        return Target(text, bool(secure))
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cannot use server address {address!r}; use host:port or http(s)://host:port")
    if parts.path not in ("", "/"):
        raise ValueError(f"server address {address!r} must not have a path")
    tls = parts.scheme == "https" if secure is None else secure
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Target(f"{host}:{port}", tls)


def open_channel(target: Target, root_certificates: bytes | None = None) -> grpc.Channel:
    if target.secure:
        return grpc.secure_channel(target.host_port, grpc.ssl_channel_credentials(root_certificates))
    return grpc.insecure_channel(target.host_port)
