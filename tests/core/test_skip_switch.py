"""`KARL_FAIL_ON_SKIP=1` (set by `.ci/run`) turns every skip into a failure, wherever the skip comes from,
except the entries of `SKIP_ALLOWED` in tests/conftest.py; xfail stays xfail. Checked on a tiny inner
suite whose conftest is the real tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TESTS = """
import pytest

@pytest.fixture
def unavailable():
    pytest.skip("the daemon is not installed (Debian package something)")

def test_passes():
    pass

def test_skips_in_its_body():
    pytest.skip("no IPv6 loopback")

@pytest.mark.skipif(True, reason="promtool is not installed")
def test_skipif_marker():
    pass

@pytest.mark.skip(reason="not today")
def test_skip_marker():
    pass

def test_skips_in_a_fixture(unavailable):
    pass

@pytest.mark.kind
def test_kind_suite():
    pytest.skip("no Docker engine")

def test_allowed_by_node_id():
    pytest.skip("allowed by its node id")

@pytest.mark.xfail(reason="known bug")
def test_expected_failure():
    assert False

def test_imperative_xfail():
    pytest.xfail("known bug")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    conftest = CONFTEST.read_text(encoding="utf-8")
    # one node-id entry, added to the real list, to show that prefixes work too
    conftest += '\nSKIP_ALLOWED["test_inner.py::test_allowed_by"] = "an example"\n'
    pytester.makeconftest(conftest)
    pytester.makeini("[pytest]\nmarkers =\n    kind: needs a Docker engine and kind\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester


def test_without_the_switch_skips_are_skips(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KARL_FAIL_ON_SKIP", raising=False)
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=6, xfailed=2)


def test_with_the_switch_every_skip_fails_but_the_allowed_ones(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KARL_FAIL_ON_SKIP", "1")
    result = inner.runpytest("-p", "no:cacheprovider", "-rA")
    # a skip in the test body fails the call; skip markers and fixtures skip in setup: errors
    result.assert_outcomes(passed=1, failed=1, errors=3, skipped=2, xfailed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_inner.py::test_skips_in_its_body - Skipped: no IPv6 loopback*",
            "ERROR test_inner.py::test_skipif_marker*",
            "ERROR test_inner.py::test_skip_marker*",
            "ERROR test_inner.py::test_skips_in_a_fixture*",
            "SKIPPED * test_inner.py:*: no Docker engine",
            "SKIPPED * test_inner.py:*: allowed by its node id",
            "XFAIL test_inner.py::test_expected_failure*",
        ]
    )
    # the failure says why it failed and how to fix it
    result.stdout.fnmatch_lines(
        ["Skipped: no IPv6 loopback (*test_inner.py:11)", "KARL_FAIL_ON_SKIP=1 turns skips into failures*"]
    )


def test_switch_off_values(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARL_FAIL_ON_SKIP", "0")
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=6, xfailed=2)


def test_a_module_level_skip_fails_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_module_skip="import pytest\n"
        'pytest.importorskip("no_such_module_karl")\n'
        "\n"
        "def test_x():\n"
        "    pass\n"
    )
    monkeypatch.delenv("KARL_FAIL_ON_SKIP", raising=False)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)
    monkeypatch.setenv("KARL_FAIL_ON_SKIP", "1")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no_such_module_karl*", "KARL_FAIL_ON_SKIP=1 turns skips into failures*"])
