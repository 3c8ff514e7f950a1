"""The KarlCluster CRD (crds/karlcluster.yaml) on the real kube-apiserver of the test control plane: it is
accepted (structural, Established), a minimal KarlCluster is stored with every default filled in, bad
ones are refused by the schema and by the CEL rules with messages naming the field, and `/scale`
reads and sets the media nodes' replicas."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from karl_cluster_kit import GROUP, PLURAL, VERSION, cluster, create, load_crd, message_of, refused
from kubernetes import client
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def objects(kube: Any) -> Any:
    return client.CustomObjectsApi(kube)


def test_the_crd_is_established_with_status_scale_and_printer_columns(karl_crd: Any) -> None:
    [version] = karl_crd.spec.versions
    assert version.name == VERSION and version.served and version.storage
    assert version.subresources.status is not None
    scale = version.subresources.scale
    assert scale.spec_replicas_path == ".spec.mediaNodes.replicas"
    assert scale.status_replicas_path == ".status.replicas"
    assert scale.label_selector_path == ".status.selector"
    assert [c.name for c in version.additional_printer_columns] == ["Nodes", "Calls", "Ready", "Age"]


def test_a_minimal_karlcluster_is_stored_with_its_defaults(
    karl_crd: Any, objects: Any, kube_namespace: str
) -> None:
    stored = create(objects, kube_namespace, cluster("minimal"))
    spec = stored["spec"]
    assert spec["logLevel"] == "info"
    media = spec["mediaNodes"]
    assert media["replicas"] == 2 and media["maxSessions"] == 1000
    assert media["ports"] == {"rtpStart": 20000, "rtpPerPod": 4000, "controlStart": 12000}
    assert media["advertisedAddress"] == {"source": "HostIP"}
    assert media["antiAffinity"] == "Preferred" and media["terminationGracePeriodSeconds"] == 3600
    assert media["resources"]["requests"] == {"cpu": "1", "memory": "256Mi"}
    assert spec["router"] == {
        "replicas": 2,
        "serviceType": "ClusterIP",
        "port": 22222,
        "externalTrafficPolicy": "Cluster",
    }
    assert spec["autoscaling"] == {
        "enabled": False,
        "minReplicas": 2,
        "maxReplicas": 10,
        "metric": "cpu",
        "targetCPUUtilization": 70,
        "targetSessionsPerNode": 500,
    }
    assert spec["redis"] == {"prefix": "karl"} and spec["failover"] == {} and spec["cdr"] == {}


BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "too few ports per session",
        {"mediaNodes": {"maxSessions": 2000, "ports": {"rtpPerPod": 4000}}},
        "spec.mediaNodes.ports.rtpPerPod must hold at least 4 ports per session",
    ),
    (
        "the last ordinal's range past 65535",
        {"autoscaling": {"enabled": True, "maxReplicas": 12}, "mediaNodes": {"ports": {"rtpStart": 20000}}},
        "must end at or below 65536",
    ),
    (
        "replicas past 65535 without autoscaling",
        {"mediaNodes": {"replicas": 20}},
        "must end at or below 65536",
    ),
    (
        "control ports inside the RTP ranges",
        {"mediaNodes": {"ports": {"controlStart": 24000}}},
        "must not overlap the RTP ranges",
    ),
    (
        "min above max",
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}},
        "spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas",
    ),
    (
        "a static address without the address",
        {"mediaNodes": {"advertisedAddress": {"source": "Static"}}},
        "spec.mediaNodes.advertisedAddress.address is required",
    ),
    (
        "control ports past 65535",
        {
            "mediaNodes": {
                "replicas": 2,
                "ports": {"controlStart": 65532, "rtpStart": 1024, "rtpPerPod": 4000},
            }
        },
        "must end at or below 65536",
    ),
    (
        "replicas above the autoscaling maximum",
        {"autoscaling": {"enabled": True, "maxReplicas": 4}, "mediaNodes": {"replicas": 12}},
        "must end at or below 65536",
    ),
    ("an odd RTP range", {"mediaNodes": {"ports": {"rtpPerPod": 4001}}}, "spec.mediaNodes.ports.rtpPerPod"),
    (
        "two webhook targets",
        {"failover": {"webhooks": ["http://a/x", "http://b/y"]}},
        "spec.failover.webhooks",
    ),
    (
        "an address source not built",
        {"mediaNodes": {"advertisedAddress": {"source": "NodeExternalIP"}}},
        "source",
    ),
    ("an unknown log level", {"logLevel": "chatty"}, "spec.logLevel"),
    ("an unknown service type", {"router": {"serviceType": "Ingress"}}, "spec.router.serviceType"),
    ("a negative replica count", {"mediaNodes": {"replicas": -1}}, "spec.mediaNodes.replicas"),
    ("a Redis URL of another scheme", {"redis": {"url": "http://redis:6379"}}, "spec.redis.url"),
]


@pytest.mark.parametrize(("why", "spec", "expected"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_karlcluster_is_refused_with_a_message_naming_the_field(
    karl_crd: Any, objects: Any, kube_namespace: str, why: str, spec: dict[str, Any], expected: str
) -> None:
    message = refused(objects, kube_namespace, cluster("bad", spec))
    assert expected in message, message


def test_scale_reads_and_sets_the_media_nodes_replicas(
    karl_crd: Any, objects: Any, kube_namespace: str
) -> None:
    create(objects, kube_namespace, cluster("scaled", {"mediaNodes": {"replicas": 3}}))
    scale = objects.get_namespaced_custom_object_scale(GROUP, VERSION, kube_namespace, PLURAL, "scaled")
    assert scale["spec"]["replicas"] == 3
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "scaled", {"spec": {"replicas": 5}}
    )
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "scaled")
    assert stored["spec"]["mediaNodes"]["replicas"] == 5
    # the CEL rules hold through /scale too: 12 nodes of 4,000 ports from 20000 do not fit
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object_scale(
            GROUP, VERSION, kube_namespace, PLURAL, "scaled", {"spec": {"replicas": 12}}
        )
    assert "must end at or below 65536" in message_of(caught.value)


def test_the_crd_file_and_a_good_example_round_trip(karl_crd: Any, objects: Any, kube_namespace: str) -> None:
    """A full example (every section given) is stored as written, nothing dropped by pruning."""
    spec = {
        "logLevel": "debug",
        "mediaNodes": {
            "replicas": 4,
            "image": "registry.example/karl:1.2.3",
            "maxSessions": 500,
            "ports": {"rtpStart": 30000, "rtpPerPod": 2000, "controlStart": 12000},
            "advertisedAddress": {"source": "Static", "address": "198.51.100.7"},
            "nodeSelector": {"karl.io/media": "true"},
            "tolerations": [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}],
            "antiAffinity": "Required",
        },
        "router": {"replicas": 3, "serviceType": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "redis": {"url": "rediss://redis.example:6380/0", "passwordSecret": "karl-redis"},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8, "metric": "sessions"},
        "failover": {"webhooks": ["https://sip.example/karl-failover"]},
        "cdr": {"databaseSecret": "karl-cdr"},
    }
    stored = create(objects, kube_namespace, cluster("full", copy.deepcopy(spec)))
    from karl_operator.cluster_spec import checked_spec

    filled, problems = checked_spec(load_crd(), spec)
    assert not problems and filled == stored["spec"]  # offline: the same verdict and the same defaults
    for section, values in spec.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert stored["spec"][section][key] == value, (section, key)
        else:
            assert stored["spec"][section] == values


BAD_NAMES = ["a" * 41, "Fleet", "1fleet", "fleet-", "fleet.one"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_karlcluster_name_its_children_could_not_carry_is_refused(
    karl_crd: Any, objects: Any, kube_namespace: str, name: str
) -> None:
    from karl_operator.cluster_spec import name_problems

    try:
        create(objects, kube_namespace, cluster(name))
    except ApiException as error:
        assert error.status == 422, error.body
        assert "metadata.name: at most 40 characters" in message_of(error)
    else:
        pytest.fail(f"KarlCluster {name!r} was taken")
    [problem] = name_problems(load_crd(), name)  # offline, the same verdict
    assert problem.field == "metadata.name" and problem.message.startswith("at most 40 characters")
    assert name_problems(load_crd(), "a" * 40) == name_problems(load_crd(), "fleet-2") == []


# ---------------------------------------------------------------------------------- offline, the same


@pytest.mark.parametrize(("why", "spec", "expected"), BAD, ids=[b[0] for b in BAD])
def test_offline_validation_refuses_the_same_karlclusters_with_the_same_message(
    why: str, spec: dict[str, Any], expected: str
) -> None:
    from karl_operator.cluster_spec import checked_spec

    _, problems = checked_spec(load_crd(), spec)
    assert problems, why
    text = "; ".join(str(problem) for problem in problems)
    assert expected in text, text


def test_offline_defaults_are_the_servers(karl_crd: Any, objects: Any, kube_namespace: str) -> None:
    from karl_operator.cluster_spec import checked_spec

    for name, spec in (("defaults-a", {}), ("defaults-b", {"mediaNodes": {"replicas": 1}, "redis": {}})):
        stored = create(objects, kube_namespace, cluster(name, copy.deepcopy(spec)))
        filled, problems = checked_spec(load_crd(), spec)
        assert not problems and filled == stored["spec"]


def test_offline_validation_names_unknown_fields_and_wrong_types() -> None:
    from karl_operator.cluster_spec import checked_spec

    _, problems = checked_spec(load_crd(), {"mediaNode": {}, "router": {"replicas": "two"}})
    assert {p.field for p in problems} == {"spec.mediaNode", "spec.router.replicas"}


def test_the_documented_karlcluster_is_valid() -> None:
    """docs/kubernetes.md's example ("A fleet") passes the same checks as the server's."""
    import yaml
    from karl_cluster_kit import documented_yaml

    from karl_operator.cluster_spec import checked_spec, name_problems

    example = yaml.safe_load(documented_yaml("apiVersion: karl.io/v1alpha1"))
    spec, problems = checked_spec(load_crd(), example["spec"])
    assert not problems and not name_problems(load_crd(), example["metadata"]["name"]), problems
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
