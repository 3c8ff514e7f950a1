"""Entry point of `karl-operator`. `karl-operator run` runs the Kubernetes operator (kopf, KarlClusters:
docs/kubernetes.md); `karl-operator failover` runs the failover controller on its own (docs/clustering.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys

from karl_core import __version__
from karl_core.config import ConfigError, load_config
from karl_core.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="karl-operator",
        description="Karl's operator. Configured by KARL_* environment variables (docs/clustering.md).",
    )
    parser.add_argument("--version", action="version", version=f"karl-operator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the Kubernetes operator: reconcile KarlClusters into media nodes, routers and the rest "
        "(in a pod: its ServiceAccount; elsewhere: KUBECONFIG)",
    )
    run.add_argument(
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable; default: every namespace)",
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas: they meet in kopf's peering object NAME (a "
        "ClusterKopfPeering, or with --namespace a KopfPeering in each namespace), one works and the "
        "others wait to take over; default: standalone (one replica)",
    )
    run.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="with --peering: this replica's priority (the highest works; default: a random one, so "
        "that no two replicas share one, which would pause them all)",
    )
    commands.add_parser(
        "failover",
        help="run the failover controller: move the calls of dead media nodes to the others "
        "(KARL_REDIS_*, KARL_FAILOVER_RESTART_GRACE, KARL_NODE_ID names this controller)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_operator(args.namespace, args.peering, args.priority)
    if args.command != "failover":
        print(
            "karl-operator: give a command: `run` (the Kubernetes operator) or `failover` "
            "(the failover controller on its own)",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = load_config(role="controller")
    except ConfigError as exc:
        print(f"karl-operator: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not (cfg.database.redis_addr or cfg.database.redis_sentinels):
        print("karl-operator: set KARL_REDIS_ADDR (or KARL_REDIS_SENTINELS)", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level, cfg.log.format)
    from karl_operator.failover.service import run_failover

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run_failover(cfg))
    return uvloop.run(run_failover(cfg))


def run_operator(
    namespaces: list[str] | None, peering: str | None = None, priority: int | None = None
) -> int:
    """kopf's own loop, with the handlers of `karl_operator.reconciler`: standalone, or one of several
    replicas peering through `peering`."""
    import kopf

    import karl_operator.fleet_loop
    import karl_operator.reconciler  # (registers the handlers)

    kopf.configure(verbose=False)  # kopf's log: handlers run, retried, failed (stderr)
    scope = karl_operator.fleet_loop.Scope(namespaces=tuple(namespaces or ()), peering=peering)
    if peering:
        # kopf pauses every replica when two share a priority: each takes its own at random, and the
        # highest works (a replica that stops removes itself; one that dies lapses after 60 s)
        scope.priority = priority if priority is not None else secrets.randbelow(2**31 - 2) + 1
        logging.getLogger("karl.operator").info(
            "peering in %s as %s with priority %d", peering, scope.identity, scope.priority
        )
    # the operator's own periodic work (status, resync, failover) follows the same peering
    karl_operator.fleet_loop.scope = scope
    kopf.run(
        standalone=peering is None,
        peering_name=peering,
        priority=scope.priority,
        identity=scope.identity,  # type: ignore[arg-type]  # (kopf's Identity is a NewType of str)
        namespaces=namespaces or [],
        clusterwide=not namespaces,
    )
    return 0
