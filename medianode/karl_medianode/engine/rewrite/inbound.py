"""Reading a party's SDP: what each `m=` line offers or answers (sans-IO)."""

from __future__ import annotations

from dataclasses import dataclass, field

from karl_core.sdp import (
    RtcpAttribute,
    SdpError,
    SessionDescription,
    parse,
    rtpengine_direction,
    rtpengine_rewrite_error,
    static_payload_type,
    validate_for_rtpengine,
)
from karl_core.sdp.cnumbers import str_to_i
from karl_core.session import Codec, Endpoint

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class InboundMedia:
    """One `m=` line as the sending party wrote it."""

    index: int
    media_type: str
    port: int
    port_count: int | None
    protocol: str
    formats: list[str]
    codecs: list[Codec]
    connection: str | None
    direction: str
    ptime: int | None
    rtcp: Endpoint | None
    rtcp_mux: bool
    mid: str | None
    has_ice: bool
    has_own_connection: bool
    ice_trickle: bool = False
    crypto: list[str] = field(default_factory=list)
    """Its SDES keys: the values of its `a=crypto` lines (also on `RTP/AVP`: opportunistic SRTP)."""
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    """Its ICE credentials (the media's own, else the session's)."""
    candidates: list[str] = field(default_factory=list)
    """The values of its `a=candidate` lines."""
    ice_lite: bool = False
    fingerprints: list[str] = field(default_factory=list)
    """Its DTLS `a=fingerprint` values ("<hash> <digest>"; the media's own, else the session's)."""
    setup: str | None = None
    """Its `a=setup` value (DTLS role: actpass, active, passive, holdconn), lower-case."""

    @property
    def ice_credentials(self) -> tuple[str, str] | None:
        """(ufrag, pwd) when the party is an ICE agent Karl can check with."""
        if self.ice_ufrag and self.ice_pwd:
            return self.ice_ufrag, self.ice_pwd
        return None

    @property
    def has_crypto(self) -> bool:
        return bool(self.crypto)

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.protocol

    @property
    def is_udp(self) -> bool:
        proto = self.protocol.upper()
        return "RTP/" in proto or proto == "UDPTL" or proto.startswith("UDP")

    @property
    def rejected(self) -> bool:
        return self.port == 0

    @property
    def endpoint(self) -> Endpoint | None:
        if self.connection is None:
            return None
        return Endpoint(self.connection, self.port)

    @property
    def send(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def recv(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


@dataclass
class InboundSdp:
    sdp: SessionDescription
    medias: list[InboundMedia] = field(default_factory=list)
    session_connection: str | None = None
    origin_version: str | None = None
    rewrite_error: str | None = None


def _codec_list(formats: list[str], attributes: list[tuple[str, str | None]]) -> list[Codec]:
    rtpmaps: dict[int, Codec] = {}
    fmtps: dict[int, str] = {}
    feedback: dict[int, list[str]] = {}
    for name, value in attributes:
        if value is None:
            continue
        pt_text, _, rest = value.partition(" ")
        if not pt_text.isdigit():
            continue
        pt = int(pt_text)
        if name == "rtpmap":
            parts = rest.strip().split("/")
            if len(parts) >= 2 and parts[1].isdigit():
                channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
                rtpmaps[pt] = Codec(pt, parts[0], int(parts[1]), channels)
        elif name == "fmtp":
            fmtps[pt] = rest
        elif name == "rtcp-fb":
            feedback.setdefault(pt, []).append(rest)
    codecs: list[Codec] = []
    for fmt in formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        codec = rtpmaps.get(pt)
        if codec is None:
            static = static_payload_type(pt)
            # a type rtpengine cannot name is kept with an empty name (it prints "a=rtpmap:<pt> /0")
            codec = (
                Codec(
                    pt, static.encoding, static.clock_rate, static.channels if static.channels > 1 else None
                )
                if static is not None
                else Codec(pt, "", 0)
            )
        else:
            codec = Codec(codec.payload_type, codec.name, codec.clock_rate, codec.channels)
        codec.fmtp = fmtps.get(pt)
        codec.rtcp_fb = feedback.get(pt, [])
        codecs.append(codec)
    return codecs


def read_sdp(text: str) -> InboundSdp:
    """Parse and interpret a party's SDP. Raises SdpError (with rtpengine's reason) when unusable."""
    sdp = parse(text)
    validate_for_rtpengine(sdp)
    result = InboundSdp(sdp, rewrite_error=rtpengine_rewrite_error(sdp))
    if not sdp.sessions:
        return result  # nothing rtpengine reads as SDP (empty, one character, or cut at once)
    session_ice = session_trickle = session_lite = False
    session_ufrag: str | None = None
    session_pwd: str | None = None
    session_fingerprints: list[str] = []
    session_setup: str | None = None
    session = sdp.session  # (`sdp.media` are this session's: rtpengine reads the first one)
    session_names = session.attribute_names()
    for line in session.lines:
        if line.kind == "c":
            result.session_connection = _connection_address(line.value)
        elif line.kind == "o":
            parts = line.value.split()
            if len(parts) >= 3:
                result.origin_version = parts[2]
        elif line.kind == "a" and line.value.startswith(("ice-", "candidate")):
            session_ice = True
            if line.value.startswith("ice-options:") and "trickle" in line.value[12:].split():
                session_trickle = True
            elif line.value.startswith("ice-ufrag:"):
                session_ufrag = line.value[10:].strip()
            elif line.value.startswith("ice-pwd:"):
                session_pwd = line.value[8:].strip()
            elif line.value == "ice-lite":
                session_lite = True
        elif line.kind == "a" and line.value.startswith("fingerprint:"):
            session_fingerprints.append(" ".join(line.value[12:].split()))
        elif line.kind == "a" and line.value.startswith("setup:"):
            session_setup = line.value[6:].strip().lower()
    for index, section in enumerate(sdp.media, start=1):
        m_line = section.media_line  # validated above, so it parses
        port, count = m_line.port, m_line.port_count
        connection: str | None = None
        own_connection = False
        rtcp: tuple[int, str | None] | None = None
        rtcp_mux = False
        mid: str | None = None
        has_ice = session_ice
        trickle = session_trickle
        ufrag, pwd, lite = session_ufrag, session_pwd, session_lite
        attributes: list[tuple[str, str | None]] = []
        for line in section.lines[1:]:
            if line.kind == "c":
                connection = _connection_address(line.value)
                own_connection = True
            elif line.kind == "a":
                name, sep, value = line.value.partition(":")
                attr_value = value if sep else None
                attributes.append((name, attr_value))
                if name == "rtcp" and attr_value is not None:
                    try:
                        parsed = RtcpAttribute.parse(attr_value)
                    except SdpError:
                        pass  # rtpengine ignores an a=rtcp it cannot read
                    else:
                        rtcp = (parsed.port, parsed.address)
                elif name == "rtcp-mux":
                    rtcp_mux = True
                elif name == "mid":
                    mid = attr_value
                elif name.startswith("ice-") or name == "candidate":
                    has_ice = True
                    if name == "ice-options" and attr_value and "trickle" in attr_value.split():
                        trickle = True
                    elif name == "ice-ufrag" and attr_value:
                        ufrag = attr_value.strip()
                    elif name == "ice-pwd" and attr_value:
                        pwd = attr_value.strip()
                    elif name == "ice-lite":
                        lite = True
        if connection is None:
            connection = result.session_connection
        # the direction and a=ptime as `sdp.direction_for` and `section.ptime()` read them, from the
        # attributes collected above instead of another pass over the lines each
        direction = rtpengine_direction({name for name, _ in attributes}, session_names)
        ptime_value = next((value for name, value in attributes if name == "ptime"), None)
        ptime = None if ptime_value is None else str_to_i(ptime_value, 0) or None
        formats = m_line.format_list()
        proto = m_line.proto
        codecs = _codec_list(formats, attributes) if "RTP/" in proto else []
        rtcp_endpoint: Endpoint | None = None
        if rtcp is not None and connection is not None:
            rtcp_endpoint = Endpoint(rtcp[1] or connection, rtcp[0])
        result.medias.append(
            InboundMedia(
                index=index,
                media_type=m_line.media,
                port=port,
                port_count=count,
                protocol=proto,
                formats=formats,
                codecs=codecs,
                connection=connection,
                direction=direction.value,
                ptime=ptime,
                rtcp=rtcp_endpoint,
                rtcp_mux=rtcp_mux,
                mid=mid,
                has_ice=has_ice,
                has_own_connection=own_connection,
                ice_trickle=has_ice and trickle,
                crypto=[value for name, value in attributes if name == "crypto" and value is not None],
                fingerprints=[
                    " ".join(value.split()) for name, value in attributes if name == "fingerprint" and value
                ]
                or session_fingerprints,
                setup=next(
                    (value.strip().lower() for name, value in attributes if name == "setup" and value),
                    session_setup,
                ),
                ice_ufrag=ufrag,
                ice_pwd=pwd,
                candidates=[value for name, value in attributes if name == "candidate" and value is not None],
                ice_lite=lite,
            )
        )
    return result


def _connection_address(value: str) -> str | None:
    parts = value.split()
    if len(parts) < 3:
        return None
    return parts[2].split("/")[0]
