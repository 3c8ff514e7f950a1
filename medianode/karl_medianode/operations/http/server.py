"""Starting and stopping the three HTTP servers of a media node: REST API, health probes, metrics."""

from __future__ import annotations

import errno
import importlib
import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from karl_core.runtime import StartupError
from karl_medianode.node import MediaNode
from karl_medianode.operations.http.api import build_api_app
from karl_medianode.operations.http.auth import ApiKeyError, ApiKeys, load_api_keys
from karl_medianode.operations.http.health import build_health_app
from karl_medianode.operations.http.tls import server_context

log = logging.getLogger("karl.http")

METRICS_MODULE = "karl_medianode.operations.metrics"
#: Seconds open connections get to finish when the servers stop.
SHUTDOWN_TIMEOUT = 2.0
#: Notices about malformed HTTP from clients: at most this many per interval.
CLIENT_ERROR_BURST = 5
CLIENT_ERROR_INTERVAL = 10.0


class ClientErrorFilter(logging.Filter):
    """aiohttp reports a malformed request (bad header, bad request line) with a traceback at ERROR.
    That is the client's doing, and a client sending many must not flood the log: keep a one-line
    warning, at most CLIENT_ERROR_BURST per CLIENT_ERROR_INTERVAL. Other errors pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._window_end = 0.0
        self._count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now >= self._window_end:
            self._window_end, self._count = now + CLIENT_ERROR_INTERVAL, 0
        self._count += 1
        if self._count > CLIENT_ERROR_BURST:
            return False
        record.msg = "malformed HTTP request from a client: %s"
        record.args = (str(exc.message).splitlines()[0][:200] if exc.message else exc.code,)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


protocol_log = logging.getLogger("karl.http.protocol")
protocol_log.addFilter(ClientErrorFilter())


@dataclass
class HttpServers:
    """The running servers; `addresses` holds what each one actually bound (port 0 = picked by the OS)."""

    tls: bool = False
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)

    def url(self, name: str) -> str:
        """Base URL of a server ("api", "health" or "metrics"), e.g. http://127.0.0.1:8080."""
        host, port = self.addresses[name]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    async def stop(self) -> None:
        """Close the listening sockets and the open connections. Stopping twice is harmless."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            try:
                await runner.cleanup()
            except Exception:
                log.exception("stopping an HTTP server failed")
        self.addresses.clear()

    @staticmethod
    async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
        # aiohttp would announce the Python and aiohttp versions to anyone who asks.
        response.headers["Server"] = "karl"

    async def _serve(
        self,
        name: str,
        app: web.Application,
        address: str,
        port: int,
        variable: str,
        context: ssl.SSLContext | None,
    ) -> None:
        app.on_response_prepare.append(self._plain_server_header)
        # access_log=None: the REST layer counts requests itself and never logs headers (keys).
        runner = web.AppRunner(app, access_log=None, logger=protocol_log, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, address, port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            what = {"api": "REST API", "health": "health", "metrics": "metrics"}[name]
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"{what} port {port} on {address} is already in use; choose another with {variable}"
                ) from None
            raise StartupError(
                f"cannot listen on {what} port {port} on {address} ({variable}): {exc.strerror or exc}"
            ) from None
        bound = runner.addresses[-1]
        self.addresses[name] = (str(bound[0]), int(bound[1]))


async def metrics(request: web.Request) -> web.Response:
    node = request.app[_NODE]
    try:
        module = importlib.import_module(METRICS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != METRICS_MODULE:
            raise
        text = f"metrics are not available: {METRICS_MODULE} is not installed\n"
        return web.Response(status=503, text=text)
    try:
        body, content_type = module.render_metrics(node)
    except Exception:
        log.exception("rendering /metrics failed", extra={"event": "metrics_failed"})
        return web.Response(status=500, text="rendering the metrics failed (see the node's log)\n")
    return web.Response(body=body, headers={"Content-Type": content_type})


_NODE = web.AppKey("node", MediaNode)


def build_metrics_app(node: MediaNode) -> web.Application:
    app = web.Application(client_max_size=1024)
    app[_NODE] = node
    app.router.add_get("/metrics", metrics)
    return app


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _announce(node: MediaNode, keys: ApiKeys, servers: HttpServers) -> None:
    cfg = node.config
    api_address = cfg.api.address
    if cfg.api.enabled and not keys.enabled:
        if _is_loopback(api_address):
            log.info(
                "REST API without API keys on a loopback address: open to local processes",
                extra={"event": "api_open"},
            )
        else:
            log.warning(
                "REST API on %s has no API keys: anyone who can reach it can end calls and drain the "
                "node. Set KARL_API_KEYS or KARL_API_KEYS_FILE (see docs/security.md)",
                api_address,
                extra={"event": "api_open"},
            )
    if keys.enabled:
        for origin in keys.weak_entries():
            log.warning(
                "API key of %s is short and can be guessed; use at least 24 random characters",
                origin,
                extra={"event": "api_key_weak"},
            )
        if not servers.tls and cfg.api.enabled and not _is_loopback(api_address):
            log.warning(
                "API keys travel unencrypted: set KARL_TLS_CERT and KARL_TLS_KEY for HTTPS",
                extra={"event": "api_without_tls"},
            )
    log.info(
        "HTTP servers started",
        extra={
            "event": "http_started",
            "tls": servers.tls,
            "api_keys": len(keys.entries),  # how many, never which
            **{name: f"{host}:{port}" for name, (host, port) in servers.addresses.items()},
        },
    )


async def start_http(node: MediaNode) -> HttpServers:
    """Start the REST API (unless `api.enabled` is false), the health probes and /metrics.

    API keys (`security.api_keys` and `security.api_keys_file`) switch authentication on; without any
    the API is open, unless `api.auth_enabled` asks for keys, which then refuses to start.
    Raises StartupError (naming the port and its KARL_* variable, or the key/TLS file) when a server
    cannot start; nothing is left listening then."""
    cfg = node.config
    try:
        keys = load_api_keys(cfg.security)
    except ApiKeyError as exc:
        raise StartupError(str(exc)) from None
    if cfg.api.enabled and cfg.api.auth_enabled and not keys.enabled:
        # The operator asked for authentication: fail closed rather than serve an open API.
        raise StartupError(
            "api.auth_enabled is true but no API key is configured: set KARL_API_KEYS or KARL_API_KEYS_FILE"
        )
    context = server_context(cfg.security)
    servers = HttpServers(tls=context is not None)
    try:
        if cfg.api.enabled:
            app = build_api_app(node, keys)
            await servers._serve("api", app, cfg.api.address, cfg.api.port, "KARL_API_PORT", context)
        health = build_health_app(node)
        await servers._serve(
            "health", health, cfg.health.address, cfg.health.port, "KARL_HEALTH_PORT", context
        )
        metrics_app = build_metrics_app(node)
        await servers._serve(
            "metrics", metrics_app, cfg.metrics.address, cfg.metrics.port, "KARL_METRICS_PORT", context
        )
    except BaseException:
        await servers.stop()
        raise
    _announce(node, keys, servers)
    return servers
