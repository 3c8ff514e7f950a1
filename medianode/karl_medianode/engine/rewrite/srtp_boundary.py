"""Requests that would need Karl to terminate SRTP in a way it cannot do yet (sans-IO).

Karl terminates SDES-SRTP (`a=crypto`, RFC 4568) between a plain and a secure leg: an `RTP/SAVP` offer
with `a=crypto` lines relayed as `RTP/AVP` (Karl answers with its own key), and a plain offer relayed
as `RTP/SAVP` (Karl offers its keys). Between two secure legs it relays SRTP end to end, the crypto
lines untouched. What it must never do is change the protocol across the plain ↔ secure boundary
without translating the media. So these are refused, before anything is built, with an error
Kamailio's script can route on:

* crossing the boundary from a secure offer keyed by neither `a=crypto` nor a usable DTLS offer, or
  SDES carried on a DTLS profile (SDES ↔ DTLS and OSRTP are terminated: `sdes_negotiation`,
  `dtls_negotiation`, `osrtp`);
* on SRTP relayed end to end, `SDES` options (other than turning SDES off) or `DTLS`
  `passive`/`active`, which would have Karl choose keys or a DTLS role; across the boundary, the
  `SDES` session parameters Karl's SRTP library cannot do (`unencrypted_srtp`, `unencrypted_srtcp`,
  `unauthenticated_srtp`) or a DTLS role. `SDES` `no-<suite>`, `pad`, `lifetime`, `off` and `static`
  are applied to Karl's own keys (`sdes_negotiation`).

On plain calls these options are no-ops, as they are in rtpengine.
"""

from __future__ import annotations

from karl_core.ng.options import NgOptions
from karl_medianode.engine.rewrite.inbound import InboundMedia

SRTP_TERMINATION_NOT_SUPPORTED = "SRTP termination not supported by Karl yet"

_SDES_OFF = frozenset({"off"})  # the canonical spelling of off/no/disable


def is_secure(protocol: str) -> bool:
    """SAVP, SAVPF and their UDP/TLS (DTLS-SRTP) forms."""
    return "SAVP" in protocol.upper()


def is_dtls(protocol: str) -> bool:
    return "/TLS/" in protocol.upper()


def crosses_on_offer(media: InboundMedia, opts: NgOptions) -> bool:
    """Whether relaying this offered medium as asked needs SRTP termination Karl cannot do."""
    if not media.is_rtp or media.rejected:
        return False
    secure_in = is_secure(media.protocol)
    wanted = opts.transport_protocol
    protocol_out = wanted if wanted is not None and wanted != "accept" else media.protocol
    secure_out = is_secure(protocol_out)
    if secure_in != secure_out:
        if bool(opts.sdes & _UNSUPPORTED_SDES):
            return True  # session parameters Karl's SRTP library cannot do
        if not secure_in:
            return False  # a plain caller: Karl offers its SDES keys and/or its DTLS fingerprint
        if keyed_by_dtls(media):
            return False  # DTLS terminated by Karl towards the caller
        # SDES termination: Karl's own keys on the secure side; SRTP with neither keys nor a
        # fingerprint cannot be terminated, nor SDES carried on a DTLS profile
        return not media.has_crypto or is_dtls(media.protocol)
    if not secure_in:
        return False  # plain both ways (or OSRTP, which the engine negotiates as a secure profile)
    if keyed_by_dtls(media):
        return False  # DTLS terminated towards the caller, Karl's own keys towards the callee
    if is_dtls(media.protocol):
        return True  # SDES carried on a DTLS profile
    if is_dtls(protocol_out):
        return not media.has_crypto  # SDES ↔ DTLS: both terminated
    return _asks_for_own_keys(opts)


def crosses_on_answer(
    media: InboundMedia, offered_protocol: str, opts: NgOptions, sdes: bool, dtls: bool = False
) -> bool:
    """Whether relaying this answered medium back to the offerer needs SRTP termination Karl cannot
    do; `sdes`/`dtls`: Karl terminates SDES/DTLS on this medium (the offer crossed the boundary)."""
    if not media.is_rtp or media.rejected:
        return False
    secure_in = is_secure(media.protocol)
    back = media.protocol if opts.transport_protocol == "accept" else offered_protocol
    if secure_in != is_secure(back):
        if dtls and (keyed_by_dtls(media) or not secure_in):
            return False
        return not sdes or _beyond_sdes(media, back)
    if not secure_in:
        return False
    if dtls:
        return False  # Karl terminates DTLS on a leg of this medium: its own keys on each
    return _asks_for_own_keys(opts)


def keyed_by_dtls(media: InboundMedia) -> bool:
    """The party offers DTLS-SRTP Karl can take up: a secure profile, an `a=setup` of actpass,
    active or passive and a fingerprint of a known hash and length (DTLS beats SDES: also with
    `a=crypto` lines)."""
    return (
        is_secure(media.protocol)
        and media.setup in ("actpass", "active", "passive")
        and bool(usable_fingerprints(media))
    )


_DIGEST_LENGTHS = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}


def usable_fingerprints(media: InboundMedia) -> list[str]:
    """The party's fingerprints Karl can check ("<hash> <DIGEST>", upper-case hex): known hash,
    right length (10.5 ignores the others, and a DTLS offer with none)."""
    usable = []
    for value in media.fingerprints:
        name, _, digest = value.partition(" ")
        name = name.lower()
        octets = digest.strip().split(":")
        if _DIGEST_LENGTHS.get(name) != len(octets):
            continue
        if not all(len(octet) == 2 and all(c in "0123456789abcdefABCDEF" for c in octet) for octet in octets):
            continue
        usable.append(f"{name} {digest.strip().upper()}")
    return usable


def _beyond_sdes(media: InboundMedia, other_protocol: str) -> bool:
    """Crossing the boundary needs more than SDES: DTLS on either side, or SRTP without crypto lines."""
    if is_dtls(media.protocol) or is_dtls(other_protocol):
        return True
    return is_secure(media.protocol) and not media.has_crypto


_UNSUPPORTED_SDES = frozenset({"unencrypted_srtp", "unencrypted_srtcp", "unauthenticated_srtp"})


def _asks_for_own_keys(opts: NgOptions) -> bool:
    """On SRTP relayed end to end: options that would have Karl write keys of its own (not built)."""
    sdes = set(opts.sdes) - _SDES_OFF
    return bool(sdes or opts.sdes_no) or opts.dtls in ("passive", "active")
