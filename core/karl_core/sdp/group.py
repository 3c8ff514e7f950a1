"""a=group (RFC 5888)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Group:
    """`a=group:<semantics> <mid> ...`."""

    semantics: str
    mids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Group:
        semantics, _, mids = value.partition(" ")
        return cls(semantics, tuple(mids.split(" ")) if mids else ())

    def render(self) -> str:
        return " ".join((self.semantics, *self.mids))

    @staticmethod
    def is_rtpengine_bundle(value: str) -> bool:
        """rtpengine 10.5 treats (and strips) a=group as BUNDLE only if its value starts with
        "BUNDLE " including the space; a bare "a=group:BUNDLE" is left alone (probed)."""
        return value.startswith("BUNDLE ")
