"""Normalisation of NG replies so that two media proxies can be compared side by side.

Two servers answering the same request sequence differ in things that do not matter: their own media
address, which ports they happened to allocate, wall-clock timestamps, random ICE credentials, keys and
fingerprints, the statistics counters left behind by earlier tests. `Normaliser` rewrites exactly those
into placeholders and leaves everything else alone, so that what is left can be compared with `==`.

Placeholders keep the facts a client can observe:
- the proxy address becomes `PROXY_IP` (each server has its own);
- proxy ports become `PORT_1`, `PORT_2`, ... in order of first appearance within one sequence run on one
  server, so "the same port again" and "a new port" stay distinguishable; an RTCP port that is one above a
  known RTP port becomes `PORT_n+1`, so "RTCP = RTP + 1" stays visible (and a non-adjacent RTCP port
  gets a number of its own);
- random strings become `<UFRAG_1:8>`-style tokens (kind, first-appearance number, length), so their
  stability across re-offers and their length stay visible;
- timestamps become `<time>` only when they are plausible (an integer within a day of now), so a wrong
  type or a zero still shows up.

Peer addresses and ports (the test's own SDP values) are never touched. An SDP becomes a list of lines
with the line ending made visible (`<CRLF>`, `<LF>`, `<no EOL>`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from karl_core.ng import bencode

# Keys whose values are wall-clock times in query/delete replies (10.5 spelling and the older one).
TIME_KEYS = frozenset({"created", "last signal", "last_signal", "last packet", "last_packet"})
MICROSECOND_KEYS = frozenset({"created_us"})
PLAUSIBLE_CLOCK_SKEW = 86400
# Lists that are sets by meaning; rtpengine's order is an implementation detail of its bit flags.
UNORDERED_LIST_KEYS = frozenset({"flags"})

EOL_MARKERS = {"\r\n": "<CRLF>", "\n": "<LF>", "\r": "<CR>", "": "<no EOL>"}


@dataclass
class PortNamer:
    """Names proxy ports by first appearance; RTCP ports adjacent to a known RTP port become `+1`."""

    port_min: int
    port_max: int
    names: dict[int, str] = field(default_factory=dict)
    _bases: set[int] = field(default_factory=set)

    def is_proxy_port(self, port: int) -> bool:
        return self.port_min <= port <= self.port_max

    def rtp(self, port: int) -> str | int:
        if not self.is_proxy_port(port):
            return port
        if port not in self.names:
            self._new_base(port)
        return self.names[port]

    def rtcp(self, port: int) -> str | int:
        if not self.is_proxy_port(port):
            return port
        if port not in self.names:
            if port - 1 in self._bases:
                self.names[port] = self.names[port - 1] + "+1"
            else:
                self._new_base(port)
        return self.names[port]

    def _new_base(self, port: int) -> None:
        self._bases.add(port)
        self.names[port] = f"PORT_{len(self._bases)}"


@dataclass
class TokenNamer:
    """Random strings (ufrag, keys, fingerprints...) → `<KIND_n:len>`, numbered per kind."""

    names: dict[tuple[str, str], str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.names:
            n = self._counts.get(kind, 0) + 1
            self._counts[kind] = n
            self.names[key] = f"<{kind}_{n}:{len(value)}>"
        return self.names[key]


def ip_pattern(ip: str) -> re.Pattern[str]:
    """Matches `ip` as a whole address token (127.0.0.3 must not match inside 127.0.0.30 or 1127.0.0.3,
    but does match in `127.0.0.3:5000`)."""
    return re.compile(r"(?<![\w.])" + re.escape(ip) + r"(?![\w.])")


_CANDIDATE = re.compile(
    r"^a=candidate:(?P<foundation>\S+) (?P<component>\d+) (?P<transport>\S+) (?P<priority>\d+) "
    r"(?P<address>\S+) (?P<port>\d+) typ (?P<type>\S+)(?P<rest>.*)$"
)
_RPORT = re.compile(r"(?<= rport )(\d+)")


@dataclass
class Normaliser:
    """Normalises the replies of one sequence run against one server (state is per run)."""

    proxy_ip: str
    port_min: int
    port_max: int
    call_ids: dict[str, str] = field(default_factory=dict)
    now: Callable[[], float] = time.time
    ports: PortNamer = field(init=False)
    tokens: TokenNamer = field(default_factory=TokenNamer)
    _ip_re: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ports = PortNamer(self.port_min, self.port_max)
        self._ip_re = ip_pattern(self.proxy_ip)

    # ---- strings ---------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """A plain string: proxy address and this run's call-ids replaced."""
        value = self._ip_re.sub("PROXY_IP", value)
        for real, placeholder in self.call_ids.items():
            if real in value:
                value = value.replace(real, placeholder)
        return value

    # ---- SDP -------------------------------------------------------------------------------------

    def sdp(self, sdp: str) -> list[str]:
        """One string per SDP line, normalised, with its line ending made visible."""
        out = []
        for line, eol in split_lines(sdp):
            out.append(self.sdp_line(line) + EOL_MARKERS[eol])
        return out

    def sdp_line(self, line: str) -> str:
        if line.startswith("m="):
            return self._m_line(line)
        if line.startswith("a=rtcp:"):
            return self._rtcp_line(line)
        if line.startswith("a=candidate:"):
            return self._candidate_line(line)
        for prefix, kind in (
            ("a=ice-ufrag:", "UFRAG"),
            ("a=ice-pwd:", "PWD"),
            ("a=rtpengine:", "RTPENGINE"),
            ("a=tls-id:", "TLSID"),
        ):
            if line.startswith(prefix):
                return prefix + self.tokens(kind, line[len(prefix) :].strip())
        if line.startswith("a=fingerprint:"):
            hash_name, _, digest = line[len("a=fingerprint:") :].partition(" ")
            return f"a=fingerprint:{hash_name} " + self.tokens("FINGERPRINT", digest.strip())
        if line.startswith("a=crypto:"):
            return re.sub(r"inline:([^|\s]+)", lambda m: "inline:" + self.tokens("KEY", m.group(1)), line)
        return self.text(line)

    def _m_line(self, line: str) -> str:
        parts = line.split(" ")
        if len(parts) >= 2:
            port, slash, count = parts[1].partition("/")
            if port.isdigit():
                parts[1] = f"{self.ports.rtp(int(port))}{slash}{count}"
        return self.text(" ".join(parts))

    def _rtcp_line(self, line: str) -> str:
        port, sep, rest = line[len("a=rtcp:") :].partition(" ")
        if port.isdigit():
            return f"a=rtcp:{self.ports.rtcp(int(port))}{sep}{self.text(rest)}"
        return self.text(line)

    def _candidate_line(self, line: str) -> str:
        m = _CANDIDATE.match(line)
        if not m:
            return self.text(line)
        port = int(m["port"])
        named = self.ports.rtp(port) if m["component"] == "1" else self.ports.rtcp(port)
        rest = _RPORT.sub(lambda r: str(self.ports.rtp(int(r.group(1)))), m["rest"])
        return self.text(
            f"a=candidate:{self.tokens('FOUNDATION', m['foundation'])} {m['component']} {m['transport']} "
            f"{m['priority']} {m['address']} {named} typ {m['type']}{rest}"
        )

    # ---- replies ---------------------------------------------------------------------------------

    def reply(self, request: Mapping[str, Any] | None, reply: Any) -> Any:
        """A decoded reply to `request` (None if the request is unknown, e.g. a raw datagram)."""
        command = request.get("command") if isinstance(request, Mapping) else None
        if isinstance(reply, dict) and reply.get("result") == "ok":
            if command == "statistics":
                return self.statistics(reply)
            if command == "list" and isinstance(reply.get("calls"), list):
                reply = {**reply, "calls": self.own_calls(reply["calls"])}
        return self.value(reply)

    def value(self, value: Any, key: str = "") -> Any:
        """Walks a decoded structure; dict keys in sorted order so numbering ignores key order."""
        if isinstance(value, dict):
            return {self.text(k): self._dict_item(k, value[k]) for k in sorted(value)}
        if isinstance(value, list):
            items = [self.value(v, key) for v in value]
            if key in UNORDERED_LIST_KEYS:
                items.sort(key=repr)
            return items
        if isinstance(value, str):
            return self.text(value)
        return value

    def _dict_item(self, key: str, value: Any) -> Any:
        if key in ("sdp", "SDP") and isinstance(value, str):
            return self.sdp(value)
        if key == "streams" and isinstance(value, list):
            return [self._stream(i, s) for i, s in enumerate(value)]
        if key in TIME_KEYS and isinstance(value, int) and abs(value - self.now()) < PLAUSIBLE_CLOCK_SKEW:
            return "<time>"
        if key in MICROSECOND_KEYS and isinstance(value, int) and 0 <= value < 1_000_000:
            return "<us>"
        return self.value(value, key)

    def _stream(self, index: int, stream: Any) -> Any:
        """A packet stream of a query reply: the first one of a media is RTP, later ones RTCP."""
        if not isinstance(stream, dict):
            return self.value(stream)
        out = self.value({k: v for k, v in stream.items() if k != "local port"})
        port = stream.get("local port")
        if isinstance(port, int):
            out["local port"] = self.ports.rtp(port) if index == 0 else self.ports.rtcp(port)
        elif "local port" in stream:
            out["local port"] = self.value(port)
        return out

    def own_calls(self, calls: list[Any]) -> list[Any]:
        """`list` shows every call of the server: keep only this run's call-ids, as sorted placeholders."""
        return sorted(self.call_ids[c] for c in calls if isinstance(c, str) and c in self.call_ids)

    def statistics(self, reply: dict[str, Any]) -> Any:
        """Statistics counters depend on everything the server did before; compare the shape only."""
        return {k: (shape(v) if k == "statistics" else self.value(v)) for k, v in sorted(reply.items())}

    # ---- raw datagrams ---------------------------------------------------------------------------

    def request_reply(self, request: Mapping[str, Any], datagram: bytes | None, cookie: bytes) -> Any:
        """The reply datagram to an NG request: the normalised dictionary if all is well, else a
        description of what was wrong with the datagram (no reply, wrong cookie, undecodable)."""
        decoded = self.raw_reply(datagram, cookie, request)
        if isinstance(decoded, dict) and decoded.get("cookie") == "<COOKIE>" and "bencode" in decoded:
            return decoded["bencode"]
        return decoded

    def raw_reply(
        self, datagram: bytes | None, cookie: bytes, request: Mapping[str, Any] | None = None
    ) -> Any:
        """A reply datagram: cookie checked, payload decoded (bencode, or JSON for JSON requests) and
        normalised."""
        if datagram is None:
            return "<no reply>"
        got_cookie, space, body = datagram.partition(b" ")
        shown_cookie = "<COOKIE>" if got_cookie == cookie else f"<other cookie {got_cookie!r}>"
        if not space:
            return {"cookie": shown_cookie, "undecodable": repr(datagram)}
        if body.startswith(b"{"):
            try:
                return {"cookie": shown_cookie, "json": self.reply(request, json.loads(body))}
            except ValueError:
                return {"cookie": shown_cookie, "undecodable": repr(body)}
        try:
            decoded = bencode.decode(body)
        except ValueError:
            return {"cookie": shown_cookie, "undecodable": repr(body)}
        return {"cookie": shown_cookie, "bencode": self.reply(request, decoded)}


# Sections of `statistics` whose shape we compare: what monitoring built on `rtpengine-ctl list jsonstats`
# and the NG `statistics` command reads. Values are never compared (they depend on the server's history
# and on timing: per-command durations, and the interval values 10.5 fills when it reports to Graphite).
STATISTICS_SECTIONS = (
    "currentstatistics",
    "totalstatistics",
    "intervalstatistics",
    "mos",
    "controlstatistics",
)


def shape(value: Any) -> Any:
    """Keys and value types of a `statistics` dictionary: only the compared sections, values as types."""
    if not isinstance(value, dict):
        return type_name(value)
    return {
        "sections": sorted(value),
        **{name: structure_of(value[name]) for name in STATISTICS_SECTIONS if name in value},
    }


def structure_of(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: structure_of(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            s = structure_of(item)
            if s not in shapes:
                shapes.append(s)
        return shapes
    return type_name(value)


def type_name(value: Any) -> str:
    return (
        "<int>"
        if isinstance(value, int)
        else "<str>"
        if isinstance(value, str)
        else f"<{type(value).__name__}>"
    )


def split_lines(text: str) -> list[tuple[str, str]]:
    """(line, ending) pairs; ending is "\\r\\n", "\\n", "\\r" or "" for an unterminated last line."""
    out = []
    for raw in text.splitlines(keepends=True):
        if raw.endswith("\r\n"):
            out.append((raw[:-2], "\r\n"))
        elif raw.endswith(("\n", "\r")):
            out.append((raw[:-1], raw[-1]))
        else:
            out.append((raw, ""))
    return out


def render(value: Any, indent: str = "", width: int = 100) -> str:
    """A readable, stable rendering of a normalised value for failure messages: JSON with sorted keys,
    containers that fit in `width` characters on one line."""
    flat = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    if len(indent) + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {render(value[k], inner, width)}"
            for k in sorted(value)
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    items = [inner + render(v, inner, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + indent + "]"


def sdp_for_display(sdp: str) -> list[str]:
    """An SDP as sent, one string per line with its ending made visible (not normalised)."""
    return [line + EOL_MARKERS[eol] for line, eol in split_lines(sdp)]
