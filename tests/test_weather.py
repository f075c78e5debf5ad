"""get_weather end to end against a loopback Open-Meteo, through the tool registry."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from bots.tools.weather import WMO_CONDITIONS, compass, conditions, weather_tool
from core.messages import ConversationKey, ToolCall, ToolResult
from core.tools import ToolContext, ToolOutcome, ToolRegistry
from tests.fakes.open_meteo import FakeOpenMeteo, Hang, Malformed, RecordedQuery, Status

CONTEXT = ToolContext(
    key=ConversationKey(platform="console", workspace="local", channel="ada", thread="s1"),
    user_id="ada",
    user_name="Ada",
    platform="console",
)

CURRENT = (
    "temperature_2m,apparent_temperature,weather_code,wind_speed_10m,wind_direction_10m,"
    "relative_humidity_2m"
)


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with FakeOpenMeteo() as fake:
        yield fake


def tools(fake: FakeOpenMeteo, http: httpx2.AsyncClient, *, timeout: float = 2.0) -> ToolRegistry:
    get_weather = weather_tool(
        http=http, geocoding_url=fake.url, forecast_url=fake.url + "/", timeout=timeout
    )
    return ToolRegistry([get_weather])


async def ask(registry: ToolRegistry, **arguments: Any) -> ToolOutcome:
    return await registry.run(
        ToolCall(id="call_1", name="get_weather", arguments=arguments), CONTEXT
    )


def failure(message: str) -> ToolResult:
    return ToolResult(call_id="call_1", name="get_weather", content=message, is_error=True)


async def test_spec_and_activity(open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient) -> None:
    registry = tools(open_meteo, http)
    (spec,) = registry.specs()
    assert (spec.name, spec.description) == (
        "get_weather",
        "Get the current weather in a city: temperature, feels-like temperature, conditions, "
        "wind, humidity and the local time there.",
    )
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "city": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "The city's name, optionally followed by its region or country "
                'after a comma, e.g. "Paris" or "Portland, Maine".',
            },
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "default": "celsius",
                "description": "The temperature unit; wind speed follows it (km/h or mph).",
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    assert registry.activity(call) == "Checking the weather in Paris"


async def test_paris_in_celsius(open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient) -> None:
    outcome = await ask(tools(open_meteo, http), city="Paris")

    assert open_meteo.requests == [
        RecordedQuery(
            endpoint="search",
            path="/v1/search",
            params={"name": "Paris", "count": "1", "language": "en", "format": "json"},
        ),
        RecordedQuery(
            endpoint="forecast",
            path="/v1/forecast",
            params={
                "latitude": "48.85341",
                "longitude": "2.3488",
                "current": CURRENT,
                "timezone": "auto",
                "temperature_unit": "celsius",
                "wind_speed_unit": "kmh",
            },
        ),
    ]
    assert not outcome.result.is_error
    assert json.loads(outcome.result.content) == {
        "place": "Paris",
        "region": "Île-de-France",
        "country": "France",
        "latitude": 48.85341,
        "longitude": 2.3488,
        "timezone": "Europe/Paris",
        "local_time": "2025-01-14T15:45:00+01:00",
        "temperature": 12.3,
        "apparent_temperature": 9.8,
        "temperature_unit": "°C",
        "conditions": "light rain",
        "weather_code": 61,
        "wind_speed": 14.4,
        "wind_speed_unit": "km/h",
        "wind_direction": "southwest",
        "wind_direction_degrees": 225.0,
        "relative_humidity_percent": 87.0,
    }
    assert outcome.summary == "Paris, France: 12 °C, light rain, wind 14 km/h from the southwest"


async def test_paris_in_fahrenheit(open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient) -> None:
    outcome = await ask(tools(open_meteo, http), city="Paris", unit="fahrenheit")

    forecast = open_meteo.requests[1].params
    assert (forecast["temperature_unit"], forecast["wind_speed_unit"]) == ("fahrenheit", "mph")
    weather = json.loads(outcome.result.content)
    assert {key: weather[key] for key in ("temperature", "apparent_temperature", "wind_speed")} == {
        "temperature": 54.1,
        "apparent_temperature": 49.6,
        "wind_speed": 8.9,
    }
    assert (weather["temperature_unit"], weather["wind_speed_unit"]) == ("°F", "mph")
    assert outcome.summary == "Paris, France: 54 °F, light rain, wind 9 mph from the southwest"


async def test_accents_and_a_negative_utc_offset(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient
) -> None:
    outcome = await ask(tools(open_meteo, http), city="Sao Paulo")

    weather = json.loads(outcome.result.content)
    assert (weather["place"], weather["local_time"]) == ("São Paulo", "2025-01-14T11:45:00-03:00")
    assert outcome.summary == (
        "São Paulo, Brazil: 26 °C, thunderstorm, wind 11 km/h from the south-southeast"
    )


async def test_a_region_after_a_comma_picks_the_right_place(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient
) -> None:
    registry = tools(open_meteo, http)
    maine = await ask(registry, city="Portland, Maine")
    oregon = await ask(registry, city="Portland")

    assert open_meteo.requests[0].params == {
        "name": "Portland",
        "count": "10",
        "language": "en",
        "format": "json",
    }
    assert json.loads(maine.result.content)["region"] == "Maine"
    assert json.loads(oregon.result.content)["region"] == "Oregon"


async def test_unknown_city(open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient) -> None:
    outcome = await ask(tools(open_meteo, http), city="Atlantis")

    assert outcome.result == failure("I couldn't find a place called 'Atlantis'")
    assert outcome.summary == "I couldn't find a place called 'Atlantis'"
    assert [request.endpoint for request in open_meteo.requests] == ["search"]


@pytest.mark.parametrize("endpoint", ["search", "forecast"])
async def test_service_error_status(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient, endpoint: Any
) -> None:
    open_meteo.fail(endpoint, Status(503))
    outcome = await ask(tools(open_meteo, http), city="Paris")
    assert outcome.result == failure("the weather service answered HTTP 503")


async def test_timeout(open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient) -> None:
    open_meteo.fail("forecast", Hang())
    outcome = await ask(tools(open_meteo, http, timeout=0.05), city="Tokyo")
    assert outcome.result == failure("the weather service is unreachable right now")


async def test_connection_refused(http: httpx2.AsyncClient) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    registry = ToolRegistry([weather_tool(http=http, geocoding_url=url, forecast_url=url)])
    outcome = await ask(registry, city="Paris")
    assert outcome.result == failure("the weather service is unreachable right now")


@pytest.mark.parametrize("endpoint", ["search", "forecast"])
async def test_malformed_json(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient, endpoint: Any
) -> None:
    open_meteo.fail(endpoint, Malformed())
    outcome = await ask(tools(open_meteo, http), city="Paris")
    assert outcome.result == failure("the weather service sent an answer I could not read")


async def test_valid_json_of_the_wrong_shape(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient
) -> None:
    open_meteo.fail("forecast", Malformed(b'{"current": {"time": "now"}}'))
    outcome = await ask(tools(open_meteo, http), city="Paris")
    assert outcome.result == failure("the weather service sent an answer I could not read")


async def test_empty_city_is_a_validation_error(
    open_meteo: FakeOpenMeteo, http: httpx2.AsyncClient
) -> None:
    outcome = await ask(tools(open_meteo, http), city="")
    assert outcome.result == failure(
        "invalid arguments for get_weather: city: String should have at least 1 character"
    )
    assert open_meteo.requests == []


def test_wmo_codes_in_words() -> None:
    documented = {0, 1, 2, 3, 45, 48, 51, 53, 55, 56, 57, 61, 63, 65, 66, 67, 71, 73, 75, 77}
    documented |= {80, 81, 82, 85, 86, 95, 96, 99}
    assert set(WMO_CONDITIONS) == documented
    assert [conditions(code) for code in (0, 3, 48, 57, 65, 77, 82, 86, 99, 42)] == [
        "clear sky",
        "overcast",
        "depositing rime fog",
        "dense freezing drizzle",
        "heavy rain",
        "snow grains",
        "violent rain showers",
        "heavy snow showers",
        "thunderstorm with heavy hail",
        "weather code 42",
    ]


def test_compass_points() -> None:
    assert [compass(d) for d in (0, 11, 12, 90, 158, 225, 320, 349, 359.9, 720)] == [
        "north",
        "north",
        "north-northeast",
        "east",
        "south-southeast",
        "southwest",
        "northwest",
        "north",
        "north",
        "north",
    ]
