"""`loop-protect` across a fleet: the marker comes from the cluster id, so an SDP one node wrote comes
back untouched from another node of the same fleet, and is rewritten by a node of another fleet."""

from __future__ import annotations

from collections.abc import Callable

from karl_testkit import NgServer, Party, sdp


def test_nodes_of_one_fleet_recognise_each_others_loop_protect_marker(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    first = karl_factory(KARL_CLUSTER_ID="fleet-a", KARL_NODE_ID="a-0")
    second = karl_factory(media_ip="127.0.0.3", KARL_CLUSTER_ID="fleet-a", KARL_NODE_ID="a-1")
    elsewhere = karl_factory(media_ip="127.0.0.4", KARL_CLUSTER_ID="fleet-b", KARL_NODE_ID="b-0")
    a = parties()

    def offer(node: NgServer, call_id: str, body: str) -> str:
        reply = node.ng.request(
            {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": body, "flags": ["loop-protect"]}
        )
        assert reply["result"] == "ok", reply
        return str(reply["sdp"])

    marked = offer(first, "spiral", sdp(a.port))
    assert sum(line.startswith("a=rtpengine:") for line in marked.split("\r\n")) == 1
    assert offer(second, "spiral", marked) == marked  # the spiral came back to the same fleet
    through = offer(elsewhere, "spiral", marked)
    assert through != marked and "c=IN IP4 127.0.0.4" in through
