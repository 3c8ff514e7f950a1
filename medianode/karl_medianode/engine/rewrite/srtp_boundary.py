"""Requests that would need Karl to terminate SRTP, which it cannot do yet (sans-IO).

Karl relays SRTP and DTLS-SRTP end to end: an `RTP/SAVP` offer leaves as `RTP/SAVP` with the caller's
`a=crypto` lines, a DTLS offer with its fingerprint. What it must never do is change the protocol
across the plain ↔ secure boundary without translating the media: an `RTP/SAVP` offer turned into
`RTP/AVP` would hand the caller's key to the callee in the clear and leave both sides unable to talk.
Such a request is refused before anything is built, with an error Kamailio's script can route on.

Crossing the boundary means any of, for an RTP medium:

* the protocol sent on (`transport-protocol`, the bare `RTP/…` flags) is secure and the received one
  plain, or the other way round — in an answer, the protocol going back to the offerer;
* `OSRTP` `offer` on a plain medium (Karl would add its own crypto), or `OSRTP` `accept` for a plain
  medium carrying `a=crypto` (Karl would terminate the opportunistic SRTP);
* `SDES` options (other than turning SDES off) or `DTLS` `passive`/`active` on a secure medium: both
  choose Karl's own keys or DTLS role, i.e. ask it to terminate.

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


def crosses_on_offer(media: InboundMedia, opts: NgOptions) -> bool:
    """Whether relaying this offered medium as asked needs SRTP termination."""
    if not media.is_rtp or media.rejected:
        return False
    secure_in = is_secure(media.protocol)
    wanted = opts.transport_protocol
    secure_out = is_secure(wanted) if wanted is not None and wanted != "accept" else secure_in
    if secure_in != secure_out:
        return True
    if not secure_in:
        if "offer" in opts.osrtp:
            return True
        return "accept" in opts.osrtp and media.has_crypto
    return _asks_for_own_keys(opts)


def crosses_on_answer(media: InboundMedia, offered_protocol: str, opts: NgOptions) -> bool:
    """Whether relaying this answered medium back to the offerer needs SRTP termination."""
    if not media.is_rtp or media.rejected:
        return False
    secure_in = is_secure(media.protocol)
    back = media.protocol if opts.transport_protocol == "accept" else offered_protocol
    if secure_in != is_secure(back):
        return True
    if not secure_in:
        return "offer" in opts.osrtp or ("accept" in opts.osrtp and media.has_crypto)
    return _asks_for_own_keys(opts)


def _asks_for_own_keys(opts: NgOptions) -> bool:
    sdes = set(opts.sdes) - _SDES_OFF
    return bool(sdes or opts.sdes_no) or opts.dtls in ("passive", "active")
