"""The goldens cannot rot: every sequence is replayed against a live rtpengine 10.5, started as
record_goldens.py starts it, and its normalised replies must be the recorded ones. When this fails
after a change of `ng_sequences` or `ng_normalize`, record the goldens again
(`.venv/bin/python tests/engine/record_goldens.py`) and review the diff of the JSON file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import goldens
from engine.record_goldens import EXPECTED_VERSION, play, rtpengine_version, start_reference
from karl_testkit import RTPENGINE, NgServer
from ng_sequences import SEQUENCES, Sequence, compare_transcripts

pytestmark = pytest.mark.sidebyside


def _ids(sequence: Sequence) -> str:
    return sequence.name


def _need_rtpengine() -> None:
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")


@pytest.fixture(scope="module")
def shared_rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer]:
    _need_rtpengine()
    server = start_reference(tmp_path_factory.mktemp("goldens-ref"))
    yield server
    server.stop()


@pytest.fixture
def reference(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NgServer]:
    """The rtpengine a sequence is played against: the shared one, or a fresh one for `fresh_server`."""
    sequence: Sequence = request.node.callspec.params["sequence"]
    if not sequence.fresh_server:
        yield request.getfixturevalue("shared_rtpengine")
        return
    _need_rtpengine()
    server = start_reference(tmp_path)
    yield server
    server.stop()


@pytest.mark.parametrize("sequence", SEQUENCES, ids=_ids)
def test_golden_is_what_rtpengine_answers(sequence: Sequence, reference: NgServer) -> None:
    document = goldens.load()
    reason = goldens.stale_reason(sequence, document)
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    live = play(reference, sequence)
    report = compare_transcripts(goldens.transcript(sequence, document, live), live)
    if report is not None:
        pytest.fail(
            f"{report}\n\nrtpengine no longer answers what the goldens say: record them again "
            f"({goldens.RECORD_COMMAND}) and review the diff (server log: {reference.log_path})",
            pytrace=False,
        )


def test_goldens_are_of_the_installed_rtpengine() -> None:
    _need_rtpengine()
    recorded = goldens.load()["recorded_with"]["version"]
    installed = rtpengine_version()
    assert installed.startswith(EXPECTED_VERSION + "."), f"installed rtpengine is {installed}"
    assert recorded.startswith(EXPECTED_VERSION + "."), f"the goldens are of rtpengine {recorded}"
