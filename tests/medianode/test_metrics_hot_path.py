"""Nothing per packet: the media relay and the NG socket only bump integers; prometheus-client and the
metrics package are used at scrape time only."""

from __future__ import annotations

import ast
from pathlib import Path

from karl_testkit import ROOT

PACKAGE = ROOT / "medianode" / "karl_medianode"
# Everything a datagram passes through: media relay, NG socket, call engine and their helpers.
PACKET_PATH = [
    "dataplane/relay.py",
    "dataplane/ports.py",
    "../../core/karl_core/ng/server.py",
    "control/engine_driver.py",
    "control/fleet_member.py",
    *(str(p.relative_to(PACKAGE)) for p in sorted((PACKAGE / "engine").glob("*.py"))),
    "clock.py",
    "node.py",
    *(str(p.relative_to(PACKAGE)) for p in sorted((PACKAGE / "rtp").glob("*.py"))),
]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_packet_path_imports_neither_prometheus_client_nor_the_metrics() -> None:
    assert len(PACKET_PATH) > 7
    for name in PACKET_PATH:
        modules = imported_modules(PACKAGE / name)
        bad = {
            m
            for m in modules
            if m.split(".")[0] == "prometheus_client" or m.startswith("karl_medianode.operations.metrics")
        }
        assert not bad, f"{name} imports {sorted(bad)}"
