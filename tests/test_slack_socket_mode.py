"""Socket Mode, end to end on loopback: the bot opens a websocket with its app-level token,
acknowledges an ``events_api`` envelope, and answers in the thread.

The pieces are the real ones — ``slack_bot`` (the bot and its bolt ``AsyncApp``),
``bots.slack.server.socket_mode`` (bolt's ``AsyncSocketModeHandler`` over slack_sdk's aiohttp
Socket Mode client) and ``Runtime``; the second test runs ``relaybot slack`` itself, as a
process. Against three fakes: the Socket Mode server (``apps.connections.open`` and the
websocket), the Slack Web API, and the LLM gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bots.replies import MEMORY_DOWN
from bots.runtime import Runtime
from bots.settings import load_settings
from bots.slack.app import SlackBot, slack_bot
from bots.slack.server import run_slack, socket_mode
from core.settings import SettingsError
from core.store import ConversationStore, StoreError, Turn
from core.store.memory import MemoryStore
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.slack_api import BOT_USER, TEAM, FakeSlack, Message
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-1-A1-1-test"
QUESTION = "hello, are you there?"
ANSWER = "Hello Ada! Socket Mode works."


@asynccontextmanager
async def running_bot(
    slack: FakeSlack, gateway: FakeGateway, *, store: ConversationStore | None = None
) -> AsyncIterator[SlackBot]:
    settings = load_settings(
        environ={
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "RELAYBOT_SLACK__API_URL": slack.api_url,
            "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
            "OFOX_API_KEY": "sk-test",
            "RELAYBOT_SLACK__EDIT_INTERVAL": "0.05",
            "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
        }
    )
    async with (
        Runtime.start(
            settings, announce=lambda line: None, store=store or MemoryStore()
        ) as runtime,
        slack_bot(runtime, http=False) as bot,
    ):
        yield bot


def mention(ts: str) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "client_msg_id": "5a1b2c3d-0000-4000-8000-000000000001",
        "text": f"<@{BOT_USER}> {QUESTION}",
        "user": "U1",
        "ts": ts,
        "team": TEAM,
        "channel": "C1",
        "event_ts": ts,
    }


def direct_message(ts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "client_msg_id": "5a1b2c3d-0000-4000-8000-000000000002",
        "text": QUESTION,
        "user": "U1",
        "ts": ts,
        "team": TEAM,
        "channel": "D1",
        "event_ts": ts,
        "channel_type": "im",
    }


def answered(slack: FakeSlack, channel: str, ts: str) -> Message | None:
    """The bot's reply in the thread, once it is final (no Stop button left, or, streamed
    natively, its stream stopped)."""
    replies = [m for m in slack.thread(channel, ts) if m.user == BOT_USER]

    def streaming(m: Message) -> bool:
        return m.streamed and bool((s := slack.stream(channel, m.ts)) and s.streaming)

    done = [m for m in replies
            if not any(b["type"] == "actions" for b in m.blocks) and not streaming(m)]  # fmt: skip
    return done[-1] if done else None


async def test_a_mention_over_socket_mode_is_acknowledged_and_answered_in_its_thread() -> None:
    async with (
        FakeSlack(token=BOT_TOKEN) as slack,
        FakeGateway() as gateway,
        FakeSocketMode(app_token=APP_TOKEN) as socket,
        running_bot(slack, gateway) as bot,
        asyncio.timeout(20),  # loopback sockets, generous for a loaded machine
    ):
        gateway.enqueue(Stream(openai_chunks(ANSWER, pieces=8)))
        handler = socket_mode(bot, APP_TOKEN, web_client=AsyncWebClient(base_url=socket.api_url))
        try:
            assert await bot.workspace.check() == BOT_USER  # as `relaybot slack` starts
            await handler.connect_async()  # type: ignore[no-untyped-call]
            await socket.connected()
            asked = slack.seed_message("C1", "U1", f"<@{BOT_USER}> {QUESTION}")
            envelope_id = await socket.send_event(mention(asked))

            assert await socket.ack(envelope_id) == {"envelope_id": envelope_id}
            await until(lambda: answered(slack, "C1", asked), "an answer", within=None)
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]

    reply = answered(slack, "C1", asked)
    assert reply is not None
    assert (reply.thread_ts, reply.shown) == (asked, ANSWER)  # streamed natively: a DM
    assert socket.opens == 1
    assert [frame["envelope_id"] for frame in socket.received] == [envelope_id]
    posted = next(call for call in slack.calls if call.method == "chat.postMessage")
    assert socket.acked_at[envelope_id] < posted.at  # acknowledged before the answer began
    [request] = gateway.requests
    assert request.json["messages"][-1]["content"].endswith(QUESTION)


class FlakyStore(MemoryStore):
    """A memory store whose ``accept`` fails while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def accept(self, **kwargs: Any) -> Turn | None:
        if self.failing:
            raise StoreError("memory store: the disk is full")
        return await super().accept(**kwargs)


def unacknowledged(caplog: pytest.LogCaptureFixture) -> bool:
    """slack_sdk said it sent no acknowledgement, after a dispatch that failed."""
    return any(
        r.getMessage().startswith("Unsuccessful Bolt execution result (status: 500")
        for r in caplog.records
    )


async def test_an_event_the_store_could_not_accept_is_not_acknowledged_and_its_retry_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    caplog.set_level(logging.INFO, logger="relaybot.slack.bolt")
    async with (
        FakeSlack(token=BOT_TOKEN) as slack,
        FakeGateway() as gateway,
        FakeSocketMode(app_token=APP_TOKEN) as socket,
        running_bot(slack, gateway, store=store) as bot,
        asyncio.timeout(20),
    ):
        gateway.enqueue(Stream(openai_chunks(ANSWER, pieces=8)))
        handler = socket_mode(bot, APP_TOKEN, web_client=AsyncWebClient(base_url=socket.api_url))
        try:
            await handler.connect_async()  # type: ignore[no-untyped-call]
            await socket.connected()
            asked = slack.seed_message("C1", "U1", f"<@{BOT_USER}> {QUESTION}")
            refused = await socket.send_event(mention(asked), event_id="Ev1")
            await until(lambda: unacknowledged(caplog), "the failed dispatch", within=None)
            store.failing = False
            retried = await socket.send_event(mention(asked), event_id="Ev1")  # Slack's retry
            assert await socket.ack(retried) == {"envelope_id": retried}
            await until(lambda: answered(slack, "C1", asked), "an answer", within=None)
            again = await socket.send_event(mention(asked), event_id="Ev1")
            assert await socket.ack(again) == {"envelope_id": again}
            await until(lambda: bot.busy == 0, "idle", within=None)
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]

    assert refused not in socket.acked_at
    assert len(gateway.requests) == 1
    posted = [c.args.get("text") for c in slack.calls if c.method == "chat.postMessage"]
    assert posted[0] == MEMORY_DOWN  # told once, while the store failed
    assert len(posted) == 2, "then one answer"


async def test_relaybot_slack_connects_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The command the README gives, as a process: tokens from the environment, the Web API
    and Socket Mode behind one base URL (as at Slack), SIGTERM to stop."""
    async with (
        FakeSlack(token=BOT_TOKEN) as slack,
        FakeGateway() as gateway,
        FakeSocketMode(app_token=APP_TOKEN, web_api=slack.api_url) as socket,
        asyncio.timeout(40),  # a Python start-up, then loopback sockets, on a loaded machine
    ):
        gateway.enqueue(Stream(openai_chunks(ANSWER, pieces=8)))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RELAYBOT_", "OFOX_", "SLACK_"))
        }
        env |= {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "RELAYBOT_SLACK__API_URL": socket.api_url,
            "RELAYBOT_SLACK__EDIT_INTERVAL": "0.05",
            "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
            "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
            "OFOX_API_KEY": "sk-test",
            "RELAYBOT_STORE__URL": f"sqlite:///{tmp_path / 'relaybot.db'}",
            "RELAYBOT_LOG_LEVEL": "WARNING",  # so any warning or error shows in stderr
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "slack", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await socket.connected()
            asked = slack.seed_message("D1", "U1", QUESTION)
            envelope_id = await socket.send_event(direct_message(asked))
            assert await socket.ack(envelope_id) == {"envelope_id": envelope_id}
            await until(lambda: answered(slack, "D1", asked), "an answer", within=None)
            process.send_signal(signal.SIGTERM)
            out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert (process.returncode, out, err.decode()) == (
        0,
        b"",
        "relaybot: connected to Slack (Socket Mode)\n",
    )
    reply = answered(slack, "D1", asked)
    assert reply is not None
    assert (reply.thread_ts, reply.shown) == (asked, ANSWER)  # streamed natively: a DM
    assert socket.opens == 1
    assert slack.methods()[0] == "auth.test"  # the bot token is checked before connecting


async def test_a_bot_token_given_as_the_app_token_stops_the_bot_at_start() -> None:
    async with (
        FakeSlack(token=BOT_TOKEN) as slack,
        FakeSocketMode(app_token=APP_TOKEN, web_api=slack.api_url) as socket,
    ):
        settings = load_settings(
            environ={
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_APP_TOKEN": BOT_TOKEN,  # the common mistake
                "RELAYBOT_SLACK__API_URL": socket.api_url,
                "RELAYBOT_LLM__BASE_URL": "http://127.0.0.1:9/v1",
                "RELAYBOT_STORE__URL": "memory://",
            }
        )
        refused = r"^Slack refused the app-level token \(not_allowed_token_type\)$"
        with pytest.raises(SettingsError, match=refused):
            async with asyncio.timeout(20):  # loopback sockets: a hang fails, load does not
                await run_slack(
                    settings, http=False, host="127.0.0.1", port=0, announce=lambda line: None
                )
    assert socket.opens == 0
