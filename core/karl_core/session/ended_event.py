"""The event sent for a call that failover could not keep (`KARL_FAILOVER_WEBHOOK_URL`, next to the
`call_moved` events of the calls it moved): the call ended, why, and where its parties were sending
media. Pure: no sockets, no clock of its own.

Reasons: `no_room` (no live node had room for a dead node's call) and `take_up_failed` (the node it
was moved to could not restore it: no state, no free ports)."""

from __future__ import annotations

import json
from typing import Any

from karl_core.session.model import CallState
from karl_core.webhook import event_id

NO_ROOM = "no_room"
TAKE_UP_FAILED = "take_up_failed"
CDR_REASONS = {NO_ROOM: "failover no room", TAKE_UP_FAILED: "failover take-up failed"}
"""The `reason` in the CDR of a call that ended so."""


def ended_event(call_id: str, state: str | None, node: str, reason: str, now: float) -> dict[str, Any]:
    """The event for `call_id`, which ended on its way off `node`; `state`: its last saved state
    (JSON; an unreadable or missing one still gives the event, without legs)."""
    legs = []
    try:
        call = CallState.from_dict(json.loads(state)) if state else None
    except (ValueError, TypeError, KeyError, AttributeError):
        call = None
    for mono in sorted(call.monologues.values(), key=lambda m: m.uid) if call else []:
        if mono.removed:
            continue
        stream = next((s for m in mono.medias for s in m.streams if s.component == 1), None)
        legs.append(
            {
                "tag": mono.tag,
                "label": mono.label,
                "old": None
                if stream is None
                else {"address": stream.local_address, "port": stream.local_port},
            }
        )
    return {
        "event": "call_ended",
        "event_id": event_id("ended", call_id, node),
        "call_id": call_id,
        "from_node": node,
        "reason": reason,
        "time": round(now, 3),
        "legs": legs,
    }
