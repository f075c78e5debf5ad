"""The fake Slack's native streaming, agent methods and payload builders, as a real slack_sdk
client meets them.

The stream lifetime and the rate windows run on a :class:`FakeTime` the test moves; the client
has no retry handler for ``429``, so every refusal reaches the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import (
    Chunk,
    MarkdownTextChunk,
    PlanUpdateChunk,
    TaskUpdateChunk,
)
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    BOT_ID,
    SLACK_LIMITS,
    TEAM,
    FakeSlack,
    Limit,
    Stream,
    TaskCard,
    agent_session_stopped,
    app_home_opened,
    feedback_press,
)
from tests.support.clock import FakeTime

TOKEN = "xoxb-test"
DM, CHANNEL, GROUP = "D1", "C1", "G1"
FOR_ADA = {"recipient_user_id": "U1", "recipient_team_id": TEAM}
PAST = 1.01
"""Moving the clock a span's length times this leaves float rounding no say."""
FEEDBACK = {
    "type": "context_actions",
    "block_id": "feedback",
    "elements": [
        {
            "type": "feedback_buttons",
            "action_id": "feedback",
            "positive_button": {"text": {"type": "plain_text", "text": "Good"}, "value": "good"},
            "negative_button": {"text": {"type": "plain_text", "text": "Bad"}, "value": "bad"},
        }
    ],
}


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def slack(time: FakeTime) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN, clock=time) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)


async def refusal(call: Awaitable[Any]) -> str | None:
    """The Slack error a call was answered with; ``None`` when it succeeded."""
    try:
        await call
    except SlackApiError as refused:
        return str(refused.response["error"])
    return None


async def api(client: AsyncWebClient, method: str, **args: Any) -> str | None:
    """A call with exactly these JSON arguments (what the SDK's helpers would not send)."""
    return await refusal(client.api_call(method, json=args))


async def start(client: AsyncWebClient, slack: FakeSlack, channel: str = DM, **args: Any) -> str:
    """A stream in reply to a user's question in ``channel``; its ts."""
    asked = slack.seed_message(channel, "U1", "question")
    answer = await client.chat_startStream(channel=channel, thread_ts=asked, **args)
    return str(answer["ts"])


def stream(slack: FakeSlack, ts: str, channel: str = DM) -> Stream:
    found = slack.stream(channel, ts)
    assert found is not None
    return found


# --- the happy paths ----------------------------------------------------------------------------


async def test_a_dm_stream_grows_and_ends_with_its_blocks(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    asked = slack.seed_message(DM, "U1", "hello")
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=asked, status="thinking…")
    started = await client.chat_startStream(channel=DM, thread_ts=asked, markdown_text="Hel")
    ts = str(started["ts"])
    assert (started["channel"], slack.statuses) == (DM, {})  # the reply cleared the status
    assert stream(slack, ts).streaming
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text="lo, ")
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text="**Ada**")
    stopped = await client.chat_stopStream(
        channel=DM, ts=ts, markdown_text="!", blocks=[FEEDBACK], session_status="active"
    )
    assert stopped["message"]["blocks"] == [FEEDBACK]
    reply = slack.thread(DM, asked)[-1]
    assert (reply.ts, reply.bot_id, reply.thread_ts, reply.streamed) == (ts, BOT_ID, asked, True)
    assert (reply.shown, reply.blocks) == ("Hello, **Ada**!", [FEEDBACK])
    assert stream(slack, ts) == Stream(
        channel=DM, ts=ts, text="Hello, **Ada**!", cards={}, plan_title=None, blocks=(FEEDBACK,),
        chunk_blocks=(), session_status="active", streaming=False, stopped=True,
        stopped_by_user=False, expired=False, appends=2, task_display_mode="timeline",
        recipient=None,
    )  # fmt: skip
    assert slack.methods()[-4:] == [
        "chat.startStream", "chat.appendStream", "chat.appendStream", "chat.stopStream"
    ]  # fmt: skip


async def test_chunks_show_text_task_cards_and_a_plan(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    weather, title = "call_1", "get_weather"
    ts = await start(client, slack, chunks=[MarkdownTextChunk(text="Let me check. ")])
    progress: list[list[Chunk]] = [
        [TaskUpdateChunk(id=weather, title=title, status="in_progress", details="Paris")],
        [TaskUpdateChunk(id="call_2", title="get_time", status="pending")],
        [PlanUpdateChunk(title="Answering")],
        [TaskUpdateChunk(id=weather, title=title, status="complete", output="18 °C, clear")],
        [MarkdownTextChunk(text="It is 18 °C.")],
    ]
    for chunks in progress:
        await client.chat_appendStream(channel=DM, ts=ts, chunks=chunks)
    await client.chat_stopStream(
        channel=DM, ts=ts, chunks=[{"type": "blocks", "blocks": [FEEDBACK]}]
    )
    shown = stream(slack, ts)
    assert (shown.text, shown.plan_title, shown.chunk_blocks) == (
        "Let me check. It is 18 °C.", "Answering", (FEEDBACK,)
    )  # fmt: skip
    assert list(shown.cards.items()) == [
        ("call_1", TaskCard(title="get_weather", status="complete", details="Paris",
                            output="18 °C, clear")),
        ("call_2", TaskCard(title="get_time", status="pending")),
    ]  # fmt: skip
    assert slack.message(DM, ts) is not None
    assert slack.message(DM, ts).shown == "Let me check. It is 18 °C."  # type: ignore[union-attr]


async def test_a_channel_stream_names_its_recipient(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client, slack, CHANNEL, task_display_mode="plan", **FOR_ADA)
    found = stream(slack, ts, CHANNEL)
    assert (found.recipient, found.task_display_mode) == ((TEAM, "U1"), "plan")


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"channel": CHANNEL, "thread_ts": "1.0", "recipient_team_id": TEAM},
         "missing_recipient_user_id"),
        ({"channel": CHANNEL, "thread_ts": "1.0", "recipient_user_id": "U1"},
         "missing_recipient_team_id"),
        ({"channel": CHANNEL, "thread_ts": "1.0", **FOR_ADA, "recipient_user_id": "U9"},
         "user_not_found"),
        ({"channel": DM}, "invalid_arguments"),
        ({"thread_ts": "1.0"}, "channel_not_found"),
        ({"channel": DM, "thread_ts": "1.0", "markdown_text": "x" * 12_001}, "msg_too_long"),
        ({"channel": DM, "thread_ts": "1.0", "markdown_text": "a", "chunks": []},
         "cannot_provide_both_markdown_text_and_chunks"),
        ({"channel": DM, "thread_ts": "1.0", "task_display_mode": "grid"}, "invalid_arguments"),
        ({"channel": GROUP, "thread_ts": "1.0", **FOR_ADA}, "channel_type_not_supported"),
    ],
)  # fmt: skip
async def test_a_start_is_refused(
    slack: FakeSlack, client: AsyncWebClient, args: dict[str, Any], code: str
) -> None:
    assert await api(client, "chat.startStream", **args) == code
    assert [m for c in (DM, CHANNEL, GROUP) for m in slack.thread(c, "1.0")] == []


@pytest.mark.parametrize(
    ("chunk", "code"),
    [
        ({"type": "markdown_text"}, "invalid_chunks"),
        ({"type": "markdown_text", "text": "x" * 12_001}, "msg_too_long"),
        ({"type": "task_update", "id": "t", "title": "T", "status": "done"}, "invalid_chunks"),
        ({"type": "task_update", "id": "t", "status": "pending"}, "invalid_chunks"),
        ({"type": "plan_update"}, "invalid_chunks"),
        ({"type": "blocks", "blocks": [{"text": "no type"}]}, "invalid_chunks"),
        ({"type": "poll"}, "invalid_chunks"),
        ("text", "invalid_chunks"),
    ],
)
async def test_a_bad_chunk_is_refused(
    slack: FakeSlack, client: AsyncWebClient, chunk: object, code: str
) -> None:
    ts = await start(client, slack, chunks=[MarkdownTextChunk(text="a")])
    assert await api(client, "chat.appendStream", channel=DM, ts=ts, chunks=[chunk]) == code
    assert (stream(slack, ts).text, stream(slack, ts).appends) == ("a", 0)


async def test_an_append_or_stop_is_refused(slack: FakeSlack, client: AsyncWebClient) -> None:
    ts = await start(client, slack, markdown_text="a")
    posted = str((await client.chat_postMessage(channel=DM, text="plain"))["ts"])
    theirs = slack.seed_message(DM, "U1", "theirs")
    for method in ("chat.appendStream", "chat.stopStream"):
        assert await api(client, method, channel=DM, ts="1.000001", markdown_text="b") == (
            "message_not_found"
        )
        assert await api(client, method, channel=DM, ts=posted, markdown_text="b") == (
            "message_not_in_streaming_state"
        )
        assert await api(client, method, channel=DM, ts=theirs, markdown_text="b") == (
            "message_not_owned_by_app"
        )
        assert await api(client, method, channel=DM, ts=ts, chunks=[{"type": "plan_update",
                         "title": "P"}]) == "streaming_mode_mismatch"  # fmt: skip
        assert await api(client, method, channel=DM, ts=ts, markdown_text="b", chunks=[]) == (
            "cannot_provide_both_markdown_text_and_chunks"
        )
    assert await api(client, "chat.appendStream", channel=DM, ts=ts) == (
        "markdown_text_or_chunks_required"
    )
    await client.chat_stopStream(channel=DM, ts=ts)
    assert await api(client, "chat.appendStream", channel=DM, ts=ts, markdown_text="b") == (
        "message_not_in_streaming_state"
    )
    assert await api(client, "chat.stopStream", channel=DM, ts=ts) == (
        "message_not_in_streaming_state"
    )
    assert stream(slack, ts).text == "a"


async def test_a_stream_opened_with_chunks_takes_only_chunks(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client, slack)  # no content yet: the first append sets the shape
    await client.chat_appendStream(channel=DM, ts=ts, chunks=[MarkdownTextChunk(text="a")])
    code = await api(client, "chat.appendStream", channel=DM, ts=ts, markdown_text="b")
    assert (code, stream(slack, ts).text) == ("streaming_mode_mismatch", "a")


# --- lifetime, Stop, chat.update, chat.delete ---------------------------------------------------


async def test_a_stream_ends_at_its_lifetime_and_keeps_its_text(time: FakeTime) -> None:
    async with (
        FakeSlack(token=TOKEN, clock=time, time_scale=0.05, stream_lifetime=300.0) as slack,
        aiohttp.ClientSession() as session,
    ):
        client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
        ts, began = await start(client, slack, markdown_text="a"), time.now
        time.now += 15.0 / PAST  # just inside 300 s scaled: traffic or not, it still streams
        await client.chat_appendStream(channel=DM, ts=ts, markdown_text="b")
        time.now = began + 15.0 * PAST
        for method in ("chat.appendStream", "chat.stopStream"):
            code = await api(client, method, channel=DM, ts=ts, markdown_text="c")
            assert code == "message_not_in_streaming_state"
        found = stream(slack, ts)
        assert (found.text, found.streaming, found.expired, found.stopped) == (
            "ab", False, True, False
        )  # fmt: skip
        await client.chat_update(channel=DM, ts=ts, text="abc", blocks=[])  # the last resort
        assert slack.message(DM, ts).shown == "abc"  # type: ignore[union-attr]


async def test_the_person_stops_a_stream(slack: FakeSlack, client: AsyncWebClient) -> None:
    ts = await start(client, slack, markdown_text="Half an ans")
    slack.stop_stream_by_user(DM, ts)
    assert not stream(slack, ts).streaming
    code = await api(client, "chat.appendStream", channel=DM, ts=ts, markdown_text="wer")
    assert code == "stopped_by_user"
    await client.chat_stopStream(channel=DM, ts=ts, markdown_text="\n\nStopped.",
                                 session_status="active")  # fmt: skip
    found = stream(slack, ts)
    assert (found.text, found.stopped_by_user, found.session_status, found.appends) == (
        "Half an ans\n\nStopped.", True, "active", 0
    )  # fmt: skip
    code = await api(client, "chat.appendStream", channel=DM, ts=ts, markdown_text="!")
    assert code == "message_not_in_streaming_state"
    with pytest.raises(KeyError):
        slack.stop_stream_by_user(DM, "1.000001")


async def test_update_waits_for_the_stream_to_end(slack: FakeSlack, client: AsyncWebClient) -> None:
    ts = await start(client, slack, markdown_text="draft")
    code = await refusal(client.chat_update(channel=DM, ts=ts, text="edited"))
    assert (code, slack.message(DM, ts).shown) == ("streaming_state_conflict", "draft")  # type: ignore[union-attr]
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text=" goes on")  # still streams
    await client.chat_stopStream(channel=DM, ts=ts)
    markdown = [{"type": "markdown", "text": "final"}]
    await client.chat_update(channel=DM, ts=ts, text="final", blocks=markdown)
    edited = slack.message(DM, ts)
    assert edited is not None
    assert (edited.shown, edited.streamed, edited.edited) == ("final", False, True)


async def test_a_streaming_message_can_be_deleted(slack: FakeSlack, client: AsyncWebClient) -> None:
    ts = await start(client, slack, markdown_text="gone")
    await client.chat_delete(channel=DM, ts=ts)
    assert slack.message(DM, ts) is None
    code = await api(client, "chat.appendStream", channel=DM, ts=ts, markdown_text="!")
    assert code == "message_not_found"


# --- limits and refusal modes -------------------------------------------------------------------


async def test_the_streaming_tiers(slack: FakeSlack, client: AsyncWebClient) -> None:
    tiers = [SLACK_LIMITS[f"chat.{verb}Stream"] for verb in ("start", "append", "stop")]
    assert tiers == [Limit(20, 60), Limit(100, 60), Limit(20, 60)]
    streams = [
        await start(client, slack, channel, markdown_text="a")
        for channel in ("D1", "D2")
        for _ in range(10)
    ]  # fmt: skip  one workspace window
    assert await api(client, "chat.startStream", channel="D3", thread_ts="1.0") == "ratelimited"
    appends = [await api(client, "chat.appendStream", channel="D1", ts=streams[0],
                         markdown_text="b") for _ in range(101)]  # fmt: skip
    assert appends == [None] * 100 + ["ratelimited"]
    channels = ["D1"] * 10 + ["D2"] * 10
    stops = [await api(client, "chat.stopStream", channel=channel, ts=ts)
             for channel, ts in zip(channels, streams, strict=True)]  # fmt: skip
    assert stops == [None] * 20
    assert slack.rate_limited() == 2


@pytest.mark.parametrize("refusal_mode", ["not_agent_app", "feature_disabled"])
async def test_a_workspace_refuses_streaming(refusal_mode: Any) -> None:
    async with (
        FakeSlack(token=TOKEN, streaming=refusal_mode) as slack,
        aiohttp.ClientSession() as session,
    ):
        client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
        asked = slack.seed_message(DM, "U1", "hi")
        assert await api(client, "chat.startStream", channel=DM, thread_ts=asked) == refusal_mode
        assert slack.thread(DM, asked)[1:] == []
        prompts = [{"title": "Weather", "message": "What's the weather in Paris?"}]
        code = await api(client, "assistant.threads.setSuggestedPrompts", channel_id=DM,
                         prompts=prompts)  # fmt: skip
        assert code == ("not_agent_app" if refusal_mode == "not_agent_app" else None)


# --- assistant threads --------------------------------------------------------------------------


async def test_status_title_and_suggested_prompts_are_kept(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    asked = slack.seed_message(DM, "U1", "hi")
    loading = [f"Thinking {i}…" for i in range(10)]
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=asked, status="is thinking…",
                                             loading_messages=loading)  # fmt: skip
    assert (slack.statuses, slack.loading_messages) == (
        {(DM, asked): "is thinking…"}, {(DM, asked): loading}
    )  # fmt: skip
    eleven = [*loading, "one too many"]
    code = await api(client, "assistant.threads.setStatus", channel_id=DM, thread_ts=asked,
                     status="x", loading_messages=eleven)  # fmt: skip
    assert code == "invalid_arguments"
    await client.assistant_threads_setTitle(channel_id=DM, thread_ts=asked, title="Paris weather")
    assert slack.titles == {(DM, asked): "Paris weather"}
    prompts = [{"title": f"P{i}", "message": f"Prompt {i}"} for i in range(4)]
    await client.assistant_threads_setSuggestedPrompts(channel_id=DM, prompts=prompts, title="Try")
    assert slack.suggested_prompts == {(DM, None): {"title": "Try", "prompts": prompts}}
    for bad in ([*prompts, {"title": "P4", "message": "Prompt 4"}], [], [{"title": "no message"}]):
        code = await api(
            client, "assistant.threads.setSuggestedPrompts", channel_id=DM, prompts=bad
        )
        assert code == "invalid_arguments"
    assert await api(client, "assistant.threads.setTitle", channel_id=DM, title="t") == (
        "invalid_thread_ts"
    )


# --- what Slack sends ---------------------------------------------------------------------------


def test_agent_session_stopped_and_app_home_opened_are_slacks_shapes() -> None:
    assert agent_session_stopped(DM, "1.0", "U1", ["1.1"]) == {
        "type": "agent_session_stopped", "channel": DM, "thread_ts": "1.0", "user": "U1",
        "streaming_message_ts": ["1.1"], "event_ts": "1700000100.000100",
    }  # fmt: skip
    assert agent_session_stopped(DM, "1.0", "U1")["streaming_message_ts"] == []
    assert app_home_opened("U1", DM) == {
        "type": "app_home_opened", "user": "U1", "channel": DM, "tab": "messages",
        "event_ts": "1700000100.000200",
    }  # fmt: skip


async def test_a_feedback_press_is_the_block_action_slack_sends(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await start(client, slack, markdown_text="Answer")
    await client.chat_stopStream(channel=DM, ts=ts, blocks=[FEEDBACK])
    answer = slack.message(DM, ts)
    assert answer is not None
    pressed = feedback_press("U2", answer, positive=False)
    assert pressed["actions"] == [{
        "type": "feedback_buttons", "action_id": "feedback", "block_id": "feedback",
        "value": "bad", "text": {"type": "plain_text", "text": "Bad"},
        "action_ts": "1700000101.000000",
    }]  # fmt: skip
    assert (pressed["type"], pressed["user"]["id"], pressed["container"]["message_ts"]) == (
        "block_actions", "U2", ts
    )  # fmt: skip
    assert feedback_press("U1", answer, positive=True)["actions"][0]["value"] == "good"
    with pytest.raises(ValueError, match="feedback_buttons"):
        feedback_press("U1", slack.thread(DM, answer.thread_ts or "")[0], positive=True)
