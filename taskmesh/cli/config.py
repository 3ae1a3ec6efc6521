"""Where the CLI finds the server and token: flags, then environment, then the config file.
A service account's API key ($TASKMESH_API_KEY) is sent as the bearer credential, as it is.

The config file (~/.config/taskmesh/config.json, or $TASKMESH_CONFIG) holds {"server", "token"};
`taskmesh login` writes it, readable by its owner only. Its token is sent only to its server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from taskmesh.client.channel import DEFAULT_ADDRESS, parse_address

ENV_SERVER = "TASKMESH_SERVER"
ENV_TOKEN = "TASKMESH_TOKEN"
ENV_API_KEY = "TASKMESH_API_KEY"
ENV_CONFIG = "TASKMESH_CONFIG"
ENV_USERNAME = "TASKMESH_USERNAME"
ENV_PASSWORD = "TASKMESH_PASSWORD"


class ConfigError(Exception):
    """The config file cannot be read or written."""


@dataclass(frozen=True)
class StoredConfig:
    server: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class Connection:
    """What a command connects with, and where each value came from (for error messages)."""

    server: str
    token: str | None
    username: str | None
    password: str | None
    server_source: str
    token_source: str | None


def config_path(env: Mapping[str, str]) -> Path:
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "taskmesh" / "config.json"


def load(path: Path) -> StoredConfig:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return StoredConfig()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    server, token = data.get("server"), data.get("token")
    if not isinstance(server, str | None) or not isinstance(token, str | None):
        raise ConfigError(f'{path}: "server" and "token" must be strings')
    return StoredConfig(server=server, token=token)


def save(path: Path, config: StoredConfig) -> None:
    """Write the file with mode 0600 (its directory 0700 when created): it holds a credential."""
    data = {"server": config.server, "token": config.token}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.chmod(temporary, 0o600)  # in case a umask or an old file widened it
        os.replace(temporary, path)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None


def resolve(
    flag_server: str | None, flag_token: str | None, env: Mapping[str, str], stored: StoredConfig
) -> Connection:
    """Each value from the first of: flag, environment, config file (then the default address).

    The file's token belongs to the file's server, so it is used only when talking to that server."""
    if flag_server:
        server, server_source = flag_server, "--server"
    elif env.get(ENV_SERVER):
        server, server_source = env[ENV_SERVER], ENV_SERVER
    elif stored.server:
        server, server_source = stored.server, "config file"
    else:
        server, server_source = DEFAULT_ADDRESS, "default"

    token: str | None
    if flag_token:
        token, token_source = flag_token, "--token"
    elif env.get(ENV_API_KEY):
        token, token_source = env[ENV_API_KEY], ENV_API_KEY
    elif env.get(ENV_TOKEN):
        token, token_source = env[ENV_TOKEN], ENV_TOKEN
    elif stored.token and same_server(stored.server or DEFAULT_ADDRESS, server):
        token, token_source = stored.token, "config file"
    else:
        token, token_source = None, None
    username, password = env.get(ENV_USERNAME) or None, env.get(ENV_PASSWORD) or None
    if username is None or password is None or token_source == ENV_API_KEY:
        username = password = None  # an API key is the whole credential: no login
    return Connection(server, token, username, password, server_source, token_source)


def same_server(a: str, b: str) -> bool:
    """127.0.0.1:8080 and http://127.0.0.1:8080 are the same server."""
    try:
        return parse_address(a) == parse_address(b)
    except ValueError:
        return a == b
