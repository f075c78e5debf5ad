"""``get_weather`` on Open-Meteo (https://open-meteo.com): no key, two requests.

The city's name is geocoded (``{geocoding_url}/v1/search``), then the current conditions of the
first match are fetched (``{forecast_url}/v1/forecast``, in the place's own time zone). Every
failure leaves as a :class:`~core.tools.ToolFailure` the model can word for the user.

    registry = ToolRegistry([weather_tool(http=http)])
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.tools import Tool, ToolFailure

__all__ = ["FORECAST_URL", "GEOCODING_URL", "Weather", "compass", "conditions", "weather_tool"]

GEOCODING_URL = "https://geocoding-api.open-meteo.com"
FORECAST_URL = "https://api.open-meteo.com"

UNREACHABLE = "the weather service is unreachable right now"
UNREADABLE = "the weather service sent an answer I could not read"

Unit = Literal["celsius", "fahrenheit"]

_CURRENT = (
    "temperature_2m,apparent_temperature,weather_code,wind_speed_10m,wind_direction_10m,"
    "relative_humidity_2m"
)

# WMO 4677 weather interpretation codes, the subset Open-Meteo documents.
WMO_CONDITIONS = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "moderate drizzle",
    55: "dense drizzle",
    56: "light freezing drizzle",
    57: "dense freezing drizzle",
    61: "light rain",
    63: "moderate rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "heavy freezing rain",
    71: "light snowfall",
    73: "moderate snowfall",
    75: "heavy snowfall",
    77: "snow grains",
    80: "light rain showers",
    81: "moderate rain showers",
    82: "violent rain showers",
    85: "light snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with light hail",
    99: "thunderstorm with heavy hail",
}

_COMPASS = (
    "north",
    "north-northeast",
    "northeast",
    "east-northeast",
    "east",
    "east-southeast",
    "southeast",
    "south-southeast",
    "south",
    "south-southwest",
    "southwest",
    "west-southwest",
    "west",
    "west-northwest",
    "northwest",
    "north-northwest",
)


def conditions(code: int) -> str:
    """The WMO weather code in words ("light rain")."""
    return WMO_CONDITIONS.get(code, f"weather code {code}")


def compass(degrees: float) -> str:
    """A wind direction in degrees as one of 16 compass points in words ("south-southwest")."""
    return _COMPASS[round(degrees % 360 / 22.5) % 16]


class Weather(BaseModel):
    """The current weather at a place, as the model reads it."""

    place: str
    region: str | None = None
    country: str | None = None
    latitude: float
    longitude: float
    timezone: str
    local_time: datetime
    temperature: float
    apparent_temperature: float
    temperature_unit: str
    conditions: str
    weather_code: int
    wind_speed: float
    wind_speed_unit: str
    wind_direction: str
    wind_direction_degrees: float
    relative_humidity_percent: float

    def summary(self) -> str:
        """One line: "Paris, France: 12 °C, light rain, wind 14 km/h from the southwest"."""
        where = ", ".join(part for part in (self.place, self.country) if part)
        return (
            f"{where}: {self.temperature:.0f} {self.temperature_unit}, {self.conditions}, "
            f"wind {self.wind_speed:.0f} {self.wind_speed_unit} from the {self.wind_direction}"
        )


def weather_tool(
    *,
    http: httpx2.AsyncClient,
    geocoding_url: str = GEOCODING_URL,
    forecast_url: str = FORECAST_URL,
    timeout: float = 10.0,
) -> Tool:
    """The ``get_weather`` tool, using ``http``. ``timeout`` bounds the whole look-up (both
    requests); the registry's own timeout for the tool is a few seconds longer, as a backstop."""
    service = _OpenMeteo(
        http=http, geocoding_url=geocoding_url, forecast_url=forecast_url, timeout=timeout
    )

    async def get_weather(
        city: Annotated[str, Field(min_length=1, max_length=200)],
        unit: Unit = "celsius",
    ) -> Weather:
        """Get the current weather in a city: temperature, feels-like temperature, conditions,
        wind, humidity and the local time there.

        Args:
            city: The city's name, optionally followed by its region or country after a comma,
                e.g. "Paris" or "Portland, Maine".
            unit: The temperature unit; wind speed follows it (km/h or mph).
        """
        return await service.current(city, unit)

    activity = "Checking the weather in {city}"
    return Tool(get_weather, name="get_weather", activity=activity, timeout=timeout + 5)


# --- Open-Meteo's payloads (only the fields used) -------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Place(_Payload):
    name: str
    latitude: float
    longitude: float
    country: str | None = None
    country_code: str | None = None
    admin1: str | None = None


class _Search(_Payload):
    results: list[_Place] = []


class _Current(_Payload):
    time: str
    temperature_2m: float
    apparent_temperature: float
    weather_code: int
    wind_speed_10m: float
    wind_direction_10m: float
    relative_humidity_2m: float


class _Forecast(_Payload):
    timezone: str
    utc_offset_seconds: int
    current: _Current


_P = TypeVar("_P", bound=_Payload)


class _OpenMeteo:
    def __init__(
        self, *, http: httpx2.AsyncClient, geocoding_url: str, forecast_url: str, timeout: float
    ) -> None:
        self._http = http
        self._search_url = f"{geocoding_url.rstrip('/')}/v1/search"
        self._forecast_url = f"{forecast_url.rstrip('/')}/v1/forecast"
        self._timeout = timeout

    async def current(self, city: str, unit: Unit) -> Weather:
        try:
            async with asyncio.timeout(self._timeout):
                place = await self._place(city)
                forecast = await self._forecast(place, unit)
        except (TimeoutError, httpx2.RequestError):
            raise ToolFailure(UNREACHABLE) from None
        return _weather(place, forecast, unit)

    async def _place(self, city: str) -> _Place:
        name, _, qualifier = (part.strip() for part in city.partition(","))
        params = {"name": name, "count": "10" if qualifier else "1", "language": "en"}
        found = await self._get(self._search_url, {**params, "format": "json"}, _Search)
        if not found.results:
            raise ToolFailure(f"I couldn't find a place called {city!r}")
        wanted = qualifier.casefold()
        for place in found.results:
            names = (place.admin1, place.country, place.country_code)
            if any(part and part.casefold() == wanted for part in names):
                return place
        return found.results[0]

    async def _forecast(self, place: _Place, unit: Unit) -> _Forecast:
        params = {
            "latitude": str(place.latitude),
            "longitude": str(place.longitude),
            "current": _CURRENT,
            "timezone": "auto",
            "temperature_unit": unit,
            "wind_speed_unit": "kmh" if unit == "celsius" else "mph",
        }
        return await self._get(self._forecast_url, params, _Forecast)

    async def _get(self, url: str, params: dict[str, str], shape: type[_P]) -> _P:
        response = await self._http.get(url, params=params, timeout=self._timeout)
        if response.status_code != 200:
            raise ToolFailure(f"the weather service answered HTTP {response.status_code}")
        try:
            return shape.model_validate_json(response.content)
        except ValidationError:
            raise ToolFailure(UNREADABLE) from None


def _weather(place: _Place, forecast: _Forecast, unit: Unit) -> Weather:
    now = forecast.current
    try:
        zone = timezone(timedelta(seconds=forecast.utc_offset_seconds))
        local_time = datetime.fromisoformat(now.time).replace(tzinfo=zone)
    except ValueError:
        raise ToolFailure(UNREADABLE) from None
    return Weather(
        place=place.name,
        region=place.admin1,
        country=place.country,
        latitude=place.latitude,
        longitude=place.longitude,
        timezone=forecast.timezone,
        local_time=local_time,
        temperature=now.temperature_2m,
        apparent_temperature=now.apparent_temperature,
        temperature_unit="°C" if unit == "celsius" else "°F",
        conditions=conditions(now.weather_code),
        weather_code=now.weather_code,
        wind_speed=now.wind_speed_10m,
        wind_speed_unit="km/h" if unit == "celsius" else "mph",
        wind_direction=compass(now.wind_direction_10m),
        wind_direction_degrees=now.wind_direction_10m,
        relative_humidity_percent=now.relative_humidity_2m,
    )
