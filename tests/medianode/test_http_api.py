"""The REST API against a running node: real calls over NG and RTP, real HTTP requests (open API, no keys;
keys and limits are in test_http_security.py)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from tests.medianode.test_http_support import (
    NgSource,
    NodeThread,
    get,
    http,
    ng_address,
    offer,
    relay_rtp,
    rtp_packet,
    running_node,
    setup_call,
    udp_party,
)

from karl_medianode.operations.http.openapi import openapi_document
from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
)
from karl_testkit import wait_for

JSON = "application/json; charset=utf-8"


@pytest.fixture(scope="module")
def runner() -> Iterator[NodeThread]:
    with running_node(media_ip="127.0.0.2", ports=40, KARL_API_RATE_LIMIT="0") as node:
        yield node


@pytest.fixture
def ng(runner: NodeThread) -> Iterator[NgSource]:
    client = NgSource(ng_address(runner))
    yield client
    client.close()


def api(runner: NodeThread, path: str) -> str:
    return runner.url("api", path)


def delete_all(runner: NodeThread) -> None:
    for call_id in runner.run(lambda: list(runner.node.engine.calls)):  # type: ignore[union-attr]
        assert http("DELETE", api(runner, f"/api/v1/sessions/{quote(call_id, safe='')}")).status == 200


def test_sessions_list_detail_and_delete_of_a_call_with_media(runner: NodeThread, ng: NgSource) -> None:
    call = setup_call(ng, "api-call-1@example.org")
    try:
        relay_rtp(call, runner.node.settings.media_ip, count=10)
        listing = get(api(runner, "/api/v1/sessions"))
        assert listing.status == 200 and listing.headers["Content-Type"] == JSON
        assert listing.headers["Server"] == "karl"  # no versions given away
        page = listing.json()
        assert page["total"] == 1 and page["limit"] == 100 and page["offset"] == 0
        assert page["next_cursor"] is None
        (summary,) = page["sessions"]
        assert summary["call_id"] == "api-call-1@example.org" and summary["state"] == "answered"
        assert summary["tags"] == ["tagA", "tagB"] and summary["medias"] == 2 and summary["streams"] == 4
        assert summary["packets"] == 20 and summary["age_seconds"] >= 0

        detail = get(api(runner, "/api/v1/sessions/" + quote("api-call-1@example.org"))).json()
        assert detail["call_id"] == "api-call-1@example.org" and detail["state"] == "answered"
        offerer, answerer = detail["parties"]
        assert (offerer["tag"], offerer["role"], offerer["partner_tag"]) == ("tagA", "offerer", "tagB")
        assert (answerer["tag"], answerer["role"]) == ("tagB", "answerer")
        media = offerer["medias"][0]
        assert media["type"] == "audio" and media["protocol"] == "RTP/AVP"
        assert media["direction"] == "sendrecv" and media["sdp_address"] == "127.0.0.1"
        assert [c["name"] for c in media["codecs"]] == ["PCMU", "PCMA", "telephone-event"]
        assert media["codecs"][0] == {
            "payload_type": 0,
            "name": "PCMU",
            "clock_rate": 8000,
            "channels": None,
            "fmtp": None,
        }
        rtp = next(s for s in media["streams"] if s["kind"] == "rtp")
        # A's RTP arrived on this stream, from A's real address
        assert rtp["local_port"] == call.to_a_side and rtp["packets"] == 10 and rtp["bytes"] == 10 * 172
        assert rtp["learned"] == {"address": "127.0.0.1", "port": call.a.getsockname()[1]}
        assert rtp["advertised"] == {"address": "127.0.0.1", "port": call.a.getsockname()[1]}
        assert rtp["last_packet"] > 0 and rtp["dropped"]["no_destination"] == 0
        assert detail["totals"]["rtp"]["packets"] == 20 and detail["totals"]["dropped"] == 0
        assert detail["quality"]["available"] is False and detail["quality"]["mos"] is None

        deleted = http("DELETE", api(runner, "/api/v1/sessions/" + quote("api-call-1@example.org")))
        assert deleted.status == 200
        assert deleted.json() == {"call_id": "api-call-1@example.org", "state": "deleted"}
        # the call is gone at once (delete-delay 0), its ports are free and its media stops
        assert runner.run(lambda: runner.node.ports.in_use) == 0
        for path_method in ("GET", "DELETE"):
            gone = http(path_method, api(runner, "/api/v1/sessions/" + quote("api-call-1@example.org")))
            assert gone.status == 404 and gone.error["code"] == "not_found"
            assert "api-call-1@example.org" in gone.error["message"]
        call.a.sendto(b"\x80" * 20, (runner.node.settings.media_ip, call.to_a_side))
        call.b.settimeout(0.3)
        with pytest.raises(TimeoutError):
            call.b.recv(2048)
        assert ng.request({"command": "query", "call-id": "api-call-1@example.org"})["result"] == "error"
    finally:
        call.close()


def test_sessions_filters_and_paging(runner: NodeThread, ng: NgSource) -> None:
    calls = [setup_call(ng, f"page-{i}") for i in range(3)]
    lonely = udp_party()
    try:
        assert offer(ng, "page-offered", lonely)["result"] == "ok"

        def ids(query: str) -> list[str]:
            reply = get(api(runner, "/api/v1/sessions" + query))
            assert reply.status == 200, reply.body
            return [s["call_id"] for s in reply.json()["sessions"]]

        assert ids("") == ["page-0", "page-1", "page-2", "page-offered"]
        assert ids("?state=offered") == ["page-offered"]
        assert ids("?state=answered") == ["page-0", "page-1", "page-2"]
        assert ids("?state=deleting") == []
        assert ids("?address=127.0.0.1") == ["page-0", "page-1", "page-2", "page-offered"]
        assert ids("?address=::ffff:7f00:2") == []
        assert ids("?address=10.9.9.9") == []
        assert ids("?min_age=3600") == [] and ids("?max_age=3600")[0] == "page-0"
        assert ids("?min_age=0&max_age=1e4&state=answered&limit=2") == ["page-0", "page-1"]
        first = get(api(runner, "/api/v1/sessions?limit=2")).json()
        assert first["total"] == 4 and first["next_cursor"] == "page-1"
        second = get(api(runner, f"/api/v1/sessions?limit=2&cursor={first['next_cursor']}")).json()
        assert [s["call_id"] for s in second["sessions"]] == ["page-2", "page-offered"]
        assert second["next_cursor"] is None and second["total"] == 4
        assert ids("?offset=3") == ["page-offered"] and ids("?offset=10") == []
    finally:
        delete_all(runner)
        for call in calls:
            call.close()
        lonely.close()


def test_stats_count_sessions_packets_and_ports(runner: NodeThread, ng: NgSource) -> None:
    before = get(api(runner, "/api/v1/stats")).json()
    call = setup_call(ng, "stats-call")
    try:
        relay_rtp(call, runner.node.settings.media_ip, count=5)
        stats = get(api(runner, "/api/v1/stats")).json()
        assert stats["active_sessions"] == 1
        assert stats["total_sessions"] == before["total_sessions"] + 1
        assert stats["packets_processed"] >= before["packets_processed"] + 10
        assert stats["packets_dropped"] >= 0 and stats["uptime_seconds"] > 0
        assert stats["ports"]["in_use"] == 4 and stats["ports"]["capacity"] == 40
        assert stats["ports"]["free"] == 36
        assert stats["ng"]["commands"]["offer"] >= 1 and stats["ng"]["commands"]["answer"] >= 1
        assert stats["draining"] is False and stats["accepting_calls"] is True
        assert stats["sessions"]["active"] == 1
    finally:
        delete_all(runner)
        call.close()
    after = get(api(runner, "/api/v1/stats")).json()
    assert after["active_sessions"] == 0 and after["ports"]["in_use"] == 0


def test_drain_stops_new_calls_and_undrain_resumes(runner: NodeThread, ng: NgSource) -> None:
    call = setup_call(ng, "drain-existing")
    newcomer = udp_party()
    try:
        drained = http("POST", api(runner, "/api/v1/admin/drain"), json_body={"reason": "maintenance"})
        assert drained.status == 200 and drained.headers["Content-Type"] == JSON
        assert drained.json() == {"draining": True, "accepting_calls": False, "active_sessions": 1}
        refused = offer(ng, "drain-new", newcomer)
        assert refused["result"] == "error"
        relay_rtp(call, runner.node.settings.media_ip, count=3)  # the call in progress keeps relaying
        assert get(runner.url("health", "/ready")).status == 503
        undrained = http("POST", api(runner, "/api/v1/admin/undrain"))
        assert undrained.json() == {"draining": False, "accepting_calls": True, "active_sessions": 1}
        assert offer(ng, "drain-new", newcomer)["result"] == "ok"
    finally:
        http("POST", api(runner, "/api/v1/admin/undrain"))
        delete_all(runner)
        call.close()
        newcomer.close()


def test_bad_requests_get_json_errors_naming_the_problem(runner: NodeThread) -> None:
    for query, named in (
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=abc", "limit"),
        ("?offset=-1", "offset"),
        ("?state=ringing", "state"),
        ("?min_age=-5", "min_age"),
        ("?max_age=nan", "max_age"),
        ("?address=example.org", "address"),
        ("?limit=1&limit=2", "limit"),
        ("?colour=blue", "colour"),
    ):
        reply = get(api(runner, "/api/v1/sessions" + query))
        assert reply.status == 400, (query, reply.body)
        assert reply.headers["Content-Type"] == JSON
        assert reply.error["code"] == "bad_request" and f"'{named}'" in reply.error["message"], reply.error
    assert get(api(runner, "/api/v1/stats?verbose=1")).status == 400

    drain = api(runner, "/api/v1/admin/drain")
    headers = {"Content-Type": "application/json"}
    for body, expected in (
        (b'{"reason": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"reason": 5}', "'reason'"),
        (b'{"force": true}', "'force'"),
        (b'{"reason": NaN}', "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
    ):
        reply = http("POST", drain, body=body, headers=headers)
        assert reply.status == 400 and expected in reply.error["message"], (body, reply.body)
    reply = http("POST", drain, body=b"reason=x", headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and reply.error["code"] == "unsupported_media_type"
    assert runner.node.draining is False  # none of these drained the node


def test_oversized_bodies_are_refused_with_413(runner: NodeThread) -> None:
    big = b'{"reason": "' + b"x" * (70 * 1024) + b'"}'
    reply = http(
        "POST", api(runner, "/api/v1/admin/drain"), body=big, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 413 and reply.error["code"] == "payload_too_large"

    async def chunks() -> Iterator[bytes]:  # type: ignore[misc]
        for _ in range(80):
            yield b"x" * 1024

    chunked = http(
        "POST",
        api(runner, "/api/v1/admin/drain"),
        body=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status == 413 and chunked.error["code"] == "payload_too_large"
    assert runner.node.draining is False


def test_unknown_paths_and_methods(runner: NodeThread) -> None:
    missing = get(api(runner, "/api/v1/nothing-here"))
    assert missing.status == 404 and missing.headers["Content-Type"] == JSON
    assert missing.error["code"] == "not_found"
    wrong = http("PUT", api(runner, "/api/v1/stats"))
    assert wrong.status == 405 and wrong.error["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET"
    assert http("GET", api(runner, "/api/v1/admin/drain")).status == 405  # changing state needs POST
    assert runner.node.draining is False


def test_call_ids_with_reserved_characters(runner: NodeThread, ng: NgSource) -> None:
    odd = "a b/c%d?e#f@host;x=1"
    call = setup_call(ng, odd)
    try:
        detail = get(api(runner, "/api/v1/sessions/" + quote(odd, safe="")))
        assert detail.status == 200 and detail.json()["call_id"] == odd
        assert http("DELETE", api(runner, "/api/v1/sessions/" + quote(odd, safe=""))).status == 200
        assert runner.run(lambda: odd not in runner.node.engine.calls)  # type: ignore[union-attr]
    finally:
        delete_all(runner)
        call.close()


def test_openapi_document_is_served_and_matches_the_routes(runner: NodeThread) -> None:
    reply = get(api(runner, "/api/v1/openapi.json"))
    assert reply.status == 200 and reply.headers["Content-Type"] == JSON
    document = reply.json()
    assert document == openapi_document(auth_enabled=False)  # no keys configured on this node
    assert "security" not in document
    served = {
        (route.method, route.resource.canonical)
        for route in runner.node.http._runners[0].app.router.routes()  # type: ignore[union-attr]
        if route.resource is not None
    }
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "delete", "put", "patch")
    }
    assert served == documented


def test_api_requests_are_counted_by_route_method_and_status(runner: NodeThread) -> None:
    get(api(runner, "/api/v1/stats"))
    get(api(runner, "/api/v1/sessions/no-such-call"))
    get(api(runner, "/api/v1/x/" + "y" * 50))
    counts = runner.run(lambda: dict(runner.node.admission.api_requests))
    assert counts[("/api/v1/stats", "GET", 200)] >= 1
    assert counts[("/api/v1/sessions/{call_id}", "GET", 404)] >= 1
    assert counts[("unmatched", "GET", 404)] >= 1
    assert not any("no-such-call" in key[0] or "yyy" in key[0] for key in counts)  # bounded labels


def test_servers_stop_listening_when_stopped() -> None:
    with running_node(media_ip="127.0.0.2", ports=4) as node:
        urls = [node.url(name) for name in ("api", "health", "metrics")]
        assert get(urls[0] + "/api/v1/stats").status == 200
    for url in urls:
        with pytest.raises(OSError):
            get(url + "/", timeout=2)


def test_session_quality_from_rtcp_reports_and_rtp_sequence_loss(runner: NodeThread, ng: NgSource) -> None:
    """Both parties send sender reports and report on each other's media: the session's quality shows
    what each said (MOS once both legs' round trip is known), and RTP sequence gaps show as `lost`."""
    media_ip = runner.node.settings.media_ip
    call = setup_call(ng, "api-quality@example.org")
    try:
        # A's sequence misses 3 and 4: two packets lost on the way to Karl
        for seq in (0, 1, 2, 5, 6, 7):
            call.a.sendto(rtp_packet(seq), (media_ip, call.to_a_side))
        for seq in range(6):
            call.b.sendto(rtp_packet(seq, ssrc=0x9999, pt=8), (media_ip, call.to_b_side))
        for _ in range(6):
            call.a.recv(2048)
            call.b.recv(2048)
        sr_a = SenderReport(0x1234, 3_900_000_000, 1 << 30, 0, 6, 960, ())
        sr_b = SenderReport(0x9999, 3_900_000_000, 1 << 31, 0, 6, 960, ())
        call.a.sendto(build_sender_report(sr_a), (media_ip, call.to_a_side + 1))
        call.b.sendto(build_sender_report(sr_b), (media_ip, call.to_b_side + 1))

        def reports() -> int:
            detail = get(api(runner, "/api/v1/sessions/" + quote("api-quality@example.org"))).json()
            return int(detail["quality"]["rtcp_reports"])

        wait_for(lambda: reports() == 2)
        # A: 0 lost, jitter 40 units of PCMA (5 ms); B: 26/256 lost, 4 in all, jitter 160 units of PCMU
        block_a = ReportBlock(0x9999, 0, 0, 5, 40, sr_b.ntp_middle, 1)
        rr_a = build_receiver_report(ReceiverReport(0x1234, (block_a,)))
        call.a.sendto(rr_a, (media_ip, call.to_a_side + 1))
        wait_for(lambda: reports() == 3)
        block_b = ReportBlock(0x1234, 26, 4, 7, 160, sr_a.ntp_middle, 1)
        rr_b = build_receiver_report(ReceiverReport(0x9999, (block_b,)))
        call.b.sendto(rr_b, (media_ip, call.to_b_side + 1))
        wait_for(lambda: reports() == 4)

        detail = get(api(runner, "/api/v1/sessions/" + quote("api-quality@example.org"))).json()
        quality = detail["quality"]
        assert quality["available"] is True and quality["lost"] == 2
        by_party = {source["party"]: source for source in quality["sources"]}
        assert set(by_party) == {"tagA", "tagB"}
        a, b = by_party["tagA"], by_party["tagB"]
        assert (a["ssrc"], a["about_ssrc"], b["ssrc"], b["about_ssrc"]) == (0x1234, 0x9999, 0x9999, 0x1234)
        assert a["mos"] is None and a["mos_samples"] == 0  # B's leg was not measured when A reported
        assert a["packet_loss_ratio"] == 0 and a["jitter_seconds"] == 0.005
        assert b["packet_loss_ratio"] == 26 / 256 and b["cumulative_lost"] == 4
        assert b["jitter_seconds"] == 0.02
        assert 0 < a["rtt_leg_seconds"] < 1 and 0 < b["rtt_leg_seconds"] < 1
        assert b["rtt_seconds"] == pytest.approx(a["rtt_leg_seconds"] + b["rtt_leg_seconds"], abs=2e-6)
        # loopback delays, 20 ms jitter, 10 % loss: R = 93.2 - (rtt + 50 ms)/40 - 25 -> MOS 3.4
        assert b["mos"] == b["mos_min"] == b["mos_max"] == 3.4 and b["mos_samples"] == 1
        assert quality["mos"] == 3.4 and quality["packet_loss_ratio"] == 26 / 256
        assert quality["jitter_seconds"] == 0.02 and quality["rtt_seconds"] == b["rtt_seconds"]
        streams = [s for party in detail["parties"] for m in party["medias"] for s in m["streams"]]
        assert sorted(s["lost"] for s in streams if s["kind"] == "rtp") == [0, 2]

        # the NG query reply carries the same statistics in rtpengine's layout
        ssrc = ng.request({"command": "query", "call-id": "api-quality@example.org"})["SSRC"]
        assert list(ssrc) == [str(0x9999)]
        assert ssrc[str(0x9999)]["average MOS"]["MOS"] == 34 and ssrc[str(0x9999)]["cumulative loss"] == 4
    finally:
        call.close()
        delete_all(runner)
