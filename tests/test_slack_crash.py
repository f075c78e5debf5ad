"""A ``relaybot slack --http`` process killed mid-answer: the next process on the same store
finishes the turn, and Slack's re-delivery of the event is not answered again.

Real processes (``relaybot slack`` as the README runs it), a real SQLite store file, and
``SIGKILL``: nothing of the first process gets to clean up. The fake gateway holds the first
answer (or the fake Open-Meteo holds the weather tool) so the kill lands mid-answer, after the
event was accepted and acknowledged. Slack's retry of an event whose acknowledgement was lost
in the crash is the same event sent again, with ``X-Slack-Retry-Num``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from bots.replies import INTERRUPTED
from bots.slack.server import EVENTS_PATH, HEALTH_PATH
from tests.conftest import Spawn
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo, Hang
from tests.fakes.slack_api import BOT_ID, FakeSlack, Message
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    SECRET,
    TOKEN,
    WAIT,
    actions,
    answer,
    envelope,
    mention,
    relaybot_slack,
    signature,
    status_of,
)

QUESTION = "<@UBOT> count"


class Slack:
    """The fake Web API, and Slack's side of the events a ``relaybot slack`` process is sent."""

    def __init__(self, api: FakeSlack, http: aiohttp.ClientSession) -> None:
        self.api, self.http = api, http

    async def send(self, url: str, event: dict[str, Any], *, retry: int = 0) -> int:
        body = json.dumps(envelope(event, "Ev1"))
        now = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                   "X-Slack-Signature": signature(SECRET, now, body)}  # fmt: skip
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with self.http.post(url + EVENTS_PATH, data=body, headers=headers) as response:
            return response.status

    async def busy(self, url: str) -> int:
        async with self.http.get(url + HEALTH_PATH) as response:
            return int((await response.json())["busy"])

    async def idle(self, url: str) -> None:
        """Wait until the process answers nothing (its ``/health`` says so), within ``WAIT``."""
        async with asyncio.timeout(WAIT):
            while await self.busy(url):  # noqa: ASYNC110 (a process: nothing to wait on)
                await asyncio.sleep(0.01)

    def replies(self, thread_ts: str) -> list[Message]:
        return [m for m in self.api.thread(CHANNEL, thread_ts) if m.bot_id == BOT_ID]


async def serving(spawn: Spawn, environ: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """``relaybot slack --http`` started, and the base URL it listens on (log lines before
    that, such as the turn it recovers, are passed over)."""
    process = await relaybot_slack(spawn, "--http", "--host", "127.0.0.1", "--port", "0",
                                   **environ)  # fmt: skip
    assert process.stderr is not None
    async with asyncio.timeout(WAIT):
        while line := (await process.stderr.readline()).decode():
            if line.startswith("relaybot: listening for Slack on http://127.0.0.1:"):
                return process, line.split(" on ", 1)[1].strip().removesuffix(EVENTS_PATH)
    raise AssertionError(f"relaybot slack ended before it listened: {line!r}")


def settings(slack: FakeSlack, gateway: FakeGateway, weather: FakeOpenMeteo,
             store: Path) -> dict[str, str]:  # fmt: skip
    return {
        "OFOX_API_KEY": "sk-test", "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
        "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1", "RELAYBOT_SLACK__API_URL": slack.api_url,
        "RELAYBOT_STORE__URL": f"sqlite:///{store}", "RELAYBOT_STORE__LEASE_SECONDS": "2",
        "RELAYBOT_SLACK__EDIT_INTERVAL": "0.02", "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "1",
        "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
        "RELAYBOT_TOOLS__WEATHER_GEOCODING_URL": weather.url,
        "RELAYBOT_TOOLS__WEATHER_FORECAST_URL": weather.url,
    }  # fmt: skip


async def killed(process: asyncio.subprocess.Process) -> None:
    process.kill()
    await asyncio.wait_for(process.wait(), WAIT)


async def test_an_answer_cut_by_a_crash_is_written_again_by_the_next_process(
    spawn: Spawn, tmp_path: Path
) -> None:
    async with (
        FakeSlack(token=TOKEN) as api, FakeGateway() as gateway, FakeOpenMeteo() as weather,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        slack, environ = Slack(api, http), settings(api, gateway, weather, tmp_path / "r.db")
        gateway.enqueue(Stream.stalled(openai_chunks("Counting: one two three"), after=4))
        first, url = await serving(spawn, environ)
        asked = api.seed_message(CHANNEL, ADA, QUESTION)
        assert await slack.send(url, mention(asked, QUESTION)) == 200
        await until(lambda: [m.markdown for m in slack.replies(asked)] == ["Counting: on"],
                    "the first words", within=WAIT)  # fmt: skip
        (cut,) = slack.replies(asked)
        await killed(first)

        gateway.enqueue(answer("One, two, three."), answer("Twice?"))
        second, url = await serving(spawn, environ)

        def finished() -> bool:
            shown = slack.replies(asked)
            return [m.markdown for m in shown] == ["One, two, three."] and not actions(
                shown[0].blocks
            )

        await until(finished, "the answer, written again", within=WAIT)
        assert slack.replies(asked)[0].ts == cut.ts, "written again in the cut answer's message"
        await slack.idle(url)
        assert await slack.send(url, mention(asked, QUESTION), retry=1) == 200  # Slack's retry
        assert await slack.busy(url) == 0, "the re-delivered event was not accepted again"
        await killed(second)

    assert [m.markdown for m in slack.replies(asked)] == ["One, two, three."]
    assert len(gateway.requests) == 2
    asked_again = [(m["role"], m["content"]) for m in gateway.requests[1].json["messages"][1:]]
    assert asked_again == [("user", "count")], "nothing of the cut answer is in the history"


async def test_a_turn_cut_after_its_tool_ran_ends_with_a_note_and_no_second_run(
    spawn: Spawn, tmp_path: Path
) -> None:
    async with (
        FakeSlack(token=TOKEN) as api, FakeGateway() as gateway, FakeOpenMeteo() as weather,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        slack, environ = Slack(api, http), settings(api, gateway, weather, tmp_path / "r.db")
        call = ("call_1", "get_weather", '{"city": "Paris"}')
        gateway.enqueue(Stream(openai_chunks(tool_calls=[call])), answer("Never asked."))
        weather.fail("search", Hang())
        first, url = await serving(spawn, environ)
        asked = api.seed_message(CHANNEL, ADA, "<@UBOT> weather in Paris?")
        assert await slack.send(url, mention(asked, "<@UBOT> weather in Paris?")) == 200

        def checking() -> bool:
            shown = slack.replies(asked)
            return bool(shown) and "Checking the weather in Paris" in status_of(shown[0].blocks)

        await until(checking, "the tool running", within=WAIT)
        await until(lambda: weather.requests, "the tool's request", within=WAIT)
        (cut,) = slack.replies(asked)
        await killed(first)

        second, url = await serving(spawn, environ)

        def noted() -> bool:
            shown = slack.replies(asked)
            return [m.markdown for m in shown] == [INTERRUPTED] and not actions(shown[0].blocks)

        await until(noted, "the interrupted note", within=WAIT)
        assert await slack.send(url, mention(asked, "<@UBOT> weather in Paris?"), retry=1) == 200
        assert await slack.busy(url) == 0
        await killed(second)

    (note,) = slack.replies(asked)
    assert note.ts == cut.ts, "the note replaces what the first process showed"
    assert len(gateway.requests) == 1, "the turn was not run again"
    assert len(weather.requests) == 1, "the tool ran once"
