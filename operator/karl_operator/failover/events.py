"""The event the failover controller sends for a call of a dead node that no other node had room for
(`KARL_FAILOVER_WEBHOOK_URL`, as the nodes send theirs for the calls they take up): the call ended, and
where its parties were sending media. Pure."""

from __future__ import annotations

import json
from typing import Any

from karl_core.session import CallState
from karl_core.webhook import event_id


def ended_event(call_id: str, state: str | None, node: str, now: float) -> dict[str, Any]:
    legs = []
    try:
        call = CallState.from_dict(json.loads(state)) if state else None
    except (ValueError, TypeError, KeyError):
        call = None  # unreadable: the event still says the call ended
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
        "reason": "no_room",
        "time": round(now, 3),
        "legs": legs,
    }
