"""Record rtpengine's replies to every side-by-side sequence as golden transcripts.

Run by hand from the repository root after a change of `ng_sequences` (or of the normalisation):

    .venv/bin/python tests/engine/record_goldens.py [--output PATH]

It starts the reference rtpengine as tests/medianode/test_sidebyside.py does (media address 127.0.0.3,
400 ports, delete delay 30 s), plays every sequence against it — on one shared daemon, and on a
daemon of its own for a sequence marked `fresh_server` — and writes the normalised replies to
tests/engine/goldens/rtpengine-10.5.json. tests/engine/test_goldens_current.py replays the same
sequences against a live rtpengine and checks that the file still says what it answers.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the shared test modules live in tests/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import karl_testkit as testkit
from engine import goldens
from karl_testkit import RTPENGINE, NgServer
from ng_sequences import NOT_RUN, SEQUENCES, Raw, Sequence, Transcript, run_sequence

REFERENCE_IP = "127.0.0.3"
PORTS = 400
DELETE_DELAY = 30
RTPENGINE_OPTIONS = [f"--delete-delay={DELETE_DELAY}"]
EXPECTED_VERSION = "10.5"


def rtpengine_version(binary: str = RTPENGINE) -> str:
    """The daemon's own version string, e.g. `10.5.3.5-1+deb12u1`."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True)
    match = re.search(r"Version:\s*(\S+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out.stdout!r} {out.stderr!r}")
    return match.group(1)


def start_reference(log_dir: Path) -> NgServer:
    return testkit.start_rtpengine(log_dir, REFERENCE_IP, PORTS, RTPENGINE_OPTIONS)


def play(server: NgServer, sequence: Sequence) -> Transcript:
    """One sequence against `server`; fails when the daemon died or left a request unanswered (the
    recording would then hold a crash, not an answer)."""
    transcript = run_sequence(server, sequence)
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited during {sequence.name!r}; log: {server.log_path}")
    for result in transcript.results:
        if result.normalised == NOT_RUN or (result.reply is None and not isinstance(result.step, Raw)):
            raise RuntimeError(
                f"{sequence.name!r} step {result.index}: no reply from {server.name}; log: {server.log_path}"
            )
    return transcript


def play_all(sequences: Iterable[Sequence], log_dir: Path) -> Iterator[tuple[Sequence, Transcript]]:
    """Every sequence against the reference: one shared daemon, a fresh one per `fresh_server` sequence."""
    shared: NgServer | None = None
    try:
        for sequence in sequences:
            if sequence.fresh_server:
                fresh = start_reference(log_dir)
                try:
                    yield sequence, play(fresh, sequence)
                finally:
                    fresh.stop()
            else:
                if shared is None:
                    shared = start_reference(log_dir)
                yield sequence, play(shared, sequence)
    finally:
        if shared is not None:
            shared.stop()


def record(sequences: Iterable[Sequence], log_dir: Path) -> dict[str, Any]:
    """The goldens document of `sequences`, freshly recorded."""
    version = rtpengine_version()
    if not version.startswith(EXPECTED_VERSION + "."):
        raise RuntimeError(f"{RTPENGINE} is rtpengine {version}; the goldens are of {EXPECTED_VERSION}")
    return {
        "format": goldens.FORMAT,
        "recorded_with": {
            "server": "rtpengine",
            "version": version,
            "media_ip": REFERENCE_IP,
            "ports": PORTS,
            "options": RTPENGINE_OPTIONS,
        },
        "sequences": {
            sequence.name: goldens.entry(sequence, transcript)
            for sequence, transcript in play_all(sequences, log_dir)
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=goldens.GOLDENS, help="where to write the goldens")
    args = parser.parse_args(argv)
    if not Path(RTPENGINE).exists():
        print(f"{RTPENGINE} is not installed (Debian package rtpengine-daemon)", file=sys.stderr)
        return 1
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="karl-goldens-"))
    document = record(SEQUENCES, log_dir)
    goldens.write(document, args.output)
    print(
        f"recorded {len(document['sequences'])} sequences from rtpengine "
        f"{document['recorded_with']['version']} in {time.monotonic() - started:.1f} s → {args.output} "
        f"(daemon logs: {log_dir})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
