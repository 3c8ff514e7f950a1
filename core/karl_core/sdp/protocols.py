"""Transport protocols of m= lines."""

from __future__ import annotations

# The m= protocols rtpengine 10.5 treats as RTP (probed: a non-numeric format list is rejected
# with "Incomplete SDP specification" exactly for these, compared case-insensitively). Others such
# as UDPTL, TCP/MSRP, UDP/DTLS/SCTP, TCP/RTP/AVP or RTP/AVPX are passed through unchecked.
RTP_PROTOCOLS = frozenset(
    {"RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"}
)


def is_rtp_protocol(proto: str) -> bool:
    """True if `proto` (an m= protocol token) is RTP in rtpengine's eyes."""
    # isascii(): str.upper() maps some non-ASCII letters onto ASCII ones (U+017F long s -> "S"); C does not.
    return proto.isascii() and proto.upper() in RTP_PROTOCOLS
