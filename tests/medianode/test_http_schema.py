"""Schemathesis against a running node, with a valid operate key: generated requests (valid and invalid)
for every operation of the OpenAPI document; no server error and no response that contradicts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.medianode.test_http_support import NgSource, make_config, ng_address, running_node, setup_call

from karl_medianode.operations.http.openapi import EXAMPLE_CALL_ID

OPERATOR = "schemathesis-operator-5f0e1d2c3b4a"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_no_server_error_and_no_contradiction_of_the_document(tmp_path: Path) -> None:
    config = make_config(
        media_ip="127.0.0.2",
        ports=40,
        KARL_API_KEYS=f"operate:{OPERATOR}",
        KARL_API_RATE_LIMIT="0",
    )
    with running_node(config) as runner:
        ng = NgSource(ng_address(runner))
        # the document's example call-id exists: the examples phase gets a session's details (then ends it)
        calls = [setup_call(ng, call_id) for call_id in (EXAMPLE_CALL_ID, "st-b", "st-c")]
        try:
            result = subprocess.run(
                [
                    str(SCHEMATHESIS), "run", runner.url("api", "/api/v1/openapi.json"),
                    "--header", f"Authorization: Bearer {OPERATOR}",
                    "--checks", "all",
                    "--max-examples", "15",
                    "--seed", "20240501",
                    "--workers", "1",
                    "--request-timeout", "5",
                    "--max-failures", "20",
                    "--suppress-health-check", "all",
                ],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )  # fmt: skip
            remaining = runner.run(lambda: set(runner.node.engine.calls))  # type: ignore[union-attr]
        finally:
            ng.close()
            for call in calls:
                call.close()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Examples" in result.stdout and "6 passed" in result.stdout, result.stdout[-3000:]
    # sessions were really ended through the API (the example one at least; the stateful phase may
    # also end the ones it found in the listing)
    assert EXAMPLE_CALL_ID not in remaining
