"""SDES-SRTP terminated by a real Karl node over real UDP: an SRTP phone on one side, a plain RTP trunk
on the other, each keyed with libsrtp (pylibsrtp) in the test, independently of Karl's own contexts."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest

from karl_core.ng import bencode
from karl_core.state import stored_calls
from karl_testkit import NgServer, Party, restart_karl, sdp, start_karl, wait_for

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
KEY_LENGTHS = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}


def rtp_packet(seq: int, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160, ssrc) + bytes([seq & 0xFF]) * 160


def sender_report(ssrc: int) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)


def secure_sdp(port: int, crypto: list[str]) -> str:
    lines = "".join(f"a=crypto:{value}\r\n" for value in crypto)
    return sdp(port).replace("RTP/AVP", "RTP/SAVP").replace("a=sendrecv\r\n", lines + "a=sendrecv\r\n")


def crypto_lines(text: str) -> list[str]:
    return re.findall(r"^a=crypto:(.*?)\r?$", text, re.M)


def media_port(text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", text, re.M)
    assert match, text
    return int(match.group(1))


def new_key(suite: str) -> bytes:
    return os.urandom(KEY_LENGTHS[suite])


def inline(tag: int, suite: str, key: bytes) -> str:
    return f"{tag} {suite} inline:{base64.b64encode(key).decode()}"


def key_of(value: str) -> tuple[int, str, bytes]:
    tag, suite, params = value.split(" ", 2)
    encoded = params.split("inline:", 1)[1].split("|", 1)[0]
    return int(tag), suite, base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def session(suite: str, key: bytes, sending: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if sending else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=PROFILES[suite]))


def request(node: NgServer, **message: Any) -> dict[str, Any]:
    reply = node.ng.request(message)
    assert reply["result"] == "ok", reply
    return reply


def test_an_srtp_phone_talks_to_a_plain_trunk_through_karls_own_keys(
    karl_factory, parties, tmp_path: Path
) -> None:
    cdr_path = tmp_path / "cdr.jsonl"
    node = karl_factory(KARL_CDR_ENABLED="1", KARL_CDR_PATH=str(cdr_path), KARL_DELETE_DELAY="0")
    phone, trunk = parties(), parties()
    phone_key = new_key("AES_CM_128_HMAC_SHA1_80")
    offered = [
        inline(1, "AES_CM_128_HMAC_SHA1_80", phone_key),
        inline(2, "AES_CM_128_HMAC_SHA1_32", new_key("AES_CM_128_HMAC_SHA1_32")),
    ]
    offer = request(
        node,
        command="offer",
        **{"call-id": "sdes-phone", "from-tag": "phone", "transport-protocol": "RTP/AVP"},
        sdp=secure_sdp(phone.port, offered),
    )
    assert " RTP/AVP " in offer["sdp"] and not crypto_lines(offer["sdp"]), offer["sdp"]
    answer = request(
        node,
        command="answer",
        **{"call-id": "sdes-phone", "from-tag": "phone", "to-tag": "trunk"},
        sdp=sdp(trunk.port),
    )
    assert " RTP/SAVP " in answer["sdp"], answer["sdp"]
    [karls] = crypto_lines(answer["sdp"])
    tag, suite, karl_key = key_of(karls)
    assert (tag, suite) == (1, "AES_CM_128_HMAC_SHA1_80") and karl_key != phone_key
    to_phone_side, to_trunk_side = media_port(answer["sdp"]), media_port(offer["sdp"])

    phone_tx, phone_rx = session(suite, phone_key, True), session(suite, karl_key, False)
    sent = [rtp_packet(seq) for seq in range(20)]
    for packet in sent:
        phone.rtp.sendto(phone_tx.protect(packet), (node.media_ip, to_phone_side))
    assert [trunk.rtp.recv(2048) for _ in sent] == sent  # decrypted by Karl
    back = [rtp_packet(seq, ssrc=0x9999, pt=8) for seq in range(20)]
    for packet in back:
        trunk.rtp.sendto(packet, (node.media_ip, to_trunk_side))
    received = [phone.rtp.recv(2048) for _ in back]
    assert all(len(r) == len(p) + 10 for r, p in zip(received, back, strict=True))  # an 80-bit tag each
    assert [phone_rx.unprotect(r) for r in received] == back

    # RTCP both ways: SRTCP on the phone's leg, plain on the trunk's
    phone.rtcp.sendto(phone_tx.protect_rtcp(sender_report(0x1234)), (node.media_ip, to_phone_side + 1))
    assert trunk.rtcp.recv(2048) == sender_report(0x1234)
    trunk.rtcp.sendto(sender_report(0x9999), (node.media_ip, to_trunk_side + 1))
    assert phone_rx.unprotect_rtcp(phone.rtcp.recv(2048)) == sender_report(0x9999)

    # a forged packet goes nowhere, and the call goes on
    forged = bytearray(phone_tx.protect(rtp_packet(100)))
    forged[-1] ^= 0xFF
    phone.rtp.sendto(bytes(forged), (node.media_ip, to_phone_side))
    phone.rtp.sendto(phone_tx.protect(rtp_packet(101)), (node.media_ip, to_phone_side))
    assert trunk.rtp.recv(2048) == rtp_packet(101)

    query = request(node, command="query", **{"call-id": "sdes-phone"})
    media = query["tags"]["phone"]["medias"][0]
    assert "SDES" in media["flags"] and media["protocol"] == "RTP/SAVP"
    assert {s["crypto suite"] for s in media["streams"]} == {"AES_CM_128_HMAC_SHA1_80"}
    assert media["streams"][0]["stats"]["errors"] >= 1  # the forged one
    # bytes as rtpengine counts them: decrypted RTP (172 each), not the wire's SRTP (182, with the tag);
    # the forged packet, never decrypted, as it came
    stats = media["streams"][0]["stats"]
    assert (stats["packets"], stats["bytes"]) == (22, 21 * 172 + 182), stats
    assert "SDES" not in query["tags"]["trunk"]["medias"][0]["flags"]

    # a re-INVITE from the phone with the same keys keeps Karl's key (and the media flowing)
    request(
        node,
        command="offer",
        **{"call-id": "sdes-phone", "from-tag": "phone", "transport-protocol": "RTP/AVP"},
        sdp=secure_sdp(phone.port, offered),
    )
    again = request(
        node,
        command="answer",
        **{"call-id": "sdes-phone", "from-tag": "phone", "to-tag": "trunk"},
        sdp=sdp(trunk.port),
    )
    assert crypto_lines(again["sdp"]) == [karls]
    phone.rtp.sendto(phone_tx.protect(rtp_packet(102)), (node.media_ip, to_phone_side))
    assert trunk.rtp.recv(2048) == rtp_packet(102)

    # the CDR names the suite of the terminated leg, and holds no key
    request(node, command="delete", **{"call-id": "sdes-phone"})
    text = wait_for(lambda: cdr_path.exists() and cdr_path.read_text(), timeout=10)
    [record] = [json.loads(line) for line in text.splitlines()]
    srtp = {party["tag"]: party["medias"][0]["srtp"] for party in record["tags"]}
    assert srtp == {"phone": "AES_CM_128_HMAC_SHA1_80", "trunk": None}
    assert "inline" not in text and base64.b64encode(karl_key).decode()[:20] not in text


def test_a_plain_phone_reaches_an_srtp_trunk_that_picks_one_of_karls_suites(karl_factory, parties) -> None:
    node = karl_factory()
    phone, trunk = parties(), parties()
    offer = request(
        node,
        command="offer",
        **{"call-id": "sdes-trunk", "from-tag": "phone", "transport-protocol": "RTP/SAVP", "DTLS": "off"},
        sdp=sdp(phone.port),
    )
    assert " RTP/SAVP " in offer["sdp"]
    offered = {key_of(value)[0]: key_of(value) for value in crypto_lines(offer["sdp"])}
    suites = [suite for _, suite, _ in offered.values()]
    assert suites[:2] == ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM"]  # rtpengine's order and tags
    _, suite, karl_key = offered[2]
    trunk_key = new_key(suite)
    answer = request(
        node,
        command="answer",
        **{"call-id": "sdes-trunk", "from-tag": "phone", "to-tag": "trunk"},
        sdp=secure_sdp(trunk.port, [inline(2, suite, trunk_key)]),
    )
    assert " RTP/AVP " in answer["sdp"] and not crypto_lines(answer["sdp"]), answer["sdp"]
    to_phone_side, to_trunk_side = media_port(answer["sdp"]), media_port(offer["sdp"])

    trunk_tx, trunk_rx = session(suite, trunk_key, True), session(suite, karl_key, False)
    sent = [rtp_packet(seq) for seq in range(20)]
    for packet in sent:
        phone.rtp.sendto(packet, (node.media_ip, to_phone_side))
    assert [trunk_rx.unprotect(trunk.rtp.recv(2048)) for _ in sent] == sent
    back = [rtp_packet(seq, ssrc=0x7777) for seq in range(20)]
    for packet in back:
        trunk.rtp.sendto(trunk_tx.protect(packet), (node.media_ip, to_trunk_side))
    assert [phone.rtp.recv(2048) for _ in back] == back
    media = request(node, command="query", **{"call-id": "sdes-trunk"})["tags"]["trunk"]["medias"][0]
    assert "SDES" in media["flags"] and media["streams"][0]["crypto suite"] == "AEAD_AES_128_GCM"


def test_a_node_killed_and_restarted_keeps_decrypting_and_encrypting_with_the_same_keys(
    tmp_path: Path, parties: Callable[[], Party]
) -> None:
    """The keys are part of the call's stored state: after `kill -9` and a restart with the same state
    directory, SRTP flows both ways again on the same ports with no signalling."""
    env = {"KARL_STATE_DIR": str(tmp_path / "calls"), "KARL_NODE_ID": "sdes-restore"}
    node = start_karl(tmp_path, "127.0.0.2", 40, **env)
    phone, trunk = parties(), parties()
    try:
        call = phone_call(node, phone, trunk, "sdes-restore", "AEAD_AES_128_GCM", 3)
        phone_tx, phone_rx, to_phone_side, to_trunk_side, karls, _ = call
        assert key_of(karls)[:2] == (3, "AEAD_AES_128_GCM")

        def both_ways(first: int) -> None:
            for seq in range(first, first + 5):
                phone.rtp.sendto(phone_tx.protect(rtp_packet(seq)), (node.media_ip, to_phone_side))
                assert trunk.rtp.recv(2048) == rtp_packet(seq)
                trunk.rtp.sendto(rtp_packet(seq, ssrc=0x4444), (node.media_ip, to_trunk_side))
                assert phone_rx.unprotect(phone.rtp.recv(2048)) == rtp_packet(seq, ssrc=0x4444)

        both_ways(0)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        node.ng.close()
        node = restart_karl(tmp_path, node, env)
        both_ways(5)  # no request was sent: same ports, same keys
    finally:
        node.stop()


def test_sdes_options_shape_karls_keys_and_the_media_still_flows(karl_factory, parties) -> None:
    """`no-` leaves suites out (tags renumbered), `pad` keeps the base64 padding, `lifetime` adds one:
    Karl reads its own lines back when it sets up the SRTP contexts."""
    node = karl_factory()
    phone, trunk = parties(), parties()
    options = {
        "transport-protocol": "RTP/SAVP",
        "DTLS": "off",
        "SDES": ["no-AEAD_AES_256_GCM", "pad", "lifetime"],
    }
    offer = request(
        node, command="offer", **{"call-id": "sdes-opts", "from-tag": "phone", **options}, sdp=sdp(phone.port)
    )
    lines = crypto_lines(offer["sdp"])
    assert [line.split()[:2] for line in lines] == [
        ["1", "AEAD_AES_128_GCM"],
        ["2", "AES_CM_128_HMAC_SHA1_80"],
        ["3", "AES_CM_128_HMAC_SHA1_32"],
    ]
    assert all(line.endswith("|2^31") for line in lines)
    assert "==|2^31" in lines[0]  # 28 bytes of AEAD_AES_128_GCM key and salt: two padding characters
    _, suite, karl_key = key_of(lines[0].replace("|2^31", ""))
    trunk_key = new_key(suite)
    answer = request(
        node,
        command="answer",
        **{"call-id": "sdes-opts", "from-tag": "phone", "to-tag": "trunk"},
        sdp=secure_sdp(trunk.port, [inline(1, suite, trunk_key)]),
    )
    to_phone_side, to_trunk_side = media_port(answer["sdp"]), media_port(offer["sdp"])
    trunk_tx, trunk_rx = session(suite, trunk_key, True), session(suite, karl_key, False)
    phone.rtp.sendto(rtp_packet(1), (node.media_ip, to_phone_side))
    assert trunk_rx.unprotect(trunk.rtp.recv(2048)) == rtp_packet(1)
    trunk.rtp.sendto(trunk_tx.protect(rtp_packet(1, ssrc=0x5555)), (node.media_ip, to_trunk_side))
    assert phone.rtp.recv(2048) == rtp_packet(1, ssrc=0x5555)


def phone_call(
    node: NgServer,
    phone: Party,
    trunk: Party,
    call_id: str,
    suite: str = "AES_CM_128_HMAC_SHA1_80",
    tag: int = 1,
) -> tuple[Any, Any, int, int, str, bytes]:
    """An SRTP phone (one line: `tag`, `suite`) calling a plain trunk; returns the phone's two
    sessions, the ports each side sends to, Karl's line and the phone's key."""
    phone_key = new_key(suite)
    offer = request(
        node,
        command="offer",
        **{"call-id": call_id, "from-tag": "phone", "transport-protocol": "RTP/AVP"},
        sdp=secure_sdp(phone.port, [inline(tag, suite, phone_key)]),
    )
    answer = request(
        node,
        command="answer",
        **{"call-id": call_id, "from-tag": "phone", "to-tag": "trunk"},
        sdp=sdp(trunk.port),
    )
    [karls] = crypto_lines(answer["sdp"])
    _, suite, karl_key = key_of(karls)
    tx, rx = session(suite, phone_key, True), session(suite, karl_key, False)
    return tx, rx, media_port(answer["sdp"]), media_port(offer["sdp"]), karls, phone_key


def test_a_re_invite_from_the_plain_side_re_offers_karls_key_and_the_media_never_stops(
    karl_factory, parties
) -> None:
    """The trunk re-INVITEs (hold, say) without a protocol flag: the SRTP phone is offered RTP/SAVP
    with Karl's same key first, the trunk is answered plain, and the keys in force stay in force
    throughout."""
    node = karl_factory()
    phone, trunk = parties(), parties()
    tx, rx, to_phone_side, to_trunk_side, karls, phone_key = phone_call(node, phone, trunk, "sdes-reinvite")

    def both_ways(seq: int) -> None:
        phone.rtp.sendto(tx.protect(rtp_packet(seq)), (node.media_ip, to_phone_side))
        assert trunk.rtp.recv(2048) == rtp_packet(seq)
        trunk.rtp.sendto(rtp_packet(seq, ssrc=0x6666), (node.media_ip, to_trunk_side))
        assert rx.unprotect(phone.rtp.recv(2048)) == rtp_packet(seq, ssrc=0x6666)

    both_ways(1)
    reoffer = request(
        node,
        command="offer",
        **{"call-id": "sdes-reinvite", "from-tag": "trunk", "to-tag": "phone"},
        sdp=sdp(trunk.port),
    )
    # as 10.5: the agreed line (its tag, Karl's same key) first, Karl's other suites after it under new
    # keys, no DTLS offer to a party that keyed with SDES
    offered = crypto_lines(reoffer["sdp"])
    assert " RTP/SAVP " in reoffer["sdp"] and offered[0] == karls and len(offered) == 4, reoffer["sdp"]
    assert "a=fingerprint" not in reoffer["sdp"]
    both_ways(2)  # between the re-offer and its answer the agreed keys hold
    reanswer = request(
        node,
        command="answer",
        **{"call-id": "sdes-reinvite", "from-tag": "trunk", "to-tag": "phone"},
        sdp=secure_sdp(phone.port, [inline(1, "AES_CM_128_HMAC_SHA1_80", phone_key)]),
    )
    assert " RTP/AVP " in reanswer["sdp"] and not crypto_lines(reanswer["sdp"]), reanswer["sdp"]
    both_ways(3)  # the same keys: the contexts (and their replay windows) carried on


def test_nothing_passes_in_the_clear_while_no_key_is_agreed(karl_factory, parties) -> None:
    """Before the answer (early media) and after an answer that picks none of Karl's tags, the secure
    leg has no key: its media is dropped both ways and counted, never relayed in the clear."""
    node = karl_factory()
    caller, callee = parties(), parties()
    offer = request(
        node,
        command="offer",
        **{"call-id": "sdes-nokey", "from-tag": "caller", "transport-protocol": "RTP/SAVP", "DTLS": "off"},
        sdp=sdp(caller.port),
    )
    to_callee_side = media_port(offer["sdp"])
    # the secure callee sends before it answered: Karl has no key of its to read it with
    callee.rtp.sendto(rtp_packet(1), (node.media_ip, to_callee_side))
    answer = request(
        node,
        command="answer",
        **{"call-id": "sdes-nokey", "from-tag": "caller", "to-tag": "callee"},
        sdp=secure_sdp(
            callee.port, [inline(9, "AES_CM_128_HMAC_SHA1_80", new_key("AES_CM_128_HMAC_SHA1_80"))]
        ),
    )
    assert " RTP/AVP " in answer["sdp"]  # answered as 10.5 answers it
    to_caller_side = media_port(answer["sdp"])
    caller.rtp.sendto(rtp_packet(2), (node.media_ip, to_caller_side))  # not to the callee in the clear
    callee.rtp.sendto(rtp_packet(3), (node.media_ip, to_callee_side))  # nor its packets undecrypted
    callee.rtp.settimeout(0.3)
    caller.rtp.settimeout(0.3)
    for sock in (callee.rtp, caller.rtp):
        try:
            got = sock.recv(2048)
        except TimeoutError:
            continue
        raise AssertionError(f"a packet went through a leg without keys: {got[:16]!r}")
    query = request(node, command="query", **{"call-id": "sdes-nokey"})
    media = query["tags"]["callee"]["medias"][0]
    assert "SDES" in media["flags"] and "crypto suite" not in media["streams"][0]
    assert query["totals"]["RTP"]["errors"] >= 3


def test_an_sdes_offer_with_no_suite_karl_can_do_is_refused(karl_factory, parties) -> None:
    node = karl_factory()
    phone = parties()
    line = "1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(os.urandom(46)).decode()
    reply = node.ng.request(
        {
            "command": "offer",
            "call-id": "sdes-none",
            "from-tag": "phone",
            "transport-protocol": "RTP/AVP",
            "sdp": secure_sdp(phone.port, [line]),
        }
    )
    assert reply == {"result": "error", "error-reason": "SRTP termination not supported by Karl yet"}


def test_a_forged_packet_moves_no_address_on_a_secure_leg(karl_factory, parties) -> None:
    """While the phone's address is still being learned, a packet from elsewhere that fails SRTP
    authentication is dropped before learning: media keeps going to the real phone."""
    node = karl_factory()
    phone, trunk, attacker = parties(), parties(), parties()
    _, rx, to_phone_side, to_trunk_side, _, _ = phone_call(node, phone, trunk, "sdes-forged")
    attacker.rtp.sendto(rtp_packet(1) + b"\x00" * 10, (node.media_ip, to_phone_side))
    trunk.rtp.sendto(rtp_packet(1, ssrc=0x7777), (node.media_ip, to_trunk_side))
    assert rx.unprotect(phone.rtp.recv(2048)) == rtp_packet(1, ssrc=0x7777)
    attacker.rtp.settimeout(0.3)
    try:
        got = attacker.rtp.recv(2048)
    except TimeoutError:
        got = b""
    assert got == b"", "media went to the forger"


def test_two_offers_at_once_get_the_same_keys_and_a_delete_racing_an_offer_leaves_nothing(
    karl_factory, parties
) -> None:
    """A proxy's retransmission and a parallel fork arrive together: one key per party, however the
    requests interleave. An offer and a delete of the same call sent at once: the call is gone after."""
    node = karl_factory()
    phone = parties()
    offer = {
        "command": "offer",
        "call-id": "sdes-race",
        "from-tag": "phone",
        "transport-protocol": "RTP/SAVP",
        "DTLS": "off",
        "sdp": sdp(phone.port),
    }
    cookies = [node.ng.next_cookie() for _ in range(2)]
    for cookie in cookies:
        node.ng.sock.sendto(cookie + b" " + bencode.encode(offer), node.ng.address)
    replies = {}
    node.ng.sock.settimeout(3.0)
    while len(replies) < 2:
        cookie, _, body = node.ng.sock.recv(65535).partition(b" ")
        replies[cookie] = bencode.decode(body)
    first, second = (replies[cookie] for cookie in cookies)
    assert first["result"] == second["result"] == "ok"
    assert crypto_lines(first["sdp"]) == crypto_lines(second["sdp"]) and len(crypto_lines(first["sdp"])) == 4

    racing = [
        (node.ng.next_cookie(), {**offer, "call-id": "sdes-race-2"}),
        (node.ng.next_cookie(), {"command": "delete", "call-id": "sdes-race-2", "delete-delay": 0}),
    ]
    for cookie, message in racing:
        node.ng.sock.sendto(cookie + b" " + bencode.encode(message), node.ng.address)
    for _ in racing:
        node.ng.sock.recv(65535)
    assert "sdes-race-2" not in request(node, command="list")["calls"]


@pytest.mark.parametrize("picked", ["one of Karl's suites", "the caller's own suite"])
def test_srtp_to_srtp_with_either_pick_decrypts_and_encrypts_with_the_keys_each_side_was_given(
    karl_factory, parties, picked: str
) -> None:
    """As 10.5: the callee is offered the caller's lines and Karl's for the other suites. Whichever it
    picks, each side decrypts what it receives with the key it was told of."""
    node = karl_factory()
    caller, callee = parties(), parties()
    caller_keys = {1: new_key("AES_CM_128_HMAC_SHA1_80"), 2: new_key("AES_CM_128_HMAC_SHA1_32")}
    caller_lines = [
        inline(1, "AES_CM_128_HMAC_SHA1_80", caller_keys[1]),
        inline(2, "AES_CM_128_HMAC_SHA1_32", caller_keys[2]),
    ]
    offer = request(
        node,
        command="offer",
        **{"call-id": "srtp-srtp", "from-tag": "caller", "DTLS": "off"},
        sdp=secure_sdp(caller.port, caller_lines),
    )
    offered = crypto_lines(offer["sdp"])
    assert offered[:2] == caller_lines and [key_of(v)[:2] for v in offered[2:]] == [
        (3, "AEAD_AES_256_GCM"),
        (4, "AEAD_AES_128_GCM"),
    ]
    tag, suite = (4, "AEAD_AES_128_GCM") if picked.startswith("one of") else (2, "AES_CM_128_HMAC_SHA1_32")
    callee_key = new_key(suite)
    answer = request(
        node,
        command="answer",
        **{"call-id": "srtp-srtp", "from-tag": "caller", "to-tag": "callee"},
        sdp=secure_sdp(callee.port, [inline(tag, suite, callee_key)]),
    )
    [to_caller] = crypto_lines(answer["sdp"])
    caller_tag, caller_suite, caller_receives = key_of(to_caller)
    callee_receives = key_of(next(v for v in offered if v.startswith(f"{tag} ")))[2]
    caller_sends = caller_keys[caller_tag]
    caller_tx, caller_rx = (
        session(caller_suite, caller_sends, True),
        session(caller_suite, caller_receives, False),
    )
    callee_tx, callee_rx = session(suite, callee_key, True), session(suite, callee_receives, False)
    to_caller_side, to_callee_side = media_port(answer["sdp"]), media_port(offer["sdp"])
    for seq in range(5):
        caller.rtp.sendto(caller_tx.protect(rtp_packet(seq)), (node.media_ip, to_caller_side))
        assert callee_rx.unprotect(callee.rtp.recv(2048)) == rtp_packet(seq)
        callee.rtp.sendto(callee_tx.protect(rtp_packet(seq, ssrc=0x8888)), (node.media_ip, to_callee_side))
        assert caller_rx.unprotect(caller.rtp.recv(2048)) == rtp_packet(seq, ssrc=0x8888)


def test_a_restored_call_carries_on_the_rollover_counters_and_srtcp_indexes_of_both_directions(
    tmp_path: Path, parties: Callable[[], Party]
) -> None:
    """Sequence numbers wrap (the rollover counter goes to 1) both ways, Karl writes the call on its own
    (no signalling), is killed and restarted: the phone's packets still decrypt at Karl and Karl's at the
    phone, whose libsrtp expects counter 1, and Karl's SRTCP goes on above the indexes the phone saw.
    Without the counters in the stored state both directions fail authentication."""
    state_dir = tmp_path / "calls"
    env = {"KARL_STATE_DIR": str(state_dir), "KARL_NODE_ID": "sdes-rollover"}
    node = start_karl(tmp_path, "127.0.0.2", 40, **env)
    phone, trunk = parties(), parties()
    try:
        call = phone_call(node, phone, trunk, "sdes-rollover")
        phone_tx, phone_rx, to_phone_side, to_trunk_side, _, _ = call

        def both_ways(seqs: range) -> None:
            for seq in seqs:
                phone.rtp.sendto(phone_tx.protect(rtp_packet(seq)), (node.media_ip, to_phone_side))
                assert trunk.rtp.recv(2048) == rtp_packet(seq)
                trunk.rtp.sendto(rtp_packet(seq, ssrc=0x4444), (node.media_ip, to_trunk_side))
                assert phone_rx.unprotect(phone.rtp.recv(2048)) == rtp_packet(seq, ssrc=0x4444)

        def reports(count: int) -> None:
            for _ in range(count):
                trunk.rtcp.sendto(sender_report(0x4444), (node.media_ip, to_trunk_side + 1))
                assert phone_rx.unprotect_rtcp(phone.rtcp.recv(2048)) == sender_report(0x4444)

        both_ways(range(65530, 65540))  # wraps at 65536: counter 1 on both sides
        reports(3)

        def written() -> bool:
            found = []
            for record in stored_calls(state_dir):
                for party in record.state["monologues"]:
                    for media in party["medias"]:
                        found += [
                            (s["component"], s.get("srtp_in", []), s.get("srtp_out", []))
                            for s in media.get("streams", [])
                        ]
            # towards the phone: its SSRC 0x1234 received and the trunk's 0x4444 sent with counter 1 on
            # the RTP socket, three SRTCP packets sent on the RTCP socket
            # (the last sequence number, 65539, is 3 after the wrap)
            return (1, [[0x1234, 1, 0, 3]], [[0x4444, 1, 0, 3]]) in found and (
                2,
                [],
                [[0x4444, 0, 3, -1]],
            ) in found

        assert wait_for(written, timeout=10.0), "the timer sweep did not write the rollover counters"
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        node.ng.close()
        node = restart_karl(tmp_path, node, env)
        both_ways(range(65540, 65545))  # no request was sent: same keys, counter 1 both ways
        reports(2)
    finally:
        node.stop()


def test_osrtp_offer_taken_up_by_the_callee_and_an_opportunistic_caller_accepted_carry_srtp(
    karl_factory, parties
) -> None:
    """OSRTP (RFC 8643) as 10.5 does it, with media: a plain caller with `OSRTP=offer` reaches a callee
    that takes the offer up (`RTP/AVP` with one of Karl's lines): SRTP on the callee's leg, plain on the
    caller's. An opportunistic caller (`RTP/AVP` with its key) whose plain callee refuses, with
    `OSRTP=accept` on the answer: SRTP on the caller's leg under `RTP/AVP`, plain on the callee's."""
    node = karl_factory(KARL_DELETE_DELAY="0")
    caller, callee = parties(), parties()
    offer = request(
        node,
        command="offer",
        **{"call-id": "osrtp-offer", "from-tag": "a"},
        sdp=sdp(caller.port),
        OSRTP=["offer"],
    )
    assert " RTP/AVP " in offer["sdp"] and "a=fingerprint:" in offer["sdp"], offer["sdp"]
    offered = crypto_lines(offer["sdp"])
    karls = next(line for line in offered if " AES_CM_128_HMAC_SHA1_80 " in line)
    tag, suite, karl_key = key_of(karls)
    callee_key = new_key(suite)
    answer_sdp = sdp(callee.port).replace(
        "a=sendrecv\r\n", f"a=crypto:{inline(tag, suite, callee_key)}\r\na=sendrecv\r\n"
    )
    answer = request(
        node, command="answer", **{"call-id": "osrtp-offer", "from-tag": "a", "to-tag": "b"}, sdp=answer_sdp
    )
    assert " RTP/AVP " in answer["sdp"] and not crypto_lines(answer["sdp"]), answer["sdp"]
    to_caller_side, to_callee_side = media_port(answer["sdp"]), media_port(offer["sdp"])
    callee_tx, callee_rx = session(suite, callee_key, True), session(suite, karl_key, False)
    caller.rtp.sendto(rtp_packet(1), (node.media_ip, to_caller_side))
    assert callee_rx.unprotect(callee.rtp.recv(2048)) == rtp_packet(1)
    callee.rtp.sendto(callee_tx.protect(rtp_packet(1, ssrc=0x5555)), (node.media_ip, to_callee_side))
    assert caller.rtp.recv(2048) == rtp_packet(1, ssrc=0x5555)

    caller_key = new_key("AES_CM_128_HMAC_SHA1_80")
    opportunistic = sdp(caller.port).replace(
        "a=sendrecv\r\n", f"a=crypto:{inline(1, 'AES_CM_128_HMAC_SHA1_80', caller_key)}\r\na=sendrecv\r\n"
    )
    ids = {"call-id": "osrtp-accept", "from-tag": "a"}
    offer = request(node, command="offer", **ids, sdp=opportunistic)
    answer = request(node, command="answer", **ids, **{"to-tag": "b"}, sdp=sdp(callee.port), OSRTP=["accept"])
    assert " RTP/AVP " in answer["sdp"], answer["sdp"]
    [karls] = crypto_lines(answer["sdp"])
    _, suite, karl_key = key_of(karls)
    caller_tx, caller_rx = session(suite, caller_key, True), session(suite, karl_key, False)
    to_caller_side, to_callee_side = media_port(answer["sdp"]), media_port(offer["sdp"])
    caller.rtp.sendto(caller_tx.protect(rtp_packet(2)), (node.media_ip, to_caller_side))
    assert callee.rtp.recv(2048) == rtp_packet(2)
    callee.rtp.sendto(rtp_packet(2, ssrc=0x6666), (node.media_ip, to_callee_side))
    assert caller_rx.unprotect(caller.rtp.recv(2048)) == rtp_packet(2, ssrc=0x6666)


def test_an_osrtp_offer_answered_under_the_secure_profile_is_taken_up_not_refused(
    karl_factory, parties
) -> None:
    """The callee answers Karl's OSRTP offer with `RTP/SAVP` and one of Karl's lines: SRTP on its leg
    (never the caller's plain media sent to it in the clear), plain on the caller's."""
    node = karl_factory(KARL_DELETE_DELAY="0")
    caller, callee = parties(), parties()
    ids = {"call-id": "osrtp-savp", "from-tag": "a"}
    offer = request(node, command="offer", **ids, sdp=sdp(caller.port), OSRTP=["offer"])
    karls = next(line for line in crypto_lines(offer["sdp"]) if " AES_CM_128_HMAC_SHA1_80 " in line)
    tag, suite, karl_key = key_of(karls)
    callee_key = new_key(suite)
    answer = request(
        node,
        command="answer",
        **ids,
        **{"to-tag": "b"},
        sdp=secure_sdp(callee.port, [inline(tag, suite, callee_key)]),
    )
    assert " RTP/AVP " in answer["sdp"] and not crypto_lines(answer["sdp"]), answer["sdp"]
    callee_rx = session(suite, karl_key, False)
    caller.rtp.sendto(rtp_packet(1), (node.media_ip, media_port(answer["sdp"])))
    received = callee.rtp.recv(2048)
    assert received != rtp_packet(1) and callee_rx.unprotect(received) == rtp_packet(1)
