"""``/relaybot`` on Discord end to end: real discord.py's ``CommandTree`` synced to the fake
Discord's guild, slash commands used there as INTERACTION_CREATE (type 2), and what they
change in the next model request.

The bot and its fakes are those of ``tests/test_discord_bot.py`` (its ``start`` fixture and
harness); waiting is on the fakes' state, never on a fixed sleep. The last tests run
``relaybot discord`` itself, with and without ``--sync-commands``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bots.commands import help_text
from bots.replies import NEW_CONVERSATION, NOT_YOURS
from core.messages import ConversationKey
from tests.conftest import Spawn
from tests.fakes.fake_discord import (
    ADA,
    BOT,
    CHANNEL,
    GRACE,
    GUILD,
    JEANNE,
    NO_THREADS_CHANNEL,
    FakeDiscord,
    Interaction,
    Message,
)
from tests.fakes.fake_discord.commands import Sync
from tests.fakes.llm_gateway import FakeGateway
from tests.support.waiting import until
from tests.test_discord_bot import (
    TOKEN,
    WAIT,
    Harness,
    answer,
    mention,
    pointed_at,
    start,  # noqa: F401  (the fixture, shared)
    started,
)

SUBCOMMANDS = ["help", "model", "prompt", "usage", "new", "stop"]
EPHEMERAL = 64
Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def synced(start: Start) -> Harness:  # noqa: F811
    """A connected bot whose ``/relaybot`` commands are synced to the fake's guild."""
    bot = await start()
    await bot.bot.commands.sync(guild=GUILD)
    return bot


async def used(bot: Harness, channel: int, user: Any, path: str, **values: Any) -> Message:
    """``user`` uses ``/path`` in ``channel``; the one reply the bot gave, which must be an
    ephemeral reply to the command (callback type 4, flag 64)."""
    before = len(bot.fake.ephemeral)
    command = await bot.fake.use_command(channel, user, path, **values)
    await bot.until(lambda: len(bot.fake.ephemeral) > before, f"a reply to /{path}")
    return replied(bot, command)


def replied(bot: Harness, command: Interaction) -> Message:
    (response,) = bot.fake.responses(command)
    assert response["type"] == 4
    assert response["data"]["flags"] & EPHEMERAL
    assert response["data"]["allowed_mentions"]["parse"] == []
    (reply,) = [m for m in bot.fake.ephemeral if m.interaction_id == command.id]
    assert reply.type == 20, "a reply to a slash command"
    return reply


def channel_settings_key(channel: int = CHANNEL) -> tuple[str, str, str]:
    return ("discord", str(GUILD), str(channel))


def system_message(bot: Harness, request: int) -> str:
    (system, *_) = bot.gateway.requests[request].json["messages"]
    assert system["role"] == "system"
    return str(system["content"])


# --- registering ------------------------------------------------------------------------------


async def test_nothing_is_synced_unless_asked_and_a_sync_registers_the_group(
    start: Start,  # noqa: F811
) -> None:
    bot = await start()
    assert bot.fake.syncs == [], "Discord rate-limits syncs: a start makes none"
    assert bot.fake.commands(GUILD) == bot.fake.commands() == []

    assert await bot.bot.commands.sync(guild=GUILD) == ["relaybot"]

    assert bot.fake.syncs == [Sync(guild_id=GUILD, names=("relaybot",))]
    (group,) = bot.fake.commands(GUILD)
    assert (group["name"], group["type"], group["guild_id"]) == ("relaybot", 1, str(GUILD))
    options = {o["name"]: o for o in group["options"]}
    assert list(options) == SUBCOMMANDS
    assert {o["type"] for o in options.values()} == {1}, "sub-commands, all of them"
    (name,) = options["model"]["options"]
    (text,) = options["prompt"]["options"]
    assert (name["name"], name["type"], name.get("required", False)) == ("name", 3, False)
    assert (text["name"], text["type"], text.get("required", False)) == ("text", 3, False)
    assert bot.fake.commands() == [], "nothing global"


# --- each sub-command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "values", "says"),
    [
        ("relaybot help", {}, help_text()),
        ("relaybot model", {}, "`default`"),
        ("relaybot model", {"name": "no-such-model"}, "no-such-model"),
        ("relaybot prompt", {}, "instructions"),
        ("relaybot usage", {}, "0 today, 0 this month"),
        ("relaybot new", {}, "thread"),
        ("relaybot stop", {}, "thread"),
    ],
)
async def test_each_subcommand_is_answered_privately(
    synced: Harness, path: str, values: dict[str, Any], says: str
) -> None:
    reply = await used(synced, CHANNEL, GRACE, path, **values)
    assert says in reply.content
    assert synced.fake.messages(CHANNEL) == [], "nothing in the channel"
    assert synced.gateway.requests == []


async def test_thread_commands_in_a_thread_and_channel_commands_in_a_dm(synced: Harness) -> None:
    synced.gateway.enqueue(answer("Hello."))
    asked = await synced.ask(CHANNEL, mention("hi"))
    await synced.answer(asked.id)

    nothing = await used(synced, asked.id, ADA, "relaybot stop")
    assert nothing.content == "Nothing is being answered here."
    await synced.bot.commands.sync()  # a guild's commands are not offered in a DM
    dm = synced.fake.dm_channel(ADA)
    usage = await used(synced, dm, ADA, "relaybot usage")
    assert usage.content.startswith("Your tokens: ")


# --- prompt and model: who may, and what it changes --------------------------------------------


async def test_a_members_prompt_is_refused_and_changes_nothing(synced: Harness) -> None:
    refusal = await used(synced, CHANNEL, JEANNE, "relaybot prompt", text="Answer in French.")
    assert "admins" in refusal.content
    changed = await used(synced, CHANNEL, JEANNE, "relaybot model", name="default")
    assert "admins" in changed.content
    settings = await synced.runtime.store.channel_settings(*channel_settings_key())
    assert (settings.prompt, settings.model) == (None, None)


async def test_a_user_the_settings_name_may_set_the_prompt(start: Start) -> None:  # noqa: F811
    bot = await start(discord__command_admins=json.dumps([str(JEANNE.id)]))
    await bot.bot.commands.sync(guild=GUILD)
    await used(bot, CHANNEL, JEANNE, "relaybot prompt", text="Answer in French.")
    settings = await bot.runtime.store.channel_settings(*channel_settings_key())
    assert settings.prompt == "Answer in French."


async def test_a_prompt_reaches_the_next_request_of_that_channel_only(synced: Harness) -> None:
    set_in_a_thread = answer("Bonjour.")
    synced.gateway.enqueue(set_in_a_thread, answer("Hello."), answer("Hello again."))
    asked = await synced.ask(CHANNEL, mention("hi"))  # a thread of CHANNEL
    await synced.until(lambda: synced.fake.thread(asked.id) is not None, "a thread")
    await synced.answer(asked.id)

    said = await used(synced, asked.id, GRACE, "relaybot prompt", text="Answer in French.")
    assert "From the next message" in said.content
    shown = await used(synced, CHANNEL, ADA, "relaybot prompt")
    assert shown.content.endswith("Answer in French."), "a thread's prompt is its channel's"

    await synced.ask(asked.id, "and now?")  # the same thread: the next request
    await synced.until(lambda: len(synced.gateway.requests) == 2, "a second request")
    other = await synced.ask(NO_THREADS_CHANNEL, mention("hello"))
    await synced.until(lambda: len(synced.gateway.requests) == 3, "a request from elsewhere")
    await synced.settled()

    assert "Answer in French." not in system_message(synced, 0), "set after it"
    assert "Answer in French." in system_message(synced, 1)
    assert "Answer in French." not in system_message(synced, 2), "another channel"
    assert other.id


async def test_prompt_reset_puts_the_default_back(synced: Harness) -> None:
    await used(synced, CHANNEL, GRACE, "relaybot prompt", text="Answer in French.")
    reset = await used(synced, CHANNEL, GRACE, "relaybot prompt", text="reset")
    assert "back" in reset.content
    settings = await synced.runtime.store.channel_settings(*channel_settings_key())
    assert settings.prompt is None


# --- new and stop in a thread ------------------------------------------------------------------


async def test_new_in_a_thread_then_a_question_sees_no_earlier_messages(synced: Harness) -> None:
    synced.gateway.enqueue(answer("Nice to meet you, Ada."), answer("I don't know."))
    asked = await synced.ask(CHANNEL, mention("I'm Ada"))
    await synced.answer(asked.id)

    fresh = await used(synced, asked.id, ADA, "relaybot new")
    assert "fresh" in fresh.content
    await synced.ask(asked.id, "What is my name?")
    await synced.until(lambda: len(synced.gateway.requests) == 2, "a second request")
    await synced.settled()
    assert synced.model_messages(1) == [("user", "What is my name?")]


async def test_new_in_a_dm_starts_a_new_conversation(synced: Harness) -> None:
    synced.gateway.enqueue(answer("Hi Ada."), answer("I don't know."))
    await synced.bot.commands.sync()  # a guild's commands are not offered in a DM
    dm = synced.fake.dm_channel(ADA)
    await synced.ask(dm, "I'm Ada")
    await synced.until(lambda: len(synced.replies(dm)) == 1 and synced.bot.busy == 0, "a reply")

    reset = await used(synced, dm, ADA, "relaybot new")
    assert reset.content == NEW_CONVERSATION
    await synced.ask(dm, "What is my name?")
    await synced.until(lambda: len(synced.gateway.requests) == 2, "a second request")
    await synced.settled()
    assert synced.model_messages(1) == [("user", "What is my name?")]


async def test_stop_stops_the_streaming_answer_and_a_strangers_stop_is_refused(
    synced: Harness,
) -> None:
    asked = await started(synced)  # ADA's question; its answer streams, then stalls

    refused = await used(synced, asked.id, JEANNE, "relaybot stop")
    assert refused.content == NOT_YOURS
    assert synced.bot.busy == 1, "the answer goes on"

    stopping = await used(synced, asked.id, ADA, "relaybot stop")
    assert "Stopping" in stopping.content
    assert await synced.answer(asked.id) == "Counting: on\n-# Stopped."
    key = ConversationKey(platform="discord", workspace=str(GUILD), channel=str(CHANNEL),
                          thread=str(asked.id))  # fmt: skip
    assert await synced.runtime.store.unfinished(key) is None


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [("--sync-commands",), ()])
async def test_relaybot_discord_syncs_globally_only_when_asked(
    spawn: Spawn, flags: tuple[str, ...]
) -> None:
    async with FakeDiscord(token=TOKEN) as fake, FakeGateway() as gateway:
        environ = os.environ | {"DISCORD_BOT_TOKEN": TOKEN, **pointed_at(fake, gateway)}
        process = await spawn(sys.executable, "-m", "bots", "discord", *flags, env=environ)
        assert process.stderr is not None
        lines = [(await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
                 for _ in range(2 + len(flags))]  # fmt: skip
        assert lines[1].startswith("relaybot: connected to Discord")
        if flags:
            assert lines[2] == "relaybot: synced the /relaybot commands for every server\n"
            assert fake.syncs == [Sync(guild_id=None, names=("relaybot",))]
            (group,) = fake.commands()
            assert [o["name"] for o in group["options"]] == SUBCOMMANDS
        gateway.enqueue(answer("Up."))  # an answer: the bot is running, its signals handled
        asked = await fake.user_message(CHANNEL, ADA, mention("up?"))
        await until(lambda: any(m.content == "Up." for m in fake.messages(asked.id)), "an answer")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
        assert "relaybot commands" not in err.decode(), "one line, no more"
        if not flags:
            assert fake.syncs == [], "Discord rate-limits syncs: only when asked"


async def test_the_fake_refuses_a_command_discord_would_refuse() -> None:
    bad = [{"name": "Relaybot", "description": "upper case is refused", "type": 1}]
    async with (
        FakeDiscord(token=TOKEN) as fake,
        aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http,
        http.put(f"{fake.api_url}/applications/{BOT.id}/commands", json=bad) as response,
    ):
        assert response.status == 400
        assert (await response.json())["code"] == 50035
        assert fake.syncs == []
