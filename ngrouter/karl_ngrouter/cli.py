"""Entry point of `karl-router`: the NG address Kamailio/OpenSIPS point at, in front of a fleet of
media nodes (docs/clustering.md). Configured like a node: KARL_NG_ADDRESS/KARL_NG_PORT, KARL_REDIS_*,
KARL_HEALTH_PORT, KARL_METRICS_PORT, KARL_NODE_ID (the router's own name), KARL_LOG_*, KARL_NG_ALLOW."""

from __future__ import annotations

import argparse
import asyncio
import sys

from karl_core import __version__
from karl_core.config import ConfigError, load_config
from karl_core.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="karl-router",
        description="Karl NG router: places calls on the media nodes of a fleet (state in Redis). "
        "Configured by KARL_* environment variables (docs/clustering.md).",
    )
    parser.add_argument("--version", action="version", version=f"karl-router {__version__}")
    parser.parse_args(argv)
    try:
        cfg = load_config(role="router")
    except ConfigError as exc:
        print(f"karl-router: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not (cfg.database.redis_addr or cfg.database.redis_sentinels):
        print(
            "karl-router: set KARL_REDIS_ADDR (or KARL_REDIS_SENTINELS): the fleet is read from Redis",
            file=sys.stderr,
        )
        return 2
    setup_logging(cfg.log.level, cfg.log.format)
    from karl_ngrouter.app import run_router

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run_router(cfg))
    return uvloop.run(run_router(cfg))
