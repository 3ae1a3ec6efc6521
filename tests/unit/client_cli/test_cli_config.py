"""Where the CLI takes its server and token from, and the config file `login` writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from taskmesh.cli import config
from taskmesh.cli.config import StoredConfig, resolve
from tests.support import free_port
from tests.unit.client_cli.cli import run
from tests.unit.client_cli.fake import FakeTaskmesh

FILE = StoredConfig(server="file:1", token="file-token")


def test_flags_beat_environment_beat_file_beat_default() -> None:
    env = {"TASKMESH_SERVER": "env:1", "TASKMESH_TOKEN": "env-token"}
    both = resolve("flag:1", "flag-token", env, FILE)
    assert (both.server, both.token, both.server_source, both.token_source) == (
        "flag:1",
        "flag-token",
        "--server",
        "--token",
    )
    from_env = resolve(None, None, env, FILE)
    assert (from_env.server, from_env.token) == ("env:1", "env-token")
    from_file = resolve(None, None, {}, FILE)
    assert (from_file.server, from_file.token, from_file.token_source) == ("file:1", "file-token", "config file")
    default = resolve(None, None, {}, StoredConfig())
    assert (default.server, default.token) == ("127.0.0.1:8080", None)


def test_the_files_token_goes_only_to_the_files_server() -> None:
    assert resolve("other:1", None, {}, FILE).token is None
    assert resolve(None, None, {"TASKMESH_SERVER": "other:1"}, FILE).token is None
    same = StoredConfig(server="http://127.0.0.1:8080", token="t")
    assert resolve("127.0.0.1:8080", None, {}, same).token == "t"


def test_credentials_from_the_environment_need_both() -> None:
    assert resolve(None, None, {"TASKMESH_USERNAME": "u"}, FILE).username is None
    both = resolve(None, None, {"TASKMESH_USERNAME": "u", "TASKMESH_PASSWORD": "p"}, FILE)
    assert (both.username, both.password) == ("u", "p")


def test_config_path_honours_overrides(tmp_path: Path) -> None:
    assert config.config_path({"TASKMESH_CONFIG": str(tmp_path / "c.json")}) == tmp_path / "c.json"
    assert config.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "taskmesh" / "config.json"
    assert config.config_path({}).parts[-3:] == (".config", "taskmesh", "config.json")


def test_save_is_private_even_over_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "config.json"
    config.save(path, StoredConfig(server="s:1", token="secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    config.save(path, StoredConfig(server="s:1", token="newer"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path) == StoredConfig(server="s:1", token="newer")


def test_login_stores_server_and_token_then_commands_use_them(fake: FakeTaskmesh, config_file: Path) -> None:
    env = {"TASKMESH_CONFIG": str(config_file)}
    result = run(["login", "--server", fake.address, "-u", "admin", "--password-stdin"], env, stdin="admin\n")
    assert result.code == 0, result.err
    assert f"logged in to {fake.address} as admin" in result.out
    assert json.loads(config_file.read_text()) == {"server": fake.address, "token": "token-1"}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    fake.add_job("stored")
    listed = run(["jobs", "list", "-o", "json"], env)
    assert listed.code == 0, listed.err
    assert [j["name"] for j in json.loads(listed.out)] == ["stored"]
    assert fake.calls("ListJobs")[-1].token == "token-1"


def test_flag_overrides_environment_end_to_end(fake: FakeTaskmesh, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TASKMESH_SERVER": f"127.0.0.1:{free_port()}"}  # nothing listens there
    assert run(["jobs", "list", "--server", fake.address], env).code == 0
    assert run(["--server", fake.address, "jobs", "list"], env).code == 0


def test_environment_credentials_log_in_by_themselves(fake: FakeTaskmesh, config_file: Path) -> None:
    env = {
        "TASKMESH_SERVER": fake.address,
        "TASKMESH_CONFIG": str(config_file),
        "TASKMESH_USERNAME": "admin",
        "TASKMESH_PASSWORD": "admin",
    }
    assert run(["jobs", "list"], env).code == 0
    assert fake.state.logins == 1
    assert not config_file.exists()  # only `login` writes the file


def test_wrong_password_is_one_line(fake: FakeTaskmesh, config_file: Path) -> None:
    env = {"TASKMESH_SERVER": fake.address, "TASKMESH_CONFIG": str(config_file)}
    result = run(["login", "-u", "admin", "--password", "wrong"], env)
    assert result.code == 1
    assert "wrong username or password" in result.error_line
    assert not config_file.exists()


def test_login_without_a_password_or_terminal_is_a_usage_error(fake: FakeTaskmesh, config_file: Path) -> None:
    env = {"TASKMESH_SERVER": fake.address, "TASKMESH_CONFIG": str(config_file)}
    result = run(["login", "-u", "admin"], env)
    assert result.code == 2
    assert "password" in result.error_line


def test_logout_forgets_the_token(fake: FakeTaskmesh, config_file: Path) -> None:
    config.save(config_file, StoredConfig(server=fake.address, token=fake.token()))
    env = {"TASKMESH_CONFIG": str(config_file)}
    assert run(["logout"], env).code == 0
    assert config.load(config_file) == StoredConfig(server=fake.address, token=None)
    assert "no token" in run(["jobs", "list"], env).error_line


def test_a_broken_config_file_is_a_usage_error(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{not json")
    result = run(["jobs", "list"], {"TASKMESH_CONFIG": str(config_file)})
    assert result.code == 2
    assert "not valid JSON" in result.error_line


def test_an_api_key_from_the_environment_is_the_whole_credential() -> None:
    key = "tmk_0123456789abcdef_" + "A" * 43
    env = {
        "TASKMESH_API_KEY": key,
        "TASKMESH_TOKEN": "env-token",
        "TASKMESH_USERNAME": "u",
        "TASKMESH_PASSWORD": "p",
    }
    connection = resolve(None, None, env, FILE)
    assert (connection.token, connection.token_source) == (key, "TASKMESH_API_KEY")
    assert connection.username is None and connection.password is None  # no login with a key
    assert resolve(None, "flag-token", env, FILE).token == "flag-token"
