"""The Kubernetes objects a KarlCluster stands for, built by pure functions: a KarlCluster (as the API
server stored it, defaults filled in) in, manifests (dicts) out. The operator's handlers apply them
idempotently; tests check them against the real API server (server-side dry run) and offline.

What a KarlCluster `x` becomes:

- ConfigMap `x-config`: the settings every program of the fleet shares (KARL_* variables);
- StatefulSet `x-media` (+ headless Service `x-media`, PodDisruptionBudget `x-media`): the media nodes, on
  the host network. Kubernetes Services cannot carry RTP port ranges, so each pod takes ports of its own,
  derived from its ordinal n (the pod name's suffix): NG, API, health and metrics at
  `controlStart + 4n … + 3`, RTP from `rtpStart + n * rtpPerPod`. The node id is the pod name (downward
  API); probes run inside the pod against its own health port (`/startup`, `/live`, `/ready`); the pod
  drains its calls before it stops (`preStop`, within `terminationGracePeriodSeconds`);
- Deployment `x-router` + UDP Service `x-router` (+ PodDisruptionBudget): what Kamailio/OpenSIPS point
  `rtpengine_sock` at;
- a single Redis (Deployment + Service `x-redis`) when the spec names none (trials);
- HorizontalPodAutoscaler `x-media` (`autoscaling/v2`) when autoscaling is on: it scales the KarlCluster
  itself through its `/scale` subresource, so the operator, which copies the KarlCluster's replicas to the
  StatefulSet, never fights it.

Every object carries an owner reference to the KarlCluster (deleting it deletes them: the garbage
collector, no finalizer) and the labels `app.kubernetes.io/{name,instance,component,managed-by}`.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "karl.io/v1alpha1"
KIND = "KarlCluster"
MANAGED_BY = "karl-operator"
REDIS_IMAGE = "redis:7.2-alpine"
HEALTH_TIMEOUT_SECONDS = 2

Manifest = dict[str, Any]


def labels(cluster: Manifest, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "karl",
        "app.kubernetes.io/instance": cluster["metadata"]["name"],
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(cluster: Manifest, component: str) -> dict[str, str]:
    """The labels a component's pods are selected by (never changed after creation)."""
    return {
        "app.kubernetes.io/instance": cluster["metadata"]["name"],
        "app.kubernetes.io/component": component,
    }


def selector_string(cluster: Manifest, component: str = "media") -> str:
    """The media nodes' selector as `/scale` and an HPA read it (the KarlCluster's `status.selector`)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector(cluster, component).items()))


def _metadata(cluster: Manifest, name: str, component: str) -> Manifest:
    meta = cluster["metadata"]
    return {
        "name": f"{meta['name']}-{name}",
        "namespace": meta["namespace"],
        "labels": labels(cluster, component),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,  # (needs update on karlclusters/finalizers: the chart grants it)
            }
        ],
    }


FLEET_SECRET_MOUNT = "/etc/karl/fleet"


NG, API, HEALTH, METRICS = range(4)
"""The control ports of a media node, in their order from `controlStart + 4n`."""


def control_port(control_start: int, ordinal: int, which: int) -> int:
    """The port `which` (NG, API, HEALTH, METRICS) of the media node with this ordinal; the pods' start
    script computes the same in shell (`_ports_script`)."""
    return control_start + 4 * ordinal + which


def media_api_port(cluster: Manifest, ordinal: int) -> int:
    """The REST API port of the media node with this ordinal (its pod's host address)."""
    return control_port(int(cluster["spec"]["mediaNodes"]["ports"]["controlStart"]), ordinal, API)


CONTROL_START_ANNOTATION = "karl.io/control-start"
SCRAPE_PORT_ANNOTATION = "prometheus.io/port"


def media_pod_annotations(pod: Manifest) -> dict[str, str] | None:
    """What the operator writes on a running media pod: `prometheus.io/port`, its own metrics port.
    A pod template is one for all pods, so this annotation cannot be in it: Prometheus' relabelling
    cannot derive the port from the ordinal either. None: nothing to write (not a media pod of ours, or
    already annotated)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    start = annotations.get(CONTROL_START_ANNOTATION)
    ordinal = str(meta.get("name", "")).rsplit("-", 1)[-1]
    if start is None or not start.isdigit() or not ordinal.isdigit():
        return None
    port = str(control_port(int(start), int(ordinal), METRICS))
    if annotations.get(SCRAPE_PORT_ANNOTATION) == port:
        return None
    return {SCRAPE_PORT_ANNOTATION: port}


def fleet_secret_name(cluster: Manifest) -> str:
    """The Secret the operator generates once per KarlCluster: `api-keys` (the node API key the pods'
    drain uses: `operate:<key>`) and `dtls.pem` (the fleet's DTLS certificate and key, so that the
    fingerprint a browser was given holds on whichever node has its call)."""
    return f"{cluster['metadata']['name']}-fleet"


def fleet_secret(cluster: Manifest, api_key: str, dtls_pem: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(cluster, "fleet", "config"),
        "type": "Opaque",
        "stringData": {"api-keys": f"operate:{api_key}", "dtls.pem": dtls_pem},
    }


def redis_address(cluster: Manifest) -> str:
    """The fleet's Redis; the one the operator runs by its namespace-qualified name (the operator's own
    failover controller reaches it from the operator's namespace)."""
    url = cluster["spec"]["redis"].get("url")
    meta = cluster["metadata"]
    return str(url) if url else f"redis://{meta['name']}-redis.{meta['namespace']}.svc:6379/0"


def config_map(cluster: Manifest) -> Manifest:
    spec = cluster["spec"]
    data = {
        "KARL_CLUSTER_ID": cluster["metadata"]["name"],
        "KARL_REDIS_ENABLED": "true",
        "KARL_REDIS_ADDR": redis_address(cluster),
        "KARL_REDIS_PREFIX": spec["redis"]["prefix"],
        "KARL_LOG_LEVEL": spec["logLevel"],
        "KARL_LOG_FORMAT": "json",
        "KARL_MAX_SESSIONS": str(spec["mediaNodes"]["maxSessions"]),
    }
    webhooks = spec["failover"].get("webhooks") or []
    if webhooks:
        data["KARL_FAILOVER_WEBHOOK_URL"] = webhooks[0]  # (one target: the CRD allows one)
    allowed = spec["mediaNodes"].get("ngAllow") or []
    if allowed:
        data["KARL_NG_ALLOW"] = ",".join(allowed)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(cluster, "config", "config"),
        "data": data,
    }


# The media node's ports from its ordinal, in the container's shell (the pod template is one for all pods).
_ORDINAL = 'n="${POD_NAME##*-}"'


def _ports_script(ports: Manifest) -> str:
    control, rtp, per_pod = ports["controlStart"], ports["rtpStart"], ports["rtpPerPod"]
    return (
        f"{_ORDINAL}; "
        f"export KARL_NG_PORT=$(({control} + 4 * n)) KARL_API_PORT=$(({control} + 4 * n + 1)) "
        f"KARL_HEALTH_PORT=$(({control} + 4 * n + 2)) KARL_METRICS_PORT=$(({control} + 4 * n + 3)) "
        f"KARL_RTP_MIN_PORT=$(({rtp} + {per_pod} * n)) "
        f"KARL_RTP_MAX_PORT=$(({rtp} + {per_pod} * n + {per_pod} - 1))"
    )


def _probe(ports: Manifest, path: str) -> list[str]:
    """A probe run inside the pod against its own health port (which differs per pod)."""
    health = f"$(({ports['controlStart']} + 4 * n + 2))"
    fetch = (
        f"import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout={HEALTH_TIMEOUT_SECONDS})"
    )
    return ["/bin/sh", "-c", f"{_ORDINAL}; exec python3 -c '{fetch}' http://127.0.0.1:{health}{path}"]


def _drain(ports: Manifest) -> list[str]:
    """The preStop hook: the node stops taking calls (`POST /api/v1/admin/drain` on its own API port,
    with the fleet's `operate` key)."""
    api = f"$(({ports['controlStart']} + 4 * n + 1))"
    post = (
        "import os, sys, urllib.request; "
        "key = os.environ['KARL_API_KEYS'].split(':', 1)[1]; "
        "urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'{}', method='POST', "
        "headers={'X-API-Key': key, 'Content-Type': 'application/json'}), timeout=5)"
    )
    url = f"http://${{HOST_IP}}:{api}/api/v1/admin/drain"
    return ["/bin/sh", "-c", f'{_ORDINAL}; exec python3 -c "{post}" {url}']


def _pull_secrets(cluster: Manifest) -> Manifest:
    """`imagePullSecrets` of every pod the KarlCluster runs (none: the key is left out)."""
    wanted = cluster["spec"].get("imagePullSecrets") or []
    return {"imagePullSecrets": [{"name": item["name"]} for item in wanted]} if wanted else {}


def _anti_affinity(cluster: Manifest) -> Manifest | None:
    kind = cluster["spec"]["mediaNodes"]["antiAffinity"]
    term = {
        "labelSelector": {"matchLabels": selector(cluster, "media")},
        "topologyKey": "kubernetes.io/hostname",
    }
    if kind == "Required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if kind == "Preferred":
        preferred = [{"weight": 100, "podAffinityTerm": term}]
        return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}
    return None


def _advertised(cluster: Manifest) -> list[Manifest]:
    address = cluster["spec"]["mediaNodes"]["advertisedAddress"]
    if address["source"] == "Static":
        return [{"name": "KARL_PUBLIC_IP", "value": address["address"]}]
    return [{"name": "KARL_PUBLIC_IP", "value": "$(HOST_IP)"}]


def media_statefulset(cluster: Manifest, replicas: int | None = None) -> Manifest:
    spec, media = cluster["spec"], cluster["spec"]["mediaNodes"]
    ports = media["ports"]
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "KARL_NODE_ID", "value": "$(POD_NAME)"},
        {"name": "KARL_NG_ADDRESS", "value": "$(HOST_IP)"},
        {"name": "KARL_MEDIA_IP", "value": "$(HOST_IP)"},
        # the API (with the fleet's key): the pod's preStop and the operator's scale-down drain call it
        {"name": "KARL_API_ADDRESS", "value": "$(HOST_IP)"},
        # after SIGTERM the node drains for this long, then hands the calls left to other nodes
        {"name": "KARL_SHUTDOWN_GRACE", "value": str(max(5, media["terminationGracePeriodSeconds"] - 15))},
        *_advertised(cluster),
    ]
    fleet = fleet_secret_name(cluster)
    env += [
        {"name": "KARL_API_KEYS", "valueFrom": {"secretKeyRef": {"name": fleet, "key": "api-keys"}}},
        {"name": "KARL_DTLS_CERTIFICATE", "value": f"{FLEET_SECRET_MOUNT}/dtls.pem"},
    ]
    if spec["redis"].get("passwordSecret"):
        secret = {"name": spec["redis"]["passwordSecret"], "key": "password"}
        env.append({"name": "KARL_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": secret}})
    if spec["cdr"].get("databaseSecret"):
        secret = {"name": spec["cdr"]["databaseSecret"], "key": "url"}
        env.append({"name": "KARL_MYSQL_DSN", "valueFrom": {"secretKeyRef": secret}})
    container: Manifest = {
        "name": "media-node",
        "image": media["image"],
        "imagePullPolicy": media["imagePullPolicy"],
        "command": ["/bin/sh", "-c", f"{_ports_script(ports)}; exec karl"],
        "env": env,
        "envFrom": [{"configMapRef": {"name": f"{cluster['metadata']['name']}-config"}}],
        "resources": media.get("resources", {}),
        "startupProbe": {
            "exec": {"command": _probe(ports, "/startup")},
            "periodSeconds": 2,
            "failureThreshold": 60,
            "timeoutSeconds": HEALTH_TIMEOUT_SECONDS + 1,
        },
        "livenessProbe": {
            "exec": {"command": _probe(ports, "/live")},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": HEALTH_TIMEOUT_SECONDS + 1,
        },
        "readinessProbe": {
            "exec": {"command": _probe(ports, "/ready")},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": HEALTH_TIMEOUT_SECONDS + 1,
        },
        # before SIGTERM: no new calls (drain), the calls in progress go on until the grace ends
        "lifecycle": {"preStop": {"exec": {"command": _drain(ports)}}},
        "volumeMounts": [
            {"name": "fleet", "mountPath": FLEET_SECRET_MOUNT, "readOnly": True},
            {"name": "data", "mountPath": "/var/lib/karl"},  # CDR file and spool
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: Manifest = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": media["terminationGracePeriodSeconds"],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "containers": [container],
        "volumes": [
            {"name": "fleet", "secret": {"secretName": fleet_secret_name(cluster), "defaultMode": 0o440}},
            {"name": "data", "emptyDir": {}},
        ],
    }
    pod_spec.update(_pull_secrets(cluster))
    if media.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(media["nodeSelector"])
    if media.get("tolerations"):
        pod_spec["tolerations"] = list(media["tolerations"])
    affinity = _anti_affinity(cluster)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(cluster, "media", "media"),
        "spec": {
            "serviceName": f"{name}-media",
            "replicas": media["replicas"] if replicas is None else replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(cluster, "media")},
            "template": {
                "metadata": {
                    "labels": labels(cluster, "media"),
                    # scraped by Prometheus' usual pod annotations; `prometheus.io/port` is per pod
                    # (media_pod_annotations), from the control ports' start written here
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/path": "/metrics",
                        CONTROL_START_ANNOTATION: str(ports["controlStart"]),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def media_service(cluster: Manifest) -> Manifest:
    """The StatefulSet's governing Service (headless: the nodes are reached on their hosts' addresses)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cluster, "media", "media"),
        "spec": {"clusterIP": "None", "selector": selector(cluster, "media")},
    }


def router_deployment(cluster: Manifest) -> Manifest:
    spec, router = cluster["spec"], cluster["spec"]["router"]
    env: list[Manifest] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KARL_NODE_ID", "value": "$(POD_NAME)"},
        {"name": "KARL_NG_ADDRESS", "value": "0.0.0.0"},
        {"name": "KARL_NG_PORT", "value": str(router["port"])},
        {"name": "KARL_HEALTH_PORT", "value": "8086"},
        {"name": "KARL_METRICS_PORT", "value": "9091"},
    ]
    if spec["redis"].get("passwordSecret"):
        secret = {"name": spec["redis"]["passwordSecret"], "key": "password"}
        env.append({"name": "KARL_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": secret}})
    container = {
        "name": "router",
        "image": spec["mediaNodes"]["image"],
        "imagePullPolicy": spec["mediaNodes"]["imagePullPolicy"],
        "command": ["karl-router"],
        "env": env,
        "envFrom": [{"configMapRef": {"name": f"{cluster['metadata']['name']}-config"}}],
        "ports": [
            {"name": "ng", "containerPort": router["port"], "protocol": "UDP"},
            {"name": "health", "containerPort": 8086, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9091, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "health"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/live", "port": "health"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(cluster, "router", "router"),
        "spec": {
            "replicas": router["replicas"],
            "selector": {"matchLabels": selector(cluster, "router")},
            "template": {
                "metadata": {"labels": labels(cluster, "router")},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [container],
                    **_pull_secrets(cluster),
                },
            },
        },
    }


def router_service(cluster: Manifest) -> Manifest:
    router = cluster["spec"]["router"]
    service: Manifest = {
        "type": router["serviceType"],
        "selector": selector(cluster, "router"),
        "ports": [{"name": "ng", "port": router["port"], "targetPort": "ng", "protocol": "UDP"}],
    }
    if router["serviceType"] != "ClusterIP":
        service["externalTrafficPolicy"] = router["externalTrafficPolicy"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cluster, "router", "router"),
        "spec": service,
    }


def disruption_budget(cluster: Manifest, component: str) -> Manifest:
    """At most one pod of the component down at a time through voluntary disruptions (drains)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(cluster, component, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(cluster, component)}},
    }


def redis_objects(cluster: Manifest) -> list[Manifest]:
    """A single Redis for trials (no persistence): only when the spec names no Redis."""
    if cluster["spec"]["redis"].get("url"):
        return []
    container = {
        "name": "redis",
        "image": REDIS_IMAGE,
        "args": ["--save", "", "--appendonly", "no"],
        "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(cluster, "redis", "redis"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(cluster, "redis")},
            "template": {
                "metadata": {"labels": labels(cluster, "redis")},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999},
                    "containers": [container],
                    **_pull_secrets(cluster),
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cluster, "redis", "redis"),
        "spec": {
            "selector": selector(cluster, "redis"),
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def autoscaler(cluster: Manifest) -> Manifest | None:
    """The HPA of the media nodes, on the KarlCluster's `/scale` (None: autoscaling off)."""
    scaling = cluster["spec"]["autoscaling"]
    if not scaling["enabled"]:
        return None
    if scaling["metric"] == "cpu":
        utilization = {"type": "Utilization", "averageUtilization": scaling["targetCPUUtilization"]}
        metric: Manifest = {"type": "Resource", "resource": {"name": "cpu", "target": utilization}}
    else:
        # karl_sessions_active per pod, scraped by Prometheus, through prometheus-adapter (docs/kubernetes.md)
        target = {"type": "AverageValue", "averageValue": str(scaling["targetSessionsPerNode"])}
        metric = {"type": "Pods", "pods": {"metric": {"name": "karl_sessions_active"}, "target": target}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(cluster, "media", "media"),
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": cluster["metadata"]["name"]},
            "minReplicas": scaling["minReplicas"],
            "maxReplicas": scaling["maxReplicas"],
            "metrics": [metric],
        },
    }


def desired_objects(cluster: Manifest, media_replicas: int | None = None) -> list[Manifest]:
    """Every object the KarlCluster stands for, in the order they are best created; `media_replicas`:
    the media nodes to run now, if not the spec's (a scale-down waiting for its pods' calls)."""
    objects = [
        config_map(cluster),
        *redis_objects(cluster),
        media_service(cluster),
        media_statefulset(cluster, media_replicas),
        disruption_budget(cluster, "media"),
        router_deployment(cluster),
        router_service(cluster),
        disruption_budget(cluster, "router"),
    ]
    hpa = autoscaler(cluster)
    if hpa is not None:
        objects.append(hpa)
    return objects
