"""Codec options as 10.5 applies them (probed on the daemon; the side-by-side sequences
`codec_*` and `generated_option_call_*` compare whole calls): what strip/mask/except/offer leave, the
"touched" clock rates whose orphaned DTMF and comfort noise go, and an engine call whose options take
every codec away."""

from __future__ import annotations

from typing import Any

import pytest

from engine.engine_kit import T0, Engine, request
from karl_core.ng.commands import Command
from karl_core.session import Codec
from karl_medianode.engine.media_rules import apply_codec_options, without_orphans

PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
G722 = Codec(9, "G722", 8000)
CN = Codec(13, "CN", 8000)
G729 = Codec(18, "G729", 8000)
DTMF = Codec(101, "telephone-event", 8000, fmtp="0-16")
DTMF_48K = Codec(102, "telephone-event", 48000)
OPUS = Codec(111, "opus", 48000, 2)


def types(codecs: list[Codec]) -> list[int]:
    return [c.payload_type for c in codecs]


def left(codecs: list[Codec], *, answer: bool = False, **codec: Any) -> list[int]:
    """What an offer (or answer) with this `codec` dictionary sends on."""
    command = Command.ANSWER if answer else Command.OFFER
    kept, touched = apply_codec_options(codecs, request(command, codec=codec), answer=answer)
    return types(without_orphans(kept, touched))


@pytest.mark.parametrize(
    ("codecs", "options", "expected"),
    [
        ([PCMU, OPUS, CN, DTMF], {"mask": ["PCMU"]}, [111]),  # no 8000 Hz codec left: CN and DTMF go
        ([PCMU, OPUS, DTMF, DTMF_48K], {"strip": ["PCMU"]}, [111, 102]),  # the 48 kHz DTMF stays
        ([OPUS, DTMF], {"strip": ["GSM"]}, [111, 101]),  # nothing taken: nothing touched
        ([PCMU, G722, DTMF], {"strip": ["PCMU"]}, [9, 101]),  # G722's RTP clock is 8000
        ([PCMU, PCMA, DTMF], {"strip": ["PCMA", "PCMU"]}, []),  # every codec: no format at all
        ([PCMU, PCMA, DTMF], {"strip": ["all"], "except": ["telephone-event"]}, []),
        ([PCMU, PCMA, DTMF], {"strip": ["all"]}, [0, 8, 101]),  # nothing would be left: unchanged
        ([PCMU, PCMA, DTMF], {"mask": ["all"]}, [0, 8, 101]),
        ([PCMU, PCMA, DTMF], {"strip": ["telephone-event"]}, [0, 8]),
        ([PCMU, G729, OPUS], {"strip": ["all"], "except": ["G729", "PCMU"]}, [0, 18]),  # SDP order
        ([PCMU, G729, OPUS], {"strip": ["all"], "offer": ["G729", "PCMU"]}, [18, 0]),  # its order
    ],
)
def test_what_an_offers_codec_options_leave(
    codecs: list[Codec], options: dict[str, Any], expected: list[int]
) -> None:
    assert left(codecs, **options) == expected


def test_an_answer_takes_strip_and_except_but_not_mask() -> None:
    assert left([PCMA, PCMU, DTMF], answer=True, strip=["PCMA"]) == [0, 101]
    assert left([PCMA, PCMU, DTMF], answer=True, mask=["PCMA"]) == [8, 0, 101]
    assert left([PCMA, PCMU, DTMF], answer=True, **{"strip": ["all"], "except": ["PCMU"]}) == [0]
    assert left([PCMU, OPUS, DTMF], answer=True, strip=["PCMU"]) == [111]


def offer_sdp(formats: str, *lines: str) -> str:
    return (
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio 40000 RTP/AVP {formats}\r\n" + "".join(f"{line}\r\n" for line in lines)
    )


def m_line(sdp: str) -> str:
    return next(line for line in sdp.split("\r\n") if line.startswith("m="))


def test_an_offer_whose_options_take_every_codec_keeps_the_received_codec_lines() -> None:
    engine = Engine()
    reply = engine.do(
        Command.OFFER,
        T0,
        **{
            "call-id": "c",
            "from-tag": "A",
            "sdp": offer_sdp("0 8 101", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:0 PCMU/8000"),
            "codec": {"strip": ["PCMU", "PCMA"]},
        },
    )
    sdp = reply["sdp"]
    assert m_line(sdp).endswith(" RTP/AVP "), "no format after the protocol, as 10.5 writes it"
    lines = sdp.split("\r\n")
    assert lines.index("a=rtpmap:101 telephone-event/8000") < lines.index("a=rtpmap:0 PCMU/8000")


def test_an_answer_with_nothing_in_common_still_has_formats() -> None:
    """10.5 transcodes here; Karl passes the answerer's codecs on rather than an `m=` line with none."""
    engine = Engine()
    engine.do(Command.OFFER, T0, **{"call-id": "c", "from-tag": "A", "sdp": offer_sdp("0 8 101")})
    reply = engine.do(
        Command.ANSWER,
        T0,
        **{
            "call-id": "c",
            "from-tag": "A",
            "to-tag": "B",
            "sdp": offer_sdp("9", "a=rtpmap:9 G722/8000").replace("40000", "40002"),
        },
    )
    assert m_line(reply["sdp"]).split(" ")[3:] == ["9"]
