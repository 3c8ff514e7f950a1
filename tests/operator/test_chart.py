"""The Helm chart (charts/karl) with a real `helm` v4 (tests/operator/helm_kit.py): `helm lint --strict`;
`helm template` with default and other values, every object validated offline against the Kubernetes
JSON schemas of the oldest and newest versions the chart supports (kubernetes-validate, strict) and the
example KarlCluster against its CRD; its CRD is crds/karlcluster.yaml; `helm install` into the real API
server of the test suite creates the chart's objects, and the operator the chart describes — its
command, its environment, its ServiceAccount's token — reconciles a KarlCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm_kit import helm_binary
from karl_cluster_kit import CRD_FILE, ROOT, cluster, create, load_crd
from kubernetes import client

from karl_operator.cluster_spec import checked_spec

CHART = ROOT / "charts" / "karl"
SUPPORTED = ("1.30.0", "1.37.0")  # Chart.yaml's kubeVersion floor, and the test control plane's release
OTHER_VALUES = [
    "--set",
    "exampleCluster.enabled=true",
    "--set",
    "operator.watchNamespaces={fleet-a,fleet-b}",
    "--set",
    "image.tag=1.2.3",
    "--set",
    "serviceAccount.name=karl-ops",
    "--set",
    "operator.nodeSelector.role=infra",
]


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None) -> str:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/karl-helm-cache",
        "HELM_CONFIG_HOME": "/tmp/karl-helm-config",
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def rendered(helm: Path, *values: str) -> list[dict[str, Any]]:
    text = run_helm(
        helm, "template", "rel", str(CHART), "--namespace", "karl-system", "--include-crds", *values
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_the_charts_crds_are_the_crds() -> None:
    ours = sorted(path.name for path in CRD_FILE.parent.glob("*.yaml"))
    assert ours == ["karlcluster.yaml", "kopf-peering.yaml"]
    assert sorted(path.name for path in (CHART / "crds").iterdir()) == ours
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (CRD_FILE.parent / name).read_bytes(), (
            f"charts/karl/crds/{name} is generated: cp crds/*.yaml charts/karl/crds/"
        )


def test_helm_lint_strict(helm: Path) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    run_helm(helm, "lint", "--strict", str(CHART), *OTHER_VALUES)


@pytest.mark.parametrize("values", [[], OTHER_VALUES], ids=["defaults", "other-values"])
@pytest.mark.parametrize("version", SUPPORTED)
def test_every_rendered_object_is_valid_for_the_supported_kubernetes_versions(
    helm: Path, values: list[str], version: str
) -> None:
    documents = rendered(helm, *values)
    kinds = sorted(f"{d['kind']}" for d in documents)
    expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        *["CustomResourceDefinition"] * 3,
        "Deployment",
        "ServiceAccount",
    ]
    # the example; where the replicas meet and their rights there: cluster-wide, or in each watched namespace
    watched = ["KopfPeering", "Role", "RoleBinding"] * 2
    expected += ["KarlCluster", *watched] if values else ["ClusterKopfPeering"]
    assert kinds == sorted(expected)
    for document in documents:
        if document["kind"] == "KarlCluster":
            _, problems = checked_spec(load_crd(), document["spec"])
            assert not problems, problems
            continue
        if document["apiVersion"] == "kopf.dev/v1":  # (its CRD's schema: any status, no spec)
            assert set(document) == {"apiVersion", "kind", "metadata"}
            assert document["metadata"]["name"] == "rel-karl-operator"
            continue
        kubernetes_validate.validate(document, version, strict=True)


def test_other_values_reach_the_operator(helm: Path) -> None:
    [deployment] = [d for d in rendered(helm, *OTHER_VALUES) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/karl-voip/karl:1.2.3"
    assert container["command"] == [
        "karl-operator",
        "run",
        "--peering",
        "rel-karl-operator",
        "--namespace",
        "fleet-a",
        "--namespace",
        "fleet-b",
    ]
    assert pod["serviceAccountName"] == "karl-ops" and pod["nodeSelector"] == {"role": "infra"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_an_operator_of_some_namespaces_reads_secrets_only_there(helm: Path) -> None:
    def secret_rights(rules: list[dict[str, Any]]) -> list[str]:
        return [verb for rule in rules if "secrets" in rule["resources"] for verb in rule["verbs"]]

    everywhere = rendered(helm)
    [cluster_role] = [d for d in everywhere if d["kind"] == "ClusterRole"]
    assert secret_rights(cluster_role["rules"]) == ["get", "create"]
    some = rendered(helm, *OTHER_VALUES)
    [cluster_role] = [d for d in some if d["kind"] == "ClusterRole"]
    assert secret_rights(cluster_role["rules"]) == []
    roles = {d["metadata"]["namespace"]: d for d in some if d["kind"] == "Role"}
    assert sorted(roles) == ["fleet-a", "fleet-b"]
    assert all(secret_rights(role["rules"]) == ["get", "create"] for role in roles.values())
    bindings = [d for d in some if d["kind"] == "RoleBinding"]
    assert {b["subjects"][0]["name"] for b in bindings} == {"karl-ops"}
    assert {b["subjects"][0]["namespace"] for b in bindings} == {"karl-system"}


def test_values_outside_the_schema_are_refused(helm: Path) -> None:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/karl-helm-cache",
        "HELM_CONFIG_HOME": "/tmp/karl-helm-config",
    }
    done = subprocess.run(
        [str(helm), "template", "rel", str(CHART), "--set", "operator.logLevel=chatty"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0 and "logLevel" in done.stderr, done.stderr


@pytest.mark.parametrize("scope", ["namespace", "cluster"])
def test_helm_install_and_the_operator_it_describes_reconciles_a_karlcluster(
    helm: Path, kube: Any, kube_env: Any, karl_crd: Any, kube_namespace: str, tmp_path: Path, scope: str
) -> None:
    """`scope`: the operator watches the release's namespace (its rights there in a Role, its replicas
    meeting in a KopfPeering), or every namespace (all in the ClusterRole, a ClusterKopfPeering)."""
    import karl_kube_env

    release = f"r{kube_namespace[2:]}"
    watched = ["--set", f"operator.watchNamespaces={{{kube_namespace}}}"] if scope == "namespace" else []
    run_helm(
        helm,
        "install",
        release,
        str(CHART),
        "--namespace",
        kube_namespace,
        *watched,
        kubeconfig=kube_env.kubeconfig,
    )
    try:
        apps, rbac = client.AppsV1Api(kube), client.RbacAuthorizationV1Api(kube)
        deployment = apps.read_namespaced_deployment(f"{release}-karl-operator", kube_namespace)
        assert rbac.read_cluster_role(f"{release}-karl-operator").rules
        [container] = deployment.spec.template.spec.containers
        account = deployment.spec.template.spec.service_account_name
        # the operator as the chart describes it: its command and environment, its ServiceAccount
        token = kube_env.service_account_token(kube_namespace, account)
        kubeconfig = tmp_path / "chart-operator.kubeconfig"
        karl_kube_env.write_kubeconfig(kubeconfig, kube_env.server, kube_env.ca_file, token, account)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        for variable in container.env:
            field = variable.value_from.field_ref.field_path if variable.value_from else None
            env[variable.name] = kube_namespace if field == "metadata.namespace" else variable.value
        assert container.command[0] == "karl-operator"
        log_path = tmp_path / "chart-operator.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "karl_operator", *container.command[1:]],
                env=env,
                stdout=log,
                stderr=log,
            )
        try:
            create(client.CustomObjectsApi(kube), kube_namespace, cluster("charted", {}))
            deadline = time.monotonic() + 60
            while True:
                found = apps.list_namespaced_stateful_set(kube_namespace).items
                charted = client.CustomObjectsApi(kube).get_namespaced_custom_object(
                    "karl.io", "v1alpha1", kube_namespace, "karlclusters", "charted"
                )
                # its children, and its status: the operator works (its peering readable, its loop on)
                if [s.metadata.name for s in found] == ["charted-media"] and charted.get("status"):
                    break
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.25)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    finally:
        run_helm(helm, "uninstall", release, "--namespace", kube_namespace, kubeconfig=kube_env.kubeconfig)
    gone = [r.metadata.name for r in client.RbacAuthorizationV1Api(kube).list_cluster_role().items]
    assert f"{release}-karl-operator" not in gone
