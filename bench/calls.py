"""NG requests for a plain G.711 call, and reading the proxy's media address out of its SDP.

The offer is what Kamailio sends for ``rtpengine_offer("replace-origin replace-session-connection
ICE=remove")`` with a typical desk-phone SDP (PCMU, PCMA, telephone-event, 20 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from ngclient import BValue, NGError, Reply

_OFFER_SDP = (
    "v=0\r\n"
    "o=- {sess} 1 IN IP4 {ip}\r\n"
    "s=-\r\n"
    "c=IN IP4 {ip}\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

_ANSWER_SDP = (
    "v=0\r\n"
    "o=- {sess} 1 IN IP4 {ip}\r\n"
    "s=-\r\n"
    "c=IN IP4 {ip}\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

_FLAGS: dict[str, BValue] = {"replace": ["origin", "session-connection"], "ICE": "remove"}


@dataclass(frozen=True)
class CallIds:
    call_id: str
    from_tag: str
    to_tag: str


def call_ids(run_tag: str, index: int) -> CallIds:
    return CallIds(f"bench-{run_tag}-{index}", f"ft{index}", f"tt{index}")


def offer(ids: CallIds, ip: str, port: int) -> dict[str, BValue]:
    sdp = _OFFER_SDP.format(sess=1000 + port, ip=ip, port=port)
    return {"command": "offer", "call-id": ids.call_id, "from-tag": ids.from_tag, "sdp": sdp, **_FLAGS}


def answer(ids: CallIds, ip: str, port: int) -> dict[str, BValue]:
    sdp = _ANSWER_SDP.format(sess=2000 + port, ip=ip, port=port)
    return {
        "command": "answer",
        "call-id": ids.call_id,
        "from-tag": ids.from_tag,
        "to-tag": ids.to_tag,
        "sdp": sdp,
        **_FLAGS,
    }


def delete(ids: CallIds) -> dict[str, BValue]:
    # delete-delay 0 frees the ports at once, so that ramps can reuse the port range.
    return {"command": "delete", "call-id": ids.call_id, "from-tag": ids.from_tag, "delete-delay": 0}


def cycle(run_tag: str, index: int) -> list[dict[str, BValue]]:
    """Call `index`'s offer, answer and delete, on 500 reused port pairs (the in-process benches')."""
    ids = call_ids(run_tag, index)
    return [
        offer(ids, "127.0.0.201", 6000 + 2 * (index % 500)),
        answer(ids, "127.0.0.202", 8000 + 2 * (index % 500)),
        delete(ids),
    ]


def media_address(reply: Reply) -> tuple[str, int]:
    """The (address, port) of the first audio stream in a successful offer/answer reply."""
    if reply.get("result") != "ok":
        raise NGError(f"NG error: {reply.get('error-reason', reply)!r}")
    sdp = reply.get("sdp")
    if not isinstance(sdp, str):
        raise NGError("reply has no SDP")
    session_ip: str | None = None
    media_ip: str | None = None
    port: int | None = None
    for line in sdp.splitlines():
        if line.startswith("c=IN IP4 "):
            ip = line[len("c=IN IP4 ") :].strip()
            if port is None:
                session_ip = ip
            elif media_ip is None:
                media_ip = ip
        elif line.startswith("m=audio ") and port is None:
            port = int(line.split()[1])
    address = media_ip or session_ip
    if address is None or port is None:
        raise NGError("no audio address in reply SDP")
    return address, port
