"""The failover event's pure parts (`karl_medianode.control.failover_event`): the event id is the same
for the same move and differs between moves, and the SDP for a party gets Karl's new address and ports
per m= line (RTCP on the next port) and an o= version one higher, everything else untouched."""

from __future__ import annotations

from karl_core.session.model import MediaState, Monologue, PacketStreamState
from karl_medianode.control.failover_event import event_id, readdressed

SENT = (
    "v=0\r\no=- 42 7 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 101\r\na=rtcp:30001 IN IP4 192.0.2.1\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 30002 RTP/AVP 96\r\nc=IN IP4 192.0.2.1\r\na=rtcp:30003\r\n"
    "m=text 0 RTP/AVP 98\r\n"
)


def mono_on(ports: list[int | None]) -> Monologue:
    medias = []
    for index, port in enumerate(ports):
        streams = [] if port is None else [PacketStreamState(1, "203.0.113.9", port)]
        medias.append(MediaState(index, "audio", "RTP/AVP", streams=streams))
    return Monologue(uid=1, tag="A", medias=medias)


def test_the_event_id_names_one_move() -> None:
    assert event_id("c1@host", 5) == event_id("c1@host", 5)
    assert len({event_id("c1@host", 5), event_id("c1@host", 6), event_id("c2@host", 5)}) == 3


def test_readdressed_moves_addresses_ports_and_the_version_only() -> None:
    text = readdressed(SENT, mono_on([40000, 40010, None]), "198.51.100.7")
    assert text == (
        "v=0\r\no=- 42 8 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtcp:40001 IN IP4 198.51.100.7\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "m=video 40010 RTP/AVP 96\r\nc=IN IP4 198.51.100.7\r\na=rtcp:40011\r\n"
        "m=text 0 RTP/AVP 98\r\n"
    )
    # without an advertised address: the socket's
    assert "c=IN IP4 203.0.113.9" in readdressed(SENT, mono_on([40000, 40010, None]))
