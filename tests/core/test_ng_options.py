"""Typed NG options: keys, aliases, flags and the two parsers of rtpengine 10.5.

Cases marked "observed" were sent to rtpengine 10.5.3.5 (offer/query/delete/list over loopback);
the others follow 10.5's option parser (daemon/call_interfaces.c at tag mr10.5.3.5).
"""

from __future__ import annotations

import contextlib
from dataclasses import FrozenInstanceError, fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.ng import errors
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_core.ng.options import (
    DEFAULT_LIST_LIMIT,
    DtmfSecurity,
    EndpointLearning,
    Ice,
    IceLite,
    MediaEcho,
    NgOptions,
    check_required,
    parse_options,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"


def offer(**keys: Any) -> NgOptions:
    return parse_options({"command": "offer", **keys}, Command.OFFER)


def answer(**keys: Any) -> NgOptions:
    return parse_options({"command": "answer", **keys}, Command.ANSWER)


def with_flags(*flags: Any, command: Command = Command.OFFER) -> NgOptions:
    return parse_options({"command": command.value, "flags": list(flags)}, command)


# ------------------------------------------------------------------------ what Kamailio sends


def test_kamailio_offer() -> None:
    # rtpengine_manage("RTP/AVP replace-origin replace-session-connection ICE=remove trust-address")
    options = offer(
        **{
            "transport-protocol": "RTP/AVP",
            "replace": ["origin", "session-connection"],
            "ICE": "remove",
            "flags": ["trust-address"],
            "supports": ["load limit"],
            "received-from": ["IP4", "192.0.2.10"],
            "call-id": "abc@192.0.2.10",
            "from-tag": "ft1",
            "sip-message-type": "sip_request",
            "via-branch": "z9hG4bK1",
            "sdp": SDP,
        }
    )
    assert options.command is Command.OFFER
    assert options.call_id == "abc@192.0.2.10"
    assert options.from_tag == "ft1"
    assert options.to_tag is None
    assert options.via_branch == "z9hG4bK1"
    assert options.sdp == SDP
    assert options.transport_protocol == "RTP/AVP"
    assert options.replace == {"origin", "session-connection"}
    assert options.ice is Ice.REMOVE
    assert options.trust_address is True and not options.sip_source_address
    assert options.supports_load_limit
    assert options.received_from == ("IP4", "192.0.2.10")
    assert options.ignored == ("sip-message-type",)  # 10.5 does not know it; ignored silently
    check_required(options)


def test_kamailio_delete_with_delete_delay_key() -> None:
    options = parse_options(
        {
            "command": "delete",
            "call-id": "c",
            "from-tag": "f",
            "delete delay": 0,
            "sip-message-type": "sip_reply",
        },
        Command.DELETE,
    )
    assert (options.call_id, options.from_tag, options.delete_delay) == ("c", "f", 0)
    assert options.ignored == ("sip-message-type",)


# ------------------------------------------------------------------------------------ aliases


@pytest.mark.parametrize("key", ["call-id", "call-ID", "call id", "call ID"])
def test_call_id_aliases_in_the_common_parser(key: str) -> None:
    assert offer(**{key: "c1"}).call_id == "c1"  # observed: offer with "call ID" works


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("sdp", "sdp"),
        ("SDP", "sdp"),
        ("label", "label"),
        ("from-label", "label"),
        ("set-label", "set_label"),
        ("to-label", "set_label"),
        ("media address", "media_address"),
        ("media-address", "media_address"),
        ("DTLS-fingerprint", "dtls_fingerprint"),
        ("dtls fingerprint", "dtls_fingerprint"),
        ("trigger end", "trigger_end"),
        ("end-trigger", "trigger_end"),
        ("address", "address"),
        ("interface", "interface"),
        ("metadata", "metadata"),
        ("file", "file"),
        ("blob", "blob"),
        ("trigger", "trigger"),
        ("to-tag", "to_tag"),
    ],
)
def test_string_key_aliases(key: str, field: str) -> None:
    assert getattr(offer(**{key: "v"}), field) == "v"


@pytest.mark.parametrize(
    "command",
    [Command.DELETE, Command.QUERY, Command.START_RECORDING, Command.STOP_RECORDING],
)
def test_literal_commands_do_not_know_the_aliases(command: Command) -> None:
    # observed: query/delete with "call ID" answer "No call-id in message"
    options = parse_options({"command": command.value, "call ID": "c1", "from-label": "x"}, command)
    assert options.call_id is None
    assert set(options.ignored) == {"call ID", "from-label"}
    with pytest.raises(NgError) as info:
        check_required(options)
    assert info.value.reason == errors.NO_CALL_ID


def test_literal_commands_read_their_keys() -> None:
    query = parse_options({"command": "query", "call-id": "c", "from-tag": "f", "to-tag": "t"}, Command.QUERY)
    assert (query.call_id, query.from_tag, query.to_tag) == ("c", "f", "t")
    start = parse_options(
        {
            "command": "start recording",
            "call-id": "c",
            "from-tag": "f",
            "metadata": "k:v",
            "output-destination": "/x",
        },
        Command.START_RECORDING,
    )
    assert (start.call_id, start.from_tag) == ("c", "f")
    assert (start.metadata, start.output_destination) == ("k:v", "/x")
    stop = parse_options(
        {"command": "stop recording", "call-id": "c", "output-destination": "/x"}, Command.STOP_RECORDING
    )
    assert stop.output_destination is None
    assert stop.ignored == ("output-destination",)
    query = parse_options(
        {"command": "query", "call-id": "c", "metadata": "m", "via-branch": "v"}, Command.QUERY
    )
    assert query.metadata is None and query.via_branch is None
    assert query.ignored == ("metadata", "via-branch")


def test_later_alias_wins_and_a_non_string_clears() -> None:
    # observed: {"call-id": "x6", "call ID": 5} -> "No call-id in message";
    # {"call ID": 5, "call-id": "x7"} -> ok
    assert offer(**{"call-id": "x6", "call ID": 5}).call_id is None
    assert offer(**{"call ID": 5, "call-id": "x7"}).call_id == "x7"
    assert offer(**{"call-id": "a", "call id": "b"}).call_id == "b"


def test_non_string_values_of_string_keys() -> None:
    options = offer(**{"call-id": 5, "from-tag": ["f"], "sdp": {"a": "b"}})
    assert (options.call_id, options.from_tag, options.sdp) == (None, None, None)
    assert options.ignored == ("call-id: int", "from-tag: list", "sdp: dict")
    with pytest.raises(NgError) as info:
        check_required(options)
    assert info.value.reason == errors.NO_SDP  # observed for sdp: ["x"]


def test_empty_strings_count_as_given() -> None:
    # observed: offer with sdp "" -> ok (no SDP in the reply); from-tag "" -> ok
    options = offer(**{"call-id": "c", "from-tag": "", "sdp": ""})
    assert options.sdp == "" and options.from_tag == ""
    check_required(options)


# -------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("flag", "canonical", "prop"),
    [
        ("trust-address", "trust-address", None),
        ("trust address", "trust-address", None),  # spaces become hyphens
        ("asymmetric", "asymmetric", "asymmetric"),
        ("unidirectional", "unidirectional", "unidirectional"),
        ("strict source", "strict-source", "strict_source"),
        ("media-handover", "media-handover", "media_handover"),
        ("reset", "reset", "reset"),
        ("all", "all", "all"),
        ("egress", "egress", "egress"),
        ("siprec", "SIPREC", "siprec"),
        ("fragment", "fragment", "fragment"),
        ("port latching", "port-latching", "port_latching"),
        ("no-port-latching", "no-port-latching", "no_port_latching"),
        ("generate-mid", "generate-mid", "generate_mid"),
        ("strip extmap", "strip-extmap", "strip_extmap"),
        ("debugging", "debug", "debug"),
        ("no-RTCP-attribute", "no-rtcp-attribute", "no_rtcp_attribute"),
        ("full rtcp attribute", "full-rtcp-attribute", "full_rtcp_attribute"),
        ("trickle ice", "trickle-ICE", "trickle_ice"),
        ("ICE-reject", "reject-ICE", "reject_ice"),
        ("reject ice", "reject-ICE", "reject_ice"),
        ("loop-protect", "loop-protect", "loop_protect"),
        ("original-sendrecv", "original-sendrecv", "original_sendrecv"),
        ("no-codec-renegotiation", "reuse-codecs", "reuse_codecs"),
        ("single codec", "single-codec", "single_codec"),
        ("allow-transcoding", "allow-transcoding", "allow_transcoding"),
        ("inject-dtmf", "inject-DTMF", "inject_dtmf"),
        ("detect DTMF", "detect-DTMF", "detect_dtmf"),
        ("no-jitter-buffer", "no-jitter-buffer", "no_jitter_buffer"),
        ("pierce-nat", "pierce-NAT", "pierce_nat"),
        ("NAT wait", "NAT-wait", "nat_wait"),
        ("mirror-rtcp", "RTCP-mirror", "rtcp_mirror"),
        ("no-redis-update", "no-redis-update", "no_redis_update"),
        ("reorder-codecs", "reorder-codecs", None),  # obsolete, accepted
    ],
)
def test_flags(flag: str, canonical: str, prop: str | None) -> None:
    options = with_flags(flag)
    assert options.flags == {canonical}
    assert options.ignored == ()
    if prop is not None:
        assert getattr(options, prop) is True
        assert getattr(NgOptions(Command.OFFER), prop) is False


def test_flags_are_case_sensitive_apart_from_listed_spellings() -> None:
    options = with_flags("Trust-Address", "STRICT-SOURCE", "symmetric", "replace-origin", "rtcp-mux-demux")
    assert options.flags == frozenset()
    # "symmetric" and the replace-/rtcp-mux- prefixes only exist in newer versions
    assert options.ignored == (
        "flags: Trust-Address",
        "flags: STRICT-SOURCE",
        "flags: symmetric",
        "flags: replace-origin",
        "flags: rtcp-mux-demux",
    )
    assert options.replace == frozenset() and options.rtcp_mux == frozenset()


def test_trust_address_and_sip_source_address_last_wins() -> None:
    assert with_flags("trust-address", "SIP-source-address").trust_address is False
    assert with_flags("sip source address", "trust address").trust_address is True
    assert with_flags("SIP source address").sip_source_address is True
    assert with_flags().trust_address is None


def test_flags_feeding_other_options() -> None:
    options = with_flags("pad crypto", "passthrough", "no-passthrough", "generate RTCP", "always-transcode")
    assert "pad" in options.sdes
    assert options.passthrough_on and options.passthrough_off
    assert options.generate_rtcp is True
    assert options.codec.accept == ("all",)


def test_non_list_flags_and_non_string_items_are_ignored() -> None:
    assert offer(flags="trust-address").flags == frozenset()
    assert offer(flags="trust-address").ignored == ("flags: str",)
    assert offer(flags=[1, ["x"], "asymmetric", {"a": 1}]).flags == {"asymmetric"}


# ------------------------------------------------------------------------------- prefix flags


def test_prefix_flags() -> None:
    options = with_flags(
        "from-tags-a--b",
        "SDES-no-AES_CM_128_HMAC_SHA1_32",
        "SDES-unencrypted_srtcp",
        "SDES-no-aead_aes_128_gcm",
        "SDES pad",
        "OSRTP-offer",
        "codec-strip-PCMA",
        "codec strip G722",
        "codec-offer-PCMU",
        "codec-except-opus",
        "endpoint-learning-heuristic",
        "transcode-AMR-WB",
        "codec-transcode-opus/48000/2",
        "codec-mask-PCMA",
        "T38-decode",
        "T.38-no-V.17",
        "codec-set-AMR/8000/1/7400",
        "codec-accept-PCMA",
        "codec-consume-G729",
        "codec-strip-iLBC/8000/1///mode--30",
    )
    assert options.from_tags == ("a=b",)  # "--" stands for "="
    assert options.sdes_no == {"AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"}
    assert options.sdes == {"unencrypted_srtcp", "pad"}
    assert options.osrtp == {"offer"}
    assert options.codec.strip == ("PCMA", "G722", "iLBC/8000/1///mode=30")
    assert options.codec.offer == ("PCMU",)
    assert options.codec.except_ == ("opus",)
    assert options.endpoint_learning is EndpointLearning.HEURISTIC
    assert options.codec.transcode == ("AMR-WB", "opus/48000/2")
    assert options.codec.mask == ("PCMA",)
    assert options.t38 == {"decode", "no-V.17"}
    assert options.codec.set == ("AMR/8000/1/7400",)
    assert options.codec.accept == ("PCMA",)
    assert options.codec.consume == ("G729",)
    assert options.flags == frozenset() and options.ignored == ()


@pytest.mark.parametrize(
    "command",
    [Command.ANSWER, Command.SUBSCRIBE_ANSWER, Command.BLOCK_MEDIA, Command.PLAY_MEDIA],
)
def test_transcoding_prefixes_only_count_for_offer_publish_subscribe_request(command: Command) -> None:
    flags = ("transcode-opus", "codec-mask-PCMA", "T38-decode", "codec-accept-PCMU")
    options = with_flags(*flags, command=command)
    assert options.codec.transcode == () and options.codec.mask == () and options.t38 == frozenset()
    assert options.codec.accept == ("PCMU",)  # codec-accept- counts everywhere
    assert options.ignored == ("flags: transcode-opus", "flags: codec-mask-PCMA", "flags: T38-decode")


@pytest.mark.parametrize("command", [Command.OFFER, Command.PUBLISH, Command.SUBSCRIBE_REQUEST])
def test_transcoding_prefixes_in_transcoding_commands(command: Command) -> None:
    assert with_flags("transcode-opus", command=command).codec.transcode == ("opus",)


# ------------------------------------------------------------------------------------- codec


def test_codec_dictionary_merges_with_flags_in_order() -> None:
    options = offer(
        flags=["codec-strip-PCMU"],
        codec={
            "strip": ["all", 5, "G722"],
            "offer": ["PCMA"],
            "except": ["opus", "OPUS"],  # a case-insensitive set in 10.5
            "transcode": ["G729"],
            "mask": ["PCMA"],
            "set": ["AMR/8000/1/7400"],
            "accept": ["any"],
            "consume": ["PCMU"],
            "ignore": ["PCMA"],  # newer versions only
        },
    )
    assert options.codec.strip == ("PCMU", "all", "G722")
    assert options.codec.offer == ("PCMA",)
    assert options.codec.except_ == ("opus",)
    assert options.codec.transcode == ("G729",)
    assert options.codec.mask == ("PCMA",)
    assert options.codec.set == ("AMR/8000/1/7400",)
    assert options.codec.accept == ("any",)
    assert options.codec.consume == ("PCMU",)
    assert options.ignored == ("codec.ignore",)


def test_codec_transcoding_ops_silently_dropped_in_answer() -> None:
    options = answer(codec={"strip": ["PCMA"], "transcode": ["opus"], "mask": ["G722"], "offer": "PCMU"})
    assert options.codec.strip == ("PCMA",)
    assert options.codec.transcode == () and options.codec.mask == ()
    assert options.ignored == ("codec.offer: str",)  # a non-list value is ignored


def test_codec_not_a_dictionary() -> None:
    assert offer(codec=["strip"]).codec.strip == ()
    assert offer(codec=["strip"]).ignored == ("codec: list",)


# --------------------------------------------------------------------------------- list options


def test_replace_values() -> None:
    options = offer(
        replace=[
            "origin",
            "session connection",
            "session-name",
            "SDP version",
            "sdp-version",
            "username",
            "zero address",
            "force-increment-sdp-ver",
            7,
        ]
    )
    assert options.replace == {
        "origin",
        "session-connection",
        "session-name",
        "SDP-version",
        "username",
        "zero-address",
    }
    assert options.ignored == ("replace: force-increment-sdp-ver",)


def test_rtcp_mux_osrtp_sdes_t38_lists() -> None:
    options = offer(
        **{
            "rtcp-mux": ["offer", "require", "demux"],
            "RTCP-mux": ["accept", "reject", "Offer"],
            "SDES": ["off", "UNENCRYPTED_SRTP", "no-F8_128_HMAC_SHA1_80", "lifetime", "static", "bogus"],
            "OSRTP": ["accept", "offer-RFC"],
            "T.38": ["decode", "no ECM", "no-v27ter", "fec", "no-iaf"],
        }
    )
    assert options.rtcp_mux == {"offer", "require", "demux", "accept", "reject"}
    assert options.sdes == {"off", "unencrypted_srtp", "lifetime", "static"}
    assert options.sdes_no == {"F8_128_HMAC_SHA1_80"}
    assert options.osrtp == {"accept"}
    assert options.t38 == {"decode", "no-ECM", "no-V.27ter", "FEC", "no-IAF"}
    assert options.ignored == ("rtcp-mux: Offer", "SDES: bogus", "OSRTP: offer-RFC")


def test_supports_and_from_tags() -> None:
    options = parse_options(
        {
            "command": "subscribe request",
            "call-id": "c",
            "from-tags": ["a", "b--c", 3],
            "supports": ["load limit", "load-limit"],
        },
        Command.SUBSCRIBE_REQUEST,
    )
    assert options.from_tags == ("a", "b=c")
    assert options.supports == {"load limit", "load-limit"}
    assert options.supports_load_limit  # only the exact "load limit" counts in 10.5


# ------------------------------------------------------------------------------ enumerations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("remove", Ice.REMOVE),
        ("force", Ice.FORCE),
        ("default", Ice.DEFAULT),
        ("optional", Ice.OPTIONAL),
        ("force-relay", Ice.FORCE_RELAY),
        ("force_relay", Ice.FORCE_RELAY),
        ("force relay", Ice.FORCE_RELAY),
        ("Force", None),
        ("trickle", None),
        (1, None),
    ],
)
def test_ice(value: Any, expected: Ice | None) -> None:
    assert offer(ICE=value).ice is expected
    assert offer(ice=value).ice is expected


def test_ice_unknown_keeps_the_earlier_value() -> None:
    options = offer(ICE="force", ice="bogus")
    assert options.ice is Ice.FORCE
    assert options.ignored == ("ice: bogus",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", IceLite.OFF),
        ("none", IceLite.OFF),
        ("forward", IceLite.FORWARD),
        ("offer", IceLite.FORWARD),
        ("fw", IceLite.FORWARD),
        ("backward", IceLite.BACKWARD),
        ("reverse", IceLite.BACKWARD),
        ("answer", IceLite.BACKWARD),
        ("both", IceLite.BOTH),
    ],
)
def test_ice_lite(value: str, expected: IceLite) -> None:
    for key in ("ICE-lite", "ice-lite", "ICE lite", "ice lite"):
        assert offer(**{key: value}).ice_lite is expected


def test_transport_protocol() -> None:
    assert offer(**{"transport-protocol": "rtp/savpf"}).transport_protocol == "RTP/SAVPF"
    assert offer(**{"transport protocol": "UDP/TLS/RTP/SAVPF"}).transport_protocol == "UDP/TLS/RTP/SAVPF"
    assert offer(**{"transport-protocol": "UDPTL"}).transport_protocol == "udptl"
    assert answer(**{"transport-protocol": "accept"}).transport_protocol == "accept"
    # an unknown protocol clears an earlier one (10.5 assigns the failed lookup)
    cleared = offer(**{"transport-protocol": "RTP/AVP", "transport protocol": "TCP/RTP"})
    assert cleared.transport_protocol is None
    assert cleared.ignored == ("transport protocol: TCP/RTP",)


def test_addressing_keys() -> None:
    options = offer(
        **{
            "address family": "IP6",
            "media-address": "203.0.113.7",
            "direction": ["internal", "external", "extra"],
            "xmlrpc-callback": "2001:db8::1",
        }
    )
    assert options.address_family == "IP6"
    assert options.media_address == "203.0.113.7"
    assert options.direction == ("internal", "external")
    assert options.xmlrpc_callback == "2001:db8::1"
    assert offer(**{"address-family": "IPv4"}).address_family is None
    assert offer(direction=["a", 5]).direction == ("a", "")
    assert offer(**{"XMLRPC-callback": "not-an-ip"}).xmlrpc_callback is None
    assert offer(**{"received from": ["IP4"]}).received_from is None
    assert offer(**{"received from": "IP4 1.2.3.4"}).received_from is None


def test_dtls_passthrough_echo_drop_traffic_generate_rtcp() -> None:
    options = offer(
        DTLS="off",
        **{
            "DTLS-reverse": "active",
            "DTLS fingerprint": "sha-256",
            "passthru": "yes",
            "media echo": "sinkhole",
            "drop traffic": "start",
            "generate-rtcp": "off",
        },
    )
    assert options.dtls == "off"
    assert options.dtls_reverse == "active"
    assert options.dtls_fingerprint == "sha-256"
    assert options.passthrough_on and not options.passthrough_off
    assert options.media_echo is MediaEcho.BLACKHOLE
    assert options.drop_traffic_start and not options.drop_traffic_stop
    assert options.generate_rtcp is False
    assert offer(**{"generate RTCP": "off", "generate-RTCP": "on"}).generate_rtcp is True
    assert offer(**{"generate RTCP": "on", "generate-RTCP": "off"}).generate_rtcp is True  # "on" wins


@pytest.mark.parametrize(
    ("keys", "flags", "expected"),
    [
        ({"record call": "yes"}, [], True),
        ({"record-call": "on"}, [], True),
        ({"record call": "off"}, [], False),
        ({"record call": "no"}, ["record-call"], True),  # the flag starts recording after the key
        ({"record call": "maybe"}, [], None),
        ({}, ["record call"], True),
        ({}, [], None),
    ],
)
def test_record_call(keys: dict[str, Any], flags: list[str], expected: bool | None) -> None:
    assert offer(**keys, flags=flags).record_call is expected


# ------------------------------------------------------------------------------------ integers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (184, 184),
        ("184", 184),
        (" 184", 184),
        ("+184", 184),
        ("184 ", None),
        ("0x10", None),
        ("", None),
        ([1], None),
    ],
)
def test_integer_keys_accept_numeric_strings(value: Any, expected: int | None) -> None:
    assert offer(TOS=value).tos == expected
    assert offer(tos=value).tos == expected


def test_huge_numeric_strings_saturate() -> None:
    many = "9" * 5000
    assert parse_options({"limit": many}, Command.LIST).limit == 2**63 - 1
    assert parse_options({"limit": "-" + many}, Command.LIST).limit == -(2**63)
    assert parse_options({"call-id": "c", "delete-delay": many + "x"}, Command.DELETE).delete_delay is None
    assert offer(TOS=many).tos == 2**63 - 1


def test_ptime_only_in_offer() -> None:
    assert offer(ptime=20, **{"ptime-reverse": "30"}).ptime == 20
    assert offer(**{"reverse ptime": "30"}).ptime_reverse == 30
    assert offer(ptime="abc").ptime is None
    assert offer(ptime=0).ptime is None
    assert answer(ptime=20, **{"ptime-reverse": 30}).ptime is None
    assert answer(**{"ptime reverse": 30}).ptime_reverse is None


def test_dtmf_and_playback_keys() -> None:
    options = parse_options(
        {
            "command": "block DTMF",
            "call-id": "c",
            "DTMF-security": "random",
            "dtmf security trigger": "dtmf",
            "DTMF security trigger end": "off",
            "trigger": "*1",
            "end trigger": "#",
            "trigger-end-time": "500",
            "end trigger digits": 4,
            "DTMF delay": 20,
            "delay-buffer": "100",
            "frequency": 400,
            "volume": -10,
        },
        Command.BLOCK_DTMF,
    )
    assert options.dtmf_security is DtmfSecurity.RANDOM
    assert options.dtmf_security_trigger is DtmfSecurity.DTMF
    assert options.dtmf_security_trigger_end is DtmfSecurity.OFF
    assert (options.trigger, options.trigger_end) == ("*1", "#")
    assert (options.trigger_end_time, options.trigger_end_digits, options.dtmf_delay) == (500, 4, 20)
    assert (options.delay_buffer, options.frequency, options.volume) == (100, 400, -10)
    check_required(options)
    play = parse_options(
        {
            "command": "play media",
            "call-id": "c",
            "from-tag": "f",
            "file": "/x.wav",
            "repeat-times": "3",
            "db-id": 5,
        },
        Command.PLAY_MEDIA,
    )
    assert (play.file, play.repeat_times, play.db_id) == ("/x.wav", 3, 5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", "5"), ("#", "#"), ("A", "A"), (5, 5), ("12", 12), ("x1", None), ("\u00e9", None)],
)
def test_digit(value: Any, expected: int | str | None) -> None:
    # a one-byte string is a DTMF character, anything else is read as a code
    options = parse_options({"command": "play DTMF", "call-id": "c", "code": value}, Command.PLAY_DTMF)
    assert options.digit == expected


# ---------------------------------------------------------------------------- delete and list


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # observed with 10.5 (immediate deletion for 0, the default otherwise)
        ({"delete-delay": 0}, 0),
        ({"delete-delay": "0"}, 0),
        ({"delete delay": 0}, 0),
        ({"delete delay": "0"}, 0),
        ({"delete-delay": "0x"}, 0),  # the legacy string reading takes the leading number
        ({"delete delay": "0x"}, None),
        ({"delete_delay": 0}, None),  # only in newer versions
        ({"delete-delay": -1, "delete delay": 0}, 0),
        ({"delete-delay": "", "delete delay": 0}, 0),
        ({"delete-delay": 5}, 5),
        ({"delete-delay": -5}, None),
        ({"delete-delay": " 0"}, 0),
        ({"delete-delay": "-1", "delete delay": "0"}, 0),
        ({"delete-delay": 4294967296}, 0),  # a C int
        ({"delete-delay": [0]}, None),
        ({}, None),
    ],
)
def test_delete_delay(keys: dict[str, Any], expected: int | None) -> None:
    options = parse_options({"command": "delete", "call-id": "c", **keys}, Command.DELETE)
    assert options.delete_delay == expected


def test_delete_fatal_flag() -> None:
    fatal = parse_options({"command": "delete", "call-id": "c", "flags": ["fatal", "x"]}, Command.DELETE)
    assert fatal.fatal
    assert fatal.ignored == ("flags: x",)
    # observed: "flags": "fatal" (not a list) gives the warning, not the error
    assert not parse_options({"command": "delete", "call-id": "c", "flags": "fatal"}, Command.DELETE).fatal


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (5, 5),
        ("5", 5),
        ("", DEFAULT_LIST_LIMIT),
        ("2x", DEFAULT_LIST_LIMIT),
        ("0x1", DEFAULT_LIST_LIMIT),
        (0, 0),
    ],
)
def test_list_limit(limit: Any, expected: int) -> None:
    options = parse_options({"command": "list", "limit": limit}, Command.LIST)
    assert options.limit == expected
    check_required(options)


@pytest.mark.parametrize("limit", [-1, "-1", -(2**63)])
def test_negative_list_limit(limit: Any) -> None:
    options = parse_options({"command": "list", "limit": limit}, Command.LIST)
    with pytest.raises(NgError) as info:
        check_required(options)
    assert info.value.reason == errors.INVALID_LIMIT


def test_ping_and_statistics_read_nothing() -> None:
    options = parse_options({"command": "ping", "call-id": "c"}, Command.PING)
    assert options.call_id is None
    assert options.ignored == ("call-id",)
    check_required(options)
    check_required(parse_options({"command": "statistics"}, Command.STATISTICS))


# -------------------------------------------------------------------------------- check_required


@pytest.mark.parametrize(
    ("command", "keys", "reason"),
    [
        # observed order of the checks
        (Command.OFFER, {"call-id": "c", "from-tag": "f"}, errors.NO_SDP),
        (Command.OFFER, {"sdp": SDP, "from-tag": "f"}, errors.NO_CALL_ID),
        (Command.OFFER, {"sdp": SDP, "call-id": "c"}, errors.NO_FROM_TAG),
        (Command.ANSWER, {"sdp": SDP, "call-id": "c", "from-tag": ""}, errors.NO_TO_TAG),
        (Command.PUBLISH, {"call-id": "c"}, errors.NO_SDP),
        (Command.BLOCK_MEDIA, {}, errors.NO_CALL_ID),
        (Command.SUBSCRIBE_ANSWER, {}, errors.NO_CALL_ID),
        (Command.UNSUBSCRIBE, {"to-tag": "t"}, errors.NO_CALL_ID),
        (Command.DELETE, {"call ID": "c"}, errors.NO_CALL_ID),
        (Command.QUERY, {}, errors.NO_CALL_ID),
        (Command.START_RECORDING, {"call ID": "c"}, errors.NO_CALL_ID),
        (Command.PLAY_DTMF, {"from-tag": "f"}, errors.NO_CALL_ID),
    ],
)
def test_check_required(command: Command, keys: dict[str, Any], reason: str) -> None:
    options = parse_options({"command": command.value, **keys}, command)
    with pytest.raises(NgError) as info:
        check_required(options)
    assert info.value.reason == reason


def test_check_required_leaves_later_checks_to_the_handler() -> None:
    # subscribe answer checks its to-tag only after finding the call ("Unknown call-ID" first)
    check_required(parse_options({"command": "subscribe answer", "call-id": "c"}, Command.SUBSCRIBE_ANSWER))
    check_required(parse_options({"command": "block media", "call ID": "c"}, Command.BLOCK_MEDIA))


# ------------------------------------------------------------------------------------ properties

_json_like = st.recursive(
    st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_known_keys = st.sampled_from(
    [
        "call-id",
        "call ID",
        "from-tag",
        "to-tag",
        "sdp",
        "flags",
        "replace",
        "codec",
        "ICE",
        "direction",
        "received-from",
        "TOS",
        "ptime",
        "delete-delay",
        "delete delay",
        "limit",
        "code",
        "SDES",
        "T.38",
        "rtcp-mux",
        "record call",
        "transport-protocol",
        "address family",
        "xmlrpc-callback",
        "DTMF-security",
        "volume",
        "supports",
        "from-tags",
    ]
)


@settings(deadline=None, max_examples=150)
@given(
    st.dictionaries(_known_keys | st.text(max_size=10), _json_like, max_size=8),
    st.sampled_from(list(Command)),
)
def test_any_payload_parses_without_raising(payload: dict[str, Any], command: Command) -> None:
    options = parse_options(payload, command)
    assert options.command is command
    with contextlib.suppress(NgError):
        check_required(options)


@settings(deadline=None)
@given(st.lists(st.text(max_size=30) | st.integers(), max_size=10), st.sampled_from(list(Command)))
def test_any_flags_parse_without_raising(flags: list[Any], command: Command) -> None:
    options = parse_options({"flags": flags}, command)
    assert all(isinstance(flag, str) for flag in options.flags)


# ------------------------------------------------------------------ how the parser builds NgOptions


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (Command.OFFER, {"call-id": "c", "from-tag": "f", "sdp": SDP, "replace": ["origin"], "ICE": "x"}),
        (Command.OFFER, {"codec": {"strip": ["all"], "offer": ["PCMA"]}, "flags": ["trust-address"]}),
        (Command.DELETE, {"call-id": "c", "from-tag": "f", "delete-delay": 0, "flags": ["fatal", "x"]}),
        (Command.LIST, {"limit": 5}),
        (Command.PING, {"x": 1}),
    ],
)
def test_parsed_options_are_what_the_constructor_builds(command: Command, payload: dict[str, Any]) -> None:
    """The parser fills the frozen dataclass's dictionary directly (faster than its constructor): the
    result must be indistinguishable from the constructor's, and nothing of `__init__` may be skipped."""
    parsed = parse_options({"command": command.value, **payload}, command)
    built = NgOptions(**{item.name: getattr(parsed, item.name) for item in fields(NgOptions)})
    assert parsed == built and hash(parsed) == hash(built) and repr(parsed) == repr(built)
    assert vars(parsed) == vars(built)
    assert not hasattr(NgOptions, "__post_init__")  # `_new_options` would skip it
    # and its defaults are the dataclass's
    assert vars(parse_options({"command": "ping"}, Command.PING)) == vars(NgOptions(command=Command.PING))
    with pytest.raises(FrozenInstanceError):
        parsed.call_id = "other"  # type: ignore[misc]
