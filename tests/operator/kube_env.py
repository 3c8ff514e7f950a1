"""A real Kubernetes control plane for the operator tests, the way controller-runtime's envtest does it:
etcd + kube-apiserver + kube-controller-manager on loopback, no kubelet.

The binaries come from `deploy/k8s-test-env/build.sh` (built from Go source at the versions pinned in
`deploy/k8s-test-env/versions.env`, cached under `~/.cache/karl/k8s-test-env/<key>/`). `ControlPlane`
makes its own CA, serving certificate and service-account signing key (openssl), picks free loopback
ports, starts the three processes with their logs in its work directory, waits for each to be ready
(each wait has a timeout and fails early, with the log's tail, when the process exits), and `stop()` ends
every process it started -- also when `start()` fails halfway, and (PR_SET_PDEATHSIG) when the test run
itself is killed. tests/operator/conftest.py turns it into pytest fixtures; docs/testing-kubernetes.md
describes the whole set-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "deploy" / "k8s-test-env"
BUILD_SCRIPT = ENV_DIR / "build.sh"
VERSIONS_FILE = ENV_DIR / "versions.env"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

# A directory already holding the three binaries (then nothing is built), like envtest's KUBEBUILDER_ASSETS.
BINARIES_DIR_ENV = "KARL_K8S_TEST_ENV_DIR"
# The cache root build.sh uses (default ${XDG_CACHE_HOME:-~/.cache}/karl/k8s-test-env).
CACHE_ENV = "KARL_K8S_TEST_ENV_CACHE"
# "0" stops the test run from building missing binaries itself (the tests then skip).
AUTO_BUILD_ENV = "KARL_K8S_TEST_ENV_BUILD"
# build.sh's exit status for "cannot be built on this machine" (no Go toolchain).
CANNOT_BUILD = 3

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "karl-test-admin"
KCM_USER = "system:kube-controller-manager"
# Every controller that works without nodes, a cloud or a kubelet (the garbage collector, namespaces,
# ServiceAccounts and their tokens, Deployments/ReplicaSets/StatefulSets, Jobs, the HPA, ...).
KCM_CONTROLLERS = (
    "*,-node-ipam-controller,-node-lifecycle-controller,-ttl-controller,"
    "-persistentvolume-attach-detach-controller,-persistentvolume-binder-controller,"
    "-persistentvolume-expander-controller"
)

START_TIMEOUT = 90.0  # seconds, per component
STOP_TIMEOUT = 10.0  # seconds to exit after SIGTERM, then SIGKILL


class ControlPlaneError(RuntimeError):
    """A component did not start (the message carries the logs' tails)."""


def pinned_versions() -> dict[str, str]:
    """K8S_VERSION and ETCD_VERSION from deploy/k8s-test-env/versions.env."""
    versions: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def binaries_dir() -> Path:
    """Where the binaries are: $KARL_K8S_TEST_ENV_DIR, else build.sh's cache directory for the pins."""
    if override := os.environ.get(BINARIES_DIR_ENV):
        return Path(override)
    versions = pinned_versions()
    cache = os.environ.get(CACHE_ENV) or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "karl" / "k8s-test-env"
    )
    return Path(cache) / f"kube-{versions['K8S_VERSION']}_etcd-{versions['ETCD_VERSION']}"


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or binaries_dir()
    return [name for name in BINARIES if not os.access(directory / name, os.X_OK)]


@dataclass(frozen=True)
class BuildOutcome:
    ok: bool
    cannot_build: bool  # no Go toolchain here: the tests skip
    output: str


def build_binaries() -> BuildOutcome:
    """Run build.sh (a fast no-op when the cache is complete). Its output is returned, not printed."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    output = (proc.stdout + proc.stderr).strip()
    return BuildOutcome(proc.returncode == 0, proc.returncode == CANNOT_BUILD, output)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now (held together so they differ). Another
    program may still take one before our child binds it: starts retry with new ports then."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGKILL when the test process dies, even by SIGKILL (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


@dataclass
class Process:
    """One started binary: its own process group, output to a log file."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, args: Sequence[str], log_path: Path) -> Process:
        with log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # runs between fork and exec; the fixture starts from one thread
            )
        return cls(name, list(args), log_path, popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the whole process group, SIGKILL after `timeout`; always reaps the child."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def _openssl(workdir: Path, *args: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_certificates(pki: Path) -> None:
    """A CA, the apiserver's serving certificate (127.0.0.1 and localhost) and the ServiceAccount signing
    key pair, all with openssl (EC P-256 for TLS, RSA 2048 for tokens; valid 7 days)."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    _openssl(pki, "genpkey", *ec, "-out", "ca.key")
    _openssl(
        pki, "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=karl-test-ca", "-days", "7",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.crt",
    )  # fmt: skip
    _openssl(pki, "genpkey", *ec, "-out", "serving.key")
    _openssl(pki, "req", "-new", "-key", "serving.key", "-subj", "/CN=kube-apiserver", "-out", "serving.csr")
    (pki / "serving.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        pki, "x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "7", "-extfile", "serving.ext", "-out", "serving.crt",
    )  # fmt: skip
    _openssl(pki, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
    _openssl(pki, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for key in ("ca.key", "serving.key", "sa.key"):
        (pki / key).chmod(0o600)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) under `workdir` (logs: `<workdir>/*.log`)."""

    workdir: Path
    binaries: Path = field(default_factory=binaries_dir)
    controller_manager: bool = True
    processes: list[Process] = field(default_factory=list)
    server: str = ""  # https://127.0.0.1:<port> once started
    etcd_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(24))
    _kcm_token: str = field(default_factory=lambda: secrets.token_hex(24))
    timings: dict[str, float] = field(default_factory=dict)  # seconds each component took to be ready

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (kubectl, kopf and the Python client read it)."""
        return self.workdir / "admin.kubeconfig"

    # -- start / stop ---------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        missing = missing_binaries(self.binaries)
        if missing:
            raise ControlPlaneError(f"missing in {self.binaries}: {', '.join(missing)} (run build.sh)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            t = time.monotonic()
            make_certificates(self.pki)
            self.timings["certificates"] = time.monotonic() - t
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfigs()
            if self.controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything started, newest first; never raises for a process that is already gone."""
        while self.processes:
            self.processes.pop().stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_with_ports(
        self, name: str, nports: int, make_args: Callable[[list[int]], list[str]], ready: Callable[[], bool]
    ) -> list[int]:
        """Start `name` on fresh free ports; when another program took one in between (the log says
        "address already in use"), try again with other ports."""
        log_path = self.workdir / f"{name}.log"
        for attempt in range(5):
            ports = free_ports(nports)
            proc = Process.start(name, make_args(ports), log_path)
            self.processes.append(proc)
            t = time.monotonic()
            try:
                wait_until(f"{name} ready", ready, START_TIMEOUT, watch=self.processes)
            except ControlPlaneError:
                if proc.alive() or "address already in use" not in proc.tail(60) or attempt == 4:
                    raise
                self.processes.remove(proc)
                proc.stop()
                continue
            self.timings[name] = time.monotonic() - t
            return ports
        raise AssertionError("unreachable")

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd-data"

        def args(ports: list[int]) -> list[str]:
            client, peer = (f"http://127.0.0.1:{p}" for p in ports)
            self.etcd_url = client
            return [
                str(self.binaries / "etcd"),
                "--name=karl-test",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=karl-test={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ]

        self._start_with_ports("etcd", 2, args, lambda: _etcd_healthy(self.etcd_url))

    def _start_apiserver(self) -> None:
        (self.pki / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{self._kcm_token},{KCM_USER},{KCM_USER}\n"
        )
        (self.pki / "tokens.csv").chmod(0o600)
        pki = self.pki
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def args(ports: list[int]) -> list[str]:
            self.server = f"https://127.0.0.1:{ports[0]}"
            return [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports[0]}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # No Endpoints for the `kubernetes` Service: 127.0.0.1 is not a valid endpoint address,
                # and the reconciler would log that error every 10 s.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
            ]

        self._start_with_ports(
            "kube-apiserver", 1, args, lambda: _https_ok(f"{self.server}/readyz", self.admin_token, context)
        )

    def _write_kubeconfigs(self) -> None:
        write_kubeconfig(self.kubeconfig, self.server, self.ca_file, self.admin_token, ADMIN_USER)
        write_kubeconfig(
            self.workdir / "kube-controller-manager.kubeconfig",
            self.server,
            self.ca_file,
            self._kcm_token,
            "kcm",
        )

    def _start_controller_manager(self) -> None:
        kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def args(_ports: list[int]) -> list[str]:
            return [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--secure-port=0",  # no HTTPS endpoint: readiness is watched through the API instead
                "--leader-elect=false",
                # Each controller acts as its own ServiceAccount with its bootstrap RBAC role, as in clusters.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--controllers={KCM_CONTROLLERS}",
            ]

        # Ready when the ServiceAccount controller made `default/default` (its controllers are running)
        # and the garbage collector's ServiceAccount exists (it got its credentials).
        def ready() -> bool:
            return all(
                _https_ok(
                    f"{self.server}/api/v1/namespaces/{ns}/serviceaccounts/{sa}", self.admin_token, context
                )
                for ns, sa in (("default", "default"), ("kube-system", "generic-garbage-collector"))
            )

        self._start_with_ports("kube-controller-manager", 0, args, ready)

    # -- clients --------------------------------------------------------------------------------------

    def api_client(self, token: str | None = None) -> Any:
        """A `kubernetes.client.ApiClient` for `token` (default: the admin, in system:masters)."""
        from kubernetes import client

        configuration = client.Configuration(
            host=self.server,
            api_key={"authorization": token or self.admin_token},
            api_key_prefix={"authorization": "Bearer"},
            ssl_ca_cert=str(self.ca_file),
        )
        return client.ApiClient(configuration)

    def service_account_token(self, namespace: str, name: str, expiration_seconds: int = 3600) -> str:
        """A token for ServiceAccount `namespace/name` (created when missing) through the TokenRequest API."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as admin:
            core = client.CoreV1Api(admin)
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as error:
                if error.status != 409:  # it exists already
                    raise
            request = core.create_namespaced_service_account_token(
                name,
                namespace,
                _token_request(client, expiration_seconds),
            )
            if request.status is None or not request.status.token:
                raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
            return str(request.status.token)

    def service_account_client(self, namespace: str, name: str) -> Any:
        """An ApiClient authenticated as ServiceAccount `namespace/name` (a TokenRequest token)."""
        return self.api_client(self.service_account_token(namespace, name))

    def logs(self) -> dict[str, Path]:
        return {path.stem: path for path in sorted(self.workdir.glob("*.log"))}


def _token_request(client: Any, expiration_seconds: int) -> Any:
    """A TokenRequest body; kubernetes>=36 calls the model AuthenticationV1TokenRequest."""
    model = getattr(client, "AuthenticationV1TokenRequest", None) or client.V1TokenRequest
    return model(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds))


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> None:
    """A kubeconfig (JSON is YAML) with one cluster, one token user and one current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "karl-test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "karl-test", "context": {"cluster": "karl-test", "user": user}}],
        "current-context": "karl-test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    *,
    watch: Sequence[Process] = (),
    interval: float = 0.1,
) -> None:
    """Poll `check` until it returns true; fail after `timeout` s, or as soon as a watched process exits."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for proc in watch:
            if not proc.alive():
                raise ControlPlaneError(
                    f"{proc.name} exited with status {proc.popen.returncode} while waiting for {what}; "
                    f"log {proc.log_path}:\n{proc.tail()}"
                )
        try:
            if check():
                return
        except Exception as error:  # a connection refused until the server listens, ...
            last = error
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.tail(15)}" for p in watch)
            raise ControlPlaneError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{tails}"
            )
        time.sleep(interval)


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(json.load(response).get("health") == "true")
    except (OSError, ValueError):
        return False


def _https_ok(url: str, token: str, context: ssl.SSLContext) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return False
