"""Sans-IO RTP/RTCP helpers: header parsing, RTP/RTCP demultiplexing, codec silence payloads."""

from karl_medianode.rtp.packet import (
    RTP_HEADER_SIZE,
    RtpError,
    RtpHeader,
    is_rtcp,
    is_rtp,
    rtcp_is_valid,
    rtp_header,
)
from karl_medianode.rtp.silence import SILENCE_PATTERNS, silence_for, silencer

__all__ = [
    "RTP_HEADER_SIZE",
    "SILENCE_PATTERNS",
    "RtpError",
    "RtpHeader",
    "is_rtcp",
    "is_rtp",
    "rtcp_is_valid",
    "rtp_header",
    "silence_for",
    "silencer",
]
