"""The Slack bot keeps the turn journal's promises: every accepted message answered once, in
the thread's order, whatever arrives meanwhile — and a message Slack could not hand over is
handed over again.

The real bot over HTTP on loopback, as in ``tests/test_slack_bot.py`` (its harness and Slack
payloads are used here); a first answer is held streaming by the fake gateway (``Held``) while
the test sends what a busy thread receives. (A process killed mid-answer:
``tests/test_slack_crash.py``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.slack_surface import STOP_ACTION
from bots.replies import STOPPED, THINKING, TOO_LONG
from bots.slack.answers import FILES_SKIPPED, NOTICES
from bots.slack.messages import thread_history
from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.store import MemoryStore, StoreError, Turn
from tests import test_slack_bot
from tests.fakes.slack_api import BOT_ID, BOT_USER, TEAM
from tests.fakes.streams import openai_chunks
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    JEANNE,
    Harness,
    Held,
    actions,
    answer,
    mention,
    message,
    status_of,
)

bot, start = test_slack_bot.bot, test_slack_bot.start  # its fixtures, by the same names

FOLLOW_UPS = 20


def streaming(bot: Harness, thread: str, text: str) -> Callable[[], bool]:
    """The bot's reply in ``thread`` shows ``text`` and still has its Stop button."""

    def shown() -> bool:
        return any(m.markdown == text and actions(m.blocks) for m in bot.replies(CHANNEL, thread))

    return shown


def deleted(ts: str, *, thread_ts: str, user: str = ADA) -> dict[str, Any]:
    """The ``message_deleted`` event Slack sends when someone deletes a reply in a thread."""
    return {
        "type": "message", "subtype": "message_deleted", "hidden": True, "channel": CHANNEL,
        "channel_type": "channel", "ts": "1700000099.000100", "deleted_ts": ts,
        "event_ts": "1700000099.000100",
        "previous_message": {"type": "message", "user": user, "text": "gone", "ts": ts,
                             "thread_ts": thread_ts},
    }  # fmt: skip


async def test_follow_ups_sent_while_the_first_answer_streams_are_each_answered_in_order(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    # 21 answers in one channel in well under a second: past chat.postMessage's 10 per 10 s,
    # whose Retry-After would outlast the wait. This test is about order, not limits.
    bot = await start(slack_limits=None)
    first = Held(openai_chunks("Counting to twenty."), after=2)
    bot.gateway.enqueue(first, *(answer(f"Answer {n}.") for n in range(1, FOLLOW_UPS + 1)))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> count with me")
    await bot.send(mention(asked, "<@UBOT> count with me"))
    await bot.until(streaming(bot, asked, "Coun"), "the first answer streaming")

    said = [(bot.slack.seed_message(CHANNEL, ADA, f"n{n}", thread_ts=asked), f"n{n}")
            for n in range(1, FOLLOW_UPS + 1)]  # fmt: skip
    arriving = random.Random(7).sample(said, len(said))  # not in the order they were sent
    statuses = await asyncio.gather(
        *(bot.send(message(ts, text, thread_ts=asked)) for ts, text in arriving)
    )
    assert statuses == [200] * FOLLOW_UPS
    assert len(bot.gateway.requests) == 1, "the follow-ups wait for the first answer"
    first.go.set()
    await bot.until(
        lambda: len(bot.replies(CHANNEL, asked)) == FOLLOW_UPS + 1 and bot.finished(CHANNEL, asked),
        "every answer",
    )

    answers = ["Counting to twenty.", *(f"Answer {n}." for n in range(1, FOLLOW_UPS + 1))]
    assert [m.markdown for m in bot.replies(CHANNEL, asked)] == answers  # in question order
    questions = ["count with me", *(text for _, text in said)]
    assert len(bot.gateway.requests) == FOLLOW_UPS + 1
    for n in range(FOLLOW_UPS + 1):
        expected = [(role, text) for q, a in zip(questions[:n], answers[:n], strict=True)
                    for role, text in (("user", q), ("assistant", a))]  # fmt: skip
        assert bot.model_messages(n) == [*expected, ("user", questions[n])]
    assert THINKING not in json.dumps([r.json for r in bot.gateway.requests], ensure_ascii=False)
    assert bot.writes().count("chat.postMessage") == FOLLOW_UPS + 1  # one reply each
    assert "conversations.replies" not in bot.writes()  # the thread is the bot's own


async def test_a_mention_while_the_first_answer_in_a_thread_streams_reads_nothing_back(
    bot: Harness,
) -> None:
    parent = bot.slack.seed_message(CHANNEL, JEANNE, "Postgres or SQLite?")
    first = Held(openai_chunks("SQLite."), after=2)
    bot.gateway.enqueue(first, answer("Still SQLite."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> which?", thread_ts=parent)
    await bot.send(mention(asked, "<@UBOT> which?", thread_ts=parent))
    await bot.until(streaming(bot, parent, "SQLi"), "the first answer streaming")
    (placeholder,) = bot.replies(CHANNEL, parent)

    again = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> sure?", thread_ts=parent)
    assert placeholder.ts < again
    await bot.send(mention(again, "<@UBOT> sure?", thread_ts=parent))
    first.go.set()
    await bot.until(lambda: len(bot.replies(CHANNEL, parent)) == 2 and bot.bot.busy == 0, "2")

    assert bot.writes().count("conversations.replies") == 1
    assert bot.model_messages(1) == [
        ("user", "Jeanne: Postgres or SQLite?"),
        ("user", "ada: which?"),
        ("assistant", "SQLite."),
        ("user", "ada: sure?"),
    ]


async def test_re_delivered_events_are_answered_once_whenever_they_arrive(bot: Harness) -> None:
    first = Held(openai_chunks("Once."), after=2)
    bot.gateway.enqueue(first, answer("Twice?"))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hello")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    together = await asyncio.gather(
        bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1"),
        bot.send(message(asked, "<@UBOT> hello"), event_id="Ev2"),
        bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1", **retry),
    )
    assert list(together) == [200, 200, 200]
    await bot.until(streaming(bot, asked, "Once"), "the answer streaming")
    assert await bot.send(message(asked, "<@UBOT> hello"), event_id="Ev2", **retry) == 200
    first.go.set()
    assert await bot.answer(CHANNEL, asked) == "Once."
    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1", **retry) == 200

    await bot.settled()
    assert len(bot.gateway.requests) == 1
    assert bot.writes().count("chat.postMessage") == 1


class FlakyStore(MemoryStore):
    """A memory store whose ``accept`` fails while ``failing`` is set (a disk full, a database
    away)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def accept(self, **kwargs: Any) -> Turn | None:
        if self.failing:
            raise StoreError("memory store: the disk is full")
        return await super().accept(**kwargs)


async def test_a_message_the_store_could_not_accept_is_not_acknowledged_and_its_retry_is(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    store = FlakyStore()
    bot = await start(store=store)
    bot.gateway.enqueue(answer("Got it."), answer("Twice?"))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hello")

    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1") == 500
    assert bot.bot.busy == 0
    assert bot.writes() == ["chat.postMessage"]  # MEMORY_DOWN, in the thread
    store.failing = False
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1", **retry) == 200
    assert await bot.answer(CHANNEL, asked) == "Got it."
    retry["X-Slack-Retry-Num"] = "2"
    assert await bot.send(mention(asked, "<@UBOT> hello"), event_id="Ev1", **retry) == 200

    await bot.settled()
    assert len(bot.gateway.requests) == 1
    assert bot.writes().count("chat.postMessage") == 2  # the notice, then the answer


async def test_a_deleted_message_leaves_the_history_and_a_queued_one_is_not_answered(
    bot: Harness,
) -> None:
    first = Held(openai_chunks("Hi Ada."), after=2)
    bot.gateway.enqueue(first, answer("42."), answer("You asked about 7."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    await bot.until(streaming(bot, asked, "Hi A"), "the first answer streaming")
    queued = bot.slack.seed_message(CHANNEL, ADA, "never mind", thread_ts=asked)
    await bot.send(message(queued, "never mind", thread_ts=asked))
    assert await bot.send(deleted(queued, thread_ts=asked)) == 200  # before its turn came
    first.go.set()
    await bot.answer(CHANNEL, asked)

    wrong = bot.slack.seed_message(CHANNEL, ADA, "what is 6 times 7?", thread_ts=asked)
    await bot.send(message(wrong, "what is 6 times 7?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "42")
    assert await bot.send(deleted(wrong, thread_ts=asked)) == 200
    last = bot.slack.seed_message(CHANNEL, ADA, "what did I ask?", thread_ts=asked)
    await bot.send(message(last, "what did I ask?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 3 and bot.bot.busy == 0, "3")

    assert len(bot.gateway.requests) == 3, "the deleted queued message was not answered"
    assert bot.model_messages(2) == [
        ("user", "hi"),
        ("assistant", "Hi Ada."),
        ("user", "what did I ask?"),
    ]
    key = ConversationKey(platform="slack", workspace=TEAM, channel=CHANNEL, thread=asked)
    kept = await bot.runtime.store.load(key)
    assert [m.text for m in kept if isinstance(m, UserMessage)] == ["hi", "what did I ask?"]


async def test_an_answer_to_a_message_deleted_meanwhile_stops_and_is_forgotten(
    start: Callable[..., Awaitable[Harness]], caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start(store__lease_seconds="600")  # stopped by the deletion, not the lease
    first = Held(openai_chunks("Hi Ada, how are you today?"), after=2)
    bot.gateway.enqueue(first, answer("Nothing yet."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    await bot.until(streaming(bot, asked, "Hi A"), "the answer streaming")

    assert await bot.send(deleted(asked, thread_ts=asked)) == 200
    assert await bot.answer(CHANNEL, asked) == "Hi A"
    (stopped,) = bot.replies(CHANNEL, asked)
    assert status_of(stopped.blocks) == f"_{STOPPED}_"
    first.go.set()
    again = bot.slack.seed_message(CHANNEL, ADA, "what did I say?", thread_ts=asked)
    await bot.send(message(again, "what did I say?", thread_ts=asked))
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")

    assert bot.model_messages(1) == [("user", "what did I say?")]
    complaints = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in complaints if r.name.startswith("relaybot")] == []


def test_a_thread_read_back_keeps_answers_and_people_only() -> None:
    def bot_said(ts: str, blocks: list[dict[str, Any]], text: str) -> dict[str, Any]:
        return {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": ts, "text": text,
                "blocks": blocks}  # fmt: skip

    def markdown(text: str) -> dict[str, Any]:
        return {"type": "markdown", "text": text}

    def context(text: str) -> dict[str, Any]:
        return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}

    stop = {"type": "actions", "elements": [{"type": "button", "action_id": STOP_ACTION,
                                             "value": "7"}]}  # fmt: skip
    too_long = TOO_LONG.format(length=9000, limit=8000)
    thread = [
        {"type": "message", "user": JEANNE, "ts": "1.000001", "text": "<@UBOT> which db?"},
        bot_said("1.000002", [markdown("SQLite.")], "SQLite."),
        bot_said("1.000003", [], FILES_SKIPPED.format(notes='"a.zip" was skipped: no.')),
        bot_said("1.000004", [markdown(too_long)], too_long),  # a notice, in Markdown
        bot_said("1.000005", [context(":warning: _Sorry._")], "Sorry."),  # a status line only
        bot_said("1.000006", [context(f"_{THINKING}_"), stop], THINKING),  # a placeholder
        bot_said("1.000007", [markdown("Half an ans"), stop], "Half an ans"),  # being written
        {"type": "message", "user": ADA, "ts": "1.000008", "text": "and now?"},
    ]
    history = thread_history(thread, before="1.000009", bot_user_id=BOT_USER, bot_id=BOT_ID,
                             names={JEANNE: "Jeanne", ADA: "ada"}, notices=NOTICES)  # fmt: skip
    assert history == [
        UserMessage(text="which db?", author_id=JEANNE, author_name="Jeanne"),
        AssistantMessage(text="SQLite."),
        UserMessage(text="and now?", author_id=ADA, author_name="ada"),
    ]
