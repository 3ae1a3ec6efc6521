"""Rendered deployment files for tests/deploy (no services needed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from taskmesh.settings import Settings
from tests.deploy.deployfiles import K8S, Resource, rendered

SettingsFrom = Callable[[Mapping[str, str]], Settings]


@pytest.fixture(scope="session")
def base() -> tuple[Resource, ...]:
    return rendered(K8S / "base")


@pytest.fixture(scope="session")
def dev() -> tuple[Resource, ...]:
    return rendered(K8S / "overlays" / "dev")


@pytest.fixture(scope="session")
def keda(tmp_path_factory: pytest.TempPathFactory) -> tuple[Resource, ...]:
    """The base with the KEDA component, as a user's overlay would add it."""
    overlay = tmp_path_factory.mktemp("keda-overlay")
    # kustomize refuses absolute paths to bases and components.
    k8s = Path(os.path.relpath(K8S, overlay))
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {k8s / 'base'}\n"
        f"components:\n  - {k8s / 'components' / 'keda'}\n"
    )
    return rendered(overlay)


@pytest.fixture(scope="session", params=["base", "dev", "keda"])
def rendering(request: pytest.FixtureRequest) -> tuple[Resource, ...]:
    """Each way the manifests are used: the base, the dev overlay, the base with KEDA."""
    resources: tuple[Resource, ...] = request.getfixturevalue(request.param)
    return resources


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> SettingsFrom:
    """Settings as a process sees them with exactly this environment (nothing from the caller's)."""

    def load(env: Mapping[str, str]) -> Settings:
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("TASKMESH_")]:
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            return Settings()

    return load
