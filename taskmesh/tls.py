"""TLS for the mesh's own gRPC links (issue 14, item 7), from the TLS block of taskmesh/settings.py.

Off by default (development: plaintext gRPC on loopback). With TASKMESH_TLS_ENABLED:

- every gRPC listener of the mesh (api_server, scheduler, a worker's health listener) serves TLS
  only, with TASKMESH_TLS_CERT_FILE / TASKMESH_TLS_KEY_FILE (PEM);
- every client inside the mesh (workers, the api_server's scheduler check, the gateway's
  upstreams, taskmesh-healthcheck, taskmesh-up) verifies the server's certificate against
  TASKMESH_TLS_CA_FILE, host name included (the address's host must be one of its SANs);
- with TASKMESH_TLS_CLIENT_AUTH as well (mTLS), servers refuse a client without a certificate
  signed by that CA, and every client presents its own TASKMESH_TLS_CERT_FILE / _KEY_FILE.

A missing or unreadable file, or TLS enabled without the files it needs, stops the process at
start with a TlsSettingsError naming the variable; key material never appears in an error.
The gateway's own HTTPS listener is configured by gateway/tls.py from the same settings block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

from taskmesh.settings import Settings, env_variable

ChannelOptions = Sequence[tuple[str, int | str]]


class TlsSettingsError(ValueError):
    """TLS is configured inconsistently, or a certificate/key file cannot be read."""


@dataclass(frozen=True)
class ClientTls:
    """How a client verifies the servers it calls, and (mTLS) what it presents to them."""

    root_certificates: bytes | None  # None: the system's roots
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate; with client_ca, clients must present one it signed (mTLS)."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def read_pem(path: str, setting: str) -> bytes:
    """The file a setting names; a TlsSettingsError naming the variable if it is unset or unreadable."""
    if not path:
        raise TlsSettingsError(f"{env_variable(setting)} must be set when TASKMESH_TLS_ENABLED is true")
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TlsSettingsError(f"{env_variable(setting)}: cannot read {path} ({error.strerror})") from None
    if b"-----BEGIN " not in data:
        raise TlsSettingsError(f"{env_variable(setting)}: {path} is not a PEM file")
    return data


def server_tls(settings: Settings) -> ServerTls | None:
    """The credentials of this process's gRPC listeners; None when TLS is off."""
    if not settings.tls_enabled:
        return None
    return ServerTls(
        certificate_chain=read_pem(settings.tls_cert_file, "tls_cert_file"),
        private_key=read_pem(settings.tls_key_file, "tls_key_file"),
        client_ca=read_pem(settings.tls_ca_file, "tls_ca_file") if settings.tls_client_auth else None,
    )


def client_tls(settings: Settings) -> ClientTls | None:
    """How this process calls the mesh's gRPC servers; None when TLS is off."""
    if not settings.tls_enabled:
        return None
    roots = read_pem(settings.tls_ca_file, "tls_ca_file")
    if not settings.tls_client_auth:
        return ClientTls(roots)
    return ClientTls(
        roots,
        certificate_chain=read_pem(settings.tls_cert_file, "tls_cert_file"),
        private_key=read_pem(settings.tls_key_file, "tls_key_file"),
    )


def add_port(server: grpc.Server | aio.Server, listen: str, tls: ServerTls | None) -> int:
    """Bind `listen` (TLS only when tls is given); the port bound, 0 when it could not be."""
    if tls is None:
        return server.add_insecure_port(listen)
    return server.add_secure_port(listen, tls.credentials())


def aio_channel(address: str, tls: ClientTls | None, options: ChannelOptions = ()) -> aio.Channel:
    """An asyncio channel to a mesh server: TLS when tls is given, else plaintext."""
    if tls is None:
        return aio.insecure_channel(address, options=options)
    return aio.secure_channel(address, tls.credentials(), options=options)


def channel(address: str, tls: ClientTls | None, options: ChannelOptions = ()) -> grpc.Channel:
    """A blocking channel to a mesh server: TLS when tls is given, else plaintext."""
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.credentials(), options=options)
