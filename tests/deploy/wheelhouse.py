"""A wheelhouse for the image builds of tests/deploy/test_compose_stack.py, served as a package index.

Every build of deploy/Dockerfile installs the same ~50 wheels (the project's dependencies, the
code generation tools, setuptools for `pip install .`). Downloaded by each build from the public
index they cost minutes per builder on a cold machine; here they are fetched once by the host's
pip (its own cache and configuration) into `cache_dir()/wheelhouse-<key>`, keyed by the
requirements, and served on the loopback as a PEP 503 simple index, which the builds (on the
host network) use through the Dockerfile's PIP_INDEX_URL build argument.

The index is served on the same port run after run (PORT, unless it is taken): the build
argument is part of every builder's cache key, so a port that changed would rebuild every layer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PORTS = range(20000, 30000)  # below Linux's ephemeral range, where free_port() picks
PORT = 24508  # the first tried; the next ones if it is taken (the builds' layer caches then miss)
ATTEMPTS = 20


def requirements() -> list[str]:
    """What the Dockerfile's pip installs can ask for: the project's dependencies and build
    requirements, the code generation tools the Dockerfile pins, and `wheel` (older setuptools
    asks for it to build a wheel)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pinned = re.findall(r'"([A-Za-z0-9_.-]+[<>=!~][^"]*)"', DOCKERFILE.read_text())
    return sorted({*project["project"]["dependencies"], *project["build-system"]["requires"], *pinned, "wheel"})


# pip evaluates environment markers (python_full_version < "3.11.3", ...) for the interpreter it
# runs on; the host's pass runs it as if it were the image's Python, whose version it is given.
PIP_AS_VERSION = (
    "import platform, sys; version = sys.argv.pop(1); "
    "platform.python_version = lambda: version; "
    "platform.python_version_tuple = lambda: tuple(version.split('.')); "
    "from pip._internal.cli.main import main; sys.exit(main())"
)


def wheelhouse(cache: Path, python_version: str) -> Path | None:
    """The host's pass: wheels for `requirements()` as the host's pip resolves them for the image's
    Python (`python_version`) with its own cache and configuration (fast), in `<house>/files`;
    None, with the reason logged, when it cannot get a wheel for each (the builds then use the
    public index as a user's would). `complete_command` must run next, in the image, before the
    house is served."""
    wanted = requirements()
    key = hashlib.sha256("\n".join([python_version, *wanted]).encode()).hexdigest()[:16]
    house = cache / f"wheelhouse-{key}"
    if (house / "files").is_dir():
        return house
    for stale in cache.glob("wheelhouse-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        files = Path(work) / "files"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                PIP_AS_VERSION,
                python_version,
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--dest",
                str(files),
                *wanted,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            print(f"[deploy-test] no wheelhouse (pip download failed):\n{result.stderr[-2000:]}", file=sys.stderr)
            return None
        (Path(work) / "requirements.txt").write_text("\n".join(wanted) + "\n")
        # The versions the host chose: the pass in the image keeps to them, so that it only adds
        # what the image's interpreter needs besides (markers such as python_full_version).
        pins = sorted({f"{_project(w.name)}=={w.name.split('-')[1]}" for w in files.glob("*.whl")})
        (Path(work) / "constraints.txt").write_text("\n".join(pins) + "\n")
        Path(work).rename(house)
    return house


def complete_command() -> list[str]:
    """The image's pass, run in the Python stand-in with the house mounted at /house: the same
    requirements resolved by the image's own interpreter from the house alone (seconds); only if
    something is missing, again with the public index, fetching just that (a minute or more:
    the index pages of the larger projects are big)."""
    pip = "/tmp/venv/bin/pip download --quiet --only-binary=:all: --find-links /house/files --dest /house/files"
    script = (
        f"python -m venv /tmp/venv && ( {pip} --no-index -r /house/requirements.txt "
        f"|| {pip} --constraint /house/constraints.txt -r /house/requirements.txt )"
    )
    return ["sh", "-c", script]


def is_complete(house: Path) -> bool:
    return (house / "simple" / "index.html").exists()


def finish(house: Path) -> None:
    """After the image's pass: the simple index over every wheel, which marks the house complete."""
    _write_simple_index(house)


def _project(wheel: str) -> str:
    """PEP 503 normalised project name of a wheel file name."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


def _write_simple_index(root: Path) -> None:
    projects: dict[str, list[Path]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        projects.setdefault(_project(wheel.name), []).append(wheel)
    simple = root / "simple"
    shutil.rmtree(simple, ignore_errors=True)
    for name, wheels in projects.items():
        (simple / name).mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a><br>\n'
            for w in wheels
        )
        (simple / name / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    listing = "".join(f'<a href="{name}/">{name}</a><br>\n' for name in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{listing}</body></html>\n")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def served(house: Path) -> Iterator[str]:
    """The wheelhouse's index URL on 127.0.0.1, served in a thread while the context lasts."""
    handler = functools.partial(_QuietHandler, directory=str(house))
    start = PORTS.index(PORT)
    server: http.server.ThreadingHTTPServer | None = None
    for attempt in range(ATTEMPTS):
        port = PORTS[(start + attempt) % len(PORTS)]
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
            break
        except OSError:
            continue
    if server is None:
        raise RuntimeError(f"no free port for the wheelhouse among {ATTEMPTS} tried")
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
