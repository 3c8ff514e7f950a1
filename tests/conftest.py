"""Fixtures shared by the whole suite; the helpers they use live in `karl_testkit`.

With `KARL_FAIL_ON_SKIP=1` in the environment (`.ci/run` sets it) every skipped test is a failure, so CI
cannot go green by skipping: a missing Debian package, a missing root privilege or a `skipif` that holds
fails the run. The only exceptions are the entries of `SKIP_ALLOWED` below. Expected failures (xfail)
are not skips and stay as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from karl_testkit import RTPENGINE, NgServer, Party, make_party, start_karl, start_rtpengine

FAIL_ON_SKIP = "KARL_FAIL_ON_SKIP"

# The skips CI accepts, and why. A key `mark:<name>` matches the tests carrying that marker; any other
# key is a node-id prefix ("tests/medianode/test_x.py" or "tests/medianode/test_x.py::test_y").
SKIP_ALLOWED: dict[str, str] = {
    "mark:kind": "the kind suite needs a Docker engine and kind, which `make test` does not install",
}


def fail_on_skip() -> bool:
    return os.environ.get(FAIL_ON_SKIP, "").strip().lower() in ("1", "true", "yes")


def skip_allowed(nodeid: str, markers: set[str]) -> str | None:
    """Why a skip of this test is accepted under KARL_FAIL_ON_SKIP, or None when it is not."""
    for key, why in SKIP_ALLOWED.items():
        if key.startswith("mark:") and key.removeprefix("mark:") in markers:
            return why
        if not key.startswith("mark:") and nodeid.startswith(key):
            return why
    return None


def _fail_unless_allowed(
    report: pytest.TestReport | pytest.CollectReport, node: pytest.Item | pytest.Collector
) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not fail_on_skip():
        return
    if skip_allowed(node.nodeid, {mark.name for mark in node.iter_markers()}) is not None:
        return
    reason = report.longrepr
    if isinstance(reason, tuple):  # a skip's (path, line, "Skipped: why"); why first, for the summary
        reason = f"{reason[2]} ({reason[0]}:{reason[1]})"
    report.outcome = "failed"
    report.longrepr = (
        f"{reason}\n{FAIL_ON_SKIP}=1 turns skips into failures: install what the test needs, or add it "
        "to SKIP_ALLOWED in tests/conftest.py with the reason CI may skip it"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Skips from `skip`/`skipif` markers, fixtures and test bodies alike (setup, call or teardown);
    an xfail's report is "skipped" too, but carries `wasxfail` and is left alone."""
    report = yield
    _fail_unless_allowed(report, item)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Module-level skips (`pytest.skip(allow_module_level=True)`, `pytest.importorskip`): a collection
    error then, which stops the run before any test."""
    report = yield
    _fail_unless_allowed(report, collector)
    return report


@pytest.fixture
def karl_factory(tmp_path: Path) -> Iterator[Callable[..., NgServer]]:
    """Start Karl media nodes: `karl_factory(media_ip="127.0.0.2", ports=200, KARL_X="v")`."""
    started: list[NgServer] = []

    def start(media_ip: str = "127.0.0.2", ports: int = 200, **env: str) -> NgServer:
        server = start_karl(tmp_path, media_ip, ports, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def rtpengine_factory(tmp_path: Path) -> Iterator[Callable[..., NgServer]]:
    """Start the reference rtpengine: `rtpengine_factory(media_ip="127.0.0.3", ports=200, extra=[...])`."""
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")
    started: list[NgServer] = []

    def start(media_ip: str = "127.0.0.3", ports: int = 200, extra: list[str] | None = None) -> NgServer:
        server = start_rtpengine(tmp_path, media_ip, ports, extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def parties() -> Iterator[Callable[[], Party]]:
    """Make SIP media endpoints: `a = parties()` gives RTP/RTCP sockets on 127.0.0.1 (closed after)."""
    made: list[Party] = []

    def make() -> Party:
        made.append(make_party())
        return made[-1]

    yield make
    for party in made:
        party.close()
