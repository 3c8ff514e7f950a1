"""Session model shared by the media node (which acts on it) and Redis (which stores it).

A call holds monologues (one per SIP party, named by its tag; the not-yet-answered party is untagged),
each monologue holds one media per `m=` line, and each media one or two packet streams (RTP, RTCP).
`CallState.to_dict()` is the stable, versioned serialization: everything needed to rebuild the call
on another node. Runtime objects (sockets, counters of the relay) live outside this model.
"""

from __future__ import annotations

import enum
import ipaddress
import operator
from copy import deepcopy
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from karl_core.memo import short_text_cache

SCHEMA_VERSION = 7
READABLE_SCHEMAS = (1, 2, 3, 4, 5, 6, 7)
"""Versions `CallState.from_dict` reads: 1 lacks the streams' `lost` (read as 0); 1 and 2 lack the
streams' policy, learned address and further counters and the call's activity and end times (read as
the defaults: delayed learning, nothing learned, activity at the last signal); 1 to 3 lack the nodes
a call passed through; 1 to 4 lack the media's SDES-SRTP keys (read as none: not terminated); 1 to 5
lack ICE and DTLS; 1 to 6 lack the streams' SRTP progress (read as none: counters from zero)."""


class EndpointLearning(enum.StrEnum):
    """How a stream learns its party's real source address (rtpengine's `endpoint-learning`)."""

    OFF = "off"
    IMMEDIATE = "immediate"
    DELAYED = "delayed"
    HEURISTIC = "heuristic"

    @classmethod
    def parse(cls, value: str) -> EndpointLearning:
        """From the NG/command-line spelling, any case; KeyError for an unknown one."""
        return cls[value.strip().upper()]


_T = TypeVar("_T")


def _shallow_copy(obj: _T) -> _T:
    """A new instance of a (non-slots) dataclass with the same field values: each class's `copy` then
    replaces its mutable fields with copies."""
    copied = object.__new__(type(obj))
    copied.__dict__.update(obj.__dict__)
    return copied


class SessionSchemaError(ValueError):
    """A serialized call cannot be read (wrong version or malformed)."""


Address = tuple[str, int]
"""A socket address as sockets take and give it: (host, port). `Endpoint` is the same in call state."""


@short_text_cache(maxsize=4096, max_length=64)
def _is_unspecified_address(address: str) -> bool:
    """0.0.0.0 or :: in any spelling (cached: offers, answers and `query` ask for every endpoint, and
    `ipaddress` takes microseconds to parse one)."""
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int

    @property
    def family(self) -> str:
        return "IPv6" if ":" in self.address else "IPv4"

    @property
    def is_unspecified(self) -> bool:
        return _is_unspecified_address(self.address)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "port": self.port}

    def as_address(self) -> Address:
        return (self.address, self.port)

    @classmethod
    def from_dict(cls, data: Any) -> Endpoint | None:
        if data is None:
            return None
        return cls(str(data["address"]), int(data["port"]))


@dataclass
class Codec:
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None
    rtcp_fb: list[str] = field(default_factory=list)

    def copy(self) -> Codec:
        """A deep copy (see `CallState.clone`)."""
        copied = _shallow_copy(self)
        copied.rtcp_fb = list(self.rtcp_fb)
        return copied

    @property
    def encoding(self) -> str:
        text = f"{self.name}/{self.clock_rate}"
        return f"{text}/{self.channels}" if self.channels is not None else text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pt": self.payload_type, "name": self.name, "clock": self.clock_rate}
        if self.channels is not None:
            data["channels"] = self.channels
        if self.fmtp is not None:
            data["fmtp"] = self.fmtp
        if self.rtcp_fb:
            data["rtcp_fb"] = list(self.rtcp_fb)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Codec:
        return cls(
            int(data["pt"]),
            str(data["name"]),
            int(data["clock"]),
            None if data.get("channels") is None else int(data["channels"]),
            data.get("fmtp"),
            [str(x) for x in data.get("rtcp_fb", [])],
        )


@dataclass
class StreamPolicy:
    """How a stream treats its party's packets, as the signalling set it (rtpengine's flags)."""

    learning: EndpointLearning = EndpointLearning.DELAYED
    asymmetric: bool = False
    strict_source: bool = False
    media_handover: bool = False

    def copy(self) -> StreamPolicy:
        return StreamPolicy(self.learning, self.asymmetric, self.strict_source, self.media_handover)

    @property
    def is_default(self) -> bool:
        return (
            self.learning is EndpointLearning.DELAYED
            and not self.asymmetric
            and not self.strict_source
            and not self.media_handover
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "learning": self.learning.value,
            "asymmetric": self.asymmetric,
            "strict_source": self.strict_source,
            "media_handover": self.media_handover,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StreamPolicy:
        if not data:
            return cls()
        return cls(
            EndpointLearning(str(data.get("learning", "delayed"))),
            bool(data.get("asymmetric", False)),
            bool(data.get("strict_source", False)),
            bool(data.get("media_handover", False)),
        )


@dataclass(frozen=True, slots=True)
class SrtpProgress:
    """How far the SRTP of one SSRC got in one direction of a socket (schema 7): the rollover counter
    of its RTP, the last sequence number seen with it (-1: not known), and, where Karl protects, how many
    SRTCP packets it protected under the key (its busiest SSRC's count). A call restored on another node
    takes them up, so that the peer's SRTP state still fits Karl's and no index is used twice."""

    ssrc: int
    rollover: int = 0
    srtcp_sent: int = 0
    sequence: int = -1

    def __post_init__(self) -> None:
        if not (0 <= self.ssrc < 1 << 32 and 0 <= self.rollover < 1 << 32 and 0 <= self.srtcp_sent < 1 << 31):
            raise SessionSchemaError(f"SRTP progress out of range: {self}")
        if not -1 <= self.sequence < 1 << 16:
            raise SessionSchemaError(f"SRTP progress out of range: {self}")

    def to_list(self) -> list[int]:
        return [self.ssrc, self.rollover, self.srtcp_sent, self.sequence]

    @classmethod
    def from_list(cls, data: Any) -> SrtpProgress:
        values = [int(x) for x in data]
        if len(values) not in (3, 4):
            raise SessionSchemaError(f"SRTP progress of {len(values)} values")
        return cls(*values)


@dataclass
class PacketStreamState:
    """One local socket of a media (component 1 = RTP, 2 = RTCP) and the peer it talks to.

    `advertised` is what the party's SDP said (also an unspecified address: hold), `endpoint` where
    packets to the party go now, `learned` the source its packets came from (schema 3)."""

    component: int
    local_address: str
    local_port: int
    advertised: Endpoint | None = None
    endpoint: Endpoint | None = None
    confirmed: bool = False
    packets: int = 0
    bytes: int = 0
    errors: int = 0
    last_packet: float = 0.0
    lost: int = 0
    """RTP packets missing from the sequence numbers of what the party sent (schema 2)."""
    learned: Endpoint | None = None
    policy: StreamPolicy = field(default_factory=StreamPolicy)
    signalled: float = 0.0
    """Wall-clock time of the signalling that last restarted endpoint learning."""
    counters: dict[str, int] = field(default_factory=dict)
    """The relay's other counters of this socket by name (drops, RTCP, sequence), for totals that
    survive a restore."""
    last_rtp: tuple[int, int] | None = None
    """Payload type and SSRC of the last RTP received (what `query` shows)."""
    last_rtcp_ssrc: int | None = None
    """Sender SSRC of the last RTCP received."""
    srtp_in: tuple[SrtpProgress, ...] = ()
    """SRTP of what the party sends (Karl unprotects), per SSRC (schema 7)."""
    srtp_out: tuple[SrtpProgress, ...] = ()
    """SRTP of what Karl sends the party (Karl protects), per SSRC (schema 7)."""

    def copy(self) -> PacketStreamState:
        """A deep copy (see `CallState.clone`); endpoints, tuples and SRTP progress are immutable."""
        copied = _shallow_copy(self)
        copied.policy = self.policy.copy()
        copied.counters = dict(self.counters)
        return copied

    def to_dict(self) -> dict[str, Any]:
        """Compact: what `from_dict` reads as its default is left out (see `CallState.to_dict`)."""
        data: dict[str, Any] = {
            "component": self.component,
            "local_address": self.local_address,
            "local_port": self.local_port,
        }
        if self.advertised is not None:
            data["advertised"] = self.advertised.to_dict()
        if self.endpoint is not None:
            data["endpoint"] = self.endpoint.to_dict()
        if self.confirmed:
            data["confirmed"] = True
        if self.packets:
            data["packets"] = self.packets
            data["bytes"] = self.bytes
        elif self.bytes:
            data["bytes"] = self.bytes
        if self.errors:
            data["errors"] = self.errors
        if self.last_packet:
            data["last_packet"] = self.last_packet
        if self.lost:
            data["lost"] = self.lost
        if self.learned is not None:
            data["learned"] = self.learned.to_dict()
        if not self.policy.is_default:
            data["policy"] = self.policy.to_dict()
        if self.signalled:
            data["signalled"] = self.signalled
        if self.counters:
            data["counters"] = dict(sorted(self.counters.items()))
        if self.last_rtp is not None:
            data["last_rtp"] = list(self.last_rtp)
        if self.last_rtcp_ssrc is not None:
            data["last_rtcp_ssrc"] = self.last_rtcp_ssrc
        if self.srtp_in:
            data["srtp_in"] = [progress.to_list() for progress in self.srtp_in]
        if self.srtp_out:
            data["srtp_out"] = [progress.to_list() for progress in self.srtp_out]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PacketStreamState:
        return cls(
            int(data["component"]),
            str(data["local_address"]),
            int(data["local_port"]),
            Endpoint.from_dict(data.get("advertised")),
            Endpoint.from_dict(data.get("endpoint")),
            bool(data.get("confirmed", False)),
            int(data.get("packets", 0)),
            int(data.get("bytes", 0)),
            int(data.get("errors", 0)),
            float(data.get("last_packet", 0.0)),
            int(data.get("lost", 0)),
            Endpoint.from_dict(data.get("learned")),
            StreamPolicy.from_dict(data.get("policy")),
            float(data.get("signalled", 0.0)),
            {str(k): int(v) for k, v in (data.get("counters") or {}).items()},
            None if data.get("last_rtp") is None else (int(data["last_rtp"][0]), int(data["last_rtp"][1])),
            None if data.get("last_rtcp_ssrc") is None else int(data["last_rtcp_ssrc"]),
            tuple(SrtpProgress.from_list(x) for x in data.get("srtp_in") or ()),
            tuple(SrtpProgress.from_list(x) for x in data.get("srtp_out") or ()),
        )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _put_set(data: dict[str, Any], items: tuple[tuple[str, object], ...]) -> None:
    """A compact document's optional keys: each value that is not None (the reader's default)."""
    for key, value in items:
        if value is not None:
            data[key] = value


def _put_true(data: dict[str, Any], items: tuple[tuple[str, bool], ...]) -> None:
    """A compact document's flags: each one that is set (False is the reader's default)."""
    for key, value in items:
        if value:
            data[key] = True


def _put_lists(data: dict[str, Any], items: tuple[tuple[str, list[str]], ...]) -> None:
    """A compact document's lists: each one that is not empty (the reader's default), copied."""
    for key, values in items:
        if values:
            data[key] = list(values)


@dataclass(slots=True)
class MediaState:
    """One `m=` line of one party: what it offered/answered and the proxy's sockets towards it."""

    index: int
    media_type: str
    protocol: str
    formats: list[str] = field(default_factory=list)
    codecs: list[Codec] = field(default_factory=list)
    send: bool = True
    recv: bool = True
    ptime: int | None = None
    rejected: bool = False
    rtcp_mux_offered: bool = False
    rtcp_mux: bool = False
    advertised_rtcp: Endpoint | None = None
    mid: str | None = None
    flags: set[str] = field(default_factory=set)
    streams: list[PacketStreamState] = field(default_factory=list)
    # the connection address the party's SDP gave for this media (also for a rejected one)
    sdp_address: str | None = None
    sdp_port: int = 0
    # payload types the proxy offered to the *other* party for this media (filters its answer)
    offered_payload_types: list[int] = field(default_factory=list)
    # SDES-SRTP terminated by the proxy on this party's leg (schema 5): the `a=crypto` values (without
    # `a=crypto:`) the proxy gave this party (its keys for what it sends the party) and the party gave
    # (its keys for what it sends), the tag both agreed on (None: none agreed), and the party's lines
    # of an offer not answered yet (the agreed keys stay in force until the answer)
    sdes_ours: list[str] = field(default_factory=list)
    sdes_theirs: list[str] = field(default_factory=list)
    sdes_tag: int | None = None
    sdes_pending: list[str] = field(default_factory=list)
    sdes_refused: list[str] = field(default_factory=list)
    """Karl's lines the party answered plain (schema 7): a re-offer repeats them, as 10.5 does."""
    # ICE on this party's leg (schema 6): Karl's credentials towards the party (None: Karl speaks no
    # ICE to it), the party's credentials and the `a=candidate` values it gave (SDP and trickle)
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_remote_ufrag: str | None = None
    ice_remote_pwd: str | None = None
    ice_candidates: list[str] = field(default_factory=list)
    ice_kept_ufrag: str | None = None
    ice_kept_pwd: str | None = None
    """Karl's credentials towards the party from when it last spoke ICE to it: when it does again, it
    takes them up again, as 10.5 keeps them for the whole call (None: never an agent towards it)."""
    # DTLS-SRTP terminated by the proxy on this party's leg (schema 6): the `a=setup` role Karl wrote
    # to the party ("actpass" while offered, then "active" or "passive"; None: no DTLS by Karl on this
    # leg), the hash of Karl's `a=fingerprint`, the party's fingerprints ("<hash> <digest>") and setup,
    # and, once the handshake is done, the exported SRTP keys as `a=crypto` values [Karl's, party's]
    dtls_setup: str | None = None
    dtls_hash: str | None = None
    dtls_fingerprints: list[str] = field(default_factory=list)
    dtls_remote_setup: str | None = None
    dtls_keys: list[str] = field(default_factory=list)
    # without rtcp-mux, the keys of the second handshake, on the RTCP port (RFC 5764 4.2), which
    # protect the SRTCP there (schema 7; same form as `dtls_keys`)
    dtls_rtcp_keys: list[str] = field(default_factory=list)
    ports_made_for: int = 0
    """How many ports (1 with rtcp-mux, else 2) the sockets towards this party were first made with,
    as 10.5's endpoint map keeps it; 0: none yet, or made before the party's peer was known. 10.5
    gives a map made for one port that must give a pair a new pair each time it is asked, never
    raising its count: Karl copies that (schema 7)."""
    rtcp_endpoint_kept: Endpoint | None = None
    """The RTCP endpoint of the party's earlier SDP, kept while it muxes and its `a=rtcp` names its RTP
    port (RFC 5761): 10.5 leaves its RTCP stream's endpoint as it was then (schema 7)."""

    def copy(self) -> MediaState:
        """A deep copy (see `CallState.clone`): every list and set copied, codecs and streams too."""
        copied = MediaState(*_media_state_fields(self))
        copied.formats = list(self.formats)
        copied.codecs = [codec.copy() for codec in self.codecs]
        copied.flags = set(self.flags)
        copied.streams = [stream.copy() for stream in self.streams]
        copied.offered_payload_types = list(self.offered_payload_types)
        copied.sdes_ours = list(self.sdes_ours)
        copied.sdes_theirs = list(self.sdes_theirs)
        copied.sdes_pending = list(self.sdes_pending)
        copied.sdes_refused = list(self.sdes_refused)
        copied.ice_candidates = list(self.ice_candidates)
        copied.dtls_fingerprints = list(self.dtls_fingerprints)
        copied.dtls_keys = list(self.dtls_keys)
        copied.dtls_rtcp_keys = list(self.dtls_rtcp_keys)
        return copied

    @property
    def ice(self) -> bool:
        """Karl is an ICE agent towards this party."""
        return self.ice_ufrag is not None

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.protocol

    def to_dict(self) -> dict[str, Any]:
        """Compact: what `from_dict` reads as its default is left out (see `CallState.to_dict`)."""
        data: dict[str, Any] = {"index": self.index, "type": self.media_type, "protocol": self.protocol}
        if self.formats:
            data["formats"] = list(self.formats)
        if self.codecs:
            data["codecs"] = [c.to_dict() for c in self.codecs]
        if not self.send:
            data["send"] = False
        if not self.recv:
            data["recv"] = False
        if self.ptime is not None:
            data["ptime"] = self.ptime
        _put_true(
            data,
            (
                ("rejected", self.rejected),
                ("rtcp_mux_offered", self.rtcp_mux_offered),
                ("rtcp_mux", self.rtcp_mux),
            ),
        )
        if self.advertised_rtcp is not None:
            data["advertised_rtcp"] = self.advertised_rtcp.to_dict()
        if self.mid is not None:
            data["mid"] = self.mid
        if self.flags:
            data["flags"] = sorted(self.flags)
        if self.streams:
            data["streams"] = [s.to_dict() for s in self.streams]
        if self.offered_payload_types:
            data["offered_payload_types"] = list(self.offered_payload_types)
        if self.sdp_address is not None:
            data["sdp_address"] = self.sdp_address
        if self.sdp_port:
            data["sdp_port"] = self.sdp_port
        if self.ports_made_for:
            data["ports_made_for"] = self.ports_made_for
        if self.rtcp_endpoint_kept is not None:
            data["rtcp_endpoint_kept"] = self.rtcp_endpoint_kept.to_dict()
        _put_lists(
            data,
            (
                ("sdes_ours", self.sdes_ours),
                ("sdes_theirs", self.sdes_theirs),
                ("sdes_pending", self.sdes_pending),
                ("sdes_refused", self.sdes_refused),
                ("ice_candidates", self.ice_candidates),
                ("dtls_fingerprints", self.dtls_fingerprints),
                ("dtls_keys", self.dtls_keys),
                ("dtls_rtcp_keys", self.dtls_rtcp_keys),
            ),
        )
        _put_set(
            data,
            (
                ("sdes_tag", self.sdes_tag),
                ("ice_ufrag", self.ice_ufrag),
                ("ice_pwd", self.ice_pwd),
                ("ice_remote_ufrag", self.ice_remote_ufrag),
                ("ice_remote_pwd", self.ice_remote_pwd),
                ("ice_kept_ufrag", self.ice_kept_ufrag),
                ("ice_kept_pwd", self.ice_kept_pwd),
                ("dtls_setup", self.dtls_setup),
                ("dtls_hash", self.dtls_hash),
                ("dtls_remote_setup", self.dtls_remote_setup),
            ),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaState:
        return cls(
            int(data["index"]),
            str(data["type"]),
            str(data["protocol"]),
            [str(f) for f in data.get("formats", [])],
            [Codec.from_dict(c) for c in data.get("codecs", [])],
            bool(data.get("send", True)),
            bool(data.get("recv", True)),
            None if data.get("ptime") is None else int(data["ptime"]),
            bool(data.get("rejected", False)),
            bool(data.get("rtcp_mux_offered", False)),
            bool(data.get("rtcp_mux", False)),
            Endpoint.from_dict(data.get("advertised_rtcp")),
            data.get("mid"),
            {str(f) for f in data.get("flags", [])},
            [PacketStreamState.from_dict(s) for s in data.get("streams", [])],
            sdp_address=data.get("sdp_address"),
            sdp_port=int(data.get("sdp_port", 0)),
            offered_payload_types=[int(x) for x in data.get("offered_payload_types", [])],
            sdes_ours=[str(x) for x in data.get("sdes_ours", [])],
            sdes_theirs=[str(x) for x in data.get("sdes_theirs", [])],
            sdes_tag=None if data.get("sdes_tag") is None else int(data["sdes_tag"]),
            sdes_pending=[str(x) for x in data.get("sdes_pending", [])],
            sdes_refused=[str(x) for x in data.get("sdes_refused", [])],
            ice_ufrag=_optional_str(data.get("ice_ufrag")),
            ice_pwd=_optional_str(data.get("ice_pwd")),
            ice_remote_ufrag=_optional_str(data.get("ice_remote_ufrag")),
            ice_remote_pwd=_optional_str(data.get("ice_remote_pwd")),
            ice_candidates=[str(x) for x in data.get("ice_candidates", [])],
            ice_kept_ufrag=_optional_str(data.get("ice_kept_ufrag")),
            ice_kept_pwd=_optional_str(data.get("ice_kept_pwd")),
            dtls_setup=_optional_str(data.get("dtls_setup")),
            dtls_hash=_optional_str(data.get("dtls_hash")),
            dtls_fingerprints=[str(x) for x in data.get("dtls_fingerprints", [])],
            dtls_remote_setup=_optional_str(data.get("dtls_remote_setup")),
            dtls_keys=[str(x) for x in data.get("dtls_keys", [])],
            dtls_rtcp_keys=[str(x) for x in data.get("dtls_rtcp_keys", [])],
            ports_made_for=int(data.get("ports_made_for", 0)),
            rtcp_endpoint_kept=Endpoint.from_dict(data.get("rtcp_endpoint_kept")),
        )


_media_state_fields = operator.attrgetter(*(f.name for f in fields(MediaState)))
"""A `MediaState`'s field values in order (its constructor's positional arguments)."""


@dataclass
class Monologue:
    """One party of the call. `uid` is internal and stable; `tag` is "" until the party is known."""

    uid: int
    tag: str = ""
    created: float = 0.0
    label: str | None = None
    via_branch: str | None = None
    partner: int | None = None
    medias: list[MediaState] = field(default_factory=list)
    last_sdp: str | None = None
    sdp_version: int | None = None
    sdp_username: str | None = None
    sdp_session_name: str | None = None
    last_sdp_out: str | None = None
    blocked: bool = False
    silenced: bool = False
    dtmf_blocked: bool = False
    deleted_at: float | None = None
    answerer: bool = False
    # a deleted branch: still listed, links kept for display, but no sockets and no media
    removed: bool = False
    # earlier answerers (forks) that lost the link but are still listed, newest first
    former_partners: list[int] = field(default_factory=list)

    def copy(self) -> Monologue:
        """A deep copy (see `CallState.clone`)."""
        copied = _shallow_copy(self)
        copied.medias = [media.copy() for media in self.medias]
        copied.former_partners = list(self.former_partners)
        return copied

    def to_dict(self) -> dict[str, Any]:
        """Compact: what `from_dict` reads as its default is left out (see `CallState.to_dict`)."""
        data: dict[str, Any] = {"uid": self.uid}
        _put_true(data, (("answerer", self.answerer), ("removed", self.removed)))
        if self.former_partners:
            data["former_partners"] = list(self.former_partners)
        if self.tag:
            data["tag"] = self.tag
        if self.created:
            data["created"] = self.created
        _put_set(data, (("label", self.label), ("via_branch", self.via_branch), ("partner", self.partner)))
        if self.medias:
            data["medias"] = [m.to_dict() for m in self.medias]
        _put_set(
            data,
            (
                ("last_sdp", self.last_sdp),
                ("sdp_version", self.sdp_version),
                ("sdp_username", self.sdp_username),
                ("sdp_session_name", self.sdp_session_name),
                ("last_sdp_out", self.last_sdp_out),
                ("deleted_at", self.deleted_at),
            ),
        )
        _put_true(
            data,
            (("blocked", self.blocked), ("silenced", self.silenced), ("dtmf_blocked", self.dtmf_blocked)),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Monologue:
        return cls(
            uid=int(data["uid"]),
            tag=str(data.get("tag", "")),
            created=float(data.get("created", 0.0)),
            label=data.get("label"),
            via_branch=data.get("via_branch"),
            partner=None if data.get("partner") is None else int(data["partner"]),
            medias=[MediaState.from_dict(m) for m in data.get("medias", [])],
            last_sdp=data.get("last_sdp"),
            sdp_version=None if data.get("sdp_version") is None else int(data["sdp_version"]),
            sdp_username=data.get("sdp_username"),
            sdp_session_name=data.get("sdp_session_name"),
            last_sdp_out=data.get("last_sdp_out"),
            blocked=bool(data.get("blocked", False)),
            silenced=bool(data.get("silenced", False)),
            dtmf_blocked=bool(data.get("dtmf_blocked", False)),
            deleted_at=None if data.get("deleted_at") is None else float(data["deleted_at"]),
            answerer=bool(data.get("answerer", False)),
            removed=bool(data.get("removed", False)),
            former_partners=[int(x) for x in data.get("former_partners", [])],
        )


@dataclass
class CallState:
    call_id: str
    created: float
    last_signal: float
    monologues: dict[int, Monologue] = field(default_factory=dict)
    next_uid: int = 1
    answered: bool = False
    blocked: bool = False
    silenced: bool = False
    dtmf_blocked: bool = False
    deleted_at: float | None = None
    last_activity: float = 0.0
    """When media last moved or signalling happened (what the media timeout counts from)."""
    ended_at: float | None = None
    """When the whole call was deleted, for its parties (its delete delay may still be running)."""
    quality: dict[str, Any] = field(default_factory=dict)
    """What the parties' RTCP reports said so far (the media node's own format; schema 3)."""
    nodes: list[str] = field(default_factory=list)
    """The fleet's nodes that held the call, in order, once it moved (failover or hand-over); empty
    while it never moved (schema 4)."""

    def clone(self) -> CallState:
        """A deep copy: every offer and answer takes one (to put the call back if it fails).

        Written out class by class, each copying its own mutable fields: several times faster than
        pickle (60-100 µs for a two-party call, against 10-15 µs);
        tests/core/test_session_model.py checks that no list, dict, set or mutable object is shared
        with the original, so a new mutable field that is not copied fails there. Objects shared
        inside the original (none are: the JSON store does not keep such sharing either) are copied
        separately."""
        copied = _shallow_copy(self)
        copied.monologues = {uid: mono.copy() for uid, mono in self.monologues.items()}
        copied.quality = deepcopy(self.quality) if self.quality else {}
        copied.nodes = list(self.nodes)
        return copied

    def new_monologue(self, created: float, tag: str = "") -> Monologue:
        mono = Monologue(uid=self.next_uid, tag=tag, created=created)
        self.monologues[mono.uid] = mono
        self.next_uid += 1
        return mono

    def by_tag(self, tag: str) -> Monologue | None:
        for mono in self.monologues.values():
            if mono.tag == tag and tag:
                return mono
        return None

    def by_label(self, label: str) -> Monologue | None:
        for mono in self.monologues.values():
            if mono.label == label:
                return mono
        return None

    def partner_of(self, mono: Monologue) -> Monologue | None:
        return None if mono.partner is None else self.monologues.get(mono.partner)

    def to_dict(self) -> dict[str, Any]:
        """The call as a JSON-safe document (what the call store keeps after every change).

        Compact: a key whose value is what `from_dict` reads in its absence (None, False, zero, an
        empty list, a stream's default policy, ...) is left out, so the document is about half as long
        and takes half as long to write. The schema is unchanged: every reader of schema 7 (and of
        each version before it) reads every key it does not find as that default, so nodes of
        earlier releases read these documents as they read the full ones (a rolling upgrade of a
        fleet); tests/core/test_session_model.py reads both forms of its sample call."""
        data: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "call_id": self.call_id,
            "created": self.created,
            "last_signal": self.last_signal,
            "last_activity": self.last_activity,
        }
        if self.next_uid != 1:
            data["next_uid"] = self.next_uid
        _put_true(
            data,
            (
                ("answered", self.answered),
                ("blocked", self.blocked),
                ("silenced", self.silenced),
                ("dtmf_blocked", self.dtmf_blocked),
            ),
        )
        _put_set(data, (("deleted_at", self.deleted_at), ("ended_at", self.ended_at)))
        if self.quality:
            data["quality"] = self.quality
        if self.nodes:
            data["nodes"] = list(self.nodes)
        if self.monologues:
            data["monologues"] = [m.to_dict() for m in self.monologues.values()]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CallState:
        if not isinstance(data, dict):
            raise SessionSchemaError("serialized call must be an object")
        if data.get("schema") not in READABLE_SCHEMAS:
            raise SessionSchemaError(f"unsupported call schema version {data.get('schema')!r}")
        try:
            call = cls(
                str(data["call_id"]),
                float(data["created"]),
                float(data["last_signal"]),
                next_uid=int(data.get("next_uid", 1)),
                answered=bool(data.get("answered", False)),
                blocked=bool(data.get("blocked", False)),
                silenced=bool(data.get("silenced", False)),
                dtmf_blocked=bool(data.get("dtmf_blocked", False)),
                deleted_at=None if data.get("deleted_at") is None else float(data["deleted_at"]),
                last_activity=float(data.get("last_activity") or data["last_signal"]),
                ended_at=None if data.get("ended_at") is None else float(data["ended_at"]),
                quality=dict(data.get("quality") or {}),
                nodes=[str(node) for node in data.get("nodes") or []],
            )
            for item in data.get("monologues", []):
                mono = Monologue.from_dict(item)
                call.monologues[mono.uid] = mono
            if int(data["schema"]) < 7:
                # before schema 7 one DTLS handshake keyed SRTCP on a separate RTCP port too: so it goes on
                for mono in call.monologues.values():
                    for media in mono.medias:
                        if media.dtls_keys and not media.rtcp_mux:
                            media.dtls_rtcp_keys = list(media.dtls_keys)
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionSchemaError(f"malformed serialized call: {exc}") from exc
        return call
