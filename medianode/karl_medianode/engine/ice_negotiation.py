"""Which legs Karl speaks ICE on, and the ICE lines of the SDP it sends, as rtpengine 10.5 does it
(sans-IO).

Karl terminates ICE on every leg that uses it: it never passes a party's candidates on. Towards the
offerer it is an agent when the offer carried ICE and the answer's `ICE` flag is not `remove`.
Towards the answerer, with `ICE=force` or `remove` as the flag says; else, the first time, when the
offer carried ICE, and later as the party's own ICE stands (its last SDP, or what Karl last offered
it): a party that answered with ICE is offered ICE by a re-offer without it, one that answered plain
is not offered ICE by a re-offer with it (10.5's ICE flag of a media, kept once initialised). Karl
stays an agent towards the answerer only if the answer carries ICE too.

Karl's credentials towards a party stay the same for the whole call, also across re-offers that
leave ICE out in between, until that party restarts ICE in an offer (new ufrag), as 10.5's do; a new
ufrag in an answer changes nothing of Karl's.
"""

from __future__ import annotations

from karl_core.ng.options import Ice, IceLite, NgOptions
from karl_core.session import MediaState
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.ice.credentials import IceCredentials, host_candidate

TRICKLE = "ice-trickle"
"""Media flag: the party said it trickles candidates (`a=ice-options:trickle`)."""
LITE_SELF = "ice-lite-self"
"""Media flag: Karl is an ICE-lite agent towards this party (`ICE-lite` option): it writes
`a=ice-lite`, answers checks and follows the party's nomination, and sends no checks of its own."""
LITE_PEER = "ice-lite-peer"
"""Media flag: the party is an ICE-lite agent (`a=ice-lite`): Karl controls and nominates towards it."""
PARTY_ICE = "ice-party"
"""Media flag: the party's leg is an ICE leg (10.5's ICE flag of the media): its last SDP carried
ICE, or Karl's last offer or answer to it did."""
RESTARTED_CONTROLLED = "ice-restart-controlled"
"""Media flag: the party restarted ICE in an offer, so it controls: Karl is the controlled agent
towards it from then on (10.5 takes `ICE controlling` off its media), whoever answered first."""
RESTARTED_CONTROLLING = "ice-restart-controlling"
"""Media flag: the other party's offer restarted ICE: Karl controls towards this party (10.5 shows
`ICE controlling` on its media, also when it is no ICE leg)."""
LITE_CONTROLLING = "ice-lite-controlling"
"""Media flag: the party was an ICE-lite agent in one of its SDPs, so Karl controls towards it until an
ICE restart, also once its SDPs leave ICE-lite (10.5's `ICE controlling`, set then and kept)."""
AGENT = "ice-agent"
"""Media flag: 10.5 has an ICE agent on this party's media: its SDP carried ICE once, or Karl spoke
ICE to it. Kept for the call (10.5 leaves an agent running when ICE is removed): a party that said
it trickles then still gets `a=ice-options:trickle` and `a=end-of-candidates` without ICE."""
SETTLED = "ice-settled"
"""Media flag: `PARTY_ICE` was set once (10.5's `initialized`): offers to the party follow it, not the
offerer's ICE."""


def _wants_ice(opts: NgOptions, offered: bool) -> bool:
    if opts.ice in (Ice.FORCE, Ice.FORCE_RELAY):
        return True
    if opts.ice is Ice.REMOVE:
        return False
    return offered


def ice_leg(media: MediaState) -> bool:
    """What `query` calls an ICE media (10.5's ICE flag): the party's leg as its last SDP, or Karl's
    last one to it, left it; Karl's own agent state for a call restored from before the flag."""
    return PARTY_ICE in media.flags if SETTLED in media.flags else media.ice


def _note_party(media: MediaState, ice: bool) -> None:
    media.flags.add(SETTLED)
    if ice:
        media.flags.add(PARTY_ICE)
    else:
        media.flags.discard(PARTY_ICE)


def karl_controls(answerer: bool, media: MediaState) -> bool:
    """Whether Karl is the controlling agent towards the party of `media` (`answerer`: that party
    answered first, which decides it until an ICE restart)."""
    if RESTARTED_CONTROLLING in media.flags or (
        (LITE_PEER in media.flags or LITE_CONTROLLING in media.flags) and LITE_SELF not in media.flags
    ):
        return True  # (towards an ICE-lite party Karl always controls)
    return answerer and RESTARTED_CONTROLLED not in media.flags


def take_remote(media: MediaState, media_in: InboundMedia, offer: bool) -> bool:
    """The party's ICE credentials and candidates from its SDP (none: it is no ICE agent). New
    credentials in an offer are a restart: Karl answers it with new ones of its own (returns True)."""
    credentials = media_in.ice_credentials if media_in.is_rtp or media_in.is_udp else None
    media.flags.discard(LITE_PEER)
    if credentials is not None and media_in.ice_lite:
        media.flags.update((LITE_PEER, LITE_CONTROLLING))
    if credentials is None:
        media.ice_remote_ufrag = media.ice_remote_pwd = None
        media.ice_candidates = []
        return False
    # (a restart of Karl's own agent: it speaks ICE to the party, whose offer brings a new ufrag)
    restarted = offer and media.ice and _agent_restarted(media, media_in)
    media.flags.add(AGENT)
    ufrag, pwd = credentials
    if restarted:
        restart = IceCredentials.new()
        media.ice_ufrag, media.ice_pwd = restart.ufrag, restart.pwd
    media.ice_remote_ufrag, media.ice_remote_pwd = ufrag, pwd
    media.ice_candidates = list(media_in.candidates)
    return restarted


def _agent_restarted(offerer: MediaState, media_in: InboundMedia) -> bool:
    """Whether an offer restarts 10.5's agent for the offerer (a new ufrag where it has one), ICE
    leg or not."""
    credentials = media_in.ice_credentials
    previous = offerer.ice_remote_ufrag
    has_agent = AGENT in offerer.flags or offerer.ice  # (Karl speaking ICE to it: an agent, flag or not)
    return has_agent and credentials is not None and previous not in (None, credentials[0])


def _ensure_local(media: MediaState) -> None:
    media.flags.add(AGENT)
    if media.ice_ufrag is None or media.ice_pwd is None:
        if media.ice_kept_ufrag is not None and media.ice_kept_pwd is not None:
            media.ice_ufrag, media.ice_pwd = media.ice_kept_ufrag, media.ice_kept_pwd
            return
        fresh = IceCredentials.new()
        media.ice_ufrag, media.ice_pwd = fresh.ufrag, fresh.pwd


def _stop(media: MediaState) -> None:
    if media.ice_ufrag is not None and media.ice_pwd is not None:
        media.ice_kept_ufrag, media.ice_kept_pwd = media.ice_ufrag, media.ice_pwd
    media.ice_ufrag = media.ice_pwd = None


def answers_with_ice(offerer: MediaState, opts: NgOptions) -> bool:
    """Whether the answer to the offerer gives it an ICE leg (its offer carried ICE, or `force`)."""
    return _wants_ice(opts, offerer.ice_remote_ufrag is not None)


def offers_ice(answerer: MediaState, opts: NgOptions, offered: bool) -> bool:
    """Whether an offer (`offered`: it carries ICE) gives the answerer an ICE leg (see the module)."""
    if opts.ice in (Ice.FORCE, Ice.FORCE_RELAY):
        return True
    if opts.ice is Ice.REMOVE:
        return False
    return PARTY_ICE in answerer.flags if SETTLED in answerer.flags else offered


def on_offer(offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions) -> bool:
    """An offer from `offerer`'s party: whether Karl offers ICE to the answerer."""
    if opts.ice_lite is not None:
        # `forward`: lite towards the offer's recipient, `backward`: towards the offerer (10.5)
        for media, lite in (
            (answerer, opts.ice_lite in (IceLite.FORWARD, IceLite.BOTH)),
            (offerer, opts.ice_lite in (IceLite.BACKWARD, IceLite.BOTH)),
        ):
            if lite:
                media.flags.add(LITE_SELF)
            else:
                media.flags.discard(LITE_SELF)
    agent_restarted = _agent_restarted(offerer, media_in)
    if take_remote(offerer, media_in, offer=True):
        # the restarting offerer controls now: Karl is controlled towards it, controlling towards the other
        offerer.flags.add(RESTARTED_CONTROLLED)
        offerer.flags.discard(RESTARTED_CONTROLLING)
        answerer.flags.add(RESTARTED_CONTROLLING)
        answerer.flags.discard(RESTARTED_CONTROLLED)
    if agent_restarted:
        # 10.5 decides the roles anew: only a party that is ICE-lite now keeps Karl controlling
        for media in (offerer, answerer):
            media.flags.discard(LITE_CONTROLLING)
            if LITE_PEER in media.flags:
                media.flags.add(LITE_CONTROLLING)
    _note_party(offerer, offerer.ice_remote_ufrag is not None)
    if offerer.ice_remote_ufrag is None:
        _stop(offerer)
    if not media_in.is_udp or media_in.rejected:
        _stop(answerer)
        return False
    wanted = offers_ice(answerer, opts, media_in.ice_credentials is not None)
    _note_party(answerer, wanted)
    if not wanted:
        _stop(answerer)
        return False
    _ensure_local(answerer)
    return True


def on_answer(offerer: MediaState, answerer: MediaState, media_in: InboundMedia, opts: NgOptions) -> bool:
    """An answer from `answerer`'s party: whether Karl's answer to the offerer carries ICE."""
    offered = answerer.ice
    take_remote(answerer, media_in, offer=False)
    _note_party(answerer, answerer.ice_remote_ufrag is not None)
    if answerer.ice_remote_ufrag is None or not offered:
        _stop(answerer)  # Karl offered no ICE, or the party did not take it up: plain RTP on this leg
    if media_in.rejected or not answers_with_ice(offerer, opts):
        _stop(offerer)
        if not media_in.rejected:
            _note_party(offerer, False)
        return False
    _ensure_local(offerer)
    _note_party(offerer, True)
    return True


def trickle_remnant(media: MediaState) -> bool:
    """Whether the SDP to `media`'s party ends with `a=ice-options:trickle` and `a=end-of-candidates`
    even where it carries no ICE: the party said it trickles (its last SDP) and 10.5 has an agent for it."""
    return TRICKLE in media.flags and AGENT in media.flags


def sdp_lines(
    media: MediaState, address: str, port: int, rtcp_port: int | None, muxed: bool, base: str
) -> list[str]:
    """Karl's ICE attributes for `media`'s party: credentials, a host candidate per component (at
    `address`, its foundation that of the local address `base`) and, for a party that trickles,
    `ice-options:trickle` and `end-of-candidates` (Karl has all its candidates at once)."""
    if media.ice_ufrag is None or media.ice_pwd is None:
        return []
    trickle = TRICKLE in media.flags
    lines = [f"a=ice-ufrag:{media.ice_ufrag}", f"a=ice-pwd:{media.ice_pwd}"]
    if trickle:
        lines.append("a=ice-options:trickle")
    lines.append(f"a=candidate:{host_candidate(address, port, 1, base)}")
    if rtcp_port is not None and not muxed and rtcp_port != port:
        lines.append(f"a=candidate:{host_candidate(address, rtcp_port, 2, base)}")
    if trickle:
        lines.append("a=end-of-candidates")
    return lines
