"""Trickle ICE: candidates a party sends after its offer or answer, in an SDP fragment (RFC 8840, as a
proxy relays a SIP INFO `application/trickle-ice-sdpfrag`), carried by an NG `offer` with the flag
`fragment` (sans-IO).

As in rtpengine 10.5 the request is answered `ok` whatever becomes of it; a fragment for a call that
does not exist yet waits up to `FRAGMENT_LIFETIME` seconds for the next offer of that party. Karl
applies the candidates of each `m=` section (or, with no `m=` line, of the whole fragment) to the
party's media with the same `a=mid`, else the same position, where Karl is the ICE agent and the
fragment's ufrag (if it names one) is the party's current one; 10.5.3.5's quirks around fragments
(a lost first line, media to the party stopped, a stored SDP overwritten, crashes) are not copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FRAGMENT_LIFETIME = 3.0
"""Seconds a fragment waits for its call (rtpengine's MAX_FRAG_AGE)."""
MAX_WAITING = 1000
"""Fragments waiting at once, all calls together (a flood cannot grow the queue past it)."""
MAX_PER_PARTY = 8
MAX_CANDIDATES = 64
"""Candidates a party's media keeps (those of its SDP and its fragments)."""


@dataclass
class FragmentSection:
    index: int
    """1-based position of the `m=` section in the fragment (1 for a fragment without `m=`)."""
    mid: str | None = None
    ufrag: str | None = None
    candidates: list[str] = field(default_factory=list)


@dataclass
class Fragment:
    sections: list[FragmentSection]
    received: float


def parse_fragment(text: str, now: float) -> Fragment:
    """The candidates of an SDP fragment per section. Lines Karl does not need are skipped; nothing
    in a fragment is an error (10.5 answers `ok` to anything)."""
    session_ufrag: str | None = None
    sections: list[FragmentSection] = []
    current: FragmentSection | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            current = FragmentSection(len(sections) + 1, ufrag=session_ufrag)
            sections.append(current)
        elif line.startswith("a="):
            name, _, value = line[2:].partition(":")
            if current is None and name in ("candidate", "mid"):
                current = FragmentSection(1, ufrag=session_ufrag)
                sections.append(current)
            if name == "ice-ufrag":
                if current is None:
                    session_ufrag = value.strip()
                else:
                    current.ufrag = value.strip()
            elif current is not None and name == "mid":
                current.mid = value.strip()
            elif current is not None and name == "candidate" and value:
                current.candidates.append(value.strip())
    if session_ufrag is not None:
        for section in sections:
            section.ufrag = section.ufrag or session_ufrag
    return Fragment(sections, now)


class FragmentQueue:
    """Fragments of parties whose call does not exist yet, by (call-id, from-tag)."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], list[Fragment]] = {}
        self._count = 0

    def put(self, call_id: str, tag: str, fragment: Fragment) -> bool:
        """False: not kept (too many waiting)."""
        self.prune(fragment.received)
        kept = self._waiting.setdefault((call_id, tag), [])
        if self._count >= MAX_WAITING or len(kept) >= MAX_PER_PARTY:
            if not kept:
                del self._waiting[(call_id, tag)]
            return False
        kept.append(fragment)
        self._count += 1
        return True

    def take(self, call_id: str, tag: str, now: float) -> list[Fragment]:
        """The party's fragments still fresh (the others are dropped)."""
        kept = self._waiting.pop((call_id, tag), [])
        self._count -= len(kept)
        return [f for f in kept if now - f.received <= FRAGMENT_LIFETIME]

    def prune(self, now: float) -> None:
        for key in [k for k, v in self._waiting.items() if now - v[-1].received > FRAGMENT_LIFETIME]:
            self._count -= len(self._waiting.pop(key))

    def __len__(self) -> int:
        return self._count
