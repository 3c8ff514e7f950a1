"""The kopf handlers of `karl-operator run`: a KarlCluster's children applied as `karl_operator.children`
builds them, and its status written. Thin: what to build is pure (`children`, `cluster_status`), here is
only the applying.

- create / update / resume (an operator that restarts takes every KarlCluster up again): every child is
  applied with server-side apply (field manager `karl-operator`, conflicts forced: the operator owns what
  it builds), the HPA removed when autoscaling is turned off; nothing else is touched;
- a timer writes the status every few seconds: replicas, nodes ready, the `/scale` selector, the
  conditions `Ready`, `Progressing`, `Degraded` with `observedGeneration`;
- deletion is the garbage collector's (owner references): no finalizer, nothing blocks an uninstall;
- a spec the server took but the operator cannot carry out (a Secret it names is missing, a child the
  server refuses) sets `Degraded` with the field and an Event, and is retried; it never crashes the
  operator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import secrets
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from karl_core.certificates import self_signed_pem
from karl_core.config import KarlConfig
from karl_operator.children import (
    desired_objects,
    fleet_secret,
    fleet_secret_name,
    media_api_port,
    media_pod_annotations,
    redis_address,
    selector_string,
)
from karl_operator.failover.controller import FailoverController
from karl_operator.failover.service import failover_until
from karl_operator.peering import works

GROUP, VERSION, PLURAL = "karl.io", "v1alpha1", "karlclusters"
FIELD_MANAGER = "karl-operator"
STATUS_INTERVAL = 5.0
RETRY_DELAY = 5.0
DRAIN_CHECK = 2.0
RESYNC_INTERVAL = float(os.environ.get("KARL_OPERATOR_RESYNC", "60"))
FAILOVER_STOP_TIMEOUT = 15.0

log = logging.getLogger("karl.operator")

_api: client.ApiClient | None = None


def api() -> client.ApiClient:
    """One API client for the process: in a pod its ServiceAccount, else the kubeconfig (KUBECONFIG)."""
    global _api
    if _api is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        _api = client.ApiClient()
    return _api


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's own bookkeeping in annotations: the KarlCluster's status is Karl's, its schema prunes the rest
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="karl.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="karl.io")
    settings.posting.level = logging.WARNING  # Events for problems, not for every handler run
    settings.watching.server_timeout = 60
    # only media pods: the API server filters (not every pod of the cluster in the operator's memory)
    settings.watching.label_selectors["pods"] = ",".join(
        f"{key}={value}" for key, value in MEDIA_PODS.items()
    )


SPEC_REFUSALS = frozenset({400, 403, 422})
"""What the API server answers when a child as the spec asks for it cannot be: invalid, or not allowed
(403: RBAC or admission). Anything else (409, 429, 5xx, a broken connection) is passing: retried."""


class SpecProblem(Exception):
    """The spec names something the operator cannot use: `field` says which part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _required_secrets(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    spec = body["spec"]
    wanted = []
    if spec["redis"].get("passwordSecret"):
        wanted.append(("spec.redis.passwordSecret", spec["redis"]["passwordSecret"], "password"))
    if spec["cdr"].get("databaseSecret"):
        wanted.append(("spec.cdr.databaseSecret", spec["cdr"]["databaseSecret"], "url"))
    return wanted


def _check_secrets(body: dict[str, Any]) -> None:
    core = client.CoreV1Api(api())
    namespace = body["metadata"]["namespace"]
    for field, name, key in _required_secrets(body):
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SpecProblem(field, f"Secret {name} not found in namespace {namespace}") from None
            raise
        if key not in (secret.data or {}):
            raise SpecProblem(field, f"Secret {name} has no key {key!r}")


def ensure_fleet_secret(body: dict[str, Any]) -> bool:
    """Create the KarlCluster's generated Secret (API key, DTLS certificate) once; never change it
    after (the certificate's fingerprint is in calls' SDP). Returns whether it was created."""
    core = client.CoreV1Api(api())
    namespace = body["metadata"]["namespace"]
    try:
        core.read_namespaced_secret(fleet_secret_name(body), namespace)
        return False
    except ApiException as error:
        if error.status != 404:
            raise
    pem = self_signed_pem(f"karl {body['metadata']['name']}", days=3650).decode()
    manifest = fleet_secret(body, secrets.token_urlsafe(32), pem)
    try:
        core.create_namespaced_secret(namespace, manifest)  # type: ignore[arg-type]  # (it takes dicts too)
    except ApiException as error:
        if error.status == 409:  # made meanwhile (another reconcile): the first one stays
            return False
        raise
    return True


_drains: dict[str, float] = {}
"""Media pods (uid) a scale-down drains, and when it started (monotonic)."""


def _fleet_api_key(body: dict[str, Any]) -> str:
    secret = client.CoreV1Api(api()).read_namespaced_secret(
        fleet_secret_name(body), body["metadata"]["namespace"]
    )
    return base64.b64decode((secret.data or {}).get("api-keys", "")).decode().split(":", 1)[-1]


def _node_api(host: str, port: int, path: str, key: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{host}:{port}{path}",
        data=b"{}" if method == "POST" else None,
        method=method,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=3) as reply:
        found: dict[str, Any] = json.loads(reply.read())
        return found


def media_replicas_now(body: dict[str, Any]) -> int:
    """The media nodes to run now. Scaling down, the pods that will go are drained first (no new calls,
    through their API) and the StatefulSet keeps them until their calls have ended or their
    `terminationGracePeriodSeconds` has passed; then they go."""
    wanted = int(body["spec"]["mediaNodes"]["replicas"])
    statefulset = _statefulset(body)
    current = int(statefulset.spec.replicas or 0) if statefulset is not None else wanted
    if current <= wanted:
        return wanted
    grace = float(body["spec"]["mediaNodes"]["terminationGracePeriodSeconds"])
    core = client.CoreV1Api(api())
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    key = _fleet_api_key(body)
    busy = False
    for ordinal in range(wanted, current):
        try:
            pod = core.read_namespaced_pod(f"{name}-media-{ordinal}", namespace)
        except ApiException as error:
            if error.status == 404:
                continue
            raise
        host = pod.status.host_ip if pod.status else None
        if not host or pod.metadata is None:
            continue  # not running anywhere: no call to wait for
        port = media_api_port(body, ordinal)
        try:
            if pod.metadata.uid not in _drains:
                _node_api(host, port, "/api/v1/admin/drain", key, "POST")
                _drains[str(pod.metadata.uid)] = time.monotonic()
                log.info("draining media pod %s before the scale-down", pod.metadata.name)
            active = int(_node_api(host, port, "/api/v1/stats", key).get("active_sessions", 0))
        except (OSError, ValueError) as exc:
            log.warning("media pod %s: its drain could not be followed (%s): it goes", pod.metadata.name, exc)
            continue
        if active and time.monotonic() - _drains[str(pod.metadata.uid)] < grace:
            busy = True
    return current if busy else wanted


def apply_children(body: dict[str, Any], media_replicas: int | None = None) -> list[str]:
    """Apply every child; returns their `Kind/name`. Removes an HPA that autoscaling no longer wants."""
    dynamic = DynamicClient(api())  # type: ignore[no-untyped-call]
    namespace = body["metadata"]["namespace"]
    applied = []
    for manifest in desired_objects(body, media_replicas):
        resource = dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        name = manifest["metadata"]["name"]
        try:
            resource.server_side_apply(
                body=manifest,
                name=name,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except DynamicApiError as error:
            if error.status in SPEC_REFUSALS:
                raise SpecProblem(f"{manifest['kind']}/{name}", _reason(error)) from None
            raise  # the server busy, unreachable, a conflict: retried, not the spec's fault
        applied.append(f"{manifest['kind']}/{name}")
    if not body["spec"]["autoscaling"]["enabled"]:
        hpa = dynamic.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
        try:
            hpa.delete(name=f"{body['metadata']['name']}-media", namespace=namespace)
        except DynamicApiError as error:
            if error.status != 404:
                raise
    return applied


def _reason(error: DynamicApiError) -> str:
    summary = getattr(error, "summary", None)
    return str(summary() if callable(summary) else error)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, before: list[dict[str, Any]]
) -> dict[str, Any]:
    """A status condition; its `lastTransitionTime` moves only when its status changes."""
    status = "True" if ok else "False"
    previous = next((c for c in before if c.get("type") == kind), None)
    since = (
        _now() if previous is None or previous.get("status") != status else previous.get("lastTransitionTime")
    )
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or _now(),
    }


def cluster_status(
    body: dict[str, Any], statefulset: Any, problem: str | None, before: list[dict[str, Any]]
) -> dict[str, Any]:
    """The status the KarlCluster shows, from its media nodes' StatefulSet (None: not there yet).
    `Ready` means the spec is carried out: every media node ready *and* on the StatefulSet's latest
    revision — during a rollout (a new image, new resources) the nodes still on the old pod template do
    not count, so `Progressing` stays until the last one is replaced."""
    generation = int(body["metadata"].get("generation", 0))
    wanted = int(body["spec"]["mediaNodes"]["replicas"])
    found = getattr(statefulset, "status", None)
    replicas = int(getattr(found, "replicas", 0) or 0)
    ready = int(getattr(found, "ready_replicas", 0) or 0)
    updated = int(getattr(found, "updated_replicas", 0) or 0)
    observed = int(getattr(found, "observed_generation", 0) or 0)
    current = statefulset is not None and observed >= int(statefulset.metadata.generation or 0)
    revision = getattr(found, "update_revision", None)
    # (a scale-up adds pods at the latest revision: it is no rollout, only nodes not ready yet)
    rolled_out = current and getattr(found, "current_revision", None) == revision and updated >= replicas
    all_ready = current and ready == wanted and replicas == wanted
    settled = all_ready and rolled_out
    if problem is not None:
        degraded = condition("Degraded", True, "InvalidSpec", problem, generation, before)
    else:
        degraded = condition("Degraded", False, "AsExpected", "", generation, before)
    nodes = f"{ready} of {wanted} media nodes ready"
    if current and not rolled_out:
        nodes += f", {updated} of {wanted} on the latest revision"
    if not current:
        reason = "Reconciling"
    elif not rolled_out:
        reason = "RollingOut"
    elif not all_ready:
        reason = "NodesNotReady"
    else:
        reason = "AllNodesReady"
    progressing = condition(
        "Progressing",
        not settled and problem is None,
        "Stable" if settled else reason,
        nodes,
        generation,
        before,
    )
    ready_condition = condition("Ready", settled and problem is None, reason, nodes, generation, before)
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "nodesReady": f"{ready}/{wanted}",
        "selector": selector_string(body),
        "conditions": [ready_condition, progressing, degraded],
    }


def _statefulset(body: dict[str, Any]) -> Any:
    try:
        return client.AppsV1Api(api()).read_namespaced_stateful_set(
            f"{body['metadata']['name']}-media", body["metadata"]["namespace"]
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _active_calls(body: dict[str, Any]) -> int | None:
    """The calls on the fleet's media nodes, from their leases as its failover controller last read
    them (None: not known yet, or another operator's controller leads)."""
    controller = _controllers.get((body["metadata"]["namespace"], body["metadata"]["name"]))
    if controller is None or controller.last_tick is None or not controller.leads:
        return None
    return sum(lease.load for lease in controller.members.values() if lease is not None)


_outcome: dict[tuple[str, str], tuple[int, str | None]] = {}
"""Each KarlCluster's last reconcile: the generation it carried out (or tried to) and its problem (None:
none). The status timer reports this, not what the body it was handed says: that body may predate the
last reconcile's own status write, and would bring back a `Degraded` just cleared."""


def _key(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _write_status(body: dict[str, Any]) -> None:
    generation, problem = _outcome[_key(body)]
    before = list((body.get("status") or {}).get("conditions") or [])
    observed = {**body, "metadata": {**body["metadata"], "generation": generation}}
    status = cluster_status(observed, _statefulset(body), problem, before)
    calls = _active_calls(body)
    if calls is not None:
        status["activeCalls"] = calls
    client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
        GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body["metadata"]["name"], {"status": status}
    )


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body: kopf.Body, **_: Any) -> None:
    manifest = dict(body)
    generation = int(manifest["metadata"].get("generation", 0))
    try:
        _check_secrets(manifest)
        ensure_fleet_secret(manifest)
        replicas = media_replicas_now(manifest)
        apply_children(manifest, replicas)
    except SpecProblem as problem:
        kopf.warn(body, reason="InvalidSpec", message=str(problem))
        _outcome[_key(manifest)] = (generation, str(problem))
        _write_status(manifest)
        raise kopf.TemporaryError(str(problem), delay=RETRY_DELAY) from None
    _outcome[_key(manifest)] = (generation, None)
    _write_status(manifest)
    if replicas != manifest["spec"]["mediaNodes"]["replicas"]:
        raise kopf.TemporaryError("media pods to go are draining their calls", delay=DRAIN_CHECK)


def resync(manifest: dict[str, Any]) -> None:
    """Children changed or deleted behind the operator's back (`kubectl edit`, `kubectl delete`) are put
    back as the spec says (server-side apply: a child already right is not written)."""
    outcome = _outcome.get(_key(manifest))
    if outcome is None or outcome[1] is not None:
        return  # not reconciled yet, or a problem that reconcile retries itself
    if outcome[0] != int(manifest["metadata"].get("generation", 0)):
        return  # a change on its way: reconcile applies it
    try:
        apply_children(manifest, media_replicas_now(manifest))
    except SpecProblem as problem:  # (e.g. an admission policy added since): said, and tried again
        log.warning("KarlCluster %s/%s: %s", *_key(manifest), problem)


def failover_config(body: dict[str, Any], password: str) -> KarlConfig:
    """The failover controller's settings for one KarlCluster: its Redis; the restart grace from the
    operator's own KARL_FAILOVER_RESTART_GRACE (default 2 s); a controller id of its own."""
    database: dict[str, Any] = {
        "redis_enabled": True,
        "redis_addr": redis_address(body),
        "redis_prefix": body["spec"]["redis"]["prefix"],
    }
    if password:
        database["redis_password"] = password
    grace = os.environ.get("KARL_FAILOVER_RESTART_GRACE")
    if grace:
        database["failover_restart_grace"] = int(grace)
    meta = body["metadata"]
    controller = f"{os.environ.get('HOSTNAME') or 'karl-operator'}.{meta['namespace']}.{meta['name']}"
    return KarlConfig.model_validate({"database": database, "node": {"id": controller}})


def _redis_password(body: dict[str, Any]) -> str:
    name = body["spec"]["redis"].get("passwordSecret")
    if not name:
        return ""
    secret = client.CoreV1Api(api()).read_namespaced_secret(name, body["metadata"]["namespace"])
    return base64.b64decode((secret.data or {}).get("password", "")).decode()


_controllers: dict[tuple[str, str], FailoverController] = {}
"""The failover controller of each KarlCluster (namespace, name) this operator runs."""


# ------------------------------------------------------------------ beside kopf's handlers, no finalizer
# kopf's timers and daemons put a finalizer on every KarlCluster, which blocks its deletion (and its
# namespace's) once the operator is gone. So the periodic work runs in one task of the operator's own,
# over the KarlClusters kopf's events show it, and only while this replica works (peering).

_clusters: dict[tuple[str, str], dict[str, Any]] = {}
"""Every KarlCluster this operator sees, as last seen (kopf's events)."""


@kopf.on.event(GROUP, VERSION, PLURAL)
def karlcluster_event(event: kopf.RawEvent, **_: Any) -> None:
    body: dict[str, Any] = dict(event.get("object") or {})
    if not body.get("metadata"):
        return
    if event.get("type") == "DELETED":
        _clusters.pop(_key(body), None)
        _outcome.pop(_key(body), None)
    else:
        _clusters[_key(body)] = body


@dataclass
class _Failover:
    """One KarlCluster's failover controller, run by this operator."""

    redis: tuple[Any, ...]  # what it was started with: a change restarts it
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class Peering:
    """How this replica learns whether it works: kopf's peering object and its own priority (None:
    standalone, it always works)."""

    name: str | None = None
    priority: int = 0
    namespaces: tuple[str, ...] = ()


peering = Peering()
"""Set by `karl-operator run` before kopf starts."""


def _working() -> bool:
    if peering.name is None:
        return True
    objects = client.CustomObjectsApi(api())
    try:
        found: list[Any]
        if peering.namespaces:
            found = [
                objects.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", peering.name)
                for ns in peering.namespaces
            ]
        else:
            found = [objects.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering.name)]
    except ApiException as error:
        log.warning("peering object %s not readable (%s): standing by", peering.name, error.reason)
        return False
    now = datetime.datetime.now(datetime.UTC)
    return all(works(dict(obj.get("status") or {}), peering.priority, now) for obj in found)


def _redis_of(body: dict[str, Any]) -> tuple[Any, ...]:
    redis = body["spec"]["redis"]
    return redis_address(body), redis["prefix"], redis.get("passwordSecret")


async def _start_failover(key: tuple[str, str], body: dict[str, Any]) -> _Failover | None:
    try:
        password = await asyncio.to_thread(_redis_password, body)
    except ApiException as error:
        log.warning("KarlCluster %s/%s: spec.redis.passwordSecret: %s", *key, error.reason)
        return None
    stop = asyncio.Event()

    def running(controller: FailoverController | None) -> None:
        if controller is None:
            _controllers.pop(key, None)
        else:
            _controllers[key] = controller

    task = asyncio.create_task(failover_until(failover_config(body, password), stop.wait, running=running))
    return _Failover(_redis_of(body), stop, task)


async def _stop_failover(failover: _Failover) -> None:
    failover.stop.set()
    try:
        await asyncio.wait_for(failover.task, FAILOVER_STOP_TIMEOUT)
    except (TimeoutError, asyncio.CancelledError):
        pass
    except Exception as error:  # (it ended badly: nothing left to stop)
        log.warning("a failover controller ended with %r", error)


async def fleet_loop() -> None:
    """Every `STATUS_INTERVAL`: each KarlCluster's status; every `RESYNC_INTERVAL`: its children put
    back as they should be; all along: one failover controller per KarlCluster (restarted when its
    Redis changes, stopped when it goes). Only while this replica works; a standby stops its
    controllers (the working replica's take over once their Redis leadership lapses)."""
    failovers: dict[tuple[str, str], _Failover] = {}
    last_resync = time.monotonic()
    try:
        while True:
            working = await asyncio.to_thread(_working)
            wanted = dict(_clusters) if working else {}
            for key in [
                k for k, f in failovers.items() if k not in wanted or f.redis != _redis_of(wanted[k])
            ]:
                await _stop_failover(failovers.pop(key))
            for key, body in wanted.items():
                if key not in failovers or failovers[key].task.done():
                    started = await _start_failover(key, body)
                    if started is not None:
                        failovers[key] = started
            resync_now = time.monotonic() - last_resync >= RESYNC_INTERVAL
            if resync_now:
                last_resync = time.monotonic()
            for key, body in wanted.items():
                try:
                    if key in _outcome:  # (none before this operator's first reconcile of it)
                        await asyncio.to_thread(_write_status, body)
                    if resync_now:
                        await asyncio.to_thread(resync, body)
                except (ApiException, DynamicApiError, OSError) as error:
                    log.warning("KarlCluster %s/%s: %s (tried again)", *key, error)
            await asyncio.sleep(STATUS_INTERVAL)
    finally:
        for failover in failovers.values():
            await _stop_failover(failover)


@kopf.on.startup()
async def start_fleet_loop(memo: kopf.Memo, **_: Any) -> None:
    memo["fleet_loop"] = asyncio.create_task(fleet_loop())


@kopf.on.cleanup()
async def stop_fleet_loop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("fleet_loop")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


MEDIA_PODS = {"app.kubernetes.io/component": "media", "app.kubernetes.io/managed-by": "karl-operator"}
_graceful: set[str] = set()
"""Media pods (uid) whose deletion this operator saw start with a grace period: they drain."""


@kopf.on.event("", "v1", "pods", labels=MEDIA_PODS)
def media_pod_event(event: kopf.RawEvent, **_: Any) -> None:
    """A media pod deleted with no grace (force-deleted, or its node gone): its node will not come back
    to take its calls, so their failover skips the restart grace — they move once its lease has
    lapsed, never while it is live. A graceful deletion is left to the pod's own drain."""
    pod = event.get("object") or {}
    meta = pod.get("metadata") or {}
    uid = str(meta.get("uid", ""))
    grace = meta.get("deletionGracePeriodSeconds")
    if not meta.get("deletionTimestamp") and event.get("type") != "DELETED":
        _annotate(dict(pod))
        return
    if uid in _graceful:
        # deleted with a grace first: the kubelet's last delete (grace 0) after the drain is no force
        if event.get("type") == "DELETED":
            _graceful.discard(uid)
        return
    if grace not in (0, None):
        _graceful.add(uid)
        return
    _gone(dict(pod), "deleted without grace")


def _annotate(pod: dict[str, Any]) -> None:
    """Write a media pod's own metrics port on it, for Prometheus (children.media_pod_annotations)."""
    wanted = media_pod_annotations(pod)
    if wanted is None:
        return
    meta = pod["metadata"]
    try:
        client.CoreV1Api(api()).patch_namespaced_pod(
            meta["name"], meta["namespace"], {"metadata": {"annotations": wanted}}
        )
    except ApiException as error:
        if error.status != 404:  # (gone meanwhile: nothing to scrape)
            log.warning("media pod %s: its metrics port not annotated (%s)", meta["name"], error.reason)


def _gone(pod: dict[str, Any], why: str) -> None:
    """Tell the failover controller of the pod's KarlCluster that the pod's node will not come back."""
    meta = pod.get("metadata") or {}
    instance = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    controller = _controllers.get((meta.get("namespace", ""), instance or ""))
    if controller is not None:
        log.info("media pod %s %s: its calls move once its lease lapses", meta.get("name"), why)
        controller.watch.known_gone(str(meta.get("name")))


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@kopf.on.event("", "v1", "nodes")
def kubernetes_node_event(event: kopf.RawEvent, **_: Any) -> None:
    """A Kubernetes node NotReady (or gone): the media pods on it will not come back by themselves."""
    node: dict[str, Any] = dict(event.get("object") or {})
    if event.get("type") != "DELETED" and _node_ready(node):
        return
    metadata: dict[str, Any] = dict(node.get("metadata") or {})
    name = metadata.get("name")
    if not name or not _controllers:
        return
    selector = ",".join(f"{key}={value}" for key, value in MEDIA_PODS.items())
    namespaces = {namespace for namespace, _ in _controllers}
    core = client.CoreV1Api(api())
    for namespace in namespaces:
        pods = core.list_namespaced_pod(
            namespace, label_selector=selector, field_selector=f"spec.nodeName={name}"
        )
        for pod in pods.items:
            meta: Any = pod.metadata
            found = {"metadata": {"name": meta.name, "namespace": namespace, "labels": meta.labels or {}}}
            _gone(found, f"on Kubernetes node {name}, which is not ready")
