"""Test kit of the fleet tests (importable as `fleet.fleet_kit`): a real `redis-server` that can be
paused, killed, restarted empty and cut off the network; a lab of Linux network namespaces behind one
bridge; and launchers for media nodes (`karl`, one per namespace) and the NG router (`karl-router`).

Addresses in a lab: the bridge holds 10.213.<n>.1/24 in the root namespace, namespace k (0, 1, ...)
holds 10.213.<n>.<10+k>/24 on its `eth0` with a default route via the bridge. A process in the root
namespace talks to the namespaces from the bridge address (or the wildcard): a socket bound to
127.0.0.1 cannot send there (the kernel refuses a loopback source on another interface, EINVAL), and a
namespace cannot reach the root namespace's 127.0.0.1. So NG clients and test parties of the fleet
tests bind the bridge address, and Redis listens on the bridge address too (`RedisServer.listen_on`).

Everything needs root (namespaces, veths, the bridge, nftables).
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from karl_testkit import (
    ROOT,
    NgClient,
    NgServer,
    Party,
    free_port,
    karl_env,
    port_of,
    sdp,
    tcp_listening,
    wait_for,
    wait_for_pong,
)

T = TypeVar("T")

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
LAB_PREFIX = "10.213"
DEFAULT_NODE_PORTS = (20000, 20999)
# NG, API, health and metrics ports of the nodes of a lab: 4 per node from here, above the RTP ranges
CONTROL_PORT_BASE = 31000
# ports of the parties `NetnsLab.party` makes inside namespaces (2 per party)
PARTY_PORT_BASE = 30000
_CLONE_NEWNET = 0x40000000
_IFNAMSIZ = 15
_LOCK_PATH = Path("/run/lock/karl-fleet-netns.lock")

_labs_started = 0  # per process: gives each lab of this process its own names
_labs_lock = threading.Lock()


def _bin(name: str) -> str:
    """A console script of this checkout's venv, next to the running interpreter (as karl_testkit runs
    `sys.executable`), else the checkout's .venv, else PATH."""
    for candidate in (Path(sys.executable).with_name(name), ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name) or name


def is_root() -> bool:
    return os.geteuid() == 0


def require_root_tools(*tools: str) -> None:
    """Skip (a failure under KARL_FAIL_ON_SKIP, i.e. in CI) unless running as root with `tools` on PATH."""
    import pytest

    if not is_root():
        pytest.skip("the fleet tests need root (network namespaces, a bridge, nftables)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the fleet tests need {', '.join(missing)} (Debian packages iproute2, nftables)")


def _run(argv: Sequence[str], check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _new_log(log_dir: Path, stem: str) -> Path:
    """`<stem>.log`, or `<stem>-2.log`, ... when started again: an earlier log is kept."""
    path = log_dir / f"{stem}.log"
    again = 1
    while path.exists():
        again += 1
        path = log_dir / f"{stem}-{again}.log"
    return path


# Every process the kit starts is registered under REGISTRY as `<test pid>-<child pid>` holding the
# child's start time. When a crashed run left one behind (its test process is gone), the next run kills
# it. (No environment marker: redis-server overwrites its environ with its process title.)
REGISTRY = Path("/run/karl-fleet")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, after the parenthesised command


def register(proc: subprocess.Popen[bytes]) -> None:
    started = _start_time(proc.pid)
    if started is not None:
        with suppress(OSError):  # not root: no registry, no reaping
            REGISTRY.mkdir(parents=True, exist_ok=True)
            (REGISTRY / f"{os.getpid()}-{proc.pid}").write_text(started)


def unregister(proc: subprocess.Popen[bytes]) -> None:
    with suppress(OSError):
        (REGISTRY / f"{os.getpid()}-{proc.pid}").unlink(missing_ok=True)


def reap_orphans() -> None:
    """SIGKILL the processes of crashed test runs (registered by a test process that is gone)."""
    if not REGISTRY.is_dir():
        return
    for entry in REGISTRY.iterdir():
        owner, _, child = entry.name.partition("-")
        if not (owner.isdigit() and child.isdigit()) or _pid_alive(int(owner)):
            continue
        with suppress(OSError):
            if _start_time(int(child)) == entry.read_text():  # the same process, not a reused pid
                os.kill(int(child), signal.SIGKILL)
        entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- nftables


def nft_tables() -> list[tuple[str, str]]:
    """(family, name) of every nftables table of the root namespace."""
    out = _run(["nft", "-j", "list", "tables"]).stdout
    return [
        (item["table"]["family"], item["table"]["name"])
        for item in json.loads(out).get("nftables", [])
        if "table" in item
    ]


def _nft_delete_table(family: str, name: str) -> None:
    _run(["nft", "delete", "table", family, name], check=False)


# ------------------------------------------------------------------------------------------------ Redis


class RedisServer:
    """A `redis-server` of its own: no persistence, no protected mode, logs in `log_dir`."""

    def __init__(
        self,
        log_dir: Path,
        bind: Sequence[str] = ("127.0.0.1",),
        port: int | None = None,
        lab: NetnsLab | None = None,
    ) -> None:
        """Start it on `port` (default: a free one) bound to `bind`, plus the bridge address of `lab`."""
        self.log_dir = log_dir
        self.bind: list[str] = list(bind)
        if lab is not None and lab.bridge_ip not in self.bind:
            self.bind.append(lab.bridge_ip)
        self.port = port or free_port()
        self.data_dir = log_dir / f"redis-{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.nft_table = f"karl_test_{os.getpid()}_{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        reap_orphans()
        _reap_stale_nft_tables()
        self._start()

    # addresses

    @property
    def host(self) -> str:
        return self.bind[0]

    @property
    def addr(self) -> str:
        """The "host:port" of its first bind address (127.0.0.1 by default)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def addr_on(self, host: str) -> str:
        """The "host:port" of another of its addresses (e.g. a lab's bridge address)."""
        assert host in self.bind, f"Redis does not listen on {host} (only {self.bind}); use listen_on"
        return f"{host}:{self.port}"

    def client(self, timeout: float = 2.0, retry: bool = True, **kwargs: Any) -> redis.Redis:
        """A sync client (decode_responses=True); `timeout` bounds connecting and every reply. With
        retry=False a timeout or a refused connection raises at once instead of being retried (redis-py
        retries 3 times by default)."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "decode_responses": True,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        if not retry:
            options["retry"] = Retry(NoBackoff(), 0)
        options.update(kwargs)
        return redis.Redis(**options)

    def answers_ping(self, timeout: float = 0.3) -> bool:
        probe = self.client(timeout=timeout, retry=False)
        try:
            return bool(probe.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            probe.close()

    # process

    def _start(self) -> None:
        argv = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", *self.bind,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--protected-mode", "no",
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        for stale in ("dump.rdb", "appendonly.aof", "appendonlydir"):  # restarts must be empty
            path = self.data_dir / stale
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        out = (self.log_dir / f"redis-{self.port}.out").open("ab")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.data_dir)
        out.close()
        register(self.proc)
        try:
            wait_for(lambda: self.proc is not None and (self.proc.poll() is not None or self.answers_ping()))
        except AssertionError:
            self.kill()
            what = f"redis-server on port {self.port} did not answer PING"
            raise RuntimeError(f"{what}\n{self.log()}") from None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}\n{self.log()}")

    def log(self) -> str:
        parts = []
        for path in (self.log_dir / f"redis-{self.port}.out", self.log_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def listen_on(self, host: str) -> None:
        """Listen on `host` too (CONFIG SET bind, kept across restarts); no-op when it already does."""
        if host in self.bind:
            return
        if self.traffic_dropped:
            raise RuntimeError(
                "Redis cannot be reconfigured while its traffic is dropped: call listen_on "
                "(or start the nodes) before drop_traffic"
            )
        with self.client(retry=False) as c:
            c.config_set("bind", " ".join([*self.bind, host]))
        self.bind.append(host)

    def _state(self) -> str:
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0]

    def pause(self) -> None:
        """SIGSTOP: connections stay open, commands get no answer."""
        assert self.proc is not None and self.proc.poll() is None, "Redis is not running"
        self.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: self._state() in ("T", "t"), timeout=5)

    def resume(self) -> None:
        """SIGCONT, then wait until it answers PING."""
        assert self.proc is not None and self.proc.poll() is None, "Redis is not running"
        self.proc.send_signal(signal.SIGCONT)
        wait_for(self.answers_ping, timeout=5)

    def kill(self) -> None:
        """SIGKILL (its data is lost), then reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            unregister(self.proc)

    def restart(self) -> None:
        """Start again, empty, on the same port and addresses (kills a running one first)."""
        self.kill()
        self._start()

    def drop_traffic(self) -> None:
        """Drop every TCP packet to or from the Redis port (nftables input and output of the root
        namespace): established connections hang, new ones time out; nothing is reset."""
        p = self.port
        rules = f"tcp dport {p} drop; tcp sport {p} drop;"
        ruleset = (
            f"table inet {self.nft_table} {{\n"
            f"  chain input {{ type filter hook input priority -300; policy accept; {rules} }}\n"
            f"  chain output {{ type filter hook output priority -300; policy accept; {rules} }}\n"
            "}\n"
        )
        self.restore_traffic()
        subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True, capture_output=True)

    def restore_traffic(self) -> None:
        """Remove the table of `drop_traffic` (harmless when there is none)."""
        if ("inet", self.nft_table) in nft_tables():
            _run(["nft", "delete", "table", "inet", self.nft_table])

    @property
    def traffic_dropped(self) -> bool:
        return ("inet", self.nft_table) in nft_tables()

    def stop(self) -> None:
        """Restore traffic, SIGCONT (a paused server cannot exit), SIGTERM then SIGKILL."""
        with suppress(FileNotFoundError, RuntimeError):
            self.restore_traffic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc)
        if self.proc is not None:
            unregister(self.proc)


def _reap_stale_nft_tables() -> None:
    """Tables `karl_test_<pid>_*` whose process is gone (a crashed run) are deleted."""
    if not is_root() or shutil.which("nft") is None:
        return
    with suppress(RuntimeError, ValueError):
        for family, name in nft_tables():
            m = re.fullmatch(r"karl_test_(\d+)_\d+", name)
            if m and not _pid_alive(int(m.group(1))):
                _nft_delete_table(family, name)


# --------------------------------------------------------------------------------------- network lab

_libc = ctypes.CDLL(None, use_errno=True)


def _in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a thread that entered network namespace `netns` (setns affects that thread only);
    sockets it creates stay in that namespace."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{netns}")
    thread.start()
    thread.join(30)
    if error:
        raise error[0]
    assert result, f"call in namespace {netns} did not finish"
    return result[0]


def _taken_subnets() -> set[int]:
    """Third octets n of every 10.213.n.0/24 with an address or a route in the root namespace."""
    text = _ip("-4", "-o", "addr").stdout + _ip("-4", "route", "show", "table", "all").stdout
    return {int(n) for n in re.findall(rf"\b{re.escape(LAB_PREFIX)}\.(\d+)\.\d+", text)}


@contextmanager
def _host_lock() -> Iterator[None]:
    """Serialises choosing and claiming a /24 among the test processes of this machine."""
    _LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK_PATH.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_NAME = re.compile(r"(?:karl|kb|kv)(\d+)(?:l\d+)?(?:n\d+)?")


def reap_stale_labs() -> None:
    """Namespaces and links of labs whose process is gone (`karl<pid>...`, `kb<pid>...`, `kv<pid>...`)."""
    for name in _ip("netns", "list").stdout.split():
        m = _NAME.fullmatch(name)
        if m and name.startswith("karl") and not _pid_alive(int(m.group(1))):
            _delete_netns(name)
    for line in _ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _NAME.fullmatch(name)
        if m and name.startswith(("kb", "kv")) and not _pid_alive(int(m.group(1))):
            _ip("link", "del", name, check=False)


def _delete_netns(name: str) -> None:
    """Kill what still runs in it (only our own launchers start processes there), then delete it."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


class NetnsLab:
    """A bridge with address 10.213.<n>.1/24 in the root namespace and `count` network namespaces on
    it (k = 0 .. count-1 at 10.213.<n>.<10+k>). Use as a context manager, or call `close()`; cleanup
    also runs when `__init__` fails halfway, and leftovers of a crashed run with the same names are
    deleted first."""

    def __init__(self, count: int, log_dir: Path, tag: str | None = None, probe: bool = True) -> None:
        global _labs_started
        if not 1 <= count <= 200:
            raise ValueError("a lab has 1..200 namespaces")
        with _labs_lock:
            index = _labs_started
            _labs_started += 1
        self.tag = tag or (f"{os.getpid()}" if index == 0 else f"{os.getpid()}l{index}")
        self.count = count
        self.log_dir = log_dir
        self.cluster_id = f"fleet-{self.tag}"
        self.bridge = f"kb{self.tag}"
        self.subnet: int | None = None
        self.nodes: list[NgServer] = []
        self._undo_firewall: list[list[str]] = []
        self._next_control_port = CONTROL_PORT_BASE
        self._next_party_port = PARTY_PORT_BASE
        self._closed = False
        for name in (self.bridge, *(self.veth_name(k) for k in range(count))):
            if len(name) > _IFNAMSIZ:
                raise ValueError(f"interface name {name!r} is longer than {_IFNAMSIZ} characters")
        try:
            self._create(probe)
        except BaseException:
            self.close()
            raise

    # names and addresses

    def ns_name(self, k: int) -> str:
        self._check(k)
        return f"karl{self.tag}n{k}"

    def veth_name(self, k: int) -> str:
        return f"kv{self.tag}n{k}"

    @property
    def bridge_ip(self) -> str:
        assert self.subnet is not None
        return f"{LAB_PREFIX}.{self.subnet}.1"

    @property
    def network(self) -> str:
        assert self.subnet is not None
        return f"{LAB_PREFIX}.{self.subnet}.0/24"

    def ns_ip(self, k: int) -> str:
        self._check(k)
        assert self.subnet is not None
        return f"{LAB_PREFIX}.{self.subnet}.{10 + k}"

    def _check(self, k: int) -> None:
        if not 0 <= k < self.count:
            raise IndexError(f"namespace {k} of a lab of {self.count}")

    def exec_prefix(self, k: int) -> list[str]:
        """Prefix of a command line that runs in namespace k (`ip netns exec` execs, so the process
        started is the command itself and signals reach it)."""
        return ["ip", "netns", "exec", self.ns_name(k)]

    def run(
        self, k: int, argv: Sequence[str], timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in namespace k; its output as text."""
        done = subprocess.run([*self.exec_prefix(k), *argv], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} in {self.ns_name(k)} failed ({done.returncode}): "
                f"{done.stdout.strip()} {done.stderr.strip()}"
            )
        return done

    def call_in(self, k: int, fn: Callable[[], T]) -> T:
        """Call `fn` in-process from inside namespace k (sockets it opens live there)."""
        return _in_netns(self.ns_name(k), fn)

    def udp_socket(self, k: int | None, port: int = 0) -> socket.socket:
        """A UDP socket bound to namespace k's address (k=None: the root namespace's bridge address)."""
        host = self.bridge_ip if k is None else self.ns_ip(k)

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            sock.settimeout(2.0)
            return sock

        return make() if k is None else self.call_in(k, make)

    def party(self, k: int, port: int | None = None) -> Party:
        """A SIP party inside namespace k: RTP on `port` (even; default: the lab's next pair from
        PARTY_PORT_BASE, clear of the nodes' RTP and control ports), RTCP on `port`+1."""
        if port is None:
            port = self._next_party_port
            self._next_party_port += 2
        assert port % 2 == 0, port
        rtp = self.udp_socket(k, port)
        try:
            rtcp = self.udp_socket(k, port + 1)
        except OSError:
            rtp.close()
            raise
        return Party(rtp, rtcp)

    def ng_client(self, k: int, ng_port: int) -> NgClient:
        """An NG client in the root namespace (sending from the bridge address) for a node in k."""
        return BridgeNgClient((self.ns_ip(k), ng_port), source_ip=self.bridge_ip)

    def control_ports(self, count: int = 4) -> int:
        """First of `count` control ports (NG, API, ...) no other node of this lab has."""
        base = self._next_control_port
        self._next_control_port += count
        if self._next_control_port > 32767:
            raise RuntimeError("this lab ran out of control ports")
        return base

    # setup and cleanup

    def _create(self, probe: bool) -> None:
        reap_orphans()
        reap_stale_labs()
        _reap_stale_nft_tables()
        self._delete_names()  # same names as a crashed run of a process with our pid
        with _host_lock():
            taken = _taken_subnets()
            start = os.getpid() % 200
            free = [n for n in (1 + (start + i) % 254 for i in range(254)) if n not in taken]
            if not free:
                raise RuntimeError(f"no free {LAB_PREFIX}.n.0/24 for a lab bridge")
            self.subnet = free[0]
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for k in range(self.count):
            ns, veth = self.ns_name(k), self.veth_name(k)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.ns_ip(k)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.bridge_ip)
        self._open_firewall()
        if probe:
            self.probe()

    def _delete_names(self) -> None:
        existing = set(_ip("netns", "list").stdout.split())
        for k in range(self.count):
            if self.ns_name(k) in existing:
                _delete_netns(self.ns_name(k))
        for name in (*(self.veth_name(k) for k in range(self.count)), self.bridge):
            if _ip("link", "show", name, check=False).returncode == 0:
                _ip("link", "del", name, check=False)

    def _open_firewall(self) -> None:
        """Accept the lab's traffic ahead of every input and forward base chain of the host's ruleset.

        Namespace-to-namespace packets are bridged; with br_netfilter loaded and
        net.bridge.bridge-nf-call-iptables=1 they also traverse the IPv4 forward hook, where a drop
        policy (Docker sets FORWARD DROP) would eat them; namespace-to-root packets traverse input.
        An accept in another table cannot overrule a drop, so the rule goes at the head of each such
        chain, and is deleted again on close. Our own `karl_test_*` tables are left alone."""
        if shutil.which("nft") is None:
            return
        chains = json.loads(_run(["nft", "-j", "list", "chains"]).stdout).get("nftables", [])
        for item in chains:
            chain = item.get("chain")
            if not chain or chain.get("hook") not in ("input", "forward"):
                continue
            family, table, name = chain["family"], chain["table"], chain["name"]
            if family not in ("ip", "inet") or table.startswith("karl_test"):
                continue
            forward = chain["hook"] == "forward"
            match = ["iifname", self.bridge] + (["oifname", self.bridge] if forward else [])
            if family == "ip" and table == "filter" and name in ("INPUT", "FORWARD"):
                # a chain of iptables-nft: let iptables write the rule, so `iptables -S` stays readable
                spec = self._iptables_accept(name)
                _run(["iptables", "-I", name, "1", *spec])
                self._undo_firewall.append(["iptables", "-D", name, *spec])
                continue
            out = _run(["nft", "--echo", "--handle", "insert", "rule", family, table, name, *match, "accept"])
            handle = re.search(r"# handle (\d+)", out.stdout)
            if handle:
                self._undo_firewall.append(
                    ["nft", "delete", "rule", family, table, name, "handle", handle.group(1)]
                )
        legacy = Path("/proc/net/ip_tables_names")
        if shutil.which("iptables-legacy") and legacy.exists() and "filter" in legacy.read_text().split():
            for name in ("INPUT", "FORWARD"):
                spec = self._iptables_accept(name)
                _run(["iptables-legacy", "-I", name, "1", *spec])
                self._undo_firewall.append(["iptables-legacy", "-D", name, *spec])

    def _iptables_accept(self, chain: str) -> list[str]:
        out = ["-o", self.bridge] if chain == "FORWARD" else []
        return ["-i", self.bridge, *out, "-j", "ACCEPT"]

    @property
    def firewall_rules_added(self) -> int:
        return len(self._undo_firewall)

    def probe(self, timeout: float = 5.0) -> None:
        """UDP from the root namespace to every namespace and back, and between neighbours; raises with
        the failing pair when the lab does not carry traffic."""
        root = self.udp_socket(None)
        socks = [self.udp_socket(k) for k in range(self.count)]
        try:
            pairs: list[tuple[socket.socket, socket.socket]] = []
            for sock in socks:
                pairs += [(root, sock), (sock, root)]
            for a, b in itertools.pairwise(socks):
                pairs += [(a, b), (b, a)]
            for src, dst in pairs:
                udp_exchange(src, dst, timeout)
        finally:
            root.close()
            for sock in socks:
                sock.close()

    def close(self) -> None:
        """Stop the processes started in the lab, undo the firewall rules, delete namespaces, veths and
        the bridge. Safe to call twice and after a failed start."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes:
            with suppress(Exception):
                node.stop()
        for undo in reversed(self._undo_firewall):
            _run(undo, check=False)
        self._undo_firewall.clear()
        existing = set(_ip("netns", "list", check=False).stdout.split())
        for k in range(self.count):
            if self.ns_name(k) in existing:
                _delete_netns(self.ns_name(k))
        for k in range(self.count):
            _ip("link", "del", self.veth_name(k), check=False)
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def udp_exchange(src: socket.socket, dst: socket.socket, timeout: float = 2.0) -> None:
    """`src` sends to `dst`'s address until a datagram arrives (the first ones may be lost while links
    come up); fails the test after `timeout` with both addresses."""
    payload = os.urandom(8)
    dst.settimeout(0.05)
    target = dst.getsockname()

    def arrived() -> bool:
        src.sendto(payload, target)
        try:
            while True:
                data, peer = dst.recvfrom(2048)
                if data == payload:
                    assert peer == src.getsockname(), (peer, src.getsockname())
                    return True
        except TimeoutError:
            return False

    try:
        wait_for(arrived, timeout=timeout, interval=0.0)
    except AssertionError:
        what = f"UDP from {src.getsockname()} to {target}"
        raise AssertionError(f"{what} did not arrive within {timeout}s") from None
    finally:
        dst.settimeout(2.0)


@dataclass
class BridgeNgClient(NgClient):
    """karl_testkit's NG client, sending from `source_ip` instead of 127.0.0.1 (which cannot reach a
    namespace)."""

    source_ip: str = "0.0.0.0"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.source_ip, 0))


# ------------------------------------------------------------------------------------------- launchers


@dataclass
class FleetProcess(NgServer):
    """An NG server the kit started (registered, so a crashed run's leftovers get reaped)."""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, SIGKILL after `timeout`."""
        code = super().stop(timeout)
        unregister(self.proc)
        return code

    def kill(self) -> int:
        """SIGKILL (a crash: no graceful shutdown), then reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.ng.close()
        unregister(self.proc)
        return self.proc.returncode


def _popen(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    register(proc)
    return proc


@dataclass
class FleetNode(FleetProcess):
    """A `karl` media node running in namespace `k` of `lab`."""

    lab: NetnsLab
    k: int
    node_id: str
    env: dict[str, str] = field(repr=False)

    @property
    def ns_ip(self) -> str:
        return self.media_ip

    def port(self, variable: str) -> int:
        """A port of its configuration, e.g. node.port("KARL_HEALTH_PORT")."""
        return int(self.env[variable])

    def url(self, server: str) -> str:
        """http://<ns ip>:<port>/ of "api", "health" or "metrics"."""
        return f"http://{self.ns_ip}:{self.port(f'KARL_{server.upper()}_PORT')}"


def node_env(
    lab: NetnsLab,
    k: int,
    redis: RedisServer | None,
    node_id: str,
    ports: tuple[int, int] = DEFAULT_NODE_PORTS,
    **env: str,
) -> dict[str, str]:
    """The environment `start_node` gives `karl` (new control ports from the lab each call)."""
    port_min, port_max = ports
    if not (1024 <= port_min < port_max < 32768) or port_min % 2:
        raise ValueError(f"RTP ports {ports}: an even first port, below 32768")
    control = lab.control_ports(4)
    if port_min <= control + 3 and control <= port_max:
        raise ValueError(f"RTP ports {ports} overlap the lab's control ports from {control}")
    ip = lab.ns_ip(k)
    extra = {
        "KARL_NG_ADDRESS": ip,
        "KARL_MEDIA_IP": ip,
        "KARL_API_ADDRESS": ip,
        "KARL_API_PORT": str(control + 1),
        "KARL_HEALTH_PORT": str(control + 2),
        "KARL_METRICS_PORT": str(control + 3),
        "KARL_NODE_ID": node_id,
        "KARL_CLUSTER_ID": lab.cluster_id,
    }
    if redis is not None:
        redis.listen_on(lab.bridge_ip)
        extra["KARL_REDIS_ENABLED"] = "1"
        extra["KARL_REDIS_ADDR"] = redis.addr_on(lab.bridge_ip)
    extra.update(env)
    return karl_env(ip, control, port_min, port_max, extra)


def start_node(
    lab: NetnsLab,
    k: int,
    redis: RedisServer | None,
    node_id: str,
    ports: tuple[int, int] = DEFAULT_NODE_PORTS,
    **env: str,
) -> FleetNode:
    """Start `karl` in namespace k (NG, media and API on the namespace's address; Redis, when given,
    reached at the bridge address); waits for `pong` and the health port. The lab stops it on close."""
    return launch_node(lab, k, node_id, node_env(lab, k, redis, node_id, ports, **env))


def restart_node(node: FleetNode) -> FleetNode:
    """Start `karl` again with the same namespace, node id, ports and environment (stop it first)."""
    assert node.proc.poll() is not None, "stop or kill the node before restarting it"
    return launch_node(node.lab, node.k, node.node_id, node.env)


def launch_node(lab: NetnsLab, k: int, node_id: str, env: dict[str, str]) -> FleetNode:
    ng_port = int(env["KARL_NG_PORT"])
    log_path = _new_log(lab.log_dir, f"karl-{node_id}")
    proc = _popen([*lab.exec_prefix(k), _bin("karl")], env, log_path)
    node = FleetNode(
        name=f"karl[{node_id}]",
        proc=proc,
        ng=lab.ng_client(k, ng_port),
        media_ip=lab.ns_ip(k),
        port_min=int(env["KARL_RTP_MIN_PORT"]),
        port_max=int(env["KARL_RTP_MAX_PORT"]),
        log_path=log_path,
        lab=lab,
        k=k,
        node_id=node_id,
        env=env,
    )
    lab.nodes.append(node)
    _wait_started(node, node.ns_ip, node.port("KARL_HEALTH_PORT"))
    return node


@dataclass
class FleetRouter(FleetProcess):
    """`karl-router` in the root namespace on 127.0.0.1."""

    node_id: str
    env: dict[str, str] = field(repr=False)


_routers_started = 0


def start_router(
    redis: RedisServer,
    ng_port: int | None = None,
    *,
    log_dir: Path | None = None,
    cluster_id: str | None = None,
    **env: str,
) -> FleetRouter:
    """Start `karl-router` on 127.0.0.1 (NG on `ng_port` or a free one), Redis at 127.0.0.1; waits for
    `pong` and the health port. Logs go to `log_dir` (default: the Redis server's)."""
    global _routers_started
    _routers_started += 1
    node_id = f"router-{_routers_started}"
    ng_port = ng_port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KARL_")}
    full_env.update(
        {
            "KARL_CONFIG_PATH": "/nonexistent/karl-test-config.json",
            "KARL_NG_ADDRESS": "127.0.0.1",
            "KARL_NG_PORT": str(ng_port),
            "KARL_REDIS_ADDR": f"127.0.0.1:{redis.port}",
            "KARL_NODE_ID": node_id,
            "KARL_HEALTH_PORT": str(free_port()),
            "KARL_METRICS_PORT": str(free_port()),
            "KARL_LOG_FORMAT": "text",
            "KARL_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if cluster_id:
        full_env["KARL_CLUSTER_ID"] = cluster_id
    full_env.update(env)
    log_path = _new_log(log_dir or redis.log_dir, f"karl-{node_id}")
    proc = _popen([_bin("karl-router")], full_env, log_path)
    router = FleetRouter(
        name=f"karl-router[{node_id}]",
        proc=proc,
        ng=NgClient(("127.0.0.1", ng_port)),
        media_ip="127.0.0.1",
        port_min=0,
        port_max=0,
        log_path=log_path,
        node_id=node_id,
        env=full_env,
    )
    _wait_started(router, "127.0.0.1", int(full_env["KARL_HEALTH_PORT"]))
    return router


def _wait_started(server: NgServer, host: str, health_port: int, timeout: float = 15.0) -> None:
    """`pong` on NG, then the health port listening; stops the server and raises with its log if not."""
    try:
        wait_for_pong(server.ng, server.proc, server.name, timeout=timeout)
        wait_for(lambda: server.proc.poll() is not None or tcp_listening(host, health_port), timeout=10)
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}")
    except (RuntimeError, AssertionError) as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n--- {server.name} log ---\n{server.log()}") from exc


# ------------------------------------------------------------------------------------------- NG calls


def established_via(
    node: NgServer, a: Party, b: Party, call_id: str, a_ip: str, b_ip: str | None = None
) -> tuple[int, int]:
    """karl_testkit.established for parties at `a_ip` and `b_ip` (default `a_ip`) instead of 127.0.0.1:
    offer from A, answer from B; returns the ports the node gave each side (A sends to the first)."""
    offer = node.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(a.port, a_ip)}
    )
    answer = node.ng.request(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "A",
            "to-tag": "B",
            "sdp": sdp(b.port, b_ip or a_ip),
        },
    )
    assert offer["result"] == answer["result"] == "ok", (offer, answer)
    return port_of(answer), port_of(offer)


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus endpoint: (name, labels, value)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=2) as reply:
        text = reply.read().decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` matching `labels` (0 when there is none)."""
    return sum(
        value
        for sample, sample_labels, value in scrape(url)
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


# ------------------------------------------------------------------------------------------- failover


@dataclass
class FailoverProcess:
    """`karl-operator failover` in the root namespace, Redis at 127.0.0.1."""

    controller_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        code = stop_process(self.proc, timeout)
        unregister(self.proc)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        unregister(self.proc)


def start_failover(
    redis: RedisServer, controller_id: str, *, log_dir: Path | None = None, **env: str
) -> FailoverProcess:
    """Start a failover controller; waits until it has written its lead, or another controller's lead
    exists (it runs as a standby then)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KARL_")}
    full_env.update(
        {
            "KARL_CONFIG_PATH": "/nonexistent/karl-test-config.json",
            "KARL_REDIS_ADDR": f"127.0.0.1:{redis.port}",
            "KARL_NODE_ID": controller_id,
            "KARL_METRICS_ADDRESS": "127.0.0.1",
            "KARL_METRICS_PORT": str(free_port()),
            "KARL_LOG_FORMAT": "text",
            "KARL_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env)
    log_path = _new_log(log_dir or redis.log_dir, f"karl-failover-{controller_id}")
    proc = _popen([_bin("karl-operator"), "failover"], full_env, log_path)
    metrics_url = f"http://127.0.0.1:{full_env['KARL_METRICS_PORT']}"
    controller = FailoverProcess(controller_id, proc, log_path, metrics_url)
    client = redis.client()
    try:
        wait_for(lambda: proc.poll() is not None or client.exists("karl:failover:leader") == 1, timeout=15)
    finally:
        client.close()
    if proc.poll() is not None:
        raise RuntimeError(f"karl-operator failover exited with {proc.returncode}\n{controller.log()}")
    return controller


class WebhookReceiver:
    """An HTTP server taking JSON POSTs (a B2BUA's or proxy's failover hook): it answers 500 to the first
    `fail_first` requests, then 200, and keeps what it accepted (`events`) and how many it refused."""

    def __init__(self, host: str, fail_first: int = 0) -> None:
        import http.server

        receiver = self
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self._fail_left = fail_first
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    refuse = receiver._fail_left > 0
                    if refuse:
                        receiver._fail_left -= 1
                        receiver.refused += 1
                    else:
                        receiver.events.append(json.loads(body))
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url_on(self, host: str) -> str:
        return f"http://{host}:{self.port}/karl-failover"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
