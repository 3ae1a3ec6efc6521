"""`taskmesh jobs trigger --param/--params-file` and the client's parameters= (against the fake
servicer: what the calls carry)."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from taskmesh.cli import errors
from taskmesh.cli.errors import UsageError
from taskmesh.cli.jobspec import trigger_parameters
from taskmesh.parameters import from_struct
from tests.unit.client_cli.cli import Result, run
from tests.unit.client_cli.fake import FakeTaskmesh

Invoke = Callable[..., Result]


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Invoke:
    return lambda *args: run(list(args), cli_env, "")


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    return result


def test_values_are_json_when_they_parse_strings_otherwise(tmp_path: Path) -> None:
    assert trigger_parameters(None, []) is None
    assert trigger_parameters(None, ["n=42", "flag=true", "ids=[1,2]", "name=abc", 'quoted="42"', "eq=a=b"]) == {
        "n": 42,
        "flag": True,
        "ids": [1, 2],
        "name": "abc",
        "quoted": "42",
        "eq": "a=b",
    }
    params = tmp_path / "p.json"
    params.write_text('{"n": 1, "region": "eu"}')
    assert trigger_parameters(str(params), ["n=2"]) == {"n": 2, "region": "eu"}


@pytest.mark.parametrize(("content", "problem"), [("[1]", "JSON object"), ("{nope", "is not JSON")])
def test_a_params_file_must_hold_a_json_object(tmp_path: Path, content: str, problem: str) -> None:
    params = tmp_path / "p.json"
    params.write_text(content)
    with pytest.raises(UsageError, match=problem):
        trigger_parameters(str(params), [])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        trigger_parameters(None, ["novalue"])


def test_jobs_trigger_sends_the_parameters(fake: FakeTaskmesh, cli: Invoke, tmp_path: Path) -> None:
    fake.add_job("p")
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"customer_id": 1, "region": "eu"}))
    ok(cli("jobs", "trigger", "p", "--params-file", str(params), "--param", "customer_id=7"))
    assert from_struct(fake.calls("TriggerJob")[0].request.parameters) == {"customer_id": 7, "region": "eu"}
    ok(cli("jobs", "trigger", "p", "--param", "n=1", "--count", "2"))
    batch = fake.calls("BatchTriggerJobs")[0].request
    assert [from_struct(r.parameters) for r in batch.requests] == [{"n": 1}, {"n": 1}]
    missing = cli("jobs", "trigger", "p", "--params-file", str(tmp_path / "none.json"))
    assert missing.code == errors.USAGE and "cannot read" in missing.error_line
