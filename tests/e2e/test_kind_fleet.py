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
5. `helm uninstall`, `kind delete cluster`.

Run: .venv/bin/pytest tests/e2e/test_kind_fleet.py -m kind
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from karl_testkit import ROOT, NgClient, sdp, simple_rtp

pytestmark = [pytest.mark.kind, pytest.mark.e2e]

CLUSTER = "karl-e2e"
IMAGE = "karl:e2e"
NAMESPACE = "voip"
ROUTER_NODE_PORT = 32222  # (the router Service's NodePort: within the default 30000-32767)
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
        yield {"kubeconfig": kubeconfig, "node_ip": node_ip, "work": work}
    finally:
        subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], capture_output=True, timeout=TIMEOUT)


def test_a_call_through_a_karlcluster_on_kind(kind_cluster: dict[str, Any]) -> None:
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
    spec = {
        "mediaNodes": {"replicas": 1, "image": IMAGE, "imagePullPolicy": "Never", "maxSessions": 100},
        "router": {"replicas": 1, "serviceType": "NodePort"},
    }
    body = {
        "apiVersion": "karl.io/v1alpha1",
        "kind": "KarlCluster",
        "metadata": {"name": "karl"},
        "spec": spec,
    }
    objects.create_namespaced_custom_object("karl.io", "v1alpha1", NAMESPACE, "karlclusters", body)
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = objects.get_namespaced_custom_object("karl.io", "v1alpha1", NAMESPACE, "karlclusters", "karl")
        ready = {c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions", [])}
        if ready.get("Ready") == "True":
            break
        assert time.monotonic() < deadline, json.dumps(found.get("status"), indent=2)
        time.sleep(2)
    core.patch_namespaced_service(
        "karl-router",
        NAMESPACE,
        {"spec": {"ports": [{"name": "ng", "port": 22222, "nodePort": ROUTER_NODE_PORT}]}},
    )
    node_ip: str = kind_cluster["node_ip"]
    ng = NgClient((node_ip, ROUTER_NODE_PORT))
    ng.sock.close()  # (it binds to loopback; the kind node is on Docker's bridge)
    ng.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ng.sock.bind(("0.0.0.0", 0))
    a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for party in (a, b):
        party.bind(("0.0.0.0", 0))
        party.settimeout(5)
    here = socket.gethostbyname(socket.gethostname())
    ids = {"call-id": "kind-call", "from-tag": "A"}
    offer = ng.request({"command": "offer", **ids, "sdp": sdp(a.getsockname()[1], here)}, timeout=10)
    assert offer["result"] == "ok", offer
    answer = ng.request(
        {"command": "answer", **ids, "to-tag": "B", "sdp": sdp(b.getsockname()[1], here)}, timeout=10
    )
    assert answer["result"] == "ok", answer
    to_a_side = int(answer["sdp"].split("m=audio ", 1)[1].split()[0])
    to_b_side = int(offer["sdp"].split("m=audio ", 1)[1].split()[0])
    for seq in range(5):
        a.sendto(simple_rtp(seq), (node_ip, to_a_side))
        assert b.recv(2048) == simple_rtp(seq)
        b.sendto(simple_rtp(seq), (node_ip, to_b_side))
        assert a.recv(2048) == simple_rtp(seq)
    assert ng.request({"command": "delete", **ids}, timeout=10)["result"] == "ok"
    run(str(helm), "uninstall", "karl", "--namespace", "karl-system", env=env)
