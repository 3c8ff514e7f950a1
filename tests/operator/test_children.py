"""What a KarlCluster becomes (karl_operator.children), on the real control plane of the test suite: every
object is accepted by the API server as built, carries an owner reference to its KarlCluster and goes
with it (the garbage collector of the real kube-controller-manager), and the HPA the operator builds
makes the real controller-manager scale the KarlCluster through its `/scale`. No kubelet runs: pods
stay Pending, which is all these tests need. Offline: the ports each ordinal gets, and which objects
exist for which spec."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from karl_cluster_kit import GROUP, KIND, PLURAL, VERSION, cluster, create, load_crd
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from karl_operator.children import desired_objects, selector_string
from karl_operator.cluster_spec import checked_spec
from karl_testkit import wait_for

WAIT = 90.0  # seconds, for the controllers of kube-controller-manager


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """`karl_testkit.wait_for`, with what is waited for named (the controllers act asynchronously)."""
    return wait_for(check, timeout=timeout, interval=0.25)


def offline(spec: dict[str, Any], name: str = "x", namespace: str = "ns") -> dict[str, Any]:
    """A KarlCluster as the server would store it (defaults filled in), without a server."""
    filled, problems = checked_spec(load_crd(), spec)
    assert not problems, problems
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001"},
        "spec": filled,
    }


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


# ------------------------------------------------------------------------------------------- offline


def test_a_minimal_cluster_has_media_nodes_routers_redis_config_and_budgets_but_no_autoscaler() -> None:
    objects = by_kind(desired_objects(offline({})))
    assert sorted(objects) == [
        "ConfigMap/x-config",
        "Deployment/x-redis",
        "Deployment/x-router",
        "PodDisruptionBudget/x-media",
        "PodDisruptionBudget/x-router",
        "Service/x-media",
        "Service/x-redis",
        "Service/x-router",
        "StatefulSet/x-media",
    ]
    for manifest in objects.values():
        [owner] = manifest["metadata"]["ownerReferences"]
        assert owner["kind"] == KIND and owner["name"] == "x" and owner["controller"] is True
    data = objects["ConfigMap/x-config"]["data"]
    # the fleet's nodes join it (Redis on), by the trial Redis's name from any namespace (the operator's)
    assert data["KARL_REDIS_ENABLED"] == "true" and data["KARL_REDIS_PREFIX"] == "karl"
    assert data["KARL_REDIS_ADDR"] == "redis://x-redis.ns.svc:6379/0"
    # what a media node makes of that environment: a fleet member
    from karl_core.config import load_config

    env = {
        **data,
        "KARL_NODE_ID": "x-media-0",
        "KARL_MEDIA_IP": "127.0.0.1",
        "KARL_CONFIG_PATH": "/nonexistent",
    }
    assert load_config(environ=env).database.redis_enabled
    assert objects["Service/x-router"]["spec"]["ports"] == [
        {"name": "ng", "port": 22222, "targetPort": "ng", "protocol": "UDP"}
    ]


def test_an_external_redis_and_autoscaling_change_the_objects() -> None:
    spec = {
        "redis": {"url": "rediss://redis.example:6380/0", "passwordSecret": "karl-redis"},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "metric": "sessions"},
    }
    objects = by_kind(desired_objects(offline(spec)))
    assert "Deployment/x-redis" not in objects and "Service/x-redis" not in objects
    hpa = objects["HorizontalPodAutoscaler/x-media"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": "x"}
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "karl_sessions_active"
    env = objects["StatefulSet/x-media"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("imagePullSecrets" not in o["spec"]["template"]["spec"] for o in workloads(objects))
    assert {
        "name": "KARL_REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "karl-redis", "key": "password"}},
    } in env


def workloads(objects: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects.values() if o["kind"] in ("StatefulSet", "Deployment")]


def test_image_pull_secrets_reach_every_pod_the_karlcluster_runs() -> None:
    objects = by_kind(desired_objects(offline({"imagePullSecrets": [{"name": "registry"}]})))
    assert sorted(o["metadata"]["name"] for o in workloads(objects)) == ["x-media", "x-redis", "x-router"]
    for workload in workloads(objects):
        assert workload["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]


@pytest.mark.parametrize("ordinal", [0, 1, 7])
def test_each_ordinal_gets_its_own_ports_from_the_pod_name(ordinal: int) -> None:
    """The container's start script, run by a real shell with the pod name the downward API gives."""
    statefulset = by_kind(
        desired_objects(offline({"mediaNodes": {"ports": {"rtpStart": 20000, "rtpPerPod": 4000}}}))
    )
    container = statefulset["StatefulSet/x-media"]["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][2].replace("exec karl", "env")
    out = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"POD_NAME": f"x-media-{ordinal}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("KARL_"))
    control = 12000 + 4 * ordinal
    assert seen == {
        "KARL_NG_PORT": str(control),
        "KARL_API_PORT": str(control + 1),
        "KARL_HEALTH_PORT": str(control + 2),
        "KARL_METRICS_PORT": str(control + 3),
        "KARL_RTP_MIN_PORT": str(20000 + 4000 * ordinal),
        "KARL_RTP_MAX_PORT": str(20000 + 4000 * ordinal + 3999),
    }
    probe = container["readinessProbe"]["exec"]["command"]
    assert "http://127.0.0.1:$((12000 + 4 * n + 2))/ready" in probe[2]


def test_media_nodes_run_on_the_host_network_as_a_non_root_user_without_privileges() -> None:
    pod = by_kind(desired_objects(offline({})))["StatefulSet/x-media"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "privileged" not in yaml.safe_dump(pod)
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]


# --------------------------------------------------------------------------------- on the real server


def stored_cluster(objects: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return create(objects, namespace, cluster(name, spec))


@pytest.fixture
def objects(kube: Any) -> Any:
    return client.CustomObjectsApi(kube)


def test_every_child_is_accepted_by_the_server_and_goes_with_its_karlcluster(
    karl_crd: Any, kube: Any, objects: Any, kube_namespace: str
) -> None:
    full = {
        "mediaNodes": {
            "replicas": 3,
            "nodeSelector": {"karl.io/media": "true"},
            "tolerations": [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}],
            "antiAffinity": "Required",
            "advertisedAddress": {"source": "Static", "address": "198.51.100.7"},
        },
        "router": {"serviceType": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5},
        "failover": {"webhooks": ["https://sip.example/karl"]},
        "cdr": {"databaseSecret": "karl-cdr"},
        "imagePullSecrets": [{"name": "registry"}],
    }
    stored = stored_cluster(objects, kube_namespace, "fleet", full)
    built = desired_objects(stored)
    for manifest in built:
        utils.create_from_dict(kube, manifest, namespace=kube_namespace)
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    statefulset = apps.read_namespaced_stateful_set("fleet-media", kube_namespace)
    assert statefulset.metadata.owner_references[0].uid == stored["metadata"]["uid"]
    assert statefulset.spec.template.spec.host_network is True
    assert core.read_namespaced_service("fleet-router", kube_namespace).spec.ports[0].protocol == "UDP"
    # the StatefulSet controller makes the pods (they stay Pending: no kubelet)
    wait_until(
        "the media pods",
        lambda: (
            len(core.list_namespaced_pod(kube_namespace, label_selector=selector_string(stored)).items) == 3
        ),
    )

    objects.delete_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "fleet")

    def gone() -> bool:
        try:
            apps.read_namespaced_stateful_set("fleet-media", kube_namespace)
            return False
        except ApiException as error:
            return error.status == 404

    wait_until("the garbage collector to delete the StatefulSet", gone)
    wait_until(
        "every child gone",
        lambda: (
            not apps.list_namespaced_deployment(kube_namespace).items
            and not [
                s
                for s in core.list_namespaced_service(kube_namespace).items
                if s.metadata.name.startswith("fleet-")
            ]
            and not core.list_namespaced_config_map(
                kube_namespace, label_selector="app.kubernetes.io/instance=fleet"
            ).items
        ),
    )


def test_the_hpa_it_builds_scales_the_karlcluster_through_scale(
    karl_crd: Any, kube: Any, objects: Any, kube_namespace: str
) -> None:
    """An HPA whose minReplicas is above the KarlCluster's replicas: the real HPA controller raises them
    through `/scale` (it needs no metrics for that)."""
    spec = {
        "mediaNodes": {"replicas": 1},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 5},
    }
    stored = stored_cluster(objects, kube_namespace, "scaled", spec)
    # the operator's status write: the replicas it runs and the selector `/scale` reports
    objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        kube_namespace,
        PLURAL,
        "scaled",
        {"status": {"replicas": 1, "selector": selector_string(stored)}},
    )
    [hpa] = [o for o in desired_objects(stored) if o["kind"] == "HorizontalPodAutoscaler"]
    utils.create_from_dict(kube, hpa, namespace=kube_namespace)

    def replicas() -> int:
        found = objects.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "scaled")
        return int(found["spec"]["mediaNodes"]["replicas"])

    wait_until("the HPA to scale the KarlCluster to its minReplicas", lambda: replicas() == 3)
