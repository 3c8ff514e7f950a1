"""The NG control protocol as rtpengine 10.5 speaks it: framing, bencode/JSON, commands, options,
error texts and the retransmission reply cache. Sans-IO: nothing here touches a socket or a clock.
"""

from .bencode import BencodeError, BValue, decode, decode_ng_dict, encode
from .commands import Command, parse_command
from .errors import NgError, NoCookie
from .framing import (
    Encoding,
    NgRequest,
    decode_payload,
    decode_request,
    encode_reply,
    error_reply,
    load_limit_reply,
    reply_encoding,
    split_cookie,
)
from .options import CodecOptions, NgOptions, check_required, parse_options
from .reply_cache import CacheState, CacheStatus, ReplyCache

__all__ = [
    "BValue",
    "BencodeError",
    "CacheState",
    "CacheStatus",
    "CodecOptions",
    "Command",
    "Encoding",
    "NgError",
    "NgOptions",
    "NgRequest",
    "NoCookie",
    "ReplyCache",
    "check_required",
    "decode",
    "decode_ng_dict",
    "decode_payload",
    "decode_request",
    "encode",
    "encode_reply",
    "error_reply",
    "load_limit_reply",
    "parse_command",
    "parse_options",
    "reply_encoding",
    "split_cookie",
]
