"""The real kopf operator (`karl-operator run`, a process of its own) on the real control plane, acting as
its ServiceAccount through exactly the rules the Helm chart grants it (charts/karl/files/*rules.yaml),
never as admin. No kubelet runs: the test plays its part by setting pod status.

Shown: a KarlCluster gets its children with owner references and a status (`Ready` once the media
pods are, `Progressing` until then, the `/scale` selector); replicas changed through `/scale` and a new
image reach the StatefulSet; a spec naming a Secret that does not exist sets `Degraded` with the field
and an Event, and clears once the Secret is there; an operator restarted in the middle changes nothing
it should not."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from karl_cluster_kit import GROUP, PLURAL, ROOT, VERSION, cluster, create, documented_yaml
from kubernetes import client

from fleet.fleet_calls import Stream, answer, media_address, offer, reinvite_through
from karl_testkit import Party, wait_for

WAIT = 60.0
RULES = ROOT / "charts" / "karl" / "files" / "operator-rules.yaml"
CLUSTER_RULES = ROOT / "charts" / "karl" / "files" / "operator-cluster-rules.yaml"


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT, operator: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if operator is not None and operator.proc.poll() is not None:
            pytest.fail(
                f"the operator exited ({operator.proc.returncode}) waiting for {what}:\n{operator.log()}"
            )
        if time.monotonic() > deadline:
            tail = operator.log()[-3000:] if operator is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.25)


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def operator_account(kube: Any, kube_env: Any, kube_namespace: str, tmp_path: Path) -> Iterator[Path]:
    """ServiceAccount `karl-operator` in the test's namespace with the chart's rules as the chart binds
    them for an operator that watches namespaces: the cluster-wide ones in a ClusterRole, the rest in a
    Role of the namespace. Returns a kubeconfig that acts as it (a TokenRequest token)."""
    import karl_kube_env

    rbac = client.RbacAuthorizationV1Api(kube)
    name = f"karl-operator-{kube_namespace}"
    subjects = [{"kind": "ServiceAccount", "name": "karl-operator", "namespace": kube_namespace}]
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": yaml.safe_load(CLUSTER_RULES.read_text())})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        }
    )
    role = {"metadata": {"name": "karl-operator"}, "rules": yaml.safe_load(RULES.read_text())}
    rbac.create_namespaced_role(kube_namespace, role)
    rbac.create_namespaced_role_binding(
        kube_namespace,
        {
            "metadata": {"name": "karl-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "karl-operator"},
            "subjects": subjects,
        },
    )
    token = kube_env.service_account_token(kube_namespace, "karl-operator")
    path = tmp_path / "operator.kubeconfig"
    karl_kube_env.write_kubeconfig(path, kube_env.server, kube_env.ca_file, token, "karl-operator")
    yield path
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


@pytest.fixture
def start_operator(
    karl_crd: Any, operator_account: Path, kube_namespace: str, tmp_path: Path
) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(*args: str, **extra_env: str) -> Operator:
        log_path = tmp_path / f"operator-{len(started)}.log"
        env = {**os.environ, "KUBECONFIG": str(operator_account), **extra_env}
        command = [sys.executable, "-m", "karl_operator", "run", "--namespace", kube_namespace, *args]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(Operator(proc, log_path))
        return started[-1]

    yield start
    for operator in started:
        operator.stop()


def conditions(stored: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (stored.get("status") or {}).get("conditions", [])}


def test_the_operator_builds_a_karlcluster_keeps_it_and_reports_its_state(
    kube: Any, start_operator: Callable[[], Operator], kube_namespace: str
) -> None:
    objects, apps, core = client.CustomObjectsApi(kube), client.AppsV1Api(kube), client.CoreV1Api(kube)
    operator = start_operator()
    created = create(objects, kube_namespace, cluster("fleet", {"mediaNodes": {"replicas": 2}}))

    def stored() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "fleet"
        )
        return found

    def statefulset() -> Any:
        return apps.read_namespaced_stateful_set("fleet-media", kube_namespace)

    def children() -> set[str]:
        services = core.list_namespaced_service(
            kube_namespace, label_selector="app.kubernetes.io/instance=fleet"
        )
        return {s.metadata.name for s in services.items}

    wait_until(
        "the Services",
        lambda: children() == {"fleet-media", "fleet-router", "fleet-redis"},
        operator=operator,
    )
    assert statefulset().metadata.owner_references[0].uid == created["metadata"]["uid"]
    # the generated Secret: the nodes' API key and the fleet's DTLS certificate, which Karl takes
    from karl_medianode.dtls.certificate import DtlsCertificate

    fleet = core.read_namespaced_secret("fleet-fleet", kube_namespace)
    assert fleet.metadata.owner_references[0].uid == created["metadata"]["uid"]
    pem = base64.b64decode(fleet.data["dtls.pem"])
    assert DtlsCertificate.from_pem(pem, pem).fingerprint().count(":") == 31
    assert base64.b64decode(fleet.data["api-keys"]).startswith(b"operate:")
    volumes = statefulset().spec.template.spec.volumes
    assert [v.secret.secret_name for v in volumes if v.secret] == ["fleet-fleet"]
    wait_until("the status", lambda: conditions(stored()).get("Progressing") == "True", operator=operator)
    status = stored()["status"]
    assert conditions(stored()) == {"Ready": "False", "Progressing": "True", "Degraded": "False"}
    assert status["selector"] == "app.kubernetes.io/component=media,app.kubernetes.io/instance=fleet"

    # the kubelet's part: the media pods run and are ready
    def pods() -> list[Any]:
        return core.list_namespaced_pod(kube_namespace, label_selector=status["selector"]).items

    def make_ready(count: int) -> bool:
        for pod in pods():
            if pod.status.phase != "Running" and pod.metadata.deletion_timestamp is None:
                ready = {"type": "Ready", "status": "True"}
                core.patch_namespaced_pod_status(
                    pod.metadata.name, kube_namespace, {"status": {"phase": "Running", "conditions": [ready]}}
                )
        return len(pods()) == count and all(p.status.phase == "Running" for p in pods())

    wait_until("two media pods, running", lambda: make_ready(2), operator=operator)
    wait_until("Ready", lambda: conditions(stored()).get("Ready") == "True", operator=operator)
    assert stored()["status"]["nodesReady"] == "2/2"

    # /scale and a new image reach the StatefulSet
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "fleet", {"spec": {"replicas": 3}}
    )
    wait_until("3 replicas on the StatefulSet", lambda: statefulset().spec.replicas == 3, operator=operator)
    wait_until("three media pods, running", lambda: make_ready(3), operator=operator)
    wait_until("Ready with 3", lambda: stored()["status"]["nodesReady"] == "3/3", operator=operator)
    wait_until("Ready with 3", lambda: conditions(stored()).get("Ready") == "True", operator=operator)
    # a new image and another port range, in one change
    ports = {"rtpStart": 24000, "rtpPerPod": 4000, "controlStart": 14000}
    change = {"spec": {"mediaNodes": {"image": "karl:next", "ports": ports}}}
    objects.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "fleet", change)
    wait_until(
        "the new image",
        lambda: statefulset().spec.template.spec.containers[0].image == "karl:next",
        operator=operator,
    )
    template = statefulset().spec.template
    start = template.spec.containers[0].command[-1]
    assert "KARL_RTP_MIN_PORT=$((24000 + 4000 * n))" in start and "KARL_NG_PORT=$((14000 + 4 * n))" in start
    assert template.metadata.annotations["karl.io/control-start"] == "14000"
    # the rollout: the controller-manager replaces the pods one by one, each made ready by the test as
    # it comes; the KarlCluster is not Ready before the last node runs the new template
    seen: list[tuple[str, int]] = []

    def rolled_out() -> bool:
        make_ready(3)
        now = stored()  # one read: Ready and updatedReplicas from the same status
        ready = conditions(now).get("Ready", "")
        seen.append((ready, now["status"].get("updatedReplicas", 0)))
        images = {p.spec.containers[0].image for p in pods()}
        return images == {"karl:next"} and ready == "True"

    wait_until("the rollout done and Ready", rolled_out, timeout=90, operator=operator)
    assert any(ready == "False" for ready, _ in seen), seen  # the rollout was seen, not Ready
    assert all(updated == 3 for ready, updated in seen if ready == "True"), seen
    ready_condition = next(c for c in stored()["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["message"] == "3 of 3 media nodes ready"

    # an operator restarted changes nothing it should not
    before = {
        "secret": core.read_namespaced_secret("fleet-fleet", kube_namespace).metadata.resource_version,
        "statefulset": statefulset().metadata.resource_version,
        "router": apps.read_namespaced_deployment("fleet-router", kube_namespace).metadata.resource_version,
    }
    operator.stop()
    again = start_operator()
    wait_until(
        "the restarted operator to take the KarlCluster up again",
        lambda: "Resuming is processed: 1 succeeded" in again.log(),
        operator=again,
    )
    after = {
        "secret": core.read_namespaced_secret("fleet-fleet", kube_namespace).metadata.resource_version,
        "statefulset": statefulset().metadata.resource_version,
        "router": apps.read_namespaced_deployment("fleet-router", kube_namespace).metadata.resource_version,
    }
    assert after == before

    # no finalizer: with the operator gone, a KarlCluster (and its namespace) can still be deleted
    assert not stored()["metadata"].get("finalizers")
    again.stop()
    objects.delete_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "fleet")

    def deleted() -> bool:
        try:
            stored()
        except client.exceptions.ApiException as error:
            return error.status == 404
        return False

    wait_until("the KarlCluster gone, no operator running", deleted, timeout=10)


STARTED = "failover controller started"


def stored_status(objects: Any, namespace: str) -> Any:
    found = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fleet")
    return (found.get("status") or {}).get("conditions")


def create_peering(objects: client.CustomObjectsApi, namespace: str) -> None:
    """The KopfPeering the chart creates, which `--peering karl-operator` replicas meet in."""
    objects.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "karl-operator"}},
    )


def test_two_operator_replicas_peer_one_works_and_the_other_takes_over_when_it_stops(
    kube: Any, kopf_peering_crds: Any, start_operator: Callable[..., Operator], kube_namespace: str
) -> None:
    """Two operators with `--peering` (what the chart runs): they meet in a KopfPeering, one works and
    the other waits — never both; when the working one stops, the other resumes and carries out the
    next change."""
    objects, apps = client.CustomObjectsApi(kube), client.AppsV1Api(kube)
    create_peering(objects, kube_namespace)
    first, second = start_operator("--peering", "karl-operator"), start_operator("--peering", "karl-operator")

    def priority(operator: Operator) -> int:
        found = re.search(r"peering in karl-operator as \S+ with priority (\d+)", operator.log())
        return int(found.group(1)) if found else 0

    wait_until("both replicas' priorities", lambda: priority(first) and priority(second), operator=first)
    worker, standby = sorted((first, second), key=priority, reverse=True)

    def working() -> list[Operator]:
        """The replicas whose last word on peering is that they resume (kopf starts each paused)."""
        found = []
        for operator in (first, second):
            said = re.findall(r"(Resuming|Pausing) operations", operator.log())
            if said and said[-1] == "Resuming":
                found.append(operator)
        return found

    wait_until("the highest priority alone working", lambda: working() == [worker], operator=worker)
    create(objects, kube_namespace, cluster("fleet", {"mediaNodes": {"replicas": 2}}))

    def statefulset() -> Any:
        return _statefulset_or_none(apps, kube_namespace)

    wait_until("the StatefulSet, from the working replica", statefulset, operator=worker)
    wait_until("its reconcile done", lambda: "Handler 'reconcile' succeeded" in worker.log(), operator=worker)
    # the one waiting did nothing (kopf may hand it the KarlCluster from a listing it began before it
    # paused: it stands by)
    assert "Handler 'reconcile' succeeded" not in standby.log()
    assert working() == [worker]
    # the operator's own work too (status, resync, the fleet's failover controller): the worker's alone
    wait_until("the worker's failover controller", lambda: STARTED in worker.log(), operator=worker)
    wait_until("the status", lambda: stored_status(objects, kube_namespace), operator=worker)
    assert STARTED not in standby.log()

    resumed_before = standby.log().count("Resuming operations")  # (it may have resumed a moment at start)
    worker.stop()  # (a rollout: SIGTERM; it leaves the peering, so the other need not wait its lifetime)
    wait_until(
        "the standby resuming",
        lambda: standby.log().count("Resuming operations") > resumed_before,
        operator=standby,
    )
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "fleet", {"spec": {"replicas": 3}}
    )
    wait_until("the change, by the other", lambda: statefulset().spec.replicas == 3, operator=standby)
    wait_until("its failover controller", lambda: STARTED in standby.log(), operator=standby)


def test_a_replica_paused_by_a_higher_one_works_again_when_that_one_stops(
    kube: Any, kopf_peering_crds: Any, start_operator: Callable[..., Operator], kube_namespace: str
) -> None:
    """A works; B, of a higher priority, joins: A pauses and B works; B stops: A works again — kopf
    runs none of A's handlers again for a KarlCluster it already saw, yet A's status follows the pods
    (its loop carries the KarlCluster out anew)."""
    objects, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    create_peering(objects, kube_namespace)
    low = start_operator("--peering", "karl-operator", "--priority", "10")
    wait_until("A working", lambda: "Resuming operations" in low.log(), operator=low)
    create(objects, kube_namespace, cluster("fleet", {"mediaNodes": {"replicas": 1}}))
    wait_until("A's status", lambda: stored_status(objects, kube_namespace), operator=low)
    high = start_operator("--peering", "karl-operator", "--priority", "20")
    wait_until("A pausing for B", lambda: "Pausing operations" in low.log(), operator=low)
    wait_until("B working", lambda: "Resuming operations" in high.log(), operator=high)
    high.stop()
    wait_until("A working again", lambda: low.log().count("Resuming operations") == 2, operator=low)

    # the kubelet's part: the media pod runs; only a status written after the pod changed says Ready
    def pod_running() -> bool:
        pods = core.list_namespaced_pod(kube_namespace, label_selector=MEDIA_SELECTOR).items
        for pod in pods:
            status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            core.patch_namespaced_pod_status(pod.metadata.name, kube_namespace, {"status": status})
        return len(pods) == 1

    wait_until("the media pod running", pod_running, operator=low)

    def ready() -> bool:
        return {c["type"]: c["status"] for c in stored_status(objects, kube_namespace) or []}.get(
            "Ready"
        ) == "True"

    wait_until("Ready, written by A", ready, operator=low)


def test_children_changed_or_deleted_behind_the_operators_back_are_put_back(
    kube: Any, start_operator: Callable[..., Operator], kube_namespace: str
) -> None:
    """Someone deletes the router Service and sets another image on the media StatefulSet by hand: the
    operator's resync (`KARL_OPERATOR_RESYNC`, 2 s here, 60 s by default) puts both back as the spec
    says, with no change to the KarlCluster."""
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    operator = start_operator(KARL_OPERATOR_RESYNC="2")
    create(client.CustomObjectsApi(kube), kube_namespace, cluster("fleet", {}))

    def image() -> Any:
        found = _statefulset_or_none(apps, kube_namespace)
        return found.spec.template.spec.containers[0].image if found is not None else None

    def router_service_uid() -> str | None:
        services = core.list_namespaced_service(kube_namespace).items
        return next((s.metadata.uid for s in services if s.metadata.name == "fleet-router"), None)

    deleted_uid = wait_until("the router Service", router_service_uid, operator=operator)
    wanted = wait_until("the media StatefulSet", image, operator=operator)
    core.delete_namespaced_service("fleet-router", kube_namespace)
    tampered = {"spec": {"template": {"spec": {"containers": [{"name": "media-node", "image": "evil:1"}]}}}}
    patched = apps.patch_namespaced_stateful_set("fleet-media", kube_namespace, tampered)
    assert patched.spec.template.spec.containers[0].image == "evil:1"
    # the resync may come at any moment, even before the next read: what proves it is a new Service
    # (another uid) and a StatefulSet changed again after the tampering
    wait_until(
        "the router Service back",
        lambda: router_service_uid() not in (None, deleted_uid),
        operator=operator,
    )

    def image_put_back() -> bool:
        found = _statefulset_or_none(apps, kube_namespace)
        return (
            found is not None
            and found.metadata.generation > patched.metadata.generation
            and found.spec.template.spec.containers[0].image == wanted
        )

    wait_until("the image back", image_put_back, operator=operator)


def test_a_missing_secret_sets_degraded_with_the_field_and_an_event_then_clears(
    kube: Any, start_operator: Callable[[], Operator], kube_namespace: str
) -> None:
    objects, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    operator = start_operator()
    create(
        objects,
        kube_namespace,
        cluster("broken", {"redis": {"url": "redis://r:6379", "passwordSecret": "nope"}}),
    )

    def stored() -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "broken"
        )
        return found

    wait_until("Degraded", lambda: conditions(stored()).get("Degraded") == "True", operator=operator)
    [degraded] = [c for c in stored()["status"]["conditions"] if c["type"] == "Degraded"]
    assert degraded["message"].startswith("spec.redis.passwordSecret: Secret nope not found"), degraded
    assert conditions(stored())["Ready"] == "False"

    def event() -> list[Any]:
        events = core.list_namespaced_event(kube_namespace, field_selector="involvedObject.name=broken").items
        return [e for e in events if e.reason == "InvalidSpec" and "spec.redis.passwordSecret" in e.message]

    wait_until("an InvalidSpec Event", event, operator=operator)
    assert operator.proc.poll() is None  # no crash

    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "nope"}, "stringData": {"password": "s3cret"}}
    )
    wait_until("Degraded cleared", lambda: conditions(stored()).get("Degraded") == "False", operator=operator)


@dataclass
class FleetWithCalls:
    """Two real media nodes with answered calls through the router; `victim` holds some of them. The
    nodes send their failover events to `hook`."""

    redis: Any
    router: Any
    hook: Any
    victim: Any
    survivor: Any
    parties: dict[str, tuple[Party, Party]]
    targets: dict[str, tuple[tuple[str, int], tuple[str, int]]]
    """Where each call's A and B party send their RTP (the answer's and the offer's media address)."""
    moving: list[str]

    def moved(self) -> bool:
        return all(self.redis.hget(f"karl:call:{c}", "owner") == self.survivor.node_id for c in self.moving)

    def talk_again(self) -> None:
        """The moved calls carry RTP again at their new address: each one's failover event is
        re-INVITEd through the proxy (here, the test) and both parties stream through the survivor."""
        wait_for(lambda: {e["call_id"] for e in self.hook.events} >= set(self.moving), timeout=10)
        events = {event["call_id"]: event for event in self.hook.events}
        for call_id in self.moving:
            legs = {leg["tag"]: leg for leg in events[call_id]["legs"]}
            assert all(leg["new"]["address"] == self.survivor.ns_ip for leg in legs.values()), legs
            offered, answered = reinvite_through(self.router, call_id, legs)
            a, b = self.parties[call_id]
            with Stream(a, media_address(answered), b, media_address(offered)).running() as stream:
                stream.flowing(10)
            assert stream.received == stream.sent


MEDIA_SELECTOR = "app.kubernetes.io/instance=fleet,app.kubernetes.io/component=media"
MEDIA_POD_LABELS = {
    "app.kubernetes.io/component": "media",
    "app.kubernetes.io/managed-by": "karl-operator",
    "app.kubernetes.io/instance": "fleet",
}


def fleet_with_calls(
    fleet: Any, redis_server: Any, webhook_receiver: Any, name: str, **node_env: dict[str, str]
) -> FleetWithCalls:
    """`node_env`: more environment per node, by node id (`node-0`, `node-1`)."""
    hook = webhook_receiver()
    hooked = {"KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}")}
    env = {k: {**hooked, **node_env.get(f"node-{k}", {})} for k in range(2)}
    lab, nodes, router = fleet(2, node_env=env)
    redis = redis_server.client()
    ip = lab.ns_ip(lab.count - 1)
    parties, targets = {}, {}
    for index in range(4):
        call_id = f"{name}-{index}@test"
        a, b = lab.party(lab.count - 1), lab.party(lab.count - 1)
        offered, answered = offer(router.ng, call_id, a, ip), answer(router.ng, call_id, b, ip)
        assert offered["result"] == answered["result"] == "ok", (offered, answered)
        parties[call_id] = (a, b)
        targets[call_id] = (media_address(answered), media_address(offered))
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in parties}
    victim = next(node for node in nodes if node.node_id in owners.values())
    survivor = next(node for node in nodes if node is not victim)
    moving = [c for c, owner in owners.items() if owner == victim.node_id]
    return FleetWithCalls(redis, router, hook, victim, survivor, parties, targets, moving)


def media_pod(name: str, node_name: str = "") -> dict[str, Any]:
    """The pod a media node is (as the StatefulSet makes it), on a Kubernetes node or unscheduled."""
    container = {"name": "media-node", "image": "karl"}
    return {
        "metadata": {"name": name, "labels": MEDIA_POD_LABELS},
        "spec": {"nodeName": node_name, "containers": [container]},
    }


READY = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}


@pytest.fixture
def worker(kube: Any, kube_namespace: str) -> Iterator[str]:
    """A Kubernetes node object, Ready (the controller-manager runs no node-lifecycle controller here,
    so it stays so until the test says otherwise); deleted afterwards. Its name."""
    core, name = client.CoreV1Api(kube), f"worker-{kube_namespace}"
    core.create_node({"metadata": {"name": name}})
    try:
        core.patch_node_status(name, {"status": {"conditions": [READY]}})
        yield name
    finally:
        core.delete_node(name)


def operator_on_fleet(
    kube: Any, start_operator: Callable[..., Operator], namespace: str, redis_url: str, grace: str
) -> Operator:
    create(client.CustomObjectsApi(kube), namespace, cluster("fleet", {"redis": {"url": redis_url}}))
    operator = start_operator(KARL_FAILOVER_RESTART_GRACE=grace)
    wait_until(
        "the operator's controller to lead", lambda: "leading failover" in operator.log(), operator=operator
    )
    return operator


def test_the_operator_runs_each_fleets_failover_controller(
    kube: Any,
    start_operator: Callable[..., Operator],
    kube_namespace: str,
    fleet: Any,
    redis_server: Any,
    webhook_receiver: Any,
) -> None:
    """Real media nodes (`karl` processes in network namespaces, named like pods) in a fleet whose
    Redis the KarlCluster names, and no failover controller but the one inside the operator: a node
    killed (a pod lost with its host) has its calls moved to the survivor."""
    setup = fleet_with_calls(fleet, redis_server, webhook_receiver, "op-fo")
    operator = operator_on_fleet(kube, start_operator, kube_namespace, redis_server.url, "1")

    def active_calls() -> Any:
        found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "fleet"
        )
        return (found.get("status") or {}).get("activeCalls")

    # the printer column "Calls": the media nodes' calls, from their leases
    wait_until("the fleet's 4 calls in the status", lambda: active_calls() == 4, operator=operator)
    setup.victim.kill()
    wait_until("the victim's calls on the survivor", setup.moved, operator=operator)
    setup.talk_again()


def test_a_force_deleted_media_pod_has_its_calls_moved_without_the_restart_grace(
    kube: Any,
    start_operator: Callable[..., Operator],
    kube_namespace: str,
    fleet: Any,
    redis_server: Any,
    webhook_receiver: Any,
) -> None:
    """The kubelet's part played by the test: a media pod named like its node is force-deleted
    (`--grace-period=0 --force`) while its process still runs — its lease is live, so its calls stay and
    keep their RTP for three lease lifetimes — then the process is killed. With a restart grace of 60 s
    the calls would wait a minute for the node to come back; Kubernetes said it will not, so they move
    as soon as its lease has lapsed."""
    setup = fleet_with_calls(fleet, redis_server, webhook_receiver, "op-force")
    core = client.CoreV1Api(kube)
    for node in (setup.victim, setup.survivor):
        core.create_namespaced_pod(kube_namespace, media_pod(node.node_id))
    operator = operator_on_fleet(kube, start_operator, kube_namespace, redis_server.url, "60")
    wait_until(  # kopf has listed both pods: the deletion is an event it sees
        "the pods seen",
        lambda: operator.log().count("Handler 'media_pod_event' succeeded") >= 2,
        operator=operator,
    )
    core.delete_namespaced_pod(setup.victim.node_id, kube_namespace, grace_period_seconds=0)
    told = f"media pod {setup.victim.node_id} deleted without grace"
    wait_until("the operator told of the deletion", lambda: told in operator.log(), operator=operator)
    a, b = setup.parties[setup.moving[0]]
    with Stream(
        a, *setup.targets[setup.moving[0]][:1], b, setup.targets[setup.moving[0]][1]
    ).running() as stream:
        # never while its lease is live: the window closes after three lease lifetimes (3 s each)
        window = time.monotonic() + 9.0
        while time.monotonic() < window:
            owners = {setup.redis.hget(f"karl:call:{c}", "owner") for c in setup.moving}
            assert owners == {setup.victim.node_id}, owners
            time.sleep(0.25)
        stream.flowing(10)
    assert stream.received == stream.sent
    setup.victim.kill()
    wait_until(
        "the victim's calls on the survivor, well within the 60 s grace",
        setup.moved,
        timeout=30.0,
        operator=operator,
    )
    setup.talk_again()


def test_media_pods_on_a_kubernetes_node_gone_not_ready_have_their_calls_moved_without_the_grace(
    kube: Any,
    start_operator: Callable[..., Operator],
    kube_namespace: str,
    fleet: Any,
    redis_server: Any,
    webhook_receiver: Any,
    worker: str,
) -> None:
    """As above, but the pod stays: its Kubernetes node goes NotReady (the test sets the node's status,
    as the node-lifecycle controller would) while the media node's process is dead."""
    setup = fleet_with_calls(fleet, redis_server, webhook_receiver, "op-notready")
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(kube_namespace, media_pod(setup.victim.node_id, worker))
    core.create_namespaced_pod(kube_namespace, media_pod(setup.survivor.node_id))
    operator = operator_on_fleet(kube, start_operator, kube_namespace, redis_server.url, "60")
    setup.victim.kill()
    lost = {
        **READY,
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting",
    }
    core.patch_node_status(worker, {"status": {"conditions": [lost]}})
    wait_until(
        "the victim's calls on the survivor, well within the 60 s grace",
        setup.moved,
        timeout=30.0,
        operator=operator,
    )
    assert (
        f"media pod {setup.victim.node_id} on Kubernetes node {worker}, which is not ready" in operator.log()
    )
    setup.talk_again()


def test_a_gracefully_deleted_media_pod_drains_first_then_hands_its_calls_over(
    kube: Any,
    start_operator: Callable[..., Operator],
    kube_namespace: str,
    fleet: Any,
    redis_server: Any,
    webhook_receiver: Any,
    worker: str,
) -> None:
    """The kubelet's part played by the test, on media pods named like real media nodes of a fleet: the
    victim's pod is deleted with a grace period. The kubelet runs the `preStop` hook the operator wrote
    into the pod template (read back from the API server, run by a real shell): the node drains — new
    calls go to the other node, its calls in progress keep their RTP, and the operator moves nothing.
    Then SIGTERM: the calls left are handed over after the node's shutdown grace, and talk again at
    the survivor's address; the kubelet's last delete (grace 0) is not taken for a force-delete."""
    key = "operate:" + secrets.token_urlsafe(16)
    control = 12000  # the CRD's default controlStart: ordinal n's API port is control + 4n + 1
    node_env = {
        f"node-{k}": {
            "KARL_API_PORT": str(control + 4 * k + 1),
            "KARL_API_KEYS": key,
            # long enough for the checks below: a draining node hands its calls over once it runs out
            "KARL_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE),
        }
        for k in range(2)
    }
    setup = fleet_with_calls(fleet, redis_server, webhook_receiver, "op-graceful", **node_env)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    operator = operator_on_fleet(kube, start_operator, kube_namespace, redis_server.url, "60")
    template = wait_until(
        "the media StatefulSet",
        lambda: _statefulset_or_none(apps, kube_namespace),
        operator=operator,
    ).spec.template.spec.containers[0]
    assert template.lifecycle.pre_stop._exec.command[:2] == ["/bin/sh", "-c"]
    for node in (setup.victim, setup.survivor):
        pod = media_pod(node.node_id, worker)  # on a node: a graceful deletion waits for the kubelet
        pod["spec"]["containers"][0]["lifecycle"] = {
            "preStop": {"exec": {"command": template.lifecycle.pre_stop._exec.command}}
        }
        core.create_namespaced_pod(kube_namespace, pod)

    a, b = setup.parties[setup.moving[0]]
    to_a_side, to_b_side = setup.targets[setup.moving[0]]
    with Stream(a, to_a_side, b, to_b_side).running() as stream:
        core.delete_namespaced_pod(setup.victim.node_id, kube_namespace, grace_period_seconds=30)
        pod = core.read_namespaced_pod(setup.victim.node_id, kube_namespace)
        assert pod.metadata.deletion_timestamp is not None  # terminating: now the kubelet's hook
        hook = pod.spec.containers[0].lifecycle.pre_stop._exec.command
        environment = {
            "PATH": os.environ["PATH"],
            "POD_NAME": pod.metadata.name,
            "HOST_IP": setup.victim.ns_ip,
            "KARL_API_KEYS": key,
        }
        subprocess.run(hook, env=environment, check=True, timeout=15)
        drained_at = time.monotonic()
        assert _health(setup.victim, "/ready") == 503  # out of the router's placement
        ip = setup.survivor.ns_ip
        newcomer = "op-graceful-new@test"
        wait_until(
            "a new call placed on the survivor",
            lambda: (
                offer(setup.router.ng, newcomer, a, ip)["result"] == "ok"
                and setup.redis.hget(f"karl:call:{newcomer}", "owner") == setup.survivor.node_id
            ),
            operator=operator,
        )
        stream.flowing(20)  # the calls in progress go on on the draining node
        owners = {setup.redis.hget(f"karl:call:{c}", "owner") for c in setup.moving}
        elapsed = time.monotonic() - drained_at
        assert elapsed < SHUTDOWN_GRACE, f"checked {elapsed:.1f} s after the drain: past the node's hand-over"
        assert owners == {setup.victim.node_id}, owners
    assert stream.received == stream.sent
    assert "deleted without grace" not in operator.log()

    # SIGTERM (the kubelet, after the hook): the calls left go over after KARL_SHUTDOWN_GRACE
    setup.victim.proc.send_signal(signal.SIGTERM)
    wait_until(
        "the victim's calls on the survivor", setup.moved, timeout=SHUTDOWN_GRACE + 30.0, operator=operator
    )
    core.delete_namespaced_pod(setup.victim.node_id, kube_namespace, grace_period_seconds=0)
    setup.talk_again()
    assert "deleted without grace" not in operator.log()


SHUTDOWN_GRACE = 12
"""The media nodes' KARL_SHUTDOWN_GRACE in the graceful-deletion test."""


def _statefulset_or_none(apps: Any, namespace: str) -> Any:
    try:
        return apps.read_namespaced_stateful_set("fleet-media", namespace)
    except client.exceptions.ApiException:
        return None


def _health(node: Any, path: str) -> int:
    try:
        with urllib.request.urlopen(f"{node.url('health')}{path}", timeout=3) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@dataclass
class HostedFleet:
    """A KarlCluster whose media pods the test runs on this host as the kubelet would: each pod Running
    and Ready on 127.0.0.1 (host network: its pod IP is the host's), each played by a real `karl`
    process on the ports its ordinal gives, with the API key of the fleet's generated Secret."""

    control: int
    key: str
    nodes: list[Any]

    def api(self, ordinal: int, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control + 4 * ordinal + 1}{path}",
            headers={"X-API-Key": self.key.split(":", 1)[1]},
        )
        with urllib.request.urlopen(request, timeout=3) as reply:
            found: dict[str, Any] = json.loads(reply.read())
            return found

    def call(self, ordinal: int, call_id: str) -> dict[str, str]:
        """An answered call on the node with this ordinal; its NG ids."""
        from karl_testkit import make_party, sdp

        node, a, b = self.nodes[ordinal], make_party(), make_party()
        ids = {"call-id": call_id, "from-tag": "A"}
        assert node.ng.request({"command": "offer", **ids, "sdp": sdp(a.port)})["result"] == "ok"
        answered = node.ng.request({"command": "answer", **ids, "to-tag": "B", "sdp": sdp(b.port)})
        assert answered["result"] == "ok", answered
        return ids


@pytest.fixture
def hosted_fleet(
    kube: Any, start_operator: Callable[..., Operator], kube_namespace: str, tmp_path: Path
) -> Iterator[Callable[[], tuple[Operator, HostedFleet]]]:
    """`hosted_fleet()`: the operator, and KarlCluster `fleet` with two media pods run here."""
    from karl_testkit import free_port_block, start_karl_at

    objects, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    nodes: list[Any] = []

    def make() -> tuple[Operator, HostedFleet]:
        control, rtp = free_port_block(8, even=False), free_port_block(80)
        ports = {"controlStart": control, "rtpStart": rtp, "rtpPerPod": 40}
        spec = {"mediaNodes": {"replicas": 2, "maxSessions": 10, "ports": ports}}
        operator = start_operator()
        create(objects, kube_namespace, cluster("fleet", spec))
        wait_until("the fleet's Secret", lambda: _secret_or_none(core, kube_namespace), operator=operator)
        key = base64.b64decode(
            core.read_namespaced_secret("fleet-fleet", kube_namespace).data["api-keys"]
        ).decode()

        def pods_running() -> bool:
            pods = core.list_namespaced_pod(kube_namespace, label_selector=MEDIA_SELECTOR).items
            for pod in pods:
                status = {
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "hostIPs": [{"ip": "127.0.0.1"}],
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
                core.patch_namespaced_pod_status(pod.metadata.name, kube_namespace, {"status": status})
            return len(pods) == 2

        wait_until("two media pods", pods_running, operator=operator)
        for ordinal in range(2):
            env = {
                "KARL_NODE_ID": f"fleet-media-{ordinal}",
                "KARL_API_ADDRESS": "127.0.0.1",
                "KARL_API_PORT": str(control + 4 * ordinal + 1),
                "KARL_HEALTH_PORT": str(control + 4 * ordinal + 2),
                "KARL_METRICS_PORT": str(control + 4 * ordinal + 3),
                "KARL_API_KEYS": key,
            }
            ng = control + 4 * ordinal
            nodes.append(start_karl_at(tmp_path, "127.0.0.2", 40, ng, rtp + 40 * ordinal, env))
        return operator, HostedFleet(control, key, nodes)

    yield make
    for node in nodes:
        node.stop()


def test_a_scale_down_drains_the_pods_that_go_and_keeps_them_until_their_calls_end(
    kube: Any, kube_namespace: str, hosted_fleet: Callable[[], tuple[Operator, HostedFleet]]
) -> None:
    """Two media pods played by real `karl` processes. `/scale` to 1 while ordinal 1 has a call: the
    operator drains it (its API says so) and the StatefulSet keeps two pods; back to 2, it takes calls
    again; to 1 again, drained again; the call ends, and the StatefulSet goes to one."""
    objects, apps = client.CustomObjectsApi(kube), client.AppsV1Api(kube)
    operator, hosted = hosted_fleet()
    ids = hosted.call(1, "draining-call")
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "fleet", {"spec": {"replicas": 1}}
    )

    def draining(ordinal: int) -> bool:
        return bool(hosted.api(ordinal, "/api/v1/stats")["draining"])

    wait_until("ordinal 1 draining", lambda: draining(1), operator=operator)
    assert not draining(0)  # the pod that stays takes calls
    assert apps.read_namespaced_stateful_set("fleet-media", kube_namespace).spec.replicas == 2
    # the scale-down undone (an HPA changing its mind) before the pod went: it takes calls again
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "fleet", {"spec": {"replicas": 2}}
    )
    wait_until(
        "ordinal 1 undrained", lambda: not hosted.api(1, "/api/v1/stats")["draining"], operator=operator
    )
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, kube_namespace, PLURAL, "fleet", {"spec": {"replicas": 1}}
    )
    wait_until(
        "ordinal 1 draining again", lambda: hosted.api(1, "/api/v1/stats")["draining"], operator=operator
    )
    assert hosted.nodes[1].ng.request({"command": "delete", **ids, "delete-delay": 0})["result"] == "ok"
    wait_until(
        "the StatefulSet down to one pod once the call ended",
        lambda: apps.read_namespaced_stateful_set("fleet-media", kube_namespace).spec.replicas == 1,
        operator=operator,
    )


def _doc_scrape_job() -> dict[str, Any]:
    """The Prometheus scrape job docs/kubernetes.md gives."""
    found: dict[str, Any] = yaml.safe_load(documented_yaml("- job_name: karl-media"))[0]
    return found


def _relabelled(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' relabelling (the `keep` and `replace` actions the documented job uses, with
    Prometheus' defaults: `;` separator, anchored regex `(.*)`, replacement `$1`); None: dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if match is None:
                return None
        elif match is not None:
            replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(replacement)
    return labels


def _pod_meta_labels(pod: Any) -> dict[str, str]:
    """The `__meta_kubernetes_pod_*` labels Prometheus' pod discovery gives a pod (those used here)."""

    def name(key: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", key)

    labels = {
        "__address__": pod.status.pod_ip or "",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": pod.metadata.namespace,
        "__meta_kubernetes_pod_name": pod.metadata.name,
        "__meta_kubernetes_pod_ip": pod.status.pod_ip or "",
    }
    for key, value in (pod.metadata.labels or {}).items():
        labels[f"__meta_kubernetes_pod_label_{name(key)}"] = value
    for key, value in (pod.metadata.annotations or {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{name(key)}"] = value
    return labels


def test_the_documented_scrape_job_finds_each_media_pod_on_its_own_port(
    kube: Any, kube_namespace: str, hosted_fleet: Callable[[], tuple[Operator, HostedFleet]]
) -> None:
    """The operator writes each running media pod's metrics port on it (`prometheus.io/port`). The
    scrape job of docs/kubernetes.md, applied to the pods as the API server has them, yields one
    target per media pod — its pod IP (the host's), its own port, labelled with its namespace and pod
    name — and each serves its node's `karl_sessions_active`, what an HPA on `metric: sessions` reads
    through prometheus-adapter. (Debian's Prometheus is built without Kubernetes discovery, so the
    test applies the job's relabelling itself.)"""
    core, port = client.CoreV1Api(kube), "prometheus.io/port"
    operator, hosted = hosted_fleet()

    def annotated() -> bool:
        pods = core.list_namespaced_pod(kube_namespace, label_selector=MEDIA_SELECTOR)
        ports = {p.metadata.name: (p.metadata.annotations or {}).get(port) for p in pods.items}
        return ports == {f"fleet-media-{n}": str(hosted.control + 4 * n + 3) for n in range(2)}

    wait_until("each media pod's metrics port on it", annotated, operator=operator)
    hosted.call(1, "scraped-call")

    job = _doc_scrape_job()
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    every_pod = core.list_namespaced_pod(kube_namespace).items  # the router's pods too: not kept
    targets = [_relabelled(job["relabel_configs"], _pod_meta_labels(pod)) for pod in every_pod]
    kept = [t for t in targets if t is not None]
    assert sorted(t["pod"] for t in kept) == ["fleet-media-0", "fleet-media-1"]
    sessions = {}
    for target in kept:
        assert target["namespace"] == kube_namespace
        url = f"http://{target['__address__']}{target['__metrics_path__']}"
        with urllib.request.urlopen(url, timeout=3) as reply:
            text = reply.read().decode()
        found = re.search(r"^karl_sessions_active (\S+)$", text, re.MULTILINE)
        assert found, text[:500]
        sessions[target["pod"]] = float(found.group(1))
    assert sessions == {"fleet-media-0": 0.0, "fleet-media-1": 1.0}


def _secret_or_none(core: Any, namespace: str) -> Any:
    try:
        return core.read_namespaced_secret("fleet-fleet", namespace)
    except client.exceptions.ApiException:
        return None
