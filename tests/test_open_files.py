"""``enough_open_files``: the process's soft limit on open files is raised to what
``llm.max_concurrent_requests`` streams may need, as far as the hard limit allows, and a hard
limit too low is announced at start. Each case runs in a child process whose limits it sets
(the test process's own are left alone)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys
from bots.runtime import enough_open_files
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
said = []
now = enough_open_files(int(sys.argv[3]), announce=said.append)
print(json.dumps({"now": now, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "said": said}))
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")


def limits_after(soft: int, hard: int, requests: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(requests)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_low_soft_limit_is_raised_to_what_the_requests_need() -> None:
    assert limits_after(256, 4096, 1000) == {"now": 2256, "soft": 2256, "said": []}


def test_a_soft_limit_already_enough_is_left_alone() -> None:
    assert limits_after(3000, 4096, 1000) == {"now": 3000, "soft": 3000, "said": []}


def test_a_hard_limit_too_low_is_reached_and_announced() -> None:
    result = limits_after(256, 1024, 1000)
    assert (result["now"], result["soft"]) == (1024, 1024)
    assert result["said"] == [
        "this process may open 1024 files (ulimit -n), fewer than the 2256 that "
        "llm.max_concurrent_requests = 1000 may need: raise the limit, or lower the setting"
    ]
