"""The engine's effects: what it asks of the data plane for each request, with no socket anywhere.

The fake data plane (`FakeMedia`) checks that no port is opened twice or closed without having been
opened; the tests check that the streams open are always exactly the streams the engine's calls have,
that failed requests ask for nothing, and that ports reserved by a failed change go back to the pool.
"""

from __future__ import annotations

import pytest

from engine.engine_kit import T0, Engine, request, sdp
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_medianode.engine import (
    CallChanged,
    CallEnded,
    CloseStream,
    ConfigureStream,
    Effect,
    OpenStream,
    StreamSpec,
)
from karl_medianode.engine.effects import Outcome


def kinds(effects: list[Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def in_sync(engine: Engine) -> None:
    """The data plane has exactly the streams the engine's calls have, configured as they say."""
    specs = {port: s for call in engine.core.all_calls() for port, s in call.stream_table().items()}
    assert set(engine.media.open) == set(specs)
    configured: dict[int, StreamSpec] = {}
    for effect in engine.media.effects:
        if isinstance(effect, ConfigureStream):
            configured[effect.spec.port] = effect.spec
    for port, spec in specs.items():
        assert configured[port] == spec, f"port {port}: the data plane was not told its latest setup"
    assert engine.ports.taken == set(specs), "every reserved port is open, every open port reserved"
    for call in engine.core.all_calls():
        own = {spec.port for spec in call.all_streams()}
        for spec in call.all_streams():
            assert {spec.sink, spec.rtcp_sink} - {None} <= own, f"{spec} forwards out of its call"


def offer(engine: Engine, now: float = T0, call_id: str = "c", port: int = 40000, **extra: object) -> Outcome:
    body = {"call-id": call_id, "from-tag": "A", "sdp": sdp(port), **extra}
    outcome = engine.core.handle(Command.OFFER, request(Command.OFFER, **body), now)
    engine.media.apply(outcome.effects)
    return outcome


def answer(engine: Engine, now: float = T0, call_id: str = "c", tag: str = "B", port: int = 40002) -> Outcome:
    body = {"call-id": call_id, "from-tag": "A", "to-tag": tag, "sdp": sdp(port)}
    outcome = engine.core.handle(Command.ANSWER, request(Command.ANSWER, **body), now)
    engine.media.apply(outcome.effects)
    return outcome


def test_an_offer_opens_and_configures_both_sides_then_reports_the_change() -> None:
    engine = Engine()
    outcome = offer(engine)
    assert outcome.reply["result"] == "ok"
    assert kinds(outcome.effects) == ["OpenStream"] * 4 + ["ConfigureStream"] * 4 + ["CallChanged"]
    opened = [e.spec for e in outcome.effects if isinstance(e, OpenStream)]
    advertised = int(outcome.reply["sdp"].split("m=audio ")[1].split()[0])
    assert advertised in {s.port for s in opened}, "the SDP names a port the data plane opens"
    caller = next(s for s in opened if s.sdp_peer is not None and s.component == 1)
    assert caller.sdp_peer is not None
    assert (caller.sdp_peer.address, caller.sdp_peer.port) == ("127.0.0.1", 40000)
    assert outcome.effects[-1] == CallChanged("c")
    in_sync(engine)


def test_an_answer_opens_nothing_new_and_wires_the_parties_to_each_other() -> None:
    engine = Engine()
    offer(engine)
    outcome = answer(engine)
    assert not any(isinstance(e, OpenStream | CloseStream) for e in outcome.effects)
    call = engine.core.find_call("c")
    assert call is not None
    a, b = call.state.by_tag("A"), call.state.by_tag("B")
    assert a is not None and b is not None
    a_rtp, b_rtp = call.ports[(a.uid, 1)].rtp, call.ports[(b.uid, 1)].rtp
    assert a_rtp is not None and b_rtp is not None
    assert (a_rtp.sink, b_rtp.sink) == (b_rtp.port, a_rtp.port)
    assert b_rtp.sdp_peer is not None and b_rtp.sdp_peer.port == 40002
    in_sync(engine)


def test_a_failed_reoffer_asks_for_nothing_and_gives_its_ports_back() -> None:
    engine = Engine(port_min=20000, port_max=20005)  # three pairs: enough for audio, not for video too
    offer(engine)
    answer(engine)
    query = request(Command.QUERY, **{"call-id": "c"})
    before = engine.core.handle(Command.QUERY, query, T0 + 1).reply
    taken = set(engine.ports.taken)
    video = sdp(40010) + "m=video 40012 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
    with pytest.raises(NgError, match="Ran out of ports"):
        engine.core.handle(
            Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": video}), T0 + 2
        )
    assert engine.core.take_effects() == []
    assert engine.ports.taken == taken
    assert engine.core.handle(Command.QUERY, query, T0 + 1).reply == before
    assert engine.core.counters.failed_changes == 1 and engine.core.counters.ports_exhausted == 1
    in_sync(engine)


def test_a_first_offer_that_fails_leaves_no_call_and_no_port() -> None:
    engine = Engine(port_min=20000, port_max=20002)  # one pair and a single port: the offer needs two pairs
    with pytest.raises(NgError, match="Ran out of ports"):
        offer(engine)
    assert engine.core.calls == {} and engine.ports.taken == set() and engine.core.take_effects() == []


def test_delete_blocks_then_the_delay_closes_everything_and_reports_the_end() -> None:
    engine = Engine(delete_delay=5.0)
    offer(engine)
    answer(engine)
    deleted = engine.core.handle(Command.DELETE, request(Command.DELETE, **{"call-id": "c"}), T0 + 10)
    engine.media.apply(deleted.effects)
    assert kinds(deleted.effects) == ["ConfigureStream"] * 4 + ["CallChanged"]
    assert all(e.spec.blocked for e in deleted.effects if isinstance(e, ConfigureStream))
    effects = engine.tick(T0 + 15)
    assert kinds(effects) == ["CloseStream"] * 4 + ["CallEnded"]
    ended = effects[-1]
    assert isinstance(ended, CallEnded) and (ended.reason, ended.ended) == ("deleted", T0 + 10)
    assert ended.state is not None and len(ended.state.monologues) == 2
    assert engine.ports.taken == set()
    in_sync(engine)


def test_offer_and_delete_at_the_same_instant_leave_nothing_open() -> None:
    engine = Engine()
    for n in range(50):
        offer(engine, call_id=f"c{n}")
        gone = engine.core.handle(
            Command.DELETE, request(Command.DELETE, **{"call-id": f"c{n}", "delete-delay": 0}), T0
        )
        engine.media.apply(gone.effects)
        assert isinstance(gone.effects[-1], CallEnded)
    assert engine.core.calls == {} and engine.media.open == {} and engine.ports.taken == set()


def test_a_second_fork_answering_moves_the_offerer_to_new_ports_and_keeps_the_old_ones() -> None:
    """As 10.5 (probed with `ss`): the offerer's sockets towards the first fork stay bound, idle, and
    are its again when that fork answers again; nothing is closed or opened then."""
    engine = Engine()
    offer(engine)
    first = answer(engine, tag="B1")
    first_port = m_port(first.reply["sdp"])
    outcome = answer(engine, tag="B2", port=40020)
    assert not [e for e in outcome.effects if isinstance(e, CloseStream)]
    opened = {e.spec.port for e in outcome.effects if isinstance(e, OpenStream)}
    assert m_port(outcome.reply["sdp"]) in opened and first_port not in opened
    idle = [e.spec for e in outcome.effects if isinstance(e, ConfigureStream) and e.spec.port == first_port]
    assert idle and idle[0].blocked and idle[0].sink is None
    in_sync(engine)
    again = answer(engine, tag="B1")
    assert m_port(again.reply["sdp"]) == first_port
    assert not [e for e in again.effects if isinstance(e, (OpenStream, CloseStream))]
    in_sync(engine)
    delete = engine.core.handle(Command.DELETE, request(Command.DELETE, **{"call-id": "c"}), T0 + 1)
    engine.media.apply(delete.effects)
    engine.media.apply(engine.core.handle_timer(T0 + 1000))
    assert not engine.media.open and not engine.ports.taken, "every kept socket is closed with the call"


def test_a_fork_answer_that_fails_leaves_the_offerers_kept_sockets_as_they_were() -> None:
    engine = Engine(port_min=20000, port_max=20009)  # room for the offer and one more fork
    offer(engine)
    first_port = m_port(answer(engine, tag="B1").reply["sdp"])
    second_port = m_port(answer(engine, tag="B2", port=40020).reply["sdp"])
    with pytest.raises(NgError):
        answer(engine, tag="B3", port=40040)  # out of ports half-way
    in_sync(engine)
    assert m_port(answer(engine, tag="B1").reply["sdp"]) == first_port
    assert m_port(answer(engine, tag="B2", port=40020).reply["sdp"]) == second_port
    in_sync(engine)


def test_a_node_restored_after_a_second_fork_answered_goes_on_with_the_ports_in_use() -> None:
    """The kept sockets of an earlier fork are not in the call's stored state: after a restart, that
    fork answering again gets the offerer's ports in use, and nothing is opened or closed."""
    first = Engine()
    offer(first)
    answer(first, tag="B1")
    in_use = m_port(answer(first, tag="B2", port=40020).reply["sdp"])
    state = first.core.snapshot("c")
    assert state is not None
    second = Engine()
    _call, effects = second.core.restore(state, T0 + 100)
    second.media.apply(effects)
    again = answer(second, T0 + 101, tag="B1")
    assert m_port(again.reply["sdp"]) == in_use
    assert not [e for e in again.effects if isinstance(e, (OpenStream, CloseStream))]
    in_sync(second)


def m_port(sdp: str) -> int:
    return int(next(line for line in sdp.split("\r\n") if line.startswith("m=")).split()[1])


def test_a_fork_that_lost_forwards_nowhere_not_into_the_call_that_gets_its_old_port() -> None:
    engine = Engine(port_min=20000, port_max=20019)
    offer(engine, call_id="c1")
    answer(engine, call_id="c1", tag="B1")
    answer(engine, call_id="c1", tag="B2", port=40020)  # the caller moves to new ports towards B2
    offer(engine, call_id="c2")
    offer(engine, call_id="c3")  # may get the ports B1's streams used to send to
    body = {"call-id": "c1", "from-tag": "B1"}
    outcome = engine.core.handle(Command.UNBLOCK_MEDIA, request(Command.UNBLOCK_MEDIA, **body), T0 + 1)
    engine.media.apply(outcome.effects)
    in_sync(engine)


def test_block_media_reconfigures_only_the_streams_it_changes() -> None:
    engine = Engine()
    offer(engine)
    answer(engine)
    body = {"call-id": "c", "from-tag": "A"}
    outcome = engine.core.handle(Command.BLOCK_MEDIA, request(Command.BLOCK_MEDIA, **body), T0 + 1)
    engine.media.apply(outcome.effects)
    configured = [e.spec for e in outcome.effects if isinstance(e, ConfigureStream)]
    # the sockets the caller sends to (its RTP and RTCP), and nothing else
    assert len(configured) == 2 and all(s.blocked and s.party == "A" for s in configured)
    in_sync(engine)


def test_a_restored_call_opens_its_streams_on_the_same_ports_with_what_they_learned() -> None:
    first = Engine()
    offer(first)
    answer(first)
    a_port = next(iter(first.media.open))
    first.media.arrive(a_port, T0 + 3)
    state = first.core.snapshot("c")
    assert state is not None
    second = Engine()
    call, effects = second.core.restore(state, T0 + 100)
    second.media.apply(effects)
    opened = [e for e in effects if isinstance(e, OpenStream)]
    assert {e.spec.port for e in opened} == set(first.media.open)
    assert all(e.restored is not None for e in opened)
    assert next(e for e in opened if e.spec.port == a_port).restored.packets == 1  # type: ignore[union-attr]
    assert not any(isinstance(e, CallChanged) for e in effects), "nothing new to store"
    assert call.state.last_activity == T0 + 100
    in_sync(second)


def test_restored_elsewhere_with_the_ports_taken_gets_new_ones_and_learns_again() -> None:
    first = Engine()
    offer(first)
    state = first.core.snapshot("c")
    assert state is not None
    other = Engine()
    for port in first.media.open:
        other.ports.reserve_port(port)  # someone holds them there
    _, effects = other.core.restore(state, T0 + 100, same_host=False)
    opened = [e for e in effects if isinstance(e, OpenStream)]
    assert len(opened) == 4 and not {e.spec.port for e in opened} & set(first.media.open)
    assert all(e.restored is not None and not e.restored.confirmed for e in opened)


def test_a_tick_with_nothing_due_asks_for_nothing() -> None:
    engine = Engine(timeout=60.0)
    offer(engine)
    answer(engine)
    assert engine.tick(T0 + 30) == []


def test_a_spec_copy_is_equal_and_independent() -> None:
    from dataclasses import fields

    from karl_core.session import Endpoint

    spec = StreamSpec(20000, "127.0.0.2", "c", "A", 2, Endpoint("127.0.0.1", 5), signals=3, sink=20002)
    copied = spec.copy()
    assert copied == spec and copied is not spec
    assert [getattr(copied, f.name) for f in fields(StreamSpec)] == [
        getattr(spec, f.name) for f in fields(StreamSpec)
    ]
    copied.blocked = True
    assert not spec.blocked


def test_the_stored_document_is_the_snapshot_and_leaves_the_live_call_alone() -> None:
    engine = Engine()
    offer(engine)
    answer(engine)
    engine.media.arrive(next(iter(engine.media.open)), T0 + 2)
    call = engine.core.find_call("c")
    assert call is not None
    before = call.state.clone()
    snapshot = engine.core.snapshot("c")
    assert snapshot is not None
    document = engine.core.state_document("c")
    assert document == snapshot.to_dict()
    assert any(media["streams"] for mono in document["monologues"] for media in mono["medias"])
    assert call.state == before, "serialising must not change the live call"
    assert engine.core.state_document("no such call") is None


def _audio_and_video(audio_port: int, video_port: int, version: int = 1) -> str:
    video = "m=video 0 RTP/AVP 96\r\n" if video_port == 0 else f"m=video {video_port} RTP/AVP 96\r\n"
    return (
        f"v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {audio_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        f"{video}a=rtpmap:96 H264/90000\r\n"
    )


def _video_port(reply: dict[str, object]) -> int:
    [line] = [line for line in str(reply["sdp"]).split("\r\n") if line.startswith("m=video")]
    return int(line.split()[1])


def test_a_media_the_answer_rejects_keeps_its_sockets_idle_for_a_reoffer_of_it() -> None:
    """10.5 keeps the sockets of a media the answer rejects (bound, relaying nothing, not in `query`)
    and gives them to a re-offer of that media: the re-offer advertises the same ports."""
    engine = Engine()
    first = engine.do(
        Command.OFFER, T0, **{"call-id": "c", "from-tag": "A", "sdp": _audio_and_video(40000, 40010)}
    )
    video_port = _video_port(first)
    answer_body = {"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": _audio_and_video(40002, 0)}
    before = len(engine.media.effects)
    assert _video_port(engine.do(Command.ANSWER, T0, **answer_body)) == 0
    assert not [e for e in engine.media.effects[before:] if isinstance(e, CloseStream)], "nothing closed"
    in_sync(engine)
    [call] = engine.core.all_calls()
    parked = [s for ports in call.ports.values() for s in ports.parked]
    assert len(parked) == 4 and all(s.blocked and s.sink is None and s.sdp_peer is None for s in parked)
    assert video_port not in {s.port for s in call.all_streams()}, "not shown as the call's streams"
    query = engine.do(Command.QUERY, T0, **{"call-id": "c"})
    shown = [
        stream.get("local port")
        for tag in query["tags"].values()
        for media in tag["medias"]
        for stream in media["streams"]
    ]
    assert video_port not in shown
    again = engine.do(
        Command.OFFER, T0 + 1, **{"call-id": "c", "from-tag": "A", "sdp": _audio_and_video(40000, 40010, 2)}
    )
    assert _video_port(again) == video_port
    in_sync(engine)
    engine.do(Command.DELETE, T0 + 2, **{"call-id": "c", "delete-delay": 0})
    assert not engine.media.open and not engine.ports.taken, "every port given back at the end"


def test_a_reoffer_that_fails_after_taking_up_parked_sockets_parks_them_again() -> None:
    """A re-offer takes the rejected video's sockets back, then runs out of ports for a third media
    and fails: the call is as before it, the video's sockets parked, and a later re-offer gets them."""
    engine = Engine(port_min=20000, port_max=20007)  # the first offer's 8 ports, no more
    first = engine.do(
        Command.OFFER, T0, **{"call-id": "c", "from-tag": "A", "sdp": _audio_and_video(40000, 40010)}
    )
    video_port = _video_port(first)
    engine.do(
        Command.ANSWER,
        T0,
        **{"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": _audio_and_video(40002, 0)},
    )
    third = _audio_and_video(40000, 40010, 2) + "m=audio 40020 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    before = len(engine.media.effects)
    with pytest.raises(NgError):
        engine.core.handle(
            Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": third}), T0 + 1
        )
    assert len(engine.media.effects) == before
    [call] = engine.core.all_calls()
    assert len([s for ports in call.ports.values() for s in ports.parked]) == 4
    in_sync(engine)
    again = engine.do(
        Command.OFFER, T0 + 2, **{"call-id": "c", "from-tag": "A", "sdp": _audio_and_video(40000, 40010, 3)}
    )
    assert _video_port(again) == video_port
    in_sync(engine)


def muxed(port: int) -> str:
    return sdp(port).replace("a=sendrecv\r\n", "a=sendrecv\r\na=rtcp-mux\r\n")


def test_a_muxing_offerer_answered_by_a_second_fork_shares_its_rtcp_socket_and_nothing_leaks() -> None:
    """As 10.5: the muxing offerer's sockets for a second fork are one port, its RTCP stream keeps the
    socket it had (also kept, idle, for the first fork); the first fork answering again takes its
    sockets back; nothing is opened twice, every port is closed with the call."""
    engine = Engine()
    body = {"call-id": "c", "from-tag": "A"}
    engine.do(Command.OFFER, T0, **body, sdp=muxed(40000))
    first = engine.do(Command.ANSWER, T0, **body, **{"to-tag": "B1"}, sdp=muxed(40002))
    in_sync(engine)
    second = engine.do(Command.ANSWER, T0, **body, **{"to-tag": "B2"}, sdp=muxed(40020))
    in_sync(engine)
    call = engine.core.calls["c"]
    caller = call.state.by_tag("A")
    assert caller is not None
    sockets = call.ports[(caller.uid, 1)]
    assert sockets.rtp is not None and sockets.rtcp is not None
    assert m_port(second["sdp"]) == sockets.rtp.port != m_port(first["sdp"])
    assert sockets.rtcp.port == m_port(first["sdp"]) + 1, "the RTCP stream keeps the socket it had"
    again = engine.do(Command.ANSWER, T0, **body, **{"to-tag": "B1"}, sdp=muxed(40002))
    assert m_port(again["sdp"]) == m_port(first["sdp"])
    in_sync(engine)
    engine.do(Command.DELETE, T0 + 1, **{"call-id": "c", "delete-delay": 0})
    engine.tick(T0 + 1000)
    assert not engine.media.open and not engine.ports.taken, "every socket is closed with the call"
