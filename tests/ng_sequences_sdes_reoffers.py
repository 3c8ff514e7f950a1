"""Side-by-side sequences of re-offers on SDES calls without OSRTP: what rtpengine 10.5 writes in a
re-offer towards a party it offered its own SDES keys to, and what it answers an SDES offerer that
offers again (probed on the daemon).

What 10.5 does, as these sequences show it:

- Towards a callee that was offered the proxy's suites (`transport-protocol: RTP/SAVP` for a plain
  caller) and answered with one of them, a re-offer leads with the agreed line (same tag, same suite,
  the proxy's same key), then the other suites in the usual order under the tags following the agreed
  one (agreed tag + 1, + 2, ...) and under new keys, at every re-offer again. A callee that picks
  another line in its answer to the re-offer moves that line to the front of the next one, with its tag
  and key. No `a=setup`/`a=fingerprint` in a re-offer once the callee answered without DTLS, though
  the first offer had them.
- The protocol sticks: a re-offer without `transport-protocol` is the same (`SDES-no-` does not stick:
  without it the re-offer lists 10.5's other eleven suites, tags 4-14).
- Before any answer an offer repeated gives the same lines, tags, keys and the same fingerprint.
- After a plain (`RTP/AVP`) answer a re-offer repeats the first offer's lines, tags and keys, without
  `a=setup`/`a=fingerprint`.
- Towards an SDES caller relayed as plain RTP, every answer carries one line, under the tag of the first
  line the caller offers (with the suite offered there); the proxy's key stays the same as long as that
  tag and suite do, whatever keys the caller offers; another tag or suite gets a new key (also when
  going back to an earlier one).

10.5's own offers leave out the suites Karl's SRTP library cannot do (`SDES-no-`, as in
ng_sequences_osrtp) so that the lines compare one by one.
"""

from __future__ import annotations

from collections.abc import Iterator

from ng_sequences import FT, TT, A, Sequence, answer, offer, query, seq
from ng_sequences_osrtp import (
    CALLEE_KEY,
    CALLER_CRYPTO,
    CALLER_KEY,
    CALLER_KEY_32,
    GCM128_KEY,
    GCM256_KEY,
    KARLS_SUITES,
    callee,
    caller,
)

TO_SAVP = {"transport-protocol": "RTP/SAVP", "SDES": KARLS_SUITES}
TO_AVP = {"transport-protocol": "RTP/AVP", "SDES": KARLS_SUITES}

TAG3_SHA1_80 = f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_KEY}"
TAG1_GCM256 = f"a=crypto:1 AEAD_AES_256_GCM inline:{GCM256_KEY}"
# in the re-offer after an answer of tag 3, AEAD_AES_128_GCM is tag 5
TAG5_GCM128 = f"a=crypto:5 AEAD_AES_128_GCM inline:{GCM128_KEY}"

# the caller's keys of a re-INVITE (30 bytes each, as AES_CM_128 needs)
CALLER_NEW_KEY = "bmV3IGtleSBvZiB0aGUgY2FsbGVyLCB0YWcgMSEh"
CALLER_NEW_KEY_32 = "bmV3IGtleSBvZiB0aGUgY2FsbGVyLCB0YWcgMiEh"


def srtp_callee(crypto: str) -> str:
    """The callee's RTP/SAVP answer with the one line it picked."""
    return callee(crypto, proto="RTP/SAVP")


def reinvite(n: int) -> str:
    """The plain caller's SDP of its n-th re-INVITE (the o= version counts up)."""
    return A(version=str(2890844526 + n))


def group() -> Iterator[Sequence]:
    yield from _towards_the_callee()
    yield from _towards_an_sdes_caller()


def _towards_the_callee() -> Iterator[Sequence]:
    for name, picked in (("tag_3", TAG3_SHA1_80), ("tag_1", TAG1_GCM256)):
        yield seq(
            f"sdes_reoffer_callee_picks_{name}",
            offer(A(), TO_SAVP, note="the proxy's four suites, tags 1-4, and its fingerprint"),
            answer(srtp_callee(picked), note="the caller is answered plain"),
            offer(reinvite(1), TO_SAVP, tt=TT, note="re-INVITE: the agreed line first"),
            answer(srtp_callee(picked)),
            offer(reinvite(2), TO_SAVP, tt=TT, note="again: the other suites under new keys again"),
            answer(srtp_callee(picked)),
            query(),
            doc="a re-offer leads with the agreed line (tag, suite and key unchanged), then the other "
            "suites in the usual order, tagged on from the agreed tag, under new keys each time; no "
            "a=setup/a=fingerprint",
        )
    yield seq(
        "sdes_reoffer_callee_picks_another_line",
        offer(A(), TO_SAVP),
        answer(srtp_callee(TAG3_SHA1_80)),
        offer(reinvite(1), TO_SAVP, tt=TT, note="tag 3 first, AEAD_AES_128_GCM now tag 5"),
        answer(srtp_callee(TAG5_GCM128), note="the callee picks tag 5 with a key of its own"),
        offer(reinvite(2), TO_SAVP, tt=TT, note="tag 5 first (its key kept), then tags 6-8"),
        answer(srtp_callee(TAG5_GCM128)),
        query(),
        doc="the line the callee last picked leads the next re-offer",
    )
    yield seq(
        "sdes_reoffer_without_transport_protocol",
        offer(A(), TO_SAVP),
        answer(srtp_callee(TAG3_SHA1_80)),
        offer(reinvite(1), {"SDES": KARLS_SUITES}, tt=TT, note="re-INVITE without transport-protocol"),
        answer(srtp_callee(TAG3_SHA1_80)),
        offer(reinvite(2), {"SDES": KARLS_SUITES}, tt=TT),
        answer(srtp_callee(TAG3_SHA1_80)),
        doc="RTP/SAVP sticks: the same re-offers as with the option",
    )
    yield seq(
        "sdes_reoffer_before_answer",
        offer(A(), TO_SAVP),
        offer(A(), TO_SAVP, note="INVITE repeated: same lines, keys and fingerprint"),
        offer(reinvite(1), TO_SAVP, note="a new SDP before any answer: still the same"),
        answer(srtp_callee(TAG3_SHA1_80)),
        offer(reinvite(2), TO_SAVP, tt=TT, note="after the answer: tag 3 first, others under new keys"),
        answer(srtp_callee(TAG3_SHA1_80)),
    )
    yield seq(
        "sdes_reoffer_after_plain_answer",
        offer(A(), TO_SAVP),
        answer(callee(), note="the callee answers RTP/AVP without a key"),
        offer(reinvite(1), TO_SAVP, tt=TT, note="the first offer's lines and keys, no fingerprint"),
        answer(callee()),
        offer(reinvite(2), TO_SAVP, tt=TT, note="the same again"),
        answer(srtp_callee(TAG3_SHA1_80), note="now the callee takes tag 3"),
        offer(reinvite(3), TO_SAVP, tt=TT, note="tag 3 first, others under new keys"),
        answer(srtp_callee(TAG3_SHA1_80)),
        query(),
        doc="a refused offer is offered again unchanged (tags, keys), without a=setup/a=fingerprint",
    )


def _towards_an_sdes_caller() -> Iterator[Sequence]:
    sdes_caller = caller("RTP/SAVP")
    yield seq(
        "sdes_reoffer_from_the_plain_callee",
        offer(sdes_caller, TO_AVP, note="the caller's lines, relayed as RTP/AVP"),
        answer(callee(), note="the caller gets tag 1 under the proxy's key"),
        offer(callee(), {"SDES": KARLS_SUITES}, ft=TT, tt=FT, note="the callee re-INVITEs: tag 1 first"),
        offer(callee(), {"SDES": KARLS_SUITES}, ft=TT, tt=FT, note="again, unanswered: the same keys"),
        answer(sdes_caller, ft=TT, tt=FT, note="the caller answers with its tag 1"),
        offer(callee(), {"SDES": KARLS_SUITES}, ft=TT, tt=FT, note="after the answer: new keys for the rest"),
        answer(sdes_caller, ft=TT, tt=FT),
        query(),
        doc="towards an SDES caller the proxy answered, a re-INVITE from the plain callee leads with the "
        "agreed line, then the other suites under new keys (the same ones until an answer); no DTLS",
    )
    yield seq(
        "sdes_reoffer_sdes_caller_to_plain_callee",
        offer(sdes_caller, TO_AVP, note="the caller's two lines, relayed as RTP/AVP"),
        answer(callee(), note="the caller gets tag 1 under the proxy's key"),
        offer(sdes_caller, TO_AVP, tt=TT, note="re-INVITE with the same lines"),
        answer(callee(), note="tag 1, the same key"),
        offer(sdes_caller, tt=TT, note="re-INVITE without options: still plain to the callee"),
        answer(callee(), note="tag 1, the same key"),
        query(),
        doc="the caller is answered the same line (tag 1, the proxy's same key) at every re-offer",
    )
    yield seq(
        "sdes_reoffer_sdes_caller_new_keys",
        offer(sdes_caller, TO_AVP),
        answer(callee()),
        offer(
            caller(
                "RTP/SAVP",
                (
                    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_NEW_KEY}",
                    f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{CALLER_NEW_KEY_32}",
                ),
            ),
            TO_AVP,
            tt=TT,
            note="re-INVITE with new keys under the same tags",
        ),
        answer(callee(), note="tag 1, the proxy's key unchanged"),
        offer(
            caller("RTP/SAVP", (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_NEW_KEY}",)),
            TO_AVP,
            tt=TT,
            note="tag 1 alone, under a new key",
        ),
        answer(callee(), note="tag 1, the proxy's key unchanged"),
        doc="the proxy's key follows the caller's tag and suite, not the caller's key",
    )
    yield seq(
        "sdes_reoffer_sdes_caller_other_tag",
        offer(sdes_caller, TO_AVP),
        answer(callee()),
        offer(caller("RTP/SAVP", CALLER_CRYPTO[::-1]), TO_AVP, tt=TT, note="tag 2 offered first"),
        answer(callee(), note="tag 2 under a new key of the proxy"),
        offer(sdes_caller, TO_AVP, tt=TT, note="tag 1 first again"),
        answer(callee(), note="tag 1 under another new key (not the first one)"),
        offer(
            caller("RTP/SAVP", (f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_KEY}",)),
            TO_AVP,
            tt=TT,
            note="the same suite and key under tag 3",
        ),
        answer(callee(), note="tag 3 under a new key"),
        offer(
            caller("RTP/SAVP", (f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{CALLER_KEY_32}",)),
            TO_AVP,
            tt=TT,
            note="tag 3 with another suite",
        ),
        answer(callee(), note="tag 3 under a new key"),
        doc="the answer takes the tag (and suite) of the caller's first line; the proxy's key is new "
        "whenever the tag or the suite changes",
    )
