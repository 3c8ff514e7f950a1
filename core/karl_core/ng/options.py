"""Typed reading of an NG request's keys and flags, following rtpengine 10.5.

Which parser a command uses matters, because 10.5 has two:

* The common option parser (offer, answer, publish, subscribe request/answer, unsubscribe, the
  block/unblock/silence/forwarding family, play/stop media, play DTMF) walks every key in order,
  knows the key aliases (``call-id``/``call-ID``/``call id``/``call ID``, ``sdp``/``SDP``, ...) and
  the ``flags`` list. A later key overrides an earlier one, and a string-valued key whose value is
  not a string *clears* the option (10.5 stores a null string), e.g. ``{"call-id": "x",
  "call ID": 5}`` has no call-id.
* ``delete``, ``query``, ``start recording``, ``stop recording`` and ``list`` read a few keys
  literally (``call-id``, ``from-tag``, ``to-tag``, ...): aliases do not work there (observed:
  ``query`` with ``call ID`` answers `No call-id in message`).
* ``ping`` and ``statistics`` read nothing.

Rules of the common parser reproduced here: in ``flags`` spaces become hyphens before matching,
matching is case-sensitive with 10.5's listed alternative spellings (normalised here to one
canonical name); prefix flags (``codec-strip-X``, ``SDES-X``, ``from-tags-X``, ...) feed the
corresponding list options, and ``--`` in codec and from-tag values stands for ``=``. Codec
``transcode``/``mask``/``set``/``accept``/``consume`` in the ``codec`` dictionary and the
``transcode-``/``codec-transcode-``/``codec-mask-``/``T38-``/``T.38-`` flags only count for offer,
publish and subscribe request; ``ptime``/``ptime-reverse`` only for offer. Integer keys accept
numeric strings (C ``strtoll``, whole string; otherwise the key is ignored). Values of the wrong
type never raise: they are ignored the way 10.5 ignores them.

Everything not understood is reported in `NgOptions.ignored` (never an error), so the caller can
log it: unknown keys as ``"key"``, unknown values as ``"key: value"``, unknown flags as
``"flags: value"``.

Known deviation: a bencode dictionary with a *repeated identical key* is decoded first-value-wins
(the Python dict cannot hold both), while 10.5's common parser would see both and keep the last.
"""

from __future__ import annotations

import enum
import functools
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..session.model import EndpointLearning
from .bencode import INT64_MAX, INT64_MIN, saturating_int64
from .commands import Command
from .errors import (
    INVALID_LIMIT,
    NO_CALL_ID,
    NO_FROM_TAG,
    NO_SDP,
    NO_TO_TAG,
    NgError,
)

DEFAULT_LIST_LIMIT = 32


class Ice(enum.StrEnum):
    REMOVE = "remove"
    FORCE = "force"
    DEFAULT = "default"
    OPTIONAL = "optional"
    FORCE_RELAY = "force-relay"


class IceLite(enum.StrEnum):
    OFF = "off"
    FORWARD = "forward"
    BACKWARD = "backward"
    BOTH = "both"


class MediaEcho(enum.StrEnum):
    BLACKHOLE = "blackhole"
    FORWARD = "forward"
    BACKWARD = "backward"
    BOTH = "both"


class DtmfSecurity(enum.StrEnum):
    OFF = "off"
    DROP = "drop"
    SILENCE = "silence"
    TONE = "tone"
    RANDOM = "random"
    ZERO = "zero"
    DTMF = "DTMF"


class _OpMode(enum.Enum):
    OFFER = enum.auto()
    ANSWER = enum.auto()
    REQUEST = enum.auto()  # subscribe request
    REQ_ANSWER = enum.auto()  # subscribe answer, unsubscribe
    PUBLISH = enum.auto()
    OTHER = enum.auto()  # participant commands


_COMMON_PARSER_MODES: dict[Command, _OpMode] = {
    Command.OFFER: _OpMode.OFFER,
    Command.ANSWER: _OpMode.ANSWER,
    Command.PUBLISH: _OpMode.PUBLISH,
    Command.SUBSCRIBE_REQUEST: _OpMode.REQUEST,
    Command.SUBSCRIBE_ANSWER: _OpMode.REQ_ANSWER,
    Command.UNSUBSCRIBE: _OpMode.REQ_ANSWER,
    Command.BLOCK_DTMF: _OpMode.OTHER,
    Command.UNBLOCK_DTMF: _OpMode.OTHER,
    Command.BLOCK_MEDIA: _OpMode.OTHER,
    Command.UNBLOCK_MEDIA: _OpMode.OTHER,
    Command.SILENCE_MEDIA: _OpMode.OTHER,
    Command.UNSILENCE_MEDIA: _OpMode.OTHER,
    Command.START_FORWARDING: _OpMode.OTHER,
    Command.STOP_FORWARDING: _OpMode.OTHER,
    Command.PLAY_MEDIA: _OpMode.OTHER,
    Command.STOP_MEDIA: _OpMode.OTHER,
    Command.PLAY_DTMF: _OpMode.OTHER,
}
_TRANSCODING_MODES = frozenset({_OpMode.OFFER, _OpMode.REQUEST, _OpMode.PUBLISH})


@dataclass(frozen=True, slots=True)
class CodecOptions:
    """The ``codec`` dictionary merged with the ``codec-<op>-X`` / ``transcode-X`` flags, in order.

    `except_` is a set in 10.5 (case-insensitive): duplicates differing only in case are dropped.
    `set` keeps the raw ``codec/params`` strings (10.5 indexes them by every ``/`` prefix).
    """

    strip: tuple[str, ...] = ()
    offer: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    transcode: tuple[str, ...] = ()
    accept: tuple[str, ...] = ()
    consume: tuple[str, ...] = ()
    set: tuple[str, ...] = ()


@dataclass(frozen=True)
class NgOptions:
    """Everything 10.5 reads from a request, typed. `None` = not given (or cleared).

    The parser builds it with `_new_options`, not the constructor (see there); no slots, for that."""

    command: Command

    # identification
    call_id: str | None = None
    from_tag: str | None = None
    to_tag: str | None = None  # as sent: in an answer rtpengine swaps from/to internally
    via_branch: str | None = None
    from_tags: tuple[str, ...] = ()
    label: str | None = None
    set_label: str | None = None
    address: str | None = None
    interface: str | None = None
    sdp: str | None = None  # "" counts as given (10.5 then fails later, or answers without SDP)
    metadata: str | None = None
    output_destination: str | None = None  # start recording

    # flags and list options
    flags: frozenset[str] = frozenset()  # recognised flags, canonical 10.5 spelling
    # origin session-connection session-name SDP-version username zero-address
    replace: frozenset[str] = frozenset()
    rtcp_mux: frozenset[str] = frozenset()  # offer require demux accept reject
    supports: frozenset[str] = frozenset()  # as sent; 10.5 knows only "load limit"
    # off unencrypted_srtp unencrypted_srtcp unauthenticated_srtp encrypted_srtp encrypted_srtcp
    # authenticated_srtp lifetime pad static
    sdes: frozenset[str] = frozenset()
    # suites not to offer, upper-cased (10.5 compares them case-insensitively)
    sdes_no: frozenset[str] = frozenset()
    osrtp: frozenset[str] = frozenset()  # offer accept
    # decode force stop no-ECM no-V.17 no-V.27ter no-V.29 no-V.34 no-IAF FEC
    t38: frozenset[str] = frozenset()
    codec: CodecOptions = field(default_factory=CodecOptions)

    # transport and addressing
    ice: Ice | None = None
    ice_lite: IceLite | None = None
    transport_protocol: str | None = None  # canonical protocol name, or "accept"
    media_address: str | None = None
    address_family: str | None = None  # "IP4" / "IP6"
    received_from: tuple[str, str] | None = None  # (family, address)
    direction: tuple[str, ...] = ()  # at most 2 interface names; "" for a non-string entry
    endpoint_learning: EndpointLearning | None = None
    dtls: str | None = None  # "passive" / "active" / "off"
    dtls_reverse: str | None = None  # "passive" / "active"
    dtls_fingerprint: str | None = None  # hash name as sent
    xmlrpc_callback: str | None = None  # a valid IPv4/IPv6 address
    tos: int | None = None
    ptime: int | None = None  # offer only; None when absent or 0
    ptime_reverse: int | None = None  # offer only; None when absent or 0
    media_echo: MediaEcho | None = None
    trust_address: bool | None = None  # True: trust-address, False: SIP-source-address (last wins)
    passthrough_on: bool = False
    passthrough_off: bool = False
    generate_rtcp: bool | None = None  # True: on (key or flag), False: off
    record_call: bool | None = None  # key yes/on/no/off; the flag record-call forces True
    drop_traffic_start: bool = False
    drop_traffic_stop: bool = False

    # delete / list
    delete_delay: int | None = None  # None: the daemon's default (also for any negative value)
    fatal: bool = False
    limit: int = DEFAULT_LIST_LIMIT  # may be negative: `check_required` refuses that

    # DTMF and media playback
    dtmf_security: DtmfSecurity | None = None
    dtmf_security_trigger: DtmfSecurity | None = None
    dtmf_security_trigger_end: DtmfSecurity | None = None
    trigger: str | None = None
    trigger_end: str | None = None
    trigger_end_time: int | None = None
    trigger_end_digits: int | None = None
    dtmf_delay: int | None = None
    delay_buffer: int | None = None
    frequency: int | None = None
    volume: int | None = None
    digit: int | str | None = None  # a one-character string is a DTMF character, else a code
    duration: int | None = None
    pause: int | None = None
    repeat_times: int | None = None
    file: str | None = None
    blob: str | None = None
    db_id: int | None = None

    ignored: tuple[str, ...] = ()

    # --- booleans for the flags (canonical names in `flags`)
    @property
    def sip_source_address(self) -> bool:
        return self.trust_address is False

    @property
    def supports_load_limit(self) -> bool:
        return "load limit" in self.supports

    @property
    def asymmetric(self) -> bool:
        return "asymmetric" in self.flags

    @property
    def unidirectional(self) -> bool:
        return "unidirectional" in self.flags

    @property
    def strict_source(self) -> bool:
        return "strict-source" in self.flags

    @property
    def media_handover(self) -> bool:
        return "media-handover" in self.flags

    @property
    def reset(self) -> bool:
        return "reset" in self.flags

    @property
    def all(self) -> bool:
        return "all" in self.flags

    @property
    def egress(self) -> bool:
        return "egress" in self.flags

    @property
    def siprec(self) -> bool:
        return "SIPREC" in self.flags

    @property
    def fragment(self) -> bool:
        return "fragment" in self.flags

    @property
    def port_latching(self) -> bool:
        return "port-latching" in self.flags

    @property
    def no_port_latching(self) -> bool:
        return "no-port-latching" in self.flags

    @property
    def generate_mid(self) -> bool:
        return "generate-mid" in self.flags

    @property
    def strip_extmap(self) -> bool:
        return "strip-extmap" in self.flags

    @property
    def debug(self) -> bool:
        return "debug" in self.flags

    @property
    def no_rtcp_attribute(self) -> bool:
        return "no-rtcp-attribute" in self.flags

    @property
    def full_rtcp_attribute(self) -> bool:
        return "full-rtcp-attribute" in self.flags

    @property
    def trickle_ice(self) -> bool:
        return "trickle-ICE" in self.flags

    @property
    def reject_ice(self) -> bool:
        return "reject-ICE" in self.flags

    @property
    def loop_protect(self) -> bool:
        return "loop-protect" in self.flags

    @property
    def original_sendrecv(self) -> bool:
        return "original-sendrecv" in self.flags

    @property
    def reuse_codecs(self) -> bool:
        return "reuse-codecs" in self.flags

    @property
    def single_codec(self) -> bool:
        return "single-codec" in self.flags

    @property
    def allow_transcoding(self) -> bool:
        return "allow-transcoding" in self.flags

    @property
    def inject_dtmf(self) -> bool:
        return "inject-DTMF" in self.flags

    @property
    def detect_dtmf(self) -> bool:
        return "detect-DTMF" in self.flags

    @property
    def no_jitter_buffer(self) -> bool:
        return "no-jitter-buffer" in self.flags

    @property
    def pierce_nat(self) -> bool:
        return "pierce-NAT" in self.flags

    @property
    def nat_wait(self) -> bool:
        return "NAT-wait" in self.flags

    @property
    def rtcp_mirror(self) -> bool:
        return "RTCP-mirror" in self.flags

    @property
    def no_redis_update(self) -> bool:
        return "no-redis-update" in self.flags


# ------------------------------------------------------------------------------------ value helpers

# C strtoll on a whole string: optional isspace() run, optional sign, decimal digits.
_C_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _int_or_str(value: Any, default: int | None) -> int | None:
    """10.5's bencode_get_integer_str: an integer, or a string that is wholly a number."""
    if isinstance(value, int):
        return min(max(int(value), INT64_MIN), INT64_MAX)
    if isinstance(value, str):
        m = _C_INT.fullmatch(value)
        if m is not None:
            return saturating_int64(m.group(1))
    return default


def _int_prefix(value: str) -> int | None:
    """10.5's str_to_i: the leading number of a string, if it fits in a C int."""
    m = _C_INT.match(value)
    if m is None:
        return None
    number = saturating_int64(m.group(1))
    return number if -(1 << 31) <= number < (1 << 31) else None


def _to_int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _hyphenate(s: str) -> str:
    return s.replace(" ", "-")


def _unescape(s: str) -> str:
    """10.5's str_dup_escape: ``--`` stands for ``=``."""
    return s.replace("--", "=")


def _is_one_byte(s: str) -> bool:
    if len(s) != 1:
        return False
    c = ord(s)
    return c < 0x80 or 0xDC80 <= c <= 0xDCFF  # ASCII, or one raw byte kept by surrogateescape


TRANSPORT_PROTOCOLS: dict[str, str] = {
    name.lower(): name
    for name in (
        "RTP/AVP",
        "RTP/SAVP",
        "RTP/AVPF",
        "RTP/SAVPF",
        "UDP/TLS/RTP/SAVP",
        "UDP/TLS/RTP/SAVPF",
        "udptl",
    )
}
"""The transport protocols rtpengine 10.5 knows by name (lower case → its spelling): what
`transport-protocol` accepts and what `query` names."""


def _is_ip_address(s: str) -> bool:
    if len(s.encode("utf-8", "surrogateescape")) >= 64:
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, s)
        except (OSError, ValueError):
            continue
        return True
    return False


# ---------------------------------------------------------------------------- accumulating parser

_FLAG_NAMES: dict[str, str] = {}
for _canonical, *_alternatives in (
    ("trust-address",),
    ("SIP-source-address", "sip-source-address"),
    ("asymmetric",),
    ("no-redis-update",),
    ("unidirectional",),
    ("strict-source",),
    ("media-handover",),
    ("reset",),
    ("all",),
    ("egress",),
    ("SIPREC", "siprec"),
    ("fragment",),
    ("port-latching",),
    ("no-port-latching",),
    ("generate-mid",),
    ("strip-extmap",),
    ("record-call",),
    ("debug", "debugging"),
    ("no-rtcp-attribute", "no-RTCP-attribute"),
    ("full-rtcp-attribute", "full-RTCP-attribute"),
    ("generate-RTCP", "generate-rtcp"),
    ("trickle-ICE", "trickle-ice"),
    ("reject-ICE", "ICE-reject", "ice-reject", "reject-ice"),
    ("loop-protect",),
    ("original-sendrecv",),
    ("always-transcode",),
    ("asymmetric-codecs",),  # obsolete, accepted without effect
    ("symmetric-codecs",),  # obsolete
    ("reorder-codecs",),  # obsolete
    ("reuse-codecs", "no-codec-renegotiation"),
    ("single-codec",),
    ("allow-transcoding",),
    ("inject-DTMF", "inject-dtmf"),
    ("detect-DTMF", "detect-dtmf"),
    ("pad-crypto",),
    ("passthrough",),
    ("no-passthrough",),
    ("no-jitter-buffer",),
    ("pierce-NAT", "pierce-nat"),
    ("NAT-wait", "nat-wait"),
    ("RTCP-mirror", "mirror-RTCP", "rtcp-mirror", "mirror-rtcp"),
):
    for _spelling in (_canonical, *_alternatives):
        _FLAG_NAMES[_spelling] = _canonical

_REPLACE_VALUES = {
    "origin": "origin",
    "session-connection": "session-connection",
    "session-name": "session-name",
    "sdp-version": "SDP-version",
    "SDP-version": "SDP-version",
    "username": "username",
    "zero-address": "zero-address",
}
_RTCP_MUX_VALUES = frozenset({"offer", "require", "demux", "accept", "reject"})
_OSRTP_VALUES = frozenset({"offer", "accept"})
_SDES_VALUES = {
    "no": "off",
    "off": "off",
    "disabled": "off",
    "disable": "off",
    "lifetime": "lifetime",
    "pad": "pad",
    "static": "static",
}
for _name in (
    "unencrypted_srtp",
    "unencrypted_srtcp",
    "unauthenticated_srtp",
    "encrypted_srtp",
    "encrypted_srtcp",
    "authenticated_srtp",
):
    _SDES_VALUES[_name] = _SDES_VALUES[_name.upper()] = _name
_T38_VALUES = {"decode": "decode", "force": "force", "stop": "stop", "no-ecm": "no-ECM", "no-ECM": "no-ECM"}
for _canonical, _variants in (
    ("no-V.17", ("no-V17", "no-V.17", "no-v17", "no-v.17")),
    ("no-V.27ter", ("no-V.27ter", "no-V27ter", "no-v.27ter", "no-v27ter")),
    ("no-V.29", ("no-V29", "no-V.29", "no-v29", "no-v.29")),
    ("no-V.34", ("no-V34", "no-V.34", "no-v34", "no-v.34")),
    ("no-IAF", ("no-IAF", "no-iaf")),
    ("FEC", ("FEC", "fec")),
):
    for _spelling in _variants:
        _T38_VALUES[_spelling] = _canonical
_ENDPOINT_LEARNING = {e.value: e for e in EndpointLearning}
_ICE = {
    "remove": Ice.REMOVE,
    "force": Ice.FORCE,
    "default": Ice.DEFAULT,
    "optional": Ice.OPTIONAL,
    "force_relay": Ice.FORCE_RELAY,
    "force-relay": Ice.FORCE_RELAY,
    "force relay": Ice.FORCE_RELAY,
}
_ICE_LITE = {
    **dict.fromkeys(("off", "none", "no"), IceLite.OFF),
    **dict.fromkeys(("forward", "offer", "fwd", "fw"), IceLite.FORWARD),
    **dict.fromkeys(("backward", "backwards", "reverse", "answer", "back", "bkw", "bk"), IceLite.BACKWARD),
    "both": IceLite.BOTH,
}
_MEDIA_ECHO = {
    **dict.fromkeys(("blackhole", "sinkhole"), MediaEcho.BLACKHOLE),
    **dict.fromkeys(("forward", "fwd", "fw"), MediaEcho.FORWARD),
    **dict.fromkeys(("backward", "backwards", "reverse", "back", "bkw", "bk"), MediaEcho.BACKWARD),
    "both": MediaEcho.BOTH,
}
_DTMF_SECURITY = {m.value: m for m in DtmfSecurity} | {"dtmf": DtmfSecurity.DTMF}
_DTLS = {
    "passive": "passive",
    "active": "active",
    **dict.fromkeys(("no", "off", "disabled", "disable"), "off"),
}
_PASSTHROUGH = {
    **dict.fromkeys(("on", "yes", "enable", "enabled"), True),
    **dict.fromkeys(("no", "off", "disable", "disabled"), False),
}


class _Acc:
    """Mutable accumulator filled key by key, frozen into `NgOptions` at the end."""

    def __init__(self, command: Command, mode: _OpMode | None) -> None:
        self.command = command
        self.mode = mode
        self.s: dict[str, Any] = {}  # scalar NgOptions fields set so far
        self.flags: set[str] = set()
        self.replace: set[str] = set()
        self.rtcp_mux: set[str] = set()
        self.supports: set[str] = set()
        self.sdes: set[str] = set()
        self.sdes_no: set[str] = set()
        self.osrtp: set[str] = set()
        self.t38: set[str] = set()
        self.from_tags: list[str] = []
        self.codec: dict[str, list[str]] = {
            "strip": [],
            "offer": [],
            "except_": [],
            "mask": [],
            "transcode": [],
            "accept": [],
            "consume": [],
            "set": [],
        }
        self.record_call_key: bool | None = None
        self.ignored: list[str] = []

    def ignore(self, key: str, value: Any = None) -> None:
        self.ignored.append(key if value is None else f"{key}: {value}")

    # --- list-valued option callbacks (one string each)

    def add_codec(self, op: str, value: str) -> None:
        value = _unescape(value)
        target = self.codec[op]
        if op == "except_":
            folded = value.casefold()
            if any(v.casefold() == folded for v in target):
                return
        target.append(value)

    def sdes_option(self, value: str) -> None:
        value = _hyphenate(value)
        if value.startswith("no-"):
            self.sdes_no.add(_unescape(value[3:]).upper())
            return
        canonical = _SDES_VALUES.get(value)
        if canonical is None:
            self.ignore("SDES", value)
        else:
            self.sdes.add(canonical)

    def osrtp_option(self, value: str) -> None:
        if value in _OSRTP_VALUES:
            self.osrtp.add(value)
        else:
            self.ignore("OSRTP", value)

    def endpoint_learning_option(self, value: str) -> None:
        learning = _ENDPOINT_LEARNING.get(value)
        if learning is None:
            self.ignore("endpoint-learning", value)
        else:
            self.s["endpoint_learning"] = learning

    def t38_option(self, value: str) -> None:
        canonical = _T38_VALUES.get(_hyphenate(value))
        if canonical is None:
            self.ignore("T.38", value)
        else:
            self.t38.add(canonical)

    def replace_option(self, value: str) -> None:
        canonical = _REPLACE_VALUES.get(_hyphenate(value))
        if canonical is None:
            self.ignore("replace", value)
        else:
            self.replace.add(canonical)

    def rtcp_mux_option(self, value: str) -> None:
        if value in _RTCP_MUX_VALUES:
            self.rtcp_mux.add(value)
        else:
            self.ignore("rtcp-mux", value)

    def flag(self, raw: str) -> None:
        value = _hyphenate(raw)
        canonical = _FLAG_NAMES.get(value)
        if canonical is not None:
            self.flags.add(canonical)
            if canonical == "trust-address":
                self.s["trust_address"] = True
            elif canonical == "SIP-source-address":
                self.s["trust_address"] = False
            elif canonical == "always-transcode":
                self.add_codec("accept", "all")
            elif canonical == "pad-crypto":
                self.sdes.add("pad")
            elif canonical == "passthrough":
                self.s["passthrough_on"] = True
            elif canonical == "no-passthrough":
                self.s["passthrough_off"] = True
            elif canonical == "generate-RTCP":
                self.s["generate_rtcp"] = True
            return
        for prefix, handler in _FLAG_PREFIXES:
            if value.startswith(prefix):
                handler(self, value[len(prefix) :])
                return
        if self.mode in _TRANSCODING_MODES:
            for prefix, handler in _TRANSCODING_FLAG_PREFIXES:
                if value.startswith(prefix):
                    handler(self, value[len(prefix) :])
                    return
        for prefix, handler in _LATE_FLAG_PREFIXES:
            if value.startswith(prefix):
                handler(self, value[len(prefix) :])
                return
        self.ignore("flags", raw)


_Handler = Callable[[_Acc, str], None]

# Checked in this order after the exact flag names, like 10.5 does.
_FLAG_PREFIXES: tuple[tuple[str, _Handler], ...] = (
    ("from-tags-", lambda acc, v: acc.from_tags.append(_unescape(v))),
    ("SDES-no-", lambda acc, v: acc.sdes_no.add(_unescape(v).upper())),
    ("SDES-", _Acc.sdes_option),
    ("OSRTP-", _Acc.osrtp_option),
    ("codec-strip-", lambda acc, v: acc.add_codec("strip", v)),
    ("codec-offer-", lambda acc, v: acc.add_codec("offer", v)),
    ("codec-except-", lambda acc, v: acc.add_codec("except_", v)),
    ("endpoint-learning-", _Acc.endpoint_learning_option),
)
_TRANSCODING_FLAG_PREFIXES: tuple[tuple[str, _Handler], ...] = (
    ("transcode-", lambda acc, v: acc.add_codec("transcode", v)),
    ("codec-transcode-", lambda acc, v: acc.add_codec("transcode", v)),
    ("codec-mask-", lambda acc, v: acc.add_codec("mask", v)),
    ("T38-", _Acc.t38_option),
    ("T.38-", _Acc.t38_option),
)
_LATE_FLAG_PREFIXES: tuple[tuple[str, _Handler], ...] = (
    ("codec-set-", lambda acc, v: acc.add_codec("set", v)),
    ("codec-accept-", lambda acc, v: acc.add_codec("accept", v)),
    ("codec-consume-", lambda acc, v: acc.add_codec("consume", v)),
)


def _each_string(acc: _Acc, key: str, value: Any, handler: _Handler) -> None:
    """10.5's call_ng_flags_list: a non-list is ignored, non-string items are skipped."""
    if not isinstance(value, list):
        acc.ignore(key, type(value).__name__)
        return
    for item in value:
        if isinstance(item, str):
            handler(acc, item)


# --- key handlers: (acc, key, value)

_KeyHandler = Callable[[_Acc, str, Any], None]


def _string_field(name: str) -> _KeyHandler:
    def handler(acc: _Acc, key: str, value: Any) -> None:
        text = _as_str(value)
        if text is None:
            acc.ignore(key, type(value).__name__)
        acc.s[name] = text  # a non-string clears the option, as in 10.5

    return handler


def _int_field(name: str) -> _KeyHandler:
    def handler(acc: _Acc, key: str, value: Any) -> None:
        parsed = _int_or_str(value, None)
        if parsed is None:  # 10.5 keeps the earlier value
            acc.ignore(key, value if isinstance(value, str) else type(value).__name__)
        else:
            acc.s[name] = parsed

    return handler


def _ptime_field(name: str) -> _KeyHandler:
    def handler(acc: _Acc, key: str, value: Any) -> None:
        if acc.mode is not _OpMode.OFFER:
            return
        parsed = _int_or_str(value, 0)  # 10.5 stores 0 (= unset) for anything unreadable
        acc.s[name] = parsed or None

    return handler


def _enum_field(name: str, table: Mapping[str, Any]) -> _KeyHandler:
    def handler(acc: _Acc, key: str, value: Any) -> None:
        chosen = table.get(value) if isinstance(value, str) else None
        if chosen is None:
            acc.ignore(key, value if isinstance(value, str) else type(value).__name__)
        else:
            acc.s[name] = chosen

    return handler


def _list_handler(handler: _Handler) -> _KeyHandler:
    def key_handler(acc: _Acc, key: str, value: Any) -> None:
        _each_string(acc, key, value, handler)

    return key_handler


def _on_flags(acc: _Acc, key: str, value: Any) -> None:
    _each_string(acc, key, value, _Acc.flag)


def _on_supports(acc: _Acc, key: str, value: Any) -> None:
    _each_string(acc, key, value, lambda a, v: a.supports.add(v))


def _on_from_tags(acc: _Acc, key: str, value: Any) -> None:
    _each_string(acc, key, value, lambda a, v: a.from_tags.append(_unescape(v)))


def _on_direction(acc: _Acc, key: str, value: Any) -> None:
    if not isinstance(value, list):
        acc.ignore(key, type(value).__name__)
        return
    acc.s["direction"] = tuple(item if isinstance(item, str) else "" for item in value[:2])


def _on_received_from(acc: _Acc, key: str, value: Any) -> None:
    if not isinstance(value, list):
        acc.ignore(key, type(value).__name__)
        return
    if not value:
        return
    family = _as_str(value[0])
    address = _as_str(value[1]) if len(value) > 1 else None
    acc.s["received_from"] = (family, address) if family is not None and address is not None else None


def _on_drop_traffic(acc: _Acc, key: str, value: Any) -> None:
    if value == "start":
        acc.s["drop_traffic_start"] = True
    elif value == "stop":
        acc.s["drop_traffic_stop"] = True
    else:
        acc.ignore(key, value)


def _on_passthrough(acc: _Acc, key: str, value: Any) -> None:
    on = _PASSTHROUGH.get(value) if isinstance(value, str) else None
    if on is None:
        acc.ignore(key, value)
    elif on:
        acc.s["passthrough_on"] = True
    else:
        acc.s["passthrough_off"] = True


def _on_transport_protocol(acc: _Acc, key: str, value: Any) -> None:
    if value == "accept":
        acc.s["transport_protocol"] = "accept"
        return
    # 10.5 assigns the lookup result, so an unknown protocol clears an earlier one.
    protocol = TRANSPORT_PROTOCOLS.get(value.lower()) if isinstance(value, str) and value.isascii() else None
    if protocol is None:
        acc.ignore(key, value)
    acc.s["transport_protocol"] = protocol


def _on_address_family(acc: _Acc, key: str, value: Any) -> None:
    if not isinstance(value, str):
        acc.ignore(key, type(value).__name__)
        return
    if value not in ("IP4", "IP6"):
        acc.ignore(key, value)
    acc.s["address_family"] = value if value in ("IP4", "IP6") else None


def _on_record_call(acc: _Acc, key: str, value: Any) -> None:
    if value in ("yes", "on"):
        acc.record_call_key = True
    elif value in ("no", "off"):
        acc.record_call_key = False
    else:
        acc.record_call_key = None  # 10.5 keeps the (invalid or non-string) value, which does nothing
        acc.ignore(key, value)


def _on_xmlrpc_callback(acc: _Acc, key: str, value: Any) -> None:
    if isinstance(value, str) and _is_ip_address(value):
        acc.s["xmlrpc_callback"] = value
    else:
        acc.ignore(key, value)


def _on_generate_rtcp(acc: _Acc, key: str, value: Any) -> None:
    if value == "on":
        acc.s["generate_rtcp"] = True
    elif value == "off":
        acc.s.setdefault("generate_rtcp", False)  # 10.5 keeps separate on/off bits; "on" wins
    else:
        acc.ignore(key, value)


def _on_digit(acc: _Acc, key: str, value: Any) -> None:
    if isinstance(value, str) and _is_one_byte(value):
        acc.s["digit"] = value
    else:
        acc.s["digit"] = _int_or_str(value, acc.s.get("digit"))


_CODEC_ALWAYS = {"strip": "strip", "offer": "offer", "except": "except_"}
_CODEC_TRANSCODING = {
    "transcode": "transcode",
    "mask": "mask",
    "set": "set",
    "accept": "accept",
    "consume": "consume",
}


def _add_codec_to(op: str, acc: _Acc, value: str) -> None:
    acc.add_codec(op, value)


def _on_codec(acc: _Acc, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        acc.ignore(key, type(value).__name__)
        return
    for op, items in value.items():
        target = _CODEC_ALWAYS.get(op)
        if target is None:
            target = _CODEC_TRANSCODING.get(op)
            if target is None:
                acc.ignore(f"codec.{op}")
                continue
            if acc.mode not in _TRANSCODING_MODES:
                continue  # 10.5 ignores these outside offer/publish/subscribe request, silently
        _each_string(acc, f"codec.{op}", items, functools.partial(_add_codec_to, target))


def _aliases(handler: _KeyHandler, *names: str) -> dict[str, _KeyHandler]:
    return dict.fromkeys(names, handler)


_COMMON_KEYS: dict[str, _KeyHandler] = {
    **_aliases(_string_field("call_id"), "call-id", "call-ID", "call id", "call ID"),
    "from-tag": _string_field("from_tag"),
    "to-tag": _string_field("to_tag"),
    "via-branch": _string_field("via_branch"),
    **_aliases(_string_field("label"), "from-label", "label"),
    **_aliases(_string_field("set_label"), "to-label", "set-label"),
    "address": _string_field("address"),
    **_aliases(_string_field("sdp"), "SDP", "sdp"),
    "interface": _string_field("interface"),
    "flags": _on_flags,
    "replace": _list_handler(_Acc.replace_option),
    "supports": _on_supports,
    "from-tags": _on_from_tags,
    **_aliases(_list_handler(_Acc.rtcp_mux_option), "rtcp-mux", "RTCP-mux"),
    **_aliases(_list_handler(_Acc.sdes_option), "SDES", "sdes"),
    **_aliases(_list_handler(_Acc.osrtp_option), "OSRTP", "osrtp"),
    **_aliases(_list_handler(_Acc.endpoint_learning_option), "endpoint-learning", "endpoint learning"),
    "direction": _on_direction,
    **_aliases(_on_received_from, "received from", "received-from"),
    **_aliases(_on_drop_traffic, "drop-traffic", "drop traffic"),
    **_aliases(_enum_field("ice", _ICE), "ICE", "ice"),
    **_aliases(_enum_field("ice_lite", _ICE_LITE), "ICE-lite", "ice-lite", "ICE lite", "ice lite"),
    **_aliases(_enum_field("dtls", _DTLS), "DTLS", "dtls"),
    **_aliases(
        _enum_field("dtls_reverse", {"passive": "passive", "active": "active"}),
        "DTLS-reverse",
        "dtls-reverse",
        "DTLS reverse",
        "dtls reverse",
    ),
    **_aliases(_on_passthrough, "passthrough", "passthru"),
    **_aliases(_on_transport_protocol, "transport protocol", "transport-protocol"),
    **_aliases(_string_field("media_address"), "media address", "media-address"),
    **_aliases(_on_record_call, "record call", "record-call"),
    **_aliases(_on_address_family, "address family", "address-family"),
    "metadata": _string_field("metadata"),
    **_aliases(
        _string_field("dtls_fingerprint"),
        "DTLS fingerprint",
        "DTLS-fingerprint",
        "dtls fingerprint",
        "dtls-fingerprint",
    ),
    **_aliases(_int_field("tos"), "TOS", "tos"),
    "ptime": _ptime_field("ptime"),
    **_aliases(
        _ptime_field("ptime_reverse"), "ptime-reverse", "ptime reverse", "reverse ptime", "reverse-ptime"
    ),
    **_aliases(_on_xmlrpc_callback, "xmlrpc-callback", "XMLRPC-callback"),
    "codec": _on_codec,
    **_aliases(_on_generate_rtcp, "generate RTCP", "generate-RTCP", "generate rtcp", "generate-rtcp"),
    **_aliases(_enum_field("media_echo", _MEDIA_ECHO), "media echo", "media-echo"),
    "frequency": _int_field("frequency"),
    "volume": _int_field("volume"),
    **_aliases(_on_digit, "code", "digit"),
    "trigger": _string_field("trigger"),
    **_aliases(_string_field("trigger_end"), "trigger-end", "trigger end", "end trigger", "end-trigger"),
    **_aliases(
        _int_field("trigger_end_time"),
        "trigger-end-time",
        "trigger end time",
        "end-trigger-time",
        "end trigger time",
    ),
    **_aliases(
        _int_field("trigger_end_digits"),
        "trigger-end-digits",
        "trigger end digits",
        "end-trigger-digits",
        "end trigger digits",
    ),
    **_aliases(_int_field("dtmf_delay"), "DTMF-delay", "DTMF delay", "dtmf-delay", "dtmf delay"),
    **_aliases(_list_handler(_Acc.t38_option), "T38", "T.38", "t38", "t.38"),
    **_aliases(
        _enum_field("dtmf_security", _DTMF_SECURITY),
        "DTMF-security",
        "dtmf-security",
        "DTMF security",
        "dtmf security",
    ),
    **_aliases(
        _enum_field("dtmf_security_trigger", _DTMF_SECURITY),
        "DTMF-security-trigger",
        "dtmf-security-trigger",
        "DTMF security trigger",
        "dtmf security trigger",
    ),
    **_aliases(
        _enum_field("dtmf_security_trigger_end", _DTMF_SECURITY),
        "DTMF-security-trigger-end",
        "dtmf-security-trigger-end",
        "DTMF security trigger end",
        "dtmf security trigger end",
    ),
    **_aliases(_int_field("delay_buffer"), "delay-buffer", "delay buffer"),
    "repeat-times": _int_field("repeat_times"),
    "file": _string_field("file"),
    "blob": _string_field("blob"),
    "db-id": _int_field("db_id"),
    "duration": _int_field("duration"),
    "pause": _int_field("pause"),
}


_OPTION_DEFAULTS: dict[str, Any] = {
    item.name: CodecOptions() if item.name == "codec" else item.default
    for item in fields(NgOptions)
    if item.name != "command"
}
"""Every `NgOptions` field but `command` with its default (all immutable, so shared)."""


def _new_options(command: Command, **values: Any) -> NgOptions:
    """`NgOptions(command=command, **values)` in a fraction of the time: the generated constructor of a
    frozen dataclass sets its 70-odd fields one by one through `object.__setattr__` (about 11 µs, for
    every request); this fills the instance's dictionary in one step. Unknown names raise TypeError
    like the constructor."""
    unknown = values.keys() - _OPTION_DEFAULTS.keys()
    if unknown:
        raise TypeError(f"NgOptions has no field(s) {sorted(unknown)}")
    options = object.__new__(NgOptions)
    object.__setattr__(options, "__dict__", {"command": command, **_OPTION_DEFAULTS, **values})
    return options


# ----------------------------------------------------------------------- the literal-key commands


def _literal_string(payload: Mapping[str, Any], key: str) -> str | None:
    return _as_str(payload.get(key))


def _literal_keys(command: Command) -> tuple[str, ...]:
    if command is Command.DELETE:
        return ("call-id", "from-tag", "to-tag", "via-branch", "flags", "delete-delay", "delete delay")
    if command is Command.QUERY:
        return ("call-id", "from-tag", "to-tag")
    if command is Command.START_RECORDING:
        return ("call-id", "from-tag", "metadata", "output-destination")
    if command is Command.STOP_RECORDING:
        return ("call-id", "from-tag", "metadata")
    if command is Command.LIST:
        return ("limit",)
    return ()


def _delete_delay(payload: Mapping[str, Any]) -> int | None:
    # 10.5: "delete-delay" (int or numeric string), then "delete delay", then the leading number of
    # a "delete-delay" string; the value is a C int; -1 (and any negative) means the default.
    delay = _int_or_str(payload.get("delete-delay"), None)
    if delay is None or _to_int32(delay) == -1:
        delay = _int_or_str(payload.get("delete delay"), None)
        if delay is None or _to_int32(delay) == -1:
            legacy = payload.get("delete-delay")
            delay = _int_prefix(legacy) if isinstance(legacy, str) else None
    if delay is None:
        return None
    delay = _to_int32(delay)
    return delay if delay >= 0 else None


def _parse_literal(payload: Mapping[str, Any], command: Command) -> NgOptions:
    known = _literal_keys(command)
    ignored = [key for key in payload if key != "command" and key not in known]
    if command is Command.LIST:
        limit = _int_or_str(payload.get("limit"), DEFAULT_LIST_LIMIT)
        assert limit is not None
        return _new_options(command, limit=limit, ignored=tuple(ignored))
    fatal = False
    if command is Command.DELETE:
        flags = payload.get("flags")
        if isinstance(flags, list):
            for item in flags:
                if item == "fatal":
                    fatal = True
                else:
                    ignored.append(f"flags: {item}")
        elif flags is not None:
            ignored.append(f"flags: {type(flags).__name__}")
    return _new_options(
        command,
        call_id=_literal_string(payload, "call-id"),
        from_tag=_literal_string(payload, "from-tag"),
        to_tag=_literal_string(payload, "to-tag") if command in (Command.DELETE, Command.QUERY) else None,
        via_branch=_literal_string(payload, "via-branch") if command is Command.DELETE else None,
        metadata=(
            _literal_string(payload, "metadata")
            if command in (Command.START_RECORDING, Command.STOP_RECORDING)
            else None
        ),
        output_destination=(
            _literal_string(payload, "output-destination") if command is Command.START_RECORDING else None
        ),
        delete_delay=_delete_delay(payload) if command is Command.DELETE else None,
        fatal=fatal,
        ignored=tuple(ignored),
    )


# -------------------------------------------------------------------------------------- the API


def parse_options(payload: Mapping[str, Any], command: Command) -> NgOptions:
    """Read `payload` (a decoded NG dictionary) the way 10.5 reads it for `command`.

    Never raises for unexpected keys, values or types; see the module docstring.
    """
    mode = _COMMON_PARSER_MODES.get(command)
    if mode is None:
        if command in (Command.PING, Command.STATISTICS):
            return _new_options(command, ignored=tuple(k for k in payload if k != "command"))
        return _parse_literal(payload, command)

    acc = _Acc(command, mode)
    for key, value in payload.items():
        handler = _COMMON_KEYS.get(key)
        if handler is not None:
            handler(acc, key, value)
        elif key != "command":
            acc.ignore(key)

    record_call = acc.record_call_key
    if "record-call" in acc.flags:
        record_call = True  # 10.5 applies the key first, then starts recording for the flag
    return _new_options(
        command,
        flags=frozenset(acc.flags),
        replace=frozenset(acc.replace),
        rtcp_mux=frozenset(acc.rtcp_mux),
        supports=frozenset(acc.supports),
        sdes=frozenset(acc.sdes),
        sdes_no=frozenset(acc.sdes_no),
        osrtp=frozenset(acc.osrtp),
        t38=frozenset(acc.t38),
        from_tags=tuple(acc.from_tags),
        codec=(
            CodecOptions(**{op: tuple(values) for op, values in acc.codec.items()})
            if any(acc.codec.values())
            else _OPTION_DEFAULTS["codec"]
        ),
        record_call=record_call,
        ignored=tuple(acc.ignored),
        **acc.s,
    )


def check_required(options: NgOptions) -> None:
    """Raise the errors 10.5 raises before it looks at any call state, in its order.

    offer/answer/publish: `No SDP body in message`, `No call-id in message`,
    `No from-tag in message`, (answer) `No to-tag in message`; list: `invalid limit, must be >= 0`;
    every other command except ping/statistics: `No call-id in message`. (subscribe answer and
    unsubscribe check their to-tag only after the call lookup, so that is left to the handler.)
    """
    command = options.command
    if command in (Command.PING, Command.STATISTICS):
        return
    if command is Command.LIST:
        if options.limit < 0:
            raise NgError(INVALID_LIMIT)
        return
    if command in (Command.OFFER, Command.ANSWER, Command.PUBLISH):
        if options.sdp is None:
            raise NgError(NO_SDP)
        if options.call_id is None:
            raise NgError(NO_CALL_ID)
        if options.from_tag is None:
            raise NgError(NO_FROM_TAG)
        if command is Command.ANSWER and options.to_tag is None:
            raise NgError(NO_TO_TAG)
        return
    if options.call_id is None:
        raise NgError(NO_CALL_ID)
