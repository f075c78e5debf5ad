"""DiscordSurface: Discord Markdown, message content, the Stop button's View, and error mapping.

The unit cases drive the surface through a tiny recording channel (what the surface asked
discord.py to send, as discord.py's keyword arguments); the errors are discord.py's own
exceptions, built the way discord.py builds them from a response and Discord's JSON body.
The last case streams a long answer through ``LiveReply`` and a real ``discord.Client``
logged in to the loopback fake Discord, on the real clock with the default edit budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.budget import TokenBucketBudget
from adapters.discord_surface import DiscordSurface, MessageChannel, content_for, render
from adapters.live import LiveReply
from adapters.surface import (
    Draft,
    MessageGone,
    MessageTooLong,
    SurfaceError,
    SurfaceForbidden,
    SurfaceLimits,
    SurfaceRateLimited,
)
from adapters.text import join_pieces, restore_mentions
from core.events import TextDelta, TurnFinished, Usage
from tests.fakes.fake_discord import ADA, CHANNEL, FakeDiscord

# --- rendering -------------------------------------------------------------------------------


def test_a_table_becomes_an_aligned_table_in_a_code_block() -> None:
    markdown = (
        "Prices:\n"
        "\n"
        "| Fruit | Price | Stock |\n"
        "|:------|------:|:-----:|\n"
        "| **Apple** | 1.5 | yes |\n"
        "| `Kiwi` | 12 | a\\|b |\n"
        "\n"
        "That's all."
    )
    assert render(markdown) == (
        "Prices:\n"
        "\n"
        "```\n"
        "| Fruit | Price | Stock |\n"
        "|-------|-------|-------|\n"
        "| Apple |   1.5 |  yes  |\n"
        "| Kiwi  |    12 |  a|b  |\n"
        "```\n"
        "\n"
        "That's all."
    )


def test_table_without_outer_pipes_ragged_rows_and_wide_characters() -> None:
    markdown = "City | Weather\n--- | ---\n東京 | 晴れ\nParis\n| Oslo | snow | cold |"
    # "Paris" has no "|": the table ended before it; the last line is not a table of its own.
    assert render(markdown) == (
        "```\n| City | Weather |\n|------|---------|\n| 東京 | 晴れ    |\n```\n"
        "Paris\n| Oslo | snow | cold |"
    )
    ragged = "| a | b |\n|---|---|\n| 1 |\n| 1 | 2 | 3 |"
    assert render(ragged) == (
        "```\n| a | b |   |\n|---|---|---|\n| 1 |   |   |\n| 1 | 2 | 3 |\n```"
    )


@pytest.mark.parametrize(
    "markdown",
    [
        "| a | b |\n| just text with a pipe |",  # no delimiter row
        "| a | b |\n|---|",  # the delimiter has fewer cells than the header
        "a\n---",  # a setext heading (no pipe)
        "| a | b |\n|---|--x|",  # not a delimiter row
        "> | a | b |\n> |---|---|",  # in a block quote: left alone
    ],
)
def test_what_is_not_a_table_is_left_alone(markdown: str) -> None:
    assert render(markdown) == markdown


def test_headings_past_level_three_become_bold_lines() -> None:
    markdown = "# One\n## Two\n### Three\n#### Four\n##### Five ###\n###### **Six**\n####### Seven"
    assert render(markdown) == (
        "# One\n## Two\n### Three\n**Four**\n**Five**\n**Six**\n####### Seven"
    )
    assert render("#### C# tips") == "**C# tips**"
    assert render("####\n#### ") == "####\n#### "  # empty headings


def test_code_blocks_are_untouched() -> None:
    markdown = (
        "```md\n| a | b |\n|---|---|\n#### not a heading\n```\n"
        "~~~\n```\n#### still code\n~~~\n"
        "````\n```\n| x | y |\n|---|---|\n````\n"
        "#### after"
    )
    assert render(markdown) == markdown.replace("#### after", "**after**")
    streaming = "Here:\n```python\n| a | b |\n|---|---|\n#### x"  # an unclosed fence
    assert render(streaming) == streaming


@pytest.mark.parametrize(
    "markdown",
    [
        "",
        "plain text\n\nwith *emphasis*, **bold**, `code`, ~~strike~~, > quotes and @everyone",
        "- a list\n  - nested\n1. numbered\n\n[a link](https://example.com)\n---\n\r\n",
        "-# subtext\n||spoiler||\n<@123> <#456> <:emoji:789>",
    ],
)
def test_everything_else_is_kept(markdown: str) -> None:
    assert render(markdown) == markdown


def test_rendering_twice_changes_nothing() -> None:
    markdown = "#### Title\n| a | b |\n|---|---|\n| 1 | 2 |\ntext"
    assert render(render(markdown)) == render(markdown)


# --- content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "content"),
    [
        (Draft(text="Hello"), "Hello"),
        (Draft(text="Hello", final=True), "Hello"),
        (Draft(text="", status="Thinking…"), "-# Thinking…"),
        (Draft(text="It is\n\n", status="Checking the weather in Paris…"),
         "It is\n-# Checking the weather in Paris…"),
        (Draft(text="Partial", status="The model is overloaded.", final=True, error=True),
         "Partial\n⚠️ The model is overloaded."),
        (Draft(text="", status="Something went wrong.", final=True, error=True),
         "⚠️ Something went wrong."),
        (Draft(text="Half an answer", status="Stopped.", final=True),
         "Half an answer\n-# Stopped."),
        (Draft(text="x", status="Checking\nParis  and\tOslo"), "x\n-# Checking Paris and Oslo"),
        (Draft(text="", final=True), "-# (no answer)"),
    ],
)  # fmt: skip
def test_content_is_the_text_then_the_status_line(draft: Draft, content: str) -> None:
    assert content_for(draft) == content


def test_the_status_decoration_fits_in_the_room_live_reply_keeps() -> None:
    from adapters.live import STATUS_GAP

    for error in (False, True):
        draft = Draft(text="text", status="s", error=error)
        assert len(content_for(draft)) - len("text") - len("s") <= STATUS_GAP


# --- the surface, through a recording channel ------------------------------------------------


class StopView(discord.ui.View):
    def __init__(self, number: int) -> None:
        super().__init__(timeout=None)
        self.number = number


class Recorder:
    """A channel that records what the surface asked of it; ``fail`` raises on the next call."""

    def __init__(self, channel_id: int = 555) -> None:
        self.id = channel_id
        self.calls: list[tuple[str, int | None, dict[str, Any]]] = []
        self.fail: BaseException | None = None
        self._next_id = 1000

    async def send(self, content: str | None = None, **options: Any) -> Any:
        self._record("send", None, content=content, **options)
        self._next_id += 1
        return SimpleNamespace(id=self._next_id)

    def get_partial_message(self, message_id: int, /) -> Any:
        async def edit(**options: Any) -> None:
            self._record("edit", message_id, **options)

        async def delete() -> None:
            self._record("delete", message_id)

        return SimpleNamespace(edit=edit, delete=delete)

    def _record(self, op: str, message_id: int | None, **options: Any) -> None:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        for key, value in options.items():
            if isinstance(value, discord.AllowedMentions):
                options[key] = value.to_dict()
            elif isinstance(value, StopView):
                options[key] = f"stop view {value.number}"
            elif isinstance(value, discord.MessageReference):
                options[key] = value.to_dict()
        self.calls.append((op, message_id, options))


NONE: dict[str, list[str]] = {"parse": []}


@pytest.fixture
def channel() -> Recorder:
    return Recorder()


@pytest.fixture
def views() -> list[StopView]:
    return []


@pytest.fixture
def surface(channel: Recorder, views: list[StopView]) -> DiscordSurface:
    def stop_view() -> StopView:
        views.append(StopView(len(views) + 1))
        return views[-1]

    return DiscordSurface(cast(MessageChannel, channel), stop_view=stop_view, edit_interval=1.5)


def test_limits(surface: DiscordSurface) -> None:
    assert surface.limits == SurfaceLimits(
        max_length=2000,
        edit_interval=1.5,
        budget_scopes=("discord.channel:555", "discord.global"),
        post_scopes=None,
    )
    assert surface.render("#### x") == "**x**"


async def test_the_stop_button_shows_while_streaming_and_goes_with_the_final_edit(
    surface: DiscordSurface, channel: Recorder, views: list[StopView]
) -> None:
    first = await surface.post(Draft(text="", status="Thinking…"))
    await surface.edit(first, Draft(text="Hello"))
    await surface.edit(first, Draft(text="Hello " + "x" * 1800, final=True))  # frozen: full
    second = await surface.post(Draft(text="more"))  # the overflow
    await surface.edit(second, Draft(text="more text", final=True))
    assert (first, second) == ("1001", "1002")
    assert channel.calls == [
        ("send", None, {"content": "-# Thinking…", "allowed_mentions": NONE,
                        "suppress_embeds": True, "view": "stop view 1"}),
        ("edit", 1001, {"content": "Hello", "allowed_mentions": NONE}),
        ("edit", 1001, {"content": "Hello " + "x" * 1800, "allowed_mentions": NONE,
                        "view": None}),
        ("send", None, {"content": "more", "allowed_mentions": NONE, "suppress_embeds": True,
                        "view": "stop view 2"}),
        ("edit", 1002, {"content": "more text", "allowed_mentions": NONE, "view": None}),
    ]  # fmt: skip
    assert [view.is_finished() for view in views] == [True, True]


async def test_a_message_shown_final_that_streams_again_gets_a_new_button(
    surface: DiscordSurface, channel: Recorder, views: list[StopView]
) -> None:
    """After a retry rewinds the answer, the frozen first message is the last one again."""
    first = await surface.post(Draft(text="a", final=True))  # posted final: no button
    second = await surface.post(Draft(text="b"))
    await surface.delete(second)
    await surface.edit(first, Draft(text="a, again"))
    await surface.edit(first, Draft(text="a, again and more"))
    assert channel.calls == [
        ("send", None, {"content": "a", "allowed_mentions": NONE, "suppress_embeds": True}),
        ("send", None, {"content": "b", "allowed_mentions": NONE, "suppress_embeds": True,
                        "view": "stop view 1"}),
        ("delete", 1002, {}),
        ("edit", 1001, {"content": "a, again", "allowed_mentions": NONE,
                        "view": "stop view 2"}),
        ("edit", 1001, {"content": "a, again and more", "allowed_mentions": NONE}),
    ]  # fmt: skip
    assert [view.is_finished() for view in views] == [True, False]


async def test_without_a_stop_view_no_button_is_sent(channel: Recorder) -> None:
    surface = DiscordSurface(cast(MessageChannel, channel))
    ref = await surface.post(Draft(text="hi"))
    await surface.edit(ref, Draft(text="hi there"))
    await surface.edit(ref, Draft(text="hi there", final=True))
    assert channel.calls == [
        ("send", None, {"content": "hi", "allowed_mentions": NONE, "suppress_embeds": True}),
        ("edit", 1001, {"content": "hi there", "allowed_mentions": NONE}),
        ("edit", 1001, {"content": "hi there", "allowed_mentions": NONE, "view": None}),
    ]


async def test_only_the_first_message_replies_to_the_question(channel: Recorder) -> None:
    state = SimpleNamespace(_get_guild=lambda guild_id: None)
    asked = discord.PartialMessageable(state=cast(Any, state), id=555).get_partial_message(7)
    surface = DiscordSurface(cast(MessageChannel, channel), reply_to=asked)
    await surface.post(Draft(text="one", final=True))
    await surface.post(Draft(text="two"))
    reference = {"type": 0, "message_id": 7, "channel_id": 555, "fail_if_not_exists": False}
    assert channel.calls == [
        ("send", None, {"content": "one", "allowed_mentions": NONE, "suppress_embeds": True,
                        "reference": reference}),
        ("send", None, {"content": "two", "allowed_mentions": NONE, "suppress_embeds": True}),
    ]  # fmt: skip


async def test_a_failed_first_message_keeps_the_reply_reference(channel: Recorder) -> None:
    state = SimpleNamespace(_get_guild=lambda guild_id: None)
    asked = discord.PartialMessageable(state=cast(Any, state), id=555).get_partial_message(7)
    surface = DiscordSurface(cast(MessageChannel, channel), reply_to=asked)
    channel.fail = aiohttp.ServerDisconnectedError()
    with pytest.raises(SurfaceError):
        await surface.post(Draft(text="one"))
    await surface.post(Draft(text="one"))
    assert "reference" in channel.calls[-1][2]


# --- errors ----------------------------------------------------------------------------------


def response(status: int, reason: str, headers: dict[str, str] | None = None) -> Any:
    """What discord.py's exceptions read of an aiohttp response."""
    return SimpleNamespace(status=status, reason=reason, headers=headers or {})


def body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, **({"errors": errors} if errors else {})}


TOO_LONG = {
    "content": {
        "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
    }
}
BAD_BUTTON = {
    "components": {"0": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "Required"}]}}
}

ERRORS: list[tuple[BaseException, type[SurfaceError], str]] = [
    (discord.NotFound(response(404, "Not Found"), body(10008, "Unknown Message")),
     MessageGone, "HTTP 404, Discord code 10008"),
    (discord.NotFound(response(404, "Not Found"), body(10003, "Unknown Channel")),
     MessageGone, "HTTP 404, Discord code 10003"),
    (discord.Forbidden(response(403, "Forbidden"), body(50013, "Missing Permissions")),
     SurfaceForbidden, "HTTP 403, Discord code 50013"),
    (discord.Forbidden(response(403, "Forbidden"), body(50001, "Missing Access")),
     SurfaceForbidden, "HTTP 403, Discord code 50001"),
    (discord.HTTPException(response(400, "Bad Request"), body(50083, "Thread is archived")),
     SurfaceForbidden, "HTTP 400, Discord code 50083"),
    (discord.HTTPException(response(400, "Bad Request"), body(160005, "Thread is locked")),
     SurfaceForbidden, "HTTP 400, Discord code 160005"),
    (discord.HTTPException(response(401, "Unauthorized"), body(0, "401: Unauthorized")),
     SurfaceForbidden, "HTTP 401"),
    (discord.HTTPException(response(400, "Bad Request"),
                           body(50035, "Invalid Form Body", TOO_LONG)),
     MessageTooLong, "HTTP 400, Discord code 50035"),
    (discord.HTTPException(response(400, "Bad Request"),
                           body(50035, "Invalid Form Body", BAD_BUTTON)),
     SurfaceError, "HTTP 400, Discord code 50035"),
    (discord.HTTPException(response(400, "Bad Request"), body(50006, "Cannot send an empty")),
     SurfaceError, "HTTP 400, Discord code 50006"),
    (discord.DiscordServerError(response(503, "Service Unavailable"), "upstream"),
     SurfaceError, "HTTP 503"),
    (discord.HTTPException(response(429, "Too Many Requests", {"Retry-After": "30"}),
                           "<html>Cloudflare</html>"),
     SurfaceRateLimited, "HTTP 429"),
    (discord.RateLimited(42.0), SurfaceRateLimited, "rate limited for 42.0 s"),
    (aiohttp.ServerDisconnectedError(), SurfaceError, "ServerDisconnectedError"),
    (ConnectionResetError(54, "reset"), SurfaceError, "ConnectionResetError"),
    (TimeoutError(), SurfaceError, "TimeoutError"),
]  # fmt: skip


def _operations(surface: DiscordSurface) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "send message": lambda: surface.post(Draft(text="hi")),
        "edit message": lambda: surface.edit("1001", Draft(text="hi")),
        "delete message": lambda: surface.delete("1001"),
    }


@pytest.mark.parametrize("action", ["send message", "edit message", "delete message"])
@pytest.mark.parametrize(("error", "mapped", "detail"), ERRORS)
async def test_discord_errors_become_surface_errors(
    surface: DiscordSurface,
    channel: Recorder,
    action: str,
    error: BaseException,
    mapped: type[SurfaceError],
    detail: str,
) -> None:
    channel.fail = error
    with pytest.raises(SurfaceError) as raised:
        await _operations(surface)[action]()
    assert type(raised.value) is mapped
    assert str(raised.value) == f"{action}: {detail}"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (discord.RateLimited(42.0), 42.0),
        (discord.HTTPException(response(429, "Too Many", {"Retry-After": "30"}), "banned"), 30.0),
        (discord.HTTPException(response(429, "Too Many"), "banned"), 1.0),
    ],
)
async def test_rate_limits_carry_their_retry_after(
    surface: DiscordSurface, channel: Recorder, error: BaseException, retry_after: float
) -> None:
    channel.fail = error
    with pytest.raises(SurfaceRateLimited) as raised:
        await surface.edit("1001", Draft(text="hi"))
    assert raised.value.retry_after == retry_after


async def test_a_failed_final_edit_keeps_the_button_until_it_succeeds(
    surface: DiscordSurface, channel: Recorder, views: list[StopView]
) -> None:
    ref = await surface.post(Draft(text="a"))
    channel.fail = discord.DiscordServerError(response(502, "Bad Gateway"), "")
    with pytest.raises(SurfaceError):
        await surface.edit(ref, Draft(text="a", final=True))
    assert not views[0].is_finished()
    await surface.edit(ref, Draft(text="a", final=True))
    assert views[0].is_finished()


# --- end to end: LiveReply, a real discord.py client, the fake Discord -----------------------

TOKEN = "bot-token"
CREATE = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"


WORDS = (
    "the model streams tokens and the bot edits its message in place while Discord counts "
    "every character of the reply so long answers continue"
)


def prose(length: int, seed: int) -> str:
    """Deterministic filler of about ``length`` characters, a sentence."""
    words = WORDS.split()
    out: list[str] = []
    while len(" ".join(out)) < length:
        out.append(words[(seed + 7 * len(out)) % len(words)])
    return " ".join(out).capitalize() + "."


CODE = "".join(
    f"def step_{i:02d}(x: int) -> int:\n    return x * {i} + {i % 7}  # step {i}\n\n"
    for i in range(40)
)
ANSWER = (
    f"{prose(300, 1)} Heads up @everyone, this is long.\n\n{prose(330, 2)}\n\n"
    f"```python\n{CODE}```\n\n" + "\n\n".join(prose(400, k) for k in range(3, 9))
)[:4500]


class StopButton(discord.ui.View):
    @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, custom_id="stop")
    async def stop_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[StopButton]
    ) -> None:
        await interaction.response.defer()


@pytest.fixture
async def discord_client() -> AsyncIterator[tuple[FakeDiscord, discord.Client]]:
    """A plain client logged in to the fake (no client-wide ``allowed_mentions``: every call
    must carry its own)."""
    async with FakeDiscord(token=TOKEN) as fake:
        base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = fake.api_url, yarl.URL(fake.gateway_url)
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.01)
        runner = asyncio.create_task(client.start(TOKEN), name="discord client")
        try:
            async with asyncio.timeout(20):  # loopback, on a machine that may be loaded
                await fake.ready.wait()
                await client.wait_until_ready()  # its ready timer done: closing it is safe
            yield fake, client
        finally:
            await client.close()
            await asyncio.wait_for(runner, 20)
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


async def test_a_long_answer_streams_into_three_messages_without_a_429(
    discord_client: tuple[FakeDiscord, discord.Client],
) -> None:
    fake, client = discord_client
    asked = await fake.user_message(CHANNEL, ADA, "Show me forty small Python functions")
    channel = client.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    thread = await channel.get_partial_message(asked.id).create_thread(name="Forty functions")

    surface = DiscordSurface(thread, stop_view=StopButton)
    async with LiveReply(surface, TokenBucketBudget(), name="discord") as reply:
        for start in range(0, len(ANSWER), 100):
            reply.feed(TextDelta(text=ANSWER[start : start + 100]))
            await asyncio.sleep(0.02)
        reply.feed(TurnFinished(text=ANSWER, usage=Usage(), rounds=1))

    shown = fake.messages(thread.id)
    contents = [message.content for message in shown]
    assert [len(content) <= 2000 for content in contents] == [True, True, True]
    assert contents[0].endswith("  # step 17\n\n\n```")  # the code block closed…
    assert contents[1].startswith("```python\ndef step_18")  # …and reopened
    assert all(content.count("```") % 2 == 0 for content in contents)
    assert restore_mentions(join_pieces(contents)) == ANSWER  # nothing lost or added
    assert "@\u200beveryone" in contents[0]
    assert [message.id for message in shown] == [int(ref) for ref in reply.messages]
    assert [(m.custom_ids, m.pings, m.flags & 4) for m in shown] == [([], False, 4)] * 3

    writes = [call for call in fake.calls if call.route in (CREATE, EDIT)]
    assert [call.status for call in writes] == [200] * len(writes)
    assert all(call.json["allowed_mentions"] == {"parse": []} for call in writes)
    first = writes[0].json  # the first text showed at once, with the Stop button
    assert (first["content"], first["components"][0]["components"][0]["custom_id"]) == (
        ANSWER[:100],
        "stop",
    )
    routes = [call.route for call in writes]
    assert (routes[0], routes.count(CREATE), EDIT in routes) == (CREATE, 3, True)
    assert fake.rate_limited == 0
