"""The exported metric families, docs/metrics.md, the alert rules and the Grafana dashboard agree.

A media node's families are checked here; the NG router's (`karl-router`, its own section of
docs/metrics.md) in tests/fleet/test_router_metrics_docs.py. The rules and the dashboard cover both."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from karl_core.config import KarlConfig
from karl_core.ng.node_link import NodeLink
from karl_core.ng.server import NgProtocol
from karl_core.state.fleet_state import FleetState
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_medianode.engine import EngineSettings
from karl_medianode.node import MediaNode, NodeSettings
from karl_medianode.operations.metrics import KarlCollector, render_metrics
from karl_ngrouter.app import RouterApp
from karl_ngrouter.fleet_view import FleetView
from karl_ngrouter.metrics import RouterCollector
from karl_ngrouter.router import Router
from karl_operator.failover.controller import FailoverController
from karl_operator.failover.metrics import FailoverCollector
from karl_testkit import ROOT

DOCS = ROOT / "docs" / "metrics.md"
RULES = ROOT / "deploy" / "prometheus" / "karl-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "karl-dashboard.json"
ROUTER_HEADING = "## NG router (`karl-router`)"
FAILOVER_HEADING = "## Failover controller (`karl-operator failover`)"

# Written by Prometheus itself for every scrape target; the only way to see a node it cannot scrape.
PROMETHEUS_SERIES = {"up"}

PROMISED = {
    "karl_sessions_active": "gauge",
    "karl_sessions_total": "counter",
    "karl_session_duration_seconds": "histogram",
    "karl_rtcp_rtt_seconds": "histogram",
    "karl_rtcp_jitter_seconds": "histogram",
    "karl_rtcp_packet_loss_ratio": "histogram",
    "karl_fec_recoveries_total": "counter",
    "karl_jitter_buffer_latency": "histogram",
    "karl_ng_commands_total": "counter",
    "karl_ng_command_duration": "histogram",
    "karl_ng_active_calls": "gauge",
}
NOT_BUILT_YET = {"karl_fec_recoveries_total"}


@dataclass(frozen=True)
class Family:
    name: str  # as exposed (counters with their _total)
    type: str
    labels: frozenset[str]
    help: str


def families_of(metrics: Iterable[Metric]) -> dict[str, Family]:
    families: dict[str, Family] = {}
    for metric in metrics:
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        # declared label names (a family may have no sample yet, e.g. before the first NG request)
        labels = set(getattr(metric, "_labelnames", ())) | {k for s in metric.samples for k in s.labels}
        families[name] = Family(name, metric.type, frozenset(labels - {"le"}), metric.documentation)
    return families


def exported() -> dict[str, Family]:
    """The families of a node that never started: every family exists even with nothing attached."""
    settings = NodeSettings(
        "127.0.0.1", 22222, "127.0.0.2", "127.0.0.2", 30000, 30099, EngineSettings("127.0.0.2", "127.0.0.2")
    )
    return families_of(KarlCollector(MediaNode(settings)).collect())


def idle_router() -> RouterApp:
    """A router built as `karl-router` builds it, minus its sockets: the Redis client connects only on
    first use (never here), the node link and the NG protocol have no transport."""
    settings = RedisSettings(addr="127.0.0.1:6379")
    state = FleetState(connect(settings), KeySchema(settings.prefix))
    link = NodeLink()
    view = FleetView(state, link)
    return RouterApp(KarlConfig(), state, view, Router(state, view, link), link, NgProtocol(lambda *_: None))


def router_exported() -> dict[str, Family]:
    """The families of a router that never started (every family exists before the first request)."""
    return families_of(RouterCollector(idle_router()).collect())


def failover_exported() -> dict[str, Family]:
    """The families of a failover controller that never ticked."""
    settings = RedisSettings(addr="127.0.0.1:6379")
    controller = FailoverController(FleetState(connect(settings), KeySchema(settings.prefix)), "c1", 2.0)
    return families_of(FailoverCollector(controller).collect())


def series_names(families: dict[str, Family]) -> set[str]:
    """Names a PromQL selector can use: histograms only through their _bucket/_sum/_count series."""
    names: set[str] = set()
    for family in families.values():
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


# ---------------------------------------------------------------------------- docs/metrics.md


def section(part: str) -> list[str]:
    """The lines of docs/metrics.md about a media node (`node`: everything before the router's
    section), the NG router (`router`: its section, up to the next `## ` heading) or the failover
    controller (`failover`: likewise)."""
    lines = DOCS.read_text().splitlines()
    start = lines.index(ROUTER_HEADING)
    if part == "node":
        return lines[:start]
    if part == "failover":
        start = lines.index(FAILOVER_HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def documented(part: str = "node") -> dict[str, tuple[str, frozenset[str]]]:
    """name → (type, label names) from the family tables: | `name` | type | labels | meaning | use |"""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in section(part):
        if not line.startswith("| `karl_"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"a family row has 5 columns: {line}"
        name = cells[0].strip("`")
        assert name not in rows, f"documented twice: {name}"
        assert cells[3] and cells[4], f"{name}: meaning and operator use must be filled in"
        labels = frozenset(re.findall(r"`([a-z_]+)`", cells[2]))
        rows[name] = (cells[1], labels)
    return rows


def test_at_least_50_families_all_prefixed_karl_with_the_promised_names() -> None:
    families = exported()
    assert len(families) >= 50, len(families)
    assert all(name.startswith("karl_") for name in families)
    for name, kind in PROMISED.items():
        assert name in families, name
        assert families[name].type == kind, (name, families[name].type)
    assert families["karl_ng_commands_total"].labels == {"command", "result"}
    assert families["karl_ng_command_duration"].labels == {"command"}


def test_docs_list_exactly_the_exported_families_with_their_types_and_labels() -> None:
    families = exported()
    docs = documented()
    assert not set(docs) & set(documented("router")), "a family in both the node's and the router's tables"
    assert set(docs) - set(families) == set(), "documented but not exported"
    assert set(families) - set(docs) == set(), "exported but not documented"
    for name, (kind, labels) in docs.items():
        assert kind == families[name].type, (name, kind, families[name].type)
        assert labels == families[name].labels, (name, sorted(labels), sorted(families[name].labels))


def test_families_not_built_yet_say_so_in_help_and_docs() -> None:
    families = exported()
    text = DOCS.read_text()
    for name in NOT_BUILT_YET:
        assert families[name].help.startswith("Not measured yet"), name
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        assert "Stays empty until" in row or "Stays 0 until" in row, row
    for name, family in families.items():
        if name not in NOT_BUILT_YET:
            assert "Not measured yet" not in family.help, name


def test_no_label_can_carry_a_call_id_tag_or_address() -> None:
    allowed = {"kind", "direction", "reason", "command", "result", "mode", "generation", "version", "python"}
    allowed |= {"route", "method", "status"}  # route templates, not paths
    allowed |= {"type"}  # RTCP report types: sender, receiver
    for family in exported().values():
        assert family.labels <= allowed, (family.name, family.labels)


def test_exposition_of_an_idle_node_parses_and_keeps_counters_named_total() -> None:
    settings = NodeSettings(
        "127.0.0.1", 22222, "127.0.0.2", "127.0.0.2", 30000, 30099, EngineSettings("127.0.0.2", "127.0.0.2")
    )
    body, content_type = render_metrics(MediaNode(settings))
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), re.M))
    assert set(types) == set(exported())
    assert all(name.endswith("_total") for name, kind in types.items() if kind == "counter")


# ---------------------------------------------------------------------------- PromQL


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
_KEYWORDS |= {"offset", "inf", "nan", "atan2"}
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<other>\S)"
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: not functions, keywords, label names, label values,
    durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, label_replace arguments)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    names: set[str] = set()
    tokens = list(_TOKEN.finditer(text))
    for i, token in enumerate(tokens):
        name = token.group("name")
        if name is None or name.lower() in _KEYWORDS:
            continue
        following = tokens[i + 1].group(0) if i + 1 < len(tokens) else ""
        if following == "(":
            continue  # a function or an aggregation
        names.add(name)
    return names


def test_the_promql_name_extractor_is_not_fooled() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(karl_a_bucket{job="karl", le!="1e3"}[5m:30s])))'
        " / on (instance) group_left(version) karl_b offset 5m > bool 0.5"
        ' unless sum(karl_c) without (mode) or label_replace(karl_d, "dst", "$1", "src", "(.*)") * 1e-3'
        ' and absent(karl_e{instance=~"$instance"}) and topk(3, karl_f) by (command)'
    )
    assert metric_names(expr) == {"karl_a_bucket", "karl_b", "karl_c", "karl_d", "karl_e", "karl_f"}
    assert metric_names("sum(rate(x[$__rate_interval])) / 2") == {"x"}
    assert metric_names("up == 0") == {"up"}


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            # Grafana's label_values(selector, label): the selector is PromQL, the label is not
            yield f"variable {variable['name']}", match.group(1) if match else query


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_expression_names_only_exported_metrics(source: str) -> None:
    known = (
        series_names(exported())
        | series_names(router_exported())
        | series_names(failover_exported())
        | PROMETHEUS_SERIES
    )
    expressions = list(rule_expressions() if source == "rules" else dashboard_expressions())
    assert len(expressions) >= 20
    used: set[str] = set()
    for where, expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= known, f"{where}: unknown metrics {sorted(names - known)} in {expr!r}"
        used |= names
    if source == "dashboard":
        # every family worth a graph is on the dashboard: a node's and a router's
        for families in (exported(), router_exported(), failover_exported()):
            missing = {f.name for f in families.values() if not (series_names({f.name: f}) & used)}
            assert not missing, sorted(missing)


def test_alert_rules_are_complete_and_documented() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    table = set(re.findall(r"^\| `(Karl\w+)` \|", DOCS.read_text(), re.M))
    assert table == set(names)
    needed = {
        "KarlNodeDown", "KarlNodeNotReady", "KarlNodeDrainingTooLong", "KarlPortPoolNearlyExhausted",
        "KarlPortPoolExhausted", "KarlNgInternalErrors", "KarlNgErrorRatioHigh", "KarlEventLoopLagHigh",
        "KarlRelayDropsRising", "KarlMalformedMediaFlood", "KarlSourcesBlocked", "KarlCdrDatabaseDown",
        "KarlCdrSpoolGrowing", "KarlSessionLimitRefusals", "KarlNgLatencyHigh",
    }  # fmt: skip
    assert needed <= set(names), sorted(needed - set(names))


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    titles = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert {"Calls", "Media", "NG control protocol", "Event loop and process", "Security"} <= titles


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_the_rules_and_every_dashboard_expression(tmp_path: Path) -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Dashboard queries as recording rules, with Grafana's variables replaced, so PromQL parses them.
    records = [
        {
            "record": f"karl:dashboard_query:{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for i, (_, expr) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
