"""The offline model with no server: request bodies of both protocols in, answers out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bots.offline import INTRO, OfflineModel, RequestRejected, weather_city, word_weather
from tests.support.weather import PARIS

PROTOCOLS = ["openai", "anthropic"]

MODEL = OfflineModel()


def openai_text(*messages: dict[str, Any], **body: Any) -> str:
    return MODEL.answer({"messages": list(messages), **body}, protocol="openai").text


def said(*texts: str) -> list[dict[str, Any]]:
    """User messages, each answered by the assistant."""
    out: list[dict[str, Any]] = []
    for text in texts:
        out += [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted."}]
    return out[:-1]


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("weather in Paris", "Paris"),
        ("What's the weather like in New York?", "New York"),
        ("Is it raining in Tokyo", "Tokyo"),
        ("temperature in São Paulo today?", "São Paulo"),
        ("how's the weather in berlin in fahrenheit", "Berlin"),
        ("forecast for St. Louis, please", "St. Louis"),
        ("How cold is it in Oslo right now?", "Oslo"),
        ("I like cold drinks in summer", None),
        ("What's the weather?", None),
    ],
)
def test_weather_city(text: str, city: str | None) -> None:
    assert weather_city(text) == city


OSLO = {
    "location": {"name": "Oslo", "country": "Norway"},
    "current": {"temperature": 21.5, "unit": "fahrenheit", "weather": "Clear sky"},
    "wind": {"speed": 3, "direction": "NE"},
    "local_time": "2025-01-01T14:05",
}

TOOL_RESULT = {  # the shape of bots.tools.weather.Weather
    "place": "Paris",
    "region": "Île-de-France",
    "country": "France",
    "latitude": 48.85,
    "longitude": 2.35,
    "timezone": "Europe/Paris",
    "local_time": "2025-01-01T14:05:00+01:00",
    "temperature": 12.3,
    "apparent_temperature": 10.2,
    "temperature_unit": "°C",
    "conditions": "Light rain",
    "weather_code": 61,
    "wind_speed": 14.0,
    "wind_speed_unit": "km/h",
    "wind_direction": "southwest",
    "wind_direction_degrees": 225.0,
    "relative_humidity_percent": 80.0,
}


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (
            json.dumps(PARIS),
            "In Paris, France it is 12 °C (feels like 10 °C) with light rain; "
            "wind 14 km/h from the west.",
        ),
        (
            json.dumps(OSLO),
            "In Oslo, Norway it is 22 °F with clear sky; wind 3 mph from the north-east. "
            "The local time there is 14:05.",
        ),
        (
            json.dumps(TOOL_RESULT),
            "In Paris, France it is 12 °C (feels like 10 °C) with light rain; wind 14 km/h from "
            "the southwest. The local time there is 14:05.",
        ),
        ("Sunny, 20 degrees", "The weather tool says “Sunny, 20 degrees”."),
        ('{"odd": true}', 'The weather tool answered “{"odd":true}”.'),
    ],
)
def test_word_weather(content: str, sentence: str) -> None:
    assert word_weather(content, city="Paris") == sentence


def test_an_anthropic_error_result_needs_no_error_marker() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "timed out after 10 s",
                 "is_error": True},
            ],
        },
    ]  # fmt: skip
    answer = MODEL.answer({"messages": messages, "max_tokens": 100}, protocol="anthropic")
    assert answer.text == "I couldn't get the weather: timed out after 10 s."


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        ("Error: boom", "I couldn't get the weather in Lima: boom."),
        ('{"error": "No city: Lima"}', "I couldn't get the weather in Lima: no city: Lima."),
        (
            "HTTP 503 from the service",
            "I couldn't get the weather in Lima: HTTP 503 from the service.",
        ),
        ("I couldn't find a place called 'Lima'", "I couldn't find a place called 'Lima'."),
        ("Sunny all day", "The weather tool says “Sunny all day”."),
    ],
)
def test_an_openai_tool_result_reads_as_an_error_by_its_text(content: str, sentence: str) -> None:
    function = {"name": "get_weather", "arguments": '{"city": "Lima"}'}
    call = {"id": "c1", "type": "function", "function": function}
    text = openai_text(
        {"role": "user", "content": "weather in Lima"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": content},
    )
    assert text == sentence


def test_another_tools_result_is_quoted() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    text = openai_text(
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "14:05"},
    )
    assert text == "The clock tool answered “14:05”."


def test_tool_choice_none_means_no_tool() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {"tools": tools, "tool_choice": "none"}
    answer = MODEL.answer(
        {"messages": [{"role": "user", "content": "weather in Rome"}], **body}, protocol="openai"
    )
    assert answer.tool_calls == ()
    assert "can't check the weather" in answer.text


def test_simple_commands() -> None:
    assert openai_text(*said("count to ten")) == INTRO + " 1, 2, 3, 4, 5, 6, 7, 8, 9, 10."
    counted = ", ".join(str(n) for n in range(1, 51))
    assert openai_text(*said("count to 80")) == f"{INTRO} I'll stop at 50: {counted}."
    first = openai_text(*said("I like tea", "and cake", "What did I say first?"))
    assert first == "The first thing you said was “I like tea”."
    assert openai_text(*said("my name is ana", "what's my name?")) == "Your name is Ana."
    assert openai_text(*said("hi", "what's my name?")) == "You haven't told me your name yet."
    assert openai_text(*said("Call me Bo", "good morning")).startswith("Hello, Bo! Try asking")
    assert openai_text(*said("call me jo", "ok bye")) == "Goodbye, Jo! We talked for 2 turns."
    met = openai_text(*said("my name is Li"))
    assert met == f"{INTRO} Nice to meet you, Li! I'll remember that in this conversation."


def test_a_summary_lists_the_topics() -> None:
    text = openai_text(*said("I sail boats", "I live in Lisbon", "Please sum up"))
    assert text == (
        "You said “Please sum up”. This is turn 3 of our conversation. "
        "Earlier you said “I live in Lisbon”. You started with “I sail boats”. "
        "So far we've talked about sail, boats, live and lisbon."
    )


def test_answers_depend_only_on_the_conversation() -> None:
    messages = said("a", "b", "weather in Paris")
    tools = [{"name": "get_weather", "input_schema": {}}]
    one = MODEL.answer({"messages": messages, "tools": tools}, protocol="anthropic")
    two = OfflineModel().answer({"messages": messages, "tools": tools}, protocol="anthropic")
    assert one == two
    other = MODEL.answer(
        {"messages": said("weather in Paris"), "tools": tools}, protocol="anthropic"
    )
    assert other.tool_calls[0].id != one.tool_calls[0].id


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"messages": []},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": ["hi"]},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"},
        {"messages": [{"role": "user", "content": "hi"}], "tools": "get_weather"},
    ],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bodies_it_cannot_answer(body: Any, protocol: Any) -> None:
    with pytest.raises(RequestRejected):
        MODEL.answer(body, protocol=protocol)
