"""The Slack bot end to end: signed HTTP requests in, Web API calls and model requests out.

Each test runs the real bot — slack-bolt's ``AsyncApp`` in HTTP mode on loopback — with its Web
API calls going to the fake Slack (``tests/fakes/slack_api.py``), its model calls to the fake
gateway and its weather to the fake Open-Meteo. Events are POSTed as Slack sends them, signed
with the signing secret; outcomes are awaited by watching the fakes, never by sleeping. The last
tests run ``relaybot slack`` itself. (Socket Mode: ``tests/test_slack_socket_mode.py``.)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from adapters.text import join_pieces
from bots.replies import NOT_YOURS, THINKING
from bots.runtime import Runtime
from bots.settings import load_settings
from bots.slack.answers import FILES_SKIPPED
from bots.slack.app import ASSISTANT_STATUS, SlackBot, slack_bot
from bots.slack.messages import plain_text
from bots.slack.server import EVENTS_PATH, HEALTH_PATH, serve_http
from bots.slack.settings import LOADING_MESSAGES
from bots.stops import RedisStops
from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.store import ConversationStore
from tests.conftest import Spawn
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.slack_api import (
    BOT_ID,
    BOT_USER,
    SLACK_LIMITS,
    TEAM,
    FakeSlack,
    Limit,
    Message,
    ratelimited,
)
from tests.fakes.streams import openai_chunks
from tests.support.harness import BotHarness
from tests.support.waiting import until

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test"
CHANNEL, DM = "C1", "D1"
ADA, JEANNE, GRACE = "U1", "U2", "U3"  # Grace is a workspace admin
WAIT = 30.0
"""The bound on waiting for ``relaybot slack`` as a process: a Python start-up importing the
Slack SDKs, on a machine that may be loaded; still inside the suite's 60 s per test."""
UNLIMITED = {"count": 1000, "seconds": 1, "burst": 100}  # edits: the tests are not about budgets
REDIS_URL = "redis://127.0.0.1:6379/0"


# --- the harness -------------------------------------------------------------------------------


class SlowOpenMeteo(FakeOpenMeteo):
    """Open-Meteo whose geocoding answers only once ``go`` is set: the tool is seen running."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def _search(self, request: web.Request) -> web.StreamResponse:
        await self.go.wait()
        return await super()._search(request)


@dataclass(frozen=True)
class Held(Stream):
    """A stream whose first ``after`` writes go out at once and the rest once ``go`` is set: an
    answer seen streaming, held as long as a test needs, then ended as the model ends it."""

    after: int = 1
    go: asyncio.Event = field(default_factory=asyncio.Event)


class HoldingGateway(FakeGateway):
    """The fake gateway, able to hold a stream mid-way (:class:`Held`)."""

    async def _stream(self, request: web.Request, reply: Stream) -> web.StreamResponse:
        if not isinstance(reply, Held):
            return await super()._stream(request, reply)
        response = web.StreamResponse(headers={"Content-Type": reply.content_type})
        await response.prepare(request)
        for index, chunk in enumerate(reply.chunks()):
            if index == reply.after:
                await reply.go.wait()
                if request.transport is None or request.transport.is_closing():
                    return response  # the bot hung up meanwhile (a Stop)
            await response.write(chunk)
        await response.write_eof()
        return response


class Harness(BotHarness[SlackBot]):
    """The bot served on loopback, the fakes it talks to, and Slack's side of the wire."""

    def __init__(
        self, bot: SlackBot, url: str, slack: FakeSlack, gateway: FakeGateway,
        weather: SlowOpenMeteo, http: aiohttp.ClientSession, runtime: Runtime,
    ) -> None:  # fmt: skip
        super().__init__(bot, gateway)
        self.url, self.slack, self.weather = url, slack, weather
        self.http, self.runtime = http, runtime
        self._event_ids = (f"Ev{n:08d}" for n in itertools.count(1))

    # Slack's side: signed requests.

    async def post(self, body: str, content_type: str, **headers: str) -> int:
        stamp = headers.pop("timestamp", str(int(time.time())))
        signed = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature(SECRET, stamp, body),
            **headers,
        }
        async with self.http.post(self.url + EVENTS_PATH, data=body, headers=signed) as response:
            return response.status

    async def send(
        self, event: dict[str, Any], *, event_id: str | None = None, **headers: str
    ) -> int:
        """POST ``event`` in an ``event_callback`` envelope, as the Events API does."""
        body = json.dumps(envelope(event, event_id or next(self._event_ids)))
        return await self.post(body, "application/json", **headers)

    async def press_stop(self, user: str, reply: Message) -> int:
        """``user`` presses the Stop button of ``reply`` (an interactivity payload)."""
        payload = block_actions(user, reply)
        return await self.post(urlencode({"payload": json.dumps(payload)}),
                               "application/x-www-form-urlencoded")  # fmt: skip

    # Watching the outcome.

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's messages in a thread, as shown now."""
        return [m for m in self.slack.thread(channel, thread_ts) if m.bot_id == BOT_ID]

    def finished(self, channel: str, thread_ts: str) -> bool:
        shown = self.replies(channel, thread_ts)
        return bool(shown) and all(not actions(m.blocks) for m in shown) and self.bot.busy == 0

    async def answer(self, channel: str, thread_ts: str) -> str:
        """The bot's finished answer in a thread, all its messages joined."""
        await self.until(lambda: self.finished(channel, thread_ts), "an answer")
        return join_pieces([m.text if m.streamed else m.markdown
                            for m in self.replies(channel, thread_ts)])  # fmt: skip

    def writes(self) -> list[str]:
        """The Web API methods called, ``auth.test`` (bolt's, once) left out."""
        return [method for method in self.slack.methods() if method != "auth.test"]


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """``await start(**settings)`` serves a bot; ``settings`` become ``RELAYBOT_*`` variables
    (``store=`` gives the store, instead of a new memory store; ``slack_limits=`` the fake
    Slack's rate limits, ``None`` for none, ``slack_time_scale=`` their windows' scale, and
    ``slack_streaming=`` whether the fake lets the app stream natively, and
    ``slack_stream_lifetime=`` how long a stream lives). Answers are edited
    messages unless ``slack__streaming`` says otherwise: these tests are about that path."""
    async with AsyncExitStack() as stack:

        async def begin(
            *,
            store: ConversationStore | None = None,
            slack_limits: Mapping[str, Limit] | None = SLACK_LIMITS,
            slack_time_scale: float = 1.0,
            slack_streaming: Literal["ok", "not_agent_app", "feature_disabled"] = "ok",
            slack_stream_lifetime: float = 300.0,
            **settings: str,
        ) -> Harness:
            fake = FakeSlack(token=TOKEN, limits=slack_limits, time_scale=slack_time_scale,
                             streaming=slack_streaming,
                             stream_lifetime=slack_stream_lifetime)  # fmt: skip
            slack = await stack.enter_async_context(fake)
            gateway = await stack.enter_async_context(HoldingGateway())
            weather = SlowOpenMeteo()
            await stack.enter_async_context(weather)
            stack.callback(weather.go.set)
            environ = {
                "OFOX_API_KEY": "sk-test",
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
                "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "1",
                "RELAYBOT_LLM__TIMEOUTS__TOTAL": "5",
                "RELAYBOT_SLACK__API_URL": slack.api_url,
                "RELAYBOT_SLACK__EDIT_INTERVAL": "0.02",
                "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
                "RELAYBOT_STORE__URL": "memory://",
                "RELAYBOT_EDIT_BUDGET__SLACK_WORKSPACE": json.dumps(UNLIMITED),
                "RELAYBOT_EDIT_BUDGET__SLACK_CHANNEL": json.dumps(UNLIMITED),
                "RELAYBOT_EDIT_BUDGET__SLACK_STREAM_START": json.dumps(UNLIMITED),
                "RELAYBOT_EDIT_BUDGET__SLACK_STREAM_STOP": json.dumps(UNLIMITED),
                "RELAYBOT_EDIT_BUDGET__SLACK_STREAM_APPEND": json.dumps(UNLIMITED),
                "RELAYBOT_SLACK__STREAMING": "edit",
                "RELAYBOT_TOOLS__WEATHER_GEOCODING_URL": weather.url,
                "RELAYBOT_TOOLS__WEATHER_FORECAST_URL": weather.url,
                **{f"RELAYBOT_{name.upper()}": value for name, value in settings.items()},
            }
            runtime = await stack.enter_async_context(
                Runtime.start(load_settings(environ=environ), announce=print, store=store)
            )
            bot = await stack.enter_async_context(slack_bot(runtime, http=True))
            url = await stack.enter_async_context(serve_http(bot, host="127.0.0.1", port=0))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            return Harness(bot, url, slack, gateway, weather, http, runtime)

        yield begin


@pytest.fixture
async def bot(start: Callable[..., Awaitable[Harness]]) -> Harness:
    return await start()


# --- Slack's payloads --------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def envelope(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }  # fmt: skip


def mention(ts: str, text: str, *, user: str = ADA, thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": CHANNEL,
             "event_ts": ts, "team": TEAM}  # fmt: skip
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def message(
    ts: str, text: str, *, user: str = ADA, channel: str = CHANNEL, thread_ts: str | None = None,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    event = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
             "event_ts": ts, "team": TEAM,
             "channel_type": "im" if channel.startswith("D") else "channel"}  # fmt: skip
    return event | ({"thread_ts": thread_ts} if thread_ts else {}) | extra


def block_actions(user: str, reply: Message) -> dict[str, Any]:
    (button,) = actions(reply.blocks)
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": reply.ts, "channel_id": reply.channel,
                      "is_ephemeral": False, "thread_ts": reply.thread_ts},
        "trigger_id": "1.2.3",
        "team": {"id": TEAM, "domain": "team-one"},
        "channel": {"id": reply.channel, "name": "general"},
        "message": reply.payload(),
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [{**button, "block_id": "stop", "action_ts": "1700000001.000000"}],
    }  # fmt: skip


def actions(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The buttons of a message's actions blocks."""
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def status_of(blocks: list[dict[str, Any]]) -> str:
    return " ".join(e["text"] for b in blocks if b["type"] == "context" for e in b["elements"])


def answer(text: str, *, delay: float = 0.0, pieces: int | None = None) -> Stream:
    return Stream(openai_chunks(text, pieces=pieces), delay_between=delay)


# --- mentions, threads, DMs --------------------------------------------------------------------


async def test_a_mention_gets_a_threaded_answer_that_grows_by_edits(bot: Harness) -> None:
    text = "Server-Sent Events push text over one long HTTP response, line by line."
    bot.gateway.enqueue(answer(text, delay=0.01))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> what is SSE?")
    assert await bot.send(mention(asked, "<@UBOT> what is SSE?")) == 200

    assert await bot.answer(CHANNEL, asked) == text
    (reply,) = bot.replies(CHANNEL, asked)
    assert reply.thread_ts == asked
    shown = [c.args["blocks"] for c in bot.slack.calls if c.method in ("chat.postMessage",
             "chat.update")]  # fmt: skip
    texts = [next((b["text"] for b in blocks if b["type"] == "markdown"), "") for blocks in shown]
    assert status_of(shown[0]) == f"_{THINKING}_"  # the placeholder, at once
    assert len(set(texts)) >= 4, "the answer grows in several edits"
    assert all(text.startswith(t) for t in texts)
    assert texts[-1] == text
    assert not actions(shown[-1]), "the Stop button goes away at the end"
    assert bot.model_messages(0) == [("user", "what is SSE?")]


async def test_a_follow_up_in_the_thread_continues_the_conversation(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Nice to meet you, Ada."), answer("You said your name is Ada."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> I'm Ada")
    await bot.send(mention(asked, "<@UBOT> I'm Ada"))
    await bot.answer(CHANNEL, asked)

    again = bot.slack.seed_message(CHANNEL, ADA, "What did I say?", thread_ts=asked)
    await bot.send(message(again, "What did I say?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")

    assert [m.markdown for m in bot.replies(CHANNEL, asked)] == [
        "Nice to meet you, Ada.",
        "You said your name is Ada.",
    ]
    assert bot.model_messages(1) == [
        ("user", "I'm Ada"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What did I say?"),
    ]


async def test_a_direct_message_is_answered_in_its_thread_with_the_assistant_status(
    bot: Harness,
) -> None:
    bot.gateway.enqueue(answer("Hello!"))
    said = bot.slack.seed_message(DM, ADA, "hi")
    await bot.send(message(said, "hi", channel=DM))

    assert await bot.answer(DM, said) == "Hello!"
    (status,) = [c for c in bot.slack.calls if c.method == "assistant.threads.setStatus"]
    assert status.args == {"channel_id": DM, "thread_ts": said, "status": ASSISTANT_STATUS,
                           "loading_messages": list(LOADING_MESSAGES)}  # fmt: skip
    first = next(c for c in bot.slack.calls if c.method == "chat.postMessage")
    assert THINKING not in json.dumps(first.args), "the status replaces the placeholder"
    assert bot.slack.statuses == {}  # the reply cleared it


async def test_a_mention_mid_thread_reads_the_thread_back_once(bot: Harness) -> None:
    parent = bot.slack.seed_message(CHANNEL, JEANNE, "Postgres or SQLite for the cache?")
    bot.slack.seed_message(CHANNEL, BOT_USER, "SQLite: one file, no server.", thread_ts=parent)
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> and for 10 writers?", thread_ts=parent)
    bot.gateway.enqueue(answer("Then Postgres."), answer("Yes."))
    await bot.send(mention(asked, "<@UBOT> and for 10 writers?", thread_ts=parent))
    await bot.answer(CHANNEL, parent)  # (the seeded reply is Slack's, not one the bot posted)
    more = bot.slack.seed_message(CHANNEL, ADA, "sure?", thread_ts=parent)
    await bot.send(message(more, "sure?", thread_ts=parent))
    await bot.until(lambda: len(bot.replies(CHANNEL, parent)) == 2 and bot.bot.busy == 0, "2")

    assert bot.model_messages(0) == [
        ("user", "Jeanne: Postgres or SQLite for the cache?"),
        ("assistant", "SQLite: one file, no server."),
        ("user", "ada: and for 10 writers?"),
    ]
    assert bot.slack.methods().count("conversations.replies") == 1
    assert bot.model_messages(1)[-2:] == [("assistant", "Then Postgres."), ("user", "ada: sure?")]


async def test_the_input_is_plain_words_and_names(bot: Harness) -> None:
    said = (
        "<@UBOT> ask <@U2> and <@U3> in <#C9|random> about "
        "<https://x.y/a?b=1&amp;c=2|the docs> &amp; &lt;b&gt;"
    )
    bot.gateway.enqueue(answer("OK."))
    asked = bot.slack.seed_message(CHANNEL, ADA, said)
    await bot.send(mention(asked, said))
    await bot.answer(CHANNEL, asked)

    assert bot.model_messages(0) == [
        ("user", "ask @Jeanne and @Grace Hopper in #random about "
                 "the docs (https://x.y/a?b=1&c=2) & <b>"),
    ]  # fmt: skip
    system = bot.gateway.requests[0].json["messages"][0]["content"]
    assert "The user's time zone is Europe/London" in system
    assert "You are answering ada on Slack." in system


async def test_a_file_slack_gives_no_address_for_is_a_note_before_the_answer(
    bot: Harness,
) -> None:
    """A file Slack lists without a URL (deleted, hidden by the plan): the asker reads which
    and why, and the model answers the words. (Files that download: test_slack_attachments.)"""
    bot.gateway.enqueue(answer("Here is a summary."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> summarize this")
    files = [{"id": "F1", "name": "report.pdf", "mimetype": "application/pdf"}]
    await bot.send(message(asked, "<@UBOT> summarize this", subtype="file_share", files=files))

    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2, "a note and an answer")
    await bot.answer(CHANNEL, asked)
    note = '"report.pdf" was skipped: it could not be downloaded: no address was given for it.'
    assert [m.markdown or m.text for m in bot.replies(CHANNEL, asked)] == [
        FILES_SKIPPED.format(notes=note),
        "Here is a summary.",
    ]
    assert bot.model_messages(0)[0][0] == "user"
    assert bot.slack.file_requests == []


async def test_an_over_long_message_is_refused_politely(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(slack__max_input_chars="100")
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> " + "x" * 150)
    await bot.send(mention(asked, "<@UBOT> " + "x" * 150))
    await bot.settled()
    assert [m.text for m in bot.replies(CHANNEL, asked)] == [
        "That message is too long for me (150 characters; I read up to 100). Could you shorten it?"
    ]
    assert bot.gateway.requests == []


@pytest.mark.parametrize(
    ("markup", "words"),
    [
        ("<@UBOT>: hi", "hi"),
        ("hey <@UBOT|relaybot>, what's up", "hey what's up"),
        ("<@U7|someone> and <@U2>", "@someone and @Jeanne"),
        ("<!here> <!channel|@channel> <!subteam^S1|@ops>", "@here @channel @ops"),
        ("<mailto:a@b.c|a@b.c> <https://x.y> <#C2>", "a@b.c https://x.y #C2"),
        ("x &lt; y &amp;&amp; y &gt; z", "x < y && y > z"),
    ],
)
def test_slack_markup_as_plain_words(markup: str, words: str) -> None:
    assert plain_text(markup, bot_user_id=BOT_USER, names={JEANNE: "Jeanne"}) == words


# --- tools -------------------------------------------------------------------------------------


async def test_a_weather_question_runs_get_weather_with_the_status_shown(bot: Harness) -> None:
    call = ("call_1", "get_weather", '{"city": "Paris"}')
    bot.gateway.enqueue(Stream(openai_chunks(tool_calls=[call])), answer("12 °C in Paris."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> weather in Paris?")
    await bot.send(mention(asked, "<@UBOT> weather in Paris?"))

    def shown(status: str) -> bool:
        return any(status in status_of(c.args.get("blocks") or []) for c in bot.slack.calls)

    await bot.until(lambda: shown("_Checking the weather in Paris…_"), "the tool's status")
    bot.weather.go.set()
    assert await bot.answer(CHANNEL, asked) == "12 °C in Paris."
    assert [q.params["name"] for q in bot.weather.requests[:1]] == ["Paris"]
    assert bot.model_messages(1)[-1][0] == "tool"
    assert "Paris" in bot.model_messages(1)[-1][1]


# --- one answer per message, none for bots and edits -------------------------------------------


async def test_a_redelivered_event_and_a_mention_message_pair_get_one_answer(
    bot: Harness,
) -> None:
    bot.gateway.enqueue(answer("Once."), answer("Twice?"))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hello")
    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1") == 200
    assert await bot.send(message(asked, "<@UBOT> hello"), event_id="Ev2") == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1", **retry) == 200

    assert await bot.answer(CHANNEL, asked) == "Once."
    assert len(bot.gateway.requests) == 1
    assert bot.writes().count("chat.postMessage") == 1


async def test_bots_edits_and_strangers_threads_get_no_answer(bot: Harness) -> None:
    top = bot.slack.seed_message(CHANNEL, JEANNE, "lunch?")
    quiet = [
        message("1700000001.000100", "<@UBOT> hi", user="U9", bot_id="B9",
                bot_profile={"id": "B9", "name": "otherbot"}),
        message("1700000001.000200", "Hello!", user=BOT_USER, bot_id=BOT_ID),
        {"type": "message", "subtype": "message_changed", "channel": CHANNEL,
         "channel_type": "channel", "ts": "1700000001.000300", "event_ts": "1700000001.000300",
         "message": {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": "<@UBOT>",
                     "ts": "1700000000.000900", "edited": {"ts": "1700000001.000300"}}},
        message("1700000001.000400", "", subtype="channel_join"),
        message("1700000001.000500", "<@UBOT> hi", subtype="message_deleted"),
        message("1700000001.000600", "sure", user=ADA, thread_ts=top),  # not the bot's thread
        message("1700000001.000700", "no mention, top level"),
    ]  # fmt: skip
    for event in quiet:
        assert await bot.send(event) == 200
    await bot.settled()
    assert bot.writes() == []
    assert bot.gateway.requests == []


async def test_allowlists_limit_where_and_whom_the_bot_answers(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(slack__allowed_channels='["C2"]', slack__allowed_users='["U1"]')
    bot.gateway.enqueue(answer("In C2."))
    await bot.send(mention(bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> a"), "<@UBOT> a"))
    in_c2 = bot.slack.seed_message("C2", JEANNE, "<@UBOT> b")
    await bot.send(mention(in_c2, "<@UBOT> b", user=JEANNE) | {"channel": "C2"})
    await bot.settled()
    assert bot.writes() == []
    asked = bot.slack.seed_message("C2", ADA, "<@UBOT> c")
    await bot.send(mention(asked, "<@UBOT> c") | {"channel": "C2"})
    assert await bot.answer("C2", asked) == "In C2."


# --- requests Slack did not sign ---------------------------------------------------------------


async def test_a_badly_signed_or_stale_request_is_rejected(bot: Harness) -> None:
    body = json.dumps(envelope(mention("1700000000.000100", "<@UBOT> hi"), "Ev1"))
    now, stale = str(int(time.time())), str(int(time.time()) - 600)
    forged = signature("not-the-secret", now, body)
    assert await bot.post(body, "application/json", **{"X-Slack-Signature": forged}) == 401
    assert await bot.post(body, "application/json", timestamp=stale) == 401  # signed, but old
    async with bot.http.post(bot.url + EVENTS_PATH, data=body) as response:  # not signed
        assert response.status == 401
    assert bot.slack.calls == []
    async with bot.http.get(bot.url + HEALTH_PATH) as response:
        assert (response.status, await response.json()) == (200, {"ok": True, "busy": 0})


# --- Slack pushing back ------------------------------------------------------------------------


async def test_a_rate_limited_edit_is_retried_after_retry_after(bot: Harness) -> None:
    text = "A steady answer that arrives in several pieces."
    bot.slack.fail("chat.update", ratelimited(retry_after=1))
    bot.gateway.enqueue(answer(text, delay=0.005))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> go")
    await bot.send(mention(asked, "<@UBOT> go"))

    assert await bot.answer(CHANNEL, asked) == text
    updates = [c for c in bot.slack.calls if c.method == "chat.update"]
    # The fake answers 'ratelimited' to every update within the Retry-After: the next update
    # succeeding means the reply waited it out, however slow or fast the machine.
    assert updates[0].error == "ratelimited"
    assert updates[1].error is None


async def test_an_over_long_answer_continues_in_a_second_message(bot: Harness) -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 199 for n in range(14))  # ~14,000 chars
    bot.gateway.enqueue(answer(text, pieces=700))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> write a lot")
    await bot.send(mention(asked, "<@UBOT> write a lot"))

    assert await bot.answer(CHANNEL, asked) == text
    first, second = bot.replies(CHANNEL, asked)
    assert len(first.markdown) <= 12_000
    assert second.markdown.startswith("Paragraph")


async def test_the_bot_removed_mid_answer_stops_cleanly(bot: Harness) -> None:
    text = "word " * 200
    bot.gateway.enqueue(answer(text, delay=0.01))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> go on")
    await bot.send(mention(asked, "<@UBOT> go on"))
    await bot.until(lambda: any(m.markdown for m in bot.replies(CHANNEL, asked)), "some text")
    bot.slack.remove_bot(CHANNEL)

    await bot.settled()
    refused = [c for c in bot.slack.calls if c.error == "not_in_channel"]
    assert len(refused) == 1, "nothing is sent after Slack said the bot is out"
    assert bot.slack.calls[-1] is refused[0]
    key = ConversationKey(platform="slack", workspace=TEAM, channel=CHANNEL, thread=asked)
    user, said = await bot.runtime.store.load(key)
    assert isinstance(user, UserMessage)
    assert isinstance(said, AssistantMessage)
    assert said.stopped
    assert len(said.text) < len(text)


# --- Stop --------------------------------------------------------------------------------------


async def started(bot: Harness, *, asker: str = ADA) -> tuple[str, Message]:
    """A question whose answer has begun and then waits (the model stalls)."""
    bot.gateway.enqueue(Stream.stalled(openai_chunks("Counting: one two three"), after=4))
    asked = bot.slack.seed_message(CHANNEL, asker, "<@UBOT> count")
    await bot.send(mention(asked, "<@UBOT> count", user=asker))
    await bot.until(lambda: any(m.markdown == "Counting: on" for m in bot.replies(CHANNEL, asked)),
                    "the first words")  # fmt: skip
    (reply,) = bot.replies(CHANNEL, asked)
    return asked, reply


async def test_stop_cancels_the_answer_and_a_strangers_press_is_refused(bot: Harness) -> None:
    asked, reply = await started(bot)

    assert await bot.press_stop(JEANNE, reply) == 200
    await bot.until(lambda: "chat.postEphemeral" in bot.slack.methods(), "a note to Jeanne")
    (note,) = [c for c in bot.slack.calls if c.method == "chat.postEphemeral"]
    assert note.args == {"channel": CHANNEL, "user": JEANNE, "thread_ts": asked, "text": NOT_YOURS}
    assert note.error is None
    assert bot.bot.busy == 1, "the answer goes on"

    assert await bot.press_stop(ADA, reply) == 200
    assert await bot.answer(CHANNEL, asked) == "Counting: on"
    (final,) = bot.replies(CHANNEL, asked)
    assert status_of(final.blocks) == "_Stopped._"
    assert [b["type"] for b in final.blocks] == ["markdown", "context"], "no feedback buttons"
    key = ConversationKey(platform="slack", workspace=TEAM, channel=CHANNEL, thread=asked)
    said = (await bot.runtime.store.load(key))[-1]
    assert isinstance(said, AssistantMessage)
    assert said.stopped


async def test_a_workspace_admin_may_stop_any_answer(bot: Harness) -> None:
    asked, reply = await started(bot, asker=JEANNE)
    assert await bot.press_stop(GRACE, reply) == 200
    assert await bot.answer(CHANNEL, asked) == "Counting: on"
    assert "chat.postEphemeral" not in bot.slack.methods()


async def test_a_stop_press_reaches_the_answer_through_redis(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    prefix = f"relaybot-test:{uuid.uuid4().hex}:"
    bot = await start(redis__url=REDIS_URL, redis__key_prefix=prefix)
    stops = bot.runtime.stops
    assert isinstance(stops, RedisStops)
    async with Redis.from_url(REDIS_URL) as redis, redis.pubsub() as heard:
        await heard.subscribe(stops.channel)
        asked, reply = await started(bot)
        (turn_id,) = bot.bot.worker.answering_ids()

        assert await bot.press_stop(ADA, reply) == 200

        assert await bot.answer(CHANNEL, asked) == "Counting: on"
        (final,) = bot.replies(CHANNEL, asked)
        assert status_of(final.blocks) == "_Stopped._"
        published = [m async for m in _messages(heard, until=str(turn_id).encode())]
        assert published == [str(turn_id).encode()]
        assert await redis.pttl(stops.key(turn_id)) > 0
        await redis.delete(stops.key(turn_id))


async def test_an_answer_whose_stop_was_requested_before_it_began_stops(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    prefix = f"relaybot-test:{uuid.uuid4().hex}:"
    bot = await start(redis__url=REDIS_URL, redis__key_prefix=prefix)
    stops = bot.runtime.stops
    assert isinstance(stops, RedisStops)
    bot.gateway.enqueue(Stream.stalled(openai_chunks("Counting: one two three"), after=4))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> count")
    try:
        await stops.request(1)  # the memory store's first turn, pressed on another worker
        await bot.send(mention(asked, "<@UBOT> count"))
        assert await bot.answer(CHANNEL, asked) == "Coun", "its first words, then stopped"
        (final,) = bot.replies(CHANNEL, asked)
        assert status_of(final.blocks) == "_Stopped._"
    finally:
        async with Redis.from_url(REDIS_URL) as redis:
            await redis.delete(stops.key(1))


async def _messages(pubsub: PubSub, *, until: bytes) -> AsyncIterator[bytes]:
    async for message in pubsub.listen():
        if message["type"] == "message":
            yield message["data"]
            if message["data"] == until:
                return


# --- the command line --------------------------------------------------------------------------


async def relaybot_slack(spawn: Spawn, *args: str, **environ: str) -> asyncio.subprocess.Process:
    """``relaybot slack ...`` as a process, configured by ``environ`` alone."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYBOT_", "SLACK_"))}
    keep.pop("OFOX_API_KEY", None)
    return await spawn(sys.executable, "-m", "bots", "slack", *args, env=keep | environ)


@pytest.mark.parametrize(
    ("args", "environ", "problem"),
    [
        ((), {}, "relaybot slack needs the bot token: set SLACK_BOT_TOKEN (xoxb-...)"),
        ((), {"SLACK_BOT_TOKEN": TOKEN}, "Socket Mode needs the app-level token: set "
         "SLACK_APP_TOKEN (xapp-...), or run with --http and SLACK_SIGNING_SECRET"),
        (("--http",), {"SLACK_BOT_TOKEN": TOKEN},
         "HTTP mode needs the app's signing secret: set SLACK_SIGNING_SECRET"),
        (("--http",), {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                       "RELAYBOT_STORE__URL": "postgresql://relaybot@127.0.0.1:9/relaybot"},
         "several HTTP workers behind one address need redis.url to share Stop and the edit "
         "budgets; set it, or set fleet.single_worker = true if this is the only worker"),
    ],
)  # fmt: skip
async def test_a_missing_token_is_named_in_one_line(
    args: tuple[str, ...], environ: dict[str, str], problem: str, spawn: Spawn
) -> None:
    process = await relaybot_slack(spawn, *args, **environ)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert (process.returncode, out, err.decode()) == (2, b"", f"relaybot: {problem}\n")


async def test_http_mode_serves_events_and_health_until_sigterm(spawn: Spawn) -> None:
    async with FakeSlack(token=TOKEN) as slack, FakeGateway() as gateway:
        gateway.enqueue(answer("From a real process."))
        process = await relaybot_slack(
            spawn, "--http", "--host", "127.0.0.1", "--port", "0",
            OFOX_API_KEY="sk-test", SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET,
            RELAYBOT_LLM__BASE_URL=gateway.url + "/v1", RELAYBOT_SLACK__API_URL=slack.api_url,
            RELAYBOT_STORE__URL="memory://", RELAYBOT_SLACK__EDIT_INTERVAL="0.02",
        )  # fmt: skip
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
        assert line.startswith("relaybot: listening for Slack on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip().removesuffix(EVENTS_PATH)
        asked = slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
        body = json.dumps(envelope(mention(asked, "<@UBOT> hi"), "Ev1"))
        now = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                   "X-Slack-Signature": signature(SECRET, now, body)}  # fmt: skip
        async with aiohttp.ClientSession() as http:
            async with http.get(url + HEALTH_PATH) as response:
                assert response.status == 200
            async with http.post(url + EVENTS_PATH, data=body, headers=headers) as response:
                assert response.status == 200

        def answered() -> bool:
            return any(m.markdown == "From a real process." for m in slack.thread(CHANNEL, asked))

        await until(answered, "an answer")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
