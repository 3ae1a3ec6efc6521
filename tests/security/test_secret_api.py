"""SecretService through the gateway: values go in and never come back out, to any role; viewers
list names only; the database holds no plaintext."""

from __future__ import annotations

import httpx
import psycopg

from taskmesh.launcher import Mesh
from tests.security.conftest import login

VALUE = "sk_live_do-not-leak-0123456789"


def _viewer(gateway: str, api: httpx.Client) -> httpx.Client:
    created = api.post(
        "/api/users", json={"username": "secret-viewer", "password": "viewer-pass-1", "role": "VIEWER"}
    )
    assert created.status_code == 200, created.text
    token = login(gateway, "secret-viewer", "viewer-pass-1")
    return httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_values_are_write_only(gateway: str, api: httpx.Client, mesh: Mesh) -> None:
    created = api.post("/api/secrets", json={"name": "STRIPE_KEY", "value": VALUE, "description": "payments"})
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "STRIPE_KEY" and created.json()["keyId"] == "dev"
    updated = api.patch("/api/secrets/STRIPE_KEY", json={"value": VALUE + "-2"})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    listed = api.get("/api/secrets")
    assert [s["name"] for s in listed.json()["secrets"]] == ["STRIPE_KEY"]
    with _viewer(gateway, api) as viewer:
        assert viewer.get("/api/secrets").json() == listed.json()
        assert viewer.post("/api/secrets", json={"name": "X_KEY", "value": "something"}).status_code == 403
        assert viewer.delete("/api/secrets/STRIPE_KEY").status_code == 403
    for answer in (created, updated, listed):
        assert "do-not-leak" not in answer.text
    with psycopg.connect(mesh.settings.database_url.replace("+psycopg", "")) as conn:
        dump = " ".join(str(row) for row in conn.execute("SELECT * FROM secrets"))
    assert "do-not-leak" not in dump and "STRIPE_KEY" in dump


def test_bad_input_names_the_field(api: httpx.Client) -> None:
    cases = [
        ({"name": "has-dash", "value": "long-enough"}, "name"),
        ({"name": "OK_NAME", "value": "abc"}, "value"),
        ({"name": "", "value": "long-enough"}, "name"),
    ]
    for body, field in cases:
        answer = api.post("/api/secrets", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["message"].startswith(f"{field}:"), answer.text
    assert api.post("/api/secrets", json={"name": "DUP_KEY", "value": "long-enough"}).status_code == 200
    assert api.post("/api/secrets", json={"name": "DUP_KEY", "value": "long-enough"}).status_code == 409
    assert api.patch("/api/secrets/NOT_THERE", json={"value": "long-enough"}).status_code == 404
    assert api.delete("/api/secrets/DUP_KEY").status_code == 200
    assert api.delete("/api/secrets/DUP_KEY").status_code == 404


def test_create_job_refuses_a_secret_chosen_by_a_parameter(api: httpx.Client) -> None:
    job = {
        "name": "picks-a-secret",
        "executor": {
            "http": {"url": "https://api.example.com/", "headers": {"Authorization": "{{ secrets[params.k] }}"}}
        },
    }
    answer = api.post("/api/jobs", json=job)
    assert answer.status_code == 400, answer.text
    assert "job.executor.http.headers.Authorization" in answer.json()["message"]
