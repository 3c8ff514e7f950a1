"""What Karl is expected to answer to the side-by-side sequences (`ng_sequences.SEQUENCES`), relative to
rtpengine 10.5: where it differs on purpose (`DELIBERATE`) and where it does not match yet
(`KNOWN_GAPS`). Shared by every comparison with rtpengine's replies: the networked side-by-side suite
(tests/medianode/test_sidebyside.py) and the socket-free engine tests against recorded goldens
(tests/engine/).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from karl_core.sdp.sdes import suite_by_name
from ng_sequences import SEQUENCES, Sequence, Transcript

# Where Karl differs from 10.5 on purpose (docs/compatibility.md, "Failed offers and answers"): for a
# step (1-based) of a sequence, what Karl answers instead of rtpengine's (normalised) reply. Every other
# step of these sequences is compared as usual.
_FAILED_OFFER_LEAVES_NOTHING = "a failed first offer leaves no call behind (10.5 keeps a half-built one)"
_UNKNOWN_CALL = {"result": "error", "error-reason": "Unknown call-id"}
_SUITES_KARL_CAN_DO = (
    "Karl offers only the SRTP suites its SRTP library does (no AES-192/256-CM, F8 or NULL), "
    "tagged as 10.5 tags them with SDES-no- for the others"
)


def _only_karls_suites(reply: Any) -> Any:
    """rtpengine's reply with the crypto lines of suites Karl cannot do left out, the others tagged 1,
    2, ... in order (as 10.5 tags them when told `SDES-no-` the others), keys renumbered."""
    kept: list[str] = []
    for line in reply["sdp"]:
        if line.startswith("a=crypto:"):
            suite = suite_by_name(line.split(" ")[1])
            if suite is None or not suite.supported:
                continue
        kept.append(line)
    tags, keys = iter(range(1, len(kept) + 1)), iter(range(1, len(kept) + 1))
    renumbered = []
    for line in kept:
        if line.startswith("a=crypto:"):
            line = re.sub(r"^a=crypto:\d+ ", lambda _: f"a=crypto:{next(tags)} ", line)
            line = re.sub(r"<KEY_\d+:", lambda _: f"<KEY_{next(keys)}:", line)
        renumbered.append(line)
    return {**reply, "sdp": renumbered}


_NOT_FOUND = {"result": "ok", "warning": "Call-ID not found or tags didn't match"}

_NO_TRANSCODING = (
    "an answer with no codec of the offer: 10.5 transcodes to the offer's first codec and gives the "
    "offerer that; Karl does not transcode and passes the answer's codecs on (they reach the offerer "
    "as the answerer sends them), so no `transcoding` flag either"
)


def _answer_codec_passed_on(reply: Any) -> Any:
    """10.5's answer with the answerer's own codec (`9 G722/8000`) where 10.5 gives the offer's first."""
    sdp = [line for line in reply["sdp"] if not line.startswith("a=rtpmap:0 ")]
    at = next(i for i, line in enumerate(sdp) if line.startswith("m=audio "))
    sdp[at] = sdp[at].rsplit(" ", 1)[0] + " 9<CRLF>"
    sdp.insert(at + 1, "a=rtpmap:9 G722/8000<CRLF>")
    return {**reply, "sdp": sdp}


def _no_transcoding_flag(reply: Any) -> Any:
    tags = {
        tag: {
            **party,
            "medias": [
                {**media, "flags": [f for f in media["flags"] if f != "transcoding"]}
                for media in party["medias"]
            ],
        }
        for tag, party in reply["tags"].items()
    }
    return {**reply, "tags": tags}


def _later_keys(reply: Any) -> Any:
    """A reply after an offer of all 12 suites, compared with Karl's after its offer of 4: a key that
    first appears here is numbered 8 lower (`<KEY_13:…>` becomes `<KEY_5:…>`)."""

    def lower(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return f"<KEY_{number - 8 if number > 12 else number}:"

    return {**reply, "sdp": [re.sub(r"<KEY_(\d+):", lower, line) for line in reply["sdp"]]}


DELIBERATE: dict[str, tuple[str, dict[int, Callable[[Any], Any]]]] = {
    "sdes_to_sdes_callee_picks_a_proxy_suite": (_SUITES_KARL_CAN_DO, {1: _only_karls_suites, 2: _later_keys}),
    "sdes_to_sdes_callee_picks_the_callers_suite": (
        _SUITES_KARL_CAN_DO,
        {1: _only_karls_suites, 2: _later_keys},
    ),
    "plain_rtp_offer_to_sdes": (_SUITES_KARL_CAN_DO, {1: _only_karls_suites}),
    "osrtp_offer_all_suites": (_SUITES_KARL_CAN_DO, {1: _only_karls_suites}),
    "plain_rtp_offer_to_srtp_sdes_and_dtls": (
        _SUITES_KARL_CAN_DO,
        {1: _only_karls_suites, 2: _only_karls_suites},
    ),
    "codec_answer_with_nothing_in_common": (
        _NO_TRANSCODING,
        {2: _answer_codec_passed_on, 3: _no_transcoding_flag},
    ),
    "errors_sdp_without_media": (_FAILED_OFFER_LEAVES_NOTHING, {2: lambda _: _UNKNOWN_CALL}),
    "list_default_limit_fresh_server": (
        _FAILED_OFFER_LEAVES_NOTHING,
        {
            7: lambda reply: {**reply, "calls": [c for c in reply["calls"] if c != "@CALL3@"]},
            8: lambda _: _NOT_FOUND,
        },
    ),
}


# Sequences Karl does not match yet, each for a stated reason. The marks are strict: a gap that
# closes turns its test red until it is taken off this list.
KNOWN_GAPS: dict[str, str] = {}


def apply_deliberate(reference: Transcript) -> None:
    """Replace rtpengine's (normalised) replies in `reference` by Karl's where Karl differs on purpose;
    fails when a listed step no longer differs (DELIBERATE must then be updated)."""
    entry = DELIBERATE.get(reference.sequence.name)
    if entry is None:
        return
    for index, karl_reply in entry[1].items():
        step = reference.results[index - 1]
        replaced = karl_reply(step.normalised)
        if step.normalised == replaced:
            raise AssertionError(
                f"{reference.sequence.name} step {index}: no longer a difference: update DELIBERATE"
            )
        step.normalised = replaced


def karl_cases(sequences: Iterable[Sequence] = SEQUENCES) -> list[Any]:
    """pytest parameters for comparing Karl with rtpengine: `KNOWN_GAPS` as strict expected failures."""
    return [
        pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_GAPS[s.name], strict=True))
        if s.name in KNOWN_GAPS
        else s
        for s in sequences
    ]
