"""Structured logs: JSON lines with time, level, component, event and the call-id; nothing per packet."""

from __future__ import annotations

import json
import re
import socket
import struct

from karl_testkit import wait_for

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=sendrecv\r\n"
)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_log_lines_carry_event_and_call_id_and_nothing_per_packet(karl_factory) -> None:  # type: ignore[no-untyped-def]
    node = karl_factory(KARL_LOG_FORMAT="json", KARL_LOG_LEVEL="info", KARL_DELETE_DELAY="0")
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("127.0.0.1", 0))
    b.settimeout(2)
    try:
        offer = node.ng.request(
            {
                "command": "offer",
                "call-id": "log-1",
                "from-tag": "A",
                "sdp": SDP.format(port=a.getsockname()[1]),
            }
        )
        answer = node.ng.request(
            {
                "command": "answer",
                "call-id": "log-1",
                "from-tag": "A",
                "to-tag": "B",
                "sdp": SDP.format(port=b.getsockname()[1]),
            }
        )
        port = int(re.search(r"m=audio (\d+)", answer["sdp"]).group(1))  # type: ignore[union-attr]
        assert offer["result"] == "ok"
        before = len(node.log().splitlines())
        for seq in (n for n in range(502) if n not in (100, 200)):  # one at a time; 2 never sent
            a.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 7) + b"\xff" * 160, (node.media_ip, port))
            b.recv(2048)
        node.ng.request({"command": "delete", "call-id": "log-1", "from-tag": "A"})
        lines = wait_for(
            lambda: (
                [e for e in _json_lines(node.log()) if e.get("event") == "call_ended"]
                and _json_lines(node.log())
            ),
            timeout=5,
        )
    finally:
        a.close()
        b.close()
    for entry in lines:
        assert {"time", "level", "component", "event", "message"} <= set(entry), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(entry["time"]))
    events = {str(e["event"]): e for e in lines}
    assert events["call_created"]["call_id"] == "log-1"
    assert events["call_ended"]["call_id"] == "log-1" and events["call_ended"]["reason"] == "deleted"
    # the end of a call says how it went: RTP lost on the way to Karl, MOS (none: no RTCP here)
    assert events["call_ended"]["lost"] == 2 and events["call_ended"]["mos"] is None
    assert events["call_ended"]["duration"] >= 0
    # 500 relayed packets added no log line of their own (only the delete's lines came after them)
    after_media = [e for e in lines[before:] if e.get("event") not in ("call_ended",)]
    assert len(after_media) < 10, after_media


def test_log_level_and_text_format(karl_factory) -> None:  # type: ignore[no-untyped-def]
    quiet = karl_factory(KARL_LOG_FORMAT="json", KARL_LOG_LEVEL="warning")
    quiet.ng.request({"command": "offer", "call-id": "lvl", "from-tag": "A", "sdp": SDP.format(port=4000)})
    quiet.ng.sock.sendto(b"no-cookie-here", quiet.ng.address)  # logged as a warning
    quiet.ng.request({"command": "ping"})
    entries = wait_for(lambda: _json_lines(quiet.log()), timeout=5)
    assert any("without cookie" in str(e["message"]) for e in entries), entries
    assert all(e["level"] in ("warning", "error", "critical") for e in entries), entries
    assert not any(e.get("event") == "call_created" for e in entries)

    text = karl_factory(KARL_LOG_FORMAT="text", KARL_LOG_LEVEL="info")
    text.ng.request({"command": "offer", "call-id": "txt", "from-tag": "A", "sdp": SDP.format(port=4000)})
    lines = wait_for(lambda: [ln for ln in text.log().splitlines() if "call created" in ln], timeout=5)
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO karl\.engine: call created \[call-id=txt\]", lines[0]
    )
