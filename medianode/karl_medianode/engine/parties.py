"""The parties of a call (monologues): who answers whom, forks, branches left by a delete."""

from __future__ import annotations

from karl_core.ng.options import NgOptions
from karl_core.session import (
    CallState,
    Monologue,
)


def new_answerer(state: CallState, now: float, tag: str = "") -> Monologue:
    # "ICE controlling" stays with whoever answered first, also when it later re-offers
    mono = state.new_monologue(now, tag)
    mono.answerer = True
    return mono


def links_left_without(state: CallState, gone: Monologue | None) -> bool:
    """Whether two parties other than `gone` (and not yet removed) are still linked."""
    alive = {m.uid for m in state.monologues.values() if not m.removed and m is not gone}
    for mono in state.monologues.values():
        if mono.uid in alive and ({mono.partner, *mono.former_partners} & alive):
            return True
    return False


def partner_for_offer(state: CallState, offerer: Monologue, opts: NgOptions, now: float) -> Monologue:
    if opts.to_tag:
        found = state.by_tag(opts.to_tag)
        if found is not None:
            return pair(offerer, found, state)
        partner = state.partner_of(offerer)
        if partner is not None and not partner.tag:
            partner.tag = opts.to_tag
            return partner
        return pair(offerer, new_answerer(state, now, opts.to_tag), state)
    partner = state.partner_of(offerer)
    if partner is not None and (opts.via_branch is None or partner.via_branch in (None, opts.via_branch)):
        if opts.via_branch is not None:
            partner.via_branch = opts.via_branch
        return partner
    if opts.via_branch is not None:
        for mono in state.monologues.values():
            if mono.via_branch == opts.via_branch and not mono.tag:
                return pair(offerer, mono, state)
    fresh = new_answerer(state, now)
    fresh.via_branch = opts.via_branch
    return pair(offerer, fresh, state)


def pair(a: Monologue, b: Monologue, state: CallState | None = None) -> Monologue:
    """Link a and b. A party linked before keeps receiving from `a` but loses its own link (fork)."""
    for one, other in ((a, b), (b, a)):
        previous = one.partner
        if previous is not None and previous != other.uid:
            if previous not in one.former_partners:
                one.former_partners.insert(0, previous)
            old = state.monologues.get(previous) if state is not None else None
            if old is not None and old.partner == one.uid:
                old.partner = None
        if other.uid in one.former_partners:
            one.former_partners.remove(other.uid)
    a.partner = b.uid
    b.partner = a.uid
    return b


def apply_labels(mono: Monologue, opts: NgOptions, answering: bool = False) -> None:
    # in an answer `label` names the answerer (`to-label`/`set-label` only when `label` is absent);
    # via-branch belongs to the answering side only, as rtpengine lists it
    label = (opts.label or opts.set_label) if answering else opts.label
    if label:
        mono.label = label


def select_for_delete(state: CallState, opts: NgOptions) -> Monologue | None:
    """The party a `delete` with a from-tag is about (10.5's call_delete_branch): the one its to-tag names,
    else its from-tag; without a to-tag, first the one its via-branch was noted for. A tag it does not
    know: the via-branch's party, or the from-tag's party still waiting for its first answer. None:
    nothing matches (parties deleted already are unknown)."""
    if not opts.to_tag:
        found = _branch_party(state, opts.via_branch)
        if found is not None:
            return found
    found = known_party(state, opts.to_tag or opts.from_tag)
    if found is not None:
        return found
    found = _branch_party(state, opts.via_branch)
    if found is not None:
        return found
    mono = known_party(state, opts.from_tag) if opts.to_tag else None
    if mono is not None and not mono.former_partners:
        partner = state.partner_of(mono)
        if partner is not None and not partner.tag:
            return mono
    return None


def known_party(state: CallState, tag: str | None) -> Monologue | None:
    """The party with this tag, unless it was deleted (10.5 forgets the tags of deleted parties)."""
    mono = state.by_tag(tag) if tag else None
    return mono if mono is not None and not mono.removed else None


def _branch_party(state: CallState, via_branch: str | None) -> Monologue | None:
    """The party 10.5 last noted this via-branch for (that party's offers carried it)."""
    found = None
    if via_branch:
        for mono in state.monologues.values():
            if mono.via_branch == via_branch and not mono.removed:
                found = mono
    return found


def mirror_directions(sender: Monologue, recipient: Monologue, count: int) -> None:
    """10.5 keeps one direction per pair of medias: each SDP (offer or answer) sets its sender's medias
    from what it says (a zero address: not receiving) and those of the party it goes to as their mirror
    image, until the next SDP of either. `count`: the SDP's media."""
    for sent, received in zip(sender.medias[:count], recipient.medias[:count], strict=False):
        received.send, received.recv = sent.recv, sent.send


def branch_answering(state: CallState, offerer: Monologue, opts: NgOptions) -> Monologue | None:
    """The party an answer with an unknown to-tag comes from when its via-branch is known: 10.5 takes the
    party it last noted that branch for (a party that answered with another tag is renamed)."""
    found = _branch_party(state, opts.via_branch)
    return None if found is offerer else found
