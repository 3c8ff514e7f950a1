"""A plain-call path written down to the floor: what the cheapest Python can do of 10.5's work.

`floor_proxy.py` does only what no proxy can leave out. This adds, for the bench's plain G.711 cycle,
the share of rtpengine 10.5's behaviour that cycle needs, each part in the cheapest Python form
found (one pass over each SDP; what the journal and the record write of a party made once), and
nothing for other calls:

* a request is taken only if its options are those of a plain call (`flags` among trust-address,
  symmetric and SIP-source-address, `replace` origin and session-connection, `ICE` remove,
  `via-branch`, `label`); any other key (codec options, SDES, DTLS, direction, media-address,
  received-from, transport-protocol, rtcp-mux, ...) is refused, as it would go to the general engine;
* the SDP is checked line by line as 10.5 checks it (`Failed to parse SDP`, `Incomplete SDP
  specification`, the checks of `karl_core.sdp.validate`) and read into what the path keeps: where
  the party receives, its formats, each codec's `a=rtpmap` and `a=fmtp`, `a=ptime`, the direction
  and the attributes passed on;
* in the same pass the SDP sent on is written as 10.5 writes it (codec lines in format order, the
  other attributes, direction, `a=rtcp`, `a=ptime`; `replace` origin and session-connection); its
  bytes equal rtpengine's and Karl's for this cycle (`tests/bench/test_floor_proxy.py` compares them
  with Karl's);
* an answer keeps the offered codecs it lists, in its order;
* the call's state document for the journal holds each party's codecs, ptime, direction, ports and
  peer and the call's flags; the call record each party's codecs and counters;
* a counter and a latency histogram per command, as a node exports them.

Not covered (refused with an error): the options above, ICE, SRTP, DTLS, rtcp-mux, more than one
`m=` line, IPv6, forks, a re-offer that changes the media (address, port or formats). So this is no
proxy either: it measures how far a path for plain calls, written for speed, could get in Python.
"""

from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass
from typing import Any

from floor_proxy import CDR_LINGER_S, Call, FloorProxy, json_text

FAILED_TO_PARSE = "Failed to parse SDP"
INCOMPLETE_SDP = "Incomplete SDP specification"
_UNCHECKED_KINDS = frozenset("abkiueptrz")
_DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))
_NOT_COVERED_ATTRIBUTES = frozenset(
    ("rtcp", "rtcp-mux", "ice-ufrag", "ice-pwd", "candidate", "crypto", "fingerprint", "setup", "mid")
)
# The keys of a request this path takes; any other (codec options, ICE other than remove, SDES, DTLS,
# direction, media-address, received-from, transport-protocol, rtcp-mux, ...) goes to the general engine
_COVERED_KEYS = frozenset(
    ("command", "call-id", "from-tag", "to-tag", "sdp", "flags", "replace", "ICE", "via-branch", "label")
)
_COVERED_FLAGS = frozenset(("trust-address", "symmetric", "SIP-source-address"))
_COVERED_REPLACE = frozenset(("origin", "session-connection"))
_LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_ADDRESSES: dict[str, bool] = {}  # address text -> usable (bounded below)


class SdpRefused(ValueError):
    """An SDP 10.5 refuses; args[0] is its error text."""


class NotCovered(ValueError):
    """A request this path does not handle (the general engine would)."""


@dataclass(slots=True)
class PlainMedia:
    """What the path keeps of a party's SDP: where it receives, its formats, and its media as the
    journal and the call record write it (made once, when the SDP is read)."""

    address: str
    port: int
    formats: tuple[str, ...]
    document: str  # JSON: codecs, ptime, direction, the SDP's address and port
    codec_names: str  # JSON list items: the codecs' encodings, for the call record


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
    usable = len(fields) >= 3 and fields[0] in ("IN", "in") and fields[1] == "IP4"
    if not usable or not _usable_address(fields[2]):
        raise NotCovered("c= other than IN IP4 (10.5 also takes IPv6; this path does not)")
    return fields[2]


def rewrite_plain_sdp(
    text: str, address: str, port: int, offered: tuple[str, ...] | None
) -> tuple[str, PlainMedia]:
    """One pass over a plain SDP: 10.5's checks (see the module), the SDP sent on as 10.5 writes it
    with `replace: [origin, session-connection]` (`offered`: for an answer, the formats of the
    offer, of which it keeps those it lists), and what the path keeps of it."""
    lines = text.split("\r\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0] != "v=0":
        raise SdpRefused(FAILED_TO_PARSE)
    out = ["v=0"]
    has_origin = False
    session_address: str | None = None
    index = 1
    count = len(lines)
    while index < count:  # the session part, written as it comes (10.5 keeps every line in place)
        line = lines[index]
        if len(line) < 2 or line[1] != "=":
            raise SdpRefused(FAILED_TO_PARSE)
        kind = line[0]
        if kind == "m":
            break
        if kind == "o":
            origin = line.split(" ")
            if has_origin or len(origin) < 6:
                raise SdpRefused(FAILED_TO_PARSE)
            has_origin = True
            out.append(f"{origin[0]} {origin[1]} {origin[2]} {origin[3]} {origin[4]} {address}")
        elif kind == "c":
            if session_address is not None:
                raise SdpRefused(FAILED_TO_PARSE)
            session_address = _connection(line[2:])
            out.append(f"c=IN IP4 {address}")
        elif kind == "s" or kind in _UNCHECKED_KINDS:
            out.append(line)
        else:
            raise SdpRefused(FAILED_TO_PARSE)
        index += 1
    if index == count or not has_origin:
        raise NotCovered("no m= or no o= line")
    fields = lines[index][2:].split(" ")
    if len(fields) < 3 or not fields[1].isdigit() or int(fields[1]) > 65535:
        raise SdpRefused(FAILED_TO_PARSE)
    if fields[0] != "audio" or fields[2] != "RTP/AVP" or fields[1] == "0":
        raise NotCovered("not a plain audio stream")
    formats = tuple(fields[3:])
    for token in formats:
        if not token.isdigit() or (len(token) > 2 and int(token) > 127):
            raise SdpRefused(INCOMPLETE_SDP)
    rtpmaps: dict[str, str] = {}
    fmtps: dict[str, str] = {}
    passed: list[str] = []
    ptime: str | None = None
    direction = "sendrecv"
    media_address: str | None = None
    for line in lines[index + 1 :]:
        if len(line) < 2 or line[1] != "=":
            raise SdpRefused(FAILED_TO_PARSE)
        kind = line[0]
        if kind == "a":
            name, _, rest = line[2:].partition(":")
            if name == "rtpmap":
                rtpmaps[rest.partition(" ")[0]] = line
            elif name == "fmtp":
                fmtps[rest.partition(" ")[0]] = line
            elif name == "ptime":
                ptime = rest
            elif name in _DIRECTIONS:
                direction = name
            elif name in _NOT_COVERED_ATTRIBUTES:
                raise NotCovered(f"a={name}")
            else:
                passed.append(line)
        elif kind == "c":
            if media_address is not None:
                raise SdpRefused(FAILED_TO_PARSE)
            media_address = _connection(line[2:])
        elif kind in ("m", "o", "s"):
            raise NotCovered("more than one m= line") if kind == "m" else SdpRefused(FAILED_TO_PARSE)
        elif kind in _UNCHECKED_KINDS:
            raise NotCovered(f"{kind}= in the media section")
        else:
            raise SdpRefused(FAILED_TO_PARSE)
    peer = media_address or session_address
    if peer is None:
        raise SdpRefused(INCOMPLETE_SDP)
    written = formats if offered is None else tuple(f for f in formats if f in offered)
    out.append(f"m=audio {port} RTP/AVP {' '.join(written)}")
    if media_address is not None:
        out.append(f"c=IN IP4 {address}")
    for number in written:
        rtpmap = rtpmaps.get(number)
        if rtpmap is not None:
            out.append(rtpmap)
        fmtp = fmtps.get(number)
        if fmtp is not None:
            out.append(fmtp)
    out.extend(passed)
    out.append(f"a={direction}")
    out.append(f"a=rtcp:{port + 1}")
    if ptime is not None:
        out.append(f"a=ptime:{ptime}")
    out.append("")
    encodings = [rtpmaps[n][10 + len(n) :] if n in rtpmaps else n for n in formats]
    codecs = ",".join(
        f"[{n},{json_text(e)},{json_text(fmtps[n][8 + len(n) :] if n in fmtps else '')}]"
        for n, e in zip(formats, encodings, strict=True)
    )
    document = (
        f'"codecs":[{codecs}],"ptime":{json_text(ptime or "")},"direction":"{direction}",'
        f'"sdp":[{json_text(peer)},{fields[1]}]'
    )
    media = PlainMedia(peer, int(fields[1]), formats, document, ",".join(map(json_text, encodings)))
    return "\r\n".join(out), media


class PlainPathProxy(FloorProxy):
    """The floor proxy with the plain-call path's share of 10.5's work (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, int] = {}
        self.latency: dict[str, list[int]] = {}
        self.models: dict[str, dict[str, PlainMedia]] = {}  # call-id -> tag -> its last SDP's media
        self._ending: dict[str, PlainMedia] = {}  # the models of the call being deleted

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
        if not _COVERED_KEYS.issuperset(request):
            raise NotCovered("an option of the general engine")
        ice = request.get("ICE")
        replace = request.get("replace")
        flags = request.get("flags")
        if (
            (ice is not None and ice != "remove")
            or (replace is not None and not _COVERED_REPLACE.issuperset(replace))
            or (flags is not None and not _COVERED_FLAGS.issuperset(flags))
        ):
            raise NotCovered("an option of the general engine")
        call_id = request["call-id"]
        call = self.calls.get(call_id)
        models = self.models.get(call_id)
        offered: tuple[str, ...] | None = None
        if offerer is None:
            if call is None:
                call = self.calls[call_id] = Call(call_id)
                models = self.models[call_id] = {}
            elif tag not in call.parties:
                raise NotCovered("a fork")
        else:
            if call is None:
                return {"result": "error", "error-reason": "Unknown call-id"}
            offer = models.get(offerer) if models is not None else None
            if offer is None:
                raise NotCovered("an answer to no offer of this path")
            offered = offer.formats
        assert models is not None
        party = call.parties.get(tag)
        if party is None:
            party = call.parties[tag] = self._party(tag)
        sdp, media = rewrite_plain_sdp(request["sdp"], self.media_ip, party.rtp.port, offered)
        before = models.get(tag)
        if before is not None and (before.address, before.port, before.formats) != (
            media.address,
            media.port,
            media.formats,
        ):
            raise NotCovered("a re-offer that changes the media")
        models[tag] = media
        party.sdp_peer = address, port = (media.address, media.port)
        party.rtp.peer, party.rtcp.peer = (address, port), (address, port + 1)
        if offerer is not None:
            other = call.parties[offerer]
            party.rtp.sink, other.rtp.sink = other.rtp, party.rtp
            party.rtcp.sink, other.rtcp.sink = other.rtcp, party.rtcp
        call.version += 1
        if self.journal is not None:
            self._store_model(call, models, flags)
        return {"result": "ok", "sdp": sdp}

    def _store_model(self, call: Call, models: dict[str, PlainMedia], flags: list[str] | None) -> None:
        assert self.journal is not None
        parties = ",".join(
            f'{{"tag":{json_text(party.tag)},"created":{party.created},"media":[{{"index":1,'
            f'"type":"audio","protocol":"RTP/AVP",{models[party.tag].document},'
            f'"ports":[{party.rtp.port},{party.rtcp.port}],'
            f'"sink":{party.rtp.sink.port if party.rtp.sink else "null"}}}]}}'
            for party in call.parties.values()
            if party.tag in models
        )
        flag_list = ",".join(map(json_text, flags)) if flags else ""
        line = (
            f'{{"schema":7,"call-id":{json_text(call.call_id)},"version":{call.version},'
            f'"created":{call.created!r},"last-signal":{time.time()!r},"flags":[{flag_list}],'
            f'"parties":[{parties}]}}\n'
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
            parties.append(
                f'{{"tag":{json_text(p.tag)},"codecs":[{model.codec_names if model else ""}],'
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
