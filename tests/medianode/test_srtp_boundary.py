"""Karl terminates SDES-SRTP and DTLS-SRTP across the plain ↔ secure boundary, DTLS-SRTP on every leg
that uses it (as 10.5 does), and relays SDES-SRTP end to end between SDES legs, but does not take
an SDES caller to a DTLS callee. Every way of asking for what it cannot do is refused with one error
and builds no call; termination, pass-through and the options that are no-ops on plain calls keep
working (real Karl process, NG over UDP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from karl_testkit import NgServer, sdp

REFUSED = {"result": "error", "error-reason": "SRTP termination not supported by Karl yet"}
KEY = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "K" * 40 + "\r\n"
FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"


def sdes(port: int) -> str:
    return sdp(port).replace("RTP/AVP", "RTP/SAVP") + KEY


def dtls(port: int, protocol: str = "UDP/TLS/RTP/SAVPF") -> str:
    return sdp(port).replace("RTP/AVP", protocol) + FINGERPRINT + "a=setup:actpass\r\na=rtcp-mux\r\n"


def osrtp(port: int) -> str:
    return sdp(port) + KEY  # RTP/AVP carrying a key: an opportunistic-SRTP offer


CROSSING: list[tuple[str, Callable[[int], str], dict[str, Any]]] = [
    # Kamailio's and OpenSIPS' bare `RTP/AVP`-style flags arrive as `transport-protocol`
    (
        "SAVP without keys to plain",
        lambda port: sdp(port).replace("RTP/AVP", "RTP/SAVP"),
        {"transport-protocol": "RTP/AVP"},
    ),
    (
        "SDES to plain with unencrypted SRTCP",
        sdes,
        {"transport-protocol": "RTP/AVP", "SDES": ["unencrypted_srtcp"]},
    ),
    (
        "plain to SDES with unauthenticated SRTP",
        sdp,
        {"transport-protocol": "RTP/SAVP", "flags": ["SDES-unauthenticated_srtp"]},
    ),
    ("SDES suite choice on pass-through", sdes, {"SDES": ["no-AES_CM_128_HMAC_SHA1_32"]}),
    ("SDES flag on pass-through", sdes, {"flags": ["SDES-pad"]}),
    ("SDES session parameter on pass-through", sdes, {"SDES": ["unencrypted_srtcp"]}),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from karl_testkit import start_karl

    server = start_karl(tmp_path_factory.mktemp("srtp"), ports=200)
    yield server
    server.stop()


@pytest.mark.parametrize(("why", "make_sdp", "options"), CROSSING, ids=[c[0] for c in CROSSING])
def test_an_offer_that_needs_srtp_termination_is_refused_and_builds_nothing(
    node: NgServer, why: str, make_sdp: Callable[[int], str], options: dict[str, Any]
) -> None:
    call_id = "refused-" + why.replace(" ", "-")
    reply = node.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": make_sdp(20000), **options}
    )
    assert reply == REFUSED
    assert call_id not in node.ng.request({"command": "list"})["calls"]
    assert "SRTP termination" in node.log()


TERMINATED: list[tuple[str, Callable[[int], str], dict[str, Any], str, int]] = [
    # (why, the offered SDP, options, the protocol sent on, the a=crypto lines sent on)
    ("SDES to plain by transport-protocol", sdes, {"transport-protocol": "RTP/AVP"}, "RTP/AVP", 0),
    ("SDES to AVPF", sdes, {"transport-protocol": "RTP/AVPF"}, "RTP/AVPF", 0),
    (
        "SAVPF to plain",
        lambda port: sdes(port).replace("RTP/SAVP", "RTP/SAVPF"),
        {"transport-protocol": "RTP/AVP"},
        "RTP/AVP",
        0,
    ),
    ("plain to SDES by transport-protocol", sdp, {"transport-protocol": "RTP/SAVP"}, "RTP/SAVP", 4),
    (
        "plain AVPF to SAVPF",
        lambda port: sdp(port).replace("RTP/AVP", "RTP/AVPF"),
        {"transport-protocol": "RTP/SAVPF"},
        "RTP/SAVPF",
        4,
    ),
    (
        "plain to SDES with SDES off for the DTLS part",
        sdp,
        {"transport-protocol": "RTP/SAVP", "DTLS": "off"},
        "RTP/SAVP",
        4,
    ),
]


@pytest.mark.parametrize(
    ("why", "make_sdp", "options", "protocol", "keys"), TERMINATED, ids=[c[0] for c in TERMINATED]
)
def test_sdes_across_the_boundary_is_terminated_with_karls_own_keys(
    node: NgServer,
    why: str,
    make_sdp: Callable[[int], str],
    options: dict[str, Any],
    protocol: str,
    keys: int,
) -> None:
    call_id = "sdes-" + why.replace(" ", "-")
    reply = node.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": make_sdp(20000), **options}
    )
    assert reply["result"] == "ok", reply
    assert f" {protocol} " in reply["sdp"]
    lines = [line for line in reply["sdp"].split("\r\n") if line.startswith("a=crypto:")]
    assert len(lines) == keys and KEY.strip() not in lines  # never the caller's own key
    assert call_id in node.ng.request({"command": "list"})["calls"]


def test_an_answer_that_needs_srtp_termination_is_refused_and_the_call_stays_answerable(
    node: NgServer,
) -> None:
    offer = node.ng.request({"command": "offer", "call-id": "ans", "from-tag": "A", "sdp": sdp(20000)})
    assert offer["result"] == "ok"
    answer = {"command": "answer", "call-id": "ans", "from-tag": "A", "to-tag": "B"}
    # Karl offered plain RTP: an SRTP answer would hand the callee's key to the plain caller
    assert node.ng.request({**answer, "sdp": sdes(20010)}) == REFUSED
    assert node.ng.request({**answer, "sdp": dtls(20010)}) == REFUSED
    plain = node.ng.request({**answer, "sdp": sdp(20010)})
    assert plain["result"] == "ok" and "RTP/AVP" in plain["sdp"]
    # an SDES offer relayed as SDES: a plain answer to it is taken as 10.5 takes it (Karl answers the
    # caller with SRTP of its own), an SDES one too; `accept` hands a plain answer on as it is
    node.ng.request({"command": "offer", "call-id": "ans-s", "from-tag": "A", "sdp": sdes(20020)})
    secure_answer = {**answer, "call-id": "ans-s"}
    own = node.ng.request({**secure_answer, "sdp": sdp(20030)})
    assert own["result"] == "ok" and "RTP/SAVP" in own["sdp"] and own["sdp"].count("a=crypto:1 ") == 1
    assert KEY.strip() not in own["sdp"]  # Karl's key, not the caller's
    back = node.ng.request({**secure_answer, "sdp": sdes(20030)})
    assert back["result"] == "ok" and back["sdp"].count("a=crypto:") == 1 and "RTP/SAVP" in back["sdp"]
    accepted = node.ng.request({**secure_answer, "sdp": sdp(20030), "transport-protocol": "accept"})
    assert accepted["result"] == "ok" and "a=crypto" not in accepted["sdp"]


DTLS_TERMINATED: list[tuple[str, Callable[[int], str], dict[str, Any], str, str | None]] = [
    # (why, the offered SDP, options, the protocol sent on, Karl's a=setup sent on, None: no DTLS)
    (
        "plain to DTLS (WebRTC)",
        sdp,
        {"transport-protocol": "UDP/TLS/RTP/SAVPF"},
        "UDP/TLS/RTP/SAVPF",
        "actpass",
    ),
    (
        "plain to DTLS: offers say actpass whatever DTLS says",
        sdp,
        {"transport-protocol": "UDP/TLS/RTP/SAVP", "DTLS": "passive"},
        "UDP/TLS/RTP/SAVP",
        "actpass",
    ),
    ("DTLS (WebRTC) to plain", dtls, {"transport-protocol": "RTP/AVP"}, "RTP/AVP", None),
    (
        "DTLS to AVPF",
        lambda port: dtls(port, "UDP/TLS/RTP/SAVP"),
        {"transport-protocol": "RTP/AVPF"},
        "RTP/AVPF",
        None,
    ),
]


@pytest.mark.parametrize(
    ("why", "make_sdp", "options", "protocol", "setup"), DTLS_TERMINATED, ids=[c[0] for c in DTLS_TERMINATED]
)
def test_dtls_across_the_boundary_is_terminated_with_karls_own_certificate(
    node: NgServer,
    why: str,
    make_sdp: Callable[[int], str],
    options: dict[str, Any],
    protocol: str,
    setup: str | None,
) -> None:
    call_id = "dtls-" + why.replace(" ", "-")
    reply = node.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": make_sdp(20000), **options}
    )
    assert reply["result"] == "ok", reply
    assert f" {protocol} " in reply["sdp"]
    lines = reply["sdp"].split("\r\n")
    assert FINGERPRINT.strip() not in lines  # never the caller's fingerprint
    fingerprints = [line for line in lines if line.startswith("a=fingerprint:")]
    if setup is None:
        assert not fingerprints and not [line for line in lines if line.startswith("a=setup:")]
    else:
        assert f"a=setup:{setup}" in lines and len(fingerprints) == 1
        assert fingerprints[0].startswith("a=fingerprint:sha-256 ") and len(fingerprints[0]) == 22 + 95


PASSING: list[tuple[str, Callable[[int], str], dict[str, Any], str]] = [
    ("SDES pass-through", sdes, {}, "RTP/SAVP"),
    ("SDES pass-through, protocol named", sdes, {"transport-protocol": "RTP/SAVP"}, "RTP/SAVP"),
    ("SDES pass-through with SDES off", sdes, {"SDES": ["off"]}, "RTP/SAVP"),
    (
        "plain with the SRTP options that are no-ops",
        sdp,
        {"SDES": ["off", "pad"], "DTLS": "passive"},
        "RTP/AVP",
    ),
    ("plain to AVPF", sdp, {"transport-protocol": "RTP/AVPF"}, "RTP/AVPF"),
    ("opportunistic SRTP passed as it is", osrtp, {}, "RTP/AVP"),
]


@pytest.mark.parametrize(("why", "make_sdp", "options", "protocol"), PASSING, ids=[c[0] for c in PASSING])
def test_pass_through_and_no_op_options_keep_working(
    node: NgServer, why: str, make_sdp: Callable[[int], str], options: dict[str, Any], protocol: str
) -> None:
    body = make_sdp(20100)
    reply = node.ng.request(
        {
            "command": "offer",
            "call-id": "pass-" + why.replace(" ", "-"),
            "from-tag": "A",
            "sdp": body,
            **options,
        }
    )
    assert reply["result"] == "ok", reply
    assert f" {protocol} " in reply["sdp"]
    # the parties' own keys and fingerprints pass unchanged
    for line in body.split("\r\n"):
        if line.startswith(("a=crypto:", "a=fingerprint:")):
            assert line in reply["sdp"].split("\r\n")
