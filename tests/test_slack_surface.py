"""SlackSurface against the loopback fake Slack Web API, through a real slack_sdk client.

The payloads are compared as Slack receives them; the end-to-end cases drive a ``LiveReply``
on the real clock with a 10 ms edit interval (every HTTP call is real, on loopback).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.budget import Rate, TokenBucketBudget
from adapters.live import LiveReply
from adapters.slack_surface import SlackSurface
from adapters.surface import (
    Draft,
    MessageGone,
    MessageTooLong,
    SurfaceError,
    SurfaceForbidden,
    SurfaceLimits,
    SurfaceRateLimited,
)
from adapters.text import join_pieces
from core.events import TextDelta, TurnFinished, Usage
from tests.fakes.slack_api import (
    FakeSlack,
    Fault,
    Message,
    disconnect,
    error,
    http_error,
    ratelimited,
)

TOKEN = "xoxb-test"
STOP = {
    "type": "actions",
    "elements": [
        {
            "type": "button",
            "action_id": "relaybot_stop",
            "text": {"type": "plain_text", "text": "Stop"},
            "style": "danger",
            "value": "stop:C1:1",
        }
    ],
}


def status(line: str) -> dict[str, object]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}


def markdown(text: str) -> dict[str, object]:
    return {"type": "markdown", "text": text}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)


@pytest.fixture
def asked(slack: FakeSlack) -> str:
    """The user's message the reply answers in the thread of."""
    return slack.seed_message("C1", "U1", "<@UBOT> what's the weather in Paris?")


def surface_for(client: AsyncWebClient, asked: str, *, edit_interval: float = 1.0) -> SlackSurface:
    return SlackSurface(client, channel="C1", thread_ts=asked, team="T1", stop_value="stop:C1:1",
                        edit_interval=edit_interval)  # fmt: skip


# --- what a message looks like -----------------------------------------------------------------


async def test_limits_spend_the_workspace_budget_on_edits_only(
    client: AsyncWebClient, asked: str
) -> None:
    assert surface_for(client, asked, edit_interval=0.5).limits == SurfaceLimits(
        max_length=12_000,
        edit_interval=0.5,
        budget_scopes=("slack.workspace:T1",),
        post_scopes=("slack.channel:C1",),
    )


async def test_placeholder_shows_the_status_and_the_stop_button(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    ts = await surface_for(client, asked).post(Draft(text="", status="Thinking…"))
    assert [(call.method, call.args) for call in slack.calls] == [
        (
            "chat.postMessage",
            {
                "channel": "C1",
                "thread_ts": asked,
                "text": "Thinking…",
                "blocks": [status("_Thinking…_"), STOP],
                "unfurl_links": False,
                "unfurl_media": False,
            },
        )
    ]
    assert slack.thread("C1", asked)[1] == Message(
        channel="C1", ts=ts, text="Thinking…", user="UBOT", thread_ts=asked,
        blocks=[status("_Thinking…_"), STOP], bot_id="BBOT",
    )  # fmt: skip


async def test_streaming_edit_shows_markdown_status_and_stop(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    surface = surface_for(client, asked)
    ts = await surface.post(Draft(text="", status="Thinking…"))
    draft = Draft(text="**Paris**: 12 °C & rain", status="Checking the weather in <Lyon>…")
    await surface.edit(ts, draft)
    assert slack.calls[-1].args == {
        "channel": "C1",
        "ts": ts,
        "text": "Paris: 12 °C &amp; rain",
        "blocks": [
            markdown("**Paris**: 12 °C & rain"),
            status("_Checking the weather in &lt;Lyon&gt;…_"),
            STOP,
        ],
    }


async def test_final_edit_drops_the_stop_button_and_marks_an_error(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    surface = surface_for(client, asked)
    ts = await surface.post(Draft(text="Paris is"))
    await surface.edit(ts, Draft(text="Paris is", status="The model is unavailable.", final=True,
                                 error=True))  # fmt: skip
    shown = slack.message("C1", ts)
    assert shown is not None
    assert (shown.text, shown.blocks) == (
        "Paris is",
        [markdown("Paris is"), status(":warning: _The model is unavailable._")],
    )
    await surface.edit(ts, Draft(text="It rains.", final=True))
    assert slack.calls[-1].args["blocks"] == [markdown("It rains.")]


async def test_fallback_text_is_the_answer_s_first_words_as_plain_text(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    answer = "## Forecast\n\n> **Rain** in [Paris](https://example.com), see `snake_case`\n" * 5
    await surface_for(client, asked).post(Draft(text=answer, final=True))
    text = slack.calls[-1].args["text"]
    assert text.startswith("Forecast Rain in Paris, see snake_case Forecast Rain in Paris")
    assert text.endswith("…")
    assert len(text) <= 150


async def test_an_empty_final_message_still_shows_something(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    await surface_for(client, asked).post(Draft(text="", final=True))
    assert slack.calls[-1].args["blocks"] == [status("_(no answer)_")]


async def test_delete_removes_the_message(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    surface = surface_for(client, asked)
    ts = await surface.post(Draft(text="Oops"))
    await surface.delete(ts)
    assert slack.calls[-1].args == {"channel": "C1", "ts": ts}
    assert slack.message("C1", ts) is None


async def test_render_keeps_the_markdown(client: AsyncWebClient, asked: str) -> None:
    assert surface_for(client, asked).render("| a | b |\n|---|---|") == "| a | b |\n|---|---|"


def test_a_client_that_retries_429s_itself_is_refused() -> None:
    client = AsyncWebClient(token=TOKEN, retry_handlers=[AsyncRateLimitErrorRetryHandler()])
    with pytest.raises(ValueError, match="must not retry 429s"):
        SlackSurface(client, channel="C1", thread_ts="1.0", team="T1")


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected", "message"),
    [
        (ratelimited(retry_after=2), SurfaceRateLimited, "chat.update: ratelimited (HTTP 429)"),
        (error("message_not_found"), MessageGone, "chat.update: message_not_found"),
        (error("not_in_channel"), SurfaceForbidden, "chat.update: not_in_channel"),
        (error("is_archived"), SurfaceForbidden, "chat.update: is_archived"),
        (error("token_revoked"), SurfaceForbidden, "chat.update: token_revoked"),
        (error("msg_too_long"), MessageTooLong, "chat.update: msg_too_long"),
        (error("msg_blocks_too_long"), MessageTooLong, "chat.update: msg_blocks_too_long"),
        (error("internal_error"), SurfaceError, "chat.update: internal_error"),
        (http_error(500), SurfaceError, "chat.update: HTTP 500"),
    ],
)
async def test_slack_errors_are_mapped_once(
    slack: FakeSlack,
    client: AsyncWebClient,
    asked: str,
    fault: Fault,
    expected: type[SurfaceError],
    message: str,
) -> None:
    surface = surface_for(client, asked)
    ts = await surface.post(Draft(text="Hi"))
    slack.fail("chat.update", fault)
    with pytest.raises(SurfaceError) as raised:
        await surface.edit(ts, Draft(text="Hi there"))
    assert (type(raised.value), str(raised.value)) == (expected, message)
    assert raised.value.__cause__ is None  # the SDK's error, holding the request, is dropped
    assert raised.value.__suppress_context__
    if isinstance(raised.value, SurfaceRateLimited):
        assert raised.value.retry_after == 2.0


async def test_an_unknown_message_is_gone_and_a_bad_token_is_forbidden(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    with pytest.raises(MessageGone, match="message_not_found"):
        await surface_for(client, asked).edit("1700000000.999999", Draft(text="Hi"))
    stranger = AsyncWebClient(token="xoxb-revoked", base_url=slack.api_url)
    with pytest.raises(SurfaceForbidden, match="invalid_auth") as raised:
        await surface_for(stranger, asked).post(Draft(text="Hi"))
    assert "xoxb" not in str(raised.value)


async def test_a_dropped_connection_is_a_surface_error(slack: FakeSlack, asked: str) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[])
    slack.fail("chat.postMessage", disconnect())
    with pytest.raises(SurfaceError, match=r"^chat\.postMessage: ServerDisconnectedError$"):
        await surface_for(client, asked).post(Draft(text="Hi"))


# --- with LiveReply ----------------------------------------------------------------------------


async def answer(
    slack: FakeSlack, client: AsyncWebClient, asked: str, deltas: Sequence[str]
) -> LiveReply:
    """Stream ``deltas`` into a reply in ``asked``'s thread, 2 ms apart, then finish."""
    surface = surface_for(client, asked, edit_interval=0.01)
    budget = TokenBucketBudget({"slack.workspace": Rate.per(1000, 1, burst=100)})
    reply = LiveReply(surface, budget, retry_delay=0.01, name="slack")
    async with reply:
        for delta in deltas:
            reply.feed(TextDelta(text=delta))
            await asyncio.sleep(0.002)
        reply.feed(TurnFinished(text="".join(deltas), usage=Usage(), rounds=1))
    return reply


def shown(slack: FakeSlack, asked: str) -> list[str]:
    """The Markdown of the bot's messages in the thread, as Slack shows them now."""
    return [m.markdown for m in slack.thread("C1", asked) if m.bot_id]


async def test_a_streamed_answer_ends_with_the_final_text(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    deltas = ["It is ", "12 °C ", "and raining ", "in **Paris** ", "right now."]
    await answer(slack, client, asked, deltas)
    updates = [call.args for call in slack.calls if call.method == "chat.update"]
    assert len(updates) >= 2
    assert updates[-1]["blocks"] == [markdown("".join(deltas))]
    assert shown(slack, asked) == ["".join(deltas)]


async def test_a_rate_limited_edit_is_retried_after_retry_after(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    slack.fail("chat.update", ratelimited(retry_after=0), ratelimited(retry_after=0))
    deltas = ["Sunny ", "in ", "Tokyo."]
    await answer(slack, client, asked, deltas)
    updates = [c for c in slack.calls if c.method == "chat.update"]
    assert [c.error for c in updates[:2]] == ["ratelimited", "ratelimited"]
    assert updates[-1].error is None
    assert shown(slack, asked) == ["Sunny in Tokyo."]


async def test_an_over_long_answer_continues_in_a_second_message(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    paragraph = "The forecast for the week, day by day, with every detail. " * 10 + "\n\n"
    deltas = [paragraph] * 25  # 14,800 characters
    await answer(slack, client, asked, deltas)
    first, second = shown(slack, asked)
    assert max(len(first), len(second)) <= 12_000
    assert join_pieces([first, second]) == "".join(deltas)
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert [c.args["thread_ts"] for c in posts] == [asked, asked]


async def test_msg_too_long_is_split_smaller_and_sent_again(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    slack.fail("chat.update", error("msg_too_long"))
    paragraph = "Slack counts this differently, so it says too long. " * 10 + "\n\n"
    deltas = [paragraph] * 20  # 10,440 characters: one message, until Slack says no
    await answer(slack, client, asked, deltas)
    pieces = shown(slack, asked)
    assert len(pieces) == 2
    assert all(len(piece) <= 9_600 for piece in pieces)
    assert join_pieces(pieces) == "".join(deltas)


async def test_the_bot_removed_mid_answer_stops_the_reply(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    surface = surface_for(client, asked, edit_interval=0.01)
    reply = LiveReply(surface, TokenBucketBudget(), name="slack")
    async with reply:
        reply.feed(TextDelta(text="Let me"))
        async with asyncio.timeout(20):  # a loopback socket, on a machine that may be loaded
            while shown(slack, asked) != ["Let me"]:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.002)
        slack.remove_bot("C1")
        reply.feed(TurnFinished(text="Let me check.", usage=Usage(), rounds=1))
    assert reply.gone
    assert [c.error for c in slack.calls][-1] == "not_in_channel"
    assert shown(slack, asked) == ["Let me"]


# --- the fake's other methods, as the bot sees them ---------------------------------------------


async def test_the_fake_answers_the_bot_s_other_methods_as_slack_does(
    slack: FakeSlack, client: AsyncWebClient, asked: str
) -> None:
    assert (await client.auth_test())["user_id"] == "UBOT"
    user = (await client.users_info(user="U2"))["user"]
    assert (user["real_name"], user["profile"]["display_name"], user["tz"]) == (
        "Jeanne Martin", "Jeanne", "Europe/Paris",
    )  # fmt: skip
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=asked, status="is typing…")
    assert slack.statuses == {("C1", asked): "is typing…"}
    reply_ts = await surface_for(client, asked).post(Draft(text="Hi", final=True))
    assert slack.statuses == {}  # a reply in the thread clears it
    replies = (await client.conversations_replies(channel="C1", ts=asked))["messages"]
    assert [(m["ts"], m.get("bot_id"), m["text"]) for m in replies] == [
        (asked, None, "<@UBOT> what's the weather in Paris?"),
        (reply_ts, "BBOT", "Hi"),
    ]
    assert replies[0]["reply_count"] == 1
