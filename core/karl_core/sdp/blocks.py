"""Editing helpers shared by the session part and the media sections of an SDP."""

from __future__ import annotations

from collections.abc import Callable

from .connection import Connection
from .direction import Direction
from .errors import SdpError
from .lines import CRLF, Attribute, SdpLine


def attribute_name(line: SdpLine) -> str | None:
    """The attribute name of an a= line (text before the first colon), None for other lines."""
    if line.kind != "a":
        return None
    return line.value.partition(":")[0]


class LineBlock:
    """A run of lines (the session part, or one media section) with find/edit helpers.

    Indexes are positions in `lines`. Lines are immutable: editing means replacing entries."""

    __slots__ = ()
    lines: list[SdpLine]

    # --- finding -------------------------------------------------------------------------------
    def find(self, kind: str, start: int = 0) -> int | None:
        """Index of the first line of this kind at or after `start`."""
        lines = self.lines
        for index in range(start, len(lines)):
            if lines[index].kind == kind:
                return index
        return None

    def find_all(self, kind: str) -> list[int]:
        return [i for i, line in enumerate(self.lines) if line.kind == kind]

    def first(self, kind: str) -> SdpLine | None:
        index = self.find(kind)
        return None if index is None else self.lines[index]

    def find_attribute(self, name: str, start: int = 0) -> int | None:
        """Index of the first a=<name> line at or after `start`."""
        lines = self.lines
        for index in range(start, len(lines)):
            if attribute_name(lines[index]) == name:
                return index
        return None

    def attribute_indexes(self, name: str) -> list[int]:
        return [i for i, line in enumerate(self.lines) if attribute_name(line) == name]

    def attributes(self) -> list[Attribute]:
        """All a= lines, in order."""
        return [Attribute.parse(line.value) for line in self.lines if line.kind == "a"]

    def get_attribute(self, name: str) -> Attribute | None:
        """The first a=<name> line."""
        index = self.find_attribute(name)
        return None if index is None else Attribute.parse(self.lines[index].value)

    def get_attributes(self, name: str) -> list[Attribute]:
        return [Attribute.parse(self.lines[i].value) for i in self.attribute_indexes(name)]

    def attribute_values(self, name: str) -> list[str]:
        """Values of all a=<name>:<value> lines (lines without a colon are skipped)."""
        return [a.value for a in self.get_attributes(name) if a.value is not None]

    def has_attribute(self, name: str) -> bool:
        return self.find_attribute(name) is not None

    def attribute_names(self) -> set[str]:
        return {line.value.partition(":")[0] for line in self.lines if line.kind == "a"}

    # --- editing -------------------------------------------------------------------------------
    def insert_line(self, index: int, line: SdpLine) -> None:
        self.lines.insert(index, line)

    def append_line(self, line: SdpLine) -> None:
        self.lines.append(line)

    def replace_line(self, index: int, line: SdpLine) -> None:
        self.lines[index] = line

    def remove_line(self, index: int) -> SdpLine:
        return self.lines.pop(index)

    def add_attribute(self, name: str, value: str | None = None, eol: str = CRLF) -> int:
        """Append a=<name>[:<value>] at the end of the block; returns its index."""
        self.lines.append(SdpLine.attr(name, value, eol))
        return len(self.lines) - 1

    def insert_attribute(self, index: int, name: str, value: str | None = None, eol: str = CRLF) -> None:
        self.lines.insert(index, SdpLine.attr(name, value, eol))

    def remove_where(self, predicate: Callable[[SdpLine], bool]) -> int:
        """Remove every line the predicate selects; returns how many were removed."""
        kept = [line for line in self.lines if not predicate(line)]
        removed = len(self.lines) - len(kept)
        self.lines[:] = kept
        return removed

    def remove_attributes(self, *names: str) -> int:
        """Remove all a= lines with one of these names; returns how many were removed."""
        wanted = set(names)
        return self.remove_where(lambda line: attribute_name(line) in wanted)

    # --- typed views ---------------------------------------------------------------------------
    def connection(self) -> Connection | None:
        """This block's own c= line (SdpError if it is malformed)."""
        line = self.first("c")
        return None if line is None else Connection.parse(line.value)

    def set_connection(self, connection: Connection) -> None:
        """Replace this block's c= line, keeping its line ending; SdpError if it has none."""
        index = self.find("c")
        if index is None:
            raise SdpError("no c= line to replace")
        self.lines[index] = self.lines[index].with_value(connection.render())

    def direction(self) -> Direction | None:
        """The direction of the first direction attribute of this block, if any."""
        for line in self.lines:
            name = attribute_name(line)
            if name is not None:
                direction = Direction.from_name(name)
                if direction is not None:
                    return direction
        return None

    def remove_directions(self) -> int:
        """Remove all direction attributes; returns how many were removed."""
        return self.remove_attributes(*(d.value for d in Direction))
