"""The session model's serialization: stable, versioned, lossless (it is what Redis will store)."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from karl_core.session import (
    SCHEMA_VERSION,
    CallState,
    Codec,
    Endpoint,
    EndpointLearning,
    MediaState,
    PacketStreamState,
    SessionSchemaError,
    SrtpProgress,
    StreamPolicy,
)


def sample_call() -> CallState:
    call = CallState("abc@host", created=1700000000.25, last_signal=1700000001.5)
    caller = call.new_monologue(1700000000.25, "from-tag-1")
    callee = call.new_monologue(1700000000.25)
    caller.partner, callee.partner = callee.uid, caller.uid
    callee.answerer = True
    callee.via_branch = "z9hG4bK.1"
    caller.label = "caller"
    media = MediaState(
        1,
        "audio",
        "RTP/AVP",
        formats=["0", "8", "101"],
        codecs=[
            Codec(0, "PCMU", 8000),
            Codec(8, "PCMA", 8000),
            Codec(101, "telephone-event", 8000, None, "0-16"),
        ],
        ptime=20,
        rtcp_mux_offered=True,
        advertised_rtcp=Endpoint("192.0.2.10", 4001),
        flags={"mux-demux", "asymmetric"},
        streams=[
            PacketStreamState(
                1,
                "203.0.113.1",
                30000,
                Endpoint("192.0.2.10", 4000),
                None,
                False,
                5,
                860,
                lost=2,
                learned=Endpoint("198.51.100.7", 4000),
                policy=StreamPolicy(EndpointLearning.HEURISTIC, strict_source=True),
                signalled=1700000001.5,
                counters={"rtcp_packets": 1, "dropped_source": 3},
                last_rtp=(0, 0x1234ABCD),
                srtp_in=(SrtpProgress(0x1234ABCD, 2, 0, 1234),),
                srtp_out=(SrtpProgress(0x0BADCAFF, 0, 140), SrtpProgress(0x0BADCAFE, 1, 140, 77)),
            ),
            PacketStreamState(2, "203.0.113.1", 30001, Endpoint("192.0.2.10", 4001), last_rtcp_ssrc=77),
        ],
        offered_payload_types=[0, 8, 101],
        sdp_address="192.0.2.10",
        sdp_port=4000,
        ice_ufrag="Kx7fQ2aZ",
        ice_pwd="a8F3kLq0ZpW2mN5vB7xC9dE1gH",
        ice_remote_ufrag="Wq3b",
        ice_remote_pwd="Jd2kf8s9d0f7g6h5j4k3l2m1",
        ice_candidates=["842163049 1 udp 1677729535 192.0.2.10 4000 typ host generation 0"],
        dtls_setup="active",
        dtls_hash="sha-256",
        dtls_fingerprints=[
            "sha-256 7B:8C:5E:2A:91:0F:3D:44:6E:A1:B2:C3:D4:E5:F6:07:"
            "18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07"
        ],
        dtls_remote_setup="actpass",
        dtls_keys=[
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        ],
        dtls_rtcp_keys=[
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0IG9mIHRoZSBydGNwIHBvcnQsIGthcmxz",
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0IG9mIHRoZSBydGNwIHBvcnQsIHBhcnR5",
        ],
    )
    caller.medias.append(media)
    callee.medias.append(
        MediaState(
            1,
            "audio",
            "RTP/AVP",
            send=True,
            recv=False,
            sdes_ours=[
                "1 AEAD_AES_256_GCM inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MA",
                "7 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            ],
            sdes_theirs=["7 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20"],
            sdes_tag=7,
            sdes_pending=["2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"],
            sdes_refused=["3 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"],
        )
    )
    caller.former_partners.append(7)
    call.answered = True
    call.last_activity = 1700000002.0
    call.quality = {"reports": 2, "entries": [], "xr_round_trips": []}
    call.nodes = ["node-a", "node-b"]
    return call


def without_schema_7(call: CallState) -> CallState:
    """What a call serialized before schema 7 reads as: no SRTP progress (counters from zero); a separate
    RTCP port keyed by the RTP port's handshake (as then)."""
    for mono in call.monologues.values():
        for media in mono.medias:
            media.streams = [replace(stream, srtp_in=(), srtp_out=()) for stream in media.streams]
            media.sdes_refused = []
            media.dtls_rtcp_keys = list(media.dtls_keys) if media.dtls_keys and not media.rtcp_mux else []
    return call


def without_schema_6(call: CallState) -> CallState:
    """What a call serialized before schema 6 reads as: no ICE or DTLS on Karl's side."""
    without_schema_7(call)
    for mono in call.monologues.values():
        for media in mono.medias:
            media.ice_ufrag = media.ice_pwd = media.ice_remote_ufrag = media.ice_remote_pwd = None
            media.ice_candidates = []
            media.dtls_setup = media.dtls_hash = media.dtls_remote_setup = None
            media.dtls_fingerprints, media.dtls_keys, media.dtls_rtcp_keys = [], [], []
    return call


def without_schema_5(call: CallState) -> CallState:
    """What a call serialized before schema 5 reads as: no SDES-SRTP terminated."""
    without_schema_6(call)
    for mono in call.monologues.values():
        for media in mono.medias:
            media.sdes_ours, media.sdes_theirs, media.sdes_tag, media.sdes_pending = [], [], None, []
    return call


def without_schema_4(call: CallState) -> CallState:
    """What a call serialized before schema 4 reads as: the nodes it passed through unknown."""
    without_schema_5(call)
    call.nodes = []
    return call


def without_schema_3(call: CallState) -> CallState:
    """What a call serialized before schema 3 reads as: the newer fields at their defaults."""
    without_schema_4(call)
    call.last_activity = call.last_signal
    call.ended_at = None
    call.quality = {}
    for mono in call.monologues.values():
        for media in mono.medias:
            for stream in media.streams:
                stream.learned = None
                stream.policy = StreamPolicy()
                stream.signalled = 0.0
                stream.counters = {}
                stream.last_rtp = None
                stream.last_rtcp_ssrc = None
    return call


def test_round_trip_is_lossless_and_json_safe() -> None:
    call = sample_call()
    data = call.to_dict()
    assert data["schema"] == SCHEMA_VERSION
    text = json.dumps(data, sort_keys=True)
    again = CallState.from_dict(json.loads(text))
    assert again == call
    assert json.dumps(again.to_dict(), sort_keys=True) == text, "serialization must be stable"


def test_lookup_helpers() -> None:
    call = sample_call()
    caller = call.by_tag("from-tag-1")
    assert caller is not None and call.by_label("caller") is caller
    assert call.partner_of(caller) is not None and call.partner_of(caller).answerer  # type: ignore[union-attr]
    assert call.by_tag("") is None, "an untagged party is never found by the empty tag"


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"schema": SCHEMA_VERSION + 1, "call_id": "x", "created": 0, "last_signal": 0},
        {"schema": SCHEMA_VERSION, "created": 0, "last_signal": 0},
        {"schema": SCHEMA_VERSION, "call_id": "x", "created": "soon", "last_signal": 0},
        {
            "schema": SCHEMA_VERSION,
            "call_id": "x",
            "created": 0,
            "last_signal": 0,
            "monologues": [{"tag": "a"}],
        },
    ],
)
def test_unreadable_state_is_a_schema_error(data: Any) -> None:
    with pytest.raises(SessionSchemaError):
        CallState.from_dict(data)


@given(
    address=st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    port=st.integers(0, 65535),
    name=st.text(min_size=1, max_size=20),
    pt=st.integers(0, 127),
    clock=st.integers(1, 192000),
    fmtp=st.one_of(st.none(), st.text(max_size=40)),
)
def test_leaves_round_trip(address: str, port: int, name: str, pt: int, clock: int, fmtp: str | None) -> None:
    endpoint = Endpoint(address, port)
    assert Endpoint.from_dict(json.loads(json.dumps(endpoint.to_dict()))) == endpoint
    assert endpoint.family == ("IPv6" if ":" in address else "IPv4")
    codec = Codec(pt, name, clock, None, fmtp, ["nack"])
    assert Codec.from_dict(json.loads(json.dumps(codec.to_dict()))) == codec


def test_schema_v7_is_pinned_by_a_stored_document() -> None:
    """A change of the serialized form must be deliberate: bump SCHEMA_VERSION and add a sample. Schema
    7 is written compact (keys at their default left out, `call-v7-compact.json`); its full form, every
    key written (`call-v7.json`, what Karl wrote before), reads as the same call."""
    from pathlib import Path

    samples = Path(__file__).with_name("session_samples")
    full = json.loads((samples / "call-v7.json").read_text())
    compact = json.loads((samples / "call-v7-compact.json").read_text())
    assert full["schema"] == compact["schema"] == 7 == SCHEMA_VERSION
    assert CallState.from_dict(full) == sample_call()
    assert CallState.from_dict(compact) == sample_call()
    assert sample_call().to_dict() == compact
    assert len(json.dumps(compact)) < 0.8 * len(json.dumps(full))


def test_compact_documents_leave_out_only_what_reads_back_as_the_default() -> None:
    """A call whose every field is at its default is written with the keys a reader needs only, and
    reads back whole."""
    from pathlib import Path

    full = json.loads((Path(__file__).with_name("session_samples") / "call-v7.json").read_text())
    bare = CallState("bare", 1.0, 1.0, last_activity=1.0)
    mono = bare.new_monologue(0.0)
    mono.medias.append(MediaState(1, "audio", "RTP/AVP"))
    mono.medias[0].streams.append(PacketStreamState(1, "127.0.0.1", 20000))
    document = bare.to_dict()
    assert CallState.from_dict(json.loads(json.dumps(document))) == bare
    stream = document["monologues"][0]["medias"][0]["streams"][0]
    assert set(stream) == {"component", "local_address", "local_port"}
    assert set(document["monologues"][0]["medias"][0]) == {"index", "type", "protocol", "streams"}
    assert set(document["monologues"][0]) == {"uid", "medias"}
    assert set(document) == {
        *("schema", "call_id", "created", "last_signal", "last_activity", "next_uid", "monologues")
    }
    # the sample call, where (nearly) every field has a value of its own, reads back whole from both
    assert CallState.from_dict(json.loads(json.dumps(sample_call().to_dict()))) == sample_call()
    assert CallState.from_dict(full) == sample_call()


def test_schema_v6_documents_are_still_read() -> None:
    """Version 6 (before SRTP progress) reads with none: rollover counters from zero."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v6.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 6
    assert CallState.from_dict(document) == without_schema_7(sample_call())


def test_schema_v5_documents_are_still_read() -> None:
    """Version 5 (before ICE) reads with no ICE credentials."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v5.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 5
    assert CallState.from_dict(document) == without_schema_6(sample_call())


def test_schema_v4_documents_are_still_read() -> None:
    """Version 4 (before SDES-SRTP termination) reads with no keys."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v4.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 4
    assert CallState.from_dict(document) == without_schema_5(sample_call())


def test_schema_v3_documents_are_still_read() -> None:
    """Version 3 (before the nodes a call passed through) reads with none."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v3.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 3
    assert CallState.from_dict(document) == without_schema_4(sample_call())


def test_schema_v2_documents_are_still_read() -> None:
    """Version 2 (before stream policy, learned addresses and activity times) reads with defaults."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v2.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 2
    assert CallState.from_dict(document) == without_schema_3(sample_call())


def test_schema_v1_documents_are_still_read() -> None:
    """Version 1 (before per-stream loss) reads as the same call with `lost` 0."""
    from pathlib import Path

    stored = Path(__file__).with_name("session_samples") / "call-v1.json"
    document = json.loads(stored.read_text())
    assert document["schema"] == 1
    call = CallState.from_dict(document)
    expected = without_schema_3(sample_call())
    for mono in expected.monologues.values():
        for media in mono.medias:
            for stream in media.streams:
                stream.lost = 0
    assert call == expected


@pytest.mark.parametrize(
    "values",
    [
        [-1, 0, 0, 0],
        [1 << 32, 0, 0, 0],
        [1, -1, 0, 0],
        [1, 0, -5, 0],
        [1, 0, 0, 1 << 16],
        [1, 2],
        [1, 2, 3, 4, 5],
    ],
)
def test_srtp_progress_out_of_range_is_a_schema_error(values: list[int]) -> None:
    with pytest.raises(SessionSchemaError):
        SrtpProgress.from_list(values)


def _shared_mutables(original: Any, copied: Any, path: str = "state") -> list[str]:
    """Where `copied` shares a mutable object (list, dict, set, a dataclass that is not frozen) with
    `original`, walking every field of every dataclass: a field added later is covered without a change
    here."""
    mutable = isinstance(original, list | dict | set) or (
        is_dataclass(original) and not original.__dataclass_params__.frozen  # type: ignore[attr-defined]
    )
    if mutable and original is copied:
        return [path]
    shared: list[str] = []
    if is_dataclass(original) and not isinstance(original, type):
        for item in fields(original):
            name = item.name
            shared += _shared_mutables(getattr(original, name), getattr(copied, name), f"{path}.{name}")
    elif isinstance(original, dict):
        for key, value in original.items():
            shared += _shared_mutables(value, copied[key], f"{path}[{key!r}]")
    elif isinstance(original, list | tuple):
        for index, (value, other) in enumerate(zip(original, copied, strict=True)):
            shared += _shared_mutables(value, other, f"{path}[{index}]")
    return shared


def test_clone_is_an_equal_copy_that_shares_nothing_mutable() -> None:
    call = sample_call()
    call.quality = {"reports": 2, "entries": [{"ssrc": 1, "lost": [1, 2]}], "xr_round_trips": []}
    copied = call.clone()
    assert copied == call
    assert copied.to_dict() == call.to_dict()
    assert _shared_mutables(call, copied) == []
    # and changes to the copy stay there
    media = copied.monologues[1].medias[0]
    media.codecs[0].rtcp_fb.append("nack")
    media.streams[0].counters["rtcp_packets"] += 1
    media.streams[0].policy.asymmetric = True
    copied.quality["entries"][0]["lost"].append(3)
    assert call.to_dict() == sample_call().to_dict() | {"quality": call.quality}
    assert call.quality["entries"][0]["lost"] == [1, 2]


def test_clone_of_an_empty_call() -> None:
    call = CallState("empty", created=1.0, last_signal=1.0)
    copied = call.clone()
    assert copied == call and _shared_mutables(call, copied) == []


def test_the_socket_history_of_a_media_reads_back_and_is_left_out_at_its_default() -> None:
    """How many ports a party's sockets were first made with, and the RTCP endpoint kept while its
    `a=rtcp` names its RTP port (10.5's rules for later exchanges), go with the call's state."""
    media = MediaState(
        1, "audio", "RTP/AVP", ports_made_for=1, rtcp_endpoint_kept=Endpoint("192.0.2.1", 4001)
    )
    document = media.to_dict()
    assert document["ports_made_for"] == 1
    assert MediaState.from_dict(json.loads(json.dumps(document))) == media
    assert not {"ports_made_for", "rtcp_endpoint_kept"} & set(MediaState(1, "audio", "RTP/AVP").to_dict())
