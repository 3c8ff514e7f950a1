"""NG protocol errors and the exact error/warning texts of rtpengine 10.5.

The texts are part of rtpengine's observable behaviour (SIP proxies log them, and some act on
`Parallel session limit reached` / `Ran out of ports`), so they are kept byte-for-byte, including
10.5's inconsistent `Unknown call-id` / `Unknown call-ID` spelling.
"""

from __future__ import annotations


class NgError(Exception):
    """A request failed; the reply is `{result: error, error-reason: <reason>}`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoCookie(Exception):
    """The datagram has no cookie (no space, or a space as first byte): drop it without a reply."""


# --- framing / dispatch (control_ng.c)
INVALID_DATA_NO_PAYLOAD = "Invalid data (no payload)"
INVALID_NG_DATA_FORMAT = "Invalid NG data format"
BENCODE_DECODE_FAILED = "Could not decode bencode dictionary"
JSON_PARSE_FAILED = "Failed to parse JSON document"
NO_COMMAND = 'Dictionary contains no key "command"'
UNRECOGNIZED_COMMAND = "Unrecognized command"

# --- offer / answer / publish
NO_SDP = "No SDP body in message"
NO_CALL_ID = "No call-id in message"
NO_FROM_TAG = "No from-tag in message"
NO_TO_TAG = "No to-tag in message"
SDP_PARSE_FAILED = "Failed to parse SDP"
INCOMPLETE_SDP = "Incomplete SDP specification"
UNKNOWN_CALL_ID = "Unknown call-id"
INVALID_DIALOGUE = "Invalid dialogue association"
SDP_REWRITE_ERROR = "Error rewriting SDP"
OUT_OF_PORTS = "Ran out of ports"
SDP_CREATE_FAILED = "Failed to create SDP"

# --- load limits: `result: load limit` + `message` when the client sent `supports: [load limit]`,
# otherwise SESSION_LIMIT as a plain error.
SESSION_LIMIT = "Parallel session limit reached"
CPU_LIMIT = "CPU usage limit exceeded"
LOAD_LIMIT = "Load limit exceeded"
BANDWIDTH_LIMIT = "Bandwidth limit exceeded"

# --- delete (a warning in an `ok` reply, or the error text with flag `fatal`)
CALL_NOT_FOUND_WARNING = "Call-ID not found or tags didn't match"

# --- list
INVALID_LIMIT = "invalid limit, must be >= 0"

# --- participant selection (block/unblock/silence/forwarding/play/subscribe)
UNKNOWN_CALL_ID_UPPER = "Unknown call-ID"
NO_LABEL_MATCH = "No monologue matching the given label"
ADDRESS_PARSE_FAILED = "Failed to parse network address"
ADDRESS_NO_MATCH = "Failed to match address to any tag"
FROM_TAG_NOT_FOUND = "From-tag given, but no such tag exists"
NO_PARTICIPANT = "No participant party specified"
NO_MONOLOGUES_MATCHED = "No monologues matched"
NO_CALL_PARTICIPANT = "No call participant specified"

# --- play media / stop media
NO_MEDIA_FILE = "No media file specified"
PLAYBACK_FILE_FAILED = "Failed to start media playback from file"
PLAYBACK_BLOB_FAILED = "Failed to start media playback from blob"
PLAYBACK_DB_FAILED = "Failed to start media playback from database"
NOT_PLAYING = "Not currently playing media"
UNSUPPORTED = "unsupported"

# --- play DTMF
CODE_OUT_OF_RANGE = "Out of range 'code' specified"
NO_DTMF_MEDIA = "Monologue has no media capable of DTMF injection"
NO_DTMF_SINK_MEDIA = "Sink monologue has no media capable of DTMF playback"
NO_RTP_STREAM = "Media doesn't have an RTP stream"
NO_SSRC_CONTEXT = "No SSRC context present for DTMF injection"
NO_OUTPUT_SSRC = "No output SSRC context present"
NO_PAYLOAD_TYPE = "No RTP payload type found to be in use"
NO_MATCHING_CODEC_HANDLER = "No matching codec handler"
NO_SUITABLE_CODEC_HANDLER = "No suitable codec handler present"
NO_MATCHING_SSRC_HANDLER = "No matching codec SSRC handler"

# --- publish / subscribe
SUBSCRIPTION_FAILED = "Failed to request subscription"
SDP_REWRITE_FAILED = "Failed to rewrite SDP"
TO_TAG_NOT_FOUND = "To-tag not found"
SUBSCRIBE_ANSWER_FAILED = "Failed to process subscription answer"
UNSUBSCRIBE_FAILED = "Failed to unsubscribe"
