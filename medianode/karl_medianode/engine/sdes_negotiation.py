"""SDES-SRTP (RFC 4568) terminated by Karl between a plain and a secure leg, in offer and answer, as
rtpengine 10.5 does it (sans-IO; keys come from the `key_source` the engine is given).

- A secure offer (`RTP/SAVP` with `a=crypto` lines) relayed as plain: the offerer's lines are kept on
  its media; the plain answerer sees none. The answer to the offerer carries one line: the first of
  the offerer's suites Karl can do, with the offerer's tag and a key of Karl's.
- A plain offer relayed as secure: Karl offers one line per suite it can do, in rtpengine's order,
  tagged 1, 2, ... as 10.5 tags its list (Karl's offer is 10.5's with `SDES-no-` for each suite Karl
  cannot do). The answerer picks one; its line is kept, and the answer to the plain offerer has none.

rtpengine's `SDES` options: `no-<suite>` leaves a suite out (of Karl's offer, and of the offerer's
suites Karl accepts), `pad` keeps the base64 padding of Karl's keys, `lifetime` adds `|2^31`, `off`
offers no key at all; `static` and `only-<suite>` change nothing here, as in 10.5.

Karl's keys for a party are kept across re-offers (the same line, the same key), as 10.5 keeps them.
A media's active pair is Karl's and the party's line with the agreed tag (`MediaState.sdes_tag`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from karl_core.ng.options import NgOptions
from karl_core.sdp.sdes import (
    SUITES,
    UNSUPPORTED_PARAMS,
    CryptoAttribute,
    SdesError,
    SrtpSuite,
    format_crypto,
    new_crypto,
    parse_crypto,
)
from karl_core.session import MediaState
from karl_medianode.engine.osrtp import offered_without_keys, opportunistic
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.engine.rewrite.srtp_boundary import is_dtls, is_secure

KeySource = Callable[[int], bytes]
RENEWED = "sdes-renewed"
"""Media flag: Karl re-offered the party its agreed line and new keys for the rest; an answer clears it
(the next re-offer renews them again, as 10.5 does)."""
MAX_LINES = 32
"""`a=crypto` lines of one offer kept (rtpengine's own offer has 12)."""


def _sdes_protocol(protocol: str) -> bool:
    return is_secure(protocol) and not is_dtls(protocol)


def _parsed(value: str) -> CryptoAttribute | None:
    try:
        return parse_crypto(value)
    except SdesError:
        return None


def _supported(attribute: CryptoAttribute | None) -> bool:
    """A line Karl's SRTP library can key: a suite it does, no session parameter it lacks."""
    if attribute is None or isinstance(attribute.suite, str) or not attribute.suite.supported:
        return False
    return not any(attribute.has_param(p) for p in UNSUPPORTED_PARAMS)


@dataclass(frozen=True)
class SdesChoices:
    """What a request's `SDES` options ask of Karl's keys."""

    excluded: frozenset[str] = frozenset()
    pad: bool = False
    lifetime: bool = False
    off: bool = False

    @classmethod
    def of(cls, opts: NgOptions) -> SdesChoices:
        return cls(frozenset(opts.sdes_no), "pad" in opts.sdes, "lifetime" in opts.sdes, "off" in opts.sdes)

    def allows(self, attribute: CryptoAttribute) -> bool:
        return _supported(attribute) and attribute.suite_name.upper() not in self.excluded

    def line(self, tag: int, suite: SrtpSuite, key_source: KeySource) -> str:
        attribute = new_crypto(tag, suite, key_source)
        if self.lifetime:
            attribute.lifetime = "2^31"
        return format_crypto(attribute, pad=self.pad)


def clear(media: MediaState) -> None:
    media.sdes_ours, media.sdes_theirs, media.sdes_pending, media.sdes_tag = [], [], [], None


def refuse(media: MediaState) -> None:
    """The party answered Karl's lines plain: none is agreed; a re-offer repeats them (10.5)."""
    refused = media.sdes_ours or media.sdes_refused
    clear(media)
    media.sdes_refused = list(refused)


def terminates(media: MediaState) -> bool:
    """Karl terminates SDES on this party's leg, or is negotiating it (keys agreed or on offer)."""
    return media.sdes_tag is not None or bool(media.sdes_pending) or bool(media.sdes_ours)


def karl_offer(
    existing: list[str], key_source: KeySource, choices: SdesChoices, media: MediaState | None = None
) -> list[str]:
    """Karl's lines offered to a party, as 10.5 writes them:
    - after the party agreed on one of them: that line (its tag, its key) first, then the other suites
      tagged on from it, each under a new key (new again at every re-offer);
    - after it answered plain: the lines it refused, again;
    - before any answer: those offered before (the same keys);
    - else one per suite Karl can do and the options leave in, tagged 1, 2, ... in rtpengine's order."""
    if choices.off:
        return existing
    keys = active_keys(media) if media is not None else None
    if keys is not None and media is not None and RENEWED in media.flags and existing:
        return existing  # re-offered already and not answered since: the same keys
    if keys is not None and media is not None:
        media.flags.add(RENEWED)
        agreed = _parsed(keys[0])
        if agreed is not None:
            others = [
                s
                for s in SUITES
                if s.supported and s.name not in choices.excluded and s.name != _suite_name(agreed)
            ]
            return [keys[0]] + [
                choices.line(agreed.tag + 1 + i, suite, key_source) for i, suite in enumerate(others)
            ]
    if existing:
        return existing
    if media is not None and media.sdes_refused:
        return list(media.sdes_refused)
    suites = [s for s in SUITES if s.supported and s.name not in choices.excluded]
    return [choices.line(tag, suite, key_source) for tag, suite in enumerate(suites, start=1)]


def karl_extras(
    existing: list[str], theirs: list[str], key_source: KeySource, choices: SdesChoices
) -> list[str]:
    """Karl's lines offered next to an SRTP offerer's own (as 10.5 does): one per suite Karl can do
    that the offerer did not offer, tagged on from the offerer's last tag; those offered before if
    they still fit (the same keys on a re-offer)."""
    parsed = [a for a in map(_parsed, theirs) if a is not None]
    offered = {a.suite_name.upper() for a in parsed}
    first = max((a.tag for a in parsed), default=0) + 1
    kept = [a for a in map(_parsed, existing) if a is not None]
    if kept and all(a.tag >= first and a.suite_name.upper() not in offered for a in kept):
        return existing
    suites = [s for s in SUITES if s.supported and s.name not in offered and s.name not in choices.excluded]
    return [choices.line(first + index, suite, key_source) for index, suite in enumerate(suites)]


def dtls_only(media: MediaState) -> bool:
    """The party offered DTLS-SRTP without `a=crypto` lines (a browser calling): 10.5 offers it no SDES
    keys next to its DTLS from then on. (A party that answered DTLS to Karl's keys and fingerprint is
    offered the keys it refused again, see `karl_offer`.)"""
    return (
        bool(media.dtls_fingerprints)
        and not media.sdes_theirs
        and not media.sdes_pending
        and not media.sdes_refused
    )


def usable_offer(crypto: list[str], choices: SdesChoices) -> bool:
    """Whether a secure offer carries a line Karl can terminate (else Karl could answer with no key)."""
    return any((attribute := _parsed(value)) is not None and choices.allows(attribute) for value in crypto)


def _answered(ours: list[str], crypto: list[str]) -> tuple[str, int] | None:
    offered = {a.tag: a for a in map(_parsed, ours) if a is not None}
    for value in crypto:
        chosen = _parsed(value)
        if chosen is None or not _supported(chosen):
            continue
        mine = offered.get(chosen.tag)
        if mine is not None and _suite_name(mine) == _suite_name(chosen):
            return value, chosen.tag
    return None


def on_offer(
    offerer: MediaState,
    answerer: MediaState,
    media_in: InboundMedia,
    key_source: KeySource,
    choices: SdesChoices = SdesChoices(),
    dtls_offerer: bool = False,
) -> list[str] | None:
    """Note an offered medium's SDES state; returns the crypto values for the SDP sent to the answerer
    (None: the received lines pass through, for SRTP relayed end to end or plain media). Keys agreed
    earlier stay in force until the answer: a re-offer that is never answered changes nothing.
    `dtls_offerer`: Karl terminates DTLS towards the offerer (DTLS beats its `a=crypto` lines): for
    SDES it is a plain party."""
    if not media_in.is_rtp or media_in.rejected:
        return None
    answerer.sdes_pending = []  # (lines of an offer it made earlier: answered, or superseded by this one)
    if dtls_offerer:
        clear(offerer)
        offerer.sdes_refused = []  # (its own DTLS offer without keys: no SDES offered to it from now on)
        if not media_in.has_crypto:
            offered_without_keys(offerer)
        if is_secure(answerer.protocol) and not choices.off:
            answerer.sdes_ours = karl_offer(answerer.sdes_ours, key_source, choices, answerer)
            return list(answerer.sdes_ours)
        clear(answerer)
        return []
    secure_in = _sdes_protocol(media_in.protocol) and media_in.has_crypto
    # (a DTLS answerer of an SDES offerer is offered its lines and Karl's next to Karl's fingerprint,
    # as 10.5 does; whichever it answers with, Karl terminates both legs)
    secure_out = is_secure(answerer.protocol)
    if secure_in and secure_out and not choices.off and usable_offer(media_in.crypto, choices):
        # SRTP on both legs, as 10.5: the answerer is offered the offerer's own lines and Karl's for
        # the other suites; its pick decides whose keys are used (see `on_answer`)
        offerer.sdes_pending = [_as_10_5_writes(value) for value in media_in.crypto[:MAX_LINES]]
        # (lines it refused before come again, under the same keys, as 10.5 re-offers them)
        kept = answerer.sdes_ours or answerer.sdes_refused
        answerer.sdes_ours = karl_extras(kept, offerer.sdes_pending, key_source, choices)
        return offerer.sdes_pending + answerer.sdes_ours
    if secure_in and (not secure_out or (choices.off and is_dtls(answerer.protocol))):
        # the offerer's SRTP ends here: its lines wait for the answer; the answerer gets plain RTP
        offerer.sdes_pending = list(media_in.crypto[:MAX_LINES])
        return []
    if is_secure(answerer.protocol) and not is_secure(media_in.protocol) and not dtls_only(answerer):
        # Karl's SRTP towards the answerer (also next to DTLS on a UDP/TLS profile, as 10.5 offers
        # it): its keys offered (the same ones on a re-offer)
        answerer.sdes_ours = karl_offer(answerer.sdes_ours, key_source, choices, answerer)
        offerer.sdes_pending = []
        return list(answerer.sdes_ours)
    clear(offerer)
    clear(answerer)
    return None


def on_answer(
    offerer: MediaState,
    answerer: MediaState,
    media_in: InboundMedia,
    key_source: KeySource,
    choices: SdesChoices = SdesChoices(),
    accept: bool = False,
) -> list[str] | None:
    """Note an answered medium's SDES state; returns the crypto values for the SDP sent back to the
    offerer (None: the received lines pass through). The offer's lines stay until the next offer: a
    second answer to it (200 after 183) is taken the same way, with the same keys. `accept`: the
    answer goes back as it is (`transport-protocol: accept`), Karl terminates nothing."""
    if not media_in.is_rtp or media_in.rejected:
        return None
    if accept:
        clear(offerer)
        clear(answerer)
        return None
    if offerer.sdes_pending and answerer.sdes_ours and is_secure(media_in.protocol) and media_in.has_crypto:
        return _both_secure(offerer, answerer, media_in, key_source, choices)
    if answerer.sdes_ours and not offerer.sdes_pending:
        # Karl offered SDES to the answerer: its choice is one of Karl's tags, with the same suite. A
        # secure answer without one is taken as 10.5 takes it, but no key is agreed: the leg's media
        # is dropped both ways (never relayed in the clear). A plain answer ends SDES on that leg.
        answerer.flags.discard(RENEWED)
        answered = _answered(answerer.sdes_ours, media_in.crypto)
        if answered is not None:
            answerer.sdes_theirs, answerer.sdes_tag = [answered[0]], answered[1]
            answerer.sdes_refused = []
        elif is_secure(media_in.protocol) and media_in.has_crypto:
            answerer.sdes_theirs, answerer.sdes_tag = list(media_in.crypto[:MAX_LINES]), None
        else:
            refuse(answerer)
        return []
    if offerer.sdes_pending:
        # the offerer's SRTP ends here: Karl answers with the first suite of its offer it can do,
        # with the key it gave that tag and suite before, if any
        for value in offerer.sdes_pending:
            theirs = _parsed(value)
            if theirs is None or not choices.allows(theirs):
                continue
            mine = next(
                (
                    line
                    for line in offerer.sdes_ours
                    if (kept := _parsed(line)) is not None
                    and kept.tag == theirs.tag
                    and _suite_name(kept) == _suite_name(theirs)
                ),
                None,
            )
            if mine is None:
                assert not isinstance(theirs.suite, str)
                mine = choices.line(theirs.tag, theirs.suite, key_source)
            offerer.sdes_ours, offerer.sdes_theirs, offerer.sdes_tag = [mine], [value], theirs.tag
            return [mine]
        clear(offerer)  # (the engine refused such an offer: nothing Karl can terminate)
        return []
    if media_in.has_crypto and opportunistic(media_in) and not is_secure(offerer.protocol):
        # keys in a plain answer to a plain offer, which offered none: 10.5 takes them (`SDES` in
        # `query`), answers the offerer plain and offers the answerer SDES in the next offer
        answerer.sdes_theirs, answerer.sdes_tag = list(media_in.crypto[:MAX_LINES]), None
        return []
    return None


def unsolicited_keys(media: MediaState) -> bool:
    """The party answered a plain offer with keys nobody had offered it (see `on_answer`). No key of
    Karl's goes with them, so its leg stays as it was (relayed untouched) until an offer agrees one."""
    return bool(media.sdes_theirs) and media.sdes_tag is None and not media.sdes_ours


def _both_secure(
    offerer: MediaState,
    answerer: MediaState,
    media_in: InboundMedia,
    key_source: KeySource,
    choices: SdesChoices,
) -> list[str] | None:
    """The answer of an SRTP answerer to an SRTP offerer, as 10.5 takes it:
    - it picked one of Karl's lines: Karl terminates both legs; the offerer is answered with its own
      first suite Karl can do, under a key of Karl's;
    - it picked one of the offerer's lines: the offerer is answered with the answerer's line, and each
      side's key is used both ways (Karl decrypts and encrypts with the keys they gave each other);
    - its pick is a suite Karl cannot do: SRTP is relayed end to end, untouched."""
    pending = offerer.sdes_pending
    picked = next((a for a in map(_parsed, media_in.crypto) if a is not None), None)
    if picked is None or not _supported(picked):
        clear(offerer)
        clear(answerer)
        return None
    picked_line = next(v for v in media_in.crypto if (p := _parsed(v)) is not None and p.tag == picked.tag)
    karls = _line_with(answerer.sdes_ours, picked)
    if karls is not None:
        answerer.sdes_theirs, answerer.sdes_tag = [picked_line], picked.tag
        for value in pending:
            theirs = _parsed(value)
            if theirs is None or not choices.allows(theirs):
                continue
            mine = _line_with(offerer.sdes_ours, theirs)
            if mine is None:
                assert not isinstance(theirs.suite, str)
                mine = choices.line(theirs.tag, theirs.suite, key_source)
            offerer.sdes_ours, offerer.sdes_theirs, offerer.sdes_tag = [mine], [value], theirs.tag
            return [mine]
        clear(offerer)  # (an offer without a line Karl can do was relayed end to end: not reached)
        return []
    offerers = _line_with(pending, picked)
    if offerers is None:
        clear(offerer)
        clear(answerer)
        return None  # (none of the lines it was offered: relayed as it is)
    answerer.sdes_ours, answerer.sdes_theirs, answerer.sdes_tag = [offerers], [picked_line], picked.tag
    offerer.sdes_ours, offerer.sdes_theirs, offerer.sdes_tag = [picked_line], [offerers], picked.tag
    return [picked_line]


def _as_10_5_writes(value: str) -> str:
    """An offerer's line as 10.5 hands it on: written anew, without its key lifetime."""
    attribute = _parsed(value)
    if attribute is None:
        return value
    attribute.lifetime = None
    return format_crypto(attribute)


def _line_with(lines: list[str], like: CryptoAttribute) -> str | None:
    """The line of `lines` with `like`'s tag and suite."""
    for line in lines:
        attribute = _parsed(line)
        if (
            attribute is not None
            and attribute.tag == like.tag
            and _suite_name(attribute) == _suite_name(like)
        ):
            return line
    return None


def _suite_name(attribute: CryptoAttribute) -> str:
    suite = attribute.suite
    return suite if isinstance(suite, str) else suite.name


NO_KEY = ("", "")
"""The keys of a leg that must be secure but has none agreed yet: its media is dropped."""


def leg_keys(media: MediaState) -> tuple[str, str] | None:
    """(Karl's line, the party's line) for this party's leg: the agreed pair, `NO_KEY` while SDES is
    being negotiated without one, None for a leg Karl does not terminate SDES on."""
    keys = active_keys(media)
    if keys is not None:
        return keys
    return NO_KEY if terminates(media) else None


def active_keys(media: MediaState) -> tuple[str, str] | None:
    """(Karl's line, the party's line) with the agreed tag: the keys of this party's leg, if Karl
    terminates SDES there."""
    if media.sdes_tag is None:
        return None
    tag = f"{media.sdes_tag} "
    ours = next((line for line in media.sdes_ours if line.startswith(tag)), None)
    theirs = next((line for line in media.sdes_theirs if line.startswith(tag)), None)
    if ours is None or theirs is None:
        return None
    return ours, theirs


def suite_of(media: MediaState) -> str | None:
    """The agreed suite's name (for `query`)."""
    keys = active_keys(media)
    if keys is None:
        return None
    parts = keys[0].split()
    return parts[1] if len(parts) > 1 else None
