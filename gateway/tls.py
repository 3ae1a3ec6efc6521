"""TLS in the gateway's Envoy configuration (issue 14, item 7), from the TLS block of settings.

- Downstream: with TASKMESH_GATEWAY_TLS_CERT_FILE and _KEY_FILE, the gateway's one listener
  speaks TLS only; ALPN offers h2 and http/1.1, so REST (HTTP/1.1 or HTTP/2) and native gRPC
  share the port as they do in plaintext.
- Upstream: with TASKMESH_TLS_ENABLED, the api_server and scheduler clusters (traffic and gRPC
  health checks) use TLS, verify the server's chain against TASKMESH_TLS_CA_FILE and its name
  against the upstream's host (a DNS SAN, or an IP SAN for an address), and with
  TASKMESH_TLS_CLIENT_AUTH present the gateway's TASKMESH_TLS_CERT_FILE / _KEY_FILE (mTLS).

Envoy reads the files itself (paths, never their contents, go into the configuration); they
are checked readable here first, so that a wrong path fails with the variable's name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmesh.settings import Settings, env_variable
from taskmesh.tls import TlsSettingsError, read_pem

TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
# TLS 1.2 at least, on both sides.
PARAMETERS = {"tls_minimum_protocol_version": "TLSv1_2"}


@dataclass(frozen=True)
class KeyPair:
    certificate_chain: Path
    private_key: Path

    def envoy(self) -> dict[str, Any]:
        return {
            "certificate_chain": {"filename": str(self.certificate_chain)},
            "private_key": {"filename": str(self.private_key)},
        }


@dataclass(frozen=True)
class UpstreamTls:
    ca: Path
    client: KeyPair | None = None  # mTLS


def _checked(path: str, setting: str) -> Path:
    read_pem(path, setting)
    return Path(path).resolve()


def downstream_tls(settings: Settings) -> KeyPair | None:
    """The gateway's HTTPS certificate, or None (plain HTTP) when neither file is set."""
    cert, key = settings.gateway_tls_cert_file, settings.gateway_tls_key_file
    if not cert and not key:
        return None
    if not (cert and key):
        missing = "gateway_tls_key_file" if cert else "gateway_tls_cert_file"
        raise TlsSettingsError(f"{env_variable(missing)} must be set too, to serve HTTPS")
    return KeyPair(_checked(cert, "gateway_tls_cert_file"), _checked(key, "gateway_tls_key_file"))


def upstream_tls(settings: Settings) -> UpstreamTls | None:
    """How the gateway calls the api_server and the scheduler, or None (plaintext)."""
    if not settings.tls_enabled:
        return None
    client = None
    if settings.tls_client_auth:
        client = KeyPair(
            _checked(settings.tls_cert_file, "tls_cert_file"), _checked(settings.tls_key_file, "tls_key_file")
        )
    return UpstreamTls(_checked(settings.tls_ca_file, "tls_ca_file"), client)


def downstream_socket(pair: KeyPair) -> dict[str, Any]:
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": f"{TLS_TYPE}.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": PARAMETERS,
                "tls_certificates": [pair.envoy()],
                "alpn_protocols": ["h2", "http/1.1"],
            },
        },
    }


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def upstream_socket(tls: UpstreamTls, host: str) -> dict[str, Any]:
    """A TLS client socket to `host` (gRPC: ALPN h2), verifying that the certificate names it."""
    address = _is_address(host)
    name = {"san_type": "IP_ADDRESS" if address else "DNS", "matcher": {"exact": host.strip("[]")}}
    common: dict[str, Any] = {
        "tls_params": PARAMETERS,
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": str(tls.ca)},
            "match_typed_subject_alt_names": [name],
        },
    }
    if tls.client is not None:
        common["tls_certificates"] = [tls.client.envoy()]
    context: dict[str, Any] = {"@type": f"{TLS_TYPE}.UpstreamTlsContext", "common_tls_context": common}
    if not address:
        context["sni"] = host
    return {"name": TLS_SOCKET, "typed_config": context}
