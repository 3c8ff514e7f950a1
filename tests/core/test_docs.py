"""The operator documentation stays true to the code.

README.md keeps its two commands first; every relative link in README.md and docs/*.md leads to an
existing file (and heading); the NG command table of docs/compatibility.md matches what the media
node really dispatches; every `KARL_*` variable the README and the quick start mention exists, with
the defaults they state; the side-by-side figures and known gaps quoted in the docs are the suite's.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from karl_core.config import describe_env
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_core.ng.options import parse_options
from karl_medianode.engine import NOT_SUPPORTED, EngineSettings
from karl_medianode.node import MediaNode, NodeSettings
from ng_sequences import SEQUENCES, A, B
from ng_sequences_generated import DELIBERATE as GENERATED_DELIBERATE
from ng_sequences_generated import GENERATED
from ng_sequences_generated import KNOWN_GAPS as GENERATED_GAPS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
QUICKSTART = DOCS / "quickstart.md"
COMPATIBILITY = DOCS / "compatibility.md"
EXPECTATIONS = ROOT / "tests" / "ng_expectations.py"

TABLE_BEGIN = "<!-- ng-commands:begin -->"
TABLE_END = "<!-- ng-commands:end -->"
STATUSES = {"supported", "partial", "not yet"}

FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
ENV_NAME = re.compile(r"\bKARL_[A-Z0-9_]+\b")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub generates for a markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(path: Path) -> Iterator[str]:
    for target in LINK.findall(without_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:, ...
            continue
        yield target


# ---------------------------------------------------------------------------------------- README


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in README.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines[0].startswith("# "):
        lines = lines[1:]  # the title may come first
    assert lines[0].startswith("```"), f"README must open with the two commands' code block: {lines[0]!r}"
    assert re.fullmatch(r"make run\s+#\s*\S.*", lines[1]), lines[1]
    assert re.fullmatch(r"make test\s+#\s*\S.*", lines[2]), lines[2]
    assert lines[3].strip() == "```", f"the first code block holds exactly the two commands: {lines[3]!r}"


def test_make_run_comment_states_the_default_ports() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    run_line = next(line for line in lines if line.startswith("make run"))
    defaults = {var.name: var.default for var in describe_env()}
    assert f"UDP {defaults['KARL_NG_PORT']}" in run_line, run_line
    assert f"{defaults['KARL_RTP_MIN_PORT']}-{defaults['KARL_RTP_MAX_PORT']}" in run_line, run_line


def test_makefile_has_the_two_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)


# ----------------------------------------------------------------------------------------- links


def test_the_link_checker_sees_links_and_skips_code() -> None:
    text = "[a](x.md) `[b](y.md)` ![img](z.png) [c](https://example.org)\n```\n[d](w.md)\n```\n"
    assert LINK.findall(without_code(text)) == ["x.md", "https://example.org"]
    assert github_slug("`timers` — when calls end (seconds, rtpengine's meanings)") == (
        "timers--when-calls-end-seconds-rtpengines-meanings"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files_and_headings(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_link_to_each_other() -> None:
    # guards the link check against passing because nothing was found
    assert sum(1 for path in markdown_files() for _ in relative_links(path)) >= 20


# ------------------------------------------------------------------------ compatibility: commands


def command_table() -> dict[str, str]:
    """Command name -> status, from the marked table of docs/compatibility.md."""
    text = COMPATIBILITY.read_text(encoding="utf-8")
    assert text.count(TABLE_BEGIN) == 1 and text.count(TABLE_END) == 1, "markers around the command table"
    block = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0]
    table: dict[str, str] = {}
    for line in block.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"`[^`]+`", cells[0]):
            continue  # header, separator, blank
        name = cells[0].strip("`")
        assert name not in table, f"{name} listed twice"
        table[name] = cells[1]
    return table


def test_command_table_lists_every_command_once_with_a_known_status() -> None:
    table = command_table()
    assert set(table) == {command.value for command in Command}
    assert set(table.values()) <= STATUSES, set(table.values()) - STATUSES


@pytest.fixture(scope="module")
def dispatch_outcomes() -> dict[str, str]:
    """What a real media node's dispatcher answers to each command about an established call (with
    every option the commands check before acting: a party, a file, a DTMF code, an SDP): the
    reply's `result`, or the error text."""

    async def probe() -> dict[str, str]:
        node = MediaNode(
            NodeSettings(
                ng_address="127.0.0.1",
                ng_port=0,
                media_ip="127.0.0.1",
                advertised_ip="127.0.0.1",
                port_min=40000,
                port_max=40009,
                engine=EngineSettings(advertised_ip="127.0.0.1", media_ip="127.0.0.1"),
                shutdown_grace=0,
            )
        )
        await node.start()
        outcomes: dict[str, str] = {}
        call = {"call-id": "docs-test-call", "from-tag": "FT"}
        try:
            for command, body in (
                (Command.OFFER, {**call, "sdp": A()}),
                (Command.ANSWER, {**call, "to-tag": "TT", "sdp": B()}),
            ):
                reply = node.dispatch(
                    command, parse_options({"command": command.value, **body}, command), ("127.0.0.1", 9)
                )
                assert reply["result"] == "ok", reply
            for command in Command:
                message = {
                    "command": command.value,
                    **call,
                    "to-tag": "TT",
                    "sdp": B(),
                    "file": "prompt.wav",
                    "code": 5,
                }
                try:
                    reply = node.dispatch(command, parse_options(message, command), ("127.0.0.1", 9))
                    outcomes[command.value] = str(reply.get("result"))
                except NgError as exc:
                    outcomes[command.value] = exc.reason
        finally:
            await node.shutdown()
        return outcomes

    return asyncio.run(probe())


@pytest.mark.parametrize("command", [command.value for command in Command])
def test_command_status_matches_what_the_node_dispatches(
    command: str, dispatch_outcomes: dict[str, str]
) -> None:
    status = command_table()[command]
    not_supported = f"{NOT_SUPPORTED}: {command}"
    if status == "not yet":
        assert dispatch_outcomes[command] == not_supported, (
            f"docs/compatibility.md says `{command}` is not implemented, but the node answers "
            f"{dispatch_outcomes[command]!r}: update the table"
        )
    else:
        assert dispatch_outcomes[command] != not_supported, (
            f"docs/compatibility.md says `{command}` is {status}, but the node does not dispatch it"
        )


def test_readme_names_every_implemented_command() -> None:
    works = README.read_text(encoding="utf-8").split("## What works today", 1)[1].split("\n## ", 1)[0]
    implemented = {name for name, status in command_table().items() if status != "not yet"}
    for name in implemented:
        assert f"`{name}`" in works, f"README's 'What works today' does not name `{name}`"


# ----------------------------------------------------------------------- environment variables


@pytest.mark.parametrize("path", [README, QUICKSTART], ids=lambda p: p.name)
def test_environment_variables_named_exist(path: Path) -> None:
    known = {var.name for var in describe_env()}
    named = set(ENV_NAME.findall(path.read_text(encoding="utf-8")))
    assert not named - known, f"{path.name} names variables Karl does not read: {sorted(named - known)}"


def test_quickstart_defaults_table_states_the_real_defaults() -> None:
    defaults = {var.name: var.default for var in describe_env()}
    text = QUICKSTART.read_text(encoding="utf-8")
    section = text.split("## The defaults", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3:
            continue
        for name in ENV_NAME.findall(cells[2]):
            assert name in defaults, name
            if re.fullmatch(r"-?\d+", defaults[name]):
                assert re.search(rf"(?<![\d.]){defaults[name]}(?![\d.])", cells[1]), (
                    f"quickstart.md states the default of {name} as {cells[1]!r}; it is {defaults[name]}"
                )
                checked += 1
    assert checked >= 8, "the defaults table should cover the numeric settings"


# ------------------------------------------------------------------------------ side-by-side facts


def known_gaps() -> set[str]:
    """The sequence names of `KNOWN_GAPS` in the side-by-side expectations (read, not imported)."""
    tree = ast.parse(EXPECTATIONS.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(target, ast.Name) and target.id == "KNOWN_GAPS" for target in targets):
            assert isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict)
            return {
                key.value
                for key in node.value.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            }
    raise AssertionError("KNOWN_GAPS not found in tests/ng_expectations.py")


def test_every_known_gap_is_documented() -> None:
    gaps = known_gaps()
    text = COMPATIBILITY.read_text(encoding="utf-8")
    missing = sorted(name for name in gaps if f"`{name}`" not in text)
    assert not missing, f"docs/compatibility.md does not explain these expected failures: {missing}"


def test_side_by_side_figures_in_the_docs_are_current() -> None:
    total, gaps = len(SEQUENCES), len(known_gaps())
    compatibility = COMPATIBILITY.read_text(encoding="utf-8")
    assert f"{total} NG request sequences" in compatibility
    assert f"all {total - gaps} comparable sequences match" in compatibility
    if gaps:
        assert f"the {gaps} listed" in compatibility
    else:
        assert "no sequence is an expected failure" in compatibility
    assert f"{total} request sequences" in README.read_text(encoding="utf-8")


def test_generated_side_by_side_figures_in_the_docs_are_current() -> None:
    """The generator's counts as docs/compatibility.md and the README give them, and every generated
    expected failure explained there."""
    total, gaps, deliberate = len(GENERATED), len(GENERATED_GAPS), len(GENERATED_DELIBERATE)
    compatibility = COMPATIBILITY.read_text(encoding="utf-8")
    flat = " ".join(compatibility.split())  # (however the paragraph is wrapped)
    assert f"makes {total} calls" in flat
    matching = total - gaps - deliberate
    if gaps:
        assert f"{matching} match, {deliberate} match with one" in flat
        failures = (
            f"and {gaps} are strict expected failures" if gaps != 1 else "and 1 is a strict expected failure"
        )
        assert failures in flat
    else:
        assert f"{matching} match and {deliberate} match with one" in flat
        assert "none is an expected failure" in flat
    assert f"and {total} more made by a seeded generator" in README.read_text(encoding="utf-8")
    missing = sorted(name for name in GENERATED_GAPS if f"`{name}`" not in compatibility)
    assert not missing, f"docs/compatibility.md does not explain these expected failures: {missing}"
    assert not set(GENERATED_GAPS) & set(GENERATED_DELIBERATE)
    assert set(GENERATED_GAPS) | set(GENERATED_DELIBERATE) <= {s.name for s in GENERATED}
