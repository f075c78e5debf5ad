"""Slack's native AI streaming, end to end: the Slack bot against the loopback Slack, which
keeps each stream (its text, task cards, the blocks its stop set) and refuses what Slack
refuses.

A DM is answered with ``chat.startStream`` / ``appendStream`` / ``stopStream`` under the default
``[slack] streaming = "auto"``; a channel thread is edited. Slack's own Stop arrives as an
``agent_session_stopped`` event; feedback as a ``block_actions`` press on the feedback buttons.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.live import STOPPED
from bots.replies import FEEDBACK_THANKS
from bots.slack.answers import FEEDBACK_ACTION
from bots.slack.settings import SUGGESTED_PROMPTS
from core.messages import ConversationKey
from tests import test_slack_bot
from tests.fakes.llm_gateway import Stream
from tests.fakes.slack_api import BOT_ID, TEAM, Message
from tests.fakes.slack_streams import agent_session_stopped, app_home_opened, feedback_press
from tests.fakes.streams import openai_chunks
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    DM,
    JEANNE,
    Harness,
    Held,
    answer,
    mention,
    message,
)

start = test_slack_bot.start  # its fixture, by the same name


@pytest.fixture
async def bot(start: Callable[..., Awaitable[Harness]]) -> Harness:
    return await start(slack__streaming="auto")


def replies(bot: Harness, channel: str, thread: str) -> list[Message]:
    return [m for m in bot.slack.thread(channel, thread) if m.bot_id == BOT_ID]


def streamed_to_the_end(bot: Harness, channel: str, thread: str) -> bool:
    shown = replies(bot, channel, thread)
    return (
        bool(shown)
        and all(m.streamed for m in shown)
        and not any((s := bot.slack.stream(channel, m.ts)) and s.streaming for m in shown)
        and bot.bot.busy == 0
    )


async def asked_in_a_dm(bot: Harness, text: str) -> str:
    said = bot.slack.seed_message(DM, ADA, text)
    assert await bot.send(message(said, text, channel=DM)) == 200
    return said


async def test_a_direct_message_streams_natively_and_shows_the_models_answer(
    bot: Harness,
) -> None:
    text = "Server-Sent Events push text over one long HTTP response, line by line."
    bot.gateway.enqueue(answer(text, delay=0.01, pieces=8))
    said = await asked_in_a_dm(bot, "what is SSE?")
    await bot.until(lambda: streamed_to_the_end(bot, DM, said), "the streamed answer")

    (reply,) = replies(bot, DM, said)
    assert reply.shown == text
    methods = bot.writes()
    assert methods.count("chat.startStream") == methods.count("chat.stopStream") == 1
    assert "chat.update" not in methods
    assert "chat.postMessage" not in methods
    stream = bot.slack.stream(DM, reply.ts)
    assert stream is not None
    assert [b["type"] for b in stream.blocks] == ["context_actions"]  # feedback under it
    (status,) = [c for c in bot.slack.calls if c.method == "assistant.threads.setStatus"]
    assert status.args["loading_messages"]  # rotating until the first words
    assert bot.slack.titles[(DM, said)] == "what is SSE?"


async def test_a_channel_thread_is_edited_in_auto_mode(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Edited, as before."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    assert await bot.answer(CHANNEL, asked) == "Edited, as before."
    assert "chat.startStream" not in bot.writes()
    (reply,) = replies(bot, CHANNEL, asked)
    assert [b["type"] for b in reply.blocks] == ["markdown", "context_actions"]  # feedback


async def test_a_weather_turn_shows_a_task_card_in_progress_then_complete(bot: Harness) -> None:
    call = ("call_1", "get_weather", '{"city": "Paris"}')
    bot.gateway.enqueue(Stream(openai_chunks(tool_calls=[call])), answer("12 °C in Paris."))
    said = await asked_in_a_dm(bot, "weather in Paris?")

    def card() -> Any:
        shown = replies(bot, DM, said)
        stream = bot.slack.stream(DM, shown[0].ts) if shown else None
        return next(iter(stream.cards.values()), None) if stream else None

    await bot.until(lambda: card() is not None and card().status == "in_progress", "a card")
    assert "Paris" in card().title
    bot.weather.go.set()
    await bot.until(lambda: streamed_to_the_end(bot, DM, said), "the answer")
    assert card().status == "complete"
    assert replies(bot, DM, said)[-1].shown.endswith("12 °C in Paris.")


async def test_an_answer_longer_than_a_message_continues_in_a_second_stream(
    bot: Harness,
) -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 199 for n in range(13))  # ~13,000 chars
    bot.gateway.enqueue(answer(text, pieces=300))
    said = await asked_in_a_dm(bot, "write a lot")
    assert await bot.answer(DM, said) == text
    shown = replies(bot, DM, said)
    assert len(shown) == 2
    assert all(m.streamed and len(m.text) <= 12_000 for m in shown)


async def test_a_stream_that_expires_mid_answer_continues_in_a_new_one(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(slack__streaming="native", slack_stream_lifetime=0.2)
    text = " ".join(f"word{n}" for n in range(150))
    bot.gateway.enqueue(answer(text, delay=0.02, pieces=50))  # a second: outlives a stream
    said = await asked_in_a_dm(bot, "count words")
    assert await bot.answer(DM, said) == text
    assert len(replies(bot, DM, said)) >= 2, "rolled over"


async def test_a_model_call_retried_after_streamed_text_leaves_one_copy(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(slack__streaming="native", llm__retry__max_attempts="2",
                      llm__retry__base_delay="0")  # fmt: skip
    bot.gateway.enqueue(Stream.cut(openai_chunks("The first try, cut off mid"), after=4),
                        answer("The second try, whole."))  # fmt: skip
    said = await asked_in_a_dm(bot, "go")
    assert await bot.answer(DM, said) == "The second try, whole."
    (reply,) = replies(bot, DM, said)
    assert reply.shown == "The second try, whole."


async def test_a_mass_mention_split_across_deltas_is_neutralized(bot: Harness) -> None:
    text = "Telling <!here> about it."
    bot.gateway.enqueue(answer(text, delay=0.005, pieces=len(text)))  # a character at a time
    said = await asked_in_a_dm(bot, "shout")
    await bot.until(lambda: streamed_to_the_end(bot, DM, said), "the answer")
    sent = [c.args for c in bot.slack.calls if c.method.endswith("Stream")]
    appended = "".join(
        args.get("markdown_text", "") + "".join(c.get("text", "") for c in args.get("chunks", []))
        for args in sent
    )
    assert "<!here>" not in appended
    assert "here" in replies(bot, DM, said)[0].shown


async def streaming(bot: Harness) -> tuple[str, Message, Held]:
    """A DM whose answer has begun streaming and then waits (the model holds)."""
    held = Held(openai_chunks("Counting: one two three four five"), after=3)
    bot.gateway.enqueue(held)
    said = await asked_in_a_dm(bot, "count")
    await bot.until(lambda: any(m.text for m in replies(bot, DM, said)), "the first words")
    (reply,) = replies(bot, DM, said)
    return said, reply, held


async def test_slacks_stop_ends_the_answer_stopped_and_nothing_is_appended_after(
    bot: Harness,
) -> None:
    said, reply, held = await streaming(bot)
    bot.slack.stop_stream_by_user(DM, reply.ts)  # what Slack does on its Stop, then it says so
    assert await bot.send(agent_session_stopped(DM, said, ADA, [reply.ts])) == 200
    await bot.until(lambda: bot.bot.busy == 0, "the answer stopped")
    held.go.set()

    stream = bot.slack.stream(DM, reply.ts)
    assert stream is not None
    assert not stream.streaming
    assert STOPPED in replies(bot, DM, said)[0].shown
    calls = [c.method for c in bot.slack.calls if c.args.get("ts") == reply.ts]
    assert calls[-1] == "chat.stopStream"
    assert "chat.appendStream" not in calls[calls.index("chat.stopStream") :]
    key = ConversationKey(platform="slack", workspace=TEAM, channel=DM, thread=said)
    assert await bot.runtime.store.unfinished(key) is None


async def test_a_stranger_cannot_stop_an_answer(bot: Harness) -> None:
    said, reply, held = await streaming(bot)
    assert await bot.send(agent_session_stopped(DM, said, JEANNE, [reply.ts])) == 200
    await bot.until(lambda: "chat.postEphemeral" in bot.writes(), "a note to the stranger")
    assert bot.bot.busy == 1, "the answer goes on"
    held.go.set()
    await bot.until(lambda: streamed_to_the_end(bot, DM, said), "the whole answer")
    assert replies(bot, DM, said)[0].shown == "Counting: one two three four five"


async def test_a_workspace_that_refuses_streaming_gets_edited_answers(
    start: Callable[..., Awaitable[Harness]], caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start(slack__streaming="auto", slack_streaming="not_agent_app")
    bot.gateway.enqueue(answer("First, edited."), answer("Second, edited."))
    first = await asked_in_a_dm(bot, "one")
    assert await bot.answer(DM, first) == "First, edited."
    second = await asked_in_a_dm(bot, "two")
    assert await bot.answer(DM, second) == "Second, edited."
    assert bot.writes().count("chat.startStream") == 1, "the refusal is remembered"
    assert sum("refused native streaming" in r.getMessage() for r in caplog.records) == 1


async def press(bot: Harness, payload: dict[str, Any]) -> int:
    return await bot.post(urlencode({"payload": json.dumps(payload)}),
                          "application/x-www-form-urlencoded")  # fmt: skip


async def test_feedback_presses_are_stored_once_per_person_and_thanked(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Forty-two."))
    said = await asked_in_a_dm(bot, "the answer?")
    await bot.until(lambda: streamed_to_the_end(bot, DM, said), "the answer")
    (reply,) = replies(bot, DM, said)
    stream = bot.slack.stream(DM, reply.ts)
    assert stream is not None
    shown = Message(channel=DM, ts=reply.ts, text=reply.text, user=reply.user,
                    thread_ts=said, blocks=list(stream.blocks), bot_id=BOT_ID)  # fmt: skip
    (action,) = feedback_press(ADA, shown, positive=True)["actions"]
    assert action["action_id"] == FEEDBACK_ACTION

    for user, positive in ((ADA, True), (ADA, True), (JEANNE, False)):
        assert await press(bot, feedback_press(user, shown, positive=positive)) == 200
    await bot.until(lambda: bot.writes().count("chat.postEphemeral") == 3, "three thanks")
    turn_id = int(action["value"].partition(":")[2])
    votes = await bot.runtime.store.feedback_of(turn_id)
    assert sorted((v.user, v.positive) for v in votes) == [(ADA, True), (JEANNE, False)]
    notes = [c.args["text"] for c in bot.slack.calls if c.method == "chat.postEphemeral"]
    assert set(notes) == {FEEDBACK_THANKS}


async def test_suggested_prompts_are_offered_when_the_messages_tab_opens(bot: Harness) -> None:
    assert await bot.send(app_home_opened(ADA, DM)) == 200
    await bot.until(lambda: bool(bot.slack.suggested_prompts), "the prompts")
    offered = bot.slack.suggested_prompts[(DM, None)]
    assert [(p["title"], p["message"]) for p in offered["prompts"]] == [
        (p.title, p.message) for p in SUGGESTED_PROMPTS
    ]
    assert await bot.send(app_home_opened(ADA, DM, tab="home")) == 200
    assert bot.writes().count("assistant.threads.setSuggestedPrompts") == 1


async def test_answers_asked_together_share_both_budgets(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    """With appends twice as plentiful as edits (as Slack's Tier 4 and Tier 3 are), two DM
    answers streaming natively have the room per answer one edited answer has: the third answer
    asked meanwhile is edited, and every answer finishes whole."""
    appends = {"count": 2000, "seconds": 1, "burst": 100}
    bot = await start(slack__streaming="auto", edit_budget__slack_stream_append=json.dumps(appends))
    held = [Held(openai_chunks(f"Answer {n}: one two three"), after=3) for n in range(3)]
    asked = []
    for n, reply in enumerate(held):
        bot.gateway.enqueue(reply)
        said = await asked_in_a_dm(bot, f"question {n}")
        asked.append(said)

        def began(said: str = said) -> bool:
            return any(m.text for m in replies(bot, DM, said))

        await bot.until(began, "the first words")
    for reply in held:
        reply.go.set()
    await bot.until(lambda: bot.bot.busy == 0, "every answer finished")

    streamed = [bool(bot.slack.stream(DM, replies(bot, DM, said)[0].ts)) for said in asked]
    assert streamed == [True, True, False]
    for n, said in enumerate(asked):
        assert replies(bot, DM, said)[-1].shown == f"Answer {n}: one two three"
