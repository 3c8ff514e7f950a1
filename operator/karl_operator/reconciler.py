"""The kopf handlers of `karl-operator run` that carry out a KarlCluster: its children applied as
`karl_operator.children` builds them, and its status written. Thin: what to build is pure (`children`,
`cluster_status`), here is only the applying. What runs beside them (status refresh, resync, failover
controllers, pod and node watches) is `karl_operator.fleet_loop`.

- create / update / resume (an operator that restarts takes every KarlCluster up again): every child is
  applied with server-side apply (field manager `karl-operator`, conflicts forced: the operator owns what
  it builds), the HPA removed when autoscaling is turned off; nothing else is touched;
- the status: replicas, nodes ready, the `/scale` selector, the conditions `Ready`, `Progressing`,
  `Degraded` with `observedGeneration` (the generation the last reconcile carried out);
- deletion is the garbage collector's (owner references): no finalizer, nothing blocks an uninstall;
- a spec the server took but the operator cannot carry out (a Secret it names is missing, a child the
  server refuses) sets `Degraded` with the field and an Event, and is retried; it never crashes the
  operator.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from karl_core.certificates import self_signed_pem
from karl_operator.children import (
    desired_objects,
    fleet_secret,
    fleet_secret_name,
    media_api_port,
    selector_string,
)

GROUP, VERSION, PLURAL = "karl.io", "v1alpha1", "karlclusters"
FIELD_MANAGER = "karl-operator"
MEDIA_PODS = {"app.kubernetes.io/component": "media", "app.kubernetes.io/managed-by": "karl-operator"}
RETRY_DELAY = 5.0
DRAIN_CHECK = 2.0

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


@dataclass
class _Drain:
    """A media pod a scale-down drains: of which KarlCluster, its ordinal, where its API is, since when
    (monotonic)."""

    cluster: tuple[str, str]
    ordinal: int
    host: str
    port: int
    since: float


_drains: dict[str, _Drain] = {}
"""Media pods (uid) a scale-down drains."""


def draining(key: tuple[str, str]) -> bool:
    """Whether a scale-down of the KarlCluster drains some of its pods."""
    return any(drain.cluster == key for drain in list(_drains.values()))


def settle_drains(body: dict[str, Any]) -> None:
    """The fleet loop's check, every few seconds: kopf drops the retries of a scale-down whose spec
    went back to what was last carried out, so no reconcile would undrain its pods."""
    with cluster_lock(_key(body)):
        _undrain_kept(body, int(body["spec"]["mediaNodes"]["replicas"]))


def _undrain_kept(body: dict[str, Any], wanted: int) -> None:
    """A scale-down undone before its pods went (the HPA changing its mind): the pods that stay take
    calls again. Drains of pods that went are forgotten."""
    key = None
    for uid, drain in list(_drains.items()):
        if drain.cluster != _key(body):
            continue
        if drain.ordinal >= wanted:
            if _statefulset_replicas(body) <= drain.ordinal:
                del _drains[uid]  # (the pod went with the scale-down)
            continue
        key = key or _fleet_api_key(body)
        try:
            _node_api(drain.host, drain.port, "/api/v1/admin/undrain", key, "POST")
            log.info(
                "media pod %s-media-%d stays after all: undrained", body["metadata"]["name"], drain.ordinal
            )
        except OSError as exc:  # (a pod restarted since starts undrained anyway)
            log.warning(
                "media pod %s-media-%d: undrain failed (%s)", body["metadata"]["name"], drain.ordinal, exc
            )
        del _drains[uid]


def _statefulset_replicas(body: dict[str, Any]) -> int:
    statefulset = _statefulset(body)
    return int(statefulset.spec.replicas or 0) if statefulset is not None else 0


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
    _undrain_kept(body, wanted)
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
                _drains[str(pod.metadata.uid)] = _Drain(_key(body), ordinal, host, port, time.monotonic())
                log.info("draining media pod %s before the scale-down", pod.metadata.name)
            active = int(_node_api(host, port, "/api/v1/stats", key).get("active_sessions", 0))
        except (OSError, ValueError) as exc:
            log.warning("media pod %s: its drain could not be followed (%s): it goes", pod.metadata.name, exc)
            continue
        if active and time.monotonic() - _drains[str(pod.metadata.uid)].since < grace:
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


_outcome: dict[tuple[str, str], tuple[int, str | None]] = {}
"""Each KarlCluster's last reconcile: the generation it carried out (or tried to) and its problem (None:
none). The status timer reports this, not what the body it was handed says: that body may predate the
last reconcile's own status write, and would bring back a `Degraded` just cleared."""


def _key(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


_locks: dict[tuple[str, str], threading.Lock] = {}
"""One per KarlCluster: its reconcile (kopf's threads) and its resync (the fleet loop's) never apply
at the same time — a resync of the old spec must not land after the new spec's reconcile."""


def cluster_lock(key: tuple[str, str]) -> threading.Lock:
    return _locks.setdefault(key, threading.Lock())


def write_status(
    body: dict[str, Any], outcome: tuple[int, str | None], extra: dict[str, Any] | None = None
) -> None:
    """Write the status of the KarlCluster after the reconcile `outcome` (generation, problem);
    `extra`: more status fields (the fleet loop's `activeCalls`; None clears it)."""
    generation, problem = outcome
    before = list((body.get("status") or {}).get("conditions") or [])
    observed = {**body, "metadata": {**body["metadata"], "generation": generation}}
    status = {**cluster_status(observed, _statefulset(body), problem, before), **(extra or {})}
    client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
        GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body["metadata"]["name"], {"status": status}
    )


def carry_out(manifest: dict[str, Any]) -> tuple[SpecProblem | None, int]:
    """Apply the KarlCluster's children and write its status: the problem that stopped it (None: none)
    and the media nodes running now (fewer than the spec's while a scale-down drains). Used by kopf's
    handler below, and by the fleet loop for a KarlCluster this replica has not carried out yet (taking
    over from another replica, kopf does not run its resume handlers again)."""
    key, generation = _key(manifest), int(manifest["metadata"].get("generation", 0))
    with cluster_lock(key):
        try:
            _check_secrets(manifest)
            ensure_fleet_secret(manifest)
            replicas = media_replicas_now(manifest)
            apply_children(manifest, replicas)
        except SpecProblem as problem:
            _outcome[key] = (generation, str(problem))
            write_status(manifest, _outcome[key])
            return problem, 0
        _outcome[key] = (generation, None)
        write_status(manifest, _outcome[key])
    return None, replicas


_warned: dict[tuple[str, str], tuple[int, str]] = {}
"""The problem each KarlCluster's last `InvalidSpec` Event told of."""


def _never_standing_by() -> bool:
    return False


standing_by: Callable[[], bool] = _never_standing_by
"""Whether another replica works (`fleet_loop.working`, set there when replicas peer). kopf's pause
does not cover a listing it had begun: a replica that paused a moment after it started may still be
handed a KarlCluster, and must not act on it."""

STANDBY_RETRY = 3.0


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    if standing_by():
        # the working replica does it (and its own loop carries out what kopf does not hand it again)
        raise kopf.TemporaryError("another replica works: standing by", delay=STANDBY_RETRY)
    manifest = dict(body)
    key, generation = _key(manifest), int(manifest["metadata"].get("generation", 0))
    problem, replicas = carry_out(manifest)
    if problem is not None:
        if _warned.get(key) != (generation, str(problem)):  # (one Event per problem, not per retry)
            kopf.warn(body, reason="InvalidSpec", message=str(problem))
            _warned[key] = (generation, str(problem))
        # tried again soon, then less often: a fix is taken up within a minute
        raise kopf.TemporaryError(str(problem), delay=min(RETRY_DELAY * 2**retry, 60.0))
    if replicas != manifest["spec"]["mediaNodes"]["replicas"]:
        raise kopf.TemporaryError("media pods to go are draining their calls", delay=DRAIN_CHECK)


def resync(manifest: dict[str, Any]) -> None:
    """Children changed or deleted behind the operator's back (`kubectl edit`, `kubectl delete`) are put
    back as the spec says (server-side apply: a child already right is not written). `manifest`: the
    KarlCluster as just read from the API server."""
    key = _key(manifest)
    with cluster_lock(key):
        outcome = _outcome.get(key)
        if outcome is None or outcome[1] is not None:
            return  # not reconciled yet, or a problem that reconcile retries itself
        if outcome[0] != int(manifest["metadata"].get("generation", 0)):
            return  # a change on its way: reconcile applies it
        try:
            apply_children(manifest, media_replicas_now(manifest))
        except SpecProblem as problem:  # (e.g. an admission policy added since): said, and tried again
            log.warning("KarlCluster %s/%s: %s", *key, problem)


def forget(keep: set[tuple[str, str]]) -> None:
    """This replica no longer knows what it last did for the KarlClusters but `keep` (gone, or another
    replica works now): their status and resync wait for a reconcile of its own."""
    for key in [k for k in list(_outcome) if k not in keep]:
        _outcome.pop(key, None)


def outcome_of(key: tuple[str, str]) -> tuple[int, str | None] | None:
    return _outcome.get(key)
