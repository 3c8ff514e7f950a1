"""The media node's HTTP side: REST API (`/api/v1`), health probes and Prometheus `/metrics`.

Wiring (see docs/api.md): `node.http = await start_http(node)` after `node.start()`, and
`await node.http.stop()` on shutdown.
"""

from karl_medianode.operations.http.server import HttpServers, start_http

__all__ = ["HttpServers", "start_http"]
