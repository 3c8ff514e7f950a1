"""Golden transcripts: rtpengine 10.5's normalised replies to every side-by-side sequence, recorded once
(tests/engine/record_goldens.py) so that the call engine can be compared with rtpengine without
starting it.

The file (goldens/rtpengine-10.5.json) holds, per sequence name, the normalised reply of every step
(what `ng_sequences.run_sequence` puts into `StepResult.normalised`) and a fingerprint of the requests
the replies answer: a sequence whose requests changed since the recording is reported as stale instead
of being compared with replies to other requests. Keys are sorted, so a new recording diffs cleanly.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ng_sequences import Raw, Request, Sequence, StepResult, Transcript

GOLDENS = Path(__file__).resolve().with_name("goldens") / "rtpengine-10.5.json"
FORMAT = 1
RECORD_COMMAND = ".venv/bin/python tests/engine/record_goldens.py"
SERVER_NAME = "rtpengine (golden)"


def fingerprint(sequence: Sequence) -> str:
    """What a sequence sends, hashed (notes and waits left out: they change no reply)."""
    sent = [step.body if isinstance(step, Request) else step.datagram for step in sequence.steps]
    text = repr((sent, sequence.fresh_server))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def entry(sequence: Sequence, transcript: Transcript) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(sequence),
        "replies": [result.normalised for result in transcript.results],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def write(document: dict[str, Any], path: Path = GOLDENS) -> None:
    text = dumps(document)
    if json.loads(text) != document:
        raise ValueError("the normalised replies do not survive JSON unchanged")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@functools.cache
def load(path: Path = GOLDENS) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: format {document.get('format')!r}, expected {FORMAT}")
    return document


def stale_reason(sequence: Sequence, document: dict[str, Any]) -> str | None:
    """Why the golden of `sequence` cannot be used, or None when it can."""
    recorded = document["sequences"].get(sequence.name)
    if recorded is None:
        return f"no golden for sequence {sequence.name!r}: record them again ({RECORD_COMMAND})"
    if recorded["fingerprint"] != fingerprint(sequence) or len(recorded["replies"]) != len(sequence.steps):
        return (
            f"sequence {sequence.name!r} has changed since its golden was recorded: "
            f"record them again ({RECORD_COMMAND})"
        )
    return None


def transcript(sequence: Sequence, document: dict[str, Any], played: Transcript | None = None) -> Transcript:
    """The golden of `sequence` as a `Transcript` (the expected side of `compare_transcripts`). A golden
    has no requests of its own: those of `played` (the run it is compared with) are shown in reports."""
    reason = stale_reason(sequence, document)
    if reason is not None:
        raise LookupError(reason)
    replies = document["sequences"][sequence.name]["replies"]
    version = document["recorded_with"]["version"]
    result = Transcript(sequence, f"{SERVER_NAME} {version}")
    for index, (step, normalised) in enumerate(zip(sequence.steps, replies, strict=True), start=1):
        sent = played.results[index - 1].sent if played is not None else _unsent(step)
        result.results.append(StepResult(index, step, sent, None, normalised))
    return result


def _unsent(step: Request | Raw) -> Any:
    return dict(step.body) if isinstance(step, Request) else step.datagram
