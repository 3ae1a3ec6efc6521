"""Running the real `taskmesh` console script as a subprocess, and reading what it printed."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import wait_for


def executable() -> str:
    beside_python = Path(sys.executable).parent / "taskmesh"
    found = str(beside_python) if beside_python.exists() else shutil.which("taskmesh")
    assert found, "the taskmesh console script is not installed (pip install -e .)"
    return found


def cli_env(gateway: str, config: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKMESH_")}
    return {**base, "TASKMESH_SERVER": gateway, "TASKMESH_CONFIG": str(config)}


class Taskmesh:
    """`taskmesh ARGS...` with a given environment: run to completion, or in the background."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.command = executable()

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.command, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def background(self, *args: str) -> Background:
        return Background([self.command, *args], self.env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


def fields(text: str) -> dict[str, str]:
    """The "key: value" lines of a table-mode `get`."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ": " in line)
    return {key.strip(): value.strip() for key, value in pairs}


class Background:
    """A command running in the background (e.g. `runs watch`), its output read as it comes."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._closed = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self) -> bool:
        """Take what was printed so far; False once stdout is closed."""
        while not self._closed:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self._closed = True
            else:
                self.lines.append(line)
        return False

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first printed line that satisfies `predicate` (waiting for it)."""

        def found() -> str | None:
            open_ = self._drain()
            match = next((line for line in self.lines if predicate(line)), None)
            assert match is not None or open_, f"exited without such a line: {self.lines}"
            return match

        return wait_for(found, timeout=timeout, interval=0.05, message="a line from taskmesh")

    def finish(self, timeout: float = 60.0) -> tuple[int, list[str], str]:
        """Exit code, every stdout line and stderr, once the command has ended by itself."""
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        wait_for(lambda: not self._drain(), timeout=10, message="the end of the output")
        return code, self.lines, stderr
