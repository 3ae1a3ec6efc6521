"""TLS settings (taskmesh/tls.py, gateway/tls.py): off by default, errors name the variable, the
Envoy configuration verifies upstream names and offers h2 downstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import envoy_config
from gateway.main import gateway_config
from taskmesh.settings import Settings
from taskmesh.tls import TlsSettingsError, client_tls, server_tls

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    names = {}
    for name in ("ca", "cert", "key", "gw-cert", "gw-key"):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(PEM)
        names[name] = str(path)
    return names


def _tls(files: dict[str, str], **extra: Any) -> Settings:
    return Settings(
        tls_enabled=True,
        tls_ca_file=files["ca"],
        tls_cert_file=files["cert"],
        tls_key_file=files["key"],
        **extra,
    )


def _listener(config: dict[str, Any]) -> dict[str, Any]:
    [listener] = [x for x in config["static_resources"]["listeners"] if x["name"] == "gateway"]
    return listener


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def test_tls_is_off_by_default() -> None:
    settings = Settings()
    assert server_tls(settings) is None
    assert client_tls(settings) is None
    config = envoy_config(gateway_config(settings))
    assert "transport_socket" not in str(config)


def test_servers_and_clients_read_their_files(files: dict[str, str]) -> None:
    server = server_tls(_tls(files))
    assert server is not None and server.client_ca is None  # no mTLS unless asked
    client = client_tls(_tls(files))
    assert client is not None and client.root_certificates == PEM and client.certificate_chain is None
    mutual = _tls(files, tls_client_auth=True)
    assert server_tls(mutual).client_ca == PEM  # type: ignore[union-attr]
    assert client_tls(mutual).certificate_chain == PEM  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"tls_cert_file": ""}, "TASKMESH_TLS_CERT_FILE"),
        ({"tls_key_file": "/nonexistent/key.pem"}, "TASKMESH_TLS_KEY_FILE"),
    ],
)
def test_a_server_without_its_files_names_the_variable(
    files: dict[str, str], change: dict[str, str], variable: str
) -> None:
    with pytest.raises(TlsSettingsError, match=variable):
        server_tls(_tls(files).model_copy(update=change))


def test_a_file_that_is_not_pem_is_refused_without_its_content(files: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "not-pem"
    secret.write_text("hunter2-private-material")
    with pytest.raises(TlsSettingsError, match="TASKMESH_TLS_CA_FILE") as raised:
        client_tls(_tls(files).model_copy(update={"tls_ca_file": str(secret)}))
    assert "hunter2" not in str(raised.value)


def test_the_gateway_serves_https_with_h2_and_http1_on_its_one_listener(files: dict[str, str]) -> None:
    settings = Settings(gateway_tls_cert_file=files["gw-cert"], gateway_tls_key_file=files["gw-key"])
    listener = _listener(envoy_config(gateway_config(settings)))
    [chain] = listener["filter_chains"]
    context = chain["transport_socket"]["typed_config"]
    assert context["@type"].endswith("DownstreamTlsContext")
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert common["tls_certificates"][0]["certificate_chain"]["filename"] == str(Path(files["gw-cert"]).resolve())


def test_half_a_gateway_key_pair_is_refused(files: dict[str, str]) -> None:
    with pytest.raises(TlsSettingsError, match="TASKMESH_GATEWAY_TLS_KEY_FILE"):
        gateway_config(Settings(gateway_tls_cert_file=files["gw-cert"]))


def test_upstream_clusters_verify_the_server_name(files: dict[str, str]) -> None:
    settings = _tls(files, api_address="api-server:50051", scheduler_address="10.0.0.7:50052")
    clusters = _clusters(envoy_config(gateway_config(settings)))
    api = clusters["api_server"]["transport_socket"]["typed_config"]
    assert api["sni"] == "api-server"
    validation = api["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"]["filename"] == str(Path(files["ca"]).resolve())
    assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": "api-server"}}]
    assert "tls_certificates" not in api["common_tls_context"]
    scheduler = clusters["scheduler"]["transport_socket"]["typed_config"]
    assert "sni" not in scheduler  # no SNI for an address
    names = scheduler["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert names == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.7"}}]
    # Health checks use the cluster's socket: no separate plaintext path.
    assert clusters["api_server"]["health_checks"][0]["grpc_health_check"] == {}


def test_with_mtls_the_gateway_presents_its_certificate_upstream(files: dict[str, str]) -> None:
    clusters = _clusters(envoy_config(gateway_config(_tls(files, tls_client_auth=True))))
    common = clusters["scheduler"]["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificates"][0]["private_key"]["filename"] == str(Path(files["key"]).resolve())
