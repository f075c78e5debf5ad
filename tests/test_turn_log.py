"""The ``turn finished`` line and the turn metrics: one per turn the worker ends, on every path.

The worker is the recording platform's of ``tests.test_turns`` (fake surfaces, the real engine
over the loopback gateway, the memory store), with a monotonic clock that moves one second per
reading, so a turn's times are exact numbers without a wait. Log lines are read as the
operator's handler writes them (``bots.logs.log_handler``), JSON or text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from adapters.surface import SurfaceRateLimited
from bots.cli import build_parser
from bots.logs import (
    TURN_ID,
    JsonFormatter,
    TextFormatter,
    log_handler,
    set_log_format,
    turn_context,
)
from bots.turn_log import conversation_hash
from bots.turns import TurnWorker
from core.limits import UsageLimits
from core.metrics import REGISTRY
from core.retry import RetryPolicy
from core.tools import ToolRegistry, tool
from tests.fakes.llm_gateway import Error, FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until
from tests.test_turns import KEY, LEASE, Scene, answers, stranded_by_a_dead_worker

QUESTION = "what is the secret plan?"
ANSWER = "The plan is tea at noon."


class Ticking:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return float(self.readings)


class LoggedScene(Scene):
    def new_worker(
        self, owner: str, *, retention: float | None = None, limits: UsageLimits | None = None
    ) -> TurnWorker:
        worker = super().new_worker(owner, retention=retention, limits=limits)
        worker._timing = dataclasses.replace(worker._timing, monotonic=Ticking())
        return worker


class Lines:
    """What a handler in one format wrote while the test ran."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]

    def turns(self) -> list[dict[str, Any]]:
        return [line for line in self.json() if line["message"] == "turn finished"]


@pytest.fixture
async def scene(gateway: FakeGateway, http: httpx2.AsyncClient) -> AsyncIterator[LoggedScene]:
    made = LoggedScene(gateway, http)
    yield made
    await made.worker.close()


def capture(log_format: str) -> Iterator[Lines]:
    lines = Lines()
    handler = log_handler(log_format, lines.stream)  # type: ignore[arg-type]
    root, relaybot = logging.getLogger(), logging.getLogger("relaybot")
    level = relaybot.level
    root.addHandler(handler)
    relaybot.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        relaybot.setLevel(level)
        root.removeHandler(handler)


@pytest.fixture
def logged() -> Iterator[Lines]:
    yield from capture("json")


@pytest.fixture
def logged_text() -> Iterator[Lines]:
    yield from capture("text")


def turns_counted(outcome: str) -> float:
    labels = {"platform": "slack", "outcome": outcome}
    return REGISTRY.get_sample_value("relaybot_turns_total", labels) or 0.0


def first_texts_observed() -> float:
    labels = {"platform": "slack"}
    return REGISTRY.get_sample_value("relaybot_time_to_first_text_seconds_count", labels) or 0.0


async def answer(scene: Scene, text: str = QUESTION, order: str = "1") -> int:
    turn = await scene.accept(text, order)
    scene.worker.wake(KEY)
    await scene.idle()
    return turn.id


# --- an answered turn -------------------------------------------------------------------------


async def test_an_answered_turn_logs_one_line_with_every_field(
    scene: LoggedScene, logged: Lines
) -> None:
    answered, observed = turns_counted("answered"), first_texts_observed()
    scene.gateway.enqueue(Stream(openai_chunks(ANSWER, usage=(42, 7))))
    turn_id = await answer(scene)

    [line] = logged.turns()
    assert (line["level"], line["logger"]) == ("INFO", "relaybot.turns")
    fields = {k: v for k, v in line.items() if k not in ("time", "level", "logger", "message")}
    assert fields == {
        "turn_id": turn_id,
        "platform": "slack",
        "conversation": hashlib.sha256(str(KEY).encode()).hexdigest()[:12],
        "model": "fake/model",
        "rounds": 1,
        "tools": [],
        "input_tokens": 42,
        "output_tokens": 7,
        "first_text_seconds": 1.0,  # the first event fed to the reply was text
        "total_seconds": fields["total_seconds"],
        "outcome": "answered",
        "failure": None,
        "retries": 0,
        "delivered": True,
    }
    assert fields["total_seconds"] > 1.0
    assert turns_counted("answered") == answered + 1
    assert first_texts_observed() == observed + 1


async def test_no_line_holds_the_question_the_answer_or_the_conversations_ids(
    scene: LoggedScene, logged: Lines
) -> None:
    scene.gateway.enqueue(Stream(openai_chunks(ANSWER)))
    await answer(scene)
    text = logged.text()
    assert logged.turns()
    for private in ("secret plan", "tea at noon", KEY.workspace, KEY.channel, KEY.thread):
        # As a word: the workspace "T1" is part of every timestamp from 10:00 to 19:59.
        assert not re.search(rf"\b{re.escape(private)}\b", text), private
    assert "sk-test" not in text


def test_the_conversation_hash_is_short_and_stable() -> None:
    assert conversation_hash(KEY) == conversation_hash(dataclasses.replace(KEY))
    assert len(conversation_hash(KEY)) == 12
    assert conversation_hash(KEY) != conversation_hash(dataclasses.replace(KEY, thread="2"))


# --- other endings ----------------------------------------------------------------------------


async def test_a_stopped_turn(scene: LoggedScene, logged: Lines) -> None:
    stopped = turns_counted("stopped")
    scene.gateway.enqueue(Stream.stalled(openai_chunks("A long answer that never ends"), after=2))
    turn = await scene.accept(QUESTION, "1")
    scene.worker.wake(KEY)
    await until(lambda: any(scene.shown()), "the first words")
    assert scene.worker.stop(turn.id)
    await scene.idle()
    scene.gateway.release_stalls()

    [line] = logged.turns()
    assert (line["turn_id"], line["outcome"], line["failure"]) == (turn.id, "stopped", None)
    assert line["first_text_seconds"] is not None
    assert (line["input_tokens"], line["output_tokens"]) == (None, None)  # never reported
    assert line["delivered"] is True  # "Stopped." is shown
    assert turns_counted("stopped") == stopped + 1


async def test_a_turn_the_model_fails(scene: LoggedScene, logged: Lines) -> None:
    failed = turns_counted("failed_model")
    scene.gateway.enqueue(Error.openai(401, "bad key", type="invalid_request_error"))
    await answer(scene)

    [line] = logged.turns()
    assert (line["outcome"], line["failure"], line["delivered"]) == ("failed", "model", True)
    assert (line["rounds"], line["first_text_seconds"]) == (0, None)
    assert turns_counted("failed_model") == failed + 1


async def test_a_turn_refused_with_a_notice(scene: LoggedScene, logged: Lines) -> None:
    scene.platform.notices[QUESTION] = "That message is too long for me."
    await answer(scene)
    [line] = logged.turns()
    assert (line["outcome"], line["failure"], line["delivered"]) == ("refused", None, True)


async def test_a_turn_that_breaks_on_the_platform(scene: LoggedScene, logged: Lines) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the platform client is closed")

    scene.platform.prepare = broken  # type: ignore[method-assign, assignment]
    scene.worker = scene.new_worker("host:2:me")
    await answer(scene)
    [line] = logged.turns()
    assert (line["outcome"], line["failure"]) == ("failed", "platform")


async def test_a_tool_turn_lists_its_tools_in_order_once_each(
    scene: LoggedScene, logged: Lines
) -> None:
    @tool(activity="Checking")
    async def check(topic: str) -> str:
        """Check a topic."""
        return "checked"

    @tool(activity="Looking")
    async def look(place: str) -> str:
        """Look at a place."""
        return "seen"

    scene.engine._tools = ToolRegistry([check, look])
    scene.gateway.enqueue(
        Stream(openai_chunks("", tool_calls=[("c1", "look", '{"place": "a"}')])),
        Stream(
            openai_chunks(
                "Checking. ",
                tool_calls=[("c2", "check", '{"topic": "a"}'), ("c3", "look", '{"place": "b"}')],
            )
        ),
        Stream(openai_chunks("Done.")),
    )
    await answer(scene)
    [line] = logged.turns()
    assert line["tools"] == ["look", "check"]
    assert line["rounds"] == 3
    assert (line["input_tokens"], line["output_tokens"]) == (30, 15)  # summed over the rounds
    assert line["outcome"] == "answered"


async def test_a_shutdown_reports_the_answer_it_hands_back(
    scene: LoggedScene, logged: Lines
) -> None:
    scene.gateway.enqueue(Stream.stalled(openai_chunks("A long answer that never ends"), after=2))
    await scene.accept(QUESTION, "1")
    scene.worker.wake(KEY)
    await until(lambda: any(scene.shown()), "the first words")
    await scene.worker.shutdown(grace=8)
    scene.gateway.release_stalls()
    [line] = logged.turns()
    assert (line["outcome"], line["delivered"]) == ("restarting", True)


async def test_recovered_turns_are_reported(scene: LoggedScene, logged: Lines) -> None:
    turn = await stranded_by_a_dead_worker(scene, QUESTION, tool=True)
    await scene.clock.advance(LEASE + 1)
    await scene.worker.recover()
    await scene.idle()
    [line] = logged.turns()
    assert (line["turn_id"], line["outcome"], line["delivered"]) == (turn.id, "interrupted", True)
    assert (line["rounds"], line["tools"]) == (0, [])  # what the dead worker did is not known


# --- the turn id on every line ----------------------------------------------------------------


async def test_lines_logged_during_a_turn_carry_its_id(scene: LoggedScene, logged: Lines) -> None:
    scene.engine._retry = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, deadline=20)
    scene.gateway.enqueue(Error.openai(500, "overloaded"), *answers(ANSWER))
    scene.platform.thread(KEY).fail_next("post", SurfaceRateLimited("ratelimited", retry_after=0))
    logging.getLogger("relaybot.test").warning("before any turn")
    turn_id = await answer(scene)

    lines = logged.json()  # every line is one JSON object
    assert lines[0]["message"] == "before any turn"
    assert "turn_id" not in lines[0]
    loggers = {line["logger"] for line in lines if line.get("turn_id") == turn_id}
    assert {"relaybot.engine", "relaybot.live", "relaybot.turns"} <= loggers
    retrying = [line for line in lines if line["message"].startswith("retrying a model call")]
    assert [line["turn_id"] for line in retrying] == [turn_id]
    assert logged.turns()[0]["retries"] == 1


async def test_text_lines_show_the_fields_and_the_turn(
    scene: LoggedScene, logged_text: Lines
) -> None:
    scene.gateway.enqueue(*answers(ANSWER))
    turn_id = await answer(scene)
    [line] = [line for line in logged_text.text().splitlines() if "turn finished" in line]
    assert " INFO relaybot.turns: turn finished turn_id=" in line
    assert f"turn_id={turn_id} platform=slack conversation={conversation_hash(KEY)}" in line
    assert " tools=- input_tokens=10 output_tokens=5 first_text_seconds=1.000 " in line
    assert " outcome=answered failure=- retries=0 delivered=True" in line


def test_a_plain_line_during_a_turn_says_which_in_text() -> None:
    record = logging.LogRecord("relaybot.live", logging.INFO, __file__, 1, "edit failed", (), None)
    handler = log_handler("text", io.StringIO())
    with turn_context(12):
        assert TURN_ID.get() == 12
        handler.filter(record)
    assert TURN_ID.get() is None
    assert TextFormatter().format(record).endswith("relaybot.live: edit failed [turn 12]")


def test_json_writes_what_it_cannot_encode_as_text() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("relaybot.test.json")
    handler = log_handler("json", stream)
    logger.addHandler(handler)
    try:
        logger.error("odd", extra={"fields": {"when": {1, 2}.__class__}})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert (line["message"], line["when"]) == ("odd", "<class 'set'>")


def test_the_log_format_is_switched_once_the_settings_are_read() -> None:
    assert build_parser().parse_args(["--log-format", "json", "console"]).log_format == "json"
    handler = log_handler("text", io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        set_log_format("json")
    finally:
        root.removeHandler(handler)
    assert isinstance(handler.formatter, JsonFormatter)
