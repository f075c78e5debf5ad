"""The Discord bot over the turn journal: follow-ups queued behind a streaming answer and run
one at a time in message order, deleted questions forgotten, and turns a dead process left
finished by a live one. Real discord.py against the loopback Discord, as in
``tests/test_discord_bot.py`` (whose harness this reuses); every wait is on the fakes' state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bots.replies import INTERRUPTED
from core.messages import ConversationKey, UserMessage
from core.store import discord_order
from tests.fakes.fake_discord import ADA, BOT, CHANNEL, GUILD
from tests.fakes.llm_gateway import Stream
from tests.fakes.streams import openai_chunks
from tests.test_discord_bot import Harness, answer, mention
from tests.test_discord_bot import start as start_fixture

start = start_fixture
"""The connected bot of ``tests/test_discord_bot.py``, a fixture here too."""

FOLLOW_UPS = 20
RETRY_ONCE = {"llm__retry__max_attempts": "2", "llm__retry__base_delay": "0"}
"""The first answer stalls mid-stream and, released, is cut: its retry completes it."""


def thread_key(thread: int) -> ConversationKey:
    return ConversationKey(
        platform="discord", workspace=str(GUILD), channel=str(CHANNEL), thread=str(thread)
    )


async def stored(bot: Harness, key: ConversationKey, questions: int) -> None:
    """Wait until the store holds ``questions`` user messages of the thread (each accepted)."""
    async with asyncio.timeout(20):
        while await questions_in(bot, key) != questions:  # noqa: ASYNC110 (as ``until``)
            await asyncio.sleep(0.005)


async def streaming(bot: Harness, first: str) -> int:
    """A mention whose answer has begun and then waits; its thread's id."""
    bot.gateway.enqueue(
        Stream.stalled(openai_chunks(first), after=3), answer(first)
    )  # the stalled attempt, then its retry
    asked = await bot.ask(CHANNEL, mention("first"))
    await bot.until(lambda: any(m.content for m in bot.replies(asked.id)), "the first words")
    return asked.id


async def questions_in(bot: Harness, key: ConversationKey) -> int:
    return sum(message.role == "user" for message in await bot.runtime.store.load(key))


def user_messages(bot: Harness) -> list[list[str]]:
    """The user messages of each model request, in order."""
    return [
        [content for role, content in bot.model_messages(index) if role == "user"]
        for index in range(len(bot.gateway.requests))
    ]


async def test_follow_ups_sent_while_an_answer_streams_are_each_answered_once_in_order(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(**RETRY_ONCE)
    thread = await streaming(bot, "First answer.")
    questions = [f"question {n}" for n in range(1, FOLLOW_UPS + 1)]
    bot.gateway.enqueue(*(answer(f"answer {n}") for n in range(1, FOLLOW_UPS + 1)))
    for question in questions:
        await bot.ask(thread, question)  # no mention: the bot's own thread
    await stored(bot, thread_key(thread), 1 + FOLLOW_UPS)  # all queued behind the first
    assert len(bot.replies(thread)) == 1, "nothing runs beside the first answer"

    bot.gateway.release_stalls()
    await bot.until(
        lambda: len(bot.replies(thread)) == 1 + FOLLOW_UPS and bot.finished(thread),
        f"{FOLLOW_UPS} more answers",
    )
    answers = [f"answer {n}" for n in range(1, FOLLOW_UPS + 1)]
    assert [m.content for m in bot.replies(thread)] == ["First answer.", *answers]
    said = user_messages(bot)
    assert said[:2] == [["first"], ["first"]], "the stalled request and its retry"
    assert said[2:] == [["first", *questions[:n]] for n in range(1, FOLLOW_UPS + 1)], (
        "each request reads every earlier question once, and no later one"
    )
    last = bot.model_messages(1 + FOLLOW_UPS)
    assert last[-3:] == [("user", questions[-2]), ("assistant", answers[-2]),
                         ("user", questions[-1])]  # fmt: skip


async def test_a_deleted_question_leaves_the_history_and_a_queued_one_is_not_answered(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(**RETRY_ONCE)
    thread = await streaming(bot, "First answer.")
    key = thread_key(thread)
    second = await bot.ask(thread, "second")
    third = await bot.ask(thread, "third")
    await stored(bot, key, 3)
    await bot.fake.delete_message(thread, third.id)  # still queued
    await stored(bot, key, 2)
    bot.gateway.enqueue(answer("Second answer."), answer("Fourth answer."))
    bot.gateway.release_stalls()
    await bot.until(lambda: len(bot.replies(thread)) == 2 and bot.finished(thread), "2 answers")

    await bot.fake.delete_message(thread, second.id)  # answered: it and its answer go
    await stored(bot, key, 1)
    await bot.ask(thread, "fourth")
    await bot.until(lambda: len(bot.replies(thread)) == 3 and bot.finished(thread), "3 answers")
    assert [m.content for m in bot.replies(thread)] == [
        "First answer.", "Second answer.", "Fourth answer."
    ]  # fmt: skip
    assert user_messages(bot) == [["first"], ["first"], ["first", "second"], ["first", "fourth"]]
    assert bot.model_messages(3) == [
        ("user", "first"), ("assistant", "First answer."), ("user", "fourth")
    ]  # fmt: skip


@pytest.mark.parametrize("tool_ran", [False, True])
async def test_a_turn_a_dead_process_left_is_finished_in_its_thread(
    tool_ran: bool, start: Callable[..., Awaitable[Harness]]
) -> None:
    """What a process that died mid-answer leaves: a question accepted in the journal, its
    thread, and a half-written reply whose id was saved. Its lease runs out; the live bot's
    recovery answers again in the half reply's message — or, when a tool had run, ends the
    reply with a note (a tool never runs twice)."""
    bot = await start(store__lease_seconds="1")
    asked = await bot.ask(CHANNEL, "is anyone there?")  # no mention: the live bot ignores it
    thread = await bot.fake.start_thread(CHANNEL, BOT, "is anyone there?", message_id=asked.id)
    half = await bot.fake.user_message(thread.id, BOT, "Yes, I am")
    store, key = bot.runtime.store, thread_key(thread.id)
    question = UserMessage(text="is anyone there?", author_id=str(ADA.id), author_name="Ada")
    await store.accept(event_id=f"discord:{asked.id}", key=key, order=discord_order(asked.id),
                       question=question, platform="Discord", claim_ttl=60)  # fmt: skip
    lease = await store.take(key, owner="another-host:1:dead", lease_seconds=0.01)
    assert lease is not None
    await store.save_refs(lease, [str(half.id)])
    if tool_ran:
        await store.tool_started(lease, "call-1")
    bot.gateway.enqueue(answer("Yes, I am here."))

    expected = INTERRUPTED if tool_ran else "Yes, I am here."
    await bot.until(
        lambda: [m.content for m in bot.replies(thread.id)] == [expected] and bot.bot.busy == 0,
        "the turn finished",
    )
    assert await store.stranded() == []
    assert bot.fake.message(thread.id, half.id) is not None, "written in the half reply's message"
    if tool_ran:
        assert bot.gateway.requests == []
    else:
        assert user_messages(bot) == [["is anyone there?"]]
