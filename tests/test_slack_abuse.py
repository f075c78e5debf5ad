"""Abuse costs nothing: what anyone can send the Slack bot's HTTP endpoint, and what a message
full of mentions can make it do, stays cheap — a few log lines, no traceback, no Web API calls
beyond a small bound.

The real bot over HTTP on loopback, as in ``tests/test_slack_bot.py`` (its harness and Slack
payloads are used here). Logs are read as a log file would hold them: a handler on the root
logger at INFO, counting the bytes of each formatted record. The log's rate limit is paced by a
fake clock (a second server of the same bot, built with :func:`web_app`), never by sleeping.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from bots.loopback import LoopbackServer
from bots.replies import TOO_LONG
from bots.slack.server import EVENTS_PATH, MAX_BODY, REFUSALS_LOG_SECONDS, web_app
from bots.slack.workspace import NAMES_AT_ONCE
from tests import test_slack_bot
from tests.support.clock import FakeTime
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    JEANNE,
    SECRET,
    Harness,
    answer,
    envelope,
    mention,
    signature,
)

bot, start = test_slack_bot.bot, test_slack_bot.start  # its fixtures, by the same names

FLOOD = 50
PAD = "x"


class LogFile(logging.Handler):
    """Every record at INFO or above, formatted as a log file would hold it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.size = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.size += len(self.format(record).encode()) + 1

    def lines(self, logger: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == logger]


@contextmanager
def logged() -> Iterator[LogFile]:
    """What the process logs at INFO or above while the block runs."""
    root, handler = logging.getLogger(), LogFile()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def paced(bot: Harness) -> AsyncIterator[tuple[Harness, FakeTime]]:
    """The bot, served a second time by :func:`web_app` with a fake clock for its refusal log;
    the harness now posts there."""
    clock = FakeTime()
    async with LoopbackServer(web_app(bot.bot, clock=clock)) as server:
        bot.url = server.url
        yield bot, clock


def padded(size: int) -> str:
    """A plausible event envelope, padded to ``size`` bytes."""
    head = json.dumps(envelope(mention("1700000000.000100", "<@UBOT> hi"), "Ev1"))[:-1]
    head += ', "pad": "'
    return head + PAD * (size - len(head) - 2) + '"}'


def forged(body: str, *, secret: str = "not-the-secret") -> dict[str, str]:
    now = str(int(time.time()))
    return {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": signature(secret, now, body)}


async def post(
    bot: Harness, body: str | bytes | AsyncIterator[bytes], headers: dict[str, str]
) -> int:
    headers = {"Content-Type": "application/json", **headers}
    data = io.BytesIO(body) if isinstance(body, bytes) else body  # aiohttp's advice for a MB
    async with bot.http.post(bot.url + EVENTS_PATH, data=data, headers=headers) as response:
        return response.status


def refusals(log: LogFile) -> list[str]:
    return [line for line in log.lines("relaybot.slack") if line.startswith("refused")]


# --- what anyone can send ----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "not-the-secret"], ids=["unsigned", "forged"])
async def test_a_flood_of_megabyte_posts_costs_a_few_log_lines(
    paced: tuple[Harness, FakeTime], secret: str | None
) -> None:
    bot, _ = paced
    body = padded(MAX_BODY)  # within the cap (a body of exactly MAX_BODY is read): 401, not 413
    headers = forged(body, secret=secret) if secret else {}
    with logged() as log:
        statuses = [await post(bot, body.encode(), headers) for _ in range(FLOOD)]

    assert statuses == [401] * FLOOD
    assert log.size < 100_000, f"{log.size:,} bytes of log for {FLOOD} posts"
    assert not any(PAD * 100 in r.getMessage() for r in log.records)
    assert len(refusals(log)) == 1, "one line per minute at most"
    assert bot.slack.calls == []


async def test_a_body_over_the_cap_is_refused_unread(bot: Harness) -> None:
    body = padded(MAX_BODY + 1)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp stops at the cap
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024].encode()

    with logged() as log:
        assert await post(bot, body.encode(), forged(body, secret=SECRET)) == 413
        assert await post(bot, chunked(), forged(body, secret=SECRET)) == 413
        assert await post(bot, body.encode(), {}) == 401  # not Slack's, whatever its size
    assert log.size < 2_000
    assert bot.slack.calls == []


async def test_a_refusal_is_one_line_with_the_address_then_quiet_for_a_while(
    paced: tuple[Harness, FakeTime],
) -> None:
    bot, clock = paced
    body = json.dumps(envelope(mention("1700000000.000100", "<@UBOT> hi"), "Ev1"))
    with logged() as log:
        assert await post(bot, body, forged(body)) == 401
        assert refusals(log) == ["refused a request from 127.0.0.1 with 401: a bad signature"]
        statuses = [await post(bot, body, forged(body)) for _ in range(20)]
        clock.now += REFUSALS_LOG_SECONDS / 2
        statuses.append(await post(bot, body, {}))
        assert len(refusals(log)) == 1
        clock.now += REFUSALS_LOG_SECONDS / 2
        statuses.append(await post(bot, body, {}))

    assert statuses == [401] * 22
    assert refusals(log)[1:] == [
        "refused a request from 127.0.0.1 with 401: no signature "
        "(21 more refused since the last line)"
    ]
    assert all(r.levelno == logging.WARNING for r in log.records if r.name == "relaybot.slack")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"type": "event_callback", "event": ', "application/json"),
        ("[1, 2, 3]", "application/json"),
        ('"event_callback"', "application/json"),
        ("", "application/json"),
        ("payload=%7Bnope", "application/x-www-form-urlencoded"),
        ("payload=%5B%5D", "application/x-www-form-urlencoded"),
        ("[" * 100_000 + "]" * 100_000, "application/json"),
    ],
    ids=[
        "bad-json",
        "array",
        "string",
        "empty",
        "bad-payload",
        "list-payload",
        "nested-deep",
    ],
)
async def test_a_signed_but_malformed_body_gets_400_and_no_traceback(
    bot: Harness, body: str, content_type: str
) -> None:
    with logged() as log:
        status = await post(
            bot, body, {**forged(body, secret=SECRET), "Content-Type": content_type}
        )

    assert status == 400
    assert [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR] == []
    (line,) = refusals(log)
    assert line.startswith("refused a request from 127.0.0.1 with 400: ")
    assert bot.slack.calls == []


@pytest.mark.parametrize("timestamp", ["soon", "9" * 5000, "1" + "0" * 400])
async def test_a_timestamp_that_is_no_time_gets_401(bot: Harness, timestamp: str) -> None:
    body = json.dumps(envelope(mention("1700000000.000100", "<@UBOT> hi"), "Ev1"))
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"}
    with logged() as log:
        assert await post(bot, body, headers) == 401
    assert [r for r in log.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_bolts_own_signature_check_logs_no_body_either(bot: Harness) -> None:
    """The server checks signatures before bolt; should bolt ever refuse one itself (a
    timestamp going stale between the two checks), its log line holds no body either."""
    body = padded(MAX_BODY)
    headers: dict[str, str | Sequence[str]] = {**forged(body)}
    request = AsyncBoltRequest(body=body, headers=headers)
    with logged() as log:
        response = await bot.bot.app.async_dispatch(request)

    assert response.status == 401
    assert log.size < 1_000
    assert not any(PAD * 100 in r.getMessage() for r in log.records)


# --- what a message can make the bot do --------------------------------------------------------


def mentions(count: int) -> str:
    return " ".join(f"<@U{n:07d}>" for n in range(count))


def looked_up(bot: Harness) -> list[str]:
    return [str(c.args["user"]) for c in bot.slack.calls if c.method == "users.info"]


async def test_a_message_of_thousands_of_mentions_is_refused_before_any_name_is_looked_up(
    bot: Harness,
) -> None:
    text = f"<@UBOT> {mentions(3000)}"
    asked = bot.slack.seed_message(CHANNEL, ADA, text)
    await bot.send(mention(asked, text))
    await bot.settled()

    length = len(" ".join(["@unknown"] * 3000))
    assert [m.text for m in bot.replies(CHANNEL, asked)] == [
        TOO_LONG.format(length=length, limit=8000)
    ]
    assert looked_up(bot) == [ADA], "the asker's name and time zone, nobody else's"
    assert bot.gateway.requests == []


async def test_a_message_names_the_first_fifty_people_it_mentions_and_no_more(
    bot: Harness,
) -> None:
    text = f"<@UBOT> ask <@{ADA}> and <@{JEANNE}> and {mentions(119)} about it"
    bot.gateway.enqueue(answer("Asked."))
    asked = bot.slack.seed_message(CHANNEL, ADA, text)
    await bot.send(mention(asked, text))
    assert await bot.answer(CHANNEL, asked) == "Asked."

    named = [JEANNE, *(f"U{n:07d}" for n in range(NAMES_AT_ONCE - 1))]
    assert sorted(looked_up(bot)) == sorted([ADA, *named])  # the asker's once, the bot's never
    ids = [f"@U{n:07d}" for n in range(NAMES_AT_ONCE - 1)]  # unknown to Slack: their ids
    rest = ["@unknown"] * (119 - len(ids))
    said = f"ask @ada and @Jeanne and {' '.join(ids + rest)} about it"  # @ada: no lookup of hers
    assert bot.model_messages(0) == [("user", said)]
