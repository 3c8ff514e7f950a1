"""The whole way on a real cluster, for machines with a Docker engine and `kind` (this one has neither: the
tests skip, with that reason, and are never evidence here; CI's KARL_FAIL_ON_SKIP accepts exactly this
skip, `mark:kind` in tests/conftest.py).

1. `docker build` the repository's Dockerfile; `kind create cluster` (one node); `kind load` the image;
2. `helm install` charts/karl with that image; label a namespace `privileged` (host networking);
3. `kubectl apply` a KarlCluster (one media node, a NodePort router, the trial Redis) and wait for
   `Ready`;
4. a call through the router: NG `offer`/`answer` to the router's NodePort on the kind node's address,
   RTP both ways between two sockets of this host and the media node's ports on the kind node (host
   network), then `delete`;
5. 30 sipp calls through Kamailio (on this host, `rtpengine_sock` = the router's NodePort) to a sipp
   callee that echoes the media: every call completes, the echo comes from the kind node;
6. `kubectl scale` to two media nodes (both `Ready`, new calls placed) and back to one;
7. two media nodes, calls with RTP, the pod holding one of them killed (`--grace-period=0 --force`):
   the call is answered again through the router (what the proxy does on the failover webhook) and its
   RTP flows at the address the new SDP gives;
8. `helm uninstall`, `kind delete cluster`.

Run: .venv/bin/pytest tests/e2e/test_kind_fleet.py -m kind
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from karl_testkit import ROOT, NgClient, sdp, simple_rtp, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.e2e]

CLUSTER = "karl-e2e"
IMAGE = "karl:e2e"
NAMESPACE = "voip"
ROUTER_NODE_PORT = 32222  # (the router Service's NodePort: within the default 30000-32767)
RTP_START, RTP_PER_POD = 20000, 400  # ordinal n relays on RTP_START + n * RTP_PER_POD ...
TIMEOUT = 600


def _tools() -> tuple[str, str]:
    docker, kind = shutil.which("docker"), shutil.which("kind")
    if docker is None or kind is None:
        pytest.skip(
            "needs a Docker engine and kind (not on this machine): the kind suite is for machines with them"
        )
    if subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("needs a running Docker engine (docker info failed)")
    return docker, kind


def _helm() -> Path:
    spec = importlib.util.spec_from_file_location(
        "karl_helm_kit", ROOT / "tests" / "operator" / "helm_kit.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    binary: Path = module.helm_binary()
    return binary


def run(*command: str, **kwargs: Any) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    docker, kind = _tools()
    work = tmp_path_factory.mktemp("kind")
    kubeconfig = work / "kubeconfig"
    run(docker, "build", "-t", IMAGE, str(ROOT))
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{"role": "control-plane"}],
    }
    (work / "kind.yaml").write_text(yaml.safe_dump(config))
    run(
        kind,
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        str(work / "kind.yaml"),
        "--kubeconfig",
        str(kubeconfig),
    )
    try:
        run(kind, "load", "docker-image", IMAGE, "--name", CLUSTER)
        node_ip = run(
            docker,
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            f"{CLUSTER}-control-plane",
        ).strip()
        gateways = run(
            docker, "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"
        ).split()
        host_ip = next(g for g in gateways if "." in g)  # this host, as the kind node reaches it
        yield {"kubeconfig": kubeconfig, "node_ip": node_ip, "host_ip": host_ip, "work": work}
    finally:
        subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], capture_output=True, timeout=TIMEOUT)


@dataclass
class KarlOnKind:
    """The chart installed, KarlCluster `karl` Ready, its router on the kind node's NodePort."""

    objects: Any
    core: Any
    apps: Any
    node_ip: str
    host_ip: str
    work: Path

    def ng(self) -> NgClient:
        client = NgClient((self.node_ip, ROUTER_NODE_PORT))
        client.sock.close()  # (it binds to loopback; the kind node is on Docker's bridge)
        client.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.sock.bind((self.host_ip, 0))
        return client

    def cluster(self) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            "karl.io", "v1alpha1", NAMESPACE, "karlclusters", "karl"
        )
        return found

    def scale(self, replicas: int) -> None:
        self.objects.patch_namespaced_custom_object_scale(
            "karl.io", "v1alpha1", NAMESPACE, "karlclusters", "karl", {"spec": {"replicas": replicas}}
        )

    def ready(self, replicas: int) -> None:
        def settled() -> bool:
            status = self.cluster().get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return conditions.get("Ready") == "True" and status.get("nodesReady") == f"{replicas}/{replicas}"

        wait_for(settled, timeout=TIMEOUT, interval=2)


@pytest.fixture(scope="module")
def karl_on_kind(kind_cluster: dict[str, Any]) -> Iterator[KarlOnKind]:
    from kubernetes import client, config

    kubeconfig: Path = kind_cluster["kubeconfig"]
    helm = _helm()
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    repository, tag = IMAGE.split(":")
    run(
        str(helm), "install", "karl", str(ROOT / "charts" / "karl"), "--namespace", "karl-system",
        "--create-namespace", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m", env=env,
    )  # fmt: skip
    api = config.new_client_from_config(str(kubeconfig))
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace(
        {"metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
    )
    ports = {"rtpStart": RTP_START, "rtpPerPod": RTP_PER_POD, "controlStart": 12000}
    spec = {
        "mediaNodes": {
            "replicas": 1,
            "image": IMAGE,
            "imagePullPolicy": "Never",
            "maxSessions": 100,
            "ports": ports,
            "antiAffinity": "None",  # (one kind node: both media pods on it, on their own ports)
            "terminationGracePeriodSeconds": 30,
        },
        "router": {"replicas": 1, "serviceType": "NodePort"},
    }
    body = {
        "apiVersion": "karl.io/v1alpha1",
        "kind": "KarlCluster",
        "metadata": {"name": "karl"},
        "spec": spec,
    }
    objects.create_namespaced_custom_object("karl.io", "v1alpha1", NAMESPACE, "karlclusters", body)
    karl = KarlOnKind(
        objects,
        core,
        client.AppsV1Api(api),
        kind_cluster["node_ip"],
        kind_cluster["host_ip"],
        kind_cluster["work"],
    )
    karl.ready(1)
    core.patch_namespaced_service(
        "karl-router",
        NAMESPACE,
        {"spec": {"ports": [{"name": "ng", "port": 22222, "nodePort": ROUTER_NODE_PORT}]}},
    )
    yield karl
    objects.delete_namespaced_custom_object("karl.io", "v1alpha1", NAMESPACE, "karlclusters", "karl")
    run(str(helm), "uninstall", "karl", "--namespace", "karl-system", env=env)


def _party(host_ip: str) -> socket.socket:
    party = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    party.bind((host_ip, 0))
    party.settimeout(5)
    return party


def _port(reply: dict[str, Any]) -> int:
    return int(reply["sdp"].split("m=audio ", 1)[1].split()[0])


def _call(karl: KarlOnKind, ng: NgClient, call_id: str) -> tuple[socket.socket, socket.socket, int, int]:
    """An answered call through the router; (A's socket, B's socket, the port A sends to, B's)."""
    a, b = _party(karl.host_ip), _party(karl.host_ip)
    ids = {"call-id": call_id, "from-tag": "A"}
    offer = ng.request({"command": "offer", **ids, "sdp": sdp(a.getsockname()[1], karl.host_ip)}, timeout=10)
    assert offer["result"] == "ok", offer
    answer = ng.request(
        {"command": "answer", **ids, "to-tag": "B", "sdp": sdp(b.getsockname()[1], karl.host_ip)}, timeout=10
    )
    assert answer["result"] == "ok", answer
    return a, b, _port(answer), _port(offer)


def _talks(karl: KarlOnKind, a: socket.socket, b: socket.socket, to_a_side: int, to_b_side: int) -> None:
    for seq in range(5):
        a.sendto(simple_rtp(seq), (karl.node_ip, to_a_side))
        assert b.recv(2048) == simple_rtp(seq)
        b.sendto(simple_rtp(seq), (karl.node_ip, to_b_side))
        assert a.recv(2048) == simple_rtp(seq)


def test_a_call_through_a_karlcluster_on_kind(karl_on_kind: KarlOnKind) -> None:
    ng = karl_on_kind.ng()
    a, b, to_a_side, to_b_side = _call(karl_on_kind, ng, "kind-call")
    _talks(karl_on_kind, a, b, to_a_side, to_b_side)
    assert (
        ng.request({"command": "delete", "call-id": "kind-call", "from-tag": "A"}, timeout=10)["result"]
        == "ok"
    )


def test_sipp_calls_through_kamailio_and_the_router_service(karl_on_kind: KarlOnKind) -> None:
    from tests.e2e.test_kamailio_sipp import KAMAILIO_TEMPLATE, launch_kamailio, required_tools, tail

    from fleet.test_fleet_kamailio import CALLS, run_calls

    tools = required_tools()
    workdir = karl_on_kind.work / "sipp"
    workdir.mkdir()
    sockets = {"NG_SOCKETS": f'"udp:{karl_on_kind.node_ip}:{ROUTER_NODE_PORT}"'}
    kamailio = launch_kamailio(
        tools.kamailio, tools.modules, None, workdir, KAMAILIO_TEMPLATE, karl_on_kind.host_ip, sockets
    )
    try:
        calls = run_calls(tools, kamailio, karl_on_kind.host_ip, karl_on_kind.host_ip, workdir)
    finally:
        kamailio.stop()
    logs = "\n".join([calls.caller.explain(), calls.callee.explain(), tail(kamailio.log_path)])
    assert calls.caller.returncode == 0 and calls.callee.returncode == 0, logs
    assert calls.caller.final("SuccessfulCall(C)") == CALLS, logs
    # the echo came back through the media node, on the kind node's address
    assert calls.echoed and {address for address, _ in calls.echoed} == {karl_on_kind.node_ip}, logs


def test_kubectl_scale_up_and_down(karl_on_kind: KarlOnKind) -> None:
    karl_on_kind.scale(2)
    karl_on_kind.ready(2)
    ng = karl_on_kind.ng()
    ordinals = set()
    for index in range(8):  # placed by the router on both nodes (their RTP ranges tell which)
        a, b, to_a_side, to_b_side = _call(karl_on_kind, ng, f"kind-scale-{index}")
        _talks(karl_on_kind, a, b, to_a_side, to_b_side)
        ordinals.add((to_a_side - RTP_START) // RTP_PER_POD)
        assert (
            ng.request({"command": "delete", "call-id": f"kind-scale-{index}"}, timeout=10)["result"] == "ok"
        )
    assert ordinals == {0, 1}
    karl_on_kind.scale(1)

    def one_pod() -> bool:
        pods = karl_on_kind.core.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/component=media"
        ).items
        return (
            len(pods) == 1
            and karl_on_kind.apps.read_namespaced_stateful_set("karl-media", NAMESPACE).spec.replicas == 1
        )

    wait_for(one_pod, timeout=TIMEOUT, interval=2)
    karl_on_kind.ready(1)


def test_a_media_pod_killed_mid_call_has_its_call_answered_again_elsewhere(karl_on_kind: KarlOnKind) -> None:
    karl_on_kind.scale(2)
    karl_on_kind.ready(2)
    ng = karl_on_kind.ng()
    a, b, to_a_side, to_b_side = _call(karl_on_kind, ng, "kind-killed")
    _talks(karl_on_kind, a, b, to_a_side, to_b_side)
    ordinal = (to_a_side - RTP_START) // RTP_PER_POD
    karl_on_kind.core.delete_namespaced_pod(f"karl-media-{ordinal}", NAMESPACE, grace_period_seconds=0)
    ids = {"call-id": "kind-killed", "from-tag": "A"}

    def answered_again() -> bool:
        # what the proxy does on the failover webhook (or a re-INVITE): offer and answer again
        offer = ng.request(
            {"command": "offer", **ids, "sdp": sdp(a.getsockname()[1], karl_on_kind.host_ip)}, timeout=10
        )
        if offer.get("result") != "ok":
            return False
        answer = ng.request(
            {"command": "answer", **ids, "to-tag": "B", "sdp": sdp(b.getsockname()[1], karl_on_kind.host_ip)},
            timeout=10,
        )
        if answer.get("result") != "ok":
            return False
        try:
            _talks(karl_on_kind, a, b, _port(answer), _port(offer))
        except (AssertionError, TimeoutError):
            return False
        return True

    wait_for(answered_again, timeout=120, interval=2)
    assert ng.request({"command": "delete", **ids}, timeout=10)["result"] == "ok"
