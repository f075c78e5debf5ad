"""A test that hangs fails under the suite's timeout, with a stack, instead of hanging CI.

The inner run is a subprocess (``runpytest_subprocess``): in process, its alarm would fight the
outer test's own.
"""

from __future__ import annotations

import pytest

HANGS = {
    "sync": """
import threading

def test_waits_forever():
    threading.Event().wait()
""",
    "async": """
import asyncio

async def test_waits_forever():
    await asyncio.Event().wait()
""",
}


@pytest.mark.parametrize("kind", sorted(HANGS))
def test_a_hanging_test_fails_with_a_stack(pytester: pytest.Pytester, kind: str) -> None:
    pytester.makepyfile(test_hang=HANGS[kind])
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest_subprocess("--timeout=2", timeout=50)
    result.assert_outcomes(failed=1)
    # The failure shows where the test was stuck: its traceback, then the timeout.
    result.stdout.fnmatch_lines(
        ["*_ test_waits_forever _*", "*wait*", "*Timeout (>2.0s) from pytest-timeout*"]
    )


def test_the_suite_has_a_timeout(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 60
