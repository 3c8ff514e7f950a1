"""The single error type of the SDP package."""

from __future__ import annotations


class SdpError(ValueError):
    """Malformed or unusable SDP.

    `reason` is a short fixed text. For `validate_for_rtpengine` it is the exact error text rtpengine
    10.5 replies with (`Failed to parse SDP`, `Incomplete SDP specification`), so the NG layer can
    reply with it unchanged; `detail` says which rule was broken (for logs only).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
