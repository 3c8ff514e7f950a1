"""NG request sequences for the side-by-side suite, and the runner that plays them against a server.

A `Sequence` is a named list of steps: `Request` (an NG dictionary, bencoded and sent with a fresh
cookie) or `Raw` (a hand-made datagram, for framing errors). A request may use `ReplySdp(n)` as its SDP
to send back what the proxy answered at step n. Call-ids are written as `@CALL@`, `@CALL2@`, ... and get a
fresh value per run; tags are fixed (they only need to be unique within a call). The peer addresses in
the SDPs are loopback addresses outside every proxy address, and peer ports are below 10000, outside every
proxy port range, so normalisation never touches them.

`run_sequence` plays a sequence against one server and returns a `Transcript` of normalised replies;
`compare_transcripts` describes every step whose normalised replies differ, in a form meant for the
person fixing the server under test (request, both replies, SDP diff).

The sequence data fills the second half of this module; `SEQUENCES` lists them all.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from karl_core.ng import bencode
from ng_normalize import Normaliser, render, sdp_for_display

# ================================================================================================
# Model
# ================================================================================================

CALL, CALL2, CALL3 = "@CALL@", "@CALL2@", "@CALL3@"
CALL_PLACEHOLDERS = (CALL, CALL2, CALL3)
COOKIE = b"@COOKIE@"


@dataclass(frozen=True)
class Request:
    """An NG request dictionary; `@CALL@`-style placeholders anywhere in it are substituted."""

    body: Mapping[str, Any]
    note: str = ""


@dataclass(frozen=True)
class Raw:
    """A hand-made datagram (`@COOKIE@` and call placeholders substituted); `wait` bounds the wait for a
    reply — short where the expected outcome is silence, since silence can only be observed by waiting."""

    datagram: bytes
    note: str = ""
    wait: float = 3.0


Step = Request | Raw


@dataclass(frozen=True)
class ReplySdp:
    """Stands for the (unnormalised) SDP of the reply to an earlier step, 1-based: the proxy's own output
    fed back to it, as in a spiral through the same proxy."""

    step: int


@dataclass(frozen=True)
class Sequence:
    name: str
    steps: tuple[Step, ...]
    doc: str = ""
    # Needs a server that has seen no other call (e.g. `list` with its default limit).
    fresh_server: bool = False


class NgClientLike(Protocol):
    def raw(self, datagram: bytes, timeout: float = 3.0) -> bytes | None: ...


class ServerLike(Protocol):
    """What the runner needs of a server (`karl_testkit.NgServer` fits); read-only members."""

    @property
    def name(self) -> str: ...

    @property
    def ng(self) -> NgClientLike: ...

    @property
    def media_ip(self) -> str: ...

    @property
    def port_min(self) -> int: ...

    @property
    def port_max(self) -> int: ...


# ================================================================================================
# Runner
# ================================================================================================


@dataclass
class StepResult:
    index: int
    step: Step
    sent: Any  # the request as sent (dict or bytes), placeholders substituted
    reply: bytes | None  # the reply datagram as received
    normalised: Any


@dataclass
class Transcript:
    sequence: Sequence
    server: str
    results: list[StepResult] = field(default_factory=list)


def substitute(value: Any, mapping: Mapping[str, str], earlier: list[StepResult] | None = None) -> Any:
    """Replaces placeholders in every string (keys too) of a request structure, and `ReplySdp`s by the
    SDP of the earlier reply they name."""
    if isinstance(value, ReplySdp):
        return reply_sdp(earlier or [], value.step)
    if isinstance(value, str):
        for placeholder, real in mapping.items():
            value = value.replace(placeholder, real)
        return value
    if isinstance(value, Mapping):
        return {substitute(k, mapping): substitute(v, mapping, earlier) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, mapping, earlier) for v in value]
    return value


def reply_sdp(results: list[StepResult], step: int) -> str:
    """The SDP of an earlier step's reply; an empty string if there is none (the request then fails
    the same way on every server that gave no SDP)."""
    if not 1 <= step <= len(results):
        raise ValueError(f"ReplySdp({step}) refers to a step that has not run yet")
    datagram = results[step - 1].reply
    if datagram is None:
        return ""
    try:
        decoded = bencode.decode(datagram.partition(b" ")[2])
    except ValueError:
        return ""
    sdp = decoded.get("sdp") if isinstance(decoded, dict) else None
    return sdp if isinstance(sdp, str) else ""


def call_ids_for_run(run_id: str) -> dict[str, str]:
    """Placeholder → real call-id, unique per run, shaped like a SIP Call-ID."""
    return {p: f"{run_id}-{i}@sbs.karl.test" for i, p in enumerate(CALL_PLACEHOLDERS, start=1)}


NOT_RUN = "<not run: the server stopped answering ping>"


def run_sequence(
    server: ServerLike, sequence: Sequence, run_id: str | None = None, timeout: float = 3.0
) -> Transcript:
    """Plays `sequence` against `server` with fresh call-ids; afterwards deletes its calls at once.

    Requests are sent as raw datagrams so that a missing, late or malformed reply is recorded as such
    instead of aborting the run; if the server then no longer answers `ping`, the remaining steps are
    recorded as not run."""
    run_id = run_id or uuid.uuid4().hex[:12]
    mapping = call_ids_for_run(run_id)
    normaliser = Normaliser(
        server.media_ip, server.port_min, server.port_max, {real: p for p, real in mapping.items()}
    )
    transcript = Transcript(sequence, server.name)
    alive = True
    for index, step in enumerate(sequence.steps, start=1):
        cookie = f"sbs{run_id}_{index}".encode()
        sent: Any
        if not alive:
            sent, reply, normalised = None, None, NOT_RUN
        elif isinstance(step, Request):
            sent = substitute(step.body, mapping, transcript.results)
            reply = server.ng.raw(cookie + b" " + bencode.encode(sent, sort_keys=False), timeout)
            normalised = normaliser.request_reply(sent, reply, cookie)
        else:
            sent = step.datagram.replace(COOKIE, cookie)
            for placeholder, real in mapping.items():
                sent = sent.replace(placeholder.encode(), real.encode())
            reply = server.ng.raw(sent, timeout=step.wait)
            normalised = normaliser.raw_reply(reply, sent.partition(b" ")[0])
        transcript.results.append(StepResult(index, step, sent, reply, normalised))
        if alive and reply is None and isinstance(step, Request):
            alive = answers_ping(server, run_id)
    if alive:
        for placeholder in used_placeholders(sequence):
            delete = {"command": "delete", "call-id": mapping[placeholder], "delete-delay": 0}
            server.ng.raw(
                f"sbs{run_id}_cleanup_{placeholder}".encode() + b" " + bencode.encode(delete), timeout
            )
    return transcript


def answers_ping(server: ServerLike, run_id: str) -> bool:
    reply = server.ng.raw(f"sbs{run_id}_probe".encode() + b" d7:command4:pinge", 1.0)
    return reply is not None and b"pong" in reply


def used_placeholders(sequence: Sequence) -> list[str]:
    text = repr([s.body if isinstance(s, Request) else s.datagram for s in sequence.steps])
    return [p for p in CALL_PLACEHOLDERS if p in text]


# ================================================================================================
# Comparison and failure reports
# ================================================================================================


def compare_transcripts(expected: Transcript, actual: Transcript, limit: int = 6) -> str | None:
    """None if every step's normalised replies are equal, else a readable report of the differences."""
    reports = []
    for exp, act in zip(expected.results, actual.results, strict=True):
        if exp.normalised != act.normalised:
            reports.append(step_report(expected, exp, actual, act))
    if not reports:
        return None
    head = (
        f"sequence {expected.sequence.name!r}: {len(reports)} of {len(expected.results)} steps differ "
        f"({expected.server} = expected, {actual.server} = actual)"
        + (f"\n  {expected.sequence.doc}" if expected.sequence.doc else "")
    )
    shown = reports[:limit]
    more = [f"... and {len(reports) - limit} more differing steps"] if len(reports) > limit else []
    return "\n\n".join([head, *shown, *more])


def step_report(expected: Transcript, exp: StepResult, actual: Transcript, act: StepResult) -> str:
    step = exp.step
    lines = [f"=== step {exp.index}/{len(expected.results)}: {describe(step)} ==="]
    lines.append("request:")
    lines.append(indent(show_sent(exp.sent)))
    paths = differing_paths(exp.normalised, act.normalised)
    lines.append("differing paths: " + ", ".join(paths[:20]) + (" ..." if len(paths) > 20 else ""))
    exp_sdp, act_sdp = sdp_of(exp.normalised), sdp_of(act.normalised)
    lines.append(f"{expected.server} (normalised):")
    lines.append(indent(render(without_sdp(exp.normalised))))
    lines.append(f"{actual.server} (normalised):")
    lines.append(indent(render(without_sdp(act.normalised))))
    if exp_sdp is not None or act_sdp is not None:
        lines.append(f"SDP diff ({expected.server} → {actual.server}):")
        if exp_sdp == act_sdp:
            lines.append("  (SDPs equal)")
        else:
            diff = difflib.unified_diff(
                exp_sdp or [], act_sdp or [], expected.server, actual.server, lineterm="", n=40
            )
            lines.append(indent("\n".join(diff)))
    return "\n".join(lines)


def describe(step: Step) -> str:
    if isinstance(step, Request):
        command = step.body.get("command", "<no command>")
        return f"{command}" + (f" — {step.note}" if step.note else "")
    return "raw datagram" + (f" — {step.note}" if step.note else "")


def show_sent(sent: Any) -> str:
    if isinstance(sent, bytes):
        return repr(sent)
    if isinstance(sent, dict):
        shown = {
            k: (sdp_for_display(v) if k in ("sdp", "SDP") and isinstance(v, str) else v)
            for k, v in sent.items()
        }
        return render(shown)
    return render(sent)


def sdp_of(normalised: Any) -> list[str] | None:
    if isinstance(normalised, dict):
        for holder in (normalised, normalised.get("bencode"), normalised.get("json")):
            if isinstance(holder, dict) and isinstance(holder.get("sdp"), list):
                return list(holder["sdp"])
    return None


def without_sdp(normalised: Any) -> Any:
    if isinstance(normalised, dict) and "sdp" in normalised:
        return {**normalised, "sdp": "<see SDP diff>"}
    return normalised


def differing_paths(a: Any, b: Any, path: str = "$") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a:
                out.append(f"{path}.{key} (only actual)")
            elif key not in b:
                out.append(f"{path}.{key} (only expected)")
            else:
                out.extend(differing_paths(a[key], b[key], f"{path}.{key}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(differing_paths(x, y, f"{path}[{i}]"))
        return out
    return [] if a == b else [path]


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# ================================================================================================
# Building blocks for the sequence data
# ================================================================================================

# Loopback peers, never a proxy's own address (proxies use 127.0.0.x).
A_IP, B_IP, B2_IP, SIP_SRC = "127.0.1.10", "127.0.1.20", "127.0.1.30", "127.0.1.99"
A_IP6, B_IP6 = "2001:db8::10", "2001:db8::20"
# Tags as Kamailio would see them in From/To headers.
FT, TT, TT2 = "as7f2e1b0a", "b9c0d1e2f3", "c4d5e6f7a8"

DTMF_LINES = ("a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16")


@dataclass(frozen=True)
class M:
    """One media section for `make_sdp`."""

    port: int = 6000
    fmts: str = "0 8 101"
    lines: tuple[str, ...] = (*DTMF_LINES, "a=ptime:20", "a=sendrecv")
    kind: str = "audio"
    proto: str = "RTP/AVP"
    c: str | None = None  # media-level c= address


def make_sdp(
    ip: str = A_IP,
    media: tuple[M, ...] | M = M(),
    *,
    user: str = "alice",
    sess: str = "2890844526",
    version: str = "2890844526",
    name: str = "-",
    session_c: str | None = "same",
    session_lines: tuple[str, ...] = (),
    eol: str = "\r\n",
) -> str:
    """A well-formed SDP; `session_c="same"` puts `c=` for `ip` at session level, None omits it."""
    family = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o={user} {sess} {version} IN {family} {ip}", f"s={name}"]
    if session_c is not None:
        c_ip = ip if session_c == "same" else session_c
        lines.append(f"c=IN {'IP6' if ':' in c_ip else 'IP4'} {c_ip}")
    lines.append("t=0 0")
    lines.extend(session_lines)
    for m in media if isinstance(media, tuple) else (media,):
        lines.append(f"m={m.kind} {m.port} {m.proto} {m.fmts}")
        if m.c is not None:
            lines.append(f"c=IN {'IP6' if ':' in m.c else 'IP4'} {m.c}")
        lines.extend(m.lines)
    return eol.join(lines) + eol


def A(media: tuple[M, ...] | M = M(), **kw: Any) -> str:
    """The caller's SDP."""
    return make_sdp(A_IP, media, **kw)


def B(media: tuple[M, ...] | M = M(port=7000), **kw: Any) -> str:
    """The callee's SDP."""
    kw.setdefault("user", "bob")
    kw.setdefault("sess", "3344556677")
    kw.setdefault("version", "3344556677")
    return make_sdp(B_IP, media, **kw)


def B2(media: tuple[M, ...] | M = M(port=7100), **kw: Any) -> str:
    """A second (forked) callee's SDP."""
    kw.setdefault("user", "carol")
    kw.setdefault("sess", "5566778899")
    kw.setdefault("version", "5566778899")
    return make_sdp(B2_IP, media, **kw)


def audio(
    port: int, fmts: str = "0 8 101", *extra: str, ptime: int | None = 20, direction: str = "sendrecv"
) -> M:
    lines = [*DTMF_LINES] if "101" in fmts.split() else []
    lines.extend(extra)
    if ptime is not None:
        lines.append(f"a=ptime:{ptime}")
    if direction:
        lines.append(f"a={direction}")
    return M(port=port, fmts=fmts, lines=tuple(lines))


def _ids(call: str, ft: str | None, tt: str | None) -> dict[str, Any]:
    ids: dict[str, Any] = {"call-id": call}
    if ft is not None:
        ids["from-tag"] = ft
    if tt is not None:
        ids["to-tag"] = tt
    return ids


def offer(
    sdp: str | ReplySdp,
    opts: Mapping[str, Any] | None = None,
    *,
    call: str = CALL,
    ft: str = FT,
    tt: str | None = None,
    note: str = "",
) -> Request:
    return Request({"command": "offer", **_ids(call, ft, tt), "sdp": sdp, **(opts or {})}, note)


def answer(
    sdp: str | ReplySdp,
    opts: Mapping[str, Any] | None = None,
    *,
    call: str = CALL,
    ft: str = FT,
    tt: str = TT,
    note: str = "",
) -> Request:
    return Request({"command": "answer", **_ids(call, ft, tt), "sdp": sdp, **(opts or {})}, note)


def cmd(
    command: str,
    opts: Mapping[str, Any] | None = None,
    *,
    call: str | None = CALL,
    ft: str | None = None,
    tt: str | None = None,
    note: str = "",
) -> Request:
    ids = _ids(call, ft, tt) if call is not None else {}
    return Request({"command": command, **ids, **(opts or {})}, note)


def delete(
    opts: Mapping[str, Any] | None = None,
    *,
    call: str = CALL,
    ft: str | None = None,
    tt: str | None = None,
    note: str = "",
) -> Request:
    return cmd("delete", opts, call=call, ft=ft, tt=tt, note=note)


def query(*, call: str = CALL, ft: str | None = None, tt: str | None = None, note: str = "") -> Request:
    return cmd("query", call=call, ft=ft, tt=tt, note=note)


def call_setup(
    offer_sdp: str | None = None,
    answer_sdp: str | None = None,
    offer_opts: Mapping[str, Any] | None = None,
    answer_opts: Mapping[str, Any] | None = None,
    call: str = CALL,
) -> tuple[Request, Request]:
    """The usual INVITE/200 OK pair."""
    return (
        offer(offer_sdp or A(), offer_opts, call=call, note="INVITE"),
        answer(answer_sdp or B(), answer_opts, call=call, note="200 OK"),
    )


def seq(name: str, *steps: Step | tuple[Step, ...], doc: str = "", fresh_server: bool = False) -> Sequence:
    flat: list[Step] = []
    for s in steps:
        flat.extend(s if isinstance(s, tuple) else (s,))
    return Sequence(name, tuple(flat), doc, fresh_server)


def kamailio(command: str, message_type: str = "sip_request", **ids: str) -> dict[str, Any]:
    """The fixed part of every dictionary Kamailio's rtpengine module sends (reference §4.10)."""
    body: dict[str, Any] = {"supports": ["load limit"]}
    body.update({k.replace("_", "-"): v for k, v in ids.items()})
    body["command"] = command
    body["sip-message-type"] = message_type
    body["received-from"] = ["IP4", SIP_SRC]
    return body


# ================================================================================================
# Realistic SDPs as user agents send them
# ================================================================================================

KAMAILIO_UA_OFFER = (
    "v=0\r\n"
    f"o=alice 2890844526 2890844526 IN IP4 {A_IP}\r\n"
    "s=Talk\r\n"
    f"c=IN IP4 {A_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 96 0 8 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

ASTERISK_ANSWER = (
    "v=0\r\n"
    f"o=- 1718000000 1718000002 IN IP4 {B_IP}\r\n"
    "s=Asterisk\r\n"
    f"c=IN IP4 {B_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 7000 RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=maxptime:150\r\n"
    "a=sendrecv\r\n"
)

ASTERISK_OFFER = (
    "v=0\r\n"
    f"o=- 1718000000 1718000000 IN IP4 {A_IP}\r\n"
    "s=Asterisk\r\n"
    f"c=IN IP4 {A_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 8 0 9 3 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:3 GSM/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=maxptime:150\r\n"
    "a=sendrecv\r\n"
)

FREESWITCH_OFFER = (
    "v=0\r\n"
    f"o=FreeSWITCH 1718003000 1718003001 IN IP4 {A_IP}\r\n"
    "s=FreeSWITCH\r\n"
    f"c=IN IP4 {A_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 9 0 8 101 13\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    f"a=rtcp:6001 IN IP4 {A_IP}\r\n"
)

FREESWITCH_ANSWER = (
    "v=0\r\n"
    f"o=FreeSWITCH 1718009000 1718009001 IN IP4 {B_IP}\r\n"
    "s=FreeSWITCH\r\n"
    f"c=IN IP4 {B_IP}\r\n"
    "t=0 0\r\n"
    "m=audio 7000 RTP/AVP 9 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    f"a=rtcp:7001 IN IP4 {B_IP}\r\n"
)

# sipp's built-in uac scenario body (bare LF, no rtpmap for 8, no direction).
SIPP_UAC_OFFER = (
    "v=0\n"
    f"o=user1 53655765 2353687637 IN IP4 {A_IP}\n"
    "s=-\n"
    f"c=IN IP4 {A_IP}\n"
    "t=0 0\n"
    "m=audio 6000 RTP/AVP 0\n"
    "a=rtpmap:0 PCMU/8000\n"
)
SIPP_UAS_ANSWER = (
    "v=0\n"
    f"o=user1 53655765 2353687637 IN IP4 {B_IP}\n"
    "s=-\n"
    f"c=IN IP4 {B_IP}\n"
    "t=0 0\n"
    "m=audio 7000 RTP/AVP 0\n"
    "a=rtpmap:0 PCMU/8000\n"
)

# A SIP softphone with ICE (Linphone style: session-level credentials, host + srflx candidates).
ICE_OFFER = (
    "v=0\r\n"
    f"o=alice 3456 3457 IN IP4 {A_IP}\r\n"
    "s=Talk\r\n"
    f"c=IN IP4 {A_IP}\r\n"
    "t=0 0\r\n"
    "a=ice-pwd:2a6f7e4c1b0d9e8f7a6b5c4d\r\n"
    "a=ice-ufrag:9c4e1f2a\r\n"
    "m=audio 6000 RTP/AVP 96 0 8 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=rtcp:6001\r\n"
    f"a=candidate:1 1 UDP 2130706431 {A_IP} 6000 typ host\r\n"
    f"a=candidate:1 2 UDP 2130706430 {A_IP} 6001 typ host\r\n"
    f"a=candidate:2 1 UDP 1694498815 127.0.1.11 6100 typ srflx raddr {A_IP} rport 6000\r\n"
    f"a=candidate:2 2 UDP 1694498814 127.0.1.11 6101 typ srflx raddr {A_IP} rport 6001\r\n"
    "a=ice-options:trickle\r\n"
    "a=sendrecv\r\n"
)

# A browser offer (WebRTC) as it reaches Kamailio over websocket.
WEBRTC_OFFER = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS stream1\r\n"
    "m=audio 6000 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n"
    f"c=IN IP4 {A_IP}\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    f"a=candidate:842163049 1 udp 1677729535 {A_IP} 6000 typ host generation 0 network-cost 999\r\n"
    "a=ice-ufrag:Wq3b\r\n"
    "a=ice-pwd:Jd2kf8s9d0f7g6h5j4k3l2m1\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 7B:8C:5E:2A:91:0F:3D:44:6E:A1:B2:C3:D4:E5:F6:07:"
    "18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=sendrecv\r\n"
    "a=msid:stream1 track1\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:1001 cname:abcdefghijklmnop\r\n"
)

VIDEO = M(
    port=6002,
    kind="video",
    fmts="96 97",
    lines=(
        "a=rtpmap:96 H264/90000",
        "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1",
        "a=rtpmap:97 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=sendrecv",
    ),
)


def video(port: int) -> M:
    return M(port=port, kind=VIDEO.kind, fmts=VIDEO.fmts, lines=VIDEO.lines)


NO_MEDIA_SDP = f"v=0\r\no=alice 1 1 IN IP4 {A_IP}\r\ns=-\r\nc=IN IP4 {A_IP}\r\nt=0 0\r\n"


# ================================================================================================
# The sequences
# ================================================================================================


def _ping() -> Iterator[Sequence]:
    yield seq("ping", cmd("ping", call=None), cmd("ping", {"extra": "ignored", "flags": ["x"]}, call=None))
    yield seq(
        "ping_with_call_id",
        cmd("ping", note="a call-id on ping is ignored"),
        query(note="…and created nothing"),
    )


def _basic() -> Iterator[Sequence]:
    yield seq("offer_answer_basic", call_setup(), query(), delete(ft=FT))
    yield seq(
        "offer_answer_bare_lf",
        call_setup(A(eol="\n"), B(eol="\n")),
        doc="copied lines keep their bare LF, generated ones end in CRLF",
    )
    yield seq(
        "offer_answer_mixed_eol",
        offer(A().replace("a=ptime:20\r\n", "a=ptime:20\n").replace("s=-\r\n", "s=-\n")),
        answer(B(eol="\n")),
    )
    yield seq("offer_answer_no_final_eol", call_setup(A().rstrip("\r\n"), B().rstrip("\r\n")))
    yield seq("softphone_opus_to_asterisk", call_setup(KAMAILIO_UA_OFFER, ASTERISK_ANSWER))
    yield seq("asterisk_offer", call_setup(ASTERISK_OFFER, ASTERISK_ANSWER))
    yield seq("freeswitch_offer_answer", call_setup(FREESWITCH_OFFER, FREESWITCH_ANSWER), query())
    yield seq("sipp_uac_uas", call_setup(SIPP_UAC_OFFER, SIPP_UAS_ANSWER), query())
    yield seq(
        "offer_only_then_query",
        offer(A()),
        query(note="the answerer is still an untagged monologue"),
        query(ft=FT),
    )
    yield seq(
        "offer_retransmitted_new_cookie",
        offer(A(), note="INVITE"),
        offer(A(), note="same INVITE again (new cookie, e.g. a SIP retransmission): same ports"),
        answer(B()),
    )
    yield seq(
        "unknown_keys_and_flags_ignored",
        offer(
            A(),
            {
                "sip-message-type": "sip_request",
                "supports": ["load limit"],
                "received-from": ["IP4", SIP_SRC],
                "x-custom-key": "whatever",
                "flags": ["no-such-flag", "symmetric", "reorder-codecs"],
                "nested": {"a": [1, 2, {"b": "c"}]},
            },
        ),
        answer(B(), {"sip-message-type": "sip_reply", "another-unknown": 42, "flags": ["bogus flag"]}),
        delete(ft=FT, opts={"sip-message-type": "sip_request", "unknown": "x"}),
    )
    yield seq(
        "key_aliases",
        Request(
            {
                "command": "offer",
                "call id": CALL,
                "from-tag": FT,
                "SDP": A(),
                "transport protocol": "RTP/AVP",
                "replace": ["session connection", "SDP version"],
                "flags": ["trust address"],
            },
            "spaced and capitalised key aliases",
        ),
        Request({"command": "answer", "call-ID": CALL, "from-tag": FT, "to-tag": TT, "sdp": B()}),
        query(),
    )


def _replace() -> Iterator[Sequence]:
    mc = (M(port=6000, c=A_IP),)
    yield seq(
        "replace_origin", call_setup(offer_opts={"replace": ["origin"]}, answer_opts={"replace": ["origin"]})
    )
    yield seq(
        "no_replace_origin_kept",
        call_setup(),
        doc="o= keeps the UA's address without replace origin",
    )
    yield seq(
        "replace_session_connection",
        call_setup(
            A(mc),
            B(M(port=7000, c=B_IP)),
            {"replace": ["session-connection"]},
            {"replace": ["session-connection"]},
        ),
        doc="media-level c= present: the session c= is replaced only because of the flag",
    )
    yield seq(
        "session_c_kept_when_media_c_present",
        call_setup(A(mc), B(M(port=7000, c=B_IP))),
        doc="no flag and every media has its own c=: session c= untouched",
    )
    yield seq(
        "only_media_c",
        call_setup(A(mc, session_c=None), B(M(port=7000, c=B_IP), session_c=None)),
    )
    yield seq(
        "replace_sdp_version",
        offer(A(), {"replace": ["SDP-version"]}, note="INVITE"),
        answer(B(), {"replace": ["SDP-version"]}),
        offer(A(), {"replace": ["SDP-version"]}, tt=TT, note="re-INVITE, same SDP: version unchanged"),
        answer(B(), {"replace": ["SDP-version"]}),
        offer(
            A(M(port=6000, fmts="0 101"), version="2890844527"),
            {"replace": ["SDP-version"]},
            tt=TT,
            note="re-INVITE with changed media",
        ),
        answer(B(), {"replace": ["SDP-version"]}),
        offer(
            A(M(port=6000, fmts="0 101"), version="2890844527"),
            {"replace": ["SDP-version"]},
            tt=TT,
            note="same again",
        ),
    )
    yield seq(
        "replace_username_session_name",
        offer(A(name="Talk"), {"replace": ["username", "session-name", "origin"]}),
        answer(B(), {"replace": ["username", "session-name"]}),
        offer(
            A(user="alice2", name="Other"),
            {"replace": ["username", "session-name", "origin"]},
            tt=TT,
            note="re-INVITE with different o= user and s=",
        ),
        answer(B(user="bob2", name="Changed"), {"replace": ["username", "session name"]}),
    )
    yield seq(
        "replace_all_kamailio_style",
        call_setup(
            offer_opts={
                "replace": [
                    "origin",
                    "session-connection",
                    "SDP-version",
                    "username",
                    "session-name",
                    "zero-address",
                ]
            },
            answer_opts={"replace": ["origin", "session-connection"]},
        ),
    )


def _addresses() -> Iterator[Sequence]:
    yield seq(
        "media_address",
        offer(A(), {"media-address": "203.0.113.77"}),
        answer(B(), {"media address": "203.0.113.78"}),
        query(),
    )
    yield seq(
        "media_address_with_replace_and_full_rtcp",
        offer(
            A(), {"media-address": "203.0.113.77", "replace": ["origin"], "flags": ["full-rtcp-attribute"]}
        ),
        answer(B(), {"replace": ["origin"], "flags": ["full-rtcp-attribute"]}),
    )
    yield seq(
        "trust_address",
        call_setup(
            offer_opts={"flags": ["trust-address"], "received-from": ["IP4", SIP_SRC]},
            answer_opts={"flags": ["trust-address"], "received-from": ["IP4", "127.0.1.98"]},
        ),
        query(),
    )
    yield seq(
        "sip_source_address",
        call_setup(
            offer_opts={"flags": ["SIP-source-address"], "received-from": ["IP4", SIP_SRC]},
            answer_opts={"flags": ["SIP-source-address"], "received-from": ["IP4", "127.0.1.98"]},
        ),
        query(),
        doc="the peer address in query is the SIP source, the port the SDP's",
    )
    yield seq(
        "sip_source_address_lowercase_spaced",
        offer(A(), {"flags": ["sip source address"], "received from": ["IP4", SIP_SRC]}),
        query(),
    )
    yield seq(
        "received_from_alone_ignored",
        offer(A(), {"received-from": ["IP4", SIP_SRC]}),
        query(),
    )
    yield seq("ipv6_offer", call_setup(make_sdp(A_IP6, user="alice"), B()), query())
    yield seq("ipv6_answer", call_setup(A(), make_sdp(B_IP6, M(port=7000), user="bob")), query())
    yield seq(
        "ipv6_both_with_replace",
        call_setup(
            make_sdp(A_IP6),
            make_sdp(B_IP6, M(port=7000), user="bob"),
            {"replace": ["origin", "session-connection"]},
            {"replace": ["origin", "session-connection"]},
        ),
    )
    yield seq(
        "address_family_ip6_without_ipv6_interface",
        call_setup(offer_opts={"address family": "IP6"}, answer_opts={"address-family": "IP4"}),
    )
    yield seq(
        "direction_internal_external",
        call_setup(offer_opts={"direction": ["internal", "external"]}),
        doc="no such interfaces: legacy selectors without visible effect",
    )


def _rtcp() -> Iterator[Sequence]:
    yield seq("rtcp_attribute_added", call_setup(A(audio(6000, "0")), B(audio(7000, "0"))))
    yield seq(
        "rtcp_explicit_input_port",
        call_setup(A(audio(6000, "0", "a=rtcp:6011")), B(audio(7000, "0", "a=rtcp:7007"))),
        query(),
        doc="the peer's explicit RTCP port is its RTCP endpoint",
    )
    yield seq(
        "rtcp_explicit_input_with_address",
        offer(A(audio(6000, "0", "a=rtcp:6001 IN IP4 127.0.1.11"))),
        answer(B(audio(7000, "0"))),
        query(),
    )
    yield seq(
        "no_rtcp_attribute",
        call_setup(offer_opts={"flags": ["no-rtcp-attribute"]}, answer_opts={"flags": ["no rtcp attribute"]}),
    )
    yield seq(
        "full_rtcp_attribute",
        call_setup(
            offer_opts={"flags": ["full-rtcp-attribute"]}, answer_opts={"flags": ["full-rtcp-attribute"]}
        ),
    )


def _codecs_and_attributes() -> Iterator[Sequence]:
    yield seq(
        "rtpmap_added_for_static_types",
        call_setup(
            A(M(port=6000, fmts="0 8 18 9 3 4", lines=("a=sendrecv",))),
            B(M(port=7000, fmts="0 18", lines=())),
        ),
    )
    yield seq(
        "rtpmap_partial_static_and_fmtp",
        call_setup(
            A(
                M(
                    port=6000,
                    fmts="18 0 101",
                    lines=("a=fmtp:18 annexb=no", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"),
                )
            ),
            B(
                M(
                    port=7000,
                    fmts="18 101",
                    lines=(
                        "a=rtpmap:18 G729/8000",
                        "a=fmtp:18 annexb=no",
                        "a=rtpmap:101 telephone-event/8000",
                        "a=fmtp:101 0-15",
                    ),
                )
            ),
        ),
    )
    yield seq(
        "unknown_attributes_keep_place",
        call_setup(
            A(
                M(
                    port=6000,
                    fmts="0 8",
                    lines=(
                        "a=x-custom:1",
                        "a=rtpmap:0 PCMU/8000",
                        "a=silenceSupp:off - - - -",
                        "a=sendrecv",
                        "a=maxptime:40",
                        "b=AS:64",
                    ),
                ),
                session_lines=("a=tool:softphone 1.0", "b=CT:128"),
            ),
            B(
                M(port=7000, fmts="0", lines=("a=rtpmap:0 PCMU/8000", "a=x-other")),
                session_lines=("i=callee",),
            ),
        ),
    )
    yield seq(
        "answer_codecs_filtered_to_offer",
        call_setup(A(audio(6000, "0 101")), B(audio(7000, "0 8 9 101"))),
        doc="codecs the answerer adds that were not offered are removed",
    )
    yield seq(
        "ptime_echoed_in_answer",
        call_setup(A(audio(6000, "0 8 101", ptime=30)), B(audio(7000, "0 101", ptime=None))),
    )
    yield seq(
        "ptime_answer_differs",
        call_setup(A(audio(6000, "0 101", ptime=20)), B(audio(7000, "0 101", ptime=30))),
    )
    yield seq(
        "ptime_only_in_answer",
        call_setup(A(audio(6000, "0 101", ptime=None)), B(audio(7000, "0 101", ptime=40))),
    )
    yield seq(
        "codec_strip_one",
        call_setup(offer_opts={"codec": {"strip": ["PCMA"]}}),
    )
    yield seq(
        "codec_strip_several",
        call_setup(ASTERISK_OFFER, ASTERISK_ANSWER, {"codec": {"strip": ["PCMA", "G722", "GSM"]}}),
    )
    yield seq(
        "codec_strip_all_refused",
        offer(A(), {"codec": {"strip": ["all"]}}, note="stripping everything is refused"),
        answer(B()),
    )
    yield seq(
        "codec_strip_flag_form",
        call_setup(ASTERISK_OFFER, ASTERISK_ANSWER, {"flags": ["codec-strip-GSM", "codec-strip-G722"]}),
    )
    yield seq(
        "codec_strip_by_payload_type_and_full",
        offer(ASTERISK_OFFER, {"codec": {"strip": ["3", "G722/8000"]}}),
        answer(ASTERISK_ANSWER),
    )
    yield seq(
        "codec_mask",
        call_setup(ASTERISK_OFFER, ASTERISK_ANSWER, {"codec": {"mask": ["PCMA", "GSM"]}}),
    )
    yield seq(
        "codec_except_with_strip_all",
        call_setup(
            ASTERISK_OFFER,
            ASTERISK_ANSWER,
            {"codec": {"strip": ["all"], "except": ["PCMU", "telephone-event"]}},
        ),
    )
    yield seq(
        "codec_offer_no_reorder",
        call_setup(
            A(audio(6000, "0 8 101")), B(audio(7000, "8 101")), {"codec": {"offer": ["PCMA", "PCMU"]}}
        ),
        doc="10.5 does not reorder a plain offer list",
    )
    yield seq(
        "codec_strip_unknown_codec",
        call_setup(offer_opts={"codec": {"strip": ["AMR-WB", "nonsense"]}}),
    )
    yield seq(
        "single_codec",
        call_setup(ASTERISK_OFFER, B(audio(7000, "8 0 9 101")), answer_opts={"flags": ["single-codec"]}),
        doc="the answer keeps one codec plus telephone-event",
    )
    yield from _codec_option_edges()


_RTPMAPS_0_8 = ("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000")
_OPUS = "a=rtpmap:111 opus/48000/2"


def _codec_option_edges() -> Iterator[Sequence]:
    """What codec options leave, probed on 10.5: DTMF and comfort noise of a clock rate whose last real
    codec the options took away go too; options that take every codec away leave an `m=` line without
    formats and the received codec lines in place; an answer's own strip/except apply to what it lists
    (a mask there does nothing); an answer with nothing in common with the offer sent on."""
    yield seq(
        "codec_payload_type_listed_twice",
        call_setup(A(audio(6000, "0 8 0")), B(audio(7000, "8 8"))),
        doc="an offer's twice-listed type is passed on as it is; an answer's goes back once (10.5)",
    )
    yield seq(
        "codec_mask_takes_orphaned_dtmf_and_cn",
        call_setup(
            A(audio(6000, "0 111 13 101", _OPUS, "a=rtpmap:13 CN/8000")),
            B(audio(7000, "111", _OPUS)),
            {"codec": {"mask": ["PCMU"]}},
        ),
        doc="no 8000 Hz codec left: telephone-event/8000 and CN/8000 go; a 48000 Hz telephone-event stays",
    )
    yield seq(
        "codec_strip_keeps_dtmf_of_an_untouched_rate",
        offer(
            A(audio(6000, "0 111 101 102", _OPUS, "a=rtpmap:102 telephone-event/48000")),
            {"codec": {"strip": ["PCMU"]}},
        ),
        offer(A(audio(6000, "111 101", _OPUS)), {"codec": {"strip": ["GSM"]}}, call=CALL2),
        doc="telephone-event/8000 with opus alone stays when no option took an 8000 Hz codec",
    )
    yield seq(
        "codec_strip_every_codec_leaves_no_format",
        offer(A(audio(6000, "0 8 101", *_RTPMAPS_0_8)), {"codec": {"strip": ["PCMA", "PCMU"]}}),
        answer(B(audio(7000, "8 101"))),
        query(),
        doc="`m=audio P RTP/AVP ` with the received rtpmaps; the answer then passes as it is",
    )
    yield seq(
        "codec_mask_every_codec_then_answer_with_dtmf_only",
        offer(A(audio(6000, "0 8 101", *_RTPMAPS_0_8)), {"codec": {"mask": ["PCMU", "PCMA"]}}),
        answer(B(audio(7000, "101"))),
    )
    yield seq(
        "codec_strip_all_except_keeps_the_sdp_order",
        offer(
            A(audio(6000, "0 18 111", "a=rtpmap:18 G729/8000", _OPUS)),
            {"codec": {"strip": ["all"], "except": ["G729", "PCMU"]}},
        ),
        offer(
            A(audio(6000, "0 18 111", "a=rtpmap:18 G729/8000", _OPUS)),
            {"codec": {"strip": ["all"], "offer": ["G729", "PCMU"]}},
            call=CALL2,
        ),
        offer(
            A(audio(6000, "0 8 101")),
            {"codec": {"strip": ["all"], "except": ["telephone-event"]}},
            call=CALL3,
        ),
        doc="`except` keeps the order of the SDP, `offer` puts its own",
    )
    yield seq(
        "codec_answer_strip_and_except",
        call_setup(
            A(audio(6000, "0 8 101")), B(audio(7000, "8 0 101")), answer_opts={"codec": {"strip": ["PCMA"]}}
        ),
        call_setup(
            A(audio(6000, "0 111 101", _OPUS)),
            B(audio(7000, "0 111 101", _OPUS)),
            answer_opts={"codec": {"strip": ["PCMU"]}},
            call=CALL2,
        ),
        call_setup(
            A(audio(6000, "0 8 101")),
            B(audio(7000, "8 0 101")),
            answer_opts={"codec": {"strip": ["all"], "except": ["PCMU"]}},
            call=CALL3,
        ),
        doc="the answer's strip takes its codecs out (and telephone-event/8000 with the last 8000 Hz one)",
    )
    yield seq(
        "codec_answer_strip_every_codec",
        offer(A(audio(6000, "0 8 101"))),
        answer(B(audio(7000, "8 0 101")), {"codec": {"strip": ["PCMA", "PCMU"]}}),
        query(),
    )
    yield seq(
        "codec_answer_strip_with_single_codec",
        offer(A(audio(6000, "0 8 101"))),
        answer(B(audio(7000, "8 0 101")), {"codec": {"strip": ["PCMU"]}, "flags": ["single-codec"]}),
        query(note="no transcoding: the stripped codec is not the answerer's any more"),
    )
    yield seq(
        "codec_answer_mask_does_nothing",
        call_setup(
            A(audio(6000, "0 8 101")), B(audio(7000, "8 0 101")), answer_opts={"codec": {"mask": ["PCMA"]}}
        ),
    )
    yield seq(
        "codec_answer_with_a_masked_codec",
        offer(A(audio(6000, "9 3 101", "a=rtpmap:9 G722/8000")), {"codec": {"mask": ["G722"]}}),
        answer(B(audio(7000, "9", "a=rtpmap:9 G722/8000"))),
        offer(A(audio(6000, "0 8 101")), {"codec": {"mask": ["PCMU"]}}, call=CALL2),
        answer(B(audio(7000, "0 101")), call=CALL2),
        doc="the offerer has the masked codec: it passes; with DTMF beside it, only DTMF was in common",
    )
    yield seq(
        "codec_answer_strip_of_the_only_common_codec",
        offer(A(audio(6000, "8 0 101")), {"codec": {"strip": ["all"], "except": ["PCMU"]}}),
        answer(B(audio(7000, "0 101", "a=rtpmap:0 PCMU/8000")), {"codec": {"strip": ["PCMU"]}}),
        query(),
        doc="10.5 gives the offer's first codec, which the answerer listed, and transcodes DTMF",
    )
    yield seq(
        "codec_answer_with_nothing_in_common",
        offer(A(audio(6000, "0 8 101"))),
        answer(B(audio(7000, "9", "a=rtpmap:9 G722/8000"))),
        query(),
        doc="10.5 transcodes G722 to PCMU; Karl, which does not transcode, passes G722 on (DELIBERATE)",
    )


def _direction() -> Iterator[Sequence]:
    for direction in ("sendrecv", "sendonly", "recvonly", "inactive"):
        mirrored = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)
        yield seq(
            f"direction_{direction}",
            call_setup(A(audio(6000, direction=direction)), B(audio(7000, direction=mirrored))),
            query(),
        )
    yield seq(
        "direction_none_adds_sendrecv",
        call_setup(A(audio(6000, direction="")), B(audio(7000, direction=""))),
    )
    yield seq(
        "direction_session_level_moved",
        call_setup(
            A(audio(6000, direction=""), session_lines=("a=sendonly",)),
            B(audio(7000, direction=""), session_lines=("a=recvonly",)),
        ),
    )
    yield seq(
        "direction_session_and_media_level",
        offer(A((audio(6000, direction="sendrecv"), video(6002)), session_lines=("a=inactive",))),
        answer(B((audio(7000), video(7002)))),
    )
    yield seq(
        "hold_and_resume_sendonly",
        call_setup(),
        offer(A(audio(6000, direction="sendonly"), version="2890844527"), tt=TT, note="re-INVITE: hold"),
        answer(B(audio(7000, direction="recvonly"), version="3344556678"), note="200 OK to hold"),
        offer(A(version="2890844528"), tt=TT, note="re-INVITE: resume"),
        answer(B(version="3344556679")),
        query(),
    )
    yield seq(
        "hold_zero_address",
        call_setup(),
        offer(
            A(audio(6000, direction=""), session_c="0.0.0.0", version="2890844527"),
            tt=TT,
            note="old-style hold c=0.0.0.0, no replace zero-address",
        ),
        answer(B(audio(7000, direction="recvonly"))),
        query(),
    )
    yield seq(
        "hold_zero_address_replaced",
        call_setup(),
        offer(
            A(audio(6000, direction=""), session_c="0.0.0.0", version="2890844527"),
            {"replace": ["zero-address"]},
            tt=TT,
            note="old-style hold with replace zero-address",
        ),
        answer(B(audio(7000, direction="recvonly"))),
    )
    yield seq(
        "hold_zero_address_media_level",
        call_setup(),
        offer(A(M(port=6000, c="0.0.0.0", lines=(*DTMF_LINES, "a=sendonly")), version="2890844527"), tt=TT),
        answer(B(audio(7000, direction="recvonly"))),
    )
    yield seq(
        "hold_zero_address_with_media_address",
        call_setup(offer_opts={"media-address": "203.0.113.9"}),
        offer(
            A(audio(6000, direction=""), session_c="0.0.0.0", version="2890844527"),
            {"media-address": "203.0.113.9"},
            tt=TT,
            note="old-style hold: the media address is written, not 0.0.0.0 (found by generated calls)",
        ),
        answer(B(audio(7000, direction="recvonly"))),
        offer(
            A(M(port=6000, c="0.0.0.0", lines=(*DTMF_LINES, "a=sendonly")), version="2890844528"),
            {"media-address": "203.0.113.9"},
            tt=TT,
            note="the same with c=0.0.0.0 on the media",
        ),
        answer(B(audio(7000, direction="recvonly"))),
        query(),
    )
    yield seq(
        "hold_zero_address_with_replace_session_connection",
        call_setup(),
        offer(
            A(audio(6000, direction=""), session_c="0.0.0.0"),
            {"replace": ["session-connection", "origin"]},
            tt=TT,
        ),
        answer(B()),
    )
    yield seq(
        "original_sendrecv",
        call_setup(
            A(audio(6000, direction="sendonly")),
            B(audio(7000, direction="")),
            {"flags": ["original-sendrecv"]},
            {"flags": ["original-sendrecv"]},
        ),
    )
    yield seq(
        "session_groups_other_than_bundle_kept",
        call_setup(
            A(session_lines=("a=group:LS 0", "a=group:BUNDLE 0", "a=group:FID 1 2")),
            B(session_lines=("a=group:BUNDLE", "a=group:LS 1")),
        ),
        query(),
    )


def _multi_media() -> Iterator[Sequence]:
    yield seq(
        "audio_video", call_setup(A((audio(6000), video(6002))), B((audio(7000), video(7002)))), query()
    )
    refused_video = M(
        port=0,
        kind="video",
        fmts="96",
        lines=(
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 profile-level-id=42e01f",
            "a=rtcp-fb:* nack",
            "a=rtcp-fb:96 goog-remb",
            "b=AS:512",
            "a=content:main",
            "a=sendrecv",
        ),
    )
    yield seq(
        "video_refused_keeps_its_other_lines",
        call_setup(A((audio(6000), video(6002))), B((audio(7000), refused_video))),
        query(note="10.5 leaves a refused media's lines but its codec lines and direction in place"),
    )
    yield seq(
        "video_rejected_in_offer",
        call_setup(
            A((audio(6000), M(port=0, kind="video", fmts="96", lines=("a=rtpmap:96 H264/90000",)))),
            B((audio(7000), M(port=0, kind="video", fmts="96", lines=()))),
        ),
        query(),
    )
    yield seq(
        "video_rejected_in_answer",
        call_setup(
            A((audio(6000), video(6002))),
            B((audio(7000), M(port=0, kind="video", fmts="96", lines=("a=rtpmap:96 H264/90000",)))),
        ),
        query(),
    )
    yield seq(
        "audio_rejected_video_accepted",
        call_setup(A((audio(6000), video(6002))), B((M(port=0, fmts="0", lines=()), video(7002)))),
    )
    yield seq(
        "two_audio_streams",
        call_setup(A((audio(6000, "0"), audio(6010, "8"))), B((audio(7000, "0"), audio(7010, "8")))),
    )
    yield seq(
        "per_media_connection_lines",
        call_setup(
            A(
                (
                    M(port=6000, c=A_IP),
                    M(port=6002, kind="video", fmts="96", c="127.0.1.11", lines=("a=rtpmap:96 H264/90000",)),
                ),
                session_c=None,
            ),
            B(
                (
                    M(port=7000, c=B_IP),
                    M(port=7002, kind="video", fmts="96", c="127.0.1.21", lines=("a=rtpmap:96 H264/90000",)),
                ),
                session_c=None,
            ),
        ),
        query(),
    )
    yield seq(
        "msrp_media_untouched",
        call_setup(
            A(
                (
                    audio(6000),
                    M(
                        port=6050,
                        kind="message",
                        proto="TCP/MSRP",
                        fmts="*",
                        lines=("a=accept-types:text/plain", f"a=path:msrp://{A_IP}:6050/abc;tcp"),
                    ),
                )
            ),
            B(
                (
                    audio(7000),
                    M(
                        port=7050,
                        kind="message",
                        proto="TCP/MSRP",
                        fmts="*",
                        lines=("a=accept-types:text/plain", f"a=path:msrp://{B_IP}:7050/xyz;tcp"),
                    ),
                )
            ),
            {"replace": ["session-connection"]},
        ),
    )
    yield seq(
        "t38_reinvite_relayed",
        call_setup(),
        offer(
            A(
                M(
                    port=6004,
                    kind="image",
                    proto="udptl",
                    fmts="t38",
                    lines=(
                        "a=T38FaxVersion:0",
                        "a=T38MaxBitRate:14400",
                        "a=T38FaxRateManagement:transferredTCF",
                        "a=T38FaxMaxBuffer:262",
                        "a=T38FaxMaxDatagram:176",
                        "a=T38FaxUdpEC:t38UDPRedundancy",
                    ),
                )
            ),
            tt=TT,
            note="re-INVITE to T.38",
        ),
        answer(
            B(
                M(
                    port=7004,
                    kind="image",
                    proto="udptl",
                    fmts="t38",
                    lines=(
                        "a=T38FaxVersion:0",
                        "a=T38MaxBitRate:14400",
                        "a=T38FaxRateManagement:transferredTCF",
                        "a=T38FaxMaxBuffer:262",
                        "a=T38FaxMaxDatagram:176",
                        "a=T38FaxUdpEC:t38UDPRedundancy",
                    ),
                )
            )
        ),
    )


_T38_LINES = (
    "a=T38FaxVersion:0",
    "a=T38MaxBitRate:14400",
    "a=T38FaxRateManagement:transferredTCF",
    "a=T38FaxUdpEC:t38UDPRedundancy",
)


def _t38_same_ports() -> Iterator[Sequence]:
    """Audio switched to T.38 and back on the same m= line and the same ports (found by the generated
    calls whose media lines change): 10.5 keeps Karl's ports, and `transport-protocol` does not touch
    the `udptl` line."""
    fax = M(port=6000, kind="image", proto="udptl", fmts="t38", lines=_T38_LINES)
    fax_back = M(port=7000, kind="image", proto="udptl", fmts="t38", lines=_T38_LINES)
    yield seq(
        "t38_reinvite_on_the_same_ports",
        call_setup(),
        offer(A(fax, version="2890844527"), tt=TT, note="re-INVITE to T.38, same port: the same ports"),
        answer(B(fax_back, version="2")),
        offer(A(version="2890844528"), tt=TT, note="back to audio"),
        answer(B(version="3")),
        query(),
    )
    yield seq(
        "t38_reinvite_with_transport_protocol",
        call_setup(offer_opts={"transport-protocol": "RTP/AVP"}),
        offer(
            A(fax, version="2890844527"), {"transport-protocol": "RTP/AVP"}, tt=TT, note="udptl stays udptl"
        ),
        answer(B(fax_back, version="2"), {"transport-protocol": "RTP/AVP"}),
    )


def _ice_party(
    port: int,
    ufrag: str,
    *,
    zero: bool = False,
    version: str = "1",
    callee: bool = False,
    trickle: bool = False,
    lite: bool = False,
) -> str:
    """A party that speaks ICE (its credentials and a host candidate per component), maybe trickle or
    ICE-lite."""
    host = B_IP if callee else A_IP
    lines = (
        *DTMF_LINES,
        *(["a=ice-lite"] if lite else []),
        f"a=ice-ufrag:{ufrag}",
        "a=ice-pwd:8sd7fG6hJ5kL4zX3cV2bN1mQ",
        *(["a=ice-options:trickle"] if trickle else []),
        f"a=candidate:1 1 udp 2130706431 {host} {port} typ host",
        f"a=candidate:1 2 udp 2130706430 {host} {port + 1} typ host",
        "a=sendrecv",
    )
    held = {"session_c": "0.0.0.0"} if zero else {}
    if callee:
        return B(M(port=port, lines=lines), version=version, **held)
    return A(M(port=port, lines=lines), version=version, **held)


def _ice_across_reoffers() -> Iterator[Sequence]:
    """ICE across re-offers, as 10.5 does it (found by the generated ICE calls, then probed): Karl's
    credentials towards a party last the call, also when ICE was left out in between; once a party
    answered, re-offers follow its own ICE, not the offerer's; a new ufrag in an answer changes none of
    Karl's; an ICE party's c=0.0.0.0 is no hold; a candidate's foundation is the local address's."""
    yield seq(
        "ice_credentials_kept_when_ice_comes_back",
        offer(A(), {"ICE": "force"}, note="ICE forced towards the callee"),
        answer(_ice_party(7000, "Bb01", callee=True)),
        offer(A(version="2890844527"), {"ICE": "remove"}, tt=TT, note="ICE removed"),
        answer(B(version="2")),
        offer(A(version="2890844528"), {"ICE": "force"}, tt=TT, note="forced again: the same ufrag and pwd"),
        answer(_ice_party(7000, "Bb01", version="3", callee=True)),
    )
    yield seq(
        "ice_forced_answer_credentials_kept",
        offer(A(), note="plain"),
        answer(B(), {"ICE": "force"}, note="ICE forced towards the caller"),
        offer(A(version="2890844527"), tt=TT),
        answer(B(version="2"), note="no ICE"),
        offer(A(version="2890844528"), tt=TT),
        answer(B(version="3"), {"ICE": "force"}, note="forced again: the first credentials"),
    )
    yield seq(
        "ice_reoffer_follows_the_answerer",
        offer(_ice_party(6000, "Aa01"), note="ICE caller"),
        answer(_ice_party(7000, "Bb01", callee=True), note="ICE callee"),
        offer(A(version="2"), tt=TT, note="the caller drops ICE: the callee is still offered ICE"),
        answer(_ice_party(7000, "Bb01", version="2", callee=True), note="the caller is answered plain"),
        query(),
    )
    yield seq(
        "ice_reoffer_not_to_a_plain_answerer",
        offer(A(), note="plain"),
        answer(B(), note="plain"),
        offer(
            _ice_party(6000, "Aa01", version="2"), tt=TT, note="the caller turns to ICE: none to the callee"
        ),
        answer(_ice_party(7000, "Bb01", version="2", callee=True), note="the caller is answered with ICE"),
        query(),
    )
    yield seq(
        "ice_new_ufrag_in_an_answer",
        offer(_ice_party(6000, "Aa01")),
        answer(_ice_party(7000, "Bb01", callee=True)),
        offer(_ice_party(6000, "Aa01", version="2"), tt=TT),
        answer(_ice_party(7000, "Cc01", version="2", callee=True), note="a new ufrag in an answer"),
        offer(_ice_party(6000, "Aa01", version="3"), tt=TT, note="the proxy's credentials unchanged"),
    )
    yield seq(
        "ice_party_zero_address_is_no_hold",
        offer(_ice_party(6000, "Aa01")),
        answer(_ice_party(7000, "Bb01", callee=True)),
        offer(
            _ice_party(6000, "Aa01", zero=True, version="2"),
            tt=TT,
            note="c=0.0.0.0 with ICE: the proxy's address",
        ),
        answer(_ice_party(7000, "Bb01", version="2", callee=True)),
        query(note="advertised 0.0.0.0, the endpoint where it was"),
        offer(
            _ice_party(6000, "Aa01", zero=True, version="3"),
            {"ICE": "remove"},
            tt=TT,
            note="no ICE to the callee: 0.0.0.0",
        ),
    )
    yield seq(
        "ice_removed_trickle_lines_towards_a_callee_that_trickled",
        offer(A(), {"ICE": "remove"}),
        answer(_ice_party(7000, "Bb01", callee=True, trickle=True), {"ICE": "remove"}, note="ICE, trickle"),
        offer(
            A(version="2890844527"),
            {"ICE": "remove"},
            tt=TT,
            note="no ICE to the callee, but its trickle lines: 10.5's agent for it lives on",
        ),
        answer(B(version="2"), {"ICE": "remove"}, note="plain now"),
        offer(A(version="2890844528"), {"ICE": "remove"}, tt=TT, note="none: its last SDP did not trickle"),
    )
    yield seq(
        "ice_controlling_kept_towards_a_party_once_lite",
        offer(_ice_party(6000, "Aa01", lite=True), {"ICE": "remove"}, note="an ICE-lite caller"),
        answer(B(), {"ICE": "remove"}),
        offer(_ice_party(6000, "Aa01", version="2"), {"ICE": "remove"}, tt=TT, note="full ICE, same ufrag"),
        answer(B(version="2"), {"ICE": "remove"}),
        query(note="still ICE controlling towards the caller"),
        offer(_ice_party(6000, "Aa02", version="3"), {"ICE": "remove"}, tt=TT, note="a new ufrag: a restart"),
        answer(B(version="3"), {"ICE": "remove"}),
        query(note="roles decided anew: not controlling towards the caller"),
    )
    yield seq(
        "ice_candidate_foundation_with_media_address",
        offer(_ice_party(6000, "Aa01"), {"media-address": "203.0.113.9"}),
        answer(_ice_party(7000, "Bb01", callee=True)),
        doc="the candidates advertise the media address under the local address's foundation",
    )


def _ice_and_protocols() -> Iterator[Sequence]:
    yield seq("ice_remove", call_setup(ICE_OFFER, B(), {"ICE": "remove"}), query())
    ended = ICE_OFFER.replace("a=sendrecv\r\n", "a=end-of-candidates\r\na=sendrecv\r\n")
    yield seq(
        "ice_removed_party_flags_and_end_of_candidates",
        call_setup(ended, B(), {"ICE": "remove"}),
        query(note="the caller's trickle shown, ICE or not; its a=end-of-candidates written on"),
    )
    lite = ICE_OFFER.replace("a=ice-options:trickle\r\n", "a=ice-lite\r\n")
    yield seq(
        "ice_lite_caller_with_ice_forced",
        call_setup(lite, B(), {"ICE": "force"}),
        query(note="ICE-lite peer, and Karl controlling towards it"),
    )
    yield seq(
        "ice_remove_kamailio_manage",
        offer(
            ICE_OFFER,
            {
                **kamailio("offer"),
                "transport-protocol": "RTP/AVP",
                "replace": ["origin", "session-connection"],
                "ICE": "remove",
            },
        ),
        answer(
            B(),
            {**kamailio("answer", "sip_reply"), "replace": ["origin", "session-connection"], "ICE": "remove"},
        ),
    )
    yield seq(
        "ice_default_on_ice_offer",
        call_setup(ICE_OFFER, B()),
        doc="no ICE key: the proxy speaks ICE to both sides of an ICE offer",
    )
    yield seq(
        "ice_force_non_ice_peers",
        call_setup(offer_opts={"ICE": "force"}),
        doc="proxy ICE offered to the callee; callee without ICE",
    )
    yield seq(
        "ice_force_stable_on_reoffer",
        offer(A(), {"ICE": "force"}, note="INVITE"),
        offer(A(), {"ICE": "force"}, note="same INVITE again: same ufrag/pwd/ports"),
    )
    yield from _ice_across_reoffers()
    yield from _t38_same_ports()
    yield seq("ice_lite_forward_plain_offer", call_setup(offer_opts={"ICE-lite": "forward"}), query())
    yield seq("ice_lite_backward", call_setup(ICE_OFFER, B(), {"ICE-lite": "backward"}), query())
    yield seq("ice_lite_both", call_setup(ICE_OFFER, B(), {"ICE-lite": "both"}), query())
    yield seq(
        "ice_lite_forward_with_ice_force",
        call_setup(offer_opts={"ICE": "force", "ICE-lite": "forward"}),
        query(),
        doc="a=ice-lite at session level towards the party Karl is lite to",
    )
    yield seq(
        "transport_protocol_avpf_to_avp",
        call_setup(
            A(
                M(
                    port=6000,
                    proto="RTP/AVPF",
                    fmts="0 101",
                    lines=(*DTMF_LINES, "a=rtcp-fb:* nack", "a=sendrecv"),
                )
            ),
            B(audio(7000, "0 101")),
            {"transport-protocol": "RTP/AVP"},
        ),
        doc="the answer goes back to the offerer as RTP/AVPF",
    )
    yield seq(
        "transport_protocol_avp_to_avp",
        call_setup(
            offer_opts={"transport-protocol": "RTP/AVP"}, answer_opts={"transport-protocol": "RTP/AVP"}
        ),
    )
    yield seq(
        "transport_protocol_avp_to_avpf",
        call_setup(A(), B(M(port=7000, proto="RTP/AVPF")), {"transport-protocol": "RTP/AVPF"}),
    )
    yield seq(
        "webrtc_to_sip",
        offer(
            WEBRTC_OFFER,
            {
                **kamailio("offer"),
                "transport-protocol": "RTP/AVP",
                "ICE": "remove",
                "rtcp-mux": ["demux"],
                "replace": ["origin", "session-connection"],
            },
            note="browser INVITE via websocket",
        ),
        answer(
            B(),
            {
                **kamailio("answer", "sip_reply"),
                "transport-protocol": "UDP/TLS/RTP/SAVPF",
                "ICE": "force",
                "rtcp-mux": ["require"],
                "replace": ["origin", "session-connection"],
            },
        ),
    )


UNSUPPORTED_SUITES = (
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
)
"""rtpengine 10.5's SRTP suites that Karl's SRTP library cannot do."""


def _srtp_and_loop_protect() -> Iterator[Sequence]:
    crypto_lines = (
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
    )
    yield seq(
        "sdes_offer_to_plain_rtp",
        offer(
            A(
                M(
                    port=6000,
                    proto="RTP/SAVP",
                    fmts="0 8 101",
                    lines=(*DTMF_LINES, *crypto_lines, "a=sendrecv"),
                )
            ),
            {"transport-protocol": "RTP/AVP"},
            note="SRTP phone towards a plain RTP trunk",
        ),
        answer(B(), note="plain answer; the SRTP side gets one crypto line with the proxy's key"),
        query(),
    )
    yield seq(
        "plain_rtp_offer_to_sdes",
        offer(
            A(), {"transport-protocol": "RTP/SAVP", "DTLS": "off"}, note="all SDES suites offered, no DTLS"
        ),
        answer(
            B(
                M(
                    port=7000,
                    proto="RTP/SAVP",
                    fmts="0 8 101",
                    lines=(*DTMF_LINES, crypto_lines[0], "a=sendrecv"),
                )
            )
        ),
        doc="the answer towards the plain offerer is plain RTP/AVP",
    )
    # Karl's SRTP library does 4 of 10.5's 12 suites: with `SDES-no-` for the others, 10.5 offers what
    # Karl offers, and the SDES options can be compared exactly
    others = [f"no-{s}" for s in UNSUPPORTED_SUITES]
    callee_line = "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    yield seq(
        "sdes_offer_options_no_pad_lifetime",
        offer(
            A(),
            {"transport-protocol": "RTP/SAVP", "DTLS": "off", "SDES": [*others, "no-AEAD_AES_256_GCM"]},
            note="three suites, tagged 1-3",
        ),
        offer(
            A(),
            {"transport-protocol": "RTP/SAVP", "DTLS": "off", "SDES": [*others, "pad", "lifetime"]},
            call=CALL2,
            note="padded keys with a lifetime",
        ),
        answer(
            B(M(port=7000, proto="RTP/SAVP", fmts="0 8 101", lines=(*DTMF_LINES, callee_line, "a=sendrecv"))),
            call=CALL2,
            note="the callee picks tag 3",
        ),
        query(call=CALL2),
    )
    yield seq(
        "sdes_offer_to_plain_rtp_answer_excludes_a_suite",
        offer(
            A(
                M(
                    port=6000,
                    proto="RTP/SAVP",
                    fmts="0 8 101",
                    lines=(*DTMF_LINES, *crypto_lines, "a=sendrecv"),
                )
            ),
            {"transport-protocol": "RTP/AVP", "SDES": ["no-AES_CM_128_HMAC_SHA1_80"]},
        ),
        answer(
            B(), {"SDES": ["no-AES_CM_128_HMAC_SHA1_80"]}, note="Karl answers with the caller's second suite"
        ),
        query(),
    )
    srtp_offer = A(
        M(port=6000, proto="RTP/SAVP", fmts="0 8 101", lines=(*DTMF_LINES, *crypto_lines, "a=sendrecv"))
    )
    for picked, line in (
        ("a_proxy_suite", "a=crypto:4 AEAD_AES_128_GCM inline:psYiCT6X32UB5SY/H7PpzhGPsEeN/75Ol3EDcA"),
        (
            "the_callers_suite",
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:dGhlIGNhbGxlZSBrZWVwcyBhIGtleSBvZiBpdHMh",
        ),
    ):
        yield seq(
            f"sdes_to_sdes_callee_picks_{picked}",
            offer(
                srtp_offer, {"DTLS": "off"}, note="the caller's lines, then the proxy's for the other suites"
            ),
            answer(
                B(M(port=7000, proto="RTP/SAVP", fmts="0 8 101", lines=(*DTMF_LINES, line, "a=sendrecv")))
            ),
            query(),
        )
    yield seq(
        "plain_rtp_offer_to_srtp_sdes_and_dtls",
        offer(A(), {"transport-protocol": "RTP/SAVP"}, note="SDES suites and a DTLS fingerprint offered"),
        offer(A(), {"transport-protocol": "RTP/SAVP"}, note="same offer again: same keys and fingerprint"),
    )
    yield seq(
        "loop_protect_own_marker",
        offer(A(), {"flags": ["loop-protect"]}, note="first pass: marker added"),
        offer(ReplySdp(1), {"flags": ["loop-protect"]}, call=CALL2, note="spiral: own output comes back"),
        query(call=CALL2, note="the spiral created nothing"),
        doc="an SDP carrying this proxy's own marker is returned unchanged",
    )
    yield seq(
        "spiral_without_loop_protect",
        offer(A(), note="first pass"),
        offer(ReplySdp(1), call=CALL2, note="the proxy's output offered to it again, as a new call"),
        answer(B(), call=CALL2),
        answer(ReplySdp(3)),
    )
    yield seq(
        "loop_protect_foreign_marker",
        offer(
            A(session_lines=("a=rtpengine:0123456789ab",)),
            {"flags": ["loop-protect"]},
            note="another proxy's marker: rewritten, own marker added",
        ),
        answer(B(), {"flags": ["loop-protect"]}),
    )


def _learning_flags() -> Iterator[Sequence]:
    for flag in ("asymmetric", "strict-source", "media-handover", "unidirectional", "symmetric"):
        yield seq(
            f"flag_{flag.replace('-', '_')}",
            call_setup(offer_opts={"flags": [flag]}, answer_opts={"flags": [flag]}),
            query(),
        )
    yield seq(
        "port_latching",
        call_setup(offer_opts={"flags": ["port-latching"]}),
        offer(A(audio(6020)), {"flags": ["port-latching"]}, tt=TT, note="re-INVITE with a new peer port"),
        answer(B()),
        query(),
    )
    yield seq(
        "reinvite_changed_peer_port_new_local_port",
        call_setup(),
        offer(A(audio(6020)), tt=TT, note="re-INVITE with a new peer port"),
        answer(B()),
        query(),
    )


def _rtcp_mux_across_reoffers(mux_a: str, mux_b: str, plain_a: str, plain_b: str) -> Iterator[Sequence]:
    """rtcp-mux across re-offers, as 10.5 (found by the generated rtcp-mux calls, then probed): one port
    towards a party that must get a pair now gets a new pair (Karl advertised an RTCP port of port + 1
    it did not hold before); a muxing party's `a=rtcp` naming its RTP port (RFC 5761) leaves its RTCP
    stream without an advertised endpoint."""
    again_a = A(audio(6000, "0 101", "a=rtcp-mux"), version="2890844527")
    again_plain_b = B(audio(7000, "0 101"), version="3344556678")
    yield seq(
        "rtcp_mux_demux_single_port_then_rejected",
        call_setup(mux_a, plain_b, {"rtcp-mux": ["demux"]}),
        offer(
            again_a, {"rtcp-mux": ["reject"]}, tt=TT, note="the caller's mux refused now: a new pair to it"
        ),
        answer(again_plain_b),
        query(),
    )
    yield seq(
        "rtcp_mux_required_single_port_then_offered",
        call_setup(mux_a, plain_b, {"rtcp-mux": ["require"]}),
        offer(
            again_a,
            {"rtcp-mux": ["offer"]},
            tt=TT,
            note="mux offered, not required: a new pair to the callee",
        ),
        answer(again_plain_b),
        query(),
    )
    rtcp_on_rtp = B(audio(7000, "0 101", "a=rtcp-mux", "a=rtcp:7000"))
    yield seq(
        "rtcp_mux_rtcp_attribute_names_the_rtp_port",
        call_setup(plain_a, rtcp_on_rtp, {"rtcp-mux": ["offer"]}),
        query(note="the callee's RTCP stream: filled, no endpoints"),
        offer(A(audio(6000, "0 101"), version="2890844527"), {"rtcp-mux": ["offer"]}, tt=TT),
        answer(B(audio(7000, "0 101", "a=rtcp-mux"), version="3344556678")),
        query(note="without a=rtcp: port + 1"),
    )
    rejected = {"rtcp-mux": ["reject"]}
    yield seq(
        "rtcp_mux_pair_made_from_one_port_is_made_anew_each_time",
        call_setup(mux_a, plain_b, {"rtcp-mux": ["demux"]}),
        offer(again_a, rejected, tt=TT, note="the caller's mux refused: a new pair to it"),
        answer(again_plain_b),
        offer(
            A(audio(6000, "0 101", "a=rtcp-mux"), version="2890844528"),
            rejected,
            tt=TT,
            note="the same again: 10.5's endpoint map still counts one port, so another new pair",
        ),
        answer(B(audio(7000, "0 101"), version="3344556679")),
        query(),
        offer(
            A(audio(6000, "0 101", "a=rtcp-mux"), version="2890844529"),
            rejected,
            tt=TT,
            note="and again",
        ),
        answer(B(audio(7000, "0 101"), version="3344556680")),
        query(),
    )
    yield seq(
        "rtcp_mux_demux_towards_a_callee_that_muxes_already",
        call_setup(mux_a, mux_b),
        offer(
            again_a,
            {"rtcp-mux": ["demux"]},
            tt=TT,
            note="the callee muxes already: 10.5 requires rtcp-mux towards it, demux or not",
        ),
        answer(again_plain_b, note="it answers without: the caller's rtcp-mux follows, not kept"),
        query(),
    )
    yield seq(
        "rtcp_mux_rtcp_attribute_names_the_rtp_port_later",
        call_setup(mux_a, plain_b, {"rtcp-mux": ["demux"]}),
        offer(
            A(audio(6000, "0 101", "a=rtcp-mux", "a=rtcp:6000"), version="2890844527"),
            {"rtcp-mux": ["offer"]},
            tt=TT,
            note="the caller's a=rtcp now names its RTP port",
        ),
        answer(again_plain_b, {"rtcp-mux": ["demux"]}),
        query(note="its RTCP stream keeps the endpoint of before (port + 1), none advertised"),
    )


def _rtcp_mux() -> Iterator[Sequence]:
    mux_a = A(audio(6000, "0 101", "a=rtcp-mux"))
    mux_b = B(audio(7000, "0 101", "a=rtcp-mux"))
    plain_a, plain_b = A(audio(6000, "0 101")), B(audio(7000, "0 101"))
    yield seq("rtcp_mux_offered_accepted", call_setup(mux_a, mux_b), query())
    yield seq("rtcp_mux_offered_not_accepted", call_setup(mux_a, plain_b), query())
    for mode in ("offer", "demux", "accept", "reject", "require"):
        yield seq(
            f"rtcp_mux_{mode}_mux_offerer_mux_answerer",
            call_setup(mux_a, mux_b, {"rtcp-mux": [mode]}),
            query(),
        )
    yield from _rtcp_mux_across_reoffers(mux_a, mux_b, plain_a, plain_b)
    yield seq("rtcp_mux_offer_plain_offerer_accepted", call_setup(plain_a, mux_b, {"rtcp-mux": ["offer"]}))
    yield seq("rtcp_mux_offer_plain_offerer_refused", call_setup(plain_a, plain_b, {"rtcp-mux": ["offer"]}))
    yield seq("rtcp_mux_demux_plain_answerer", call_setup(mux_a, plain_b, {"rtcp-mux": ["demux"]}))
    yield seq(
        "rtcp_mux_require_plain_offerer", call_setup(plain_a, mux_b, {"rtcp-mux": ["require"]}), query()
    )
    yield seq(
        "rtcp_mux_answer_side_flags",
        call_setup(mux_a, mux_b, {"rtcp-mux": ["offer"]}, {"rtcp-mux": ["demux"]}),
    )


def _labels_branches() -> Iterator[Sequence]:
    yield seq(
        "label_and_via_branch",
        offer(A(), {"label": "caller", "via-branch": "z9hG4bK776asdhds"}),
        answer(B(), {"label": "callee", "via-branch": "z9hG4bK776asdhds"}),
        query(),
    )
    yield seq(
        "label_aliases",
        offer(A(), {"from-label": "caller"}),
        answer(B(), {"to-label": "callee-set", "label": "callee"}),
        query(),
    )
    yield seq(
        "via_branch_forked_offers",
        offer(A(), {"via-branch": "z9hG4bK.1"}, note="fork 1"),
        offer(A(), {"via-branch": "z9hG4bK.2", "replace": ["origin"]}, note="fork 2, different rewriting"),
        answer(B(), {"via-branch": "z9hG4bK.2"}, note="fork 2 answers"),
        query(),
    )
    branch_1, branch_2 = {"via-branch": "z9hG4bK.b1"}, {"via-branch": "z9hG4bK.b2"}
    yield seq(
        "asymmetric_flag_follows_the_latest_sdp",
        call_setup(A(), B(), {"flags": ["asymmetric"]}, {"flags": ["asymmetric"]}),
        query(note="both asymmetric"),
        offer(A(version="2890844527"), tt=TT, note="re-INVITE without the flag"),
        answer(B(version="3344556678"), {"flags": ["asymmetric"]}),
        query(note="the caller no longer asymmetric, the callee still"),
    )
    yield seq(
        "via_branch_unanswered_branch_is_listed_by_its_number",
        offer(A(), branch_1, note="branch 1"),
        offer(A(), branch_2, note="branch 2"),
        answer(B(), branch_1, note="200 OK on branch 1"),
        delete({"delete-delay": 0, **branch_2}, ft=FT, note="branch 2 cancelled"),
        query(note="branch 2's party, never tagged: <untagged 2>, the third party made"),
    )
    yield seq(
        "via_branch_answers_in_turn_move_the_caller",
        offer(A(), branch_1, note="branch 1"),
        offer(A(), branch_2, note="branch 2"),
        answer(B(), branch_1, note="183 on branch 1"),
        answer(B2(), {**branch_2}, tt=TT2, note="200 OK on branch 2: new ports to the caller"),
        query(),
        answer(B(version="3344556678"), branch_1, note="200 OK on branch 1: its ports back"),
        query(),
    )


def _reinvites() -> Iterator[Sequence]:
    yield seq(
        "reinvite_caller_same_sdp",
        call_setup(),
        offer(A(), tt=TT, note="re-INVITE, identical SDP"),
        answer(B()),
        query(),
    )
    yield seq(
        "reinvite_caller_new_version_same_ports",
        call_setup(),
        offer(A(version="2890844527"), tt=TT),
        answer(B(version="3344556678")),
    )
    yield seq(
        "reinvite_from_callee",
        call_setup(),
        offer(B(version="3344556678"), ft=TT, tt=FT, note="re-INVITE from the callee (tags swapped)"),
        answer(A(version="2890844527"), ft=TT, tt=FT),
        query(),
    )
    yield seq(
        "reinvite_from_callee_changed_port",
        call_setup(),
        offer(B(audio(7020), version="3344556678"), ft=TT, tt=FT),
        answer(A(version="2890844527"), ft=TT, tt=FT),
        query(),
    )
    yield seq(
        "reinvite_changed_peer_address",
        call_setup(),
        offer(make_sdp("127.0.1.12", version="2890844527"), tt=TT, note="caller moved to another address"),
        answer(B()),
        query(),
    )
    yield seq(
        "reinvite_adds_video",
        call_setup(),
        offer(A((audio(6000), video(6002)), version="2890844527"), tt=TT),
        answer(B((audio(7000), video(7002)))),
        offer(A(audio(6000), version="2890844528"), tt=TT, note="video removed again"),
        answer(B(audio(7000))),
    )
    yield seq(
        "late_offer_in_200ok",
        offer(B(), ft=TT, tt=FT, note="offer carried by the 200 OK (tags swapped by Kamailio)"),
        answer(A(), ft=TT, tt=FT, note="answer carried by the ACK"),
        query(),
    )


def _early_media_forks() -> Iterator[Sequence]:
    yield seq(
        "early_media_same_sdp",
        offer(A()),
        answer(B(), note="183 Session Progress"),
        answer(B(), note="200 OK, same SDP"),
        query(),
    )
    yield seq(
        "early_media_different_sdp",
        offer(A()),
        answer(B(), note="183 Session Progress"),
        answer(B(audio(7010, "0 101"), version="3344556678"), note="200 OK with another port and codec"),
        query(),
    )
    yield seq(
        "forked_answers",
        offer(A()),
        answer(B(), tt=TT, note="183 from fork 1"),
        answer(B2(), tt=TT2, note="200 OK from fork 2"),
        query(),
        query(tt=TT),
    )
    yield seq(
        "fork_delete_one_branch",
        offer(A()),
        answer(B(), tt=TT, note="183 from fork 1"),
        answer(B2(), tt=TT2, note="183 from fork 2"),
        delete(ft=FT, tt=TT, note="fork 1 is cancelled"),
        query(),
        delete({"delete-delay": 0}, ft=FT, tt=TT2, note="fork 2 deleted at once"),
        query(),
    )
    yield seq(
        "forks_answering_in_turn_keep_their_ports",
        offer(A()),
        answer(B(), tt=TT, note="200 OK from fork 1"),
        answer(B2(), tt=TT2, note="200 OK from fork 2: the caller gets new ports"),
        answer(B(), tt=TT, note="fork 1 again: its ports back"),
        query(),
        answer(B2(), tt=TT2, note="fork 2 again"),
        offer(A(version="2890844527"), note="re-INVITE"),
        query(),
        doc="10.5 keeps the caller's ports of each fork (bound, idle) and gives them back",
    )
    yield seq(
        "later_fork_with_ice_removed_is_not_ice_controlling",
        offer(A()),
        answer(B2(), {"ICE": "remove"}, tt=TT2, note="200 OK from fork 2"),
        answer(B(), {"ICE": "remove"}, tt=TT, note="200 OK from fork 1"),
        query(),
        answer(B2(), tt=TT2, note="fork 2 again, ICE not removed"),
        query(),
    )


def _delete() -> Iterator[Sequence]:
    yield seq("delete_bare_ok", call_setup(), delete(), query(), delete(note="second delete"))
    yield seq(
        "delete_with_from_tag_stats", call_setup(), delete(ft=FT), delete(ft=FT, note="again, during delay")
    )
    yield seq("delete_with_to_tag", call_setup(), delete(ft=FT, tt=TT), query())
    yield seq("delete_only_to_tag", call_setup(), delete(tt=TT), query())
    yield seq("delete_unknown_call", delete(call=CALL2), delete(call=CALL2, ft=FT))
    yield seq("delete_unknown_call_fatal", delete({"flags": ["fatal"]}, call=CALL2))
    yield seq(
        "delete_unknown_from_tag",
        call_setup(),
        delete(ft="nosuchtag"),
        delete({"flags": ["fatal"]}, ft="nosuchtag"),
    )
    yield seq(
        "delete_delay_zero_gone", call_setup(), delete({"delete-delay": 0}, ft=FT), query(), delete(ft=FT)
    )
    yield seq(
        "delete_delay_kamailio_dict",
        call_setup(),
        delete({**kamailio("delete", call_id=CALL, from_tag=FT, to_tag=TT), "delete delay": 0}, call=CALL),
        query(),
    )
    yield seq("delete_delay_numeric_string", call_setup(), delete({"delete-delay": "0"}), query())
    yield seq(
        "delete_default_delay_still_usable",
        call_setup(),
        delete(note="default delete delay: the call stays"),
        query(),
        answer(B(), note="an answer still works during the delay"),
        delete(ft=FT),
    )
    yield seq(
        "offer_after_delete_during_delay",
        call_setup(),
        delete(ft=FT),
        offer(A(), note="new INVITE with the same call-id"),
        query(),
    )
    yield seq("delete_offer_only_call", offer(A()), delete(ft=FT), query())


def _query_list_stats() -> Iterator[Sequence]:
    yield seq("query_from_tag", call_setup(), query(ft=FT))
    yield seq("query_to_tag", call_setup(), query(tt=TT))
    yield seq("query_both_tags", call_setup(), query(ft=FT, tt=TT))
    yield seq("query_unknown_tag", call_setup(), query(ft="nosuchtag"), query(tt="nosuchtag"))
    yield seq("query_unknown_call", query(call=CALL2))
    yield seq(
        "list_limits",
        offer(A()),
        cmd("list", {"limit": 0}, call=None, note="limit 0"),
        cmd("list", {"limit": -1}, call=None, note="negative limit"),
        cmd("list", {"limit": 100000}, call=None, note="large limit (only this run's calls are compared)"),
        cmd("list", {"limit": "1000"}, call=None, note="numeric string"),
    )
    yield seq(
        "list_default_limit_fresh_server",
        cmd("list", call=None, note="empty server"),
        offer(A()),
        cmd("list", {"limit": 1}, call=None),
        offer(A(), call=CALL2),
        delete(call=CALL2, note="deleted with the default delay: still listed"),
        offer(NO_MEDIA_SDP, call=CALL3, note="failed offer leaves a call behind"),
        cmd("list", call=None),
        delete({"delete-delay": 0}, call=CALL3),
        cmd("list", call=None),
        fresh_server=True,
    )
    yield seq("statistics_shape", call_setup(), cmd("statistics", call=None))


def _media_control() -> Iterator[Sequence]:
    for command, undo in (
        ("block media", "unblock media"),
        ("silence media", "unsilence media"),
        ("block DTMF", "unblock DTMF"),
    ):
        short = command.split()[0] + "_" + command.split()[1].lower()
        yield seq(
            f"{short}_call_wide",
            call_setup(),
            cmd(command),
            cmd(undo),
            cmd(undo, {"flags": ["all"]}),
            query(),
        )
        yield seq(
            f"{short}_from_tag",
            call_setup(),
            cmd(command, ft=FT),
            cmd(undo, ft=FT),
            cmd(command, ft="nosuchtag", note="unknown tag"),
        )
    yield seq(
        "block_media_by_label_and_address",
        call_setup(offer_opts={"label": "caller"}, answer_opts={"label": "callee"}),
        cmd("block media", {"label": "callee"}),
        cmd("unblock media", {"label": "callee", "set-label": "renamed"}),
        cmd("block media", {"label": "nobody"}),
        cmd("block media", {"address": A_IP}),
        cmd("block media", {"address": "127.0.9.9"}),
        cmd("block media", {"address": "not-an-address"}),
        query(),
    )
    yield seq(
        "media_control_errors",
        cmd("block media", call=CALL2, note="unknown call"),
        cmd("unsilence media", call=CALL2, ft=FT),
        cmd("block DTMF", call=None, note="no call-id"),
        cmd("block media", {"flags": ["all"]}, call=CALL2),
    )


def _errors() -> Iterator[Sequence]:
    sdp = A()
    yield seq(
        "errors_missing_keys_offer",
        Request({"command": "offer", "call-id": CALL, "from-tag": FT}, "no sdp"),
        Request({"command": "offer", "from-tag": FT, "sdp": sdp}, "no call-id"),
        Request({"command": "offer", "call-id": CALL, "sdp": sdp}, "no from-tag"),
        Request({"command": "offer"}, "nothing at all: sdp is checked first"),
        Request({"command": "offer", "sdp": sdp}, "sdp only"),
        query(note="none of these created the call"),
    )
    yield seq(
        "errors_missing_keys_answer",
        offer(sdp),
        Request({"command": "answer", "call-id": CALL, "from-tag": FT, "to-tag": TT}, "no sdp"),
        Request({"command": "answer", "call-id": CALL, "from-tag": FT, "sdp": B()}, "no to-tag"),
        Request({"command": "answer", "call-id": CALL, "to-tag": TT, "sdp": B()}, "no from-tag"),
        Request({"command": "answer", "from-tag": FT, "to-tag": TT, "sdp": B()}, "no call-id"),
    )
    yield seq(
        "errors_unknown_call",
        answer(B(), call=CALL2, note="answer for an unknown call"),
        query(call=CALL2),
        cmd("block media", call=CALL2),
    )
    yield seq(
        "errors_missing_call_id_other_commands",
        cmd("delete", call=None),
        cmd("query", call=None),
        cmd("block media", call=None),
        cmd("unblock media", call=None),
        cmd("silence media", call=None),
        cmd("unsilence media", call=None),
        cmd("list", call=None, note="list needs no call-id"),
    )
    yield seq(
        "errors_sdp_parse",
        offer("this is not an SDP", note="garbage"),
        offer("v=0\r\n", call=CALL2, note="only v="),
        offer(
            f"v=0\r\no=- 1 1 IN IP4 {A_IP}\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n",
            call=CALL3,
            note="media without any c=",
        ),
        query(),
    )
    yield seq(
        "errors_bad_m_and_c_lines",
        offer(
            f"v=0\r\no=- 1 1 IN IP4 {A_IP}\r\ns=-\r\nc=IN IP4 {A_IP}\r\nt=0 0\r\nm=audio abc RTP/AVP 0\r\n",
            note="non-numeric port",
        ),
        offer(
            f"v=0\r\no=- 1 1 IN IP4 {A_IP}\r\ns=-\r\nc=IN IP4 nowhere..\r\nt=0 0\r\n"
            "m=audio 6000 RTP/AVP 0\r\n",
            call=CALL2,
            note="bad connection address",
        ),
        offer(
            f"v=0\r\no=- 1 1 IN IP4 {A_IP}\r\ns=-\r\nc=IN IP4 {A_IP}\r\nt=0 0\r\nm=audio 6000\r\n",
            call=CALL3,
            note="m= line without protocol",
        ),
    )
    yield seq(
        "errors_sdp_without_media",
        offer(NO_MEDIA_SDP, note="no m= line"),
        query(note="a call was left behind"),
    )
    yield seq(
        "errors_unknown_command",
        cmd("Offer", call=None, note="commands are case-sensitive"),
        cmd("no such command", call=None),
        cmd("create", call=None, note="newer command, unknown to 10.5"),
        cmd("transform", call=None),
        Request({"call-id": CALL}, "no command key"),
        Request({"command": 42}, "command not a string"),
        Request({"command": ["offer"]}, "command a list"),
    )
    yield seq(
        "errors_wrong_value_types",
        offer(A(), {"replace": "origin"}, note="replace as a string"),
        offer(A(), {"flags": "trust-address"}, call=CALL2, note="flags as a string"),
        offer(A(), {"codec": ["strip"]}, call=CALL3, note="codec as a list"),
    )


def _raw() -> Iterator[Sequence]:
    wait_silent = 0.4
    yield seq(
        "raw_framing",
        Raw(b"@COOKIE@ d7:command4:pinge", "well-formed ping"),
        Raw(b"@COOKIE@ ", "cookie and space, no payload"),
        Raw(b"@COOKIE@ l7:command4:pinge", "a bencoded list"),
        Raw(b"@COOKIE@ i42e", "an integer"),
        Raw(b"@COOKIE@ hello", "plain text"),
        Raw(b"@COOKIE@ d", "bare d"),
        Raw(b"@COOKIE@ de", "empty dictionary"),
        Raw(b"@COOKIE@ d7:command4:ping", "missing final e"),
        Raw(b"@COOKIE@ d7:command4:pingexyz", "trailing garbage"),
        Raw(b"@COOKIE@ d7:command9:pinge", "string length too long"),
        Raw(b"@COOKIE@ di1e4:pinge", "integer key"),
        Raw(b"@COOKIE@ d7:command4:ping5:flagsl3:abc", "truncated list"),
        Raw(b"@COOKIE@ d7:commandi1ee", "command an integer"),
        Raw(b"@COOKIE@ d7:command4:pong" + b"e", "unknown command"),
        Raw(b"@COOKIE@  d7:command4:pinge", "two spaces"),
    )
    yield seq(
        "raw_no_reply",
        Raw(b"d7:command4:pinge", "no cookie at all: dropped", wait=wait_silent),
        Raw(b" d7:command4:pinge", "leading space: empty cookie, dropped", wait=wait_silent),
        Raw(b"@COOKIE@\td7:command4:pinge", "tab is not a separator", wait=wait_silent),
        Raw(b"@COOKIE@ d7:command4:pinge", "a normal ping afterwards"),
    )
    yield seq(
        "raw_json",
        Raw(b'@COOKIE@ {"command":"ping"}', "JSON ping"),
        Raw(b'@COOKIE@ {"command":"list","limit":0}', "JSON list"),
        Raw(b'@COOKIE@ {"command":"query","call-id":"@CALL@"}', "JSON query of an unknown call"),
        Raw(b'@COOKIE@ {"command":"ping"', "broken JSON"),
        Raw(b"@COOKIE@ {}", "empty JSON object"),
        Raw(b'@COOKIE@ {"command":"nope"}', "unknown command in JSON"),
    )
    json_offer = (
        b'@COOKIE@ {"command":"offer","call-id":"@CALL@","from-tag":"' + FT.encode() + b'","sdp":"v=0\\r\\n'
        b"o=alice 1 1 IN IP4 "
        + A_IP.encode()
        + b"\\r\\ns=-\\r\\nc=IN IP4 "
        + A_IP.encode()
        + b"\\r\\nt=0 0\\r\\n"
        b'm=audio 6000 RTP/AVP 0 8\\r\\n","replace":["origin"]}'
    )
    yield seq("raw_json_offer", Raw(json_offer, "offer as JSON: the reply is JSON too"), query())
    yield seq(
        "raw_reply_cache_by_cookie",
        Raw(b"samecookie@CALL@ d7:command4:pinge", "ping"),
        Raw(b"samecookie@CALL@ d7:command4:listi0ee", "same cookie, other payload: the cached pong"),
        Raw(b"errcookie@CALL@ d7:command5:bogus" + b"e", "an error reply"),
        Raw(b"errcookie@CALL@ d7:command4:pinge", "same cookie: the cached error"),
    )


def _kamailio_dicts() -> Iterator[Sequence]:
    yield seq(
        "kamailio_offer_answer_delete",
        offer(
            A(),
            {
                **kamailio("offer", call_id=CALL, from_tag=FT),
                "replace": ["origin", "session-connection"],
                "ICE": "remove",
                "flags": ["trust-address"],
            },
        ),
        answer(
            B(),
            {
                **kamailio("answer", "sip_reply", call_id=CALL, from_tag=FT, to_tag=TT),
                "replace": ["origin", "session-connection"],
                "ICE": "remove",
                "flags": ["trust-address"],
            },
        ),
        delete({**kamailio("delete", call_id=CALL, from_tag=FT, to_tag=TT)}, ft=FT, tt=TT),
    )
    yield seq(
        "kamailio_manage_example",
        offer(
            A(),
            {
                "transport-protocol": "RTP/AVP",
                "replace": ["origin", "session-connection"],
                "ICE": "remove",
                "supports": ["load limit"],
                "received-from": ["IP4", SIP_SRC],
                "sip-message-type": "sip_request",
            },
        ),
        answer(
            B(),
            {
                "transport-protocol": "RTP/AVP",
                "replace": ["origin", "session-connection"],
                "ICE": "remove",
                "supports": ["load limit"],
                "received-from": ["IP4", "127.0.1.98"],
                "sip-message-type": "sip_reply",
            },
        ),
    )
    yield seq(
        "kamailio_via_branch_and_label",
        offer(
            A(),
            {
                **kamailio("offer"),
                "via-branch": "z9hG4bKa1b2.0",
                "label": "Alice",
                "flags": ["trust-address", "strict-source"],
                "replace": ["origin"],
            },
        ),
        answer(B(), {**kamailio("answer", "sip_reply"), "via-branch": "z9hG4bKa1b2.0", "label": "Bob"}),
        query(),
        delete({**kamailio("delete"), "via-branch": "z9hG4bKa1b2.0"}, ft=FT),
    )
    yield seq(
        "kamailio_codec_and_mux_flags",
        offer(
            ASTERISK_OFFER,
            {
                **kamailio("offer"),
                "codec": {"strip": ["G722"], "mask": ["GSM"]},
                "rtcp-mux": ["demux"],
                "transport-protocol": "RTP/AVP",
                "replace": ["origin", "session-connection"],
                "TOS": 184,
            },
        ),
        answer(
            ASTERISK_ANSWER,
            {
                **kamailio("answer", "sip_reply"),
                "rtcp-mux": ["accept"],
                "replace": ["origin", "session-connection"],
            },
        ),
    )
    yield seq(
        "kamailio_reinvite_from_callee_swapped_tags",
        call_setup(),
        offer(B(version="3344556678"), {**kamailio("offer"), "replace": ["origin"]}, ft=TT, tt=FT),
        answer(
            A(version="2890844527"), {**kamailio("answer", "sip_reply"), "replace": ["origin"]}, ft=TT, tt=FT
        ),
    )


# Parity sequences kept in their own modules (they import the helpers above, hence imported here).
import ng_sequences_dtls  # noqa: E402
import ng_sequences_osrtp  # noqa: E402
import ng_sequences_query_flags  # noqa: E402
import ng_sequences_reoffers  # noqa: E402
import ng_sequences_sdes_reoffers  # noqa: E402
import ng_sequences_statistics_commands  # noqa: E402

SEQUENCES: tuple[Sequence, ...] = tuple(
    s
    for group in (
        _ping,
        _basic,
        _replace,
        _addresses,
        _rtcp,
        _codecs_and_attributes,
        _direction,
        _multi_media,
        _ice_and_protocols,
        _srtp_and_loop_protect,
        _learning_flags,
        _rtcp_mux,
        _labels_branches,
        _reinvites,
        _early_media_forks,
        _delete,
        _query_list_stats,
        _media_control,
        _errors,
        _raw,
        _kamailio_dicts,
        ng_sequences_statistics_commands.group,
        ng_sequences_query_flags.group,
        ng_sequences_reoffers.group,
        ng_sequences_dtls.group,
        ng_sequences_osrtp.group,
        ng_sequences_sdes_reoffers.group,
    )
    for s in group()
)

BY_NAME: dict[str, Sequence] = {s.name: s for s in SEQUENCES}
assert len(BY_NAME) == len(SEQUENCES), "sequence names must be unique"
