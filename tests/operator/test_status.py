"""The KarlCluster's status as `cluster_status` writes it, from StatefulSets as the API server returns
them (the client's own models): `Ready` only once every media node is ready on the latest revision."""

from __future__ import annotations

from typing import Any

from kubernetes.client import V1StatefulSet

from karl_operator.reconciler import cluster_status


def body(replicas: int = 3, generation: int = 4) -> dict[str, Any]:
    return {
        "metadata": {"name": "fleet", "namespace": "voip", "generation": generation},
        "spec": {"mediaNodes": {"replicas": replicas}},
    }


def statefulset(
    replicas: int, ready: int, updated: int, current: str = "r1", update: str = "r1", seen: int = 2
) -> V1StatefulSet:
    found = {
        "metadata": {"name": "fleet-media", "generation": 2},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "fleet"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/instance": "fleet"}}},
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
            "observedGeneration": seen,
        },
    }
    return V1StatefulSet.from_dict(found)


def by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_every_node_ready_on_the_latest_revision_is_ready_and_stable() -> None:
    status = cluster_status(body(), statefulset(3, 3, 3), None, [])
    found = by_type(status)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("True", "AllNodesReady")
    assert (found["Progressing"]["status"], found["Progressing"]["reason"]) == ("False", "Stable")
    assert found["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])
    assert (status["nodesReady"], status["updatedReplicas"]) == ("3/3", 3)


def test_a_rollout_is_not_ready_while_nodes_run_the_old_template_even_if_all_are_ready() -> None:
    status = cluster_status(body(), statefulset(3, 3, 1, current="r1", update="r2"), None, [])
    found = by_type(status)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "RollingOut")
    assert (found["Progressing"]["status"], found["Progressing"]["reason"]) == ("True", "RollingOut")
    assert found["Ready"]["message"] == "3 of 3 media nodes ready, 1 of 3 on the latest revision"
    # the last pod replaced, the controller not yet caught up with the revisions: still rolling out
    last = cluster_status(body(), statefulset(3, 3, 3, current="r1", update="r2"), None, [])
    assert by_type(last)["Ready"]["status"] == "False"


def test_a_scale_up_is_nodes_not_ready_not_a_rollout() -> None:
    found = by_type(cluster_status(body(), statefulset(3, 2, 3), None, []))
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "NodesNotReady")
    assert found["Ready"]["message"] == "2 of 3 media nodes ready"
    assert found["Progressing"]["status"] == "True"


def test_a_statefulset_not_yet_seen_by_its_controller_is_reconciling() -> None:
    for stale in (None, statefulset(3, 3, 3, seen=1)):
        found = by_type(cluster_status(body(), stale, None, []))
        assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "Reconciling")
        assert found["Progressing"]["status"] == "True"


def test_a_problem_is_degraded_and_neither_ready_nor_progressing() -> None:
    problem = "spec.redis.passwordSecret: Secret nope not found in namespace voip"
    found = by_type(cluster_status(body(), statefulset(3, 3, 3), problem, []))
    assert (found["Degraded"]["status"], found["Degraded"]["message"]) == ("True", problem)
    assert found["Ready"]["status"] == found["Progressing"]["status"] == "False"


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = cluster_status(body(), statefulset(3, 2, 3), None, [])
    earlier = [{**c, "lastTransitionTime": "2026-01-01T00:00:00Z"} for c in first["conditions"]]
    same = by_type(cluster_status(body(), statefulset(3, 2, 3), None, earlier))
    assert same["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    changed = by_type(cluster_status(body(), statefulset(3, 3, 3), None, earlier))
    assert changed["Ready"]["lastTransitionTime"] != "2026-01-01T00:00:00Z"
    assert changed["Degraded"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
