"""relaybot's commands on Slack, end to end: signed slash-command payloads and mentions in,
ephemeral answers and changed model requests out.

The bot is the real one (:mod:`tests.test_slack_bot`'s harness: slack-bolt in HTTP mode on
loopback, the fake Slack, the fake gateway). ``/relaybot`` is POSTed form-encoded, as Slack
posts a slash command, with a ``response_url`` pointing at :class:`ResponseUrls`, a loopback
stand-in for Slack's ``hooks.slack.com``: what the bot posts there is what the invoker sees.
The thread commands are mentions (``@relaybot new``, ``@relaybot stop``) answered with
``chat.postEphemeral`` on the fake Slack.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from bots.commands import help_text
from bots.loopback import LoopbackServer
from bots.replies import NOT_YOURS
from bots.slack.commands import SLASH_COMMAND
from tests import test_slack_bot
from tests.fakes.llm_gateway import FakeGateway
from tests.fakes.slack_api import TEAM, Message, RecordedCall
from tests.fakes.streams import openai_chunks
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    GRACE,
    JEANNE,
    Harness,
    Held,
    answer,
    mention,
    message,
    status_of,
)

start = test_slack_bot.start  # its fixture, by the same name

OTHER = "C2"
NOT_ALLOWED = (
    "Only workspace admins and the users the bot's settings name may set this channel's "
    "instructions. Anyone may look: use the command without an argument."
)


class ResponseUrls(LoopbackServer):
    """Slack's ``response_url`` endpoint on loopback: every message posted to it, by path."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self._ids = (f"/commands/{TEAM}/{n}/token" for n in itertools.count(1))
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        super().__init__(app)

    def new(self) -> str:
        """A fresh ``response_url``."""
        return self.url + next(self._ids)

    async def _post(self, request: web.Request) -> web.Response:
        self.posted.append((request.path, await request.json()))
        return web.Response(text="ok")


@pytest.fixture
async def hooks() -> AsyncIterator[ResponseUrls]:
    async with ResponseUrls() as server:
        yield server


async def slash(
    bot: Harness, hooks: ResponseUrls, text: str, *, user: str = ADA, channel: str = CHANNEL
) -> dict[str, Any]:
    """``user`` types ``/relaybot <text>`` in ``channel``: what Slack shows them in return."""
    response_url = hooks.new()
    body = urlencode({
        "token": "legacy-verification-token", "team_id": TEAM, "team_domain": "team-one",
        "channel_id": channel, "channel_name": "general", "user_id": user,
        "user_name": user.lower(), "command": SLASH_COMMAND, "text": text,
        "api_app_id": "A1", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": "1.2.3",
    })  # fmt: skip
    assert await bot.post(body, "application/x-www-form-urlencoded") == 200
    path = response_url.removeprefix(hooks.url)
    await bot.until(lambda: any(p == path for p, _ in hooks.posted), f"/relaybot {text}")
    (shown,) = [posted for p, posted in hooks.posted if p == path]
    return shown


def ephemeral(text: str) -> dict[str, Any]:
    return {"text": text, "response_type": "ephemeral"}


def says(shown: dict[str, Any], *words: str) -> bool:
    """An ephemeral answer naming each of ``words`` (the commands' wording is theirs)."""
    text = str(shown.get("text"))
    return shown.get("response_type") == "ephemeral" and all(w in text for w in words)


def whispers(bot: Harness) -> list[RecordedCall]:
    return [c for c in bot.slack.calls if c.method == "chat.postEphemeral"]


def system_prompt(bot: Harness, index: int) -> str:
    content = bot.gateway.requests[index].json["messages"][0]
    assert content["role"] == "system"
    return str(content["content"])


# --- /relaybot: the channel commands -----------------------------------------------------------


async def test_help_and_an_unknown_subcommand_show_the_commands(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    assert await slash(bot, hooks, "help") == ephemeral(help_text())
    assert await slash(bot, hooks, "") == ephemeral(help_text())
    assert await slash(bot, hooks, "frobnicate") == ephemeral(help_text())
    assert bot.writes() == ["users.info"]  # the invoker's admin flag, once (cached)


async def test_model_shows_and_switches_the_next_requests_model_and_gateway(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    async with FakeGateway() as gateway:
        models = [
            {"name": "main", "base_url": gateway.url + "/v1", "model": "openai/gpt-4o"},
            {"name": "fast", "base_url": gateway.url + "/fast/v1", "model": "openai/gpt-4o-mini"},
        ]
        bot = await start(llm__base_url="", llm__models=json.dumps(models),
                          llm__default_model="main")  # fmt: skip
        shown = await slash(bot, hooks, "model")
        assert shown["response_type"] == "ephemeral"
        assert says(shown, "main", "openai/gpt-4o", "127.0.0.1", "fast")
        assert says(await slash(bot, hooks, "model fast"), "Only workspace admins")
        assert says(await slash(bot, hooks, "model nope", user=GRACE), "no model", "nope")
        assert says(await slash(bot, hooks, "model fast", user=GRACE), "fast")
        assert says(await slash(bot, hooks, "model"), "fast", "openai/gpt-4o-mini")

        gateway.enqueue(answer("Quick."), answer("Main."))
        asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
        await bot.send(mention(asked, "<@UBOT> hi"))
        await bot.until(lambda: bot.finished(CHANNEL, asked), "the answer in C1")
        elsewhere = bot.slack.seed_message(OTHER, ADA, "<@UBOT> hi")
        await bot.send(mention(elsewhere, "<@UBOT> hi") | {"channel": OTHER})
        await bot.until(lambda: bot.finished(OTHER, elsewhere), "the answer in C2")

        sent = [(r.path, r.json["model"]) for r in gateway.requests]
        assert sent == [
            ("/fast/v1/chat/completions", "openai/gpt-4o-mini"),
            ("/v1/chat/completions", "openai/gpt-4o"),  # another channel: the default
        ]
        assert says(await slash(bot, hooks, "model reset", user=GRACE), "default", "main")


async def test_a_channel_prompt_reaches_the_next_system_message_in_that_channel_only(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    words = "Answer like a pirate. Never mention <@U2>."
    assert await slash(bot, hooks, "prompt") == ephemeral(
        "This channel's instructions: none: relaybot's own."
    )
    assert await slash(bot, hooks, f"prompt {words}", user=GRACE) == ephemeral(
        "From the next message, this channel is answered with these instructions."
    )
    assert await slash(bot, hooks, "prompt", user=JEANNE) == ephemeral(
        f"This channel's instructions:\n{words}"
    )

    bot.gateway.enqueue(answer("Arr."), answer("Hello."), answer("Plain."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    await bot.until(lambda: bot.finished(CHANNEL, asked), "the answer in C1")
    elsewhere = bot.slack.seed_message(OTHER, ADA, "<@UBOT> hi")
    await bot.send(mention(elsewhere, "<@UBOT> hi") | {"channel": OTHER})
    await bot.until(lambda: bot.finished(OTHER, elsewhere), "the answer in C2")
    assert words in system_prompt(bot, 0)
    assert words not in system_prompt(bot, 1)

    assert await slash(bot, hooks, "prompt reset", user=GRACE) == ephemeral(
        "This channel's instructions are back to relaybot's own."
    )
    again = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> and now?")
    await bot.send(mention(again, "<@UBOT> and now?"))
    await bot.until(lambda: bot.finished(CHANNEL, again), "the answer after the reset")
    assert words not in system_prompt(bot, 2)


async def test_a_non_admins_prompt_is_refused_and_changes_nothing(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    assert await slash(bot, hooks, "prompt Be rude.") == ephemeral(NOT_ALLOWED)
    assert await slash(bot, hooks, "prompt reset", user=JEANNE) == ephemeral(NOT_ALLOWED)
    assert await slash(bot, hooks, "prompt") == ephemeral(
        "This channel's instructions: none: relaybot's own."
    )


async def test_a_user_the_settings_name_may_change_the_prompt(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start(slack__command_admins=json.dumps([JEANNE]))
    assert await slash(bot, hooks, "prompt Be brief.", user=JEANNE) == ephemeral(
        "From the next message, this channel is answered with these instructions."
    )
    assert await slash(bot, hooks, "prompt Be rude.") == ephemeral(NOT_ALLOWED)


async def test_usage_shows_the_invokers_tokens_and_limits(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    assert await slash(bot, hooks, "usage") == ephemeral(
        "Your tokens: 0 today, 0 this month.\nThere are no limits."
    )
    bot.gateway.enqueue(answer("Counted."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> count me")
    await bot.send(mention(asked, "<@UBOT> count me"))
    await bot.until(lambda: bot.finished(CHANNEL, asked), "an answer")
    shown = (await slash(bot, hooks, "usage"))["text"]
    assert not shown.startswith("Your tokens: 0 today"), shown
    assert (await slash(bot, hooks, "usage", user=JEANNE))["text"].startswith(
        "Your tokens: 0 today, 0 this month."
    )


async def test_a_user_over_the_daily_budget_is_told_and_the_model_not_asked(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start(limits__daily_tokens="20")
    bot.gateway.enqueue(answer("One."), answer("Two."))  # each reports 10 + 5 tokens
    first = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> one")
    await bot.send(mention(first, "<@UBOT> one"))
    await bot.until(lambda: bot.finished(CHANNEL, first), "the first answer")
    second = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> two")
    await bot.send(mention(second, "<@UBOT> two"))
    await bot.until(lambda: bot.finished(CHANNEL, second), "the second answer")
    third = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> three")  # 30 tokens used now
    await bot.send(mention(third, "<@UBOT> three"))
    await bot.until(lambda: bot.finished(CHANNEL, third), "the refusal")
    (refused,) = bot.replies(CHANNEL, third)
    assert "tokens for today" in status_of(refused.blocks) + refused.markdown + refused.text
    assert len(bot.gateway.requests) == 2, "the model was not asked the third time"
    assert "20" in (await slash(bot, hooks, "usage"))["text"]


async def test_thread_commands_in_a_slash_command_point_to_the_thread(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    assert (await slash(bot, hooks, "new"))["text"].startswith("Use `new` in a thread")
    assert (await slash(bot, hooks, "stop"))["text"].startswith("Use `stop` in the thread")


# --- @relaybot new | stop: the thread commands -------------------------------------------------


async def answered(bot: Harness, text: str, reply: str) -> str:
    """A question mentioning the bot, answered: the thread's ts."""
    bot.gateway.enqueue(answer(reply))
    asked = bot.slack.seed_message(CHANNEL, ADA, f"<@UBOT> {text}")
    await bot.send(mention(asked, f"<@UBOT> {text}"))
    await bot.until(lambda: bot.finished(CHANNEL, asked), "an answer")
    return asked


async def say_in_thread(bot: Harness, thread: str, text: str, *, user: str = ADA) -> str:
    """``user`` mentions the bot in ``thread``: both of the message's events, as Slack sends."""
    said = bot.slack.seed_message(CHANNEL, user, text, thread_ts=thread)
    assert await bot.send(mention(said, text, user=user, thread_ts=thread)) == 200
    assert await bot.send(message(said, text, user=user, thread_ts=thread)) == 200
    return said


async def test_new_in_a_thread_starts_a_fresh_conversation(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start()
    asked = await answered(bot, "I'm Ada", "Hello Ada.")

    await say_in_thread(bot, asked, "<@UBOT> NEW")
    await bot.until(lambda: whispers(bot), "the note")
    (note,) = whispers(bot)
    assert note.args | {"text": "…"} == {"channel": CHANNEL, "user": ADA, "thread_ts": asked,
                                         "text": "…"}  # fmt: skip
    assert "fresh conversation" in note.args["text"]
    assert len(bot.gateway.requests) == 1, "a command is not a question"

    bot.gateway.enqueue(answer("I don't know."))
    again = bot.slack.seed_message(CHANNEL, ADA, "What's my name?", thread_ts=asked)
    await bot.send(message(again, "What's my name?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")
    assert bot.model_messages(1) == [("user", "What's my name?")]
    assert len(whispers(bot)) == 1, "the command ran once for its two events"


async def test_stop_in_a_thread_stops_the_answer_and_a_strangers_is_refused(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start()
    held = Held(openai_chunks("Counting: one two three"), after=4)
    bot.gateway.enqueue(held)
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> count")
    await bot.send(mention(asked, "<@UBOT> count"))
    try:
        await bot.until(lambda: any(m.markdown for m in bot.replies(CHANNEL, asked)), "words")

        await say_in_thread(bot, asked, "<@UBOT> stop", user=JEANNE)
        await bot.until(lambda: whispers(bot), "a note to Jeanne")
        (refused,) = whispers(bot)
        assert refused.args == {"channel": CHANNEL, "user": JEANNE, "thread_ts": asked,
                                "text": NOT_YOURS}  # fmt: skip
        assert bot.bot.busy == 1, "the answer goes on"

        await say_in_thread(bot, asked, "<@UBOT>: Stop")
        await bot.until(lambda: bot.finished(CHANNEL, asked), "the answer stopped")
    finally:
        held.go.set()
    (final,) = bot.replies(CHANNEL, asked)
    assert status_of(final.blocks) == "_Stopped._"
    assert [c.args["text"] for c in whispers(bot)] == [NOT_YOURS, "Stopping the answer."]
    assert len(bot.gateway.requests) == 1, "neither command was a question"


async def test_a_mention_saying_more_than_a_command_is_a_question(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start()
    asked = await answered(bot, "hi", "Hello.")
    bot.gateway.enqueue(answer("Stop what?"))
    await say_in_thread(bot, asked, "<@UBOT> stop the music")
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")
    assert whispers(bot) == []
    assert bot.model_messages(1)[-1] == ("user", "stop the music")


async def test_a_command_mention_at_the_top_level_is_answered_there(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start()
    said = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> stop")
    await bot.send(mention(said, "<@UBOT> stop"))
    await bot.until(lambda: whispers(bot), "the note")
    (note,) = whispers(bot)
    assert note.args == {
        "channel": CHANNEL,
        "user": ADA,
        "text": "Use `stop` in the thread whose answer you want stopped.",
    }
    await bot.settled()
    assert bot.gateway.requests == []


# --- the message shortcuts ---------------------------------------------------------------------


async def shortcut(
    bot: Harness, hooks: ResponseUrls, callback_id: str, message: Message, *, user: str = ADA
) -> dict[str, Any]:
    """``user`` picks a relaybot shortcut in ``message``'s menu: what Slack shows them."""
    response_url = hooks.new()
    payload = {
        "type": "message_action", "callback_id": callback_id, "trigger_id": "1.2.3",
        "team": {"id": TEAM, "domain": "team-one"}, "channel": {"id": message.channel},
        "user": {"id": user, "team_id": TEAM}, "message_ts": message.ts,
        "message": message.payload(), "response_url": response_url, "token": "legacy",
    }  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)})
    assert await bot.post(body, "application/x-www-form-urlencoded") == 200
    path = response_url.removeprefix(hooks.url)
    await bot.until(lambda: any(p == path for p, _ in hooks.posted), callback_id)
    (shown,) = [posted for p, posted in hooks.posted if p == path]
    return shown


async def test_the_stop_shortcut_stops_the_threads_answer(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    held = Held(openai_chunks("Counting: one two three"), after=4)
    bot.gateway.enqueue(held)
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> count")
    await bot.send(mention(asked, "<@UBOT> count"))
    try:
        await bot.until(lambda: any(m.markdown for m in bot.replies(CHANNEL, asked)), "words")
        (reply,) = bot.replies(CHANNEL, asked)
        refused = await shortcut(bot, hooks, "relaybot_stop", reply, user=JEANNE)
        assert refused == ephemeral(NOT_YOURS)
        assert bot.bot.busy == 1, "the answer goes on"
        assert says(await shortcut(bot, hooks, "relaybot_stop", reply), "Stopping")
        await bot.until(lambda: bot.finished(CHANNEL, asked), "the answer stopped")
    finally:
        held.go.set()
    (final,) = bot.replies(CHANNEL, asked)
    assert status_of(final.blocks) == "_Stopped._"


async def test_the_new_conversation_shortcut_cuts_the_threads_history(
    start: Callable[..., Awaitable[Harness]], hooks: ResponseUrls
) -> None:
    bot = await start()
    bot.gateway.enqueue(answer("Hello Ada."), answer("I don't know."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> I'm Ada")
    await bot.send(mention(asked, "<@UBOT> I'm Ada"))
    assert await bot.answer(CHANNEL, asked) == "Hello Ada."
    (question,) = [m for m in bot.slack.thread(CHANNEL, asked) if m.ts == asked]
    assert says(await shortcut(bot, hooks, "relaybot_new", question), "fresh")
    again = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> who am I?", thread_ts=asked)
    await bot.send(mention(again, "<@UBOT> who am I?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")
    assert bot.model_messages(1) == [("user", "who am I?")]
