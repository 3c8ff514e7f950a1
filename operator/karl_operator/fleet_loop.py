"""What `karl-operator run` does beside kopf's handlers, in one task of its own (`fleet_loop`): every few
seconds each KarlCluster's status; every `KARL_OPERATOR_RESYNC` seconds its children put back as they
should be; all along one failover controller per KarlCluster. And the pod and node watches that tell
those controllers which media nodes Kubernetes has lost, and give each media pod its metrics port.

Why not kopf's timers and daemons: they put a finalizer on every KarlCluster, which blocks its deletion
(and its namespace's) once the operator is gone. The loop reads the KarlClusters from the API server
each round, so a replica that was paused or lost its watch never acts on a KarlCluster as it was.

With several replicas (`--peering`) only the working one does any of it (`karl_operator.peering`): a
standby runs no failover controller, so the leader in Redis is always the replica that sees the pods.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from karl_core.config import KarlConfig
from karl_operator import reconciler
from karl_operator.children import media_pod_annotations, redis_address
from karl_operator.failover.controller import FailoverController
from karl_operator.failover.service import failover_until
from karl_operator.peering import works
from karl_operator.reconciler import (
    GROUP,
    MEDIA_PODS,
    PLURAL,
    VERSION,
    api,
    carry_out,
    draining,
    forget,
    outcome_of,
    resync,
    settle_drains,
    write_status,
)

STATUS_INTERVAL = 5.0
RESYNC_INTERVAL = float(os.environ.get("KARL_OPERATOR_RESYNC", "60"))
FAILOVER_STOP_TIMEOUT = 15.0

log = logging.getLogger("karl.operator")


@dataclass
class Scope:
    """What `karl-operator run` was told: the namespaces it watches (none: all) and, with several
    replicas, kopf's peering object, its own identity and priority there (no peering: standalone)."""

    namespaces: tuple[str, ...] = ()
    peering: str | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    priority: int = 0


scope = Scope()
"""Set by `karl-operator run` before kopf starts."""

_controllers: dict[tuple[str, str], FailoverController] = {}
"""The failover controller of each KarlCluster (namespace, name) this replica runs."""

_loop: asyncio.AbstractEventLoop | None = None


PEERING_SETTLE = 3.0
"""Seconds a replica must have seen itself the highest before it works: replicas started together
register one after the other, and the first must not act before it has seen the others."""

_highest_since: float | None = None


def working() -> bool:
    """Whether this replica works: standalone, or the highest live peer (kopf's peering) for at least
    PEERING_SETTLE seconds."""
    global _highest_since
    if scope.peering is None:
        return True
    if not _highest_now():
        _highest_since = None
        return False
    now = time.monotonic()
    if _highest_since is None:
        _highest_since = now
    return now - _highest_since >= PEERING_SETTLE


def _standing_by() -> bool:
    return not working()


reconciler.standing_by = _standing_by


def _highest_now() -> bool:
    objects, name = client.CustomObjectsApi(api()), str(scope.peering)
    try:
        found: list[Any]
        if scope.namespaces:
            found = [
                objects.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", name)
                for ns in scope.namespaces
            ]
        else:
            found = [objects.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)]
    except ApiException as error:
        log.warning("peering object %s not readable (%s): standing by", name, error.reason)
        return False
    now = datetime.datetime.now(datetime.UTC)
    return all(works(dict(o.get("status") or {}), scope.identity, scope.priority, now) for o in found)


def karlclusters() -> dict[tuple[str, str], dict[str, Any]]:
    """Every KarlCluster in the watched namespaces, as the API server has it now, but those being
    deleted (their fleet is going: no failover, no resync)."""
    objects = client.CustomObjectsApi(api())
    items: list[Any] = []
    if scope.namespaces:
        for ns in scope.namespaces:
            found: Any = objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            items += found["items"]
    else:
        found = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        items += found["items"]
    return {
        (item["metadata"]["namespace"], item["metadata"]["name"]): item
        for item in items
        if not item["metadata"].get("deletionTimestamp")
    }


def active_calls(key: tuple[str, str]) -> int | None:
    """The calls on the fleet's media nodes, from their leases as its failover controller last read
    them (None: not known, or this replica's controller does not lead)."""
    controller = _controllers.get(key)
    if controller is None or controller.last_tick is None or not controller.leads:
        return None
    return sum(lease.load for lease in controller.members.values() if lease is not None)


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


@dataclass
class _Failover:
    """One KarlCluster's failover controller, run by this replica."""

    redis: tuple[Any, ...]  # what it was started with: a change restarts it
    stop: asyncio.Event
    task: asyncio.Task[None]


def _redis_of(body: dict[str, Any]) -> tuple[Any, ...]:
    redis = body["spec"]["redis"]
    return redis_address(body), redis["prefix"], redis.get("passwordSecret")


async def _start_failover(key: tuple[str, str], body: dict[str, Any]) -> _Failover:
    password = await asyncio.to_thread(_redis_password, body)
    stop = asyncio.Event()

    def running(controller: FailoverController | None) -> None:
        if controller is None:
            _controllers.pop(key, None)
        else:
            _controllers[key] = controller

    task = asyncio.create_task(failover_until(failover_config(body, password), stop.wait, running=running))
    return _Failover(_redis_of(body), stop, task)


async def _stop_failovers(failovers: list[_Failover]) -> None:
    """Stop controllers together (each resigns its Redis leadership; one whose Redis is gone is
    cancelled after FAILOVER_STOP_TIMEOUT)."""
    for failover in failovers:
        failover.stop.set()
    tasks = [failover.task for failover in failovers]
    if not tasks:
        return
    done, late = await asyncio.wait(tasks, timeout=FAILOVER_STOP_TIMEOUT)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=FAILOVER_STOP_TIMEOUT)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("a failover controller ended with %r", task.exception())


async def _round(failovers: dict[tuple[str, str], _Failover], resync_now: bool) -> None:
    if await asyncio.to_thread(working):
        clusters = await asyncio.to_thread(karlclusters)
        forget(keep=set(clusters))  # the gone ones: a KarlCluster made again starts afresh
    else:
        clusters = {}
        forget(keep=set())  # another replica works: what this one did may be out of date when it resumes
    stale = [k for k, f in failovers.items() if k not in clusters or f.redis != _redis_of(clusters[k])]
    await _stop_failovers([failovers.pop(key) for key in stale])
    for key, body in clusters.items():
        running = failovers.get(key)
        if running is not None and running.task.done():
            failed = None if running.task.cancelled() else running.task.exception()
            log.warning("KarlCluster %s/%s: its failover controller ended (%r): restarted", *key, failed)
            del failovers[key]
        if key not in failovers:
            try:
                failovers[key] = await _start_failover(key, body)
            except ApiException as error:
                log.warning("KarlCluster %s/%s: spec.redis.passwordSecret: %s", *key, error.reason)
            except Exception:  # (its settings, the API server away): tried again next round
                log.exception("KarlCluster %s/%s: its failover controller did not start", *key)
    for key, body in clusters.items():
        try:
            outcome = outcome_of(key)
            if outcome is None:  # not carried out by this replica yet (or since it last worked)
                await asyncio.to_thread(carry_out, body)
            else:
                extra = {"activeCalls": active_calls(key)}  # (None clears a figure no longer known)
                await asyncio.to_thread(write_status, body, outcome, extra)
            if draining(key):
                await asyncio.to_thread(settle_drains, body)
            if resync_now:
                await asyncio.to_thread(resync, body)
        except Exception:  # one KarlCluster's trouble never stops the others' work
            log.exception("KarlCluster %s/%s: status or resync failed (tried again)", *key)


async def fleet_loop() -> None:
    """The rounds, every STATUS_INTERVAL, until cancelled; no error ends it (the API server away, a
    KarlCluster deleted in the middle): it is logged and the next round tries again."""
    global _loop
    _loop = asyncio.get_running_loop()
    failovers: dict[tuple[str, str], _Failover] = {}
    last_resync = time.monotonic()
    try:
        while True:
            resync_now = time.monotonic() - last_resync >= RESYNC_INTERVAL
            if resync_now:
                last_resync = time.monotonic()
            try:
                await _round(failovers, resync_now)
            except Exception:
                log.exception("the operator's round failed (tried again in %.0f s)", STATUS_INTERVAL)
            await asyncio.sleep(STATUS_INTERVAL)
    finally:
        await _stop_failovers(list(failovers.values()))


def _ended(task: asyncio.Task[None]) -> None:
    """The loop must not end while the operator runs: if it does (a bug), stop the operator, so that
    Kubernetes restarts it rather than leave its fleets without status and failover."""
    if task.cancelled():
        return
    log.critical("the operator's loop ended (%r): stopping the operator", task.exception())
    os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.startup()
async def start_fleet_loop(memo: kopf.Memo, **_: Any) -> None:
    task = asyncio.create_task(fleet_loop())
    task.add_done_callback(_ended)
    memo["fleet_loop"] = task


@kopf.on.cleanup()
async def stop_fleet_loop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("fleet_loop")
    if task is not None:
        task.cancel()
        await asyncio.wait([task])


# --------------------------------------------------------------------------------------- pods and nodes

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
    """Tell the failover controller of the pod's KarlCluster that the pod's node will not come back
    (from kopf's handler threads: the controller lives on the fleet loop's event loop)."""
    meta = pod.get("metadata") or {}
    key = (meta.get("namespace", ""), (meta.get("labels") or {}).get("app.kubernetes.io/instance") or "")
    controller, loop = _controllers.get(key), _loop
    if controller is not None and loop is not None:
        log.info("media pod %s %s: its calls move once its lease lapses", meta.get("name"), why)
        loop.call_soon_threadsafe(lambda: controller.watch.known_gone(str(meta.get("name"))))


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
    namespaces = {namespace for namespace, _ in list(_controllers)}
    core = client.CoreV1Api(api())
    for namespace in namespaces:
        pods = core.list_namespaced_pod(
            namespace, label_selector=selector, field_selector=f"spec.nodeName={name}"
        )
        for pod in pods.items:
            meta: Any = pod.metadata
            found = {"metadata": {"name": meta.name, "namespace": namespace, "labels": meta.labels or {}}}
            _gone(found, f"on Kubernetes node {name}, which is not ready")
