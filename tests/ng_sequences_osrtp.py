"""Side-by-side sequences of opportunistic SRTP (RFC 8643, the `OSRTP` option) and of SDES ↔ DTLS-SRTP
termination, as rtpengine 10.5 does them (probed on the daemon).

10.5 reads an `RTP/AVP` (or `RTP/AVPF`) medium carrying `a=crypto` or `a=fingerprint` as an OSRTP
offer whatever the options say; `OSRTP` `offer` turns a plain medium into one towards the callee,
`OSRTP` `accept` keeps SRTP towards an OSRTP offerer whose callee answered plain. It knows only the
`offer` and `accept` values (`OSRTP-offer`, `OSRTP-accept` as flags); the later `offer-RFC`,
`offer-legacy` and `accept-RFC` are unknown to it (logged, ignored).

Where 10.5 writes its own SDES offer, the suites Karl's SRTP library cannot do are left out with
`SDES-no-` (as in `sdes_offer_options_no_pad_lifetime`), so that the two offers can be compared line
by line; `osrtp_offer_all_suites` shows 10.5's default list.
"""

from __future__ import annotations

from collections.abc import Iterator

from ng_sequences import (
    DTMF_LINES,
    TT,
    UNSUPPORTED_SUITES,
    WEBRTC_OFFER,
    A,
    B,
    M,
    Sequence,
    answer,
    kamailio,
    offer,
    query,
    seq,
)

# The suites Karl cannot do, left out of 10.5's own offers: it then offers 1 AEAD_AES_256_GCM,
# 2 AEAD_AES_128_GCM, 3 AES_CM_128_HMAC_SHA1_80, 4 AES_CM_128_HMAC_SHA1_32.
KARLS_SUITES = [f"no-{s}" for s in UNSUPPORTED_SUITES]

CALLER_KEY = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
CALLER_KEY_32 = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
CALLEE_KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
# AEAD keys: 32 + 12 and 16 + 12 bytes
GCM256_KEY = "R0NNMjU2LWtleS1vZi10aGUtY2FsbGVlLWFuZC1zYWx0MTIzeHh4eHh4eHg"
GCM128_KEY = "R0NNMTI4LWtleS1jYWxsZWUtc2FsdDEyeXl5eQ"
CALLER_CRYPTO = (
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_KEY}",
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{CALLER_KEY_32}",
)

# a certificate's sha-256 digest (the party's: Karl only compares it)
SHA256 = "sha-256 " + ":".join(f"{n:02X}" for n in range(0x10, 0x30))


def caller(proto: str = "RTP/AVP", crypto: tuple[str, ...] = CALLER_CRYPTO) -> str:
    """The caller's SDP with its SDES lines: on `RTP/AVP` an opportunistic (OSRTP) offer."""
    return A(M(proto=proto, lines=(*DTMF_LINES, *crypto, "a=ptime:20", "a=sendrecv")))


def callee(crypto: str | None = None, proto: str = "RTP/AVP") -> str:
    """The callee's answer, with one `a=crypto` line when it takes SRTP."""
    lines = (*DTMF_LINES, *((crypto,) if crypto else ()), "a=ptime:20", "a=sendrecv")
    return B(M(port=7000, proto=proto, lines=lines))


def browser_answer(setup: str = "active") -> str:
    """A browser answering a DTLS offer: ICE, rtcp-mux, its own fingerprint."""
    return B(
        M(
            port=7000,
            proto="UDP/TLS/RTP/SAVPF",
            fmts="0 8 101",
            lines=(
                "a=rtcp:9 IN IP4 0.0.0.0",
                "a=candidate:1 1 udp 2122260223 127.0.1.20 7000 typ host generation 0",
                "a=ice-ufrag:Zx9q",
                "a=ice-pwd:Qw8e7r6t5y4u3i2o1p0a9s8d",
                f"a=fingerprint:{SHA256}",
                f"a=setup:{setup}",
                "a=mid:0",
                "a=sendrecv",
                "a=rtcp-mux",
                *DTMF_LINES,
            ),
        ),
        session_lines=("a=group:BUNDLE 0",),
    )


def phone_answer(crypto: str) -> str:
    """A SIP phone answering the browser's codecs (PCMU, telephone-event 126) over SDES."""
    lines = ("a=rtpmap:126 telephone-event/8000", "a=fmtp:126 0-16", crypto, "a=ptime:20", "a=sendrecv")
    return B(M(port=7000, proto="RTP/SAVP", fmts="0 126", lines=lines))


TO_BROWSER = {"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "rtcp-mux": ["require"]}
TO_PHONE_SDES = {"transport-protocol": "RTP/SAVP", "ICE": "remove", "rtcp-mux": ["demux"]}


def group() -> Iterator[Sequence]:
    yield from _osrtp()
    yield from _sdes_dtls()


def _osrtp() -> Iterator[Sequence]:
    osrtp_offer = {"OSRTP": ["offer"], "SDES": KARLS_SUITES}
    yield seq(
        "osrtp_offer_all_suites",
        offer(A(), {"OSRTP": ["offer"]}, note="RTP/AVP with 10.5's 12 suites and its fingerprint"),
        doc="without SDES-no-, 10.5 offers its 12 suites tagged 1-12 (Karl does 4 of them)",
    )
    yield seq(
        "osrtp_offer_callee_answers_plain",
        offer(A(), osrtp_offer, note="RTP/AVP with a=crypto lines and a fingerprint"),
        answer(callee(), note="the callee ignores the OSRTP offer: plain both ways"),
        query(note="the callee's media still shows SDES and the first suite offered"),
        doc="media stays plain both ways",
    )
    yield seq(
        "osrtp_offer_callee_accepts",
        offer(A(), osrtp_offer),
        answer(
            callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"),
            note="the callee takes tag 3: the caller is answered plain",
        ),
        query(),
        doc="terminated: SRTP towards the callee (the proxy's tag-3 key, the callee's), RTP to the caller",
    )
    yield seq(
        "plain_offer_answered_with_keys",
        offer(A(), {"SDES": KARLS_SUITES}, note="plain, no OSRTP option"),
        answer(
            callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"),
            note="RTP/AVP with a=crypto nobody offered",
        ),
        query(),
        offer(A(version="2890844527"), {"SDES": KARLS_SUITES}, note="re-INVITE"),
        doc="10.5 takes the callee's key (SDES on its media) and answers the caller plain",
    )
    yield seq(
        "plain_offer_answered_with_keys_then_agreed",
        offer(A(), {"SDES": KARLS_SUITES}, note="plain, no OSRTP option"),
        answer(callee(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_KEY}"), note="keys unasked"),
        offer(A(version="2890844527"), {"SDES": KARLS_SUITES}, tt=TT, note="re-INVITE: OSRTP to the callee"),
        answer(
            callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}", proto="RTP/AVP"),
            note="the callee takes the proxy's tag 3",
        ),
        query(),
        doc="the callee's unasked keys are followed by an OSRTP re-offer of the proxy's suites, which it "
        "takes up",
    )
    yield seq(
        "osrtp_caller_refused_reoffer_keeps_keys",
        offer(caller(), {"SDES": KARLS_SUITES}, note="OSRTP caller: its lines and the proxy's 3 and 4"),
        answer(callee(), note="the callee refuses: plain both ways"),
        offer(
            A(M(lines=(*DTMF_LINES, *CALLER_CRYPTO, "a=ptime:20", "a=sendrecv")), version="2890844527"),
            {"SDES": KARLS_SUITES},
            tt=TT,
            note="re-INVITE: the proxy's lines again, under the keys of the first offer",
        ),
        answer(callee(f"a=crypto:3 AEAD_AES_256_GCM inline:{GCM256_KEY}"), note="now it takes tag 3"),
        query(),
        doc="10.5 re-offers the suites a callee refused under the same keys",
    )
    yield seq(
        "osrtp_offer_flag_spelling",
        offer(A(), {"flags": ["OSRTP-offer"], "SDES": KARLS_SUITES}, note="as OSRTP=offer"),
        answer(callee()),
        query(),
    )
    yield seq(
        "osrtp_newer_spellings_unknown_to_10_5",
        offer(A(), {"OSRTP": ["offer-RFC"], "SDES": KARLS_SUITES}, note="ignored: plain"),
        offer(A(), {"OSRTP": ["offer-legacy"], "SDES": KARLS_SUITES}, note="ignored: plain"),
        answer(callee(), {"OSRTP": ["accept-RFC"]}),
        query(),
    )
    sdes = {"SDES": KARLS_SUITES}
    for name, opts in (
        ("osrtp_opportunistic_offer_plain_answer", {}),
        ("osrtp_accept_opportunistic_offer_plain_answer", {"OSRTP": ["accept"]}),
        ("osrtp_accept_flag_spelling", {"flags": ["OSRTP-accept"]}),
        ("osrtp_accept_newer_spelling_unknown_to_10_5", {"OSRTP": ["accept-RFC"]}),
    ):
        yield seq(
            name,
            offer(caller(), {**sdes, **opts}, note="RTP/AVP with a=crypto: an OSRTP offer to 10.5"),
            answer(callee(), opts),
            query(),
            doc="the callee is offered the caller's lines (its keys) and the proxy's; a plain answer "
            "goes back plain unless OSRTP=accept (10.5 spelling) is on the answer: then the caller "
            "gets its first suite, its tag, the proxy's key",
        )
    yield seq(
        "osrtp_opportunistic_offer_secure_answer",
        offer(caller(), sdes),
        answer(
            callee(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"),
            note="the callee picks the caller's line: the caller gets the callee's line",
        ),
        query(),
    )
    for name, opts in (("osrtp_accept", {"OSRTP": ["accept"]}), ("osrtp", {})):
        yield seq(
            f"{name}_opportunistic_offer_to_plain_rtp",
            offer(caller(), {**sdes, **opts, "transport-protocol": "RTP/AVP"}, note="no key to the callee"),
            answer(callee(), opts),
            query(),
            doc="relayed as plain RTP, the caller is answered with the proxy's key, OSRTP=accept or not",
        )
    yield seq(
        "osrtp_offer_dtls_off",
        offer(A(), {**osrtp_offer, "DTLS": "off"}, note="a=crypto lines only"),
        answer(callee(f"a=crypto:1 AEAD_AES_256_GCM inline:{GCM256_KEY}"), note="the callee takes tag 1"),
        query(),
    )
    yield seq(
        "osrtp_opportunistic_dtls_offer_plain_answer",
        offer(
            A(M(lines=(*DTMF_LINES, "a=setup:actpass", f"a=fingerprint:{SHA256}", "a=sendrecv"))),
            {"SDES": KARLS_SUITES},
            note="RTP/AVP with a DTLS fingerprint: also an OSRTP offer to 10.5",
        ),
        answer(
            callee(),
            {"OSRTP": ["accept"]},
            note="accepted: the caller gets setup:active and the proxy's fingerprint",
        ),
        query(),
    )
    for proto in ("RTP/AVPF", "RTP/SAVP"):
        yield seq(
            f"osrtp_offer_transport_protocol_{proto.replace('/', '_').lower()}",
            offer(A(), {**osrtp_offer, "transport-protocol": proto}),
            answer(callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}", proto=proto)),
            query(),
        )
    for name, picked in (
        ("plain", None),
        ("callers_line", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"),
        ("proxy_line", f"a=crypto:3 AEAD_AES_256_GCM inline:{GCM256_KEY}"),
    ):
        yield seq(
            f"osrtp_offer_sdes_caller_to_rtp_avp_answer_{name}",
            offer(
                caller("RTP/SAVP"),
                {**osrtp_offer, "transport-protocol": "RTP/AVP"},
                note="RTP/AVP with the caller's lines and the proxy's",
            ),
            answer(callee(picked)),
            query(),
            doc="an SDES caller relayed as OSRTP: RTP/SAVP back to it, under the callee's line if the "
            "callee picked one of the caller's, else under the proxy's key",
        )
    yield seq(
        "osrtp_offer_reoffer",
        offer(A(), osrtp_offer),
        answer(callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}")),
        offer(A(version="2890844527"), osrtp_offer, tt=TT, note="re-INVITE, OSRTP=offer again"),
        answer(callee(f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}")),
        offer(A(version="2890844528"), {"SDES": KARLS_SUITES}, tt=TT, note="re-INVITE without OSRTP"),
        answer(callee()),
        query(),
        doc="the re-offer leads with the agreed line (same tag, same key), then the other suites under "
        "new keys, without a=setup/a=fingerprint; the protocol sticks without OSRTP",
    )
    yield seq(
        "osrtp_offer_reoffer_after_plain_answer",
        offer(A(), osrtp_offer),
        answer(callee()),
        offer(A(version="2890844527"), osrtp_offer, tt=TT, note="re-INVITE, OSRTP=offer again"),
        answer(callee(f"a=crypto:2 AEAD_AES_128_GCM inline:{GCM128_KEY}")),
        query(),
        doc="the re-offer repeats the same four lines and keys, without a=setup/a=fingerprint",
    )


def _sdes_dtls() -> Iterator[Sequence]:
    for name, sdes in (("", KARLS_SUITES), ("_sdes_off", ["off"])):
        yield seq(
            f"sdes_dtls_sdes_caller_to_browser{name}",
            offer(caller("RTP/SAVP"), {**kamailio("offer"), **TO_BROWSER, "SDES": sdes}),
            answer(browser_answer(), {**kamailio("answer", "sip_reply"), **TO_PHONE_SDES}),
            query(),
            doc="the browser is offered the caller's lines (unless SDES=off), the proxy's and its "
            "fingerprint; its DTLS answer goes back to the caller as one line, tag 1, the proxy's key",
        )
    for name, sdes, picked in (
        ("", KARLS_SUITES, f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"),
        (
            "_no_gcm",
            ["no-AEAD_AES_256_GCM", "no-AEAD_AES_128_GCM", *KARLS_SUITES],
            f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{CALLEE_KEY}",
        ),
    ):
        yield seq(
            f"sdes_dtls_browser_to_sdes_phone{name}",
            offer(WEBRTC_OFFER, {**kamailio("offer"), **TO_PHONE_SDES, "SDES": sdes}),
            answer(phone_answer(picked), {**kamailio("answer", "sip_reply"), **TO_BROWSER}),
            query(),
            doc="the phone is offered the proxy's suites and fingerprint; the browser gets setup:active",
        )
