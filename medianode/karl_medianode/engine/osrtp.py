"""Opportunistic SRTP (RFC 8643, rtpengine's `OSRTP` option) as 10.5 does it (sans-IO).

An `RTP/AVP` or `RTP/AVPF` medium that carries `a=crypto` or `a=fingerprint` lines is an OSRTP offer,
whatever the options say: inside, Karl treats it as the secure profile (`RTP/SAVP(F)`: SDES and DTLS
negotiated as for any secure party) and writes the plain profile back to that party (the `OSRTP`
media flag). `OSRTP=offer` makes a plain medium towards the answerer such an offer (Karl's keys and
fingerprint under `RTP/AVP`). An answerer that answers an OSRTP offer plain refuses it: its leg is
plain; the offerer's leg too, unless `OSRTP=accept` keeps Karl's SRTP towards an opportunistic
offerer. 10.5 knows no other `OSRTP` values (`offer-RFC` and the like are ignored, as there).
"""

from __future__ import annotations

from dataclasses import replace

from karl_core.session import MediaState
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.engine.rewrite.srtp_boundary import is_secure

OSRTP = "osrtp"
"""Media flag: Karl speaks SRTP with this party under the plain profile it wrote (or was offered)."""

_SECURE = {"RTP/AVP": "RTP/SAVP", "RTP/AVPF": "RTP/SAVPF"}
_PLAIN = {secure: plain for plain, secure in _SECURE.items()}


def opportunistic(media_in: InboundMedia) -> bool:
    """A plain RTP profile carrying SRTP keys or a DTLS fingerprint: an OSRTP offer (or the answer
    that takes one up)."""
    return (
        media_in.is_rtp
        and not media_in.rejected
        and media_in.protocol.upper() in _SECURE
        and (bool(media_in.crypto) or bool(media_in.fingerprints))
    )


def secure_view(media_in: InboundMedia) -> InboundMedia:
    """The medium as Karl negotiates it: an opportunistic one under its secure profile."""
    if not opportunistic(media_in):
        return media_in
    return replace(media_in, protocol=_SECURE[media_in.protocol.upper()])


def make_opportunistic(media: MediaState) -> None:
    """`OSRTP=offer` on a plain medium towards the answerer: secure inside, written plain."""
    if not is_secure(media.protocol) and media.protocol.upper() in _SECURE:
        media.protocol = _SECURE[media.protocol.upper()]
        media.flags.add(OSRTP)


def written(protocol: str, media: MediaState) -> str:
    """The profile written in the SDP for `media`'s party: plain where SRTP with it is opportunistic."""
    if OSRTP in media.flags:
        return _PLAIN.get(protocol.upper(), protocol)
    return protocol


REFUSED_SUITE = "osrtp-refused:"
"""Media flag prefix: the party refused an OSRTP offer whose first line had this suite (10.5's
`query` goes on showing `SDES` and that suite for it)."""


SUITE_ONLY = "osrtp-refused-suite-only"
"""Media flag: after refusing keys, the party offered DTLS without keys itself: 10.5 shows no `SDES`
on its media any more but goes on showing the refused suite on its streams."""


def offered_without_keys(media: MediaState) -> None:
    """The party's own offer carried DTLS and no `a=crypto` (see `SUITE_ONLY`)."""
    if refused_suite(media) is not None:
        media.flags.add(SUITE_ONLY)


def shows_sdes(media: MediaState) -> bool:
    """`query`'s `SDES` flag for a party that refused keys."""
    return refused_suite(media) is not None and SUITE_ONLY not in media.flags


def refused(media: MediaState, first_offered: list[str] | None = None) -> None:
    """The party answered an OSRTP offer plain: plain on its leg from now on. `first_offered`: the
    `a=crypto` values it was offered (their first suite is what `query` shows, as in 10.5)."""
    if OSRTP in media.flags:
        media.flags.discard(OSRTP)
        media.protocol = _PLAIN.get(media.protocol.upper(), media.protocol)
    forget_refusal(media)
    parts = first_offered[0].split() if first_offered else []
    if len(parts) > 1:
        media.flags.add(REFUSED_SUITE + parts[1])


def forget_refusal(media: MediaState) -> None:
    media.flags -= {flag for flag in media.flags if flag.startswith(REFUSED_SUITE)}
    media.flags.discard(SUITE_ONLY)


def refused_suite(media: MediaState) -> str | None:
    """The first suite of an OSRTP offer the party refused (for `query`), if it did."""
    for flag in media.flags:
        if flag.startswith(REFUSED_SUITE):
            return flag[len(REFUSED_SUITE) :]
    return None
