"""Fixtures of the operator tests: a real Kubernetes control plane (etcd + kube-apiserver +
kube-controller-manager on loopback, tests/operator/kube_env.py), started once per test session.

- `kube_env`: the running `ControlPlane` (server URL, CA file, admin kubeconfig, logs);
- `kube`: an admin `kubernetes.client.ApiClient` (system:masters);
- `service_account_client(namespace, name)`: an ApiClient authenticated as that ServiceAccount through a
  TokenRequest token (the ServiceAccount is created when missing; it has no rights until a test binds a
  Role to it);
- `kube_namespace`: a fresh namespace for one test, deleted afterwards;
- `kube_versions`: the pinned versions;
- `make_control_plane`: start another, private control plane (stopped at the end of the test).

The binaries are built by deploy/k8s-test-env/build.sh (`make k8s-test-env`). When they are missing and a
selected test needs them, the run builds them before the first test (a cold build takes about 7 minutes
on 2 cores); the tests skip only when they cannot be built here (no Go toolchain, or
KARL_K8S_TEST_ENV_BUILD=0). A build that fails is an error, not a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# the fleet's fixtures (real Redis, media nodes in network namespaces, routers) for the operator's failover
from fleet.conftest import (  # noqa: F401
    fleet,
    fleet_nodes,
    fleet_router,
    netns_lab,
    redis_server,
    webhook_receiver,
)


def _load_kube_env() -> ModuleType:
    # tests/operator cannot be imported as a package: `operator` is the standard library's. Load the
    # sibling module by path, under a name of its own.
    name = "karl_kube_env"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("kube_env.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


kube_env_module = _load_kube_env()


def _load_sibling(name: str, file: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


karl_cluster_kit = _load_sibling("karl_cluster_kit", "karl_cluster_kit.py")
helm_kit = _load_sibling("helm_kit", "helm_kit.py")
_build_outcome: dict[str, Any] = {}


def _auto_build_allowed() -> bool:
    return os.environ.get(kube_env_module.AUTO_BUILD_ENV, "1") != "0" and not os.environ.get(
        kube_env_module.BINARIES_DIR_ENV
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Build missing binaries before the first test, outside any test's timeout, and only when a selected
    test needs the control plane."""
    if not any("kube_env" in getattr(item, "fixturenames", ()) for item in items):
        return
    if not kube_env_module.missing_binaries() or not _auto_build_allowed():
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(
            f"\nkube_env: building the Kubernetes test binaries into {kube_env_module.binaries_dir()} "
            "(deploy/k8s-test-env/build.sh; a cold build takes about 7 minutes on 2 cores) ...",
            file=sys.stderr,
            flush=True,
        )
        outcome = kube_env_module.build_binaries()
        _build_outcome["outcome"] = outcome
        print("\n".join(outcome.output.splitlines()[-4:]), file=sys.stderr, flush=True)


def _require_binaries() -> None:
    missing = kube_env_module.missing_binaries()
    if not missing:
        return
    directory = kube_env_module.binaries_dir()
    if os.environ.get(kube_env_module.BINARIES_DIR_ENV):
        pytest.fail(f"{kube_env_module.BINARIES_DIR_ENV}={directory} lacks {', '.join(missing)}")
    if not _auto_build_allowed():
        pytest.skip(
            f"the Kubernetes test binaries are not built ({directory} lacks {', '.join(missing)}) and "
            f"{kube_env_module.AUTO_BUILD_ENV}=0 forbids building them: run `make k8s-test-env`"
        )
    outcome = _build_outcome.get("outcome") or kube_env_module.build_binaries()
    _build_outcome["outcome"] = outcome
    tail = "\n".join(outcome.output.splitlines()[-25:])
    if outcome.cannot_build:
        pytest.skip(
            f"the Kubernetes test binaries are not built ({directory}) and cannot be built here: {tail}"
        )
    if not outcome.ok:
        pytest.fail(f"deploy/k8s-test-env/build.sh failed:\n{tail}")
    missing = kube_env_module.missing_binaries()
    if missing:
        pytest.fail(f"build.sh succeeded but {directory} lacks {', '.join(missing)}")


@pytest.fixture(scope="session")
def kube_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running control plane (a `kube_env.ControlPlane`), shared by the whole session."""
    _require_binaries()
    plane = kube_env_module.ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_versions() -> dict[str, str]:
    """The pinned versions (deploy/k8s-test-env/versions.env): K8S_VERSION, ETCD_VERSION."""
    versions: dict[str, str] = kube_env_module.pinned_versions()
    return versions


@pytest.fixture(scope="session")
def kube(kube_env: Any) -> Iterator[Any]:
    """An admin `kubernetes.client.ApiClient` (group system:masters)."""
    with kube_env.api_client() as client:
        yield client


@pytest.fixture(scope="session")
def service_account_client(kube_env: Any) -> Iterator[Callable[[str, str], Any]]:
    """`service_account_client(namespace, name)`: an ApiClient acting as that ServiceAccount."""
    made: list[Any] = []

    def make(namespace: str, name: str) -> Any:
        made.append(kube_env.service_account_client(namespace, name))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def kube_namespace(kube: Any) -> Iterator[str]:
    """A new namespace for one test; deleted (not awaited) afterwards."""
    from kubernetes import client

    name = f"t-{secrets.token_hex(4)}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def make_control_plane(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Make (not start) a private `ControlPlane` in this test's tmp dir; all are stopped afterwards."""
    _require_binaries()
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        made.append(kube_env_module.ControlPlane(tmp_path / f"plane{len(made)}", **kwargs))
        return made[-1]

    yield make
    for plane in made:
        plane.stop()


@pytest.fixture(scope="session")
def karl_crd(kube: Any) -> Iterator[Any]:
    """The KarlCluster CRD (crds/karlcluster.yaml) installed on the session's control plane, Established."""
    yield from karl_cluster_kit.installed_crd(kube)


@pytest.fixture(scope="session")
def kopf_peering_crds(kube: Any) -> list[Any]:
    """kopf's peering CRDs (crds/kopf-peering.yaml), for operators run with `--peering`."""
    return karl_cluster_kit.kopf_peering_crds(kube)
