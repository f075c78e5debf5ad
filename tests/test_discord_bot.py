"""The Discord bot end to end: real discord.py against the loopback Discord, model calls to the
loopback gateway.

Each test runs the real bot — ``discord_bot()`` logs in over REST and holds a gateway session
with ``tests/fakes/fake_discord/`` (pointed at it by ``RELAYBOT_DISCORD__API_URL`` and
``RELAYBOT_DISCORD__GATEWAY_URL``) — pushes messages and button presses as Discord would, and
waits on the fakes' state, never on a fixed sleep. The fake answers 429 past 5 message writes
per channel per window (here 0.5 s, with the edit budget scaled to match); every test ends by
checking that no request met one. The last tests run ``relaybot discord`` itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import discord
import pytest
from redis.asyncio import Redis

from adapters.text import join_pieces
from bots.discord.bot import DiscordBot
from bots.discord.channels import unarchive
from bots.discord.client import NO_MESSAGE_CONTENT, invite_url
from bots.discord.messages import Names, plain_text, thread_name
from bots.discord.runner import discord_bot
from bots.discord.sessions import DirectSessions
from bots.discord.stop import STOP_PREFIX
from bots.replies import NEW_CONVERSATION, NOT_YOURS
from bots.runtime import Runtime
from bots.settings import load_settings
from bots.stops import RedisStops
from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.store import Turn, discord_order
from tests.conftest import REDIS_URL, Spawn
from tests.fakes.fake_discord import (
    ADA,
    BOT,
    BOT_ROLE,
    CHANNEL,
    GRACE,
    GUILD,
    JEANNE,
    MOD_ROLE,
    NO_THREADS_CHANNEL,
    OTHER_BOT,
    PRIVILEGED_INTENTS,
    FakeDiscord,
    Message,
)
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.support.clock import FakeTime
from tests.support.harness import BotHarness
from tests.support.waiting import until

TOKEN = "bot-token"
WAIT = 30.0
"""The bound on waiting for ``relaybot discord`` as a process: a Python start-up importing
discord.py, on a machine that may be loaded; still inside the suite's 60 s per test."""
WINDOW = 0.5
"""The fake's rate-limit window: Discord's 5 writes per 5 s per channel, ten times faster."""
CHANNEL_BUDGET = {"count": 4, "seconds": WINDOW, "burst": 1}  # the default, scaled alike
LOGIN = ("GET /users/@me", "GET /oauth2/applications/@me")
HOUR = 3600.0


# --- the harness -------------------------------------------------------------------------------


class Harness(BotHarness[DiscordBot]):
    """The connected bot, the fakes it talks to, and Discord's side of the wire."""

    def __init__(
        self, bot: DiscordBot, fake: FakeDiscord, gateway: FakeGateway, runtime: Runtime,
        clock: FakeTime,
    ) -> None:  # fmt: skip
        super().__init__(bot, gateway)
        self.fake, self.runtime, self.clock = fake, runtime, clock

    async def ask(self, channel: int, text: str, *, user: Any = ADA) -> Message:
        return await self.fake.user_message(channel, user, text)

    def replies(self, channel: int) -> list[Message]:
        """The bot's messages in a channel, thread or DM, as shown now."""
        return [m for m in self.fake.messages(channel) if m.author.id == BOT.id]

    def finished(self, channel: int) -> bool:
        shown = self.replies(channel)
        return bool(shown) and not any(m.components for m in shown) and self.bot.busy == 0

    async def answer(self, channel: int) -> str:
        """The bot's finished answer in a channel, all its messages joined."""
        await self.until(lambda: self.finished(channel), f"an answer in {channel}")
        return join_pieces([m.content for m in self.replies(channel)])

    def writes(self) -> list[str]:
        """The routes of the REST calls after logging in."""
        return [route for route in self.fake.routes() if route not in LOGIN]

    def shown(self, channel: int) -> list[str]:
        """Each content the bot sent or edited into ``channel``, in order."""
        return [
            str(call.json.get("content"))
            for call in self.fake.calls
            if call.path.startswith(f"/channels/{channel}/messages")
            and call.method in ("POST", "PATCH") and call.status == 200
        ]  # fmt: skip


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """``await start(**settings)`` connects a bot; ``settings`` become ``RELAYBOT_*``
    variables (``discord__max_input_chars="100"``)."""
    fakes: list[FakeDiscord] = []
    async with AsyncExitStack() as stack:

        async def begin(**settings: str) -> Harness:
            fake = await stack.enter_async_context(FakeDiscord(token=TOKEN, window=WINDOW))
            fakes.append(fake)
            gateway = await stack.enter_async_context(FakeGateway())
            environ = {
                "OFOX_API_KEY": "sk-test",
                "DISCORD_BOT_TOKEN": TOKEN,
                "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
                "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "1",
                "RELAYBOT_LLM__TIMEOUTS__TOTAL": "5",
                "RELAYBOT_DISCORD__API_URL": fake.api_url,
                "RELAYBOT_DISCORD__GATEWAY_URL": fake.gateway_url,
                "RELAYBOT_DISCORD__EDIT_INTERVAL": "0.05",
                "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
                "RELAYBOT_EDIT_BUDGET__DISCORD_CHANNEL": json.dumps(CHANNEL_BUDGET),
                "RELAYBOT_STORE__URL": "memory://",
                "RELAYBOT_TOOLS__WEATHER_ENABLED": "false",
                **{f"RELAYBOT_{name.upper()}": value for name, value in settings.items()},
            }
            runtime = await stack.enter_async_context(
                Runtime.start(load_settings(environ=environ), announce=print)
            )
            clock = FakeTime()
            bot = await stack.enter_async_context(
                discord_bot(runtime, clock=clock, guild_ready_timeout=0.01)
            )
            await bot.ready()
            return Harness(bot, fake, gateway, runtime, clock)

        yield begin
    assert [fake.rate_limited for fake in fakes] == [0] * len(fakes), "a request met a 429"


@pytest.fixture
async def bot(start: Callable[..., Awaitable[Harness]]) -> Harness:
    return await start()


def answer(text: str, *, delay: float = 0.0, pieces: int | None = None) -> Stream:
    return Stream(openai_chunks(text, pieces=pieces), delay_between=delay)


def mention(text: str) -> str:
    return f"{BOT.mention} {text}"


# --- a mention opens a thread ------------------------------------------------------------------


async def test_a_mention_opens_a_thread_and_the_answer_grows_by_edits(bot: Harness) -> None:
    text = "Server-Sent Events push text over one long HTTP response, line by line, as it comes."
    chunks = openai_chunks(text)
    bot.gateway.enqueue(Stream(chunks, delay_between=0.02))
    asked = await bot.ask(CHANNEL, mention("what is SSE?"))
    await bot.until(lambda: bot.gateway.requests, "a model request")

    await bot.until(lambda: bot.fake.thread(asked.id) is not None, "a thread")
    thread = bot.fake.thread(asked.id)
    assert thread is not None
    assert (thread.parent_id, thread.owner_id, thread.name) == (CHANNEL, BOT.id, "what is SSE?")
    await bot.until(lambda: bot.replies(thread.id), "the first words")
    (streaming,) = bot.replies(thread.id)
    assert len(streaming.custom_ids) == 1
    assert streaming.custom_ids[0].startswith(STOP_PREFIX), "a Stop button while it streams"

    assert await bot.answer(thread.id) == text
    edits = [c for c in bot.fake.calls if c.route == "PATCH /channels/{channel_id}/messages/"
             "{message_id}" and c.path.startswith(f"/channels/{thread.id}/")]  # fmt: skip
    final = edits[-1].json  # when it comes (at once) is LiveReply's, timed in test_live.py
    assert (final["content"], final["components"]) == (text, []), "the answer, the button gone"

    contents = bot.shown(thread.id)
    assert len(set(contents)) >= 3, "the answer grows in several edits"
    assert all(text.startswith(c) for c in contents)
    routes = [c.route for c in bot.fake.calls if c.path.startswith(f"/channels/{thread.id}/")]
    assert routes[0] == "POST /channels/{channel_id}/typing", "typing until the first words"
    assert routes.count("POST /channels/{channel_id}/messages") == 1
    assert "POST /channels/{channel_id}/typing" not in routes[routes.index(
        "POST /channels/{channel_id}/messages"):]  # fmt: skip
    assert bot.replies(CHANNEL) == [], "nothing is posted in the channel itself"
    assert bot.model_messages(0) == [("user", "what is SSE?")]


async def test_a_follow_up_in_the_thread_continues_the_conversation(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Nice to meet you, Ada."), answer("You said your name is Ada."))
    asked = await bot.ask(CHANNEL, mention("I'm Ada"))
    await bot.answer(asked.id)

    await bot.ask(asked.id, "What did I say?")  # no mention: the bot's own thread
    await bot.until(lambda: len(bot.replies(asked.id)) == 2 and bot.bot.busy == 0, "2 answers")
    assert [m.content for m in bot.replies(asked.id)] == [
        "Nice to meet you, Ada.",
        "You said your name is Ada.",
    ]
    assert bot.model_messages(1) == [
        ("user", "I'm Ada"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What did I say?"),
    ]


async def test_a_thread_the_bot_owns_needs_no_mention_even_archived(bot: Harness) -> None:
    # A thread the bot opened before a restart: nothing in memory or the store knows it; its
    # owner_id says it is the bot's. The person's message unarchives it, as Discord does.
    earlier = await bot.fake.start_thread(CHANNEL, BOT, "from yesterday")
    await bot.fake.archive_thread(earlier.id)
    bot.gateway.enqueue(answer("Back again."))
    await bot.ask(earlier.id, "are you there?")

    assert await bot.answer(earlier.id) == "Back again."
    thread = bot.fake.thread(earlier.id)
    assert thread is not None
    assert not thread.archived


async def test_a_thread_still_archived_when_answered_is_unarchived(bot: Harness) -> None:
    """At the discord.py object level: the fake unarchives a thread when a person writes in it,
    so the bot's own unarchiving (for a thread archived again before it answers) is driven
    directly, with the ``Thread`` discord.py gives the bot."""
    earlier = await bot.fake.start_thread(CHANNEL, BOT, "from yesterday")
    await bot.fake.archive_thread(earlier.id)
    thread = await bot.bot.client.fetch_channel(earlier.id)
    assert isinstance(thread, discord.Thread)
    assert thread.archived

    await unarchive(thread)
    shown = bot.fake.thread(earlier.id)
    assert shown is not None
    assert not shown.archived
    edits = [c for c in bot.fake.calls if c.route == "PATCH /channels/{channel_id}"]
    assert [c.json for c in edits] == [{"archived": False}]
    await bot.fake.archive_thread(earlier.id, locked=True)
    await unarchive(await bot.bot.client.fetch_channel(earlier.id))  # type: ignore[arg-type]
    assert len([c for c in bot.fake.calls if c.route == "PATCH /channels/{channel_id}"]) == 1


async def test_a_forum_post_is_answered_in_place_and_a_strangers_thread_needs_a_mention(
    bot: Harness,
) -> None:
    bot.gateway.enqueue(answer("Try restarting it."), answer("Glad it helped."))
    post = await bot.fake.forum_post(JEANNE, "Printer broken", mention("it will not print"))
    assert await bot.answer(post.id) == "Try restarting it."
    assert [t.id for t in bot.fake.threads] == [post.id], "no thread of its own"

    await bot.ask(post.id, "anyone else?", user=ADA)  # not the bot's thread: no mention, no answer
    await bot.settled()
    assert len(bot.replies(post.id)) == 1
    await bot.ask(post.id, mention("that worked"), user=JEANNE)
    await bot.until(lambda: len(bot.replies(post.id)) == 2 and bot.bot.busy == 0, "2 answers")
    assert bot.model_messages(1)[-3:] == [
        ("user", "it will not print"),
        ("assistant", "Try restarting it."),
        ("user", "that worked"),
    ]


async def test_without_permission_to_open_threads_it_replies_inline(bot: Harness) -> None:
    bot.gateway.enqueue(answer("First."), answer("Second."))
    one = await bot.ask(NO_THREADS_CHANNEL, mention("one?"))
    await bot.until(lambda: bot.finished(NO_THREADS_CHANNEL), "an inline answer")
    two = await bot.ask(NO_THREADS_CHANNEL, mention("two?"), user=JEANNE)
    await bot.until(lambda: len(bot.replies(NO_THREADS_CHANNEL)) == 2 and bot.bot.busy == 0, "2")

    first, second = bot.replies(NO_THREADS_CHANNEL)
    assert (first.content, first.reference) == ("First.", reference(NO_THREADS_CHANNEL, one.id))
    assert (second.content, second.reference) == ("Second.", reference(NO_THREADS_CHANNEL, two.id))
    assert not first.pings, "the reply does not ping the asker"
    assert not second.pings
    assert bot.fake.threads == []
    assert bot.model_messages(1) == [("user", "two?")], "each mention is its own conversation"
    key = ConversationKey(platform="discord", workspace=str(GUILD),
                          channel=str(NO_THREADS_CHANNEL), thread=str(one.id))  # fmt: skip
    assert len(await bot.runtime.store.load(key)) == 2


def reference(channel: int, message: int) -> dict[str, Any]:
    return {"type": 0, "message_id": str(message), "channel_id": str(channel),
            "guild_id": str(GUILD)}  # fmt: skip


# --- what is sent --------------------------------------------------------------------------------


async def test_a_long_answer_with_code_spans_three_messages_each_within_the_limit(
    bot: Harness,
) -> None:
    code = "\n".join(f"    print('line {n:03d} of the example program')" for n in range(64))
    text = (
        "Here is the whole program.\n\n" + "Some words of introduction. " * 30 + "\n\n"
        "```python\ndef main():\n" + code + "\n```\n\n" + "And a closing paragraph. " * 30
    )
    assert 4400 <= len(text) <= 4600
    bot.gateway.enqueue(answer(text, pieces=50))
    asked = await bot.ask(CHANNEL, mention("write a program"))

    assert await bot.answer(asked.id) == text, "nothing lost, nothing added"
    messages = [m.content for m in bot.replies(asked.id)]
    assert len(messages) == 3
    assert all(len(m) <= 2000 for m in messages)
    assert messages[0].endswith("\n```")
    assert messages[1].startswith("```python\n")
    assert all(m.count("```") % 2 == 0 for m in messages), "every fence closed in its message"
    assert bot.fake.rate_limited == 0


async def test_mentions_in_the_answer_ping_no_one(bot: Harness) -> None:
    said = f"@everyone look: {ADA.mention} and <@&{MOD_ROLE}> and @here"
    bot.gateway.enqueue(answer(said, pieces=7))
    asked = await bot.ask(CHANNEL, mention("ping everyone"))

    await bot.answer(asked.id)
    writes = [c for c in bot.fake.calls if c.route.endswith(("/messages", "/{message_id}"))]
    assert writes
    assert all(c.json["allowed_mentions"] == {"parse": []} for c in writes)
    (reply,) = bot.replies(asked.id)
    assert not reply.pings
    assert "@everyone" not in reply.content, "mass mentions are neutralized as well"
    assert ADA.mention in reply.content


async def test_bots_webhooks_and_its_own_messages_get_no_answer(bot: Harness) -> None:
    await bot.fake.bot_message(CHANNEL, mention("hello fellow bot"), author=OTHER_BOT)
    await bot.fake.user_message(CHANNEL, BOT, mention("talking to myself"))
    await bot.ask(CHANNEL, "no mention, not a thread")
    await bot.ask(CHANNEL, "@everyone is that a mention?")
    await bot.settled()
    assert bot.writes() == []
    assert bot.gateway.requests == []


async def test_the_input_is_plain_words_and_names(bot: Harness) -> None:
    bot.gateway.enqueue(answer("OK."))
    said = f"<@&{BOT_ROLE}> ask {JEANNE.mention} in <#{CHANNEL}> about <@&{MOD_ROLE}> <t:0:R>"
    asked = await bot.ask(CHANNEL, said)
    await bot.answer(asked.id)
    words = "ask @Jeanne in #general about @Moderators 1970-01-01 00:00 UTC"
    assert bot.model_messages(0) == [("user", words)]
    thread = bot.fake.thread(asked.id)
    assert thread is not None
    assert thread.name == words
    system = bot.gateway.requests[0].json["messages"][0]["content"]
    assert "You are answering Ada on Discord." in system


async def test_an_over_long_message_is_refused_politely(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(discord__max_input_chars="100")
    asked = await bot.ask(CHANNEL, mention("x" * 150))
    await bot.until(lambda: bot.replies(CHANNEL), "a refusal")
    await bot.settled()
    (refusal,) = bot.replies(CHANNEL)
    assert refusal.content == (
        "That message is too long for me (150 characters; I read up to 100). Could you shorten it?"
    )
    assert refusal.reference == reference(CHANNEL, asked.id)
    assert (bot.fake.threads, bot.gateway.requests) == ([], [])


# --- losing the thread, and Stop -------------------------------------------------------------


async def started(bot: Harness, *, asker: Any = ADA) -> Message:
    """A question whose answer has begun and then waits (the model stalls)."""
    bot.gateway.enqueue(Stream.stalled(openai_chunks("Counting: one two three"), after=4))
    asked = await bot.ask(CHANNEL, mention("count"), user=asker)
    await bot.until(lambda: any(m.content == "Counting: on" for m in bot.replies(asked.id)),
                    "the first words")  # fmt: skip
    return asked


async def test_a_deleted_thread_stops_the_reply(bot: Harness) -> None:
    text = "word " * 400
    bot.gateway.enqueue(answer(text, delay=0.005))
    asked = await bot.ask(CHANNEL, mention("go on"))
    await bot.until(lambda: any(m.content for m in bot.replies(asked.id)), "some text")
    await bot.fake.delete_channel(asked.id)  # the model goes on writing

    await bot.settled()
    gone = [c for c in bot.fake.calls if c.path.startswith(f"/channels/{asked.id}/")
            and c.status == 404]  # fmt: skip
    assert len(gone) == 1, "nothing more is sent once Discord says the thread is gone"
    assert bot.fake.calls[-1] is gone[0]
    key = ConversationKey(platform="discord", workspace=str(GUILD), channel=str(CHANNEL),
                          thread=str(asked.id))  # fmt: skip
    said = (await bot.runtime.store.load(key))[-1]
    assert isinstance(said, AssistantMessage)
    assert said.stopped
    assert len(said.text) < len(text)


async def test_stop_cancels_the_answer_and_a_strangers_press_is_refused(bot: Harness) -> None:
    asked = await started(bot)
    (reply,) = bot.replies(asked.id)
    (stop,) = reply.custom_ids

    strangers = await bot.fake.press_button(reply.id, stop, JEANNE)
    await bot.until(lambda: bot.fake.ephemeral, "a note to Jeanne")
    (note,) = bot.fake.ephemeral
    assert (note.content, note.flags & 64) == (NOT_YOURS, 64)
    assert bot.fake.responses(strangers)[0]["type"] == 4
    assert bot.bot.busy == 1, "the answer goes on"

    asker = await bot.fake.press_button(reply.id, stop, ADA)
    assert await bot.answer(asked.id) == "Counting: on\n-# Stopped."
    assert bot.fake.responses(asker) == [{"type": 6}]
    assert len(bot.fake.ephemeral) == 1
    key = ConversationKey(platform="discord", workspace=str(GUILD), channel=str(CHANNEL),
                          thread=str(asked.id))  # fmt: skip
    said = (await bot.runtime.store.load(key))[-1]
    assert isinstance(said, AssistantMessage)
    assert said.stopped


async def test_a_member_with_manage_messages_may_stop_any_answer(bot: Harness) -> None:
    asked = await started(bot, asker=JEANNE)
    (reply,) = bot.replies(asked.id)
    await bot.fake.press_button(reply.id, reply.custom_ids[0], GRACE)
    assert await bot.answer(asked.id) == "Counting: on\n-# Stopped."
    assert bot.fake.ephemeral == []


# --- Stop on an answer another process writes -------------------------------------------------

ELSEWHERE = "relaybot@elsewhere:4242:worker"
"""Another process's worker id: it holds the lease of the turn it answers."""


async def written_elsewhere(bot: Harness, *, asker: Any = ADA) -> tuple[Turn, Message]:
    """A turn that another process is answering (accepted and leased under its worker id),
    and the message it posted with the turn's Stop button — sent straight to Discord's REST
    API, as another process does: this bot never made or saw a View for it."""
    asked = await bot.ask(CHANNEL, "a question asked on another shard's watch", user=asker)
    key = ConversationKey(platform="discord", workspace=str(GUILD), channel=str(CHANNEL),
                          thread=str(asked.id))  # fmt: skip
    store = bot.runtime.store
    turn = await store.accept(
        event_id=f"discord:{asked.id}", key=key, order=discord_order(asked.id),
        question=UserMessage(text="count", author_id=str(asker.id), author_name="asker"),
        platform="Discord", claim_ttl=HOUR,
    )  # fmt: skip
    assert turn is not None
    lease = await store.take(key, owner=ELSEWHERE, lease_seconds=HOUR)
    assert lease is not None
    return lease.turn, await stop_button_posted(bot, turn.id)


async def stop_button_posted(bot: Harness, turn_id: int) -> Message:
    """A message showing the Stop button of ``turn_id``, posted as the bot through REST."""
    button = {"type": 2, "style": 4, "label": "Stop", "custom_id": f"relaybot:stop:{turn_id}"}
    body = {"content": "Counting: on", "components": [{"type": 1, "components": [button]}]}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http,
        http.post(f"{bot.fake.api_url}/channels/{CHANNEL}/messages", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        posted = int((await response.json())["id"])
    shown = bot.fake.message(CHANNEL, posted)
    assert shown is not None
    return shown


async def pressed(bot: Harness, message: Message, user: Any) -> list[dict[str, Any]]:
    """``user`` presses the message's Stop button; what the bot answered Discord, once the
    press is fully handled."""
    (stop,) = message.custom_ids
    press = await bot.fake.press_button(message.id, stop, user)
    await bot.until(lambda: bot.fake.responses(press), "the press acknowledged")
    await bot.settled()
    return bot.fake.responses(press)


async def stop_requested(stops: RedisStops, turn_id: int) -> bool:
    async with Redis.from_url(REDIS_URL) as redis:
        return bool(await redis.exists(stops.key(turn_id)))


@pytest.fixture
async def fleet_bot(start: Callable[..., Awaitable[Harness]], redis_prefix: str) -> Harness:
    """A bot sharing Stop requests through Redis, as every process of a fleet does."""
    return await start(redis__url=REDIS_URL, redis__key_prefix=redis_prefix)


async def test_a_stop_on_an_answer_another_process_writes_is_requested_of_it(
    fleet_bot: Harness,
) -> None:
    bot, stops = fleet_bot, fleet_bot.runtime.stops
    assert isinstance(stops, RedisStops)
    turn, message = await written_elsewhere(bot, asker=ADA)

    assert await pressed(bot, message, JEANNE) == [{"type": 6}], "acknowledged at once"
    (note,) = bot.fake.ephemeral
    assert (note.content, note.flags & 64) == (NOT_YOURS, 64), "a note only Jeanne sees"
    assert not await stop_requested(stops, turn.id)

    assert await pressed(bot, message, ADA) == [{"type": 6}]
    assert await stop_requested(stops, turn.id), "the process writing it is asked to stop"
    assert len(bot.fake.ephemeral) == 1


async def test_a_moderator_may_stop_an_answer_another_process_writes(fleet_bot: Harness) -> None:
    stops = fleet_bot.runtime.stops
    assert isinstance(stops, RedisStops)
    turn, message = await written_elsewhere(fleet_bot, asker=JEANNE)
    assert await pressed(fleet_bot, message, GRACE) == [{"type": 6}]
    assert await stop_requested(stops, turn.id)
    assert fleet_bot.fake.ephemeral == []


async def test_a_press_on_an_answer_already_delivered_is_acknowledged_and_does_nothing(
    fleet_bot: Harness,
) -> None:
    bot, store, stops = fleet_bot, fleet_bot.runtime.store, fleet_bot.runtime.stops
    assert isinstance(stops, RedisStops)
    turn, message = await written_elsewhere(bot)
    lease = await store.take_over(turn.id, owner=ELSEWHERE, lease_seconds=HOUR, force=True)
    assert lease is not None
    await store.answered(lease, messages=[], text="Counting: one", finish_reason="stop")
    await store.delivered(turn.id, [str(message.id)])

    assert await pressed(bot, message, ADA) == [{"type": 6}]
    assert await pressed(bot, message, JEANNE) == [{"type": 6}]
    assert not await stop_requested(stops, turn.id)
    assert bot.fake.ephemeral == [], "no one is told anything about a finished answer"


async def test_a_press_on_a_deleted_question_or_an_unknown_turn_is_acknowledged(
    fleet_bot: Harness,
) -> None:
    bot, stops = fleet_bot, fleet_bot.runtime.stops
    assert isinstance(stops, RedisStops)
    turn, message = await written_elsewhere(bot)
    await bot.runtime.store.forget_message(turn.key, turn.order)  # its turn ends, unanswered
    assert await pressed(bot, message, ADA) == [{"type": 6}]

    unknown = await stop_button_posted(bot, turn.id + 1000)  # from a store since replaced
    assert await pressed(bot, unknown, ADA) == [{"type": 6}]
    assert not await stop_requested(stops, turn.id)
    assert not await stop_requested(stops, turn.id + 1000)
    assert bot.fake.ephemeral == []


async def test_pressing_stop_again_is_harmless(
    fleet_bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    bot, stops = fleet_bot, fleet_bot.runtime.stops
    assert isinstance(stops, RedisStops)
    turn, message = await written_elsewhere(bot)
    assert await pressed(bot, message, ADA) == [{"type": 6}]
    assert await pressed(bot, message, ADA) == [{"type": 6}]
    assert await stop_requested(stops, turn.id)

    asked = await started(bot)  # and an answer this process writes, pressed twice at once
    (reply,) = bot.replies(asked.id)
    first = await bot.fake.press_button(reply.id, reply.custom_ids[0], ADA)
    second = await bot.fake.press_button(reply.id, reply.custom_ids[0], ADA)
    assert await bot.answer(asked.id) == "Counting: on\n-# Stopped."
    await bot.until(lambda: bot.fake.responses(second), "the second press acknowledged")
    assert (bot.fake.responses(first), bot.fake.responses(second)) == ([{"type": 6}],) * 2
    assert bot.fake.ephemeral == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_a_stop_button_is_no_view_kept_per_message(bot: Harness) -> None:
    """discord.py keeps nothing for a message showing only relaybot's Stop button: thousands
    of answers leave no View behind."""
    asked = await started(bot)
    (reply,) = bot.replies(asked.id)
    views = bot.bot.client._connection._view_store  # discord.py's routing of presses
    assert views.persistent_views == []
    assert not views.is_message_tracked(reply.id)
    await bot.fake.press_button(reply.id, reply.custom_ids[0], ADA)
    assert await bot.answer(asked.id) == "Counting: on\n-# Stopped."


# --- direct messages ---------------------------------------------------------------------------


async def test_a_dm_is_one_conversation_until_reset_or_a_long_silence(bot: Harness) -> None:
    dm = bot.fake.dm_channel(ADA)
    for reply in ("Hi Ada.", "You said you are Ada.", "Hello again.", "Hello, stranger."):
        bot.gateway.enqueue(answer(reply))

    async def say(text: str, answers: int) -> None:
        await bot.ask(dm, text)
        await bot.until(lambda: len(bot.replies(dm)) == answers and bot.bot.busy == 0, text)

    await say("I'm Ada", 1)
    await say("Who am I?", 2)
    assert bot.model_messages(1) == [
        ("user", "I'm Ada"), ("assistant", "Hi Ada."), ("user", "Who am I?")
    ]  # fmt: skip
    await say("reset", 3)
    assert bot.replies(dm)[-1].content == NEW_CONVERSATION
    await say("hello", 4)
    assert bot.model_messages(2) == [("user", "hello")]
    bot.clock.now += 7 * HOUR  # past the 6 h idle gap
    await say("hello?", 5)
    assert bot.model_messages(3) == [("user", "hello?")]
    assert [m.content for m in bot.replies(dm)][-1] == "Hello, stranger."
    assert bot.fake.threads == []


async def test_allowlists_limit_where_and_whom_the_bot_answers(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(discord__allowed_roles=f"[{MOD_ROLE}]",
                      discord__allowed_channels=f'["{CHANNEL}"]')  # fmt: skip
    bot.gateway.enqueue(answer("Yes, Grace."))
    await bot.ask(NO_THREADS_CHANNEL, mention("a"), user=GRACE)  # not an allowed channel
    await bot.ask(CHANNEL, mention("b"), user=ADA)  # not a moderator
    await bot.ask(bot.fake.dm_channel(GRACE), "c", user=GRACE)  # a DM carries no roles
    await bot.settled()
    assert bot.writes() == []
    asked = await bot.ask(CHANNEL, mention("d"), user=GRACE)
    assert await bot.answer(asked.id) == "Yes, Grace."


async def test_another_guild_is_not_answered(start: Callable[..., Awaitable[Harness]]) -> None:
    bot = await start(discord__allowed_guilds="[42]")
    await bot.ask(CHANNEL, mention("hello"))
    await bot.settled()
    assert (bot.writes(), bot.gateway.requests) == ([], [])


# --- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (f"<@{BOT.id}> hi", "hi"),
        (f"hey <@!{BOT.id}>, what's up", "hey what's up"),
        (f"<@&{BOT_ROLE}>: hi", "hi"),
        (f"<@{ADA.id}> and <@{JEANNE.id}> and <@{GRACE.id}>", "@Ada and @unknown-user and "
         "@unknown-user"),
        (f"<#{CHANNEL}> <#{GUILD}> <@&{MOD_ROLE}>", "#general #unknown-channel @Moderators"),
        ("<:party:1150000000000000999> <a:wave:1150000000000000998>", ":party: :wave:"),
        ("</ask:1150000000000000997> at <t:1700000000:f>", "/ask at 2023-11-14 22:13 UTC"),
        ("<t:99999999999999>", "<t:99999999999999>"),
    ],
)  # fmt: skip
def test_discord_markup_as_plain_words(content: str, words: str) -> None:
    names = Names(users={ADA.id: "Ada"}, roles={MOD_ROLE: "Moderators"},
                  channels={CHANNEL: "general"})  # fmt: skip
    assert plain_text(content, bot_id=BOT.id, bot_role_id=BOT_ROLE, names=names) == words


def test_a_thread_name_is_one_line_of_at_most_100_characters() -> None:
    assert thread_name("what is\n\nSSE?", fallback="x") == "what is SSE?"
    long = thread_name("word " * 40, fallback="x")
    assert len(long) <= 100
    assert long.endswith("word…")
    assert len(thread_name("x" * 300, fallback="-")) == 100
    assert thread_name("  ", fallback="A question") == "A question"


def test_dm_sessions_change_on_reset_and_after_the_idle_gap() -> None:
    clock = FakeTime()
    sessions = DirectSessions(idle_seconds=6 * HOUR, clock=clock)
    assert sessions.conversation(1, 10) == sessions.conversation(1, 11) == "10"
    assert sessions.conversation(2, 12) == "12", "each DM channel on its own"
    clock.now += 5 * HOUR
    assert sessions.conversation(1, 13) == "10", "the gap is since the last message"
    clock.now += 6 * HOUR + 1
    assert sessions.conversation(1, 14) == "14"
    sessions.reset(1)
    assert sessions.conversation(1, 15) == "15"


def test_the_invite_asks_for_exactly_the_permissions_used() -> None:
    assert invite_url(BOT.id) == (
        f"https://discord.com/oauth2/authorize?client_id={BOT.id}&scope=bot"
        "&permissions=309237713920"
    )  # View Channels, Send Messages (+ in Threads), Create Public Threads, Read History


# --- the command line --------------------------------------------------------------------------


async def relaybot_discord(spawn: Spawn, **environ: str) -> asyncio.subprocess.Process:
    """``relaybot discord`` as a process, configured by ``environ`` alone."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("RELAYBOT_", "DISCORD_", "OFOX_"))}  # fmt: skip
    return await spawn(sys.executable, "-m", "bots", "discord", env=keep | environ)


def pointed_at(fake: FakeDiscord, gateway: FakeGateway) -> dict[str, str]:
    return {
        "OFOX_API_KEY": "sk-test",
        "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
        "RELAYBOT_DISCORD__API_URL": fake.api_url,
        "RELAYBOT_DISCORD__GATEWAY_URL": fake.gateway_url,
        "RELAYBOT_DISCORD__EDIT_INTERVAL": "0.05",
        "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
        "RELAYBOT_STORE__URL": "memory://",
    }


async def test_a_missing_token_is_named_in_one_line(spawn: Spawn) -> None:
    process = await relaybot_discord(spawn)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert (process.returncode, out, err.decode()) == (
        2, b"", "relaybot: relaybot discord needs the bot token: set DISCORD_BOT_TOKEN\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("token", "intents", "problem"),
    [
        ("not-the-token", True, "Discord rejected the bot token: check DISCORD_BOT_TOKEN "
         "(Developer Portal → your application → Bot → Reset Token)"),
        (TOKEN, False, NO_MESSAGE_CONTENT),
    ],
)  # fmt: skip
async def test_a_refused_token_or_intent_is_one_line_and_exit_1(
    token: str, intents: bool, problem: str, spawn: Spawn
) -> None:
    privileged = PRIVILEGED_INTENTS if intents else 0  # 0: none switched on in the portal
    async with (
        FakeDiscord(token=TOKEN, privileged_intents=privileged) as fake,
        FakeGateway() as gateway,
    ):
        process = await relaybot_discord(
            spawn, DISCORD_BOT_TOKEN=token, **pointed_at(fake, gateway)
        )
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
    lines = err.decode().splitlines()
    assert (process.returncode, out, lines[-1]) == (1, b"", f"relaybot: {problem}")
    assert all(line.startswith("relaybot: ") for line in lines), "no traceback, no log noise"
    assert token not in err.decode()


async def test_relaybot_discord_prints_the_invite_answers_and_stops_on_sigterm(
    spawn: Spawn,
) -> None:
    async with FakeDiscord(token=TOKEN) as fake, FakeGateway() as gateway:
        gateway.enqueue(answer("From a real process."))
        process = await relaybot_discord(
            spawn, DISCORD_BOT_TOKEN=TOKEN, **pointed_at(fake, gateway)
        )
        assert process.stderr is not None
        invite = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
        assert invite == f"relaybot: add the bot to a server: {invite_url(BOT.id)}\n"
        connected = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
        assert re.fullmatch(r"relaybot: connected to Discord as relaybot\S*, in 1 server\n",
                            connected), connected  # fmt: skip
        asked = await fake.user_message(CHANNEL, ADA, mention("hi"))

        def answered() -> bool:
            return any(m.content == "From a real process." for m in fake.messages(asked.id))

        await until(answered, "an answer")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
