"""Starting and stopping the proxies under test (rtpengine, Karl), pinned to one core.

``karl-baseline`` is Karl started exactly like ``karl`` (same interpreter, same environment, same
command) but with another source tree's ``core/`` and ``medianode/`` first on ``PYTHONPATH``: a git
worktree or clone of an older commit, to measure a change before and after in one run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngclient import wait_for_ping

REPO = Path(__file__).resolve().parents[1]
BASELINE = "karl-baseline"
FLOOR = "python-floor"  # bench/floor_proxy.py: the least a Python NG proxy does; measured on request
FLOOR_BARE = "python-floor-bare"  # the same without its state journal and call records
PLAIN_PATH = "python-plain-path"  # the floor with bench/plain_path.py's share of 10.5's work
# also the order in which each repetition measures them
PROXY_NAMES = ("rtpengine", FLOOR_BARE, FLOOR, PLAIN_PATH, BASELINE, "karl")
DEFAULT_PROXIES = ("rtpengine", BASELINE, "karl")
KARL_SOURCE_DIRS = ("core", "medianode")  # a tree's directories that hold karl_core and karl_medianode


@dataclass(frozen=True)
class ProxyPorts:
    ng_port: int
    rtp_min: int
    rtp_max: int
    http_ports: tuple[int, int, int] = (0, 0, 0)  # Karl: API, health, metrics


@dataclass(frozen=True)
class Launch:
    """How to start a proxy: the core it is pinned to and the SCHED_FIFO priority (0 = normal)."""

    core: int
    realtime_priority: int
    media_ip: str
    ng_host: str = "127.0.0.1"
    state_root: Path | None = None
    """Karl keeps its calls in a fresh directory below this one (`KARL_STATE_DIR`, the file call
    store: every change written before its reply); None: in memory only."""


@dataclass
class RunningProxy:
    name: str
    pid: int
    ng: tuple[str, int]
    media_ip: str
    ports: ProxyPorts
    log_path: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the proxy runs in a session of its own, which goes too."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # children it may have left behind

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProxyStartError(RuntimeError):
    pass


def _pin(launch: Launch) -> list[str]:
    prefix = ["taskset", "-c", str(launch.core)]
    if launch.realtime_priority > 0:
        prefix = ["chrt", "-f", str(launch.realtime_priority), *prefix]
    return prefix


def spawn(
    argv: list[str], launch: Launch, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> subprocess.Popen[bytes]:
    """Start ``argv`` pinned as ``launch`` says, in a session of its own, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [*_pin(launch), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def rtpengine_command(launch: Launch, ports: ProxyPorts) -> list[str]:
    return [
        "rtpengine",
        "--config-file=none",
        "--table=-1",
        "--foreground",
        "--log-stderr",
        f"--interface={launch.media_ip}",
        f"--listen-ng={launch.ng_host}:{ports.ng_port}",
        f"--port-min={ports.rtp_min}",
        f"--port-max={ports.rtp_max}",
        "--log-level=4",
        # One worker thread: the proxy has one core; more pollers on it only add context switches.
        "--num-threads=1",
    ]


def karl_command() -> list[str]:
    venv_python = REPO / ".venv" / "bin" / "python"
    return [str(venv_python if venv_python.exists() else Path(sys.executable)), "-m", "karl_medianode"]


def karl_env(launch: Launch, ports: ProxyPorts, tree: Path | None = None) -> dict[str, str]:
    """Karl's environment; with ``tree``, that tree's sources come first on ``PYTHONPATH``.

    Without ``tree`` the venv's editable install resolves ``karl_*`` to this checkout. Its finder
    comes after the ``PYTHONPATH`` entries, so with ``tree`` the tree's modules win.
    """
    api, health, metrics = ports.http_ports
    env = {
        **os.environ,
        "KARL_NG_ADDRESS": launch.ng_host,
        "KARL_NG_PORT": str(ports.ng_port),
        "KARL_MEDIA_IP": launch.media_ip,
        "KARL_RTP_MIN_PORT": str(ports.rtp_min),
        "KARL_RTP_MAX_PORT": str(ports.rtp_max),
        "KARL_CONFIG_PATH": "/nonexistent",
        "KARL_API_PORT": str(api),
        "KARL_HEALTH_PORT": str(health),
        "KARL_METRICS_PORT": str(metrics),
        "KARL_LOG_LEVEL": "warning",
    }
    # CDRs on, as Karl runs by default, but in a directory of this run's (removed at exit), not in
    # /var/lib/karl where every run's records would pile up
    cdr_dir = tempfile.mkdtemp(prefix=f"karl-bench-cdr-{ports.ng_port}-")
    atexit.register(shutil.rmtree, cdr_dir, True)
    env["KARL_CDR_PATH"] = os.path.join(cdr_dir, "cdr.jsonl")
    env["KARL_CDR_SPOOL_DIR"] = os.path.join(cdr_dir, "spool")
    if launch.state_root is not None:
        launch.state_root.mkdir(parents=True, exist_ok=True)
        env["KARL_STATE_DIR"] = tempfile.mkdtemp(prefix=f"karl-{ports.ng_port}-", dir=launch.state_root)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [*(str(tree / d) for d in KARL_SOURCE_DIRS), *filter(None, [env.get("PYTHONPATH")])]
        )
    return env


_IMPORT_CHECK = (
    "import sys, karl_medianode.cli\n"
    "for name, module in sorted(sys.modules.items()):\n"
    "    if name.split('.')[0] in ('karl_core', 'karl_medianode'):\n"
    "        print(name, getattr(module, '__file__', None) or '')\n"
)


def floor_command(launch: Launch, ports: ProxyPorts, bare: bool = False, plain: bool = False) -> list[str]:
    """bench/floor_proxy.py with Karl's interpreter; its state journal (with the call store, as
    Karl's) and call records, unless `bare`; with `plain`, bench/plain_path.py's work too."""
    command = [
        karl_command()[0],
        str(Path(__file__).resolve().parent / "floor_proxy.py"),
        f"--ng={launch.ng_host}:{ports.ng_port}",
        f"--media-ip={launch.media_ip}",
        f"--ports={ports.rtp_min}-{ports.rtp_max}",
    ]
    if plain:
        command.append("--plain-path")
    if bare:
        return command
    cdr_dir = tempfile.mkdtemp(prefix=f"karl-bench-floor-cdr-{ports.ng_port}-")
    atexit.register(shutil.rmtree, cdr_dir, True)
    command.append(f"--cdr={os.path.join(cdr_dir, 'cdr.jsonl')}")
    if launch.state_root is not None:
        launch.state_root.mkdir(parents=True, exist_ok=True)
        state_dir = tempfile.mkdtemp(prefix=f"floor-{ports.ng_port}-", dir=launch.state_root)
        command.append(f"--state-dir={state_dir}")
    return command


def check_karl_tree(tree: Path) -> dict[str, Any]:
    """Check that Karl started from ``tree`` imports its code from there; describe the tree.

    Imports what ``python -m karl_medianode`` imports at start-up (``karl_medianode.cli``) with the
    environment ``karl-baseline`` gets. A module found outside ``tree`` (the editable install falls
    back to this checkout for modules the tree lacks) fails the check.
    """
    tree = tree.resolve()
    missing = [d for d in KARL_SOURCE_DIRS if not (tree / d).is_dir()]
    if missing:
        raise ProxyStartError(f"{tree} is not a Karl source tree: no {'/, '.join(missing)}/ in it")
    env = karl_env(Launch(core=0, realtime_priority=0, media_ip="127.0.0.1"), ProxyPorts(0, 0, 0), tree)
    done = subprocess.run(
        [karl_command()[0], "-c", _IMPORT_CHECK],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise ProxyStartError(f"Karl from {tree} does not import:\n{done.stderr.strip()}")
    modules = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    stray = {name: path for name, path in modules.items() if not Path(path).is_relative_to(tree)}
    if stray or not modules:
        listed = "\n".join(f"  {name}: {path}" for name, path in sorted(stray.items()))
        raise ProxyStartError(f"Karl from {tree} imports modules from elsewhere:\n{listed}")
    return {**tree_info(tree), "modules_checked": len(modules)}


def tree_info(tree: Path) -> dict[str, Any]:
    """Path, git commit and whether the work tree has uncommitted changes (``None``: not a git tree)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", *KARL_SOURCE_DIRS)
    bench = git("status", "--porcelain", "--", "bench/*.py")  # the floor proxy and the client
    return {
        "path": str(tree),
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_changes": None if status is None else bool(status),
        "bench_uncommitted_changes": None if bench is None else bool(bench),
    }


def start(
    name: str,
    launch: Launch,
    ports: ProxyPorts,
    log_dir: Path,
    timeout_s: float = 20.0,
    trees: Mapping[str, Path] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> RunningProxy:
    """Start ``name`` pinned as ``launch`` says and wait until it answers NG ``ping``.

    ``trees`` gives the source tree of ``karl-baseline`` (required for it); ``extra_env`` is added to
    the proxy's environment (e.g. Karl's fleet settings for bench/fleet.py).
    """
    cwd = REPO
    if name == "rtpengine":
        command, env = rtpengine_command(launch, ports), dict(os.environ)
    elif name == "karl":
        command, env = karl_command(), karl_env(launch, ports)
    elif name in (FLOOR, FLOOR_BARE, PLAIN_PATH):
        command = floor_command(launch, ports, bare=name == FLOOR_BARE, plain=name == PLAIN_PATH)
        env = dict(os.environ)
    elif name == BASELINE:
        tree = (trees or {}).get(name)
        if tree is None:
            raise ValueError(f"{name} needs a source tree (--baseline-tree)")
        command, env, cwd = karl_command(), karl_env(launch, ports, tree), tree
    else:
        raise ValueError(f"unknown proxy {name!r}")
    env.update(extra_env or {})
    log_path = log_dir / f"{name}-{ports.ng_port}.log"
    proc = spawn(command, launch, log_path, env, cwd)
    running = RunningProxy(
        name, proc.pid, (launch.ng_host, ports.ng_port), launch.media_ip, ports, log_path, proc
    )
    try:
        answered = wait_for_ping(launch.ng_host, ports.ng_port, timeout_s, alive=running.alive)
        if answered:
            # Let start-up work (thread creation, first allocations) settle before anything is measured.
            time.sleep(0.2)
    except BaseException:  # Ctrl-C while waiting: the caller has no handle to stop it with
        running.stop()
        raise
    if not answered:
        running.stop()
        raise ProxyStartError(f"{name} did not answer NG ping within {timeout_s} s:\n{running.log_tail()}")
    return running
