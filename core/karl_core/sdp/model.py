"""The SDP document: sessions, media sections, and the text after the last line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .blocks import LineBlock
from .candidate import Candidate
from .cnumbers import str_to_i
from .codec_attributes import Fmtp, RtcpFb, RtpMap
from .connection import Connection
from .direction import Direction, rtpengine_direction
from .errors import SdpError
from .lines import CRLF, SdpLine
from .media_line import MediaLine
from .origin import Origin
from .rtcp_attribute import RtcpAttribute


@dataclass(slots=True)
class MediaSection(LineBlock):
    """One media description: `lines[0]` is its m= line, the rest follow it up to the next m= or
    v= line."""

    lines: list[SdpLine]

    @classmethod
    def new(cls, media_line: MediaLine, eol: str = CRLF) -> MediaSection:
        return cls([SdpLine("m", media_line.render(), eol)])

    @property
    def media_line(self) -> MediaLine:
        """The parsed m= line (SdpError if malformed)."""
        if not self.lines or self.lines[0].kind != "m":
            raise SdpError("media section without m= line")
        return MediaLine.parse(self.lines[0].value)

    def set_media_line(self, media_line: MediaLine) -> None:
        """Replace the m= line, keeping its line ending."""
        self.lines[0] = self.lines[0].with_value(media_line.render())

    @property
    def media_type(self) -> str:
        return self.media_line.media

    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type -> a=rtpmap, as rtpengine reads them: unrecognised lines skipped, the last
        line for a payload type wins (probed)."""
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            try:
                rtpmap = RtpMap.parse(value)
            except SdpError:
                continue
            out[rtpmap.payload_type] = rtpmap
        return out

    def fmtps(self) -> dict[int, Fmtp]:
        """Payload type -> a=fmtp; unrecognised lines skipped, the last one wins (probed)."""
        out: dict[int, Fmtp] = {}
        for value in self.attribute_values("fmtp"):
            try:
                fmtp = Fmtp.parse(value)
            except SdpError:
                continue
            out[fmtp.payload_type] = fmtp
        return out

    def rtcp_fbs(self) -> list[RtcpFb]:
        """Recognised a=rtcp-fb lines in order (wildcards included, payload_type None)."""
        out: list[RtcpFb] = []
        for value in self.attribute_values("rtcp-fb"):
            try:
                out.append(RtcpFb.parse(value))
            except SdpError:
                continue
        return out

    def rtcp(self) -> RtcpAttribute | None:
        """The first usable a=rtcp line."""
        for value in self.attribute_values("rtcp"):
            try:
                return RtcpAttribute.parse(value)
            except SdpError:
                continue
        return None

    def candidates(self) -> list[Candidate]:
        """The a=candidate lines rtpengine recognises (see Candidate.usable), in order."""
        out: list[Candidate] = []
        for value in self.attribute_values("candidate"):
            try:
                out.append(Candidate.parse(value))
            except SdpError:
                continue
        return out

    def mid(self) -> str | None:
        """Value of the first a=mid (a bare "a=mid" counts as no mid, as in rtpengine)."""
        attribute = self.get_attribute("mid")
        return None if attribute is None else attribute.value

    def ptime(self) -> int | None:
        """The first a=ptime as rtpengine reads it ("20x" -> 20); None if absent or zero."""
        attribute = self.get_attribute("ptime")
        if attribute is None or attribute.value is None:
            return None
        return str_to_i(attribute.value, 0) or None


@dataclass(slots=True)
class Session(LineBlock):
    """The session part (from its v= line up to the first m= line) and its media sections.

    A body normally holds one session; rtpengine also accepts several v= blocks in one body and
    handles each (probed), so the model keeps them all. Lines before the first v= (only in
    malformed SDPs or trickle-ICE fragments) form a session without a v= line."""

    lines: list[SdpLine] = field(default_factory=list)
    media: list[MediaSection] = field(default_factory=list)

    def origin(self) -> Origin | None:
        """The first o= line (SdpError if it has fewer than six tokens)."""
        line = self.first("o")
        return None if line is None else Origin.parse(line.value)

    def set_origin(self, origin: Origin) -> None:
        index = self.find("o")
        if index is None:
            raise SdpError("no o= line to replace")
        self.lines[index] = self.lines[index].with_value(origin.render())

    def session_name(self) -> str | None:
        line = self.first("s")
        return None if line is None else line.value

    def all_lines(self) -> Iterator[SdpLine]:
        yield from self.lines
        for media in self.media:
            yield from media.lines


@dataclass(slots=True)
class SessionDescription:
    """A parsed SDP body. `serialize()` gives back the exact text that was parsed (plus edits).

    `tail` is text after the last line that rtpengine does not read as lines (see
    `tail_is_cut`)."""

    sessions: list[Session] = field(default_factory=list)
    tail: str = ""

    # --- text ----------------------------------------------------------------------------------
    def serialize(self) -> str:
        parts: list[str] = []
        append = parts.append
        for session in self.sessions:
            for line in session.all_lines():
                append(line.text)
                append(line.eol)
        append(self.tail)
        return "".join(parts)

    def to_bytes(self) -> bytes:
        """The serialized text as bytes; the inverse of `parse_bytes` (UTF-8, undecodable bytes
        carried as surrogate escapes)."""
        try:
            return self.serialize().encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise SdpError("SDP text cannot be encoded", str(exc)) from exc

    @property
    def tail_is_cut(self) -> bool:
        """True if `tail` begins at an empty line: rtpengine 10.5 ends the SDP there and leaves the
        rest out of its output. A one-character tail (the body's last character after the last
        line, e.g. "\\n" after a final "\\r\\n") is not read by rtpengine either but is copied to the
        end of its output (probed)."""
        return len(self.tail) > 1

    # --- structure -----------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        """The first (normally the only) session."""
        if not self.sessions:
            raise SdpError("SDP has no session")
        return self.sessions[0]

    @property
    def media(self) -> list[MediaSection]:
        """The media sections of the first session (the list itself: edits stick)."""
        return self.session.media

    def all_media(self) -> list[MediaSection]:
        """Media sections of all sessions, in order (rtpengine numbers media across sessions)."""
        return [media for session in self.sessions for media in session.media]

    def iter_media(self) -> Iterator[tuple[Session, MediaSection]]:
        for session in self.sessions:
            for media in session.media:
                yield session, media

    def session_of(self, media: MediaSection) -> Session:
        for session in self.sessions:
            if any(m is media for m in session.media):
                return session
        raise SdpError("media section is not part of this SDP")

    def lines(self) -> Iterator[SdpLine]:
        for session in self.sessions:
            yield from session.all_lines()

    def copy(self) -> SessionDescription:
        """An independent copy (lines are immutable, so copying the lists is enough)."""
        return SessionDescription(
            [Session(list(s.lines), [MediaSection(list(m.lines)) for m in s.media]) for s in self.sessions],
            self.tail,
        )

    # --- effective values ----------------------------------------------------------------------
    def connection_for(self, media: MediaSection) -> Connection | None:
        """The media's own c= line, else its session's."""
        own = media.connection()
        return own if own is not None else self.session_of(media).connection()

    def direction_for(self, media: MediaSection) -> Direction:
        """The direction rtpengine 10.5 derives for this media section (see rtpengine_direction)."""
        return rtpengine_direction(media.attribute_names(), self.session_of(media).attribute_names())
