"""DTLS-SRTP in the engine, sans-IO: the handshakes `DtlsSessions` runs for each call, driven through the
engine's own doors (`handle`, `handle_dtls`, `handle_dtls_timer`, `restore`) with a DTLS client of the
test's (the sans-IO `DtlsSession` with a certificate of its own) and no socket.

The scene: a plain caller (tag A) is relayed to a DTLS callee (tag B, `UDP/TLS/RTP/SAVP`, `SDES=off`);
the callee answers `a=setup:active`, so Karl is the DTLS server on the callee's leg."""

from __future__ import annotations

import re
from typing import Any

from engine.engine_kit import T0, Engine, request, sdp
from karl_core.ng.commands import Command
from karl_core.session import CallState
from karl_medianode.dtls.certificate import DtlsCertificate
from karl_medianode.dtls.session import DtlsSession, DtlsState
from karl_medianode.engine.effects import ConfigureStream, Effect, SendDatagram

CALLEE = DtlsCertificate.generate()
CALLEE_RTP = ("127.0.0.3", 40002)
IDS = {"call-id": "d", "from-tag": "A"}


def dtls_answer(certificate: DtlsCertificate = CALLEE, setup: str = "active") -> str:
    return sdp(CALLEE_RTP[1], CALLEE_RTP[0]).replace("RTP/AVP", "UDP/TLS/RTP/SAVP") + (
        f"a=setup:{setup}\r\na=fingerprint:sha-256 {certificate.fingerprint()}\r\n"
    )


def dtls_call(engine: Engine, answer_sdp: str | None = None) -> tuple[int, str]:
    """Karl's port towards the callee and Karl's fingerprint."""
    offer = engine.do(
        Command.OFFER,
        T0,
        sdp=sdp(40000),
        **IDS,
        **{"transport-protocol": "UDP/TLS/RTP/SAVP", "SDES": ["off"]},
    )
    assert offer["result"] == "ok", offer
    assert "a=setup:actpass" in offer["sdp"]
    answer = engine.do(Command.ANSWER, T0, sdp=answer_sdp or dtls_answer(), **IDS, **{"to-tag": "B"})
    assert answer["result"] == "ok", answer
    port = int(re.search(r"m=audio (\d+)", offer["sdp"])[1])  # type: ignore[index]
    fingerprint = re.search(r"a=fingerprint:sha-256 (\S+)", offer["sdp"])[1]  # type: ignore[index]
    return port, fingerprint


def handshake(engine: Engine, port: int, client: DtlsSession, now: float = T0) -> list[Effect]:
    """Pass records between the client and the engine until the client is done; Karl's effects."""
    client.start(now)
    return pump(engine, port, client, now)


def pump(engine: Engine, port: int, client: DtlsSession, now: float = T0) -> list[Effect]:
    effects: list[Effect] = []
    for _ in range(20):
        for data in client.take_datagrams():
            out = engine.core.handle_dtls(port, data, CALLEE_RTP, now)
            engine.media.apply(out)
            effects += out
        replies = [e for e in effects if isinstance(e, SendDatagram) and e.port == port]
        for reply in replies:
            assert reply.destination == CALLEE_RTP, "Karl answers where the handshake came from"
            client.handle_datagram(reply.data, now)
        effects = [e for e in effects if e not in replies]
        if client.state is not DtlsState.CONNECTING:
            break
    for data in client.take_datagrams():
        out = engine.core.handle_dtls(port, data, CALLEE_RTP, now)
        engine.media.apply(out)
        effects += out
    return effects


def callee_streams(engine: Engine) -> list[Any]:
    call = engine.core.find_call("d")
    assert call is not None
    callee = call.state.by_tag("B")
    assert callee is not None
    return call.ports[(callee.uid, 1)].streams()


def test_a_handshake_keys_the_callees_leg_and_its_keys_go_into_the_call_state() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    assert all(s.srtp_in == "" and s.srtp_out == "" for s in callee_streams(engine)), "nothing passes yet"
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    effects = handshake(engine, port, client)
    assert client.state is DtlsState.CONNECTED and client.keys is not None
    configured = [e.spec for e in effects if isinstance(e, ConfigureStream) and e.spec.port == port]
    assert (
        configured
        and configured[-1].srtp_in == client.keys.local
        and configured[-1].srtp_out == client.keys.remote
    )
    snapshot = engine.core.snapshot("d")
    assert snapshot is not None
    [media] = [m for mono in snapshot.monologues.values() if mono.tag == "B" for m in mono.medias]
    assert media.dtls_keys == [client.keys.remote, client.keys.local]
    assert engine.core.dtls.totals.connected == 1


def test_a_certificate_that_matches_no_fingerprint_fails_and_the_leg_stays_closed() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    stranger = DtlsCertificate.generate()  # not the one the callee's SDP named
    client = DtlsSession(stranger, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    assert engine.core.dtls.totals.failed == 1 and engine.core.dtls.totals.connected == 0
    assert all(s.srtp_in == "" and s.srtp_out == "" for s in callee_streams(engine))


def test_records_from_another_address_during_a_handshake_are_dropped() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    [hello] = client.take_datagrams()
    engine.core.handle_dtls(port, hello, CALLEE_RTP, T0)
    intruder = DtlsSession(DtlsCertificate.generate(), active=True, fingerprints=[("sha-256", karls)])
    intruder.start(T0)
    for data in intruder.take_datagrams():
        assert engine.core.handle_dtls(port, data, ("198.51.100.9", 5000), T0) == []
    assert engine.core.dtls.totals.dropped >= 1


def test_a_clienthello_before_the_answer_waits_for_it() -> None:
    """The callee (active) may send its ClientHello before its answer reaches Karl (the SIP 200 OK
    is slower than the media path): Karl keeps it and answers once its role is known."""
    engine = Engine()
    offer = engine.do(
        Command.OFFER,
        T0,
        sdp=sdp(40000),
        **IDS,
        **{"transport-protocol": "UDP/TLS/RTP/SAVP", "SDES": ["off"]},
    )
    port = int(re.search(r"m=audio (\d+)", offer["sdp"])[1])  # type: ignore[index]
    karls = re.search(r"a=fingerprint:sha-256 (\S+)", offer["sdp"])[1]  # type: ignore[index]
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    early = client.take_datagrams()
    for data in early:
        assert engine.core.handle_dtls(port, data, CALLEE_RTP, T0) == []
    outcome = engine.core.handle(
        Command.ANSWER, request(Command.ANSWER, sdp=dtls_answer(), **IDS, **{"to-tag": "B"}), T0
    )
    engine.media.apply(outcome.effects)
    # the answer's commit replayed the early ClientHello: Karl's first flight goes out with it
    flight = [e for e in outcome.effects if isinstance(e, SendDatagram) and e.port == port]
    assert flight and all(e.destination == CALLEE_RTP for e in flight)
    for reply in flight:
        client.handle_datagram(reply.data, T0)
    pump(engine, port, client)
    assert client.state is DtlsState.CONNECTED and engine.core.dtls.totals.connected == 1


def test_a_restored_call_keeps_its_keys_and_needs_no_handshake() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    assert client.keys is not None
    stored = engine.core.snapshot("d")
    assert stored is not None
    elsewhere = Engine(port_min=30000, port_max=30999)
    call, effects = elsewhere.core.restore(CallState.from_dict(stored.to_dict()), T0 + 60, same_host=False)
    elsewhere.media.apply(effects)
    callee = call.state.by_tag("B")
    assert callee is not None
    [rtp, *_] = call.ports[(callee.uid, 1)].streams()
    assert (rtp.srtp_in, rtp.srtp_out) == (client.keys.local, client.keys.remote)
    assert elsewhere.core.dtls.sessions() == 0, "the keys moved with the call: no new handshake"


def test_a_delete_during_the_handshake_ends_it() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    [hello] = client.take_datagrams()
    engine.media.apply(engine.core.handle_dtls(port, hello, CALLEE_RTP, T0))
    assert engine.core.next_dtls_deadline() is not None
    engine.do(Command.DELETE, T0, **{"call-id": "d", "delete-delay": 0})
    dropped = engine.core.dtls.totals.dropped
    assert engine.core.handle_dtls(port, hello, CALLEE_RTP, T0 + 1) == []
    assert engine.core.dtls.totals.dropped == dropped + 1
    assert engine.core.next_dtls_deadline() is None and engine.core.handle_dtls_timer(T0 + 5) == []


def test_a_reoffer_keeps_the_keys_and_a_new_fingerprint_starts_a_new_handshake() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    assert client.keys is not None
    keys = (client.keys.local, client.keys.remote)
    # the caller re-INVITEs (no protocol flag: each leg keeps its protocol), the callee answers the same
    reoffer = engine.do(Command.OFFER, T0 + 10, sdp=sdp(40000), **IDS)
    assert reoffer["result"] == "ok" and "UDP/TLS/RTP/SAVP" in reoffer["sdp"]
    assert f"a=fingerprint:sha-256 {karls}" in reoffer["sdp"], "the same certificate"
    engine.do(Command.ANSWER, T0 + 10, sdp=dtls_answer(), **IDS, **{"to-tag": "B"})
    [rtp, *_] = callee_streams(engine)
    assert (rtp.srtp_in, rtp.srtp_out) == keys, "the same keys: no new handshake"
    # the callee comes back with a new certificate: its old keys go, a new handshake keys the leg
    renewed = DtlsCertificate.generate()
    engine.do(Command.OFFER, T0 + 20, sdp=sdp(40000), **IDS)
    engine.do(Command.ANSWER, T0 + 20, sdp=dtls_answer(renewed), **IDS, **{"to-tag": "B"})
    [rtp, *_] = callee_streams(engine)
    assert (rtp.srtp_in, rtp.srtp_out) == ("", ""), "nothing passes under the old keys"
    second = DtlsSession(renewed, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, second, T0 + 20)
    assert second.state is DtlsState.CONNECTED and second.keys is not None
    [rtp, *_] = callee_streams(engine)
    assert (rtp.srtp_in, rtp.srtp_out) == (second.keys.local, second.keys.remote) != keys
