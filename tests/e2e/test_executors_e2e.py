"""http and shell jobs on real workers: success, failure with its error, results kept."""

import httpx

from tests.e2e.helpers import create_job, trigger, wait_run_terminal


def test_http_job_succeeds_and_keeps_status_and_body(api: httpx.Client, target_server: tuple[str, dict]) -> None:
    base, hits = target_server
    job = create_job(api, "http-ok", {"http": {"url": f"{base}/ok-e2e", "timeout": "5s"}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED"
    assert run["result"]["http"] == {"statusCode": 200, "bodyExcerpt": "hello from /ok-e2e"}
    assert hits["/ok-e2e"] == 1


def test_failing_http_job_ends_failed_with_its_error(api: httpx.Client, target_server: tuple[str, dict]) -> None:
    base, _ = target_server
    job = create_job(api, "http-fail", {"http": {"url": f"{base}/fail-e2e"}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED"
    assert run["error"]["message"] == "HTTP 500"
    assert run["error"]["kind"] == "EXECUTOR_FAILED"
    assert run["result"]["http"]["statusCode"] == 500


def test_shell_job_succeeds_with_exit_code_and_output(api: httpx.Client) -> None:
    job = create_job(
        api, "shell-ok", {"shell": {"argv": ["sh", "-c", "echo out-$GREETING"], "env": {"GREETING": "hi"}}}
    )
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "SUCCEEDED"
    assert run["result"]["shell"] == {"exitCode": 0, "outputExcerpt": "out-hi\n"}


def test_failing_shell_job_ends_failed_with_its_error(api: httpx.Client) -> None:
    job = create_job(api, "shell-fail", {"shell": {"argv": ["sh", "-c", "echo broken >&2; exit 7"]}})
    run = wait_run_terminal(api, trigger(api, job["id"])["id"])
    assert run["state"] == "FAILED"
    assert run["error"]["message"] == "exited with code 7"
    assert run["result"]["shell"] == {"exitCode": 7, "outputExcerpt": "broken\n"}
