"""The test control plane itself (tests/operator/kube_env.py): a real kube-apiserver at the pinned
release, with etcd and kube-controller-manager. What the operator relies on is shown here, against the
server, never emulated: CRDs with status and scale subresources and CEL rules, /scale, garbage collection
of owned objects, RBAC for ServiceAccount tokens, autoscaling/v2."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP = "kube-env.karl.test"
VERSION = "v1"
PLURAL = "widgets"
KIND = "Widget"
CEL_MESSAGE = "spec.replicas must not exceed spec.maxReplicas"
WAIT = 90.0  # seconds for anything the controllers do asynchronously

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "listKind": f"{KIND}List"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas", "maxReplicas"],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 0},
                                },
                                "x-kubernetes-validations": [
                                    {"rule": "self.replicas <= self.maxReplicas", "message": CEL_MESSAGE}
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "replicas": {"type": "integer"},
                                    "selector": {"type": "string"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something true (returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def error_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body)


def widget(name: str, replicas: int, max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "maxReplicas": max_replicas},
    }


def established(crd: Any) -> bool:
    return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))


@pytest.fixture(scope="module")
def widget_crd(kube: Any) -> Iterator[Any]:
    extensions: Any = client.ApiextensionsV1Api(kube)
    name = WIDGET_CRD["metadata"]["name"]
    extensions.create_custom_resource_definition(WIDGET_CRD)
    crd = wait_for(
        f"CRD {name} Established",
        lambda: (c := extensions.read_custom_resource_definition(name)) and established(c) and c,
        timeout=30,
    )
    yield crd
    extensions.delete_custom_resource_definition(name)


@pytest.fixture
def objects(kube: Any) -> Any:
    """The custom-objects API. Manifests go to the server as dicts, its own form; the APIs are typed `Any`
    here because the client's signatures ask for its model classes, which it serializes to the same dicts."""
    return client.CustomObjectsApi(kube)


def test_the_server_is_the_pinned_release(kube: Any, kube_env: Any, kube_versions: dict[str, str]) -> None:
    assert client.VersionApi(kube).get_code().git_version == kube_versions["K8S_VERSION"]
    # All three processes run; each one's log is in the session's tmp dir.
    assert [p.name for p in kube_env.processes] == ["etcd", "kube-apiserver", "kube-controller-manager"]
    assert all(p.alive() for p in kube_env.processes)
    assert set(kube_env.logs()) == {"etcd", "kube-apiserver", "kube-controller-manager"}


def test_crd_with_status_scale_and_cel_rule_is_established(widget_crd: Any) -> None:
    version = widget_crd.spec.versions[0]
    assert version.subresources.status is not None
    assert version.subresources.scale.spec_replicas_path == ".spec.replicas"
    # The CEL rule is kept (a server without CEL would prune it).
    rules = version.schema.open_apiv3_schema.properties["spec"].x_kubernetes_validations
    assert [(r.rule, r.message) for r in rules] == [("self.replicas <= self.maxReplicas", CEL_MESSAGE)]


def test_cel_rule_rejects_a_violating_object_with_its_message(
    widget_crd: Any, objects: Any, kube_namespace: str
) -> None:
    with pytest.raises(ApiException) as refused:
        objects.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, widget("w", 5, 3))
    assert refused.value.status == 422
    assert CEL_MESSAGE in error_message(refused.value)
    # A valid object is accepted; an update that breaks the rule is refused as well.
    objects.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, widget("w", 3, 3))
    with pytest.raises(ApiException) as refused:
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "w", {"spec": {"maxReplicas": 2}}
        )
    assert refused.value.status == 422 and CEL_MESSAGE in error_message(refused.value)


def test_scale_subresource_reads_and_writes(widget_crd: Any, objects: Any, kube_namespace: str) -> None:
    ns = kube_namespace
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("w", 1, 5))
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "w", {"status": {"replicas": 1, "selector": "app=w"}}
    )
    scale = objects.get_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "w")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"] == {"replicas": 1, "selector": "app=w"}

    scale["spec"]["replicas"] = 4
    written = objects.replace_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "w", scale)
    assert written["spec"]["replicas"] == 4
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w")
    assert stored["spec"] == {"replicas": 4, "maxReplicas": 5}
    assert stored["status"]["replicas"] == 1  # status is the controller's, /scale does not touch it

    # A main-resource write cannot change status (the status subresource owns it).
    stored["status"]["replicas"] = 9
    objects.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w", stored)
    assert objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w")["status"]["replicas"] == 1


def test_owned_object_is_garbage_collected_with_its_owner(
    kube: Any, widget_crd: Any, objects: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    core: Any = client.CoreV1Api(kube)
    owner = objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("owner", 1, 1))
    reference = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "owned", "ownerReferences": [reference]}, "data": {"k": "v"}}
    )
    core.create_namespaced_config_map(ns, {"metadata": {"name": "unowned"}, "data": {"k": "v"}})

    objects.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "owner")

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", ns)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    # The garbage collector picks up a new CRD at its next discovery sync (every 30 s), then deletes.
    wait_for("the garbage collector to delete the owned ConfigMap", owned_gone, timeout=120)
    assert core.read_namespaced_config_map("unowned", ns).data == {"k": "v"}


def test_service_account_without_a_role_is_refused(
    kube: Any, service_account_client: Callable[[str, str], Any], kube_namespace: str
) -> None:
    ns = kube_namespace
    as_sa: Any = client.CoreV1Api(service_account_client(ns, "nobody"))
    with pytest.raises(ApiException) as refused:
        as_sa.list_namespaced_config_map(ns)
    assert refused.value.status == 403
    # Authenticated (a TokenRequest token), just not authorized.
    assert f'User "system:serviceaccount:{ns}:nobody" cannot list resource "configmaps"' in error_message(
        refused.value
    )

    # With a Role bound, the same token may list ConfigMaps (and still nothing else).
    rbac: Any = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "nobody-reads-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": ns}],
        },
    )

    def allowed() -> bool:
        try:
            as_sa.list_namespaced_config_map(ns)
        except ApiException as error:
            if error.status == 403:
                return False
            raise
        return True

    wait_for("the RoleBinding to take effect", allowed, timeout=30)
    with pytest.raises(ApiException) as refused:
        as_sa.list_namespaced_secret(ns)
    assert refused.value.status == 403


def test_autoscaling_v2_is_served_and_reads_the_custom_scale(
    kube: Any, widget_crd: Any, objects: Any, kube_namespace: str
) -> None:
    ns = kube_namespace
    apis: Any = client.ApisApi(kube)
    groups = {g.name: g for g in apis.get_api_versions().groups}
    assert "v2" in [v.version for v in groups["autoscaling"].versions]
    assert groups["autoscaling"].preferred_version.version == "v2"

    objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("scaled", 1, 4))
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "scaled", {"status": {"replicas": 1, "selector": "app=scaled"}}
    )
    autoscaling: Any = client.AutoscalingV2Api(kube)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        ns,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "scaled"},
            "spec": {
                "scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": "scaled"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        },
    )

    # The HPA controller (kube-controller-manager) reads the Widget through its /scale subresource.
    def able_to_scale() -> Any:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("scaled", ns)
        conditions = {c.type: c for c in (hpa.status.conditions or [])}
        able = conditions.get("AbleToScale")
        return able if able is not None and able.status == "True" else None

    condition = wait_for("the HPA controller to read the Widget's scale", able_to_scale)
    assert condition.reason == "SucceededGetScale"


def test_stop_ends_every_process(make_control_plane: Callable[..., Any]) -> None:
    plane = make_control_plane(controller_manager=True).start()
    pids = [p.pid for p in plane.processes]
    assert len(pids) == 3
    plane.stop()
    assert plane.processes == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
