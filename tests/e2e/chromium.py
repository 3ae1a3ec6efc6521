"""Headless Chromium (Debian's `chromium` package) for looking at pages the gateway serves."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Virtual time stands still while the page loads its scripts and fetches the document, so this
# budget is for rendering after that, not a wall-clock wait.
VIRTUAL_TIME_BUDGET_MS = 10_000


# For Playwright, which drives this same Chromium (it never downloads a browser of its own here).
LAUNCH_ARGS = [flag for flag in FLAGS if flag != "--headless"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError("chromium is not installed: apt-get install -y chromium (.ci/run does it)")
    return found


def _run(url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="taskmesh-chromium-") as profile:
        return subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def dump_dom(url: str) -> str:
    """The page's DOM after its scripts ran, serialised as HTML."""
    result = _run(url, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(url: str, path: Path, width: int = 1280, height: int = 2200) -> Path:
    result = _run(url, f"--screenshot={path}", f"--window-size={width},{height}")
    assert result.returncode == 0 and path.is_file(), result.stderr[-2000:]
    return path
