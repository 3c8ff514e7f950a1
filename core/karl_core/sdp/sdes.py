"""SDES keying (RFC 4568): the `a=crypto` attribute and the SRTP crypto suites rtpengine 10.5 offers.

    attr = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32")
    ours = new_crypto(1, attr.suite, os.urandom)   # the caller brings the randomness: no I/O here
    format_crypto(ours)                            # "1 AES_CM_128_HMAC_SHA1_80 inline:<40 characters>"

Pure text and bytes; the SRTP transform that uses the keys lives in the media node.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SdpError


class SdesError(SdpError):
    """A malformed or unusable `a=crypto` value (a ValueError, like every SdpError). Its text is the
    reason alone: `detail` may hold the line, key included, and is never logged."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """One SRTP crypto suite. Lengths are in bytes; for AEAD suites both tags are the GCM tag."""

    name: str
    key_length: int
    salt_length: int
    srtp_tag_length: int
    srtcp_tag_length: int
    aead: bool
    # Whether Karl's SRTP backend (karl_medianode.dataplane.srtp_context, on libsrtp through pylibsrtp)
    # can protect and unprotect with it; the others can be parsed and answered but not terminated.
    supported: bool

    @property
    def key_salt_length(self) -> int:
        return self.key_length + self.salt_length


# Every suite rtpengine 10.5 knows, in the order it offers them. RFC 4568 and RFC 7714: HMAC-SHA1 suites
# carry an 80-bit SRTCP tag even when the SRTP tag is 32 bits. pylibsrtp reaches only libsrtp's
# profiles aes128_cm_sha1_80/_32, null_sha1_80 and the two AEAD GCM ones (libsrtp has no profile for
# AES-192/256-CM or NULL with a 32-bit tag, and no F8 at all).
SUITES: tuple[SrtpSuite, ...] = (
    SrtpSuite("AEAD_AES_256_GCM", 32, 12, 16, 16, aead=True, supported=True),
    SrtpSuite("AEAD_AES_128_GCM", 16, 12, 16, 16, aead=True, supported=True),
    SrtpSuite("AES_256_CM_HMAC_SHA1_80", 32, 14, 10, 10, aead=False, supported=False),
    SrtpSuite("AES_256_CM_HMAC_SHA1_32", 32, 14, 4, 10, aead=False, supported=False),
    SrtpSuite("AES_192_CM_HMAC_SHA1_80", 24, 14, 10, 10, aead=False, supported=False),
    SrtpSuite("AES_192_CM_HMAC_SHA1_32", 24, 14, 4, 10, aead=False, supported=False),
    SrtpSuite("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 10, aead=False, supported=True),
    SrtpSuite("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 10, aead=False, supported=True),
    SrtpSuite("F8_128_HMAC_SHA1_80", 16, 14, 10, 10, aead=False, supported=False),
    SrtpSuite("F8_128_HMAC_SHA1_32", 16, 14, 4, 10, aead=False, supported=False),
    # libsrtp sends NULL-cipher SRTCP with the E flag clear and refuses it set, as rtpengine sends it
    SrtpSuite("NULL_HMAC_SHA1_80", 16, 14, 10, 10, aead=False, supported=False),
    SrtpSuite("NULL_HMAC_SHA1_32", 16, 14, 4, 10, aead=False, supported=False),
)
_BY_NAME = {suite.name.upper(): suite for suite in SUITES}

# Session parameters with a meaning for the SRTP transform (RFC 4568 6.3); others are carried as text.
UNENCRYPTED_SRTP = "UNENCRYPTED_SRTP"
UNENCRYPTED_SRTCP = "UNENCRYPTED_SRTCP"
UNAUTHENTICATED_SRTP = "UNAUTHENTICATED_SRTP"
UNSUPPORTED_PARAMS = (UNENCRYPTED_SRTP, UNENCRYPTED_SRTCP, UNAUTHENTICATED_SRTP, "KDR")
"""Session parameters Karl's SRTP library (libsrtp through pylibsrtp) cannot set up: a line with one
is neither chosen by the negotiation nor keyed by the data plane."""

_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"(?:2\^)?[0-9]+")
_MKI = re.compile(r"([0-9]{1,310}):([0-9]{1,3})")
_WSP = re.compile(r"[ \t]+")
_INLINE = "inline:"


def suite_by_name(name: str) -> SrtpSuite | None:
    """The suite called `name`, matched case-insensitively as rtpengine does, or None."""
    return _BY_NAME.get(name.upper()) if name.isascii() else None


@dataclass(frozen=True, slots=True)
class Mki:
    """Master key identifier: its value and the number of bytes it takes in each packet (1-128)."""

    value: int
    length: int


@dataclass(slots=True)
class CryptoAttribute:
    """The value of one `a=crypto` line.

    `suite` is the name as written when it is no suite rtpengine knows; the key material is then
    kept whole in `master_key` (its split into key and salt is unknown). Key parameters after the
    first (`;inline:...`) are dropped: rtpengine 10.5 uses only the first.
    """

    tag: int
    suite: SrtpSuite | str
    master_key: bytes
    master_salt: bytes
    lifetime: str | None = None
    mki: Mki | None = None
    session_params: list[str] = field(default_factory=list)

    @property
    def suite_name(self) -> str:
        return self.suite.name if isinstance(self.suite, SrtpSuite) else self.suite

    @property
    def key_salt(self) -> bytes:
        """Master key || master salt: what SRTP stacks take as one key."""
        return self.master_key + self.master_salt

    def has_param(self, name: str) -> bool:
        """Whether a session parameter is present (by name, case-insensitively; `KDR` finds `KDR=4`)."""
        wanted = name.upper()
        return any(param.split("=", 1)[0].upper() == wanted for param in self.session_params)

    def render(self) -> str:
        return format_crypto(self)


def parse_crypto(value: str) -> CryptoAttribute:
    """Read the text after `a=crypto:`. Raises SdesError naming what is wrong.

    Base64 is accepted with or without its `=` padding. For a known suite the decoded key must be
    exactly its key + salt length; a lifetime is `N` or `2^N` (N > 0), an MKI `value:length` with a
    length of 1 to 128 bytes.
    """
    fields = _WSP.split(value.strip(" \t"))
    if len(fields) < 3:
        raise SdesError("malformed a=crypto: tag, suite and key parameters needed", repr(value))
    tag_text, suite_text, key_params, *session_params = fields
    if not _TAG.fullmatch(tag_text):
        raise SdesError("invalid a=crypto tag", repr(value))
    suite: SrtpSuite | str = suite_by_name(suite_text) or suite_text

    key_param = key_params.split(";", 1)[0]
    if key_param[: len(_INLINE)].lower() != _INLINE:
        raise SdesError("unknown a=crypto key method", repr(value))
    key_text, *extras = key_param[len(_INLINE) :].split("|")
    key_salt = _b64decode(key_text)
    if key_salt is None:
        raise SdesError("invalid a=crypto key (not base64)", repr(value))
    if isinstance(suite, SrtpSuite):
        if len(key_salt) != suite.key_salt_length:
            raise SdesError(
                f"wrong a=crypto key length for {suite.name}: {len(key_salt)} bytes, "
                f"expected {suite.key_salt_length}",
                repr(value),
            )
        master_key, master_salt = key_salt[: suite.key_length], key_salt[suite.key_length :]
    else:
        master_key, master_salt = key_salt, b""

    lifetime, mki = _lifetime_and_mki(extras, value)
    return CryptoAttribute(int(tag_text), suite, master_key, master_salt, lifetime, mki, session_params)


def format_crypto(attr: CryptoAttribute, pad: bool = False) -> str:
    """The value rtpengine 10.5 writes: `<tag> <SUITE> inline:<key||salt>` in base64 without `=`
    padding (with it for `pad`: its `SDES-pad`), then `|lifetime` and `|mki:length` when set, then the
    session parameters."""
    key = base64.b64encode(attr.key_salt).decode("ascii")
    if not pad:
        key = key.rstrip("=")
    key_params = f"{_INLINE}{key}"
    if attr.lifetime is not None:
        key_params += f"|{attr.lifetime}"
    if attr.mki is not None:
        key_params += f"|{attr.mki.value}:{attr.mki.length}"
    return " ".join([str(attr.tag), attr.suite_name, key_params, *attr.session_params])


def new_crypto(tag: int, suite: SrtpSuite, random: Callable[[int], bytes]) -> CryptoAttribute:
    """A fresh key for `suite`; `random(n)` must return n cryptographically random bytes (os.urandom)."""
    master_key = random(suite.key_length)
    master_salt = random(suite.salt_length)
    if len(master_key) != suite.key_length or len(master_salt) != suite.salt_length:
        raise ValueError("random() returned the wrong number of bytes")
    return CryptoAttribute(tag, suite, master_key, master_salt)


def _b64decode(text: str) -> bytes | None:
    stripped = text.rstrip("=")
    if not stripped.isascii() or len(stripped) % 4 == 1:
        return None
    if stripped != text and len(text) % 4:  # padded, then padded right
        return None
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _lifetime_and_mki(extras: list[str], value: str) -> tuple[str | None, Mki | None]:
    """`|lifetime|mki:length`, either optional, in that order (a field with a colon is the MKI)."""
    lifetime: str | None = None
    mki: Mki | None = None
    for index, extra in enumerate(extras):
        if ":" in extra:
            match = _MKI.fullmatch(extra)
            length = int(match[2]) if match else 0
            if mki is not None or match is None or not 1 <= length <= 128 or int(match[1]) >= 256**length:
                raise SdesError("invalid a=crypto MKI", repr(value))
            mki = Mki(int(match[1]), length)
        else:
            # `N` or `2^N`; zero (a key usable for no packet) is refused like rtpengine does
            if index != 0 or not _LIFETIME.fullmatch(extra) or not extra.removeprefix("2^").strip("0"):
                raise SdesError("invalid a=crypto key lifetime", repr(value))
            lifetime = extra
    return lifetime, mki
