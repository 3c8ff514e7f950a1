"""Silence payloads for the NG `silence media` command, sans-IO.

rtpengine 10.5 silences a packet by overwriting its RTP payload (after header, CSRC list and extension,
before padding) with the codec's silence pattern, leaving header and length alone. Only three codecs in
its codec table carry such a pattern: PCMU (0xFF), PCMA (0xD5) and G722 (0xFA). Every other payload type
— telephone-event, comfort noise, L16, Opus, anything unknown — and every datagram that is not RTP is
forwarded unchanged while the media is silenced. Codec names match case-insensitively and the clock rate
plays no part, as in rtpengine's lookup by encoding name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from karl_medianode.rtp.packet import RTP_HEADER_SIZE, RtpError, rtp_header

Silencer = Callable[[bytes], bytes]

SILENCE_PATTERNS: Mapping[str, bytes] = {
    "PCMU": b"\xff",  # mu-law code of a zero sample
    "PCMA": b"\xd5",  # A-law code of a zero sample (even-bit inverted)
    "G722": b"\xfa",  # the octet rtpengine uses for a G.722 silence frame
}


_FILLER_CACHE_LIMIT = 32


def _replace_payload(data: bytes, pattern: bytes, fillers: dict[int, bytes]) -> bytes:
    length = len(data)
    if length < RTP_HEADER_SIZE or data[0] & 0xC0 != 0x80:
        return data  # not RTP: rtpengine passes it unchanged
    if data[0] & 0x3F == 0:
        start, end = RTP_HEADER_SIZE, length  # no padding, extension or CSRC: the usual packet
    else:
        try:
            header = rtp_header(data)
        except RtpError:
            return data
        start, end = header.payload_span(length)
    size = end - start
    if size <= 0:
        return data
    filler = fillers.get(size)
    if filler is None:
        filler = (pattern * (size // len(pattern) + 1))[:size]
        if len(fillers) < _FILLER_CACHE_LIMIT:
            fillers[size] = filler
    return data[:start] + filler + data[end:]


def silence_for(encoding_name: str, clock_rate: int) -> Silencer | None:
    """A function replacing an RTP packet's payload by `encoding_name`'s silence, or None if rtpengine
    10.5 has no silence for that codec (the packet then passes unchanged). `clock_rate` is accepted for
    the caller's convenience and not used: rtpengine picks the pattern by name alone."""
    del clock_rate
    pattern = SILENCE_PATTERNS.get(encoding_name.upper())
    if pattern is None:
        return None

    fillers: dict[int, bytes] = {}

    def silence(data: bytes) -> bytes:
        return _replace_payload(data, pattern, fillers)

    return silence


def silencer(payload_types: Mapping[int, tuple[str, int]]) -> Silencer | None:
    """One function for a whole stream: each packet is silenced according to its own payload type.

    `payload_types` maps RTP payload type → (encoding name, clock rate), as negotiated in the SDP. Packets
    of payload types without a silence pattern (e.g. telephone-event next to PCMU) and non-RTP datagrams
    pass unchanged. Returns None when no payload type can be silenced at all.
    """
    patterns: dict[int, bytes] = {}
    for payload_type, (name, _rate) in payload_types.items():
        pattern = SILENCE_PATTERNS.get(name.upper())
        if pattern is not None:
            patterns[payload_type] = pattern
    if not patterns:
        return None

    fillers: dict[bytes, dict[int, bytes]] = {pattern: {} for pattern in patterns.values()}

    def silence(data: bytes) -> bytes:
        if len(data) < 2:
            return data
        pattern = patterns.get(data[1] & 0x7F)
        if pattern is None:
            return data
        return _replace_payload(data, pattern, fillers[pattern])

    return silence
