"""core.tools: schemas from signatures, and every way a call can go wrong becoming a readable
error result instead of a crash."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, field_serializer

from core.messages import ConversationKey, ToolCall, ToolResult, ToolSpec
from core.tools import Tool, ToolContext, ToolFailure, ToolOutcome, ToolRegistry, tool

CONTEXT = ToolContext(
    key=ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.1"),
    user_id="U1",
    user_name="Ada",
    platform="slack",
)


def call(name: str, arguments: dict[str, Any] | None = None, *, raw: str = "") -> ToolCall:
    return ToolCall(id=f"call_{name}", name=name, arguments=arguments, raw_arguments=raw)


def error(name: str, content: str) -> ToolResult:
    return ToolResult(call_id=f"call_{name}", name=name, content=content, is_error=True)


def ticking(step: float = 0.5) -> Callable[[], float]:
    """A clock that advances ``step`` seconds each time it is read."""
    ticks: Iterator[float] = (i * step for i in range(10_000))
    return lambda: next(ticks)


# --- schemas ------------------------------------------------------------------------------------


class Unit(Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Point(BaseModel):
    """A point on Earth."""

    latitude: float
    longitude: float = Field(0.0, description="East is positive.")


def test_schema_from_annotated_descriptions_defaults_and_literal() -> None:
    @tool
    def search(
        query: Annotated[str, Field(description="What to look for.")],
        limit: Annotated[int, Field(ge=1, le=50, description="At most this many.")] = 10,
        order: Literal["newest", "oldest"] = "newest",
    ) -> list[str]:
        """Search the archive.

        The archive holds every message since 2019.
        """
        return [query] * limit

    assert search.spec == ToolSpec(
        name="search",
        description="Search the archive.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "limit": {
                    "type": "integer",
                    "description": "At most this many.",
                    "default": 10,
                    "minimum": 1,
                    "maximum": 50,
                },
                "order": {"type": "string", "enum": ["newest", "oldest"], "default": "newest"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    )
    assert search("cats", limit=2) == ["cats", "cats"]  # still the function


def test_schema_from_google_docstring() -> None:
    @tool
    def book(city: str, nights: int = 1, *, guests: int = 2) -> str:
        """Book a hotel room
        in a city.

        Args:
            city: Where to stay.
            nights (int): How many nights,
                at least one.
            guests: People in the room.

        Returns:
            A confirmation number.
        """
        return "ok"

    assert book.description == "Book a hotel room in a city."
    assert book.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Where to stay."},
            "nights": {
                "type": "integer",
                "description": "How many nights, at least one.",
                "default": 1,
            },
            "guests": {"type": "integer", "description": "People in the room.", "default": 2},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_schema_from_rest_docstring_and_annotated_wins_over_docstring() -> None:
    @tool
    def convert(amount: float, currency: Annotated[str, Field(description="ISO code.")]) -> float:
        """Convert money.

        :param amount: How much, in US dollars.
        :param str currency: Ignored: the annotation says it.
        :returns: the converted amount
        """
        return amount

    assert convert.description == "Convert money."
    assert convert.parameters == {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "How much, in US dollars."},
            "currency": {"type": "string", "description": "ISO code."},
        },
        "required": ["amount", "currency"],
        "additionalProperties": False,
    }


def test_schema_with_enum_nested_model_and_optional() -> None:
    @tool(name="forecast_at", description="The forecast at a point.")
    def forecast(point: Point, unit: Unit = Unit.CELSIUS, days: int | None = None) -> str:
        """Not used: the description is given."""
        return ""

    assert forecast.spec == ToolSpec(
        name="forecast_at",
        description="The forecast at a point.",
        parameters={
            "type": "object",
            "properties": {
                "point": {
                    "type": "object",
                    "description": "A point on Earth.",
                    "properties": {
                        "latitude": {"type": "number"},
                        "longitude": {
                            "type": "number",
                            "description": "East is positive.",
                            "default": 0.0,
                        },
                    },
                    "required": ["latitude"],
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            },
            "required": ["point"],
            "additionalProperties": False,
        },
    )


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_recursive_model_keeps_its_definitions() -> None:
    @tool
    def walk(tree: Node) -> int:
        """Count a tree's nodes."""
        return 1

    assert walk.parameters["properties"] == {"tree": {"$ref": "#/$defs/Node"}}
    assert walk.parameters["$defs"]["Node"]["properties"]["children"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Node"},
        "default": [],
    }


def test_context_parameter_is_not_in_the_schema() -> None:
    @tool
    def whoami(greeting: str, context: ToolContext) -> str:
        """Greet the user."""
        return f"{greeting}, {context.user_name} on {context.platform}"

    assert whoami.parameters == {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    }


def test_no_parameters_and_no_docstring() -> None:
    @tool
    def ping() -> str:
        return "pong"

    assert ping.spec == ToolSpec(
        name="ping",
        description="",
        parameters={"type": "object", "properties": {}, "additionalProperties": False},
    )


def test_bad_tools_are_refused_when_made() -> None:
    def spread(*names: str) -> str:
        return ""

    with pytest.raises(TypeError, match=r"\*args"):
        tool(spread)
    with pytest.raises(ValueError, match="tool name"):
        tool(name="get weather")(lambda: None)
    with pytest.raises(ValueError, match="timeout"):
        tool(name="ping", timeout=0)(lambda: None)


def test_registry_holds_tools_by_name() -> None:
    @tool
    def echo(text: str) -> str:
        return text

    registry = ToolRegistry([echo])
    assert (len(registry), "echo" in registry, "nope" in registry) == (1, True, False)
    assert registry.specs() == (echo.spec,)
    assert list(registry) == [echo]
    with pytest.raises(ValueError, match="already registered"):
        registry.add(tool(name="echo")(lambda: None))


# --- running calls ------------------------------------------------------------------------------


@tool
def echo(text: str, times: int = 1) -> str:
    """Repeat the text."""
    return text * times


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """The weather."""
    return f"{city}: 12 °C"


def registry(*tools: Tool, **options: Any) -> ToolRegistry:
    return ToolRegistry(tools or (echo, get_weather), clock=ticking(), **options)


async def test_ok_result() -> None:
    outcome = await registry().run(call("echo", {"text": "ab", "times": 2}), CONTEXT)
    assert outcome == ToolOutcome(
        result=ToolResult(call_id="call_echo", name="echo", content="abab"),
        summary="abab",
        elapsed=0.5,
    )
    assert outcome.ok


async def test_invalid_json() -> None:
    outcome = await registry().run(call("echo", raw='{"text": "ab"'), CONTEXT)
    assert outcome.result == error(
        "echo",
        "the arguments were not valid JSON: Expecting ',' delimiter: line 1 column 14 (char 13); "
        "send one JSON object",
    )
    assert not outcome.ok


async def test_json_that_is_not_an_object() -> None:
    outcome = await registry().run(call("echo", raw='["ab"]'), CONTEXT)
    assert outcome.result == error(
        "echo", "the arguments were an array, not a JSON object; send one JSON object"
    )


async def test_validation_errors_name_each_field() -> None:
    arguments = {"unit": "kelvin", "zone": "UTC"}
    outcome = await registry().run(call("get_weather", arguments), CONTEXT)
    assert outcome.result == error(
        "get_weather",
        "invalid arguments for get_weather: city: Field required; "
        "unit: Input should be 'celsius' or 'fahrenheit'; zone: Extra inputs are not permitted",
    )


async def test_unknown_tool() -> None:
    outcome = await registry().run(call("get_time", {}), CONTEXT)
    assert outcome.result == error(
        "get_time", "there is no tool named get_time; available: echo, get_weather"
    )
    assert outcome.summary == "there is no tool named get_time; available: echo, get_weather"


async def test_exception_gives_type_and_message_without_url_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool
    def lookup(account: str) -> str:
        raise ValueError(
            "GET https://user:pw@api.example.com/v1/items?key=sk-123 failed: " + "x" * 400
        )

    with caplog.at_level(logging.WARNING, logger="relaybot.tools"):
        outcome = await registry(lookup).run(call("lookup", {"account": "private-42"}), CONTEXT)

    content = outcome.result.content
    assert content.startswith(
        "lookup raised ValueError: GET https://api.example.com/v1/items?… failed: xxx"
    )
    assert content.endswith("x…")
    assert len(content) < 350
    assert outcome.result.is_error
    assert [record.getMessage() for record in caplog.records] == [
        "tool lookup failed: ValueError (0.50 s)"
    ]
    assert "private-42" not in caplog.text


async def test_tool_failure_message_is_exact() -> None:
    @tool
    async def find(city: str) -> str:
        raise ToolFailure(f"Unknown city {city!r}")

    outcome = await registry(find).run(call("find", {"city": "Atlantis"}), CONTEXT)
    assert outcome.result == error("find", "Unknown city 'Atlantis'")
    assert outcome.summary == "Unknown city 'Atlantis'"


async def test_async_tool_timeout() -> None:
    @tool(timeout=0.05)
    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    outcome = await registry(slow).run(call("slow", {}), CONTEXT)
    assert outcome.result == error("slow", "slow did not finish within 0.05 s")


async def test_sync_tool_timeout_uses_the_registry_default() -> None:
    release = threading.Event()

    @tool
    def stuck() -> str:
        release.wait(timeout=5)
        return "late"

    try:
        outcome = await registry(stuck, default_timeout=0.05).run(call("stuck", {}), CONTEXT)
    finally:
        release.set()
    assert outcome.result == error("stuck", "stuck did not finish within 0.05 s")


async def test_a_tools_own_timeout_error_is_an_exception_not_a_timeout() -> None:
    @tool
    async def upstream() -> str:
        raise TimeoutError("upstream took too long")

    outcome = await registry(upstream).run(call("upstream", {}), CONTEXT)
    assert outcome.result == error(
        "upstream", "upstream raised TimeoutError: upstream took too long"
    )


async def test_cancelled_error_raised_by_a_tool_itself_is_an_error_result() -> None:
    @tool
    async def flaky() -> str:
        raise asyncio.CancelledError

    outcome = await registry(flaky).run(call("flaky", {}), CONTEXT)
    assert outcome.result == error("flaky", "flaky was cancelled")


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    @tool
    def where() -> int:
        return threading.get_ident()

    outcome = await registry(where).run(call("where", {}), CONTEXT)
    assert int(outcome.result.content) != threading.get_ident()


async def test_context_is_injected_sync_and_async() -> None:
    @tool
    def greet(greeting: str, context: ToolContext) -> str:
        return f"{greeting}, {context.user_name} ({context.user_id}) on {context.platform}"

    @tool
    async def thread(*, context: ToolContext) -> str:
        return str(context.key)

    outcomes = await registry(greet, thread).run_all(
        [call("greet", {"greeting": "Hello"}), call("thread", {})], CONTEXT
    )
    assert [o.result.content for o in outcomes] == [
        "Hello, Ada (U1) on slack",
        "slack:T1:C1:1700000000.1",
    ]


async def test_context_cannot_be_passed_by_the_model() -> None:
    @tool
    def greet(greeting: str, context: ToolContext) -> str:
        return context.user_name

    outcome = await registry(greet).run(
        call("greet", {"greeting": "Hi", "context": {"user_name": "Mallory"}}), CONTEXT
    )
    assert outcome.result == error(
        "greet", "invalid arguments for greet: context: Extra inputs are not permitted"
    )


async def test_parameters_named_like_pydantic_attributes() -> None:
    @tool
    def store(json: str, _private: int = 0, /) -> str:
        return f"{json}:{_private}"

    assert set(store.parameters["properties"]) == {"json", "_private"}
    outcome = await registry(store).run(call("store", {"json": "{}", "_private": 3}), CONTEXT)
    assert outcome.result.content == "{}:3"


async def test_async_calls_of_one_round_run_concurrently() -> None:
    first_started, second_started = asyncio.Event(), asyncio.Event()

    @tool
    async def first() -> str:
        first_started.set()
        await second_started.wait()  # only possible if second runs at the same time
        return "first"

    @tool
    async def second() -> str:
        second_started.set()
        await first_started.wait()
        return "second"

    async with asyncio.timeout(2):
        outcomes = await registry(first, second).run_all(
            [call("second", {}), call("first", {})], CONTEXT
        )
    assert [o.result.content for o in outcomes] == ["second", "first"]


async def test_sync_calls_of_one_round_run_concurrently() -> None:
    both = threading.Barrier(2, timeout=2)  # broken (an error result) unless both wait at once

    @tool
    def left() -> str:
        both.wait()
        return "left"

    @tool
    def right() -> str:
        both.wait()
        return "right"

    outcomes = await registry(left, right).run_all([call("left", {}), call("right", {})], CONTEXT)
    assert [o.result.content for o in outcomes] == ["left", "right"]


@pytest.mark.parametrize("method", ["run", "run_all"])
async def test_cancelling_a_run_cancels_the_tool(method: str) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @tool
    async def wait() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return "never"

    tools = registry(wait)
    task: asyncio.Task[object]
    if method == "run":
        task = asyncio.create_task(tools.run(call("wait", {}), CONTEXT))
    else:
        task = asyncio.create_task(tools.run_all([call("wait", {})], CONTEXT))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()


async def test_run_each_yields_each_call_as_it_finishes() -> None:
    """Each call waits for its gate; the consumer opens the next gate when a call finishes."""
    gates = {name: asyncio.Event() for name in ("a", "b", "c")}
    release_next = {"c done": "a", "a done": "b"}

    @tool
    async def wait_for(gate: str) -> str:
        await gates[gate].wait()
        return f"{gate} done"

    calls = [
        ToolCall(id=f"call_{gate}", name="wait_for", arguments={"gate": gate}, raw_arguments="")
        for gate in ("a", "b", "c")
    ]
    finished: list[tuple[int, str]] = []
    gates["c"].set()
    async with asyncio.timeout(2), aclosing(registry(wait_for).run_each(calls, CONTEXT)) as each:
        async for index, outcome in each:
            finished.append((index, outcome.result.content))
            if (gate := release_next.get(outcome.result.content)) is not None:
                gates[gate].set()
    assert finished == [(2, "c done"), (0, "a done"), (1, "b done")]


async def test_closing_run_each_early_cancels_and_awaits_the_calls_still_running() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def stuck() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    tools = registry(echo, stuck)
    calls = [call("stuck", {}), call("echo", {"text": "hi"})]
    async with asyncio.timeout(2), aclosing(tools.run_each(calls, CONTEXT)) as each:
        async for index, outcome in each:
            assert (index, outcome.result.content) == (1, "hi")
            await started.wait()
            break
    assert cancelled.is_set()  # already ended when the iterator closed, not merely told to


class Unwritable(BaseModel):
    place: str

    @field_serializer("place")
    def _place(self, place: str) -> str:
        raise ValueError("cannot write this place")


class Unsummarizable(BaseModel):
    place: str

    def summary(self) -> str:
        raise RuntimeError("summary broke")


async def test_a_result_that_cannot_be_serialized_or_summarized_is_an_error_result() -> None:
    @tool
    def unwritable() -> Unwritable:
        return Unwritable(place="Paris")

    @tool
    def unsummarizable() -> Unsummarizable:
        return Unsummarizable(place="Paris")

    calls = [call("unwritable", {}), call("unsummarizable", {}), call("echo", {"text": "ok"})]
    outcomes = await registry(unwritable, unsummarizable, echo).run_all(calls, CONTEXT)
    assert [o.ok for o in outcomes] == [False, False, True]
    assert outcomes[0].result.content.startswith(
        "unwritable returned a result that could not be read: PydanticSerializationError: "
    )
    assert "ValueError: cannot write this place" in outcomes[0].result.content
    assert outcomes[1].result == error(
        "unsummarizable",
        "unsummarizable returned a result that could not be read: RuntimeError: summary broke",
    )
    assert outcomes[2].result.content == "ok"


# --- results ------------------------------------------------------------------------------------


class Reading(BaseModel):
    place: str
    celsius: float

    def summary(self) -> str:
        return f"{self.place}: {self.celsius:.0f} °C"


VALUES: dict[str, Any] = {
    "text": "plain text",
    "none": None,
    "number": 42,
    "dict": {"city": "São Paulo", "temps": [21.5, 23]},
    "model": Reading(place="Paris", celsius=12.25),
    "nested": {"reading": Reading(place="Oslo", celsius=-3), "at": datetime(2025, 1, 14, 9, 30)},
    "other": {"object": Unit},
}


@tool
def produce(kind: str) -> Any:
    return VALUES[kind]


@pytest.mark.parametrize(
    ("kind", "content", "summary"),
    [
        ("text", "plain text", "plain text"),
        ("none", "done", "done"),
        ("number", "42", "42"),
        (
            "dict",
            '{"city":"São Paulo","temps":[21.5,23]}',
            '{"city":"São Paulo","temps":[21.5,23]}',
        ),
        ("model", '{"place":"Paris","celsius":12.25}', "Paris: 12 °C"),
        (
            "nested",
            '{"reading":{"place":"Oslo","celsius":-3.0},"at":"2025-01-14T09:30:00"}',
            '{"reading":{"place":"Oslo","celsius":-3.0},"at":"2025-01-14T09:30:00"}',
        ),
        ("other", '{"object":"<enum \'Unit\'>"}', '{"object":"<enum \'Unit\'>"}'),
    ],
)
async def test_results_are_serialized(kind: str, content: str, summary: str) -> None:
    outcome = await registry(produce).run(call("produce", {"kind": kind}), CONTEXT)
    assert (outcome.result.content, outcome.summary, outcome.ok) == (content, summary, True)


async def test_long_results_are_cut_with_a_note() -> None:
    @tool
    def report() -> str:
        return "x" * 200

    outcome = await registry(report, max_result_chars=60).run(call("report", {}), CONTEXT)
    assert outcome.result.content == "x" * 25 + "\n[result cut: 25 of 200 characters]"
    assert len(outcome.result.content) <= 60


async def test_summary_is_a_short_first_line_or_the_summary_attribute() -> None:
    class Answer:
        summary = "the short version"

    @tool
    def long() -> str:
        return "\n" + "word " * 50 + "\nsecond line"

    @tool
    def attribute() -> Answer:
        return Answer()

    outcomes = await registry(long, attribute).run_all(
        [call("long", {}), call("attribute", {})], CONTEXT
    )
    assert outcomes[0].summary == ("word " * 20).strip()[:99] + "…"
    assert len(outcomes[0].summary) == 100
    assert outcomes[1].summary == "the short version"


# --- activity lines ------------------------------------------------------------------------------


def test_activity_lines() -> None:
    weather = tool(activity="Checking the weather in {city} ({unit})")(get_weather.fn)
    tools = ToolRegistry([weather, echo])
    assert [
        tools.activity(call("get_weather", {"city": "Paris"})),
        tools.activity(call("get_weather", {"city": "Oslo", "unit": "fahrenheit"})),
        tools.activity(call("get_weather", {})),
        tools.activity(call("get_weather", raw="{")),
        tools.activity(call("get_weather", {"city": "Llanfair\n" + "pwll" * 30})),
        tools.activity(call("echo", {"text": "hi"})),
        tools.activity(call("nope", {})),
    ] == [
        "Checking the weather in Paris (celsius)",
        "Checking the weather in Oslo (fahrenheit)",
        "Running get_weather",
        "Running get_weather",
        "Checking the weather in Llanfair " + "pwll" * 12 + "pw… (celsius)",
        "Running echo",
        "Running nope",
    ]
