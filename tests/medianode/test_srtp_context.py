"""The SRTP/SRTCP transform of one stream direction (libsrtp through pylibsrtp), keyed by an a=crypto."""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest

from karl_core.sdp.sdes import (
    SUITES,
    CryptoAttribute,
    Mki,
    SrtpSuite,
    new_crypto,
    parse_crypto,
    suite_by_name,
)
from karl_medianode.dataplane.srtp_context import PROFILES, SrtpContext, SrtpError, SrtpErrorKind

SUPPORTED = [suite for suite in SUITES if suite.supported]
UNSUPPORTED = [suite for suite in SUITES if not suite.supported]


def rtp(seq: int = 1, ssrc: int = 0xCAFEBABE, payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, ssrc) + payload


def rtcp(ssrc: int = 0xCAFEBABE) -> bytes:
    """A receiver report with one report block."""
    return struct.pack("!BBHI", 0x81, 201, 7, ssrc) + struct.pack("!IIIIII", 0x12345678, 1, 2, 3, 4, 5)


def crypto(suite: SrtpSuite, params: str = "") -> CryptoAttribute:
    attr = new_crypto(1, suite, os.urandom)
    attr.session_params.extend(params.split())
    return attr


def plain_session(attr: CryptoAttribute, sending: bool) -> pylibsrtp.Session:
    """A pylibsrtp session set up the documented way, independently of SrtpContext."""
    policy = pylibsrtp.Policy(
        key=attr.key_salt,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if sending else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=PROFILES[attr.suite_name],
    )
    return pylibsrtp.Session(policy)


def test_backend_profiles_are_the_supported_suites() -> None:
    assert set(PROFILES) == {suite.name for suite in SUPPORTED}


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_round_trip_rtp_and_rtcp(suite: SrtpSuite) -> None:
    attr = crypto(suite)
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    assert tx.suite is suite and tx.sending and not rx.sending
    for seq in (1, 2, 3, 30000, 60000, 65535, 0, 1):  # across the sequence number wrap
        packet = rtp(seq)
        protected = tx.protect(packet)
        assert len(protected) == len(packet) + suite.srtp_tag_length
        assert protected[:12] == packet[:12]
        assert protected[12:172] != packet[12:]
        assert rx.unprotect(protected) == packet
    for _ in range(3):
        report = rtcp()
        protected = tx.protect_rtcp(report)
        assert len(protected) == len(report) + 4 + suite.srtcp_tag_length  # E flag + index, then the tag
        assert rx.unprotect_rtcp(protected) == report


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_one_context_serves_any_ssrc(suite: SrtpSuite) -> None:
    attr = crypto(suite)
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    for ssrc in (1, 0xFFFFFFFF, 0x12345678):
        assert rx.unprotect(tx.protect(rtp(100, ssrc))) == rtp(100, ssrc)  # same seq, own replay window each
        assert rx.unprotect_rtcp(tx.protect_rtcp(rtcp(ssrc))) == rtcp(ssrc)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", UNSUPPORTED, ids=lambda suite: suite.name)
def test_unsupported_suites_are_refused(suite: SrtpSuite) -> None:
    for make in (SrtpContext.for_sending, SrtpContext.for_receiving):
        with pytest.raises(SrtpError, match=f"crypto suite {suite.name} not supported") as caught:
            make(crypto(suite))
        assert caught.value.kind is SrtpErrorKind.UNSUPPORTED


def test_unknown_suite_is_refused() -> None:
    attr = parse_crypto("1 SEED_CTR_128_HMAC_SHA1_80 inline:AAECAwQF")
    with pytest.raises(SrtpError, match="unknown crypto suite 'SEED_CTR_128_HMAC_SHA1_80'") as caught:
        SrtpContext.for_receiving(attr)
    assert caught.value.kind is SrtpErrorKind.UNSUPPORTED


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP"),
        ("UNENCRYPTED_SRTCP", "UNENCRYPTED_SRTCP"),
        ("WSH=64 UNAUTHENTICATED_SRTP", "UNAUTHENTICATED_SRTP"),
        ("KDR=4", "KDR"),
    ],
)
def test_session_params_libsrtp_cannot_honour_are_refused(params: str, refused: str) -> None:
    attr = crypto(SUPPORTED[0], params)
    for make in (SrtpContext.for_sending, SrtpContext.for_receiving):
        with pytest.raises(SrtpError, match=f"session parameter {refused} not supported") as caught:
            make(attr)
        assert caught.value.kind is SrtpErrorKind.UNSUPPORTED


def test_advisory_session_params_and_lifetime_are_ignored() -> None:
    attr = crypto(SUPPORTED[0], "WSH=256 FEC_ORDER=FEC_SRTP FEC_KEY=inline:AAAA NEW_PARAM")
    attr.lifetime = "2^31"
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    assert rx.unprotect(tx.protect(rtp())) == rtp()


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_a_context_whose_line_has_an_mki_sends_it(suite: SrtpSuite) -> None:
    """Karl sends under a peer's line (its keys used both ways): the line's MKI goes into each packet,
    where a sender without one would have the tag, and the packet is otherwise what libsrtp makes."""
    attr = crypto(suite)
    plain_tx = SrtpContext.for_sending(attr)
    attr.mki = Mki(7, 2)
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    rtp_tag = 0 if suite.aead else suite.srtp_tag_length
    assert tx.protect(rtp(5)) == _with_mki(plain_tx.protect(rtp(5)), rtp_tag, b"\x00\x07")
    assert rx.unprotect(tx.protect(rtp(6))) == rtp(6)
    assert rx.unprotect_rtcp(tx.protect_rtcp(rtcp())) == rtcp()


def _with_mki(packet: bytes, tag_length: int, mki: bytes) -> bytes:
    """What a sender with an MKI puts on the wire: the MKI right before the tag (at the end with GCM)."""
    end = len(packet) - tag_length
    return packet[:end] + mki + packet[end:]


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_a_peers_mki_is_taken_out_before_unprotecting(suite: SrtpSuite) -> None:
    """libsrtp through pylibsrtp cannot send an MKI; the packets of a peer whose a=crypto has one are
    made here by inserting it where RFC 3711 / RFC 7714 put it (it is not authenticated)."""
    attr = crypto(suite)
    tx = SrtpContext.for_sending(attr)
    attr.mki = Mki(1, 4)
    rx = SrtpContext.for_receiving(attr)
    mki = b"\x00\x00\x00\x01"
    rtp_tag = 0 if suite.aead else suite.srtp_tag_length
    rtcp_tag = 0 if suite.aead else suite.srtcp_tag_length
    for seq in range(1, 4):
        assert rx.unprotect(_with_mki(tx.protect(rtp(seq)), rtp_tag, mki)) == rtp(seq)
    assert rx.unprotect_rtcp(_with_mki(tx.protect_rtcp(rtcp()), rtcp_tag, mki)) == rtcp()
    with pytest.raises(SrtpError) as caught:  # without the MKI the packet is not what the line says
        rx.unprotect(tx.protect(rtp(10)))
    assert caught.value.kind is SrtpErrorKind.AUTH


def test_key_of_the_wrong_length_is_refused() -> None:
    attr = crypto(SUPPORTED[0])
    attr.master_key = attr.master_key[:-1]
    with pytest.raises(SrtpError, match="wrong key or salt length") as caught:
        SrtpContext.for_receiving(attr)
    assert caught.value.kind is SrtpErrorKind.OTHER


# --- packet errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_tampered_packets_fail_authentication(suite: SrtpSuite) -> None:
    attr = crypto(suite)
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    for position in (1, 20, -1):  # header, payload, tag
        bad = bytearray(tx.protect(rtp(10 + position)))
        bad[position] ^= 0x01
        with pytest.raises(SrtpError) as caught:
            rx.unprotect(bytes(bad))
        assert caught.value.kind is SrtpErrorKind.AUTH
        assert caught.value.reason == "authentication failure"
    bad = bytearray(tx.protect_rtcp(rtcp()))
    bad[10] ^= 0x01
    with pytest.raises(SrtpError) as caught:
        rx.unprotect_rtcp(bytes(bad))
    assert caught.value.kind is SrtpErrorKind.AUTH
    # the stream is not harmed: the genuine packets still pass
    assert rx.unprotect(tx.protect(rtp(50))) == rtp(50)


def test_wrong_key_fails_authentication() -> None:
    tx = SrtpContext.for_sending(crypto(SUPPORTED[0]))
    rx = SrtpContext.for_receiving(crypto(SUPPORTED[0]))
    with pytest.raises(SrtpError) as caught:
        rx.unprotect(tx.protect(rtp()))
    assert caught.value.kind is SrtpErrorKind.AUTH


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_replayed_packets_are_refused_as_replay(suite: SrtpSuite) -> None:
    attr = crypto(suite)
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    protected = tx.protect(rtp(7))
    rx.unprotect(protected)
    with pytest.raises(SrtpError) as caught:
        rx.unprotect(protected)
    assert caught.value.kind is SrtpErrorKind.REPLAY
    assert caught.value.reason == "replay check failed (bad index)"
    protected_rtcp = tx.protect_rtcp(rtcp())
    rx.unprotect_rtcp(protected_rtcp)
    with pytest.raises(SrtpError) as caught:
        rx.unprotect_rtcp(protected_rtcp)
    assert caught.value.kind is SrtpErrorKind.REPLAY


def test_packets_older_than_the_replay_window_are_refused_as_replay() -> None:
    attr = crypto(SUPPORTED[0])
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    late = tx.protect(rtp(1))
    rx.unprotect(tx.protect(rtp(300)))  # the default window is 128 packets
    with pytest.raises(SrtpError) as caught:
        rx.unprotect(late)
    assert caught.value.kind is SrtpErrorKind.REPLAY
    assert caught.value.reason == "replay check failed (index too old)"


def test_protecting_a_packet_again_is_no_error() -> None:
    attr = crypto(SUPPORTED[2])
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    first = tx.protect(rtp(5))
    assert tx.protect(rtp(5)) == first  # a retransmission: same index, same bytes
    assert rx.unprotect(first) == rtp(5)


def test_each_context_does_only_its_direction() -> None:
    attr = crypto(SUPPORTED[0])
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    for call in (tx.unprotect, tx.unprotect_rtcp, rx.protect, rx.protect_rtcp):
        with pytest.raises(SrtpError, match="context") as caught:
            call(rtp())
        assert caught.value.kind is SrtpErrorKind.OTHER


def test_oversized_and_garbage_packets_are_other_errors() -> None:
    attr = crypto(SUPPORTED[2])
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    assert len(tx.protect(rtp(payload=bytes(1356 - 12)))) == 1366  # pylibsrtp's limit for RTP
    for call, packet in [
        (tx.protect, rtp(payload=bytes(1357 - 12))),
        (tx.protect_rtcp, rtcp() + bytes(1353 - len(rtcp()))),
        (rx.unprotect, bytes(1501)),
        (rx.unprotect, b"\x80\x00"),
        (rx.unprotect_rtcp, b"\x81\xc9\x00"),
    ]:
        with pytest.raises(SrtpError) as caught:
            call(packet)
        assert caught.value.kind is SrtpErrorKind.OTHER


# --- interoperability and known answers --------------------------------------------------------


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_interoperates_with_a_plain_pylibsrtp_session(suite: SrtpSuite) -> None:
    ours = crypto(suite)
    theirs = crypto(suite)
    their_sender, their_receiver = plain_session(theirs, sending=True), plain_session(ours, sending=False)
    rx, tx = SrtpContext.for_receiving(theirs), SrtpContext.for_sending(ours)
    for seq in range(1, 5):
        assert rx.unprotect(their_sender.protect(rtp(seq))) == rtp(seq)
        assert their_receiver.unprotect(tx.protect(rtp(seq))) == rtp(seq)
    assert rx.unprotect_rtcp(their_sender.protect_rtcp(rtcp())) == rtcp()
    assert their_receiver.unprotect_rtcp(tx.protect_rtcp(rtcp())) == rtcp()


# libsrtp's reference packets (test/srtp_driver.c, srtp_validate): SSRC 0xcafebabe, sequence 0x1234,
# 16 bytes of 0xab. The key is RFC 3711 Appendix B.3's master key and salt, so the expected bytes also
# check the B.3 session key derivation, end to end.
RFC3711_B3_MASTER_KEY = bytes.fromhex("e1f97a0d3e018be0d64fa32c06de4139")
RFC3711_B3_MASTER_SALT = bytes.fromhex("0ec675ad498afeebb6960b3aabe6")
KAT_RTP = bytes.fromhex("800f1234decafbadcafebabe" + "ab" * 16)
KAT_RTCP = bytes.fromhex("81c8000bcafebabe" + "ab" * 16)
KAT_SRTP_AES_CM = bytes.fromhex(
    "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb"
)
KAT_SRTCP_AES_CM = bytes.fromhex(
    "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798"
)
# srtp_validate_gcm: AEAD_AES_128_GCM, key 00..0f, salt a0..ab
KAT_SRTP_GCM = bytes.fromhex(
    "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392"
)
KAT_SRTCP_GCM = bytes.fromhex(
    "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001"
)


def test_known_answer_aes_cm_128_with_rfc3711_b3_key() -> None:
    suite = suite_by_name("AES_CM_128_HMAC_SHA1_80")
    assert suite is not None
    attr = CryptoAttribute(1, suite, RFC3711_B3_MASTER_KEY, RFC3711_B3_MASTER_SALT)
    attr = parse_crypto(attr.render())  # through the a=crypto text, as keys arrive
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    assert tx.protect(KAT_RTP) == KAT_SRTP_AES_CM
    assert tx.protect_rtcp(KAT_RTCP) == KAT_SRTCP_AES_CM
    assert rx.unprotect(KAT_SRTP_AES_CM) == KAT_RTP
    assert rx.unprotect_rtcp(KAT_SRTCP_AES_CM) == KAT_RTCP


def test_known_answer_aead_aes_128_gcm() -> None:
    suite = suite_by_name("AEAD_AES_128_GCM")
    assert suite is not None
    attr = CryptoAttribute(1, suite, bytes(range(16)), bytes(range(0xA0, 0xAC)))
    tx, rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    assert tx.protect(KAT_RTP) == KAT_SRTP_GCM
    assert tx.protect_rtcp(KAT_RTCP) == KAT_SRTCP_GCM
    assert rx.unprotect(KAT_SRTP_GCM) == KAT_RTP
    assert rx.unprotect_rtcp(KAT_SRTCP_GCM) == KAT_RTCP


@pytest.mark.parametrize("suite", SUPPORTED, ids=lambda suite: suite.name)
def test_a_context_resumed_from_anothers_progress_fits_the_peer_after_a_wrap(suite: SrtpSuite) -> None:
    """A call moved to another node after its sequence numbers wrapped: the new node's contexts take up
    the old ones' rollover counters (and SRTCP index), so the peer's own libsrtp notices nothing."""
    attr = crypto(suite)
    peer_tx, peer_rx = plain_session(attr, True), plain_session(attr, False)
    old_tx, old_rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    for seq in (65533, 65534, 65535, 0, 1):
        assert peer_rx.unprotect(old_tx.protect(rtp(seq))) == rtp(seq)
        assert old_rx.unprotect(peer_tx.protect(rtp(seq, ssrc=0x77))) == rtp(seq, ssrc=0x77)
    for _ in range(200):  # more SRTCP than the peer's replay window holds
        assert peer_rx.unprotect_rtcp(old_tx.protect_rtcp(rtcp())) == rtcp()
    sent, received = old_tx.progress(), old_rx.progress()
    assert [(p.ssrc, p.rollover, p.srtcp_sent, p.sequence) for p in sent] == [(0xCAFEBABE, 1, 200, 1)]
    assert [(p.ssrc, p.rollover, p.srtcp_sent, p.sequence) for p in received] == [(0x77, 1, 0, 1)]

    new_tx, new_rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    new_tx.resume(sent)
    new_rx.resume(received)
    assert new_tx.progress()[0].rollover == 1  # before any packet too: a save right after the move keeps it
    assert peer_rx.unprotect(new_tx.protect(rtp(2))) == rtp(2)
    assert new_rx.unprotect(peer_tx.protect(rtp(2, ssrc=0x77))) == rtp(2, ssrc=0x77)
    assert peer_rx.unprotect_rtcp(new_tx.protect_rtcp(rtcp())) == rtcp()

    # without the progress, both directions fail: the counters start over at 0
    fresh_tx, fresh_rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    with pytest.raises(pylibsrtp.Error):
        peer_rx.unprotect(fresh_tx.protect(rtp(3)))
    with pytest.raises(SrtpError) as refused:
        fresh_rx.unprotect(peer_tx.protect(rtp(3, ssrc=0x77)))
    assert refused.value.kind is SrtpErrorKind.AUTH
    with pytest.raises(pylibsrtp.Error):
        peer_rx.unprotect_rtcp(fresh_tx.protect_rtcp(rtcp()))


def test_progress_follows_the_latest_ssrcs_only() -> None:
    attr = crypto(SUPPORTED[0])
    tx = SrtpContext.for_sending(attr)
    for ssrc in range(1, 20):
        tx.protect(rtp(1, ssrc=ssrc))
    tx.protect(rtp(2, ssrc=13))  # seen again: the most recent
    assert [p.ssrc for p in tx.progress()] == [12, *range(14, 20), 13]  # newest last


def test_a_wrap_after_the_last_write_is_taken_into_account_by_the_sequence_numbers() -> None:
    """The state was written at sequence 65530 (rollover 0) and the call moved after its numbers wrapped:
    the first packet (sequence 5) tells the resumed contexts that the counter is 1 now."""
    attr = crypto(SUPPORTED[0])
    peer_tx, peer_rx = plain_session(attr, True), plain_session(attr, False)
    old_tx, old_rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    for seq in range(65526, 65531):
        peer_rx.unprotect(old_tx.protect(rtp(seq)))
        old_rx.unprotect(peer_tx.protect(rtp(seq, ssrc=0x77)))
    sent, received = old_tx.progress(), old_rx.progress()  # the last write
    for seq in (65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4):  # then the wrap, unwritten
        peer_rx.unprotect(old_tx.protect(rtp(seq)))
        old_rx.unprotect(peer_tx.protect(rtp(seq, ssrc=0x77)))
    new_tx, new_rx = SrtpContext.for_sending(attr), SrtpContext.for_receiving(attr)
    new_tx.resume(sent)
    new_rx.resume(received)
    assert peer_rx.unprotect(new_tx.protect(rtp(5))) == rtp(5)
    assert new_rx.unprotect(peer_tx.protect(rtp(5, ssrc=0x77))) == rtp(5, ssrc=0x77)
    assert {p.ssrc: p.rollover for p in new_tx.progress() + new_rx.progress()} == {0xCAFEBABE: 1, 0x77: 1}


def test_a_forged_first_packet_after_a_move_decides_nothing() -> None:
    attr = crypto(SUPPORTED[0])
    peer_tx = plain_session(attr, True)
    old_rx = SrtpContext.for_receiving(attr)
    for seq in (65534, 65535, 0, 1):
        old_rx.unprotect(peer_tx.protect(rtp(seq, ssrc=0x77)))
    new_rx = SrtpContext.for_receiving(attr)
    new_rx.resume(old_rx.progress())
    real = peer_tx.protect(rtp(2, ssrc=0x77))
    forged = bytearray(real)
    forged[2:4] = (40000).to_bytes(2, "big")  # far from 1: would mean counter 0
    with pytest.raises(SrtpError):
        new_rx.unprotect(bytes(forged))
    assert new_rx.unprotect(real) == rtp(2, ssrc=0x77)


def test_srtcp_sent_before_any_write_is_skipped_after_a_move_too() -> None:
    """The call moved before its first SRTCP was written (nothing stored): the new context still starts
    SRTCP past what the old one may have sent, so no index is used twice under the key."""
    attr = crypto(SUPPORTED[0])
    peer_rx = plain_session(attr, False)
    old_tx = SrtpContext.for_sending(attr)
    for _ in range(10):
        peer_rx.unprotect_rtcp(old_tx.protect_rtcp(rtcp()))
    new_tx = SrtpContext.for_sending(attr)
    new_tx.resume(())
    assert peer_rx.unprotect_rtcp(new_tx.protect_rtcp(rtcp())) == rtcp()
    assert new_tx.progress()[0].srtcp_sent > 80
