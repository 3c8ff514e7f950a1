"""Side-by-side sequences of DTLS-SRTP termination: the `a=setup` roles and `a=fingerprint` lines rtpengine
10.5 writes for plain ↔ DTLS, DTLS ↔ DTLS and SDES-or-DTLS calls, the `DTLS`, `DTLS-reverse` and
`DTLS-fingerprint` options, and what `query` shows (probed on the daemon; see docs/compatibility.md)."""

from __future__ import annotations

from collections.abc import Iterator

from ng_sequences import (
    A_IP,
    B2,
    DTMF_LINES,
    FT,
    TT,
    TT2,
    UNSUPPORTED_SUITES,
    WEBRTC_OFFER,
    A,
    B,
    M,
    Sequence,
    answer,
    delete,
    kamailio,
    offer,
    query,
    seq,
)

# a certificate's sha-256 and sha-1 digests (the party's: Karl only compares them)
SHA256 = "sha-256 " + ":".join(f"{n:02X}" for n in range(0x10, 0x30))
SHA1 = "sha-1 " + ":".join(f"{n:02X}" for n in range(0x40, 0x54))


def dtls_callee(setup: str, fingerprint: str = SHA256, proto: str = "UDP/TLS/RTP/SAVPF") -> str:
    return B(
        M(
            port=7000,
            proto=proto,
            fmts="0 8 101",
            lines=(
                *DTMF_LINES,
                f"a=setup:{setup}",
                f"a=fingerprint:{fingerprint}",
                "a=ptime:20",
                "a=sendrecv",
            ),
        )
    )


def browser(setup: str = "actpass", fingerprint: str | None = None) -> str:
    body = WEBRTC_OFFER.replace("a=setup:actpass", f"a=setup:{setup}")
    if fingerprint is not None:
        start = body.index("a=fingerprint:")
        end = body.index("\r\n", start)
        body = body[:start] + f"a=fingerprint:{fingerprint}" + body[end:]
    return body


TO_PHONE = {"transport-protocol": "RTP/AVP", "ICE": "remove", "rtcp-mux": ["demux"]}
TO_BROWSER = {"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "rtcp-mux": ["require"]}
TO_MUXING_BROWSER = {**TO_BROWSER, "rtcp-mux": ["offer"], "SDES": ["off"]}


def group() -> Iterator[Sequence]:
    yield from _browser_and_phone_reoffers()
    yield seq(
        "dtls_plain_to_dtls_callee_active",
        offer(A(), {"transport-protocol": "UDP/TLS/RTP/SAVPF", "SDES": ["off"]}, note="actpass offered"),
        answer(dtls_callee("active"), note="the callee is the client: Karl the server"),
        query(),
    )
    yield seq(
        "dtls_plain_to_dtls_callee_passive",
        offer(A(), {"transport-protocol": "UDP/TLS/RTP/SAVPF", "SDES": ["off"], "DTLS": "passive"}),
        answer(dtls_callee("passive"), note="the callee waits: Karl is the client"),
        query(),
    )
    yield seq(
        "dtls_offer_fingerprint_sha1",
        offer(A(), {"transport-protocol": "RTP/SAVPF", "SDES": ["off"], "DTLS-fingerprint": "sha-1"}),
        offer(
            A(),
            {"transport-protocol": "RTP/SAVPF", "SDES": ["off"], "DTLS-fingerprint": "md5"},
            note="unknown: sha-256",
        ),
    )
    yield seq(
        "dtls_plain_to_savp_sdes_off_dtls_off",
        offer(A(), {"transport-protocol": "RTP/SAVP", "SDES": ["off"], "DTLS": "off"}, note="neither"),
    )
    for setup, expected in (("active", "passive"), ("passive", "active")):
        yield seq(
            f"dtls_browser_setup_{setup}_to_plain",
            offer(browser(setup), {**kamailio("offer"), **TO_PHONE}),
            answer(B(), {**kamailio("answer", "sip_reply"), **TO_BROWSER, "DTLS": "active"}),
            query(),
            doc=f"a browser offering setup:{setup} is answered {expected}, whatever DTLS says",
        )
    yield seq(
        "dtls_browser_actpass_answered_passive_on_request",
        offer(browser(), {**kamailio("offer"), **TO_PHONE}),
        answer(B(), {**kamailio("answer", "sip_reply"), **TO_BROWSER, "DTLS": "passive"}),
    )
    yield seq(
        "dtls_browser_actpass_reverse_passive_on_offer",
        offer(browser(), {**kamailio("offer"), **TO_PHONE, "DTLS-reverse": "passive"}),
        answer(B(), {**kamailio("answer", "sip_reply"), **TO_BROWSER}),
    )
    yield seq(
        "dtls_browser_sha1_fingerprint_answered_in_sha1",
        offer(browser(fingerprint=SHA1), {**kamailio("offer"), **TO_PHONE}),
        answer(B(), {**kamailio("answer", "sip_reply"), **TO_BROWSER, "DTLS-fingerprint": "sha-256"}),
    )
    yield seq(
        "dtls_browser_off_on_answer_still_dtls",
        offer(browser(), {**kamailio("offer"), **TO_PHONE}),
        answer(B(), {**kamailio("answer", "sip_reply"), **TO_BROWSER, "DTLS": "off"}),
    )
    yield seq(
        "dtls_to_dtls_terminated_on_both_legs",
        offer(
            browser(), {"SDES": ["off"]}, note="the callee is offered Karl's fingerprint, not the browser's"
        ),
        answer(
            dtls_callee("active"), note="the browser gets Karl's fingerprint, its role from its own offer"
        ),
        query(),
    )
    yield seq(
        "dtls_beats_sdes_towards_the_offerer",
        offer(
            A(
                M(
                    proto="RTP/SAVP",
                    lines=(
                        *DTMF_LINES,
                        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw",
                        "a=setup:actpass",
                        f"a=fingerprint:{SHA256}",
                        "a=sendrecv",
                    ),
                )
            ),
            {"SDES": ["off"]},
            note="SDES and DTLS offered: the callee gets Karl's DTLS only (SDES off)",
        ),
        answer(dtls_callee("active", proto="RTP/SAVP")),
        query(),
        doc="an offer carrying a=crypto and a=fingerprint is answered with DTLS and no a=crypto",
    )
    yield seq(
        "dtls_session_level_fingerprint",
        offer(
            A(
                M(proto="UDP/TLS/RTP/SAVPF", lines=(*DTMF_LINES, "a=sendrecv")),
                session_lines=("a=setup:actpass", f"a=fingerprint:{SHA256}"),
            ),
            {"transport-protocol": "RTP/AVP"},
        ),
        answer(B(), {"transport-protocol": "UDP/TLS/RTP/SAVPF"}),
        doc=f"session-level setup/fingerprint are the media's (caller at {A_IP})",
    )


KARLS_SUITES = [f"no-{suite}" for suite in UNSUPPORTED_SUITES]
BRIDGE_TO_BROWSER = {**TO_BROWSER, "SDES": KARLS_SUITES}


def browser_again(
    setup: str = "actpass", version: int = 3, ufrag: str = "Wq3b", direction: str = "sendrecv"
) -> str:
    """The browser's SDP of a later offer or answer: a new version, maybe a new ufrag or direction."""
    body = browser(setup).replace(" 2 IN IP4 ", f" {version} IN IP4 ", 1)
    return body.replace("a=ice-ufrag:Wq3b", f"a=ice-ufrag:{ufrag}").replace("a=sendrecv", f"a={direction}")


def phone(port: int = 7000, version: str = "1") -> str:
    return B(M(port=port), version=version)


def _browser_and_phone_reoffers() -> Iterator[Sequence]:
    """A browser bridged to a SIP phone, re-INVITEs from either side, as 10.5 handles them (found by
    the generated WebRTC calls, then probed)."""
    yield seq(
        "webrtc_phone_moves_browser_keeps_its_port",
        offer(browser(), TO_PHONE, note="the browser calls"),
        answer(phone(), TO_BROWSER),
        offer(
            phone(7010, "2"),
            TO_BROWSER,
            ft=TT,
            tt=FT,
            note="the phone moves: the browser's ICE leg keeps its port",
        ),
        answer(browser_again("active"), TO_PHONE, ft=TT, tt=FT),
        offer(browser_again(version=4), TO_PHONE, note="the browser re-offers"),
        answer(
            phone(7020, "3"),
            TO_BROWSER,
            note="the phone answers from elsewhere: the same port to the browser",
        ),
    )
    yield seq(
        "webrtc_no_keys_to_a_browser_that_offered_dtls",
        offer(browser(), TO_PHONE, note="the browser calls with DTLS and no keys"),
        answer(phone(), BRIDGE_TO_BROWSER),
        offer(
            phone(7000, "2"),
            BRIDGE_TO_BROWSER,
            ft=TT,
            tt=FT,
            note="re-INVITE from the phone: DTLS, no a=crypto",
        ),
        answer(browser_again("active"), TO_PHONE, ft=TT, tt=FT),
        query(),
    )
    yield seq(
        "webrtc_browser_answered_dtls_to_keys",
        offer(A(), BRIDGE_TO_BROWSER, note="the phone calls: keys and a fingerprint to the browser"),
        answer(browser("active"), TO_PHONE, note="the browser answers DTLS: Karl is the server"),
        offer(A(version="2890844527"), BRIDGE_TO_BROWSER, tt=TT, note="the same keys again, setup:actpass"),
        answer(browser_again("active"), TO_PHONE),
        query(note="SDES and the refused suite"),
        offer(
            browser_again(version=4, direction="sendonly"), TO_PHONE, ft=TT, tt=FT, note="the browser holds"
        ),
        answer(
            A(M(lines=(*DTMF_LINES, "a=recvonly")), version="2890844528"),
            BRIDGE_TO_BROWSER,
            ft=TT,
            tt=FT,
            note="Karl keeps its DTLS role: passive",
        ),
        query(note="no SDES now; the suite still shown"),
        offer(A(version="2890844529"), BRIDGE_TO_BROWSER, tt=TT, note="no keys to it any more"),
    )
    yield seq(
        "webrtc_browser_call_answered_by_a_second_fork",
        offer(browser(), {**TO_PHONE, "rtcp-mux": ["accept"]}, note="the browser calls a forked phone"),
        answer(phone(), TO_BROWSER, note="183 from fork 1: rtcp-mux kept for the browser"),
        answer(B2(M(port=7100)), TO_BROWSER, tt=TT2, note="200 OK from fork 2: a pair and a new ICE agent"),
    )
    yield seq(
        "webrtc_phone_call_answered_by_a_second_browser_fork",
        offer(A(), {**TO_BROWSER, "SDES": ["off"]}, note="the phone calls two forked browsers"),
        answer(browser("active"), TO_PHONE, note="183 from browser 1"),
        answer(
            browser("active").replace("m=audio 6000", "m=audio 7100"),
            TO_PHONE,
            tt=TT2,
            note="200 OK from browser 2: its rtcp-mux to the phone, as 10.5 writes it",
        ),
    )

    def browser_answering_a_phone(port: int) -> str:
        """A browser's answer to a phone's `0 8 101` offer: the phone's codecs, on its own port."""
        body = browser("active").replace(
            "m=audio 6000 UDP/TLS/RTP/SAVPF 111 0 8 126", f"m=audio {port} UDP/TLS/RTP/SAVPF 0 8 101"
        )
        for line in (
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
        ):
            body = body.replace(line + "\r\n", "")
        return body.replace("a=rtpmap:126 telephone-event/8000", "a=rtpmap:101 telephone-event/8000")

    second_browser = browser_answering_a_phone(7100)
    yield seq(
        "webrtc_phone_call_forked_to_two_browsers_both_answer",
        offer(A(), {**TO_BROWSER, "SDES": ["off"]}, note="the phone calls two forked browsers"),
        answer(browser_answering_a_phone(6000), TO_PHONE, note="200 OK from browser 1"),
        answer(second_browser, TO_PHONE, tt=TT2, note="200 OK from browser 2: a forking race"),
        query(
            note="browser 2 on one port, Karl controlling towards it; the phone's RTCP stream keeps "
            "the socket it had"
        ),
        delete({"delete-delay": 0}, ft=FT, tt=TT, note="browser 1 cancelled"),
        query(note="browser 1's streams listed as muxed, its RTCP at its a=rtcp"),
    )
    yield seq(
        "webrtc_browser_call_forked_phones_answer_in_turn",
        offer(browser(), TO_PHONE, note="the browser calls two forked phones"),
        answer(B(M(port=7000, fmts="0")), TO_BROWSER, note="183 from phone 1"),
        answer(
            B2(M(port=7100, fmts="0")),
            TO_BROWSER,
            tt=TT2,
            note="200 OK from phone 2: new sockets to the browser",
        ),
        answer(
            B(M(port=7000, fmts="0"), version="2"),
            TO_BROWSER,
            note="200 OK from phone 1: its sockets back, rtcp-mux as phone 2 left it, a new ICE agent",
        ),
        query(),
    )
    yield seq(
        "webrtc_browser_call_forked_phones_then_a_reinvite_from_one",
        offer(browser(), {**TO_PHONE, "rtcp-mux": ["accept"]}, note="the browser calls two forked phones"),
        answer(
            B(M(port=7000, fmts="0")), TO_MUXING_BROWSER, note="183 from phone 1: one port to the browser"
        ),
        answer(
            B2(M(port=7100, fmts="0")),
            TO_MUXING_BROWSER,
            tt=TT2,
            note="200 OK from phone 2: a pair, made anew",
        ),
        answer(
            B(M(port=7000, fmts="0"), version="2"), TO_MUXING_BROWSER, note="200 OK from phone 1: anew again"
        ),
        offer(
            B(M(port=7000, fmts="0"), version="3"),
            TO_MUXING_BROWSER,
            ft=TT,
            tt=FT,
            note="phone 1 re-INVITEs: the browser's sockets made anew, a new ICE agent (10.5's sockets "
            "towards an ICE party never follow the forks, only the count of ports)",
        ),
        answer(browser_again("active"), TO_PHONE, ft=TT, tt=FT, note="the browser answers"),
        query(),
    )
    yield seq(
        "webrtc_dtls_role_kept_on_a_browser_reoffer",
        offer(A(), {**TO_BROWSER, "SDES": ["off"]}),
        answer(browser("active"), TO_PHONE, note="the browser is the client: Karl the server (passive)"),
        offer(browser_again(), TO_PHONE, ft=TT, tt=FT, note="the browser re-offers actpass"),
        answer(
            A(version="2890844527"), {**TO_BROWSER, "SDES": ["off"]}, ft=TT, tt=FT, note="Karl stays passive"
        ),
    )
    yield seq(
        "webrtc_dtls_role_kept_unless_passive_asked",
        offer(A(), {**TO_BROWSER, "SDES": ["off"]}),
        answer(browser("passive"), TO_PHONE, note="the browser waits: Karl is the client (active)"),
        offer(browser_again(), TO_PHONE, ft=TT, tt=FT, note="the browser re-offers actpass"),
        answer(
            A(version="2890844527"), {**TO_BROWSER, "SDES": ["off"]}, ft=TT, tt=FT, note="Karl stays active"
        ),
        offer(browser_again(version=4), TO_PHONE, ft=TT, tt=FT),
        answer(
            A(version="2890844528"),
            {**TO_BROWSER, "SDES": ["off"], "DTLS": "passive"},
            ft=TT,
            tt=FT,
            note="DTLS=passive: passive",
        ),
    )
    yield seq(
        "webrtc_browser_ice_restart_moves_ice_controlling",
        offer(
            A(), {**TO_BROWSER, "SDES": ["off"]}, note="the phone calls: Karl controls towards the browser"
        ),
        answer(browser("active"), TO_PHONE),
        query(),
        offer(browser_again(ufrag="Zz9y"), TO_PHONE, ft=TT, tt=FT, note="the browser restarts ICE"),
        answer(A(version="2890844527"), {**TO_BROWSER, "SDES": ["off"]}, ft=TT, tt=FT),
        query(note="ICE controlling on the phone's media now, not on the browser's"),
    )
