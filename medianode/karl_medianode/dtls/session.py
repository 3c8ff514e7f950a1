"""One DTLS-SRTP handshake (RFC 5763/5764) on one leg, sans-IO: OpenSSL (pyOpenSSL) over memory BIOs.

The media node hands it the DTLS records that arrive on the leg's socket (`handle_datagram`) and
calls `handle_timer` at `next_deadline()` (OpenSSL's own retransmission timer, which runs on the real
clock: `now` only places its deadline on the caller's time line); after each call it
sends what `take_datagrams` returns to the party. Once the handshake is done and the party's
certificate matches a fingerprint from its SDP, `keys` holds the SRTP keys exported from it.

Only the handshake runs here: media is SRTP (RFC 5764), not DTLS application data.
"""

from __future__ import annotations

import base64
import enum
import logging
from dataclasses import dataclass

from OpenSSL import SSL

from karl_medianode.dtls.certificate import HASHES, DtlsCertificate, format_digest

log = logging.getLogger("karl.dtls")

# libsrtp's names for the DTLS-SRTP protection profiles Karl negotiates, most preferred first, and
# the SDES suite with the same transforms (whose `inline:` key is master key + master salt)
PROFILES = {
    b"SRTP_AEAD_AES_256_GCM": ("AEAD_AES_256_GCM", 32, 12),
    b"SRTP_AEAD_AES_128_GCM": ("AEAD_AES_128_GCM", 16, 12),
    b"SRTP_AES128_CM_SHA1_80": ("AES_CM_128_HMAC_SHA1_80", 16, 14),
    b"SRTP_AES128_CM_SHA1_32": ("AES_CM_128_HMAC_SHA1_32", 16, 14),
}
EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"
MTU = 1200
"""Largest DTLS datagram Karl sends (a certificate flight is split into records below it)."""
MAX_DATAGRAMS = 64
"""Records read out of OpenSSL per step at most (a handshake flight is a few)."""


class DtlsState(enum.StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """The exported keys as SDES `a=crypto` values (tag 1): what Karl sends with, what it receives."""

    suite: str
    local: str
    remote: str


def _crypto_value(suite: str, key: bytes, salt: bytes) -> str:
    return f"1 {suite} inline:{base64.b64encode(key + salt).decode()}"


class DtlsSession:
    """`active`: Karl is the DTLS client (`a=setup:active`), else the server. `fingerprints`: the
    party's `a=fingerprint` values as (hash name, digest), one of which its certificate must match."""

    def __init__(
        self, certificate: DtlsCertificate, *, active: bool, fingerprints: list[tuple[str, str]]
    ) -> None:
        self.active = active
        self.fingerprints = [(name.lower(), digest.upper()) for name, digest in fingerprints]
        self.state = DtlsState.NEW
        self.failure: str | None = None
        """Why the handshake failed (for the log and `query`)."""
        self.keys: SrtpKeys | None = None
        self.records_dropped = 0
        self._datagrams: list[bytes] = []
        self.last_flight: list[bytes] = []
        """What Karl sent last while the handshake runs (sent again at once when ICE finds the
        party's address)."""
        self._deadline: float | None = None
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(certificate.certificate)
        context.use_privatekey(certificate.private_key)  # type: ignore[arg-type]
        # any certificate is taken in the handshake: what counts is the fingerprint from the SDP
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        context.set_tlsext_use_srtp(b":".join(PROFILES))
        context.set_options(SSL.OP_NO_QUERY_MTU)
        self._connection = SSL.Connection(context, None)
        self._connection.set_ciphertext_mtu(MTU)
        if active:
            self._connection.set_connect_state()
        else:
            self._connection.set_accept_state()

    def start(self, now: float) -> None:
        """Begin the handshake (the client sends its ClientHello; a server waits for one)."""
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
            if self.active:
                self._step(now)

    def handle_datagram(self, data: bytes, now: float) -> None:
        if self.state is DtlsState.FAILED:
            self.records_dropped += 1
            return
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
        if self.state is DtlsState.CONNECTED:
            # a retransmitted final flight of the party: OpenSSL answers it (our last flight was lost)
            self._connection.bio_write(data)
            try:
                self._connection.recv(1500)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error:
                self.records_dropped += 1
            self._drain()
            return
        try:
            self._connection.bio_write(data)
        except SSL.Error:
            self.records_dropped += 1
            return
        self._step(now)

    def _step(self, now: float) -> None:
        try:
            self._connection.do_handshake()
        except SSL.WantReadError:
            self._drain()
            self._rearm(now)
            return
        except SSL.Error as exc:
            self._drain()
            self._fail(f"handshake error: {_reason(exc)}")
            return
        self._drain()
        self._deadline = None
        self._connected()

    def _connected(self) -> None:
        peer = self._connection.get_peer_certificate()
        if peer is None:
            self._fail("the party sent no certificate")
            return
        certificate = peer.to_cryptography()
        matched = False
        for name, digest in self.fingerprints:
            algorithm = HASHES.get(name)
            if algorithm is not None and format_digest(certificate.fingerprint(algorithm)) == digest:
                matched = True
                break
        if not matched:
            self._fail("the party's certificate matches no a=fingerprint of its SDP")
            return
        profile = self._connection.get_selected_srtp_profile()
        found = PROFILES.get(profile)
        if found is None:
            self._fail(f"no SRTP protection profile agreed ({profile.decode(errors='replace') or 'none'})")
            return
        suite, key_length, salt_length = found
        material = self._connection.export_keying_material(EXPORTER_LABEL, 2 * (key_length + salt_length))
        client_key = material[:key_length]
        server_key = material[key_length : 2 * key_length]
        client_salt = material[2 * key_length : 2 * key_length + salt_length]
        server_salt = material[2 * key_length + salt_length :]
        client = _crypto_value(suite, client_key, client_salt)
        server = _crypto_value(suite, server_key, server_salt)
        self.keys = SrtpKeys(suite, client, server) if self.active else SrtpKeys(suite, server, client)
        self.state = DtlsState.CONNECTED

    def _fail(self, why: str) -> None:
        self.state = DtlsState.FAILED
        self.failure = why
        self._deadline = None

    def _drain(self) -> None:
        flight: list[bytes] = []
        for _ in range(MAX_DATAGRAMS):
            try:
                data = self._connection.bio_read(65536)
            except SSL.WantReadError:
                break
            if not data:
                break
            flight.append(data)
        if flight:
            self._datagrams += flight
            self.last_flight = flight

    def _rearm(self, now: float) -> None:
        timeout = self._connection.DTLSv1_get_timeout()
        self._deadline = None if timeout is None else now + max(timeout, 0.0)

    def next_deadline(self) -> float | None:
        return self._deadline if self.state is DtlsState.CONNECTING else None

    def handle_timer(self, now: float) -> None:
        if self.state is not DtlsState.CONNECTING:
            return
        try:
            self._connection.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"handshake timed out: {_reason(exc)}")
            return
        self._drain()
        self._rearm(now)
        if self._deadline is None or self._deadline <= now:
            self._deadline = now + 1.0

    def take_datagrams(self) -> list[bytes]:
        datagrams, self._datagrams = self._datagrams, []
        return datagrams


def _reason(exc: SSL.Error) -> str:
    details = exc.args[0] if exc.args else []
    if isinstance(details, list) and details:
        return "; ".join(str(entry[2]) for entry in details if isinstance(entry, tuple) and len(entry) == 3)
    return type(exc).__name__


def is_dtls(data: bytes) -> bool:
    """RFC 7983 demultiplexing: a first octet of 20-63 (a DTLS record)."""
    return len(data) >= 13 and 19 < data[0] < 64
