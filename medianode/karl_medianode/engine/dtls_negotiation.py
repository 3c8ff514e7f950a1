"""Which legs Karl terminates DTLS-SRTP on, its `a=setup` roles and `a=fingerprint` lines, as rtpengine
10.5 writes them (sans-IO; probed rules in docs/compatibility.md).

Karl terminates DTLS on every leg that keys SRTP with it, as 10.5 does; it never passes a party's
fingerprint on:

- towards an offerer whose offer carries a usable DTLS offer (`a=setup` actpass/active/passive and an
  `a=fingerprint` of a known hash and length) on a secure profile: Karl answers with its own
  fingerprint, as the DTLS client (`a=setup:active`) unless the offerer insists on being it, or
  `DTLS=passive` (answer) / `DTLS-reverse=passive` (offer) ask Karl to wait. DTLS beats SDES: an
  offer carrying both is answered with DTLS and no `a=crypto`;
- towards an answerer offered a secure profile (`UDP/TLS/RTP/SAVP(F)`, `RTP/SAVP(F)`) unless
  `DTLS=off`: Karl offers `a=setup:actpass` and its fingerprint (next to its SDES lines); the
  answer decides the roles, or picks SDES instead.
"""

from __future__ import annotations

from karl_core.ng.options import NgOptions
from karl_core.session import MediaState
from karl_medianode.dtls.certificate import DEFAULT_HASH, HASHES
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.engine.rewrite.srtp_boundary import is_dtls, is_secure, usable_fingerprints
from karl_medianode.engine.sdes_negotiation import NO_KEY

ACTIVE, PASSIVE, ACTPASS = "active", "passive", "actpass"
REVERSE_PASSIVE = "dtls-reverse-passive"
DECLINED = "dtls-declined"
"""Media flag: the party answered Karl's DTLS offer without DTLS; 10.5 offers it no DTLS again."""
OSRTP = "osrtp"  # (engine.osrtp's media flag: an opportunistic leg)
"""Media flag: the offer asked Karl to answer as the DTLS server (`DTLS-reverse=passive`)."""


def speaks_dtls(media_in: InboundMedia) -> bool:
    """The party offers (or answers) DTLS-SRTP Karl can take up."""
    return (
        media_in.is_rtp
        and not media_in.rejected
        and is_secure(media_in.protocol)
        and bool(usable_fingerprints(media_in))
        and media_in.setup in (ACTPASS, ACTIVE, PASSIVE)
    )


def terminates(media: MediaState) -> bool:
    """Karl terminates DTLS on this party's leg (or offers to, or will answer it with DTLS)."""
    return media.dtls_setup is not None or bool(media.dtls_fingerprints)


def _hash_for(opts: NgOptions) -> str:
    wanted = (opts.dtls_fingerprint or "").lower()
    return wanted if wanted in HASHES else DEFAULT_HASH


def _take_party(media: MediaState, media_in: InboundMedia) -> None:
    """The party's fingerprints and role; new fingerprints mean a new handshake (new keys)."""
    fingerprints = usable_fingerprints(media_in)
    if media.dtls_fingerprints != fingerprints:
        media.dtls_keys, media.dtls_rtcp_keys = [], []
    media.dtls_fingerprints = fingerprints
    media.dtls_remote_setup = media_in.setup


def stop(media: MediaState) -> None:
    """No DTLS on this party's leg (any more)."""
    _stop(media)


def _stop(media: MediaState) -> None:
    media.dtls_setup = media.dtls_hash = media.dtls_remote_setup = None
    media.dtls_fingerprints, media.dtls_keys, media.dtls_rtcp_keys = [], [], []
    media.flags.discard(REVERSE_PASSIVE)


def on_offer(
    offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions, protocol_out: str
) -> bool:
    """An offer from `offerer`'s party relayed with `protocol_out`: whether Karl offers DTLS to the
    answerer. The offerer's side is settled by the answer (`on_answer`)."""
    offerer_dtls = speaks_dtls(media_in)
    if offerer_dtls:
        _take_party(offerer, media_in)
        offerer.flags.discard(REVERSE_PASSIVE)
        if opts.dtls_reverse == PASSIVE:
            offerer.flags.add(REVERSE_PASSIVE)
    else:
        _stop(offerer)
    # an SDES offerer keeps DTLS from the answerer, unless the answerer gets a DTLS profile (SDES ↔ DTLS
    # terminated) or an OSRTP offer (Karl's fingerprint next to the keys, as 10.5 writes it)
    keyed_by_sdes = (
        is_secure(media_in.protocol)
        and media_in.has_crypto
        and not offerer_dtls
        and not is_dtls(protocol_out)
        and OSRTP not in answerer.flags
    )
    declined = DECLINED in answerer.flags and not is_dtls(protocol_out)
    if (
        not media_in.is_rtp
        or media_in.rejected
        or opts.dtls == "off"
        or keyed_by_sdes
        or declined
        or not is_secure(protocol_out)
    ):
        _stop(answerer)
        return False
    if answerer.dtls_setup not in (ACTIVE, PASSIVE):
        # (every offer says actpass, whatever the flags; a role settled before stays Karl's until
        # the answer, so that a handshake running or done is not dropped by a re-offer)
        answerer.dtls_setup = ACTPASS
    answerer.dtls_hash = answerer.dtls_hash or _hash_for(opts)  # kept on re-offers
    return True


def on_answer(offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions) -> bool:
    """An answer from `answerer`'s party: whether Karl's answer to the offerer carries its DTLS lines."""
    if answerer.dtls_setup is not None:
        if speaks_dtls(media_in) and not media_in.has_crypto:
            _take_party(answerer, media_in)
            # the answerer took a role; Karl takes the other (actpass, invalid in an answer: active)
            answerer.dtls_setup = PASSIVE if media_in.setup == ACTIVE else ACTIVE
        else:
            _stop(answerer)  # plain, or SDES picked instead
            answerer.flags.add(DECLINED)
    if not offerer.dtls_fingerprints:
        _stop(offerer)
        offerer.flags.add(DECLINED)  # (an offer without DTLS, answered: no DTLS in re-offers to it)
        return False
    remote = offerer.dtls_remote_setup
    if remote == ACTIVE:
        offerer.dtls_setup = PASSIVE
    elif remote == PASSIVE:
        offerer.dtls_setup = ACTIVE
    elif opts.dtls == PASSIVE:
        offerer.dtls_setup = PASSIVE
    elif offerer.dtls_setup in (ACTIVE, PASSIVE):
        # a re-offer of a leg whose roles were settled: Karl keeps its role, as 10.5 does (also before
        # the handshake is done; a browser refuses a switch), unless this answer says `DTLS=passive`
        pass
    elif REVERSE_PASSIVE in offerer.flags:
        offerer.dtls_setup = PASSIVE
    else:
        offerer.dtls_setup = ACTIVE
    # the hash of the party's first fingerprint (10.5 ignores DTLS-fingerprint in answers)
    offerer.dtls_hash = offerer.dtls_fingerprints[0].split(" ", 1)[0]
    return True


def sdp_lines(media: MediaState, fingerprint_of: dict[str, str], *, offering: bool) -> list[str]:
    """Karl's `a=setup` and `a=fingerprint` lines for `media`'s party (none if Karl does no DTLS
    there): `actpass` in an offer, Karl's role in an answer; `fingerprint_of` maps hash names to
    Karl's certificate digests."""
    if media.dtls_setup is None:
        return []
    hash_name = media.dtls_hash or DEFAULT_HASH
    setup = ACTPASS if offering else media.dtls_setup
    return [f"a=setup:{setup}", f"a=fingerprint:{hash_name} {fingerprint_of[hash_name]}"]


def karl_is_client(media: MediaState) -> bool | None:
    """Karl's DTLS role on this leg once settled: True (client), False (server), None (not yet)."""
    if media.dtls_setup == ACTIVE:
        return True
    if media.dtls_setup == PASSIVE:
        return False
    return None


def fingerprints(media: MediaState) -> list[tuple[str, str]]:
    return [tuple(value.split(" ", 1)) for value in media.dtls_fingerprints if " " in value]  # type: ignore[misc]


def leg_keys(media: MediaState) -> tuple[str, str] | None:
    """(Karl's key, the party's key) as `a=crypto` values where Karl terminates DTLS on this leg once
    the handshake is done; `NO_KEY` until then (nothing passes); None where it does not. A leg that
    offered SDES next to DTLS and has not answered yet is left to SDES."""
    if not terminates(media):
        return None
    if len(media.dtls_keys) == 2:
        return media.dtls_keys[0], media.dtls_keys[1]
    if media.dtls_setup == ACTPASS and (media.sdes_ours or media.sdes_pending):
        return None
    return NO_KEY
