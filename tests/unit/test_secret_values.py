"""Secrets: sealing (taskmesh.secrets.box), literal references (references), masking (masking),
and the scheduler's resolver (scheduler.secret_resolver) over an in-memory store."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest
from google.protobuf import struct_pb2

from api_server import secrets as policy
from api_server.validation import executor
from scheduler.secret_resolver import SecretResolver
from taskmesh.db.secrets import SealedSecret
from taskmesh.secrets.box import DEV_SECRET_KEYS, KeyringError, Sealed, SecretBox, UndecryptableSecret
from taskmesh.secrets.masking import MASK, SecretMask, mask_message
from taskmesh.secrets.references import InvalidSecretReference, referenced_secrets
from taskmesh.service_errors import InvalidArgument
from taskmesh.settings import InsecureSettingsError, Settings
from taskmesh.v1 import job_pb2, run_pb2
from taskmesh.v1 import worker_service_pb2 as pb


def key(byte: int) -> str:
    return base64.urlsafe_b64encode(bytes([byte]) * 32).decode()


OLD = f"old:{key(1)}"
NEW = f"new:{key(2)}"


class TestBox:
    def test_a_value_opens_under_its_name_only(self) -> None:
        box = SecretBox.from_setting(NEW)
        sealed = box.seal("STRIPE_KEY", "sk_live_123")
        assert b"sk_live_123" not in sealed.ciphertext
        assert box.open("STRIPE_KEY", sealed) == "sk_live_123"
        with pytest.raises(UndecryptableSecret, match="OTHER"):
            box.open("OTHER", sealed)  # moved to another name in the database

    def test_the_first_key_seals_and_every_key_opens(self) -> None:
        old_value = SecretBox.from_setting(OLD).seal("A", "value-1")
        rotated = SecretBox.from_setting(f"{NEW},{OLD}")
        assert rotated.current == "new"
        assert rotated.open("A", old_value) == "value-1"
        assert rotated.seal("A", "value-2").key_id == "new"

    def test_a_removed_key_is_named(self) -> None:
        sealed = SecretBox.from_setting(OLD).seal("A", "value-1")
        with pytest.raises(UndecryptableSecret, match="'old'"):
            SecretBox.from_setting(NEW).open("A", sealed)

    def test_a_tampered_value_does_not_open(self) -> None:
        box = SecretBox.from_setting(NEW)
        sealed = box.seal("A", "value-1")
        tampered = Sealed(sealed.key_id, sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1]))
        with pytest.raises(UndecryptableSecret):
            box.open("A", tampered)

    @pytest.mark.parametrize(
        ("setting", "problem"),
        [
            ("", "no key"),
            ("nocolon", "key_id:base64key"),
            (f"a:{key(1)},a:{key(2)}", "twice"),
            ("a:c2hvcnQ=", "32 bytes"),
        ],
    )
    def test_malformed_keyrings_are_refused(self, setting: str, problem: str) -> None:
        with pytest.raises(KeyringError, match=problem):
            SecretBox.from_setting(setting)

    def test_settings(self) -> None:
        assert Settings(environment="development").secret_box() is not None  # the development key
        assert Settings(environment="production").secret_box() is None  # off until keys are set
        assert Settings(environment="production", secret_keys=NEW).secret_box() is not None
        with pytest.raises(ValueError, match="32 bytes"):
            Settings(secret_keys="a:c2hvcnQ=")
        production = Settings(
            environment="production",
            jwt_secret="j" * 40,
            admin_password="a-real-one",
            worker_password="another",
            secret_keys=DEV_SECRET_KEYS,
        )
        with pytest.raises(InsecureSettingsError, match="TASKMESH_SECRET_KEYS"):
            production.check_secure()


class TestReferences:
    def test_literal_names(self) -> None:
        found = referenced_secrets(
            ["Bearer {{ secrets.TOKEN }}", "{{ secrets['OTHER_1'] }}", "plain", "{{ params.x }}"]
        )
        assert found == {"TOKEN", "OTHER_1"}

    @pytest.mark.parametrize(
        "template",
        [
            "{{ secrets[params.which] }}",
            "{{ secrets }}",
            "{% set s = secrets %}{{ s.A }}",
            "{{ secrets | list }}",
            "{{ secrets['not a name'] }}",
            "{% for k in secrets %}{{ k }}{% endfor %}",
        ],
    )
    def test_anything_else_is_refused(self, template: str) -> None:
        with pytest.raises(InvalidSecretReference):
            referenced_secrets([template])

    def test_create_job_names_the_field(self) -> None:
        spec = job_pb2.Executor(shell=job_pb2.ShellExecutor(argv=["curl", "-H", "{{ secrets[params.k] }}"]))
        with pytest.raises(InvalidArgument) as refused:
            executor(spec)
        assert refused.value.field == "job.executor.shell.argv[2]"


class TestMask:
    mask = SecretMask(["hunter2-secret", "line-one-part\nline-two-part"])

    def test_values_and_their_common_forms(self) -> None:
        assert self.mask.text("pw=hunter2-secret!") == f"pw={MASK}!"
        assert self.mask.text(json.dumps({"k": 'a"b' + "hunter2-secret"})).count(MASK) == 1
        assert self.mask.text("line-two-part") == MASK  # one line of a multi-line value

    def test_an_excerpt_cut_inside_a_value(self) -> None:
        assert self.mask.text("ter2-secret and more") == f"{MASK} and more"
        assert self.mask.text("output ends with hunter2-se") == f"output ends with {MASK}"

    def test_every_string_of_an_outcome(self) -> None:
        output = struct_pb2.Value()
        output.struct_value.update({"token": "hunter2-secret", "list": ["x hunter2-secret"]})
        outcome = pb.Outcome(
            result=run_pb2.RunResult(http=run_pb2.HttpResult(body_excerpt="echo hunter2-secret")),
            error=run_pb2.RunError(message="failed with hunter2-secret"),
        )
        mask_message(outcome, self.mask)
        mask_message(output, self.mask)
        assert "hunter2" not in str(outcome) + str(output)
        assert outcome.error.message == f"failed with {MASK}"

    def test_no_secrets_no_change(self) -> None:
        assert not SecretMask([])
        assert SecretMask([]).text("anything") == "anything"


class FakeStore:
    def __init__(self, secrets: dict[str, SealedSecret]) -> None:
        self.secrets = secrets
        self.queries: list[list[str]] = []

    async def sealed(self, names: Sequence[str]) -> list[SealedSecret]:
        self.queries.append(list(names))
        return [self.secrets[n] for n in names if n in self.secrets]


def http_job(header: str) -> str:
    return json.dumps({"http": {"url": "https://api.example.com", "headers": {"Authorization": header}}})


class TestResolver:
    box = SecretBox.from_setting(NEW)

    def store(self) -> FakeStore:
        return FakeStore(
            {
                "TOKEN": SealedSecret("TOKEN", self.box.seal("TOKEN", "t0ken-value")),
                "LOST_KEY": SealedSecret("LOST_KEY", SecretBox.from_setting(OLD).seal("LOST_KEY", "gone")),
            }
        )

    async def test_each_claim_gets_what_it_references_in_one_query(self) -> None:
        store = self.store()
        resolver = SecretResolver(store, self.box)
        values = await resolver.resolve([http_job("{{ secrets.TOKEN }}"), None, json.dumps({"noop": {}})])
        assert values == [{"TOKEN": "t0ken-value"}, {}, {}]
        assert store.queries == [["TOKEN"]]

    async def test_no_query_when_nothing_references_a_secret(self) -> None:
        store = self.store()
        assert await SecretResolver(store, self.box).resolve([json.dumps({"noop": {}}), None]) == [{}, {}]
        assert store.queries == []

    async def test_missing_and_unopenable_secrets_are_left_out(self) -> None:
        resolver = SecretResolver(self.store(), self.box)
        values = await resolver.resolve(
            [http_job("{{ secrets.MISSING }} {{ secrets.LOST_KEY }} {{ secrets.TOKEN }}")]
        )
        assert values == [{"TOKEN": "t0ken-value"}]

    async def test_secrets_off(self) -> None:
        assert await SecretResolver(self.store(), None).resolve([http_job("{{ secrets.TOKEN }}")]) == [{}]


class TestPolicy:
    def test_names_and_values(self) -> None:
        assert policy.secret_name("STRIPE_KEY") == "STRIPE_KEY"
        for bad in ("", "1ABC", "has-dash", "x" * 129):
            with pytest.raises(InvalidArgument, match="name"):
                policy.secret_name(bad)
        with pytest.raises(InvalidArgument, match="at least 4"):
            policy.secret_value("abc")
        with pytest.raises(InvalidArgument, match="at most"):
            policy.secret_value("x" * (policy.MAX_VALUE_BYTES + 1))


async def test_a_python_task_gets_the_secrets_its_job_declares() -> None:
    box = SecretBox.from_setting(NEW)
    store = FakeStore({"TOKEN": SealedSecret("TOKEN", box.seal("TOKEN", "t0ken-value"))})
    executor = json.dumps({"python": {"task": "reports.build", "secrets": ["TOKEN", "bad name"]}})
    assert await SecretResolver(store, box).resolve([executor]) == [{"TOKEN": "t0ken-value"}]
    assert store.queries == [["TOKEN"]]
