"""The sans-IO DTLS-SRTP handshake against itself (two sessions passing records in memory) and the
fleet certificate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from karl_medianode.dtls.certificate import (
    GENERATED_NAME,
    CertificateError,
    DtlsCertificate,
    load_certificate,
)
from karl_medianode.dtls.session import DtlsSession, DtlsState, is_dtls

CLIENT, SERVER = DtlsCertificate.generate(), DtlsCertificate.generate()


def sessions(
    client_sees: DtlsCertificate = SERVER, hash_name: str = "sha-256"
) -> tuple[DtlsSession, DtlsSession]:
    client = DtlsSession(CLIENT, active=True, fingerprints=[(hash_name, client_sees.fingerprint(hash_name))])
    server = DtlsSession(SERVER, active=False, fingerprints=[("sha-256", CLIENT.fingerprint())])
    return client, server


def run(client: DtlsSession, server: DtlsSession, lose_first_from: DtlsSession | None = None) -> None:
    """Pass records until both are done. OpenSSL's retransmission timer runs on the real clock, so
    the timers are driven with it (bounded: 10 s)."""
    client.start(time.monotonic())
    server.start(time.monotonic())
    lost = False
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for sender, receiver in ((client, server), (server, client)):
            datagrams = sender.take_datagrams()
            if sender is lose_first_from and datagrams and not lost:
                lost = True
                continue
            for data in datagrams:
                assert is_dtls(data)
                receiver.handle_datagram(data, now)
        if client.state is not DtlsState.CONNECTING and server.state is not DtlsState.CONNECTING:
            return
        time.sleep(0.01)
        now = time.monotonic()
        for session in (client, server):
            due = session.next_deadline()
            if due is not None and due <= now:
                session.handle_timer(now)
    raise AssertionError(f"handshake did not finish: {client.state}, {server.state}")


@pytest.mark.parametrize("hash_name", ["sha-1", "sha-256", "sha-512"])
def test_a_handshake_exports_the_same_srtp_keys_on_both_sides_crosswise(hash_name: str) -> None:
    client, server = sessions(hash_name=hash_name)
    run(client, server)
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED
    assert client.keys is not None and server.keys is not None
    assert client.keys.suite == server.keys.suite == "AEAD_AES_256_GCM"
    assert client.keys.local == server.keys.remote and client.keys.remote == server.keys.local
    assert client.keys.local != client.keys.remote


def test_a_certificate_that_matches_no_fingerprint_fails_the_handshake() -> None:
    client, server = sessions(client_sees=DtlsCertificate.generate())
    run(client, server)
    assert client.state is DtlsState.FAILED and client.keys is None
    assert client.failure is not None and "fingerprint" in client.failure


def test_a_lost_flight_is_sent_again_by_the_timer() -> None:
    client, server = sessions()
    run(client, server, lose_first_from=client)
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED


def test_garbage_records_do_not_break_a_handshake() -> None:
    client, server = sessions()
    server.handle_datagram(b"\x16\xfe\xfd" + b"\x00" * 40, 0.0)
    server.handle_datagram(b"\x17" * 13, 0.0)
    run(client, server)
    assert client.state is DtlsState.CONNECTED


def test_the_certificate_is_made_once_in_the_state_directory_and_kept(tmp_path: Path) -> None:
    first = load_certificate("", "", str(tmp_path))
    assert (tmp_path / GENERATED_NAME).stat().st_mode & 0o077 == 0
    assert load_certificate("", "", str(tmp_path)).fingerprint() == first.fingerprint()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    pem = SERVER.pem()
    split = pem.index(b"-----BEGIN PRIVATE KEY")
    cert.write_bytes(pem[:split])
    key.write_bytes(pem[split:])
    assert load_certificate(str(cert), str(key), "").fingerprint() == SERVER.fingerprint()
    other = CLIENT.pem()
    key.write_bytes(other[other.index(b"-----BEGIN PRIVATE KEY") :])
    with pytest.raises(CertificateError, match="does not belong"):
        load_certificate(str(cert), str(key), "")
