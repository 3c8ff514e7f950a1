"""Side-by-side sequences (see `ng_sequences`): parity with rtpengine 10.5, reoffers.

What 10.5 does, as these sequences show it:

- `a=ptime`: one packet time per media, shared by both parties: every SDP that has one sets it for
  both, and every SDP sent on (offer or answer, whichever party offers) carries the last one seen.
  A re-offer from the callee without `a=ptime` therefore gets the caller's (or the callee's earlier)
  packet time. Without any, an `a=ptime:0` stays where it was.
- Codecs in a re-offer: without flags the new list as offered (order and parameters); with
  `reuse-codecs` (alias `no-codec-renegotiation`) the receiving party's codecs from the last
  negotiation keep their order and parameters (also those its own answer gave), codecs no longer
  offered go, new ones come last (after telephone-event). In an answer with the flag the codecs keep
  the offer's order and parameters. `reset-codecs` is no flag of 10.5: ignored. An answer (200 OK
  after 183, another fork) keeps no codec an earlier answer dropped.
- `a=mid`: each party's media has one ID. The offerer's follows its SDP (kept when the SDP has none);
  the receiver's is set once, copied from the offerer's or, with `generate-mid`, the media's number
  (1, 2, ... also for a rejected media); answers change neither. Every SDP sent on carries the
  receiver's as the first line after `m=` (and `c=`); for media 10.5 does not handle (MSRP) the line
  goes where its copy of the text stands: after the `c=` it adds, or else before the `m=` line,
  and the original `a=mid` stays too.
"""

from __future__ import annotations

from typing import Any

from ng_sequences import (
    A_IP,
    B2,
    FT,
    TT,
    TT2,
    A,
    B,
    M,
    Sequence,
    answer,
    audio,
    call_setup,
    offer,
    query,
    seq,
    video,
)

REUSE = {"flags": ["reuse-codecs"]}
GEN_MID = {"flags": ["generate-mid"]}


def _callee_reoffers() -> list[Sequence]:
    return [
        seq(
            "reoffer_callee_ptime_from_first_offer",
            call_setup(A(audio(6000, ptime=20)), B(audio(7000, ptime=None))),
            offer(B(audio(7000, ptime=None), version="3344556678"), ft=TT, tt=FT, note="callee re-offers"),
            answer(A(audio(6000, ptime=None), version="2890844527"), ft=TT, tt=FT),
            offer(A(audio(6000, ptime=None), version="2890844528"), tt=TT, note="caller re-offers"),
            answer(B(audio(7000, ptime=None), version="3344556679")),
            doc="10.5 keeps the last a=ptime seen on the media, whoever sent it",
        ),
        seq(
            "reoffer_callee_new_ptime",
            call_setup(A(audio(6000, ptime=20)), B(audio(7000, ptime=30))),
            offer(B(audio(7000, ptime=40), version="3344556678"), ft=TT, tt=FT),
            answer(A(audio(6000, ptime=None), version="2890844527"), ft=TT, tt=FT),
            offer(B(audio(7000, ptime=None), version="3344556679"), ft=TT, tt=FT),
            answer(A(audio(6000, ptime=20), version="2890844528"), ft=TT, tt=FT),
            offer(A(audio(6000, ptime=None), version="2890844529"), tt=TT, note="caller re-offers"),
            answer(B(audio(7000, ptime=None), version="3344556680")),
        ),
        seq(
            "reoffer_callee_ptime_only_in_reoffer",
            call_setup(A(audio(6000, ptime=None)), B(audio(7000, ptime=None))),
            offer(B(audio(7000, ptime=30), version="3344556678"), ft=TT, tt=FT),
            answer(A(audio(6000, ptime=None), version="2890844527"), ft=TT, tt=FT),
            offer(A(audio(6000, ptime=None), version="2890844528"), tt=TT),
            answer(B(audio(7000, ptime=None), version="3344556679")),
        ),
        seq(
            "reoffer_caller_ptime_from_answer",
            call_setup(A(audio(6000, ptime=20)), B(audio(7000, ptime=30))),
            offer(A(audio(6000, ptime=None), version="2890844527"), tt=TT),
            answer(B(audio(7000, ptime=None), version="3344556678")),
        ),
        seq(
            "reoffer_callee_codecs_and_hold",
            call_setup(A(audio(6000, "0 8 101", ptime=20)), B(audio(7000, "8 101", ptime=None))),
            offer(
                B(audio(7000, "8 0 9 101", ptime=None, direction="sendonly"), version="3344556678"),
                ft=TT,
                tt=FT,
                note="callee puts on hold with other codecs",
            ),
            answer(
                A(audio(6000, "0 8 101", ptime=None, direction="recvonly"), version="2890844527"),
                ft=TT,
                tt=FT,
            ),
            query(),
        ),
        seq(
            "reoffer_callee_two_media_ptime",
            call_setup(A((audio(6000, ptime=20), video(6002))), B((audio(7000, ptime=None), video(7002)))),
            offer(B((audio(7000, ptime=None), video(7002)), version="3344556678"), ft=TT, tt=FT),
            answer(A((audio(6000, ptime=None), video(6002)), version="2890844527"), ft=TT, tt=FT),
        ),
        seq(
            "ptime_zero_kept_in_place",
            call_setup(A(audio(6000, ptime=0)), B(audio(7000, ptime=0))),
            offer(A(audio(6000, ptime=0), version="2890844527"), tt=TT),
            answer(B(audio(7000, ptime=30), version="3344556678")),
            offer(A(audio(6000, ptime=0), version="2890844528"), tt=TT, note="now the media has a ptime"),
        ),
    ]


def _codec_reoffers() -> list[Sequence]:
    out: list[Sequence] = []
    variants: tuple[tuple[str, dict[str, Any] | None], ...] = (
        ("", None),
        ("_reuse_codecs", REUSE),
        ("_reset_codecs", {"flags": ["reset-codecs"]}),
    )
    for suffix, flags in variants:
        out.append(
            seq(
                "reoffer_caller_codecs_changed" + suffix,
                call_setup(A(audio(6000, "0 8 101")), B(audio(7000, "8 101"))),
                offer(
                    A(audio(6000, "8 0 9 101"), version="2890844527"),
                    flags,
                    tt=TT,
                    note="other order, G722 added",
                ),
                answer(B(audio(7000, "0 8 101"), version="3344556678"), flags),
                offer(A(audio(6000, "0 101"), version="2890844528"), flags, tt=TT, note="PCMA dropped"),
                answer(B(audio(7000, "0 101"), version="3344556679"), flags),
            )
        )
        out.append(
            seq(
                "reoffer_callee_codecs_changed" + suffix,
                call_setup(A(audio(6000, "0 8 9 101")), B(audio(7000, "9 8 101"))),
                offer(B(audio(7000, "8 0 3 101"), version="3344556678"), flags, ft=TT, tt=FT),
                answer(A(audio(6000, "0 8 101"), version="2890844527"), flags, ft=TT, tt=FT),
                offer(A(audio(6000, "9 8 0 101"), version="2890844528"), flags, tt=TT),
                answer(B(audio(7000, "0 8 9 101"), version="3344556679"), flags),
            )
        )
    out.append(
        seq(
            "reuse_codecs_answer_order",
            call_setup(A(audio(6000, "0 8 9 101")), B(audio(7000, "9 8 101")), answer_opts=REUSE),
            offer(A(audio(6000, "0 8 9 101"), version="2890844527"), tt=TT),
            answer(B(audio(7000, "101 8 0"), version="3344556678"), REUSE),
        )
    )
    opus = "a=rtpmap:96 opus/48000/2"
    dtmf = "a=rtpmap:101 telephone-event/8000"
    out.append(
        seq(
            "reuse_codecs_fmtp_changed",
            call_setup(
                A(M(6000, "96 0 101", (opus, "a=fmtp:96 useinbandfec=1", dtmf, "a=fmtp:101 0-16"))),
                B(M(7000, "96 101", (opus, "a=fmtp:96 stereo=1", dtmf, "a=fmtp:101 0-15"))),
            ),
            offer(
                A(
                    M(
                        6000,
                        "96 0 97 101",
                        (
                            opus,
                            "a=fmtp:96 maxplaybackrate=16000",
                            "a=rtpmap:97 iLBC/8000",
                            dtmf,
                            "a=fmtp:101 0-11",
                        ),
                    ),
                    version="2890844527",
                ),
                REUSE,
                tt=TT,
            ),
            answer(B(M(7000, "96 101", (opus, "a=fmtp:96 stereo=0", dtmf)), version="3344556678"), REUSE),
            offer(
                A(
                    M(
                        6000,
                        "96 0 97 101",
                        (
                            opus,
                            "a=fmtp:96 maxplaybackrate=8000",
                            "a=rtpmap:97 iLBC/8000",
                            dtmf,
                            "a=fmtp:101 0-11",
                        ),
                    ),
                    version="2890844528",
                ),
                tt=TT,
                note="without the flag",
            ),
            doc="with reuse-codecs the parameters (fmtp) of the codecs kept are the earlier ones",
        )
    )
    out.append(
        seq(
            "reuse_codecs_with_strip",
            call_setup(A(audio(6000, "0 8 9 101")), B(audio(7000, "8 101"))),
            offer(
                A(audio(6000, "0 8 9 101"), version="2890844527"),
                {**REUSE, "codec": {"strip": ["PCMU"]}},
                tt=TT,
            ),
            answer(B(audio(7000, "8 9 101"), version="3344556678")),
        )
    )
    strip_gsm = {**REUSE, "codec": {"strip": ["GSM"]}}
    out.append(
        seq(
            "reuse_codecs_after_an_answer_left_no_codec",
            call_setup(A(audio(6000, "0 3 101")), B(audio(7000, "0 101"))),
            offer(B(audio(7000, "8 3 101"), version="3344556678"), ft=TT, tt=FT, note="callee re-offers"),
            answer(
                A(audio(6000, "3 101"), version="2890844527"),
                strip_gsm,
                ft=TT,
                tt=FT,
                note="its own strip leaves no codec: no format, DTMF gone with GSM",
            ),
            offer(
                A(audio(6000, "0 3 101"), version="2890844528"),
                strip_gsm,
                tt=TT,
                note="the callee's codecs are empty: the offer's order",
            ),
            doc="a party whose last answer sent on no codec is offered the re-offer's codecs in its order",
        )
    )
    out.append(
        seq(
            "reuse_codecs_first_offer",
            call_setup(A(audio(6000, "8 0 101")), B(audio(7000, "0 8 101")), REUSE, REUSE),
            offer(
                A(audio(6000, "8 0 101"), version="2890844527"),
                {"flags": ["no-codec-renegotiation"]},
                tt=TT,
                note="the flag's other name",
            ),
            answer(B(audio(7000, "0 8 101"), version="3344556678")),
        )
    )
    out.append(
        seq(
            "reuse_codecs_both_directions",
            call_setup(A(audio(6000, "0 8 9 101")), B(audio(7000, "9 8 0 101")), REUSE, REUSE),
            offer(A(audio(6000, "8 0 101"), version="2890844527"), REUSE, tt=TT),
            answer(B(audio(7000, "0 8 101"), version="3344556678"), REUSE),
            offer(B(audio(7000, "0 9 8 101"), version="3344556679"), REUSE, ft=TT, tt=FT),
            answer(A(audio(6000, "9 8 0 101"), version="2890844528"), REUSE, ft=TT, tt=FT),
            offer(A(audio(6000, "3 8 0 101"), version="2890844529"), REUSE, tt=TT),
            answer(B(audio(7000, "3 101"), version="3344556680")),
            offer(B(audio(7000, "0 3 101"), version="3344556681"), REUSE, ft=TT, tt=FT),
        )
    )
    out.append(
        seq(
            "early_media_answer_keeps_codecs",
            offer(A(audio(6000, "0 8 9 101"))),
            answer(B(audio(7000, "8 101")), note="183"),
            answer(B(audio(7000, "0 8 101"), version="3344556678"), note="200 OK adds PCMU"),
            answer(B(audio(7000, "0 8 101"), version="3344556679"), REUSE, note="again, reuse-codecs"),
            doc="an answer keeps no codec an earlier answer to the same offer dropped",
        )
    )
    out.append(
        seq(
            "forked_answers_codecs",
            offer(A(audio(6000, "0 8 9 101"))),
            answer(B(audio(7000, "8 101")), tt=TT, note="183 from fork 1"),
            answer(B2(audio(7100, "9 0 8 101")), tt=TT2, note="200 OK from fork 2"),
        )
    )
    return out


def _mids() -> list[Sequence]:
    two_b = (audio(7000), video(7002))
    chat = "a=accept-types:text/plain"
    msrp_b = M(port=7050, kind="message", proto="TCP/MSRP", fmts="*", lines=(chat,))
    return [
        seq("generate_mid", call_setup(offer_opts=GEN_MID), query()),
        seq(
            "generate_mid_answer_has_mid",
            call_setup(A(), B(audio(7000, "0 8 101", "a=mid:1")), GEN_MID),
            doc="an answer's a=mid is dropped when the offerer's SDP had none",
        ),
        seq(
            "generate_mid_existing_mid",
            call_setup(
                A(audio(6000, "0 8 101", "a=mid:audio0")), B(audio(7000, "0 8 101", "a=mid:audio0")), GEN_MID
            ),
        ),
        seq("generate_mid_two_media", call_setup(A((audio(6000), video(6002))), B(two_b), GEN_MID)),
        seq(
            "generate_mid_two_media_one_mid",
            call_setup(
                A((audio(6000), M(6002, "96 97", (*video(6002).lines, "a=mid:v"), kind="video"))),
                B(two_b),
                GEN_MID,
            ),
        ),
        seq(
            "generate_mid_rejected_video",
            call_setup(
                A((audio(6000), M(0, "96", ("a=rtpmap:96 VP8/90000",), kind="video"))),
                B((audio(7000), M(0, "96", (), kind="video"))),
                GEN_MID,
            ),
        ),
        seq(
            "generate_mid_video_rejected_in_answer",
            call_setup(
                A((audio(6000), video(6002))), B((audio(7000), M(0, "96", (), kind="video"))), GEN_MID
            ),
        ),
        seq(
            "rejected_media_keeps_mid",
            call_setup(
                A((audio(6000), M(0, "96", ("a=rtpmap:96 VP8/90000", "a=mid:v"), kind="video"))),
                B((audio(7000), M(0, "96", ("a=mid:v",), kind="video"))),
            ),
        ),
        seq("generate_mid_in_answer", call_setup(A(), B(), answer_opts=GEN_MID)),
        seq(
            "generate_mid_on_reoffer",
            call_setup(),
            offer(A(version="2890844527"), GEN_MID, tt=TT, note="re-INVITE with generate-mid"),
            answer(B(version="3344556678")),
            offer(A(version="2890844528"), tt=TT, note="re-INVITE without the flag"),
            answer(B(version="3344556679")),
        ),
        seq(
            "generate_mid_callee_reoffer",
            call_setup(offer_opts=GEN_MID),
            offer(B(version="3344556678"), ft=TT, tt=FT),
            answer(A(version="2890844527"), ft=TT, tt=FT),
            offer(B(version="3344556679"), GEN_MID, ft=TT, tt=FT),
            answer(A(version="2890844528"), ft=TT, tt=FT),
        ),
        seq(
            "mid_changed_in_reoffer",
            call_setup(A(audio(6000, "0 8 101", "a=mid:a")), B(audio(7000, "0 8 101", "a=mid:a"))),
            offer(A(audio(6000, "0 8 101", "a=mid:b"), version="2890844527"), tt=TT),
            answer(B(audio(7000, "0 8 101", "a=mid:b"), version="3344556678")),
            offer(A(audio(6000, "0 8 101"), version="2890844528"), tt=TT, note="mid left out"),
            answer(B(audio(7000, "0 8 101"), version="3344556679")),
            offer(B(audio(7000, "0 8 101", "a=mid:c"), version="3344556680"), ft=TT, tt=FT),
            answer(A(audio(6000, "0 8 101", "a=mid:d"), version="2890844529"), ft=TT, tt=FT),
        ),
        seq(
            "mid_only_in_answer",
            call_setup(A(), B(audio(7000, "0 8 101", "a=mid:0"))),
            offer(A(version="2890844527"), tt=TT),
            answer(B(audio(7000, "0 8 101", "a=mid:0"), version="3344556678")),
        ),
        seq(
            "msrp_mid_repeated",
            call_setup(
                A(
                    (
                        audio(6000),
                        M(port=6050, kind="message", proto="TCP/MSRP", fmts="*", lines=(chat, "a=mid:chat")),
                    )
                ),
                B((audio(7000), msrp_b)),
            ),
        ),
        seq(
            "msrp_own_connection_mid_before_m_line",
            call_setup(
                A(
                    (
                        audio(6000),
                        M(
                            port=6050,
                            kind="message",
                            proto="TCP/MSRP",
                            fmts="*",
                            lines=(chat, "a=mid:chat"),
                            c=A_IP,
                        ),
                    )
                ),
                B((audio(7000), msrp_b)),
            ),
        ),
        seq(
            "generate_mid_msrp",
            call_setup(
                A((audio(6000), M(port=6050, kind="message", proto="TCP/MSRP", fmts="*", lines=(chat,)))),
                B((audio(7000), msrp_b)),
                GEN_MID,
            ),
        ),
        seq(
            "generate_mid_msrp_first_own_connection",
            call_setup(
                A(
                    (
                        M(port=6050, kind="message", proto="TCP/MSRP", fmts="*", lines=(chat,), c=A_IP),
                        audio(6000),
                    )
                ),
                B((msrp_b, audio(7000))),
                GEN_MID,
            ),
        ),
    ]


def group() -> list[Sequence]:
    return [*_callee_reoffers(), *_codec_reoffers(), *_mids()]
