"""Side-by-side compatibility: the same NG request sequences against rtpengine 10.5 and against Karl.

Every sequence of `ng_sequences.SEQUENCES` is played against both servers with fresh call-ids; the
replies (and rewritten SDPs) must be equal after `ng_normalize` has replaced what legitimately differs
(proxy address, allocated ports, timestamps, random strings, statistics values).

`test_rtpengine_vs_rtpengine` plays each sequence against two rtpengine daemons with different media
addresses and port ranges: it checks the harness itself (normalisation robust, sequences deterministic).
`test_rtpengine_vs_karl` is the real comparison.

One server of each kind is shared per module (started with the default delete delay of 30 s, made
explicit on both sides); sequences marked `fresh_server` get servers of their own.

Where Karl differs on purpose (`DELIBERATE`) and where it does not match yet (`KNOWN_GAPS`) is in
tests/ng_expectations.py, shared with the socket-free engine tests (tests/engine/).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import karl_testkit as testkit
from karl_core.ng import bencode
from karl_testkit import RTPENGINE, NgServer
from ng_expectations import DELIBERATE, KNOWN_GAPS, apply_deliberate, karl_cases
from ng_sequences import (
    SEQUENCES,
    M,
    Raw,
    ReplySdp,
    Request,
    Sequence,
    compare_transcripts,
    make_sdp,
    run_sequence,
)
from ng_sequences_generated import DELIBERATE as GENERATED_DELIBERATE
from ng_sequences_generated import GENERATED, mask_ice_credentials
from ng_sequences_generated import KNOWN_GAPS as GENERATED_GAPS

REFERENCE_IP = "127.0.0.3"
SECOND_RTPENGINE_IP = "127.0.0.4"
KARL_IP = "127.0.0.2"
PORTS = 400
DELETE_DELAY = "30"
RTPENGINE_EXTRA = [f"--delete-delay={DELETE_DELAY}"]
KARL_ENV = {"KARL_DELETE_DELAY": DELETE_DELAY}


# ---- module-scoped servers (the shared factories in conftest are function-scoped) ------------------


def start_rtpengine(log_dir: Path, media_ip: str, ports: int = PORTS, name: str = "rtpengine") -> NgServer:
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")
    return testkit.start_rtpengine(log_dir, media_ip, ports, RTPENGINE_EXTRA, name)


def start_karl(log_dir: Path, media_ip: str = KARL_IP, ports: int = PORTS) -> NgServer:
    return testkit.start_karl(log_dir, media_ip, ports, **KARL_ENV)


def _serve(factory: Callable[[], NgServer]) -> Iterator[NgServer]:
    server = factory()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference_rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer]:
    yield from _serve(lambda: start_rtpengine(tmp_path_factory.mktemp("sbs-ref"), REFERENCE_IP))


@pytest.fixture(scope="module")
def second_rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer]:
    yield from _serve(
        lambda: start_rtpengine(
            tmp_path_factory.mktemp("sbs-second"), SECOND_RTPENGINE_IP, name="rtpengine-2"
        )
    )


@pytest.fixture(scope="module")
def karl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer | str]:
    """The shared Karl node, or why it did not start (so that every test fails at once with the
    reason instead of trying to start it again)."""
    try:
        server = start_karl(tmp_path_factory.mktemp("sbs-karl"))
    except RuntimeError as exc:
        yield f"Karl did not start: {exc}"
        return
    yield server
    server.stop()


@pytest.fixture
def fresh_servers() -> Iterator[list[NgServer]]:
    """Servers started for one test only (for sequences that need a server without other calls)."""
    started: list[NgServer] = []
    yield started
    for server in started:
        server.stop()


# ---- the comparisons -----------------------------------------------------------------------------


def compare(sequence: Sequence, expected: NgServer, actual: NgServer, karl: bool = False) -> None:
    for server in (expected, actual):
        if server.proc.poll() is not None:
            pytest.fail(f"{server.name} has exited ({server.proc.returncode}); log: {server.log_path}")
    reference = run_sequence(expected, sequence)
    candidate = run_sequence(actual, sequence)
    if karl:
        apply_deliberate(reference)
    if karl and sequence.name in GENERATED_DELIBERATE:
        assert compare_transcripts(reference, candidate) is not None, (
            f"{sequence.name} no longer differs: take it off the generator's DELIBERATE"
        )
        mask_ice_credentials(reference)
        mask_ice_credentials(candidate)
    report = compare_transcripts(reference, candidate)
    if report is not None:
        pytest.fail(f"{report}\n\n(server logs: {expected.log_path}, {actual.log_path})", pytrace=False)


@contextmanager
def unrelated_call(server: NgServer, skip: bool = False) -> Iterator[None]:
    """A call only one of the two rtpengines has while a sequence runs, so that their histories differ
    and the self-check also catches state a sequence would otherwise share by accident (counters,
    allocation positions)."""
    if skip:
        yield
        return
    call_id = f"unrelated-{uuid.uuid4().hex}"
    sdp = make_sdp(
        "127.0.1.77", (M(port=5000), M(port=5002, kind="video", fmts="96", lines=("a=rtpmap:96 VP8/90000",)))
    )
    reply = server.ng.request({"command": "offer", "call-id": call_id, "from-tag": "unrelated", "sdp": sdp})
    assert reply.get("result") == "ok", reply
    try:
        yield
    finally:
        server.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})


def _ids(sequence: Sequence) -> str:
    return sequence.name


@pytest.mark.sidebyside
@pytest.mark.parametrize("sequence", SEQUENCES, ids=_ids)
def test_rtpengine_vs_rtpengine(
    sequence: Sequence, request: pytest.FixtureRequest, fresh_servers: list[NgServer], tmp_path: Path
) -> None:
    if sequence.fresh_server:
        fresh_servers.append(start_rtpengine(tmp_path, REFERENCE_IP))
        fresh_servers.append(start_rtpengine(tmp_path, SECOND_RTPENGINE_IP, name="rtpengine-2"))
        expected, actual = fresh_servers
    else:
        expected = request.getfixturevalue("reference_rtpengine")
        actual = request.getfixturevalue("second_rtpengine")
    with unrelated_call(actual, skip=sequence.fresh_server):
        compare(sequence, expected, actual)


KARL_CASES = karl_cases(SEQUENCES)


def test_known_gaps_name_real_sequences() -> None:
    assert set(KNOWN_GAPS) <= {s.name for s in SEQUENCES}
    assert set(DELIBERATE) <= {s.name for s in SEQUENCES}
    assert not set(DELIBERATE) & set(KNOWN_GAPS)


@pytest.mark.sidebyside
@pytest.mark.parametrize("sequence", KARL_CASES, ids=_ids)
def test_rtpengine_vs_karl(
    sequence: Sequence, request: pytest.FixtureRequest, fresh_servers: list[NgServer], tmp_path: Path
) -> None:
    if sequence.fresh_server:
        fresh_servers.append(start_rtpengine(tmp_path, REFERENCE_IP))
        fresh_servers.append(start_karl(tmp_path))
        expected, actual = fresh_servers
    else:
        expected = request.getfixturevalue("reference_rtpengine")
        actual = request.getfixturevalue("karl")
        if isinstance(actual, str):
            pytest.fail(actual, pytrace=False)
    compare(sequence, expected, actual, karl=True)


@pytest.mark.sidebyside
@pytest.mark.parametrize("sequence", GENERATED, ids=_ids)
def test_generated_plain_calls_rtpengine_vs_rtpengine(
    sequence: Sequence, reference_rtpengine: NgServer, second_rtpengine: NgServer
) -> None:
    """The harness on the generated sequences: two rtpengines agree (deterministic, normalised)."""
    with unrelated_call(second_rtpengine):
        compare(sequence, reference_rtpengine, second_rtpengine)


GENERATED_KARL_CASES = [
    pytest.param(s, marks=pytest.mark.xfail(reason=GENERATED_GAPS[s.name], strict=True))
    if s.name in GENERATED_GAPS
    else s
    for s in GENERATED
]


@pytest.mark.sidebyside
@pytest.mark.parametrize("sequence", GENERATED_KARL_CASES, ids=_ids)
def test_generated_plain_calls_rtpengine_vs_karl(
    sequence: Sequence, reference_rtpengine: NgServer, karl: NgServer | str
) -> None:
    if isinstance(karl, str):
        pytest.fail(karl, pytrace=False)
    compare(sequence, reference_rtpengine, karl, karl=True)


# ---- the sequence data itself (no server needed) -------------------------------------------------


def test_enough_sequences_with_unique_names() -> None:
    names = [s.name for s in SEQUENCES]
    assert len(names) >= 70
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("sequence", SEQUENCES, ids=_ids)
def test_sequence_is_well_formed(sequence: Sequence) -> None:
    assert sequence.steps
    for step in sequence.steps:
        if isinstance(step, Request):
            body = {k: v for k, v in step.body.items() if not isinstance(v, ReplySdp)}
            # Every request must be sendable unchanged: bencode has no floats, bools or None.
            assert bencode.decode(bencode.encode(body)) == body
        else:
            assert isinstance(step, Raw) and step.datagram
