"""What the media nodes and the NG router of a fleet say to each other over NG, beyond rtpengine's
protocol: which commands concern one call, which the whole node, and the replies a node gives the
router when it must not act for a call. A proxy talking to the router never sees these replies: the
router acts on them (re-resolves the owner, tries another node) and answers the proxy itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .commands import Command

NODE_WIDE = frozenset({Command.PING, Command.STATISTICS, Command.LIST})
"""Commands about the whole node, not one call: a router answers or merges them itself."""

CALL_CREATING = frozenset({Command.OFFER, Command.PUBLISH})
"""Commands that create their call when it does not exist (the others answer `Unknown call-id`)."""

NOT_OWNER = "Karl: this node does not hold the call (send it through karl-router)"
"""A node's refusal of a call another node owns, or of any call while its own lease is not valid."""

STATE_UNAVAILABLE = "Karl: the fleet's state store (Redis) is unavailable"
"""Who owns the call cannot be known right now: nothing was done."""

NO_NODE = "Karl: no media node is available"
"""The router has no live node to send the request to."""


def not_owner_reply(owner: str | None, epoch: int | None) -> dict[str, Any]:
    """The refusal; `owner`/`epoch`: who holds the call as far as the node knows (None: unknown)."""
    reply: dict[str, Any] = {"result": "error", "error-reason": NOT_OWNER}
    if owner is not None and epoch is not None:
        reply["karl-owner"] = owner
        reply["karl-epoch"] = epoch
    return reply


def is_not_owner(reply: Mapping[str, Any]) -> bool:
    return reply.get("error-reason") == NOT_OWNER
