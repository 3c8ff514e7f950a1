"""One SDP line, and the name/value view of an a= line."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SdpError

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class SdpLine:
    """A line exactly as received: `kind` is the letter before "=", `value` everything after it up
    to the line ending, `eol` the ending itself ("\\r\\n", "\\n", or "" on a last line without one).

    A line that is not `<char>=...` (garbage) has kind "" and keeps its whole text in `value`.
    Lines are immutable; edit a block by replacing lines (`with_value`)."""

    kind: str
    value: str
    eol: str = CRLF

    @property
    def text(self) -> str:
        """The line without its ending."""
        return f"{self.kind}={self.value}" if self.kind else self.value

    def serialize(self) -> str:
        return self.text + self.eol

    @property
    def well_formed(self) -> bool:
        return self.kind != ""

    def with_value(self, value: str) -> SdpLine:
        """The same kind of line with a new value and the same ending."""
        return SdpLine(self.kind, value, self.eol)

    @property
    def attribute(self) -> Attribute | None:
        """The name/value view if this is an a= line."""
        return Attribute.parse(self.value) if self.kind == "a" else None

    @classmethod
    def from_text(cls, text: str) -> SdpLine:
        """Build a line from `x=value` plus an optional ending ("a=sendrecv\\r\\n")."""
        if text.endswith("\r\n"):
            body, eol = text[:-2], "\r\n"
        elif text.endswith("\n"):
            body, eol = text[:-1], "\n"
        else:
            body, eol = text, ""
        if "\n" in body:
            raise SdpError("not a single line", repr(text))
        return make_line(body, eol)

    @classmethod
    def attr(cls, name: str, value: str | None = None, eol: str = CRLF) -> SdpLine:
        """A new a= line: attr("rtpmap", "0 PCMU/8000") -> a=rtpmap:0 PCMU/8000."""
        return cls("a", Attribute(name, value).render(), eol)


def make_line(body: str, eol: str) -> SdpLine:
    """Split a line (without its ending) into kind and value."""
    if body[1:2] == "=":
        return SdpLine(body[0], body[2:], eol)
    return SdpLine("", body, eol)


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line's value split at the first colon.

    `a=rtpmap:0 PCMU/8000` -> name "rtpmap", value "0 PCMU/8000"; `a=sendrecv` -> name "sendrecv",
    value None; `a=x:` -> value "". Names are case-sensitive, as in rtpengine ("a=SendOnly" is an
    unknown attribute there)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        colon = text.find(":")
        if colon < 0:
            return cls(text, None)
        return cls(text[:colon], text[colon + 1 :])

    def render(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"
