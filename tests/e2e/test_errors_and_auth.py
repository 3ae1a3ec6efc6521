"""Bad requests get clear HTTP errors through the gateway, never a 5xx."""

import uuid

import httpx
import pytest

from tests.e2e.helpers import create_job, unique


def test_no_token_is_401(gateway: str) -> None:
    response = httpx.get(f"{gateway}/api/jobs")
    assert response.status_code == 401
    assert response.json()["code"] == 16
    assert "authorization" in response.json()["message"]


def test_garbage_token_is_401(gateway: str) -> None:
    response = httpx.get(f"{gateway}/api/jobs", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401


def test_wrong_password_is_401(gateway: str) -> None:
    response = httpx.post(f"{gateway}/api/auth/login", json={"username": "admin", "password": "nope"})
    assert response.status_code == 401
    assert response.json()["message"] == "wrong username or password"


def _login(gateway: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{gateway}/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


def test_viewer_reads_but_gets_403_creating_a_job(gateway: str, api: httpx.Client) -> None:
    name = unique("viewer")
    created = api.post("/api/users", json={"username": name, "password": "viewer-pass-1", "role": "VIEWER"})
    assert created.status_code == 200, created.text
    assert created.json()["role"] == "VIEWER"
    viewer = _login(gateway, name, "viewer-pass-1")
    assert httpx.get(f"{gateway}/api/jobs", headers=viewer).status_code == 200
    response = httpx.post(
        f"{gateway}/api/jobs", headers=viewer, json={"name": unique("x"), "executor": {"noop": {}}}
    )
    assert response.status_code == 403
    assert "VIEWER" in response.json()["message"]
    assert httpx.get(f"{gateway}/api/users", headers=viewer).status_code == 403


def test_operator_creates_but_cannot_manage_users(gateway: str, api: httpx.Client) -> None:
    name = unique("op")
    assert (
        api.post(
            "/api/users", json={"username": name, "password": "operator-pass", "role": "OPERATOR"}
        ).status_code
        == 200
    )
    operator = _login(gateway, name, "operator-pass")
    response = httpx.post(
        f"{gateway}/api/jobs", headers=operator, json={"name": unique("op-job"), "executor": {"noop": {}}}
    )
    assert response.status_code == 200
    assert httpx.get(f"{gateway}/api/users", headers=operator).status_code == 403
    assert api.delete(f"/api/users/{name}").status_code == 200
    assert (
        httpx.post(f"{gateway}/api/auth/login", json={"username": name, "password": "operator-pass"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"executor": {"noop": {}}}, "job.name"),
        ({"name": "bad name!", "executor": {"noop": {}}}, "job.name"),
        ({"name": "no-executor"}, "job.executor"),
        ({"name": "neg-sleep", "executor": {"sleep": {"seconds": -1}}}, "job.executor.sleep.seconds"),
        ({"name": "bad-url", "executor": {"http": {"url": "not a url"}}}, "job.executor.http.url"),
        ({"name": "no-argv", "executor": {"shell": {}}}, "job.executor.shell.argv"),
    ],
)
def test_invalid_job_is_400_naming_the_field(api: httpx.Client, body: dict, field: str) -> None:
    response = api.post("/api/jobs", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}:")


def test_wrongly_typed_json_is_400(api: httpx.Client) -> None:
    response = api.post("/api/jobs", json={"name": "typed", "executor": {"sleep": {"seconds": "soon"}}})
    assert response.status_code == 400


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_duplicate_name_is_409(api: httpx.Client) -> None:
    job = create_job(api, "dup", {"noop": {}})
    response = api.post("/api/jobs", json={"name": job["name"], "executor": {"noop": {}}})
    assert response.status_code == 409
    assert job["name"] in response.json()["message"]


def test_unknown_job_is_404(api: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    for response in (
        api.get(f"/api/jobs/{missing}"),
        api.post(f"/api/jobs/{missing}/trigger"),
        api.get(f"/api/jobs/{missing}/status"),
        api.get(f"/api/jobs/{missing}/runs"),
        api.get(f"/api/runs/{missing}"),
        api.delete(f"/api/jobs/{missing}"),
    ):
        assert response.status_code == 404, (response.request.url, response.text)
        assert missing in response.json()["message"]


def test_malformed_id_is_400(api: httpx.Client) -> None:
    response = api.get("/api/jobs/not-a-uuid")
    assert response.status_code == 400
    assert response.json()["message"].startswith("id:")


def test_unknown_route_and_query_parameter_are_rejected(api: httpx.Client) -> None:
    assert api.get("/api/nothing-here").status_code == 404
    assert api.put("/api/jobs").status_code == 404
    assert api.get("/api/jobs", params={"colour": "blue"}).status_code == 400


def test_bad_filter_and_page_size_are_400(api: httpx.Client) -> None:
    response = api.get("/api/jobs", params={"filter": "owner=me"})
    assert response.status_code == 400 and response.json()["message"].startswith("filter:")
    response = api.get("/api/jobs", params={"pageSize": 5000})
    assert response.status_code == 400 and response.json()["message"].startswith("page_size:")
