"""Silence payloads: which codecs rtpengine 10.5 can silence, and that only the payload changes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from karl_medianode.rtp.silence import silence_for, silencer


def rtp(pt: int, payload: bytes, b0: int = 0x80, middle: bytes = b"") -> bytes:
    return struct.pack("!BBHII", b0, pt, 7, 1120, 0xABCD0123) + middle + payload


@pytest.mark.parametrize(("codec", "octet"), [("PCMU", 0xFF), ("PCMA", 0xD5), ("G722", 0xFA), ("pcmu", 0xFF)])
def test_payload_becomes_the_codecs_silence(codec: str, octet: int) -> None:
    silence = silence_for(codec, 8000)
    assert silence is not None
    packet = rtp(0, bytes(range(160)))
    out = silence(packet)
    assert len(out) == len(packet)
    assert out[:12] == packet[:12]
    assert out[12:] == bytes([octet]) * 160


@pytest.mark.parametrize("codec", ["telephone-event", "CN", "L16", "opus", "G729", "speex", "nonsense"])
def test_codecs_without_a_silence_pattern_are_not_silenced(codec: str) -> None:
    assert silence_for(codec, 8000) is None


def test_csrc_extension_and_padding_are_kept() -> None:
    middle = struct.pack("!I", 0x01020304) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\x20\x30\x40"
    payload = b"\x11" * 20 + b"\x00\x00\x03"  # 3 bytes padding
    packet = rtp(0, payload, b0=0x80 | 0x20 | 0x10 | 0x01, middle=middle)
    silence = silence_for("PCMA", 8000)
    assert silence is not None
    out = silence(packet)
    assert out[: 12 + len(middle)] == packet[: 12 + len(middle)]
    assert out[12 + len(middle) : -3] == b"\xd5" * 20
    assert out[-3:] == b"\x00\x00\x03"


def test_non_rtp_and_empty_payloads_pass_unchanged() -> None:
    silence = silence_for("PCMU", 8000)
    assert silence is not None
    for data in (b"", b"\x80", b"hello world", b"\x00" * 40, rtp(0, b"")):
        assert silence(data) == data


def test_stream_silencer_goes_by_payload_type() -> None:
    silence = silencer({0: ("PCMU", 8000), 8: ("PCMA", 8000), 101: ("telephone-event", 8000)})
    assert silence is not None
    assert silence(rtp(0, b"\x01" * 10))[12:] == b"\xff" * 10
    assert silence(rtp(8, b"\x01" * 10))[12:] == b"\xd5" * 10
    event = rtp(101, b"\x05\x0a\x00\xa0")
    assert silence(event) == event
    assert silence(rtp(9, b"\x01" * 4)) == rtp(9, b"\x01" * 4)  # payload type not negotiated
    assert silencer({101: ("telephone-event", 8000), 96: ("opus", 48000)}) is None


@given(st.binary(max_size=120))
def test_silencers_never_raise_and_keep_the_length(data: bytes) -> None:
    for silence in (silence_for("G722", 8000), silencer({0: ("PCMU", 8000), 9: ("G722", 8000)})):
        assert silence is not None
        out = silence(data)
        assert len(out) == len(data)
