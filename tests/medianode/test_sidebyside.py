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

import re
import socket
import time
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


# ---- why the generator's DELIBERATE differs: a second browser fork's ICE checks ----------------------


def _browser_answer(address: str, port: int, ufrag: str) -> str:
    fingerprint = ":".join(f"{n:02X}" for n in range(32))
    return (
        f"v=0\r\no=- 1 2 IN IP4 {address}\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        f"m=audio {port} UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 {address}\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
        f"a=candidate:1 1 udp 2130706431 {address} {port} typ host\r\n"
        f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{'p' * 22}{ufrag}\r\n"
        f"a=fingerprint:sha-256 {fingerprint}\r\na=setup:active\r\na=mid:0\r\na=sendrecv\r\n"
        "a=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _second_fork_check(server: NgServer) -> int | None:
    """A phone calls two forked browsers; the second answers after the first and checks the proxy's
    socket towards it with the credentials the offer gave every fork. The STUN class of the reply
    (None: no reply)."""
    from aioice import stun

    phone = (
        "v=0\r\no=a 1 1 IN IP4 127.0.1.10\r\ns=-\r\nc=IN IP4 127.0.1.10\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
    to_browser = {"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "rtcp-mux": ["require"]}
    to_phone = {"transport-protocol": "RTP/AVP", "ICE": "remove", "rtcp-mux": ["demux"]}
    call_id = f"ice-fork-{uuid.uuid4().hex}"
    ids = {"call-id": call_id, "from-tag": "A"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as browser:
        browser.bind(("127.0.1.21", 0))
        browser.settimeout(2.0)
        own_port = browser.getsockname()[1]
        try:
            offered = server.ng.request(
                {"command": "offer", **ids, "sdp": phone, **to_browser, "SDES": ["off"]}
            )
            ufrag = re.search(r"a=ice-ufrag:(\S+)", offered["sdp"])[1]  # type: ignore[index]
            pwd = re.search(r"a=ice-pwd:(\S+)", offered["sdp"])[1]  # type: ignore[index]
            first = _browser_answer("127.0.1.20", 7000, "F1uf")
            server.ng.request({"command": "answer", **ids, "to-tag": "F1", "sdp": first, **to_phone})
            second = _browser_answer("127.0.1.21", own_port, "F2uf")
            server.ng.request({"command": "answer", **ids, "to-tag": "F2", "sdp": second, **to_phone})
            stream = server.ng.request({"command": "query", "call-id": call_id})["tags"]["F2"]["medias"][0][
                "streams"
            ][0]
            check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
            check.attributes["USERNAME"] = f"{ufrag}:F2uf"
            check.attributes["PRIORITY"] = 1853824767
            check.attributes["ICE-CONTROLLED"] = 0x1234
            check.add_message_integrity(pwd.encode())
            check.add_fingerprint()
            browser.sendto(bytes(check), (stream["local address"], stream["local port"]))
            deadline = time.monotonic() + 3.0
            while (left := deadline - time.monotonic()) > 0:  # (the proxy's own checks may come first)
                browser.settimeout(left)
                try:
                    data, _ = browser.recvfrom(2048)
                except TimeoutError:
                    return None
                reply = stun.parse_message(data)
                if reply.transaction_id == check.transaction_id:
                    return int(reply.message_class)
            return None
        finally:
            server.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})


@pytest.mark.sidebyside
def test_a_second_browser_fork_checks_with_the_offered_credentials(
    reference_rtpengine: NgServer, karl: NgServer | str
) -> None:
    """The reason for `ICE_CREDENTIALS_OF_THE_OFFER`: 10.5 refuses such a check (401, its new agent has
    other credentials), Karl answers it."""
    if isinstance(karl, str):
        pytest.fail(karl, pytrace=False)
    from aioice import stun

    assert _second_fork_check(reference_rtpengine) == stun.Class.ERROR
    assert _second_fork_check(karl) == stun.Class.RESPONSE


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
