"""DTLS-SRTP in the engine, sans-IO: the handshakes `DtlsSessions` runs for each call, driven through the
engine's own doors (`handle`, `handle_dtls`, `handle_dtls_timer`, `restore`) with a DTLS client of the
test's (the sans-IO `DtlsSession` with a certificate of its own) and no socket.

The scene: a plain caller (tag A) is relayed to a DTLS callee (tag B, `UDP/TLS/RTP/SAVP`, `SDES=off`);
the callee answers `a=setup:active`, so Karl is the DTLS server on the callee's leg. The callee does not
multiplex RTCP (no `a=rtcp-mux`), so its RTCP port runs a handshake of its own (RFC 5764 4.2)."""

from __future__ import annotations

import re
from typing import Any

from engine.engine_kit import T0, Engine, request, sdp
from karl_core.ng.commands import Command
from karl_core.session import CallState
from karl_medianode.dtls.certificate import DtlsCertificate
from karl_medianode.dtls.session import DtlsSession, DtlsState
from karl_medianode.engine.effects import ConfigureStream, Effect, SendDatagram, SendToPeer

CALLEE = DtlsCertificate.generate()
CALLEE_RTP = ("127.0.0.3", 40002)
CALLEE_RTCP = ("127.0.0.3", 40003)
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


def handshake(
    engine: Engine, port: int, client: DtlsSession, now: float = T0, source: Any = CALLEE_RTP
) -> list[Effect]:
    """Pass records between the client and the engine until the client is done; Karl's effects."""
    client.start(now)
    return pump(engine, port, client, now, source)


def pump(
    engine: Engine, port: int, client: DtlsSession, now: float = T0, source: Any = CALLEE_RTP
) -> list[Effect]:
    effects: list[Effect] = []
    for _ in range(20):
        for data in client.take_datagrams():
            out = engine.core.handle_dtls(port, data, source, now)
            engine.media.apply(out)
            effects += out
        replies = [e for e in effects if isinstance(e, SendDatagram) and e.port == port]
        for reply in replies:
            assert reply.destination == source, "Karl answers where the handshake came from"
            client.handle_datagram(reply.data, now)
        effects = [e for e in effects if e not in replies]
        if client.state is not DtlsState.CONNECTING:
            break
    for data in client.take_datagrams():
        out = engine.core.handle_dtls(port, data, source, now)
        engine.media.apply(out)
        effects += out
    return effects


def callee_streams(engine: Engine) -> list[Any]:
    call = engine.core.find_call("d")
    assert call is not None
    callee = call.state.by_tag("B")
    assert callee is not None
    return call.ports[(callee.uid, 1)].streams()


def callee_media(engine: Engine) -> Any:
    snapshot = engine.core.snapshot("d")
    assert snapshot is not None
    [media] = [m for mono in snapshot.monologues.values() if mono.tag == "B" for m in mono.medias]
    return media


def keyed_by(stream: Any, client: DtlsSession) -> bool:
    """The stream protects with the keys the party's handshake exported, and unprotects with them."""
    assert client.keys is not None
    return (stream.srtp_in, stream.srtp_out) == (client.keys.local, client.keys.remote)


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


def test_a_strangers_records_neither_disturb_the_handshake_nor_get_it_keyed() -> None:
    """Without ICE on the leg Karl cannot tell the party's address beforehand: a stranger's junk is
    dropped (not a DTLS record), and a stranger's own handshake, or its records in the middle of the
    party's, at worst makes the party start over; no key comes from a certificate the SDP did not
    name, and the party's handshake keys the leg."""
    engine = Engine()
    port, karls = dtls_call(engine)
    stranger = ("198.51.100.9", 5000)
    assert engine.core.handle_dtls(port, b"\x16\x00\x00" + bytes(40), stranger, T0) == []
    assert engine.core.dtls.totals.dropped == 1
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    [hello] = client.take_datagrams()
    engine.media.apply(engine.core.handle_dtls(port, hello, CALLEE_RTP, T0))
    intruder = DtlsSession(DtlsCertificate.generate(), active=True, fingerprints=[("sha-256", karls)])
    intruder.start(T0)
    for data in intruder.take_datagrams():
        engine.media.apply(engine.core.handle_dtls(port, data, stranger, T0))
    assert engine.core.dtls.totals.connected == 0
    if client.state is DtlsState.CONNECTING:
        for reply in [
            e for e in engine.media.effects if isinstance(e, SendDatagram) and e.destination == CALLEE_RTP
        ]:
            client.handle_datagram(reply.data, T0)
        pump(engine, port, client)
    if client.state is not DtlsState.CONNECTED:  # the party starts over, as a browser would
        client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
        handshake(engine, port, client)
    assert client.state is DtlsState.CONNECTED and client.keys is not None
    [rtp, *_] = callee_streams(engine)
    assert (rtp.srtp_in, rtp.srtp_out) == (client.keys.local, client.keys.remote)


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
    """Both components' keys (RTP port and, without rtcp-mux, RTCP port) move with the call."""
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    rtcp_client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port + 1, rtcp_client, source=CALLEE_RTCP)
    assert client.keys is not None and rtcp_client.keys is not None
    stored = engine.core.snapshot("d")
    assert stored is not None
    elsewhere = Engine(port_min=30000, port_max=30999)
    call, effects = elsewhere.core.restore(CallState.from_dict(stored.to_dict()), T0 + 60, same_host=False)
    elsewhere.media.apply(effects)
    callee = call.state.by_tag("B")
    assert callee is not None
    rtp, rtcp = call.ports[(callee.uid, 1)].streams()
    assert keyed_by(rtp, client) and keyed_by(rtcp, rtcp_client)
    assert rtcp.dtls, "a party repeating its last flight on the RTCP port still reaches the engine"
    assert elsewhere.core.dtls.sessions() == 0, "the keys moved with the call: no new handshake"


def test_a_restored_call_whose_rtcp_handshake_had_not_finished_runs_it_there() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    stored = engine.core.snapshot("d")
    assert stored is not None
    # (the fleet's certificate: the one the SDP named)
    elsewhere = Engine(port_min=30000, port_max=30999, dtls_certificate=engine.core.settings.dtls_certificate)
    call, effects = elsewhere.core.restore(CallState.from_dict(stored.to_dict()), T0 + 60, same_host=False)
    elsewhere.media.apply(effects)
    assert elsewhere.core.dtls.sessions() == 1, "the RTCP port's handshake, Karl waiting as the server"
    callee = call.state.by_tag("B")
    assert callee is not None
    rtp, rtcp = call.ports[(callee.uid, 1)].streams()
    assert keyed_by(rtp, client) and (rtcp.srtp_in, rtcp.srtp_out) == ("", "")
    rtcp_client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(elsewhere, rtcp.port, rtcp_client, T0 + 60, source=CALLEE_RTCP)
    assert rtcp_client.state is DtlsState.CONNECTED
    assert keyed_by(call.ports[(callee.uid, 1)].streams()[1], rtcp_client)


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


def test_on_an_ice_leg_no_handshake_is_answered_before_ice_verified_the_address() -> None:
    """A caller with ICE and DTLS (`a=setup:active`: Karl is the server). Its ClientHello, sent the
    moment its own ICE check succeeded, waits until Karl's check of that address succeeds too; a
    ClientHello from anywhere else is never answered (no reflection towards a spoofed source)."""
    from engine.test_engine_ice import CALLER, binding_request, credentials_in, karls_check_answered

    engine = Engine()
    caller_rtp = ("127.0.0.1", 40000)
    caller = DtlsCertificate.generate()
    offer_sdp = sdp(40000).replace("RTP/AVP", "UDP/TLS/RTP/SAVPF") + (
        f"a=ice-ufrag:{CALLER.ufrag}\r\na=ice-pwd:{CALLER.pwd}\r\n"
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\na=rtcp-mux\r\n"
        f"a=setup:active\r\na=fingerprint:sha-256 {caller.fingerprint()}\r\n"
    )
    ids = {"call-id": "d", "from-tag": "A"}
    engine.do(Command.OFFER, T0, sdp=offer_sdp, **ids, **{"transport-protocol": "RTP/AVP", "ICE": "remove"})
    answer = engine.do(
        Command.ANSWER, T0, sdp=sdp(40002, "127.0.0.3"), **ids, **{"to-tag": "B", **TO_BROWSER}
    )
    assert "a=setup:passive" in answer["sdp"], answer["sdp"]
    port = int(re.search(r"m=audio (\d+)", answer["sdp"])[1])  # type: ignore[index]
    karls = re.search(r"a=fingerprint:sha-256 (\S+)", answer["sdp"])[1]  # type: ignore[index]
    client = DtlsSession(caller, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    [hello] = client.take_datagrams()
    assert engine.core.handle_dtls(port, hello, ("198.51.100.9", 5000), T0) == [], "a spoofed source"
    assert engine.core.handle_dtls(port, hello, caller_rtp, T0) == [], "not verified by ICE yet"
    karl = credentials_in(answer["sdp"])
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    engine.core.handle_stun(port, data, caller_rtp, T0)
    effects = karls_check_answered(engine, port, caller_rtp, CALLER.pwd, T0)
    flight = [
        e for e in effects if isinstance(e, SendDatagram) and e.port == port and e.destination == caller_rtp
    ]
    assert flight, "the kept ClientHello is answered once ICE verified the caller's address"
    for reply in flight:
        client.handle_datagram(reply.data, T0)
    pump(engine, port, client, source=caller_rtp)
    assert client.state is DtlsState.CONNECTED


TO_BROWSER = {"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "rtcp-mux": ["require"]}


def test_a_reoffer_in_the_middle_of_the_handshake_does_not_drop_it() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    replies = []
    for data in client.take_datagrams():
        replies += [
            e for e in engine.core.handle_dtls(port, data, CALLEE_RTP, T0) if isinstance(e, SendDatagram)
        ]
    # a B2BUA's re-INVITE lands between the ClientHello and the rest of the handshake
    reoffer = engine.do(Command.OFFER, T0 + 0.1, sdp=sdp(40000), **IDS)
    assert "a=setup:actpass" in reoffer["sdp"], "offers say actpass"
    engine.do(Command.ANSWER, T0 + 0.1, sdp=dtls_answer(), **IDS, **{"to-tag": "B"})
    for reply in replies:
        client.handle_datagram(reply.data, T0 + 0.1)
    pump(engine, port, client, T0 + 0.1)
    assert client.state is DtlsState.CONNECTED and engine.core.dtls.totals.connected == 1


def test_a_keyed_party_that_reoffers_actpass_keeps_karls_role() -> None:
    """The callee answered `active` (Karl passive) and later re-INVITEs with `actpass`: Karl answers
    `passive` again, as rtpengine does (a browser refuses a role switch on its connection)."""
    engine = Engine()
    port, karls = dtls_call(engine)
    handshake(engine, port, DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)]))
    reinvite = dtls_answer(setup="actpass")
    reply = engine.do(
        Command.OFFER, T0 + 10, sdp=reinvite, **{"call-id": "d", "from-tag": "B", "to-tag": "A"}
    )
    assert reply["result"] == "ok", reply
    back = engine.do(
        Command.ANSWER, T0 + 10, sdp=sdp(40000), **{"call-id": "d", "from-tag": "B", "to-tag": "A"}
    )
    assert "a=setup:passive" in back["sdp"], back["sdp"]
    [rtp, *_] = callee_streams(engine)
    assert rtp.srtp_in and rtp.srtp_out, "the keys of the handshake stay in force"


# ---------------------------------------------------------------------- one handshake per component


def test_without_rtcp_mux_the_rtcp_port_runs_a_handshake_of_its_own_whose_keys_protect_srtcp_there() -> None:
    """RFC 5764 4.2, as rtpengine 10.5 and baresip do it: the RTP port's keys protect nothing on the
    RTCP port, whose own handshake (same role, same fingerprints) keys it."""
    engine = Engine()
    port, karls = dtls_call(engine)
    rtp, rtcp = callee_streams(engine)
    assert rtcp.port == port + 1 and rtp.dtls and rtcp.dtls, "DTLS on the RTCP port reaches the engine"
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    assert client.state is DtlsState.CONNECTED
    rtp, rtcp = callee_streams(engine)
    assert keyed_by(rtp, client)
    assert (rtcp.srtp_in, rtcp.srtp_out) == ("", ""), "nothing passes on the RTCP port before its handshake"
    assert engine.core.dtls.state_of("d", (2, 1), 2) is DtlsState.CONNECTING
    assert callee_media(engine).dtls_rtcp_keys == []

    rtcp_client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    effects = handshake(engine, port + 1, rtcp_client, source=CALLEE_RTCP)
    assert rtcp_client.state is DtlsState.CONNECTED and rtcp_client.keys is not None
    assert client.keys is not None and rtcp_client.keys.local != client.keys.local, "keys of their own"
    configured = [e.spec for e in effects if isinstance(e, ConfigureStream)]
    assert [spec.port for spec in configured] == [port + 1], "only the RTCP stream changes"
    rtp, rtcp = callee_streams(engine)
    assert keyed_by(rtp, client) and keyed_by(rtcp, rtcp_client)
    media = callee_media(engine)
    assert media.dtls_keys == [client.keys.remote, client.keys.local]
    assert media.dtls_rtcp_keys == [rtcp_client.keys.remote, rtcp_client.keys.local]
    assert engine.core.dtls.totals.connected == 2


def test_karl_as_the_client_starts_a_handshake_on_both_ports() -> None:
    engine = Engine()
    port, karls = dtls_call(engine, dtls_answer(setup="passive"))
    hellos = [e for e in engine.media.effects if isinstance(e, SendToPeer)]
    assert sorted(e.port for e in hellos) == [port, port + 1], "a ClientHello from each port"
    servers = {}
    for hello in hellos:
        server = servers[hello.port] = DtlsSession(CALLEE, active=False, fingerprints=[("sha-256", karls)])
        server.start(T0)
        server.handle_datagram(hello.data, T0)
        source = CALLEE_RTP if hello.port == port else CALLEE_RTCP
        for _ in range(10):
            for data in server.take_datagrams():
                out = engine.core.handle_dtls(hello.port, data, source, T0)
                engine.media.apply(out)
                for reply in out:
                    if isinstance(reply, SendDatagram) and reply.port == hello.port:
                        assert reply.destination == source
                        server.handle_datagram(reply.data, T0)
            if server.state is not DtlsState.CONNECTING:
                break
        for data in server.take_datagrams():  # the server's last flight
            engine.media.apply(engine.core.handle_dtls(hello.port, data, source, T0))
        assert server.state is DtlsState.CONNECTED
    rtp, rtcp = callee_streams(engine)
    assert keyed_by(rtp, servers[port]) and keyed_by(rtcp, servers[port + 1])
    assert servers[port].keys != servers[port + 1].keys


def test_with_rtcp_mux_one_handshake_keys_both_sockets() -> None:
    engine = Engine()
    port, karls = dtls_call(engine, dtls_answer() + "a=rtcp-mux\r\n")
    client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port, client)
    assert client.state is DtlsState.CONNECTED and engine.core.dtls.sessions() == 1
    streams = callee_streams(engine)
    assert all(keyed_by(stream, client) for stream in streams)
    assert all(not stream.dtls for stream in streams if stream.is_rtcp)
    assert callee_media(engine).dtls_rtcp_keys == []
    dropped = engine.core.dtls.totals.dropped
    hello = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    hello.start(T0)
    for data in hello.take_datagrams():
        assert engine.core.handle_dtls(port + 1, data, CALLEE_RTCP, T0) == []
    assert engine.core.dtls.totals.dropped > dropped, "no handshake on the unused RTCP port"


def test_a_new_fingerprint_drops_the_keys_of_both_ports() -> None:
    engine = Engine()
    port, karls = dtls_call(engine)
    handshake(engine, port, DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)]))
    rtcp_client = DtlsSession(CALLEE, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port + 1, rtcp_client, source=CALLEE_RTCP)
    # a re-INVITE answered the same keeps both ports' keys
    engine.do(Command.OFFER, T0 + 10, sdp=sdp(40000), **IDS)
    engine.do(Command.ANSWER, T0 + 10, sdp=dtls_answer(), **IDS, **{"to-tag": "B"})
    assert keyed_by(callee_streams(engine)[1], rtcp_client)
    renewed = DtlsCertificate.generate()
    engine.do(Command.OFFER, T0 + 20, sdp=sdp(40000), **IDS)
    engine.do(Command.ANSWER, T0 + 20, sdp=dtls_answer(renewed), **IDS, **{"to-tag": "B"})
    assert all((s.srtp_in, s.srtp_out) == ("", "") for s in callee_streams(engine))
    assert callee_media(engine).dtls_rtcp_keys == []
    second = DtlsSession(renewed, active=True, fingerprints=[("sha-256", karls)])
    handshake(engine, port + 1, second, T0 + 20, source=CALLEE_RTCP)
    assert second.state is DtlsState.CONNECTED and keyed_by(callee_streams(engine)[1], second)


def test_on_an_ice_leg_without_rtcp_mux_the_rtcp_handshake_waits_for_ices_second_component() -> None:
    """The RTCP port answers a handshake only from the address ICE verified for component 2: one
    verified for the RTP component does not count there."""
    from engine.test_engine_ice import CALLER, binding_request, credentials_in, karls_check_answered

    engine = Engine()
    caller_rtp, caller_rtcp = ("127.0.0.1", 40000), ("127.0.0.1", 40001)
    caller = DtlsCertificate.generate()
    offer_sdp = sdp(40000).replace("RTP/AVP", "UDP/TLS/RTP/SAVPF") + (
        f"a=ice-ufrag:{CALLER.ufrag}\r\na=ice-pwd:{CALLER.pwd}\r\n"
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n"
        "a=candidate:1 2 UDP 2130706430 127.0.0.1 40001 typ host\r\n"
        f"a=setup:active\r\na=fingerprint:sha-256 {caller.fingerprint()}\r\n"
    )
    engine.do(Command.OFFER, T0, sdp=offer_sdp, **IDS, **{"transport-protocol": "RTP/AVP", "ICE": "remove"})
    answer = engine.do(Command.ANSWER, T0, sdp=sdp(40002, "127.0.0.3"), **IDS, **{"to-tag": "B"})
    assert "a=setup:passive" in answer["sdp"] and "a=rtcp-mux" not in answer["sdp"], answer["sdp"]
    port = int(re.search(r"m=audio (\d+)", answer["sdp"])[1])  # type: ignore[index]
    karls = re.search(r"a=fingerprint:sha-256 (\S+)", answer["sdp"])[1]  # type: ignore[index]
    karl = credentials_in(answer["sdp"])
    # ICE verifies the RTP component only
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    engine.core.handle_stun(port, data, caller_rtp, T0)
    karls_check_answered(engine, port, caller_rtp, CALLER.pwd, T0)
    client = DtlsSession(caller, active=True, fingerprints=[("sha-256", karls)])
    client.start(T0)
    [hello] = client.take_datagrams()
    assert engine.core.handle_dtls(port + 1, hello, caller_rtp, T0) == [], "verified for RTP, not RTCP"
    assert engine.core.handle_dtls(port + 1, hello, caller_rtcp, T0) == [], "not verified by ICE yet"
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    engine.core.handle_stun(port + 1, data, caller_rtcp, T0)
    effects = karls_check_answered(engine, port + 1, caller_rtcp, CALLER.pwd, T0)
    flight = [e for e in effects if isinstance(e, SendDatagram) and e.port == port + 1]
    assert flight and all(e.destination == caller_rtcp for e in flight), "answered where ICE verified"
    for reply in flight:
        client.handle_datagram(reply.data, T0)
    pump(engine, port + 1, client, source=caller_rtcp)
    assert client.state is DtlsState.CONNECTED
    call = engine.core.find_call("d")
    assert call is not None
    caller_party = call.state.by_tag("A")
    assert caller_party is not None
    rtp, rtcp = call.ports[(caller_party.uid, 1)].streams()
    assert keyed_by(rtcp, client) and (rtp.srtp_in, rtp.srtp_out) == ("", ""), "the RTP port waits"
