"""A stream as the call store keeps it: built from its spec and what the data plane saw, and
what a restored stream carries on (sans-IO)."""

from __future__ import annotations

from dataclasses import replace

from karl_core.session import (
    Endpoint,
    PacketStreamState,
)
from karl_medianode.engine.media_view import StreamReading
from karl_medianode.engine.streams import StreamSpec


def stream_state(stream: StreamSpec, seen: StreamReading) -> PacketStreamState:
    return PacketStreamState(
        component=stream.component,
        local_address=stream.local_ip,
        local_port=stream.port,
        advertised=stream.sdp_peer,
        endpoint=Endpoint(*seen.endpoint) if seen.endpoint is not None else None,
        confirmed=seen.confirmed,
        packets=seen.packets,
        bytes=seen.bytes,
        errors=seen.errors,
        last_packet=seen.last_packet,
        lost=seen.lost,
        learned=Endpoint(*seen.learned) if seen.learned is not None else None,
        policy=stream.policy,
        signalled=stream.signalled,
        counters=seen.stored_counters(),
        last_rtp=None
        if seen.last_payload_type is None or seen.last_ssrc is None
        else (seen.last_payload_type, seen.last_ssrc),
        last_rtcp_ssrc=seen.last_rtcp_ssrc,
        srtp_in=seen.srtp_received,
        srtp_out=seen.srtp_sent,
    )


def restored_for(saved: PacketStreamState, same_host: bool) -> PacketStreamState:
    """What a restored stream carries on. On another host the parties' NATs may map differently:
    learn again, sending where we did so far."""
    return replace(saved, confirmed=saved.confirmed and same_host, counters=dict(saved.counters))
