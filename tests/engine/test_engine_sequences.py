"""The call engine against rtpengine 10.5, with no sockets: every side-by-side sequence
(`ng_sequences.SEQUENCES`) is played against a fresh in-process NG server around a fresh engine and
compared with rtpengine's recorded replies (tests/engine/goldens/, see record_goldens.py) after the same
normalisation as the networked suite. Expectations are the side-by-side suite's (`ng_expectations`):
`DELIBERATE` replaces rtpengine's reply by Karl's where Karl differs on purpose, `KNOWN_GAPS` are strict
expected failures.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import goldens
from engine.engine_server import InProcessServer
from ng_expectations import DELIBERATE, KNOWN_GAPS, apply_deliberate, karl_cases
from ng_sequences import SEQUENCES, Sequence, compare_transcripts, run_sequence


def _ids(sequence: Sequence) -> str:
    return sequence.name


@pytest.mark.parametrize("sequence", karl_cases(SEQUENCES), ids=_ids)
def test_engine_matches_rtpengine(sequence: Sequence, engine_server: Callable[[], InProcessServer]) -> None:
    document = goldens.load()
    reason = goldens.stale_reason(sequence, document)
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    played = run_sequence(engine_server(), sequence, run_id="engine")
    expected = goldens.transcript(sequence, document, played)
    apply_deliberate(expected)
    report = compare_transcripts(expected, played)
    if report is not None:
        pytest.fail(report, pytrace=False)


def test_goldens_are_those_of_the_sequences() -> None:
    """One golden per sequence, each recorded from the sequence as it is now."""
    document = goldens.load()
    assert sorted(document["sequences"]) == sorted(s.name for s in SEQUENCES), (
        f"the goldens are of other sequences: record them again ({goldens.RECORD_COMMAND})"
    )
    stale = [reason for s in SEQUENCES if (reason := goldens.stale_reason(s, document)) is not None]
    assert not stale, "\n".join(stale)
    assert document["recorded_with"]["version"].startswith("10.5.")


def test_expectations_name_real_sequences() -> None:
    names = {s.name for s in SEQUENCES}
    assert set(KNOWN_GAPS) <= names
    assert set(DELIBERATE) <= names
