"""The environment a shell job's process starts with: a few variables programs expect, the
run's identity and the job's own env. Never the worker's: its settings (broker URL, worker
password, and whatever else the deployment gives it) stay out of the jobs it runs."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Taken from the worker's own environment when set there.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def process_environment(
    identity: Mapping[str, str], job_env: Mapping[str, str], worker_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """PATH, HOME, LANG and TZ as the worker has them, then the run's identity, then the job's env."""
    base = {name: worker_env[name] for name in PASSED_THROUGH if name in worker_env}
    base.setdefault("PATH", DEFAULT_PATH)
    return {**base, **identity, **job_env}
