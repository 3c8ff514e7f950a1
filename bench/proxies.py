"""Starting and stopping the proxies under test (rtpengine, Karl), pinned to one core."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ngclient import wait_for_ping

REPO = Path(__file__).resolve().parents[1]
PROXY_NAMES = ("rtpengine", "karl")


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


def karl_env(launch: Launch, ports: ProxyPorts) -> dict[str, str]:
    api, health, metrics = ports.http_ports
    return {
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


def start(
    name: str, launch: Launch, ports: ProxyPorts, log_dir: Path, timeout_s: float = 20.0
) -> RunningProxy:
    """Start ``name`` pinned as ``launch`` says and wait until it answers NG ``ping``."""
    if name == "rtpengine":
        command, env = rtpengine_command(launch, ports), dict(os.environ)
    elif name == "karl":
        command, env = karl_command(), karl_env(launch, ports)
    else:
        raise ValueError(f"unknown proxy {name!r}")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{ports.ng_port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*_pin(launch), *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    running = RunningProxy(
        name, proc.pid, (launch.ng_host, ports.ng_port), launch.media_ip, ports, log_path, proc
    )
    if not wait_for_ping(launch.ng_host, ports.ng_port, timeout_s, alive=running.alive):
        running.stop()
        raise ProxyStartError(f"{name} did not answer NG ping within {timeout_s} s:\n{running.log_tail()}")
    # Let start-up work (thread creation, first allocations) settle before anything is measured.
    time.sleep(0.2)
    return running
