"""Side-by-side sequences (see `ng_sequences`): parity with rtpengine 10.5, statistics commands.

- `statistics`: every section's keys and value types, `intervalstatistics` and the per-proxy
  command counters and durations of `controlstatistics` included (see `ng_normalize.shape`).
- The commands Karl does not implement yet (recording, forwarding, playing media and DTMF,
  publish/subscribe): 10.5's answers wherever it refuses a request before it would act — no
  `call-id`, an unknown call (`Unknown call-id` for recording, `Unknown call-ID` for the others),
  no such party, a missing file or DTMF code, `publish`'s SDP checks. Only a request that 10.5
  would carry out gets Karl's `Command not supported by Karl yet: <command>`, which is why no step
  here asks for one.
"""

from __future__ import annotations

from collections.abc import Iterator

from ng_sequences import (
    A_IP,
    B_IP,
    CALL,
    CALL2,
    FT,
    TT,
    A,
    B,
    Request,
    Sequence,
    call_setup,
    cmd,
    delete,
    offer,
    query,
    seq,
)

# What 10.5 looks up a call for, in its order of commands; `pause recording` is newer than 10.5.
NOT_BUILT = (
    "start recording",
    "stop recording",
    "start forwarding",
    "stop forwarding",
    "play media",
    "stop media",
    "play DTMF",
    "subscribe request",
    "subscribe answer",
    "unsubscribe",
)
# ... and for which it selects a party as for `block media` (label, address, from-tag).
SELECTING = ("start forwarding", "stop forwarding", "play media", "stop media", "play DTMF")


def _statistics() -> Iterator[Sequence]:
    stats = cmd("statistics", call=None)
    yield seq(
        "statistics_interval_and_control_sections",
        call_setup(),
        stats,
        query(),
        cmd("list", call=None),
        cmd("block media"),
        cmd("start recording", call=CALL2, note="an error reply: counted as an error of its proxy"),
        cmd("nonsense", call=None, note="unknown command: an error, counted for no command"),
        cmd("ping", call=None),
        stats,
        delete({"delete-delay": 0}),
        stats,
        doc="statistics before and after requests of several commands, errors included",
    )
    yield seq(
        "statistics_ignores_other_keys",
        cmd("ping", call=None),
        Request({"command": "statistics", "call-id": CALL, "flags": ["all"], "extra": "x"}, "other keys"),
    )


def _unknown_call() -> Iterator[Sequence]:
    yield seq(
        "not_built_commands_unknown_call",
        *(cmd(command, call=CALL2) for command in NOT_BUILT),
        *(cmd(command, call=CALL2, ft=FT, tt=TT, note="with tags") for command in NOT_BUILT),
        *(cmd(command, {"flags": ["all"]}, call=CALL2, note="all") for command in NOT_BUILT),
        cmd("start recording", {"call-id": ""}, call=None, note="an empty call-id is a call-id"),
        cmd("play media", {"call-id": ""}, call=None, note="an empty call-id is a call-id"),
        doc="10.5 looks the call up first: its two spellings of Unknown call-id",
    )
    yield seq(
        "not_built_commands_unknown_call_with_options",
        cmd("play media", {"file": "/tmp/prompt.wav"}, call=CALL2),
        cmd("play DTMF", {"code": "5", "duration": 100}, call=CALL2, ft=FT),
        cmd("start recording", {"metadata": "a:b", "output-destination": "x"}, call=CALL2),
        cmd("start forwarding", {"label": "caller"}, call=CALL2),
        cmd("subscribe answer", {"sdp": B()}, call=CALL2, tt=TT),
        cmd("subscribe request", {"from-tags": [FT]}, call=CALL2),
        cmd("unsubscribe", call=CALL2, tt=TT),
    )
    yield seq(
        "not_built_commands_missing_call_id",
        *(cmd(command, call=None) for command in NOT_BUILT),
        cmd("start recording", {"from-tag": FT, "sdp": A()}, call=None, note="tags and SDP do not help"),
        cmd("pause recording", call=None, note="newer than 10.5"),
        cmd("pause recording", call=CALL2, note="newer than 10.5"),
        doc="without call-id: No call-id in message; commands of later versions are unrecognized",
    )
    yield seq(
        "not_built_commands_deleted_call",
        call_setup(),
        delete({"delete-delay": 0}),
        *(cmd(command, call=CALL, ft=FT) for command in NOT_BUILT),
        doc="a call deleted at once is unknown to every command",
    )


def _publish() -> Iterator[Sequence]:
    yield seq(
        "publish_checks_before_the_call",
        cmd("publish", call=None, note="nothing: the SDP is checked first"),
        cmd("publish", call=CALL2, note="no SDP"),
        cmd("publish", {"sdp": A()}, call=None, note="no call-id"),
        cmd("publish", {"sdp": A()}, call=CALL2, note="no from-tag"),
        cmd("publish", {"sdp": "garbage"}, call=CALL2, ft=FT, note="an SDP that does not parse"),
        cmd(
            "publish",
            {"sdp": f"v=0\r\no=- 1 1 IN IP4 {A_IP}\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"},
            call=CALL2,
            ft=FT,
            note="media without any c=",
        ),
        query(call=CALL2, note="none of these created a call"),
        call_setup(),
        cmd("publish", {"sdp": "garbage"}, ft=FT, note="an existing call: the same SDP checks"),
        doc="publish creates its call: 10.5 checks keys and SDP, never Unknown call-id",
    )


def _known_call() -> Iterator[Sequence]:
    def party_errors(command: str) -> tuple[Request, ...]:
        return (
            cmd(command, ft="nosuchtag", note="unknown from-tag"),
            cmd(command, {"label": "nobody"}, note="unknown label"),
            cmd(command, {"label": "nobody", "from-tag": FT}, note="the label is looked at first"),
            cmd(command, {"address": "not-an-address"}),
            cmd(command, {"address": "127.0.9.9"}, note="nobody's address"),
        )

    for command in SELECTING:
        yield seq(
            f"{command.replace(' ', '_').lower()}_party_errors",
            call_setup(offer_opts={"label": "caller"}),
            *party_errors(command),
            doc=f"{command} on an existing call: 10.5's party selection",
        )
    yield seq(
        "play_and_stop_media_without_party_or_file",
        call_setup(offer_opts={"label": "caller"}),
        cmd("play media", note="no party"),
        cmd("stop media", note="no party"),
        cmd("play DTMF", {"code": 5}, note="no party"),
        cmd("play media", ft=FT, note="no file"),
        cmd("play media", {"label": "caller", "file": ""}, note="an empty file name"),
        cmd("play media", {"address": B_IP, "blob": "", "db-id": 0}, note="empty blob, db-id 0"),
        cmd("play media", {"flags": ["all"], "db-id": -3}, note="all parties, negative db-id"),
        cmd("play media", ft=FT, tt=TT, note="to-tag is not a selection"),
    )
    yield seq(
        "play_dtmf_codes_out_of_range",
        call_setup(),
        cmd("play DTMF", ft=FT, note="no code"),
        cmd("play DTMF", {"code": 16}, ft=FT),
        cmd("play DTMF", {"code": -1}, ft=FT),
        cmd("play DTMF", {"digit": "x"}, ft=FT),
        cmd("play DTMF", {"digit": "a"}, ft=FT, note="lower case"),
        cmd("play DTMF", {"code": "E"}, ft=FT),
        cmd("play DTMF", {"code": 256 + 20}, ft=FT),
        cmd("play DTMF", {"code": "nonsense"}, ft=FT, note="a string of many characters and no number"),
        cmd("play DTMF", {"flags": ["all"], "code": 99}, note="all parties"),
    )
    yield seq(
        "subscribe_request_selection_errors",
        call_setup(offer_opts={"label": "caller"}),
        cmd("subscribe request", note="nobody selected"),
        cmd("subscribe request", ft="nosuchtag"),
        cmd("subscribe request", {"label": "nobody"}),
        cmd("subscribe request", {"address": "not-an-address"}),
        cmd("subscribe request", {"from-tags": ["nosuchtag", "other"]}, note="none of the tags known"),
    )
    yield seq(
        "subscribe_answer_and_unsubscribe_checks",
        call_setup(),
        cmd("subscribe answer", note="no to-tag"),
        cmd("subscribe answer", {"sdp": B()}, ft=FT, note="no to-tag"),
        cmd("subscribe answer", tt=TT, note="no SDP"),
        cmd("subscribe answer", {"sdp": ""}, tt=TT, note="an empty SDP"),
        cmd("subscribe answer", {"sdp": B()}, tt="nosuchtag", note="unknown to-tag"),
        cmd("subscribe answer", {"sdp": "garbage"}, tt="nosuchtag", note="the to-tag comes first"),
        cmd("subscribe answer", {"sdp": "garbage"}, tt=TT, note="an SDP that does not parse"),
        cmd("unsubscribe", note="no to-tag"),
        cmd("unsubscribe", ft=FT, note="no to-tag"),
        offer(A(), call=CALL2, note="an offer-only call"),
        cmd("subscribe answer", {"sdp": B()}, call=CALL2, tt=TT, note="the callee has no tag yet"),
    )


def group() -> list[Sequence]:
    return [*_statistics(), *_unknown_call(), *_publish(), *_known_call()]
