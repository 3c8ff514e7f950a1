"""Which legs Karl terminates DTLS-SRTP on, its `a=setup` roles and `a=fingerprint` lines, as rtpengine
10.5 writes them (sans-IO).

Karl terminates DTLS between a DTLS leg and a plain one, both ways:

- a DTLS offer (`UDP/TLS/RTP/SAVP(F)`, or `RTP/SAVP(F)` with a fingerprint and no `a=crypto`) relayed
  to a plain callee: Karl answers the caller with its own fingerprint, as the DTLS client
  (`a=setup:active`) unless the caller insists on being it (`a=setup:active` in the offer);
- a plain offer relayed as `UDP/TLS/RTP/SAVP(F)`, or as `RTP/SAVP(F)` (next to Karl's SDES lines,
  as 10.5 offers both, unless `DTLS=off`): Karl offers `a=setup:actpass` (or the role `DTLS=`
  names) and its fingerprint; the callee's answer decides the roles, or picks SDES instead.

Between two secure legs Karl relays SRTP end to end and the DTLS lines pass through.
"""

from __future__ import annotations

from karl_core.ng.options import NgOptions
from karl_core.session import MediaState
from karl_medianode.dtls.certificate import DEFAULT_HASH, HASHES
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.engine.rewrite.srtp_boundary import is_secure, keyed_by_dtls
from karl_medianode.engine.sdes_negotiation import NO_KEY

ACTIVE, PASSIVE, ACTPASS = "active", "passive", "actpass"


def speaks_dtls(media_in: InboundMedia) -> bool:
    return media_in.is_rtp and not media_in.rejected and keyed_by_dtls(media_in)


def terminates(media: MediaState) -> bool:
    """Karl terminates DTLS on this party's leg (or offers to, or will answer it with DTLS)."""
    return media.dtls_setup is not None or bool(media.dtls_fingerprints)


def _hash_for(opts: NgOptions) -> str:
    wanted = (opts.dtls_fingerprint or "").lower()
    return wanted if wanted in HASHES else DEFAULT_HASH


def _take_party(media: MediaState, media_in: InboundMedia) -> None:
    """The party's fingerprints and role; new fingerprints mean a new handshake (new keys)."""
    if media.dtls_fingerprints != media_in.fingerprints:
        media.dtls_keys = []
    media.dtls_fingerprints = list(media_in.fingerprints)
    media.dtls_remote_setup = media_in.setup


def _stop(media: MediaState) -> None:
    media.dtls_setup = media.dtls_hash = media.dtls_remote_setup = None
    media.dtls_fingerprints, media.dtls_keys = [], []


def on_offer(
    offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions, protocol_out: str
) -> bool:
    """An offer from `offerer`'s party relayed with `protocol_out`: whether Karl offers DTLS to the
    answerer. The offerer's side is settled by the answer (`on_answer`)."""
    if speaks_dtls(media_in) and not is_secure(protocol_out):
        _take_party(offerer, media_in)
    else:
        _stop(offerer)
    offer_dtls = (
        media_in.is_rtp
        and not media_in.rejected
        and opts.dtls != "off"
        and not is_secure(media_in.protocol)
        and is_secure(protocol_out)
    )
    if not offer_dtls:
        _stop(answerer)
        return False
    if answerer.dtls_setup in (None, ACTPASS) or opts.dtls in (ACTIVE, PASSIVE):
        answerer.dtls_setup = opts.dtls if opts.dtls in (ACTIVE, PASSIVE) else ACTPASS
    answerer.dtls_hash = answerer.dtls_hash or _hash_for(opts)
    return True


def on_answer(
    offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions, protocol_back: str
) -> bool:
    """An answer from `answerer`'s party relayed back with `protocol_back`: whether Karl's answer to
    the offerer carries its DTLS lines."""
    if terminates(answerer):
        if media_in.fingerprints and not media_in.crypto:
            _take_party(answerer, media_in)
            # the answerer took a role; Karl takes the other (actpass in an answer is invalid: active)
            answerer.dtls_setup = PASSIVE if media_in.setup == ACTIVE else ACTIVE
        else:
            _stop(answerer)  # plain, or SDES picked instead
    if not offerer.dtls_fingerprints or not is_secure(protocol_back) or is_secure(media_in.protocol):
        if not offerer.dtls_fingerprints:
            _stop(offerer)
        return False
    if opts.dtls in (ACTIVE, PASSIVE):
        offerer.dtls_setup = opts.dtls
    elif offerer.dtls_setup not in (ACTIVE, PASSIVE):
        offerer.dtls_setup = PASSIVE if offerer.dtls_remote_setup == ACTIVE else ACTIVE
    offerer.dtls_hash = offerer.dtls_hash or _hash_for(opts)
    return True


def sdp_lines(media: MediaState, fingerprint_of: dict[str, str]) -> list[str]:
    """Karl's `a=setup` and `a=fingerprint` lines for `media`'s party (none if Karl does no DTLS
    there); `fingerprint_of` maps hash names to Karl's certificate digests."""
    if media.dtls_setup is None:
        return []
    hash_name = media.dtls_hash or DEFAULT_HASH
    return [f"a=setup:{media.dtls_setup}", f"a=fingerprint:{hash_name} {fingerprint_of[hash_name]}"]


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
