"""The certificate Karl proves itself with in DTLS handshakes, and its `a=fingerprint` digests.

One certificate per fleet: every node loads the same PEM files (a Kubernetes Secret), so the
fingerprint a browser was given stays true whichever node holds the call. Without files a node makes
its own (ECDSA P-256, self-signed, valid 1 year) and keeps it in its state directory when it has one.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from karl_core.certificates import self_signed_pem

log = logging.getLogger("karl.dtls")

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha-1": hashes.SHA1(),
    "sha-224": hashes.SHA224(),
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
"""The `a=fingerprint` hash functions (RFC 8122 names) Karl writes and checks."""
DEFAULT_HASH = "sha-256"
GENERATED_NAME = "dtls-certificate.pem"


class CertificateError(ValueError):
    """The configured certificate or key cannot be used (the message says why; no key material)."""


def format_digest(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


@dataclass(frozen=True)
class DtlsCertificate:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | object = field(repr=False)

    @functools.cached_property
    def fingerprints(self) -> dict[str, str]:
        """`fingerprint` for every hash Karl writes (computed once)."""
        return {name: self.fingerprint(name) for name in HASHES}

    def fingerprint(self, hash_name: str = DEFAULT_HASH) -> str:
        """`a=fingerprint` value without the hash name: upper-case hex pairs joined by colons."""
        return format_digest(self.certificate.fingerprint(HASHES[hash_name]))

    def pem(self) -> bytes:
        key = self.private_key
        assert hasattr(key, "private_bytes")
        key_pem: bytes = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return self.certificate.public_bytes(serialization.Encoding.PEM) + key_pem

    @classmethod
    def generate(cls, common_name: str = "karl") -> DtlsCertificate:
        pem = self_signed_pem(common_name)
        return cls.from_pem(pem, pem)

    @classmethod
    def from_pem(cls, certificate_pem: bytes, key_pem: bytes) -> DtlsCertificate:
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError as exc:
            raise CertificateError(f"not a PEM certificate: {exc}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CertificateError(f"not an unencrypted PEM private key: {type(exc).__name__}") from None
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise CertificateError("the private key does not belong to the certificate")
        return cls(certificate, key)


def load_certificate(certificate_file: str, key_file: str, state_dir: str) -> DtlsCertificate:
    """The configured certificate (both files, or one file holding both); else the one kept in
    `state_dir`, made there the first time; else a new one for this process."""
    if certificate_file:
        certificate_pem = Path(certificate_file).read_bytes()
        key_pem = Path(key_file).read_bytes() if key_file else certificate_pem
        return DtlsCertificate.from_pem(certificate_pem, key_pem)
    if state_dir:
        path = Path(state_dir) / GENERATED_NAME
        if path.exists():
            pem = path.read_bytes()
            return DtlsCertificate.from_pem(pem, pem)
        made = DtlsCertificate.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(made.pem())
        os.replace(temporary, path)
        log.info("made a DTLS certificate in %s (fingerprint sha-256 %s)", path, made.fingerprint())
        return made
    made = DtlsCertificate.generate()
    log.info(
        "made a DTLS certificate for this process (sha-256 %s); set webrtc.dtls_certificate for a fleet",
        made.fingerprint(),
    )
    return made
