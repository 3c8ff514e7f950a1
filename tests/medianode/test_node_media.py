"""A real Karl node over real UDP: offer/answer over NG, then RTP and RTCP through it both ways."""

from __future__ import annotations

import re
import signal
import socket
import struct
import time

from karl_testkit import NgServer, Party, run_karl_once, sdp, wait_for

PEER_IP = "127.0.0.1"


def rtp_packet(seq: int, ssrc: int = 0x1234, pt: int = 0, payload: bytes = b"\x11" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160, ssrc) + payload


def rtcp_sender_report(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0, 0, 0, 0, 0)


def media_port(sdp_text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert match, sdp_text
    return int(match.group(1))


def setup_call(node: NgServer, a: Party, b: Party, call_id: str, **offer_extra: object) -> tuple[int, int]:
    """Offer from A, answer from B; returns (port A sends to, port B sends to)."""
    offer = node.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "tagA", "sdp": sdp(a.port), **offer_extra}
    )
    assert offer["result"] == "ok", offer
    assert f"c=IN IP4 {node.media_ip}" in offer["sdp"]
    answer = node.ng.request(
        {"command": "answer", "call-id": call_id, "from-tag": "tagA", "to-tag": "tagB", "sdp": sdp(b.port)}
    )
    assert answer["result"] == "ok", answer
    assert f"c=IN IP4 {node.media_ip}" in answer["sdp"]
    return media_port(answer["sdp"]), media_port(offer["sdp"])


def totals(node: NgServer, call_id: str) -> dict[str, dict[str, int]]:
    reply = node.ng.request({"command": "query", "call-id": call_id})
    assert reply["result"] == "ok", reply
    return reply["totals"]


def recv_all(sock: socket.socket, count: int) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(count):
        try:
            got.append(sock.recv(2048))
        except TimeoutError:
            break
    return got


def test_rtp_and_rtcp_relayed_both_ways_with_matching_counters(karl_factory, parties) -> None:
    node = karl_factory()
    a, b = parties(), parties()
    to_a_side, to_b_side = setup_call(node, a, b, "relay-both-ways")
    sent = [rtp_packet(i) for i in range(50)]
    for pkt in sent:
        a.rtp.sendto(pkt, (node.media_ip, to_a_side))
    assert recv_all(b.rtp, 50) == sent
    back = [rtp_packet(i, ssrc=0x9999, pt=8) for i in range(30)]
    for pkt in back:
        b.rtp.sendto(pkt, (node.media_ip, to_b_side))
    assert recv_all(a.rtp, 30) == back
    a.rtcp.sendto(rtcp_sender_report(), (node.media_ip, to_a_side + 1))
    assert b.rtcp.recv(2048) == rtcp_sender_report()
    b.rtcp.sendto(rtcp_sender_report(0x9999), (node.media_ip, to_b_side + 1))
    assert a.rtcp.recv(2048) == rtcp_sender_report(0x9999)
    t = totals(node, "relay-both-ways")
    assert t["RTP"]["packets"] == 80
    assert t["RTP"]["bytes"] == 80 * 172
    assert t["RTCP"]["packets"] == 2


def test_latching_follows_the_real_source_address(karl_factory, parties) -> None:
    node = karl_factory()
    a, b = parties(), parties()
    nat = parties()  # A's packets really come from another port (a NAT)
    to_a_side, to_b_side = setup_call(node, a, b, "latching")
    nat.rtp.sendto(rtp_packet(1), (node.media_ip, to_a_side))
    assert b.rtp.recv(2048) == rtp_packet(1)
    b.rtp.sendto(rtp_packet(2), (node.media_ip, to_b_side))
    assert nat.rtp.recv(2048) == rtp_packet(2), "reply must go to the learned source, not the SDP port"


def test_block_and_silence_media(karl_factory, parties) -> None:
    node = karl_factory()
    a, b = parties(), parties()
    to_a_side, _ = setup_call(node, a, b, "block-silence")
    assert (
        node.ng.request({"command": "block media", "call-id": "block-silence", "from-tag": "tagA"})["result"]
        == "ok"
    )
    a.rtp.sendto(rtp_packet(1), (node.media_ip, to_a_side))
    b.rtp.settimeout(0.5)
    assert recv_all(b.rtp, 1) == []
    assert (
        node.ng.request({"command": "unblock media", "call-id": "block-silence", "from-tag": "tagA"})[
            "result"
        ]
        == "ok"
    )
    b.rtp.settimeout(2)
    a.rtp.sendto(rtp_packet(2), (node.media_ip, to_a_side))
    assert b.rtp.recv(2048) == rtp_packet(2)
    reply = node.ng.request({"command": "silence media", "call-id": "block-silence", "from-tag": "tagA"})
    assert reply["result"] == "ok", reply
    a.rtp.sendto(rtp_packet(3), (node.media_ip, to_a_side))
    silenced = b.rtp.recv(2048)
    assert silenced[:12] == rtp_packet(3)[:12]
    assert silenced[12:] == b"\xff" * 160, "PCMU silence"
    node.ng.request({"command": "unsilence media", "call-id": "block-silence", "from-tag": "tagA"})
    a.rtp.sendto(rtp_packet(4), (node.media_ip, to_a_side))
    assert b.rtp.recv(2048) == rtp_packet(4)
    unknown = node.ng.request({"command": "block media", "call-id": "nope"})
    assert unknown == {"result": "error", "error-reason": "Unknown call-ID"}


def test_retransmitted_offer_allocates_nothing_new(karl_factory, parties) -> None:
    node = karl_factory()
    a = parties()
    request = {"command": "offer", "call-id": "retrans", "from-tag": "tagA", "sdp": sdp(a.port)}
    from karl_core.ng import bencode

    datagram = b"retrans-cookie " + bencode.encode(request)
    # a burst of copies, as from a proxy retransmitting while the first is still being worked on
    for _ in range(5):
        node.ng.sock.sendto(datagram, node.ng.address)
    node.ng.sock.settimeout(3)
    replies = [node.ng.sock.recv(65535) for _ in range(5)]
    assert len(set(replies)) == 1 and b"sdp" in replies[0]
    assert node.ng.raw(datagram) == replies[0], "a late retransmission gets the identical reply"
    # a new cookie with the same offer is a re-offer: same ports, nothing new allocated
    again = node.ng.request(request)
    assert media_port(again["sdp"]) == media_port(bencode.decode(replies[0].split(b" ", 1)[1])["sdp"])
    reply = node.ng.request({"command": "query", "call-id": "retrans"})
    ports = {
        s["local port"] for tag in reply["tags"].values() for m in tag["medias"] for s in m.get("streams", [])
    }
    assert len(ports) == 4, ports  # one RTP/RTCP pair per side, nothing more


def test_delete_frees_ports_and_delete_delay_keeps_call_queryable(karl_factory, parties) -> None:
    node = karl_factory(ports=8)  # room for exactly two calls' worth of pairs
    a, b = parties(), parties()
    setup_call(node, a, b, "del-1")
    setup_call(node, a, b, "del-2")
    full = node.ng.request({"command": "offer", "call-id": "del-3", "from-tag": "x", "sdp": sdp(a.port)})
    assert full == {"result": "error", "error-reason": "Ran out of ports"}
    delayed = node.ng.request({"command": "delete", "call-id": "del-1", "from-tag": "tagA"})
    assert delayed["result"] == "ok" and "totals" in delayed
    assert node.ng.request({"command": "query", "call-id": "del-1"})["result"] == "ok"
    gone = node.ng.request({"command": "delete", "call-id": "del-2", "delete-delay": 0})
    assert gone == {"result": "ok"}
    assert node.ng.request({"command": "query", "call-id": "del-2"}) == {
        "result": "error",
        "error-reason": "Unknown call-id",
    }
    # the deleted call's ports are free once the event loop has closed its sockets (the iteration after
    # the delete); a failed offer leaves nothing behind, so the proxy's retry is harmless
    again = {"command": "offer", "call-id": "del-3", "from-tag": "x", "sdp": sdp(a.port)}
    wait_for(lambda: node.ng.request(again)["result"] == "ok", timeout=5)


def test_media_timeout_ends_call_and_frees_ports(karl_factory, parties) -> None:
    node = karl_factory(KARL_TIMEOUT="2", KARL_DELETE_DELAY="0")
    a, b = parties(), parties()
    setup_call(node, a, b, "timeout-call")

    def gone() -> bool:
        reply = node.ng.request({"command": "query", "call-id": "timeout-call"})
        return reply.get("error-reason") == "Unknown call-id"

    wait_for(gone, timeout=8)
    stats = node.ng.request({"command": "statistics"})["statistics"]
    assert stats["totalstatistics"]["timeoutsessions"] == 1


def test_offer_timeout_for_unanswered_call(karl_factory, parties) -> None:
    node = karl_factory(KARL_OFFER_TIMEOUT="2")
    a = parties()
    assert (
        node.ng.request({"command": "offer", "call-id": "unanswered", "from-tag": "x", "sdp": sdp(a.port)})[
            "result"
        ]
        == "ok"
    )
    wait_for(lambda: "unanswered" not in node.ng.request({"command": "list"})["calls"], timeout=8)


def test_load_limit_on_max_sessions(karl_factory, parties) -> None:
    node = karl_factory(KARL_MAX_SESSIONS="1")
    a = parties()
    assert (
        node.ng.request({"command": "offer", "call-id": "l1", "from-tag": "x", "sdp": sdp(a.port)})["result"]
        == "ok"
    )
    limited = node.ng.request(
        {"command": "offer", "call-id": "l2", "from-tag": "x", "sdp": sdp(a.port), "supports": ["load limit"]}
    )
    assert limited == {"result": "load limit", "message": "Parallel session limit reached"}
    plain = node.ng.request({"command": "offer", "call-id": "l3", "from-tag": "x", "sdp": sdp(a.port)})
    assert plain == {"result": "error", "error-reason": "Parallel session limit reached"}
    # an existing call's re-offer is not a new call
    assert (
        node.ng.request({"command": "offer", "call-id": "l1", "from-tag": "x", "sdp": sdp(a.port)})["result"]
        == "ok"
    )


def test_garbage_to_ng_and_media_ports_does_not_disturb_calls(karl_factory, parties) -> None:
    node = karl_factory()
    a, b = parties(), parties()
    to_a_side, to_b_side = setup_call(node, a, b, "garbage")
    # Media flows until both endpoints are confirmed (rtpengine's delayed learning lets any source
    # re-teach an endpoint for 3 s after signalling, so a stranger only comes after that).
    seq = iter(range(10_000))

    def confirmed() -> bool:
        n = next(seq)
        a.rtp.sendto(rtp_packet(n), (node.media_ip, to_a_side))
        b.rtp.sendto(rtp_packet(n), (node.media_ip, to_b_side))
        reply = node.ng.request({"command": "query", "call-id": "garbage"})
        flags = [s["flags"] for t in reply["tags"].values() for s in t["medias"][0]["streams"][:1]]
        return all("confirmed" in f for f in flags)

    wait_for(confirmed, timeout=10, interval=0.25)
    for sock in (a.rtp, b.rtp):  # drop what the confirmation traffic delivered
        sock.settimeout(0.2)
        recv_all(sock, 1000)
        sock.settimeout(2)
    rng = __import__("random").Random(7)
    for _ in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        node.ng.sock.sendto(junk, node.ng.address)
        a.rtcp.sendto(junk, (node.media_ip, to_b_side))  # a stranger hits B's media port
    # drain whatever replies the junk provoked, then check the NG port and the call still work
    node.ng.sock.settimeout(0.3)
    while True:
        try:
            node.ng.sock.recv(65535)
        except TimeoutError:
            break
    assert node.ng.raw(b"c1 d3:abc", timeout=2) == (
        b"c1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    )
    # RTCP-shaped junk from the parties themselves: the quality statistics read every one of them
    for _ in range(300):
        count = rng.randrange(32)
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        words = rng.choice([len(body) // 4, rng.randrange(0, 70)])
        packet = bytes([0x80 | count, rng.choice([200, 201, 202, 203])]) + words.to_bytes(2, "big") + body
        a.rtcp.sendto(packet, (node.media_ip, to_a_side + 1))
        b.rtcp.sendto(packet, (node.media_ip, to_b_side + 1))
    query = node.ng.request({"command": "query", "call-id": "garbage"})
    assert query["result"] == "ok" and isinstance(query["SSRC"], dict)
    a.rtp.sendto(rtp_packet(1), (node.media_ip, to_a_side))
    assert b.rtp.recv(2048) == rtp_packet(1)
    assert node.ng.request({"command": "ping"}) == {"result": "pong"}
    assert node.proc.poll() is None
    assert "statistics failed" not in node.log() and "Traceback" not in node.log()
    # the garbage is logged, once, by the node's sweep (not per packet)
    wait_for(lambda: "neither RTP nor valid RTCP" in node.log(), timeout=5)
    assert node.log().count("neither RTP nor valid RTCP") == 1


def test_sigterm_stops_and_releases_ports(tmp_path, parties) -> None:
    from karl_testkit import start_karl

    node = start_karl(tmp_path, "127.0.0.2", 20, KARL_SHUTDOWN_GRACE="1")
    try:
        a = parties()
        offer = node.ng.request({"command": "offer", "call-id": "t", "from-tag": "x", "sdp": sdp(a.port)})
        assert offer["result"] == "ok"
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(10) == 0
        assert time.monotonic() - started < 5
        for port in range(node.port_min, node.port_max + 1):  # every media port can be bound again
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.2", port))
    finally:
        node.stop()


def test_second_node_on_same_ng_port_fails_naming_the_port(karl_factory) -> None:
    node = karl_factory()
    proc = run_karl_once(ng_port=node.ng.address[1])
    assert proc.returncode == 1
    assert str(node.ng.address[1]) in proc.stderr and "in use" in proc.stderr


def test_final_timeout_ends_even_a_busy_call(karl_factory, parties) -> None:
    node = karl_factory(KARL_FINAL_TIMEOUT="2", KARL_DELETE_DELAY="0")
    a, b = parties(), parties()
    to_a_side, _ = setup_call(node, a, b, "final")
    seq = iter(range(10_000))

    def ended() -> bool:
        a.rtp.sendto(rtp_packet(next(seq)), (node.media_ip, to_a_side))  # media keeps flowing
        return "final" not in node.ng.request({"command": "list"})["calls"]

    wait_for(ended, timeout=8, interval=0.1)
    stats = node.ng.request({"command": "statistics"})["statistics"]["totalstatistics"]
    assert stats["finaltimeoutsessions"] == 1 and stats["timeoutsessions"] == 0


def test_silent_timeout_applies_to_calls_on_hold(karl_factory, parties) -> None:
    node = karl_factory(KARL_TIMEOUT="1", KARL_SILENT_TIMEOUT="4", KARL_DELETE_DELAY="0")
    a, b = parties(), parties()
    setup_call(node, a, b, "held")
    held = sdp(a.port).replace("a=sendrecv", "a=inactive")
    reply = node.ng.request(
        {"command": "offer", "call-id": "held", "from-tag": "tagA", "to-tag": "tagB", "sdp": held}
    )
    assert reply["result"] == "ok" and "a=inactive" in reply["sdp"]
    answer = sdp(b.port).replace("a=sendrecv", "a=inactive")
    node.ng.request(
        {"command": "answer", "call-id": "held", "from-tag": "tagA", "to-tag": "tagB", "sdp": answer}
    )
    held_at = time.monotonic()
    # well past the 1 s media timeout (and the 1 s sweep), the held call is still there ...
    wait_for(lambda: time.monotonic() - held_at > 2.5, timeout=5)
    assert "held" in node.ng.request({"command": "list"})["calls"]
    # ... and the silent timeout ends it
    wait_for(lambda: "held" not in node.ng.request({"command": "list"})["calls"], timeout=8)
    stats = node.ng.request({"command": "statistics"})["statistics"]["totalstatistics"]
    assert stats["silenttimeoutsessions"] == 1


def test_invalid_configuration_stops_startup_naming_the_setting(tmp_path) -> None:
    proc = run_karl_once(KARL_RTP_MIN_PORT="abc")
    assert proc.returncode == 2
    assert "KARL_RTP_MIN_PORT" in proc.stderr and "abc" in proc.stderr
    config = tmp_path / "config.json"
    config.write_text('{"sessions": {"max_sesions": 5}}')
    proc = run_karl_once(KARL_CONFIG_PATH=str(config))
    assert proc.returncode == 2 and "sessions.max_sesions" in proc.stderr


def test_public_ip_is_what_the_sdp_advertises(karl_factory, parties) -> None:
    node = karl_factory(KARL_PUBLIC_IP="203.0.113.7")
    a = parties()
    offer = node.ng.request(
        {
            "command": "offer",
            "call-id": "public",
            "from-tag": "A",
            "sdp": sdp(a.port),
            "replace": ["origin", "session-connection"],
        }
    )
    assert (
        "c=IN IP4 203.0.113.7\r\n" in offer["sdp"] and "IN IP4 203.0.113.7\r\n" in offer["sdp"].split("s=")[0]
    )
    # ... while the sockets themselves stay on the media address
    reply = node.ng.request({"command": "query", "call-id": "public"})
    addresses = {
        s["local address"] for t in reply["tags"].values() for m in t["medias"] for s in m["streams"]
    }
    assert addresses == {node.media_ip}


def test_offers_are_refused_during_the_shutdown_grace(tmp_path, parties) -> None:
    from karl_testkit import start_karl

    node = start_karl(tmp_path, "127.0.0.2", 20, KARL_SHUTDOWN_GRACE="5")
    client, proc = node.ng, node.proc
    try:
        a, b = parties(), parties()
        ok = client.request({"command": "offer", "call-id": "old", "from-tag": "x", "sdp": sdp(a.port)})
        assert ok["result"] == "ok"
        proc.send_signal(signal.SIGTERM)

        attempt = iter(range(1000))

        def refused() -> dict[str, object] | None:
            # a fresh call each time: a re-offer of an existing call is never refused
            reply = client.request(
                {
                    "command": "offer",
                    "call-id": f"new-{next(attempt)}",
                    "from-tag": "y",
                    "sdp": sdp(b.port),
                    "supports": ["load limit"],
                }
            )
            return reply if reply["result"] != "ok" else None

        assert wait_for(refused, timeout=3) == {
            "result": "load limit",
            "message": "Parallel session limit reached",
        }
        # the call in progress is still served while the grace period runs
        assert client.request({"command": "query", "call-id": "old"})["result"] == "ok"
        assert proc.wait(10) == 0
    finally:
        node.stop()
