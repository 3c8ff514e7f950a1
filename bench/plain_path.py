"""A plain-call path written down to the floor: what the cheapest Python can do of 10.5's work.

`floor_proxy.py` does only what no proxy can leave out. This adds, for the bench's plain G.711 cycle,
the share of rtpengine 10.5's behaviour that cycle needs, each part in the cheapest Python form
found, and nothing for other calls:

* the NG options a plain request may carry are read (`flags`, `replace`, `ICE`, `codec`,
  `transport-protocol`, `direction`, `media-address`, `received-from`, `label`, `via-branch`,
  `rtcp-mux`, `SDES`, `delete-delay`); a request this path does not cover is refused;
* the SDP is checked line by line as 10.5 checks it (`Failed to parse SDP`, `Incomplete SDP
  specification`, the checks of `karl_core.sdp.validate`) and read into a model: the origin, the
  connection, per `m=` line its port, protocol, formats, codecs (`a=rtpmap`, `a=fmtp`), `a=ptime`,
  direction and the attributes it passes on;
* the SDP sent on is written from that model in 10.5's order (codec lines, the other attributes,
  direction, `a=rtcp`, `a=ptime`), with `replace` origin and session-connection; its bytes equal
  rtpengine's and Karl's for this cycle (`tests/bench/test_floor_proxy.py` compares them with Karl's);
* an answer keeps the offered codecs it lists, in its order;
* the call's state document for the journal holds the model (codecs, ptime, direction, ports,
  peers, flags), the call record the parties' codecs and counters;
* a counter and a latency histogram per command, as a node exports them.

Not covered (refused with an error): codec options, ICE, SRTP, DTLS, rtcp-mux, more than one `m=`
line, re-offers that change anything but the SDP's version, forks. So this is no proxy either: it
measures how far a path for plain calls, written for speed, could get in Python.
"""

from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass, field
from typing import Any

from floor_proxy import CDR_LINGER_S, Call, FloorProxy, json_text

FAILED_TO_PARSE = "Failed to parse SDP"
INCOMPLETE_SDP = "Incomplete SDP specification"
_UNCHECKED_KINDS = frozenset("abkiueptrz")
_DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))
_OPTIONS = (
    "flags",
    "replace",
    "ICE",
    "codec",
    "transport-protocol",
    "direction",
    "media-address",
    "received-from",
    "label",
    "via-branch",
    "rtcp-mux",
    "SDES",
    "delete-delay",
)
_LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_ADDRESSES: dict[str, bool] = {}  # address text -> usable (bounded below)


class SdpRefused(ValueError):
    """An SDP 10.5 refuses; args[0] is its error text."""


class NotCovered(ValueError):
    """A request this path does not handle (the general engine would)."""


@dataclass(slots=True)
class Codec:
    payload_type: int
    rtpmap: str | None = None  # "PCMU/8000"
    fmtp: str | None = None


@dataclass(slots=True)
class PlainMedia:
    kind: str
    port: int
    protocol: str
    formats: list[int]
    codecs: dict[int, Codec]
    address: str
    ptime: str | None = None
    direction: str = "sendrecv"
    passed: list[str] = field(default_factory=list)  # attributes written on as they came


@dataclass(slots=True)
class PlainSdp:
    origin: list[str]
    session_lines: list[str]  # after v=, in order; "o=" and "c=" stand for the lines rewritten
    media: PlainMedia
    media_connection: bool = False  # a c= line in the media section (written after m=)


def _usable_address(text: str) -> bool:
    known = _ADDRESSES.get(text)
    if known is None:
        parts = text.split(".")
        known = len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
        if len(_ADDRESSES) < 4096 and len(text) < 64:
            _ADDRESSES[text] = known
    return known


def _connection(value: str) -> str:
    fields = value.split(" ")
    if (
        len(fields) < 3
        or fields[0] not in ("IN", "in")
        or fields[1] != "IP4"
        or not _usable_address(fields[2])
    ):
        raise NotCovered("c= other than IN IP4 (10.5 also takes IPv6; this path does not)")
    return fields[2]


def parse_plain_sdp(text: str) -> PlainSdp:
    """10.5's checks of a plain SDP and the model of what it offers (see the module)."""
    lines = text.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "v=0":
        raise SdpRefused(FAILED_TO_PARSE)
    origin: list[str] | None = None
    session_lines: list[str] = []
    session_address: str | None = None
    media: PlainMedia | None = None
    media_address: str | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpRefused(FAILED_TO_PARSE)
        kind, value = line[0], line[2:]
        if kind == "a":
            if media is None:
                session_lines.append(line)
                continue
            name, _, rest = value.partition(":")
            if name == "rtpmap":
                number, _, encoding = rest.partition(" ")
                if number.isdigit() and int(number) in media.codecs:
                    media.codecs[int(number)].rtpmap = encoding
                    continue
            elif name == "fmtp":
                number, _, parameters = rest.partition(" ")
                if number.isdigit() and int(number) in media.codecs:
                    media.codecs[int(number)].fmtp = parameters
                    continue
            elif name == "ptime":
                media.ptime = rest
                continue
            elif name in _DIRECTIONS:
                media.direction = name
                continue
            elif name in ("rtcp", "rtcp-mux", "ice-ufrag", "candidate", "crypto", "fingerprint", "setup"):
                raise NotCovered(f"a={name}")
            media.passed.append(line)
        elif kind == "m":
            if media is not None:
                raise NotCovered("more than one m= line")
            fields = value.split(" ")
            if len(fields) < 3 or not fields[1].isdigit() or int(fields[1]) > 65535:
                raise SdpRefused(FAILED_TO_PARSE)
            if fields[0] != "audio" or fields[2] != "RTP/AVP" or fields[1] == "0":
                raise NotCovered("not a plain audio stream")
            formats = []
            for token in fields[3:]:
                if not token.isdigit() or int(token) > 127:
                    raise SdpRefused(INCOMPLETE_SDP)
                formats.append(int(token))
            media = PlainMedia(
                fields[0], int(fields[1]), fields[2], formats, {pt: Codec(pt) for pt in formats}, ""
            )
        elif kind == "c":
            if media is None:
                if session_address is not None:
                    raise SdpRefused(FAILED_TO_PARSE)
                session_address = _connection(value)
                session_lines.append("c=")
            else:
                if media_address is not None:
                    raise SdpRefused(FAILED_TO_PARSE)
                media_address = _connection(value)
        elif kind == "o":
            if media is not None or origin is not None:
                raise SdpRefused(FAILED_TO_PARSE)
            origin = value.split(" ")
            if len(origin) < 6:
                raise SdpRefused(FAILED_TO_PARSE)
            session_lines.append("o=")
        elif kind == "s":
            if media is not None:
                raise SdpRefused(FAILED_TO_PARSE)
            session_lines.append(line)
        elif kind in _UNCHECKED_KINDS:
            if media is not None:
                raise NotCovered(f"{kind}= in the media section")
            session_lines.append(line)
        else:
            raise SdpRefused(FAILED_TO_PARSE)
    if media is None or origin is None:
        raise NotCovered("no m= or no o= line")
    address = media_address or session_address
    if address is None:
        raise SdpRefused(INCOMPLETE_SDP)
    media.address = address
    return PlainSdp(origin, session_lines, media, media_address is not None)


def write_plain_sdp(sdp: PlainSdp, formats: list[int], address: str, port: int) -> str:
    """The SDP sent on, as 10.5 writes it with `replace: [origin, session-connection]`."""
    origin = sdp.origin
    out = ["v=0\r\n"]
    media = sdp.media
    for line in sdp.session_lines:  # (10.5 keeps every line where it stood)
        if line == "o=":
            out.append(f"o={origin[0]} {origin[1]} {origin[2]} {origin[3]} {origin[4]} {address}\r\n")
        elif line == "c=":
            out.append(f"c=IN IP4 {address}\r\n")
        else:
            out.append(line + "\r\n")
    out.append(f"m=audio {port} RTP/AVP {' '.join(map(str, formats))}\r\n")
    if sdp.media_connection:
        out.append(f"c=IN IP4 {address}\r\n")
    for number in formats:
        codec = media.codecs[number]
        if codec.rtpmap is not None:
            out.append(f"a=rtpmap:{number} {codec.rtpmap}\r\n")
        if codec.fmtp is not None:
            out.append(f"a=fmtp:{number} {codec.fmtp}\r\n")
    out.extend(line + "\r\n" for line in media.passed)
    out.append(f"a={media.direction}\r\na=rtcp:{port + 1}\r\n")
    if media.ptime is not None:
        out.append(f"a=ptime:{media.ptime}\r\n")
    return "".join(out)


class PlainPathProxy(FloorProxy):
    """The floor proxy with the plain-call path's share of 10.5's work (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, int] = {}
        self.latency: dict[str, list[int]] = {}
        self.models: dict[str, dict[str, PlainSdp]] = {}  # call-id -> tag -> the party's last SDP
        self._ending: dict[str, PlainSdp] = {}  # the models of the call being deleted

    def handle(self, request: dict[str, Any]) -> dict[str, Any] | bytes:
        started = time.perf_counter()
        command = request.get("command")
        if not isinstance(command, str):
            return {"result": "error", "error-reason": "No command specified"}
        try:
            reply = super().handle(request)
        except SdpRefused as exc:
            reply = {"result": "error", "error-reason": exc.args[0]}
        except NotCovered as exc:
            reply = {"result": "error", "error-reason": f"not on the plain path: {exc}"}
        self.commands[command] = self.commands.get(command, 0) + 1
        buckets = self.latency.get(command)
        if buckets is None:
            buckets = self.latency[command] = [0] * (len(_LATENCY_BOUNDS) + 1)
        buckets[bisect.bisect_left(_LATENCY_BOUNDS, time.perf_counter() - started)] += 1
        return reply

    def _offer_or_answer(self, request: dict[str, Any], tag: str, offerer: str | None) -> dict[str, Any]:
        options = {key: request[key] for key in _OPTIONS if key in request}
        if "codec" in options or options.get("ICE", "remove") != "remove" or "SDES" in options:
            raise NotCovered("codec, ICE or SDES options")
        replace = set(options.get("replace", ()))
        if replace - {"origin", "session-connection"}:
            raise NotCovered("replace")
        flags = set(options.get("flags", ()))
        call_id = request["call-id"]
        sdp = parse_plain_sdp(request["sdp"])
        call = self.calls.get(call_id)
        if offerer is None:
            if call is not None and tag not in call.parties:
                raise NotCovered("a fork")
            if call is None:
                call = self.calls[call_id] = Call(call_id)
            formats = sdp.media.formats
        else:
            if call is None:
                return {"result": "error", "error-reason": "Unknown call-id"}
            offered = self.models.get(call_id, {}).get(offerer)
            if offered is None:
                raise NotCovered("an answer to no offer of this path")
            listed = set(offered.media.formats)
            formats = [pt for pt in sdp.media.formats if pt in listed]
        party = call.parties.get(tag)
        if party is None:
            party = call.parties[tag] = self._party(tag)
        self.models.setdefault(call_id, {})[tag] = sdp
        party.sdp_peer = address, port = (sdp.media.address, sdp.media.port)
        party.rtp.peer, party.rtcp.peer = (address, port), (address, port + 1)
        if offerer is not None:
            other = call.parties[offerer]
            party.rtp.sink, other.rtp.sink = other.rtp, party.rtp
            party.rtcp.sink, other.rtcp.sink = other.rtcp, party.rtcp
        call.version += 1
        self._store_model(call, flags)
        return {"result": "ok", "sdp": write_plain_sdp(sdp, formats, self.media_ip, party.rtp.port)}

    def _store_model(self, call: Call, flags: set[str]) -> None:
        if self.journal is None:
            return
        parties = []
        models = self.models.get(call.call_id, {})
        for party in call.parties.values():
            model = models.get(party.tag)
            if model is None:
                continue
            media = model.media
            codecs = ",".join(
                f"[{c.payload_type},{json_text(c.rtpmap or '')},{json_text(c.fmtp or '')}]"
                for c in media.codecs.values()
            )
            parties.append(
                f'{{"tag":{json_text(party.tag)},"created":{party.created},"media":[{{"index":1,'
                f'"type":"audio","protocol":"RTP/AVP","codecs":[{codecs}],'
                f'"ptime":{json_text(media.ptime or "")},"direction":"{media.direction}",'
                f'"sdp":[{json_text(media.address)},{media.port}],'
                f'"ports":[{party.rtp.port},{party.rtcp.port}],'
                f'"sink":{party.rtp.sink.port if party.rtp.sink else "null"}}}]}}'
            )
        flag_list = ",".join(json_text(f) for f in sorted(flags))
        line = (
            f'{{"schema":7,"call-id":{json_text(call.call_id)},"version":{call.version},'
            f'"created":{call.created!r},"last-signal":{time.time()!r},"flags":[{flag_list}],'
            f'"parties":[{",".join(parties)}]}}\n'
        )
        os.write(self.journal, line.encode())

    def _delete(self, request: dict[str, Any]) -> dict[str, Any] | bytes:
        self._ending = self.models.pop(request.get("call-id", ""), {})
        return super()._delete(request)

    def _record(self, call: Call) -> None:
        """The call record with each party's codecs, direction and counters."""
        if self.cdr is None:
            return
        parties = []
        for p in call.parties.values():
            model = self._ending.get(p.tag)
            codecs = ",".join(
                json_text(c.rtpmap or str(c.payload_type))
                for c in (model.media.codecs.values() if model else ())
            )
            parties.append(
                f'{{"tag":{json_text(p.tag)},"codecs":[{codecs}],'
                f'"direction":"{model.media.direction if model else ""}",'
                f'"rtp":{{"packets":{p.rtp.packets},"bytes":{p.rtp.bytes}}},'
                f'"rtcp":{{"packets":{p.rtcp.packets},"bytes":{p.rtcp.bytes}}},'
                f'"peer":[{json_text(p.sdp_peer[0])},{p.sdp_peer[1]}],'
                f'"local":[{p.rtp.port},{p.rtcp.port}]}}'
            )
        if not self.cdr_queue:
            self.loop.call_later(CDR_LINGER_S, self._write_records)
        now = time.time()
        self.cdr_queue.append(
            f'{{"call_id":{json_text(call.call_id)},"start":{call.created!r},"end":{now!r},'
            f'"duration":{now - call.created:.3f},"reason":"delete","parties":[{",".join(parties)}]}}'
        )
