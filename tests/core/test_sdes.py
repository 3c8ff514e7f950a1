"""SDES keying: the a=crypto value (RFC 4568) and the crypto suites of rtpengine 10.5."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.sdp import SdpError
from karl_core.sdp.sdes import (
    SUITES,
    CryptoAttribute,
    Mki,
    SdesError,
    SrtpSuite,
    format_crypto,
    new_crypto,
    parse_crypto,
    suite_by_name,
)

KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"  # RFC 4568's example key: 30 bytes
RFC4568_EXAMPLE = f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32"
CM128 = "1 AES_CM_128_HMAC_SHA1_80"

# Base64 length of key||salt as rtpengine 10.5 writes it (padding stripped), by suite.
RTPENGINE_KEY_CHARS = {
    "AEAD_AES_256_GCM": 59,
    "AEAD_AES_128_GCM": 38,
    "AES_256_CM_HMAC_SHA1_80": 62,
    "AES_256_CM_HMAC_SHA1_32": 62,
    "AES_192_CM_HMAC_SHA1_80": 51,
    "AES_192_CM_HMAC_SHA1_32": 51,
    "AES_CM_128_HMAC_SHA1_80": 40,
    "AES_CM_128_HMAC_SHA1_32": 40,
    "F8_128_HMAC_SHA1_80": 40,
    "F8_128_HMAC_SHA1_32": 40,
    "NULL_HMAC_SHA1_80": 40,
    "NULL_HMAC_SHA1_32": 40,
}


def counting_random() -> tuple[list[int], Callable[[int], bytes]]:
    """A deterministic stand-in for os.urandom that records what it was asked for."""
    asked: list[int] = []
    counter = itertools.count()

    def random(n: int) -> bytes:
        asked.append(n)
        return bytes(next(counter) % 256 for _ in range(n))

    return asked, random


def key_for(suite: SrtpSuite) -> str:
    return base64.b64encode(bytes(range(suite.key_salt_length))).decode().rstrip("=")


# --- suites -------------------------------------------------------------------------------------


def test_suites_are_rtpengines_in_its_offer_order() -> None:
    assert [suite.name for suite in SUITES] == list(RTPENGINE_KEY_CHARS)


@pytest.mark.parametrize(
    ("name", "key", "salt", "srtp_tag", "srtcp_tag", "aead"),
    [
        ("AEAD_AES_256_GCM", 32, 12, 16, 16, True),
        ("AEAD_AES_128_GCM", 16, 12, 16, 16, True),
        ("AES_256_CM_HMAC_SHA1_80", 32, 14, 10, 10, False),
        ("AES_256_CM_HMAC_SHA1_32", 32, 14, 4, 10, False),
        ("AES_192_CM_HMAC_SHA1_80", 24, 14, 10, 10, False),
        ("AES_192_CM_HMAC_SHA1_32", 24, 14, 4, 10, False),
        ("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 10, False),
        ("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 10, False),
        ("F8_128_HMAC_SHA1_80", 16, 14, 10, 10, False),
        ("F8_128_HMAC_SHA1_32", 16, 14, 4, 10, False),
        ("NULL_HMAC_SHA1_80", 16, 14, 10, 10, False),
        ("NULL_HMAC_SHA1_32", 16, 14, 4, 10, False),
    ],
)
def test_suite_lengths(name: str, key: int, salt: int, srtp_tag: int, srtcp_tag: int, aead: bool) -> None:
    suite = suite_by_name(name)
    assert suite is not None
    lengths = (suite.key_length, suite.salt_length, suite.srtp_tag_length, suite.srtcp_tag_length)
    assert lengths == (key, salt, srtp_tag, srtcp_tag)
    assert suite.aead is aead
    assert suite.key_salt_length == key + salt


def test_supported_suites_are_what_libsrtp_through_pylibsrtp_can_do() -> None:
    assert [suite.name for suite in SUITES if suite.supported] == [
        "AEAD_AES_256_GCM",
        "AEAD_AES_128_GCM",
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
    ]


def test_suite_by_name_ignores_case_and_knows_no_others() -> None:
    assert suite_by_name("aes_cm_128_hmac_sha1_80") is SUITES[6]
    assert suite_by_name("Aead_Aes_256_Gcm") is SUITES[0]
    assert suite_by_name("AES_CM_128_HMAC_SHA1_80_X") is None
    assert suite_by_name("SRTP_AES128_CM_HMAC_SHA1_80") is None
    assert suite_by_name("") is None
    assert suite_by_name("ÆS") is None


# --- parse --------------------------------------------------------------------------------------


def test_parse_rfc4568_example() -> None:
    attr = parse_crypto(RFC4568_EXAMPLE)
    assert attr.tag == 1
    assert attr.suite is suite_by_name("AES_CM_128_HMAC_SHA1_80")
    assert attr.master_key == b"YS___semctl () {"
    assert attr.master_salt == b"\t220;}\n}\nunles"
    assert attr.key_salt == base64.b64decode(KEY)
    assert attr.lifetime == "2^20"
    assert attr.mki == Mki(1, 32)
    assert attr.session_params == []


def test_parse_reads_session_params_in_order() -> None:
    attr = parse_crypto(RFC4568_EXAMPLE + " KDR=1 UNENCRYPTED_SRTCP  FEC_ORDER=FEC_SRTP\tWSH=128")
    assert attr.session_params == ["KDR=1", "UNENCRYPTED_SRTCP", "FEC_ORDER=FEC_SRTP", "WSH=128"]
    assert attr.has_param("kdr") and attr.has_param("UNENCRYPTED_SRTCP") and attr.has_param("WSH")
    assert not attr.has_param("UNENCRYPTED_SRTP") and not attr.has_param("FEC")


@pytest.mark.parametrize("suite", SUITES, ids=lambda suite: suite.name)
def test_parse_accepts_key_with_or_without_padding(suite: SrtpSuite) -> None:
    key = bytes(range(suite.key_salt_length))
    padded = base64.b64encode(key).decode()
    unpadded = padded.rstrip("=")
    for text in {padded, unpadded}:
        attr = parse_crypto(f"7 {suite.name} inline:{text}")
        assert (attr.master_key, attr.master_salt) == (key[: suite.key_length], key[suite.key_length :])


def test_parse_lifetime_alone_mki_alone_and_decimal_lifetime() -> None:
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31").lifetime == "2^31"
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|1048576").lifetime == "1048576"
    only_mki = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|255:1")
    assert (only_mki.lifetime, only_mki.mki) == (None, Mki(255, 1))


def test_parse_keeps_only_the_first_key_param() -> None:
    other = base64.b64encode(b"\xff" * 30).decode()
    attr = parse_crypto(f"{RFC4568_EXAMPLE};inline:{other}|2^10|2:4 UNENCRYPTED_SRTP")
    assert attr == parse_crypto(RFC4568_EXAMPLE + " UNENCRYPTED_SRTP")


def test_parse_key_method_and_suite_ignore_case_and_suite_renders_canonically() -> None:
    attr = parse_crypto(f"2 aes_cm_128_hmac_sha1_80 INLINE:{KEY}")
    assert attr.suite is suite_by_name("AES_CM_128_HMAC_SHA1_80")
    assert format_crypto(attr) == f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"


def test_parse_unknown_suite_keeps_its_name_and_the_whole_key() -> None:
    attr = parse_crypto("3 SEED_CTR_128_HMAC_SHA1_80 inline:AAECAwQF|2^20 UNENCRYPTED_SRTP")
    assert attr.suite == "SEED_CTR_128_HMAC_SHA1_80" and attr.suite_name == "SEED_CTR_128_HMAC_SHA1_80"
    assert (attr.master_key, attr.master_salt) == (bytes(range(6)), b"")
    assert format_crypto(attr) == "3 SEED_CTR_128_HMAC_SHA1_80 inline:AAECAwQF|2^20 UNENCRYPTED_SRTP"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "tag, suite and key parameters needed"),
        (CM128, "tag, suite and key parameters needed"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "invalid a=crypto tag"),
        (f"-1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "invalid a=crypto tag"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "invalid a=crypto tag"),
        (f"\u0661 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "invalid a=crypto tag"),  # ARABIC-INDIC DIGIT ONE
        (f"{CM128} uri:https://example.com/key", "unknown a=crypto key method"),
        (f"{CM128} {KEY}", "unknown a=crypto key method"),
        (f"{CM128} inline:{KEY[:-1]}!", "not base64"),
        (f"{CM128} inline:{KEY}A", "not base64"),
        (f"{CM128} inline:{KEY[:-2]}=", "not base64"),
        (f"{CM128} inline:{KEY}=", "not base64"),
        (f"{CM128} inline:{KEY[:4]}={KEY[4:]}", "not base64"),
        (f"{CM128} inline:{KEY}é", "not base64"),
        (f"{CM128} inline:{KEY[:-4]}", "wrong a=crypto key length for AES_CM_128_HMAC_SHA1_80"),
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}", "30 bytes, expected 46"),
        (f"1 AEAD_AES_128_GCM inline:{KEY}", "30 bytes, expected 28"),
        (f"{CM128} inline:{KEY}|2^0", "invalid a=crypto key lifetime"),
        (f"{CM128} inline:{KEY}|0", "invalid a=crypto key lifetime"),
        (f"{CM128} inline:{KEY}|2^x", "invalid a=crypto key lifetime"),
        (f"{CM128} inline:{KEY}|", "invalid a=crypto key lifetime"),
        (f"{CM128} inline:{KEY}|1:4|2^20", "invalid a=crypto key lifetime"),
        (f"{CM128} inline:{KEY}|2^20|1:0", "invalid a=crypto MKI"),
        (f"{CM128} inline:{KEY}|2^20|1:129", "invalid a=crypto MKI"),
        (f"{CM128} inline:{KEY}|256:1", "invalid a=crypto MKI"),
        (f"{CM128} inline:{KEY}|1:", "invalid a=crypto MKI"),
        (f"{CM128} inline:{KEY}|1:4|2:4", "invalid a=crypto MKI"),
    ],
)
def test_parse_refuses_malformed_values(value: str, reason: str) -> None:
    with pytest.raises(SdesError, match=re.escape(reason)) as caught:
        parse_crypto(value)
    assert isinstance(caught.value, SdpError) and isinstance(caught.value, ValueError)
    assert "a=crypto" in caught.value.reason


# --- format -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda suite: suite.name)
def test_format_writes_key_without_padding_like_rtpengine(suite: SrtpSuite) -> None:
    attr = new_crypto(5, suite, bytes)  # bytes(n): n zero bytes
    text = format_crypto(attr)
    tag, name, key_params = text.split(" ")
    assert (tag, name) == ("5", suite.name)
    assert key_params.startswith("inline:")
    key = key_params.removeprefix("inline:")
    assert len(key) == RTPENGINE_KEY_CHARS[suite.name]
    assert "=" not in key
    assert key == "A" * len(key)


def test_format_rfc4568_example_with_session_params() -> None:
    attr = parse_crypto(RFC4568_EXAMPLE + " KDR=1 UNENCRYPTED_SRTCP")
    assert format_crypto(attr) == RFC4568_EXAMPLE + " KDR=1 UNENCRYPTED_SRTCP"
    assert attr.render() == format_crypto(attr)


def test_format_writes_lifetime_and_mki_only_when_set() -> None:
    suite = suite_by_name("AEAD_AES_128_GCM")
    assert suite is not None
    key = base64.b64encode(bytes(28)).decode().rstrip("=")
    attr = CryptoAttribute(9, suite, bytes(16), bytes(12))
    assert format_crypto(attr) == f"9 AEAD_AES_128_GCM inline:{key}"
    attr.mki = Mki(3, 2)
    assert format_crypto(attr) == f"9 AEAD_AES_128_GCM inline:{key}|3:2"
    attr.lifetime = "2^31"
    attr.session_params.append("UNENCRYPTED_SRTP")
    assert format_crypto(attr) == f"9 AEAD_AES_128_GCM inline:{key}|2^31|3:2 UNENCRYPTED_SRTP"


@pytest.mark.parametrize("suite", SUITES, ids=lambda suite: suite.name)
def test_round_trip_for_every_suite(suite: SrtpSuite) -> None:
    for extra in ("", "|2^20", "|1:4", "|2^48|1000:2"):
        for params in ("", " UNENCRYPTED_SRTCP WSH=64"):
            text = f"12 {suite.name} inline:{key_for(suite)}{extra}{params}"
            attr = parse_crypto(text)
            assert format_crypto(attr) == text
            assert parse_crypto(format_crypto(attr)) == attr


# --- new_crypto ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda suite: suite.name)
def test_new_crypto_asks_random_for_key_and_salt(suite: SrtpSuite) -> None:
    asked, random = counting_random()
    attr = new_crypto(4, suite, random)
    assert asked == [suite.key_length, suite.salt_length]
    assert attr.tag == 4 and attr.suite is suite
    assert attr.key_salt == bytes(range(suite.key_salt_length))
    assert (attr.lifetime, attr.mki, attr.session_params) == (None, None, [])
    assert parse_crypto(format_crypto(attr)) == attr


def test_new_crypto_refuses_short_randomness() -> None:
    with pytest.raises(ValueError, match="wrong number of bytes"):
        new_crypto(1, SUITES[0], lambda n: bytes(n - 1))


# --- properties ---------------------------------------------------------------------------------

# Fragments that make random text look like a=crypto often enough to reach the deeper code paths.
CRYPTO_SOUP = st.sampled_from([
    "1", "0", "999999999", " ", "  ", "\t", "AES_CM_128_HMAC_SHA1_80", "aead_aes_256_gcm",
    "F8_128_HMAC_SHA1_32", "X", "inline:", "INLINE:", "uri:", KEY, "AAAA", "AA", "A", "=", "==", "|", "2^",
    "20", "2^64", ":", "1:32", ";", "é", "\x00", "\udcff", "\u0663", "KDR=1", "UNENCRYPTED_SRTP", "9" * 5000,
])


@settings(max_examples=500)
@given(st.lists(CRYPTO_SOUP, max_size=12).map("".join) | st.text(max_size=200))
def test_parse_crypto_raises_nothing_but_sdes_error(value: str) -> None:
    try:
        attr = parse_crypto(value)
    except SdesError:
        return
    # whatever parses formats into something that parses back to the same attribute
    assert parse_crypto(format_crypto(attr)) == attr


@st.composite
def crypto_attributes(draw: st.DrawFn) -> CryptoAttribute:
    suite = draw(st.sampled_from(SUITES))
    mki_length = draw(st.integers(1, 128))
    return CryptoAttribute(
        tag=draw(st.integers(0, 999_999_999)),
        suite=suite,
        master_key=draw(st.binary(min_size=suite.key_length, max_size=suite.key_length)),
        master_salt=draw(st.binary(min_size=suite.salt_length, max_size=suite.salt_length)),
        lifetime=draw(st.none() | st.integers(1, 2**48).map(str) | st.integers(1, 64).map("2^{}".format)),
        mki=draw(st.none() | st.integers(0, 256**mki_length - 1).map(lambda value: Mki(value, mki_length))),
        session_params=draw(st.lists(st.sampled_from(["UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP",
                                                      "UNAUTHENTICATED_SRTP", "KDR=4", "WSH=64",
                                                      "FEC_ORDER=SRTP_FEC"]), max_size=3)),
    )


@given(crypto_attributes())
def test_generated_attributes_round_trip(attr: CryptoAttribute) -> None:
    text = format_crypto(attr)
    assert "=" not in text.split(" ")[2]
    assert parse_crypto(text) == attr
