"""`karl`: run one media node with in-memory state (the single-node default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

from karl_core import __version__
from karl_core.config import ConfigError, KarlConfig, load_config
from karl_core.logs import setup_logging
from karl_medianode.app import run_node
from karl_medianode.dtls.certificate import CertificateError, load_certificate
from karl_medianode.engine import EngineSettings, JitterBufferSettings
from karl_medianode.node import NodeSettings

log = logging.getLogger("karl")


def primary_address() -> str:
    """The address the host would use towards the outside world (routing table; no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only consults the routing table
        address = str(probe.getsockname()[0])
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    return address


def node_settings(cfg: KarlConfig) -> NodeSettings:
    media_ip = cfg.media.ip or primary_address()
    advertised = cfg.media.advertised_ip(media_ip)
    max_sessions = cfg.sessions.max_sessions if cfg.sessions.max_sessions >= 0 else 2**31
    return NodeSettings(
        ng_address=cfg.ng_protocol.address,
        ng_port=cfg.ng_protocol.udp_port,
        media_ip=media_ip,
        advertised_ip=advertised,
        port_min=cfg.sessions.min_port,
        port_max=cfg.sessions.max_port,
        engine=EngineSettings(
            advertised_ip=advertised,
            media_ip=media_ip,
            max_sessions=max_sessions,
            max_media=cfg.sessions.max_media,
            loop_marker=cfg.node.loop_marker(),
            delete_delay=float(cfg.timers.delete_delay),
            timeout=float(cfg.timers.timeout),
            silent_timeout=float(cfg.timers.silent_timeout),
            final_timeout=float(cfg.timers.final_timeout),
            offer_timeout=float(cfg.timers.offer_timeout),
            jitter_buffer=JitterBufferSettings(
                cfg.jitter_buffer.min_delay / 1000,
                cfg.jitter_buffer.max_delay / 1000,
                cfg.jitter_buffer.adaptive_mode,
            )
            if cfg.jitter_buffer.enabled
            else None,
            dtls_certificate=load_certificate(
                cfg.webrtc.dtls_certificate, cfg.webrtc.dtls_private_key, cfg.state.dir
            ),
        ),
        shutdown_grace=float(cfg.node.shutdown_grace),
        config=cfg,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="karl",
        description="Karl media node: an RTP proxy speaking rtpengine's NG protocol. "
        "Configured by a JSON file (KARL_CONFIG_PATH) and KARL_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"karl {__version__}")
    parser.parse_args(argv)
    try:
        cfg = load_config()
    except ConfigError as exc:
        print(f"karl: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level, cfg.log.format)
    for section in cfg.unimplemented_sections():
        log.warning(
            "configuration section %r is accepted but not implemented yet",
            section,
            extra={"event": "config_unimplemented"},
        )
    try:
        settings = node_settings(cfg)
    except (OSError, CertificateError) as exc:
        print(f"karl: cannot use the DTLS certificate: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency; keep a clear message
        print("karl: uvloop is required for the media relay (pip install uvloop)", file=sys.stderr)
        return 2
    return uvloop.run(run_node(settings)) if hasattr(uvloop, "run") else asyncio.run(run_node(settings))
