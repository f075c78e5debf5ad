"""``relaybot console`` killed mid-answer: the next console on the same store finishes the turn.

Two real processes share a SQLite store. The first reads one question and is killed with
SIGKILL while the fake gateway holds its answer's stream open; the second starts with nothing
to read and, before its first prompt, answers that turn again (printed once) — or, when a
tool had run, ends it with the interrupted note (a tool never runs twice).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bots.console.chat import EARLIER
from bots.replies import INTERRUPTED
from core.store import open_store
from tests.conftest import Spawn
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until

QUESTION = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris."
WAIT = 30.0
"""The bound on a console process: a Python start-up, on a machine that may be loaded."""


async def console(spawn: Spawn, stdin: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``python -m bots console`` reading ``stdin`` (the spawn fixture pipes only its output)."""
    command = 'exec "$0" -m bots console < "$1"'
    return await spawn("/bin/sh", "-c", command, sys.executable, str(stdin), env=env)


@pytest.mark.parametrize("tool_ran", [False, True])
async def test_a_console_killed_mid_answer_is_finished_by_the_next_one(
    tool_ran: bool, tmp_path: Path, spawn: Spawn
) -> None:
    store_url = f"sqlite:///{tmp_path / 'relaybot.db'}"
    question = tmp_path / "question.txt"
    question.write_text(QUESTION + "\n")
    async with FakeGateway() as gateway, FakeOpenMeteo() as weather:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYBOT_", "OFOX_"))}
        env |= {
            "OFOX_API_KEY": "sk-test",
            "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
            "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "1",
            "RELAYBOT_STORE__URL": store_url,
            "RELAYBOT_STORE__LEASE_SECONDS": "2",
            "RELAYBOT_TOOLS__WEATHER_GEOCODING_URL": weather.url,
            "RELAYBOT_TOOLS__WEATHER_FORECAST_URL": weather.url,
        }
        if tool_ran:
            call = ("call-1", "get_weather", '{"city": "Paris"}')
            gateway.enqueue(Stream(openai_chunks(tool_calls=[call])))
        gateway.enqueue(Stream.stalled(openai_chunks(ANSWER), after=3))
        first = await console(spawn, question, env)
        held = 2 if tool_ran else 1
        await until(lambda: len(gateway.requests) == held, "the answer under way", within=WAIT)
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), WAIT)
        first_out = await asyncio.wait_for(first.stdout.read(), WAIT)  # type: ignore[union-attr]
        assert first_out == b"", "piped, nothing of an unfinished answer is printed"

        gateway.enqueue(Stream(openai_chunks(ANSWER)))
        second = await console(spawn, Path(os.devnull), env)
        out, err = await asyncio.wait_for(second.communicate(), WAIT)

    assert (second.returncode, err.decode()) == (0, "")
    shown = INTERRUPTED if tool_ran else ANSWER
    assert out.decode().splitlines() == [EARLIER.format(question=QUESTION), shown]
    if tool_ran:
        assert len(gateway.requests) == 2, "a turn whose tool ran is not run again"
        assert len(weather.requests) == 2, "the tool ran once (geocoding, forecast)"
    else:
        assert len(gateway.requests) == 2
        users = [m for m in gateway.requests[1].json["messages"] if m["role"] == "user"]
        assert [m["content"] for m in users] == [QUESTION], "the question once"
    store = await open_store(store_url)
    try:
        assert await store.stranded() == []
    finally:
        await store.close()
