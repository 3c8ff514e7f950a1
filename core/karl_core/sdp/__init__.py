"""Lossless SDP model: parse -> edit -> serialize, byte-exact for everything left untouched.

    sdp = parse(text)                      # never fails; parse(t).serialize() == t
    validate_for_rtpengine(sdp)            # SdpError(reason=<rtpengine 10.5 error text>)
    media = sdp.media[0]
    ml = media.media_line                  # typed view of the m= line
    media.set_media_line(ml.with_port(30000))
    media.remove_attributes("rtcp", "rtcp-mux")
    media.add_attribute("rtcp", "30001")
    out = sdp.serialize()

Lines keep their own endings; generated lines default to CRLF (as rtpengine writes them).
Typed views (Origin, Connection, MediaLine, RtpMap, ...) parse on demand with rtpengine 10.5's
tokenisation, so what they accept and how they read numbers matches the daemon.
"""

from .addresses import IpAddress, parse_address, parse_any_address, parse_network_address
from .blocks import LineBlock, attribute_name
from .candidate import Candidate
from .codec_attributes import Fmtp, RtcpFb, RtpMap
from .connection import Connection
from .direction import Direction, rtpengine_direction
from .dtls import FINGERPRINT_HASHES, SETUP_VALUES, Fingerprint
from .errors import SdpError
from .group import Group
from .lines import CRLF, Attribute, SdpLine, make_line
from .media_line import MediaLine
from .model import MediaSection, Session, SessionDescription
from .origin import Origin
from .parser import parse, parse_bytes, split_lines
from .payload_types import (
    RFC3551_PAYLOAD_TYPES,
    RTPENGINE_PAYLOAD_TYPES,
    StaticPayloadType,
    rtpengine_rtpmap_text,
    static_payload_type,
)
from .protocols import RTP_PROTOCOLS, is_rtp_protocol
from .rtcp_attribute import BAD_RTCP_ADDRESS, BAD_RTCP_PORT, RtcpAttribute
from .validate import (
    ERROR_REWRITING,
    FAILED_TO_PARSE,
    INCOMPLETE_SDP,
    rtpengine_error,
    rtpengine_rewrite_error,
    validate_for_rtpengine,
)

__all__ = [
    "BAD_RTCP_ADDRESS",
    "BAD_RTCP_PORT",
    "CRLF",
    "ERROR_REWRITING",
    "FAILED_TO_PARSE",
    "FINGERPRINT_HASHES",
    "INCOMPLETE_SDP",
    "RFC3551_PAYLOAD_TYPES",
    "RTPENGINE_PAYLOAD_TYPES",
    "RTP_PROTOCOLS",
    "SETUP_VALUES",
    "Attribute",
    "Candidate",
    "Connection",
    "Direction",
    "Fingerprint",
    "Fmtp",
    "Group",
    "IpAddress",
    "LineBlock",
    "MediaLine",
    "MediaSection",
    "Origin",
    "RtcpAttribute",
    "RtcpFb",
    "RtpMap",
    "SdpError",
    "SdpLine",
    "Session",
    "SessionDescription",
    "StaticPayloadType",
    "attribute_name",
    "is_rtp_protocol",
    "make_line",
    "parse",
    "parse_address",
    "parse_any_address",
    "parse_bytes",
    "parse_network_address",
    "rtpengine_direction",
    "rtpengine_error",
    "rtpengine_rewrite_error",
    "rtpengine_rtpmap_text",
    "split_lines",
    "static_payload_type",
    "validate_for_rtpengine",
]
