"""Text -> SessionDescription. Never fails: anything it cannot make sense of is kept verbatim."""

from __future__ import annotations

from ..memo import short_text_cache
from .lines import SdpLine, make_line
from .model import MediaSection, Session, SessionDescription


def split_lines(text: str) -> tuple[list[SdpLine], str]:
    """Cut the text into lines the way rtpengine 10.5 reads it; returns (lines, tail).

    Probed rules (they decide what counts as a line, so the model sees what rtpengine sees):
    - only "\\n" ends a line; one "\\r" before it belongs to the ending, any further "\\r" stays in
      the value ("c=IN IP4 1.2.3.4\\r\\r\\n" has the address "1.2.3.4\\r" and fails there);
    - a line that starts with "\\r" or "\\n" (an empty line) ends the SDP: it and everything after
      it is the tail, which rtpengine drops from its output;
    - reading stops when at most one character is left: that character is the tail too, and
      rtpengine copies it unread to the end of its output;
    - the last line may lack a line ending."""
    pieces = text.split("\n")
    last = pieces.pop()  # the text after the final "\n" (all of it if there is none)
    lines: list[SdpLine] = []
    append = lines.append
    for index, piece in enumerate(pieces):
        if not piece or piece[0] == "\r":
            return lines, "\n".join(pieces[index:]) + "\n" + last
        append(_ended_line(piece))
    if len(last) < 2 or last[0] == "\r":
        return lines, last
    append(make_line(last, ""))
    return lines, ""


@short_text_cache(maxsize=4096, max_length=200)
def _ended_line(piece: str) -> SdpLine:
    """The line of a piece that was followed by "\n" (its "\r" is part of the ending). Cached: lines
    are immutable, and most lines of a call's SDP are the same as other calls' (`a=rtpmap:...`)."""
    if piece[-1] == "\r":
        return make_line(piece[:-1], "\r\n")
    return make_line(piece, "\n")


def parse(text: str) -> SessionDescription:
    """Parse an SDP body losslessly: `parse(t).serialize() == t` for every string t.

    Every v= line starts a session, every m= line a media section; other lines belong to the
    section they appear in. Nothing is validated here (see validate_for_rtpengine)."""
    lines, tail = split_lines(text)
    sessions: list[Session] = []
    session: Session | None = None
    block: list[SdpLine] = []
    for line in lines:
        kind = line.kind
        if kind == "v" or session is None:
            session = Session([])
            sessions.append(session)
            block = session.lines
        if kind == "m":
            media = MediaSection([])
            session.media.append(media)
            block = media.lines
        block.append(line)
    return SessionDescription(sessions, tail)


def parse_bytes(data: bytes) -> SessionDescription:
    """Parse a body received as bytes (an NG `sdp` value). UTF-8 is decoded, any other byte is
    kept as a surrogate escape, so `parse_bytes(b).to_bytes() == b` for all bytes."""
    return parse(data.decode("utf-8", "surrogateescape"))
