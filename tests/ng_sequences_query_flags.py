"""Side-by-side sequences (see `ng_sequences`): parity with rtpengine 10.5, query flags.

What `query` (and `delete` with a from-tag) shows of plain calls:

- Directions (`send`/`recv` media flags): 10.5 keeps one direction per pair of medias. Each SDP, offer
  or answer, sets its sender's media from what it says and the other party's as the mirror image, until
  the next SDP of either; a zero connection address (old-style hold, `c=IN IP4 0.0.0.0`) means the
  sender does not receive. So a query between a re-offer and its answer shows the other party as the
  offer would have it, and after an answer the offerer shows what the answer said.
- `transcoding`: 10.5 shows it on a media whose codec handlers for what that party sends are not all
  pass-through. It decides that for the media an offer goes to, for both medias after an answer, and
  when `block DTMF`/`unblock DTMF` starts or ends a block that replaces DTMF (`DTMF-security` silence,
  tone, random, zero, DTMF; not the default drop, not `block media`/`silence media`). In plain calls:
  an answer under `single-codec` (the offerer gets one codec of several the answerer may send), and
  every such block of a party with a codec 10.5 can transcode. Codec masking and stripping never set it.
- Via-branches: a party an answer creates (a second fork) has none; an answer with an unknown to-tag
  and a known via-branch renames the party of that branch. A `delete` without a from-tag deletes the
  whole call; with one it names its party by to-tag (else from-tag), by via-branch without a to-tag,
  and its reply lists the parties of the tags, never those of a branch deleted already.
- Media that are not over UDP (`m=message 9 TCP/MSRP *`, ...): both parties get a pair of ports and are
  listed with streams as for RTP, without a `protocol` (10.5 knows only RTP profiles and udptl).
"""

from __future__ import annotations

from collections.abc import Iterator

from ng_sequences import (
    A_IP,
    ASTERISK_ANSWER,
    ASTERISK_OFFER,
    B2,
    B_IP,
    CALL2,
    CALL3,
    DTMF_LINES,
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
    cmd,
    delete,
    offer,
    query,
    seq,
    video,
)

V_UP, V_F1, V_F2 = "z9hG4bK.up", "z9hG4bK.f1", "z9hG4bK.f2"
NOW = {"delete-delay": 0}
SILENCE = {"DTMF-security": "silence"}
UNKNOWN_CODECS = ("a=rtpmap:96 foo/8000", "a=rtpmap:97 bar/8000", *DTMF_LINES)


def msrp(port: int, ip: str) -> M:
    return M(
        port=port,
        kind="message",
        proto="TCP/MSRP",
        fmts="*",
        lines=("a=accept-types:text/plain", f"a=path:msrp://{ip}:{port}/s1;tcp"),
    )


def _directions() -> Iterator[Sequence]:
    yield seq(
        "hold_zero_address_query_before_answer",
        call_setup(),
        offer(
            A(audio(6000, direction=""), session_c="0.0.0.0", version="2890844527"),
            tt=TT,
            note="old-style hold: the callee is shown as the offer has it",
        ),
        query(),
        answer(B(audio(7000, direction="recvonly"), version="3344556678")),
        query(),
        offer(A(version="2890844528"), tt=TT, note="resume"),
        query(),
    )
    yield seq(
        "hold_zero_address_in_answer",
        offer(A()),
        answer(B(audio(7000), session_c="0.0.0.0"), note="answered with c=0.0.0.0, sendrecv"),
        query(),
        query(ft=FT),
    )
    yield seq(
        "hold_zero_address_from_callee",
        call_setup(),
        offer(
            B(audio(7000, direction="sendonly"), session_c="0.0.0.0", version="3344556678"),
            ft=TT,
            tt=FT,
            note="the callee holds",
        ),
        query(),
        answer(A(audio(6000, direction="recvonly"), version="2890844527"), ft=TT, tt=FT),
        query(tt=TT),
    )
    yield seq(
        "hold_zero_address_one_fork",
        offer(A()),
        answer(B(audio(7000), session_c="0.0.0.0"), tt=TT, note="183 from fork 1 with c=0.0.0.0"),
        query(),
        answer(B2(), tt=TT2, note="200 OK from fork 2"),
        query(),
    )
    yield seq(
        "direction_answer_differs_from_offer",
        call_setup(A(audio(6000, direction="sendonly")), B(audio(7000, direction="sendrecv"))),
        query(),
        call_setup(A(audio(6000, direction="recvonly")), B(audio(7000, direction="inactive")), call=CALL2),
        query(call=CALL2),
    )


def _transcoding() -> Iterator[Sequence]:
    yield seq(
        "transcoding_flag_single_codec",
        call_setup(ASTERISK_OFFER, B(audio(7000, "8 0 9 101")), answer_opts={"flags": ["single-codec"]}),
        query(),
        offer(ASTERISK_OFFER, tt=TT, note="re-INVITE: decided again without single-codec"),
        query(),
        answer(B(audio(7000, "8 0 9 101"))),
        query(),
    )
    yield seq(
        "transcoding_flag_single_codec_variants",
        call_setup(A(audio(6000, "0 8")), B(audio(7000, "0 8")), answer_opts={"flags": ["single-codec"]}),
        query(note="no DTMF: still transcoding"),
        call_setup(
            ASTERISK_OFFER,
            B(audio(7000, "8 101")),
            answer_opts={"flags": ["single-codec"]},
            call=CALL2,
        ),
        query(call=CALL2, note="one codec answered: nothing to transcode"),
        call_setup(
            A(M(port=6000, fmts="96 97 101", lines=UNKNOWN_CODECS)),
            B(M(port=7000, fmts="96 97 101", lines=UNKNOWN_CODECS)),
            answer_opts={"flags": ["single-codec"]},
            call=CALL3,
        ),
        query(call=CALL3, note="codecs 10.5 cannot transcode: passed through"),
    )
    yield seq(
        "transcoding_flag_never_for_codec_masking",
        call_setup(ASTERISK_OFFER, ASTERISK_ANSWER, {"codec": {"mask": ["PCMA", "GSM"]}}),
        query(),
        call_setup(
            ASTERISK_OFFER, ASTERISK_ANSWER, {"codec": {"strip": ["G722"], "mask": ["GSM"]}}, call=CALL2
        ),
        query(call=CALL2),
        call_setup(
            ASTERISK_OFFER,
            ASTERISK_ANSWER,
            {"codec": {"strip": ["all"], "except": ["PCMU", "telephone-event"]}},
            call=CALL3,
        ),
        query(call=CALL3),
    )
    yield seq(
        "transcoding_flag_block_dtmf_replacing",
        call_setup(),
        cmd("block DTMF", SILENCE, note="call-wide, DTMF replaced by silence"),
        query(),
        cmd("unblock DTMF", ft=FT, note="the party's own block was none: nothing decided"),
        query(),
        cmd("unblock DTMF"),
        query(),
    )
    yield seq(
        "transcoding_flag_block_dtmf_one_party",
        call_setup(offer_opts={"label": "caller"}),
        cmd("block DTMF", {"DTMF-security": "tone", "label": "caller"}),
        query(),
        cmd("block DTMF", {"label": "caller"}, note="now a plain block: the flag stays as decided"),
        query(),
        cmd("block DTMF", SILENCE, ft=FT),
        cmd("block DTMF", note="a call-wide drop takes precedence, decides nothing"),
        query(),
        cmd("unblock DTMF", {"flags": ["all"]}),
        query(),
    )
    yield seq(
        "transcoding_flag_block_dtmf_and_signalling",
        call_setup(ASTERISK_OFFER, B(audio(7000, "8 0 9 101")), answer_opts={"flags": ["single-codec"]}),
        cmd("block DTMF", SILENCE),
        query(),
        cmd("unblock DTMF", note="single-codec still makes the callee transcode"),
        query(),
        cmd("block DTMF", SILENCE, ft=TT),
        offer(A(version="2890844527"), tt=TT, note="re-INVITE while the callee's DTMF is replaced"),
        query(),
        answer(B(version="3344556678")),
        query(),
    )
    yield seq(
        "transcoding_flag_not_for_plain_blocks",
        call_setup(A((audio(6000), video(6002))), B((audio(7000), video(7002)))),
        cmd("block DTMF"),
        cmd("block media", ft=FT),
        cmd("silence media"),
        query(),
        cmd("block DTMF", {"DTMF-security": "off"}, ft=TT),
        offer(A((audio(6000), video(6002)), version="2890844527"), tt=TT),
        answer(B((audio(7000), video(7002)))),
        query(),
        cmd("block DTMF", SILENCE, note="video is never transcoded"),
        query(),
    )


def _branches() -> Iterator[Sequence]:
    yield seq(
        "fork_answers_with_own_via_branches",
        offer(A(), {"via-branch": V_UP}),
        answer(B(), {"via-branch": V_F1}, tt=TT, note="183 from fork 1"),
        answer(B2(), {"via-branch": V_F2}, tt=TT2, note="200 OK from fork 2"),
        query(),
        delete({"via-branch": V_F1}, ft=FT, tt=TT, note="fork 1 cancelled"),
        query(),
        delete({**NOW, "via-branch": V_F2}, ft=FT, tt=TT2),
        query(),
    )
    yield seq(
        "fork_via_branch_of_the_offer_only",
        offer(A(), {"via-branch": V_F1}),
        answer(B(), tt=TT),
        answer(B2(), tt=TT2),
        query(),
        delete({"via-branch": V_F1}, ft=FT, tt=TT),
        query(tt=TT2),
    )
    yield seq(
        "fork_answers_with_the_same_via_branch",
        offer(A(), {"via-branch": V_UP}),
        answer(B(), {"via-branch": V_UP}, tt=TT),
        answer(B2(), {"via-branch": V_UP}, tt=TT2, note="another tag on the same branch: renamed"),
        query(),
        delete({**NOW, "via-branch": V_UP}, ft=FT, tt=TT2),
        query(),
    )
    yield seq(
        "fork_branched_offers_cancel_one",
        offer(A(), {"via-branch": V_F1}),
        offer(A(), {"via-branch": V_F2}),
        answer(B(), {"via-branch": V_F2}, tt=TT),
        query(),
        delete({**NOW, "via-branch": V_F1}, ft=FT, note="the branch's party, the from-tag's view"),
        query(),
    )
    forks = (
        offer(A()),
        answer(B(), {"via-branch": V_F1}, tt=TT),
        answer(B2(), {"via-branch": V_F2}, tt=TT2),
    )
    yield seq(
        "delete_fork_by_to_tag_only", *forks, delete(NOW, tt=TT, note="no from-tag: the whole call"), query()
    )
    yield seq("delete_fork_by_via_branch_only", *forks, delete({**NOW, "via-branch": V_F1}), query())
    yield seq(
        "delete_fork_unknown_to_tag",
        *forks,
        delete(NOW, ft=FT, tt="nosuchtag"),
        delete({**NOW, "via-branch": V_F2}, ft=FT, tt="nosuchtag", note="answers' via-branches: not noted"),
        query(),
        offer(A(), call=CALL2),
        delete(NOW, ft=FT, tt="nosuchtag", call=CALL2, note="the from-tag's party waits for its answer"),
        query(call=CALL2),
    )
    yield seq(
        "delete_fork_deleted_already",
        *forks,
        delete(NOW, ft=FT, tt=TT),
        delete(NOW, ft=FT, tt=TT, note="that branch is gone"),
        query(tt=TT),
        query(ft=TT),
        query(),
    )


def _non_rtp() -> Iterator[Sequence]:
    yield seq(
        "msrp_listed_in_query_and_delete",
        call_setup(A((audio(6000), msrp(6050, A_IP))), B((audio(7000), msrp(7050, B_IP)))),
        query(),
        delete(ft=FT),
    )
    yield seq(
        "msrp_only_call",
        offer(A(msrp(9, A_IP)), note="m=message 9 TCP/MSRP *"),
        query(),
        answer(B(msrp(9, B_IP))),
        query(),
        delete(ft=FT, tt=TT),
    )
    yield seq(
        "msrp_first_rejected_and_moved",
        call_setup(A((msrp(6050, A_IP), audio(6000))), B((msrp(7050, B_IP), audio(7000)))),
        query(),
        offer(A((msrp(6060, A_IP), audio(6000)), version="2890844527"), tt=TT, note="the caller moves"),
        answer(B((msrp(7050, B_IP), audio(7000)))),
        query(),
        call_setup(A((audio(6000), msrp(6050, A_IP))), B((audio(7000), msrp(0, B_IP))), call=CALL2),
        query(call=CALL2, note="refused by the answer"),
        call_setup(A((audio(6000), msrp(0, A_IP))), B((audio(7000), msrp(0, B_IP))), call=CALL3),
        query(call=CALL3, note="refused in the offer"),
    )


_T38_LINES = (
    "a=T38FaxVersion:0",
    "a=T38MaxBitRate:14400",
    "a=T38FaxRateManagement:transferredTCF",
    "a=T38FaxMaxBuffer:262",
    "a=T38FaxMaxDatagram:176",
    "a=T38FaxUdpEC:t38UDPRedundancy",
)


def _udptl() -> list[Sequence]:
    """T.38 over UDPTL: 10.5 gives it an RTP and an RTCP port like RTP media, and lists both."""
    t38_a = A(M(port=6004, kind="image", proto="udptl", fmts="t38", lines=_T38_LINES))
    t38_b = B(M(port=7004, kind="image", proto="udptl", fmts="t38", lines=_T38_LINES))
    return [
        seq("udptl_call_ports_in_query", call_setup(t38_a, t38_b), query()),
        seq(
            "udptl_reinvite_ports_in_query",
            call_setup(),
            offer(t38_a, tt=TT, note="re-INVITE to T.38"),
            answer(t38_b),
            query(),
            delete(ft=FT),
        ),
    ]


def group() -> list[Sequence]:
    return [*_directions(), *_transcoding(), *_branches(), *_non_rtp(), *_udptl()]
