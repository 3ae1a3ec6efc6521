"""The README quickstart's Python task, run as written (bash, curl, python3) against a mesh whose
worker loads the example registry, as `make up`'s workers do."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx

from taskmesh.launcher import Mesh
from tests.pools.conftest import workers_connected
from tests.support import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippets() -> tuple[str, str]:
    """The quickstart's login lines and its Python task block."""
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quickstart, re.S)
    login = "\n".join(line for line in blocks[0].splitlines() if "TOKEN=" in line or "accessToken" in line)
    python = next(block for block in blocks if "examples.greet" in block)
    return login, python


def test_the_quickstart_runs_a_python_task_and_shows_its_output(
    mesh: Mesh, gateway: str, api: httpx.Client
) -> None:
    assert shutil.which("curl"), "the README quickstart uses curl: install it (apt-get install curl)"
    mesh.start_worker()  # the launcher's default registry: taskmesh.examples.tasks
    wait_for(lambda: workers_connected(api, 1), timeout=30, interval=0.1, message="the worker to connect")
    login, python = _snippets()
    script = (login + "\n" + python).replace("http://127.0.0.1:8080", gateway)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output, *log = done.stdout.strip().splitlines()
    assert json.loads(output) == {"greeting": "hello, Ada!", "count": 2}  # as the README shows
    assert log == ["hello, Ada!", "hello, Ada!", "INFO taskmesh.examples.tasks: greeted Ada on attempt 1"]
