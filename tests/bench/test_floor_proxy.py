"""bench/floor_proxy.py does the work docs/performance.md says its figures include.

The Python floor is the measuring stick for issue 9's conclusion: a proxy that does nothing of
rtpengine's rules but still answers NG, opens real sockets, relays, journals every change and writes
call records. If it skipped any of that, its figures would flatter Python; these tests hold it to it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_testkit import (
    NgClient,
    NgServer,
    free_port,
    free_port_block,
    make_party,
    port_of,
    sdp,
    simple_rtp,
    wait_for,
    wait_for_pong,
)

BENCH = Path(__file__).resolve().parents[2] / "bench"
FLOOR = BENCH / "floor_proxy.py"
# The bench's own requests. bench/ comes off the path at once: its modules (fleet.py) would shadow
# the suite's packages of the same names for every test collected after this one.
sys.path.insert(0, str(BENCH))
try:
    import calls
finally:
    sys.path.remove(str(BENCH))


@pytest.fixture(params=["floor", "plain-path"])
def floor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[NgClient, Path, range]]:
    """The floor proxy, and the floor with the plain-call path (which must do all the floor does)."""
    yield from _started(tmp_path, plain=request.param == "plain-path")


@pytest.fixture
def plain_path(tmp_path: Path) -> Iterator[tuple[NgClient, Path, range]]:
    yield from _started(tmp_path, plain=True)


@pytest.fixture
def karl(karl_factory: Callable[..., NgServer]) -> NgServer:
    return karl_factory()


def _started(
    tmp_path: Path, *, plain: bool, media_ip: str = "127.0.0.1"
) -> Iterator[tuple[NgClient, Path, range]]:
    ng_port = free_port()
    first = free_port_block(8, media_ip)
    ports = range(first, first + 8)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FLOOR),
            f"--ng=127.0.0.1:{ng_port}",
            f"--media-ip={media_ip}",
            f"--ports={ports.start}-{ports.stop - 1}",
            f"--state-dir={tmp_path / 'state'}",
            f"--cdr={tmp_path / 'cdr.jsonl'}",
            *(["--plain-path"] if plain else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = NgClient(("127.0.0.1", ng_port))
    try:
        wait_for_pong(client, proc, "the floor proxy")
        yield client, tmp_path, ports
    finally:
        proc.terminate()
        proc.wait(10)
        client.close()


def _journal(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "state" / "calls.jsonl").read_text().splitlines()]


def test_a_call_is_relayed_journalled_and_recorded(floor: tuple[NgClient, Path, range]) -> None:
    client, tmp_path, ports = floor
    a, b = make_party(), make_party()
    try:
        offer = client.request({"command": "offer", "call-id": "c1", "from-tag": "A", "sdp": sdp(a.port)})
        answer = client.request(
            {"command": "answer", "call-id": "c1", "from-tag": "A", "to-tag": "B", "sdp": sdp(b.port)}
        )
        assert offer["result"] == answer["result"] == "ok"
        to_a_side, to_b_side = port_of(offer), port_of(answer)  # B sends to the first, A to the second
        assert {to_a_side, to_b_side} <= set(ports) and to_a_side != to_b_side
        assert f"a=rtcp:{to_b_side + 1}" in answer["sdp"] and "c=IN IP4 127.0.0.1" in answer["sdp"]
        assert [line["version"] for line in _journal(tmp_path)] == [1, 2]  # written before each reply

        # real sockets, relayed both ways, symmetric: each party hears the other from where it sends
        a.rtp.sendto(simple_rtp(1), ("127.0.0.1", to_b_side))
        data, source = b.rtp.recvfrom(2048)
        assert data == simple_rtp(1) and source == ("127.0.0.1", to_a_side)
        b.rtp.sendto(simple_rtp(2), ("127.0.0.1", to_a_side))
        data, source = a.rtp.recvfrom(2048)
        assert data == simple_rtp(2) and source == ("127.0.0.1", to_b_side)

        deleted = client.request({"command": "delete", "call-id": "c1", "from-tag": "A"})
        assert deleted["result"] == "ok"
        streams = {
            stream["local port"]: stream["stats"]["packets"]
            for party in deleted["tags"].values()
            for media in party["medias"]
            for stream in media["streams"]
        }
        assert streams[to_a_side] == streams[to_b_side] == 1
        assert deleted["totals"]["RTP"]["packets"] == 2
        assert _journal(tmp_path)[-1] == {"call-id": "c1", "removed": True}
        records = tmp_path / "cdr.jsonl"  # written after the writer's linger of 20 ms
        wait_for(lambda: records.exists() and records.read_text().strip(), timeout=5.0)
        assert json.loads(records.read_text().splitlines()[0])["call_id"] == "c1"
    finally:
        a.close()
        b.close()


def test_ports_are_freed_and_retransmissions_answered_from_the_cache(
    floor: tuple[NgClient, Path, range],
) -> None:
    client = floor[0]
    # 8 ports are two calls' worth: ten calls one after the other work only if each delete frees its ports
    for n in range(10):
        call = f"loop{n}"
        cookie = client.next_cookie()
        request = {"command": "offer", "call-id": call, "from-tag": "A", "sdp": sdp(30000)}
        first = client.request(request, cookie=cookie)
        assert first["result"] == "ok"
        assert client.request(request, cookie=cookie) == first  # the same reply, no second party
        client.request(
            {"command": "answer", "call-id": call, "from-tag": "A", "to-tag": "B", "sdp": sdp(30002)}
        )
        assert client.request({"command": "delete", "call-id": call, "from-tag": "A"})["result"] == "ok"
    assert client.request({"command": "delete", "call-id": "loop0", "from-tag": "A"}) == {
        "result": "error",
        "error-reason": "Unknown call-id",
    }


# ---- the plain-call path: 10.5's bytes for the bench's cycle, its refusals ---------------------------


def _normalised(sdp_text: str, address: str) -> str:
    """An SDP with the proxy's address and the ports it chose taken out."""
    text = sdp_text.replace(address, "PROXY")
    text = re.sub(r"^m=audio \d+", "m=audio PORT", text, flags=re.M)
    return re.sub(r"^a=rtcp:\d+", "a=rtcp:PORT", text, flags=re.M)


def test_the_plain_path_writes_what_karl_writes_for_the_bench_cycle(tmp_path: Path, karl: NgServer) -> None:
    floor_dir = tmp_path / "floor"
    floor_dir.mkdir()
    started = _started(floor_dir, plain=True, media_ip=karl.media_ip)
    client, _, _ = next(started)
    try:
        for index in range(3):
            for request in calls.cycle(f"plain{index}", index):
                ours, theirs = client.request(request), karl.ng.request(request)
                assert ours["result"] == theirs["result"] == "ok", (ours, theirs)
                if "sdp" in theirs:
                    ip = karl.media_ip
                    assert _normalised(ours["sdp"], ip) == _normalised(theirs["sdp"], ip)
                else:  # delete: the same statistics, key by key
                    assert set(ours) == set(theirs)
                    assert set(ours["tags"]) == set(theirs["tags"])
    finally:
        started.close()


_HEAD = "o=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
_AUDIO = "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
_CONNECTION = "c=IN IP4 127.0.0.1\r\n"


@pytest.mark.parametrize(
    ("sdp_text", "error"),
    [
        ("v=1\r\n" + _HEAD + _CONNECTION + _AUDIO, "Failed to parse SDP"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n" + _CONNECTION + _AUDIO, "Failed to parse SDP"),
        ("v=0\r\nx=1\r\n" + _HEAD + _CONNECTION + _AUDIO, "Failed to parse SDP"),
        ("v=0\r\n" + _HEAD + _AUDIO, "Incomplete SDP specification"),
        ("v=0\r\n" + _HEAD + _CONNECTION + _AUDIO.replace(" 0\r", " x\r"), "Incomplete SDP specification"),
    ],
)
def test_the_plain_path_refuses_what_10_5_refuses(
    plain_path: tuple[NgClient, Path, range], karl: NgServer, sdp_text: str, error: str
) -> None:
    client = plain_path[0]
    request = {"command": "offer", "call-id": "bad", "from-tag": "A", "sdp": sdp_text}
    theirs = karl.ng.request(request)
    assert theirs == {"result": "error", "error-reason": error}  # (what 10.5 and Karl answer)
    assert client.request(request) == theirs


def test_the_plain_path_journals_the_call_model(plain_path: tuple[NgClient, Path, range]) -> None:
    client, tmp_path, _ = plain_path
    for request in calls.cycle("journal", 1)[:2]:
        assert client.request(request)["result"] == "ok"
    document = _journal(tmp_path)[-1]
    codecs = {tuple(codec) for party in document["parties"] for codec in party["media"][0]["codecs"]}
    assert (101, "telephone-event/8000", "0-16") in codecs and (8, "PCMA/8000", "") in codecs


def test_the_plain_path_refuses_what_the_general_engine_would_handle(
    plain_path: tuple[NgClient, Path, range],
) -> None:
    client = plain_path[0]
    offer, answer, _ = calls.cycle("refuse", 2)
    assert client.request({**offer, "codec": {"strip": ["PCMA"]}})["error-reason"].startswith(
        "not on the plain path"
    )
    assert client.request(offer)["result"] == "ok"
    assert client.request(answer)["result"] == "ok"
    moved = {
        **offer,
        "to-tag": answer["to-tag"],
        "sdp": str(offer["sdp"]).replace("m=audio 6004", "m=audio 6100"),
    }
    assert client.request(moved)["error-reason"] == "not on the plain path: a re-offer that changes the media"
    assert client.request({**offer, "to-tag": answer["to-tag"]})["result"] == "ok"  # the same media again
