"""A loopback Open-Meteo: the geocoding search and the current-weather forecast, with faults.

    async with FakeOpenMeteo() as weather:
        tool = weather_tool(http=http, geocoding_url=weather.url, forecast_url=weather.url)
        weather.fail("forecast", Status(503))      # the next forecast request answers 503
        weather.requests[0].params["name"] == "Paris"

``GET /v1/search`` finds the cities in :data:`CITIES` by name (case and accents ignored, most
populous first, ``count`` of them) and answers as Open-Meteo does, with no ``results`` key when
nothing matches. ``GET /v1/forecast`` answers the ``current`` block for a known city's
coordinates, converted to ``temperature_unit`` and ``wind_speed_unit``. Scripted faults
(:class:`Status`, :class:`Malformed`, :class:`Hang`) are taken per endpoint, one per request,
before the normal answer. Every request is recorded.

Run as a process (prints ``LISTENING http://127.0.0.1:PORT`` once bound):

    python -m tests.fakes.open_meteo --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import unicodedata
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from bots.loopback import LoopbackServer

__all__ = [
    "CITIES",
    "City",
    "FakeOpenMeteo",
    "Fault",
    "Hang",
    "Malformed",
    "RecordedQuery",
    "Status",
]

Endpoint = Literal["search", "forecast"]


@dataclass(frozen=True, kw_only=True)
class City:
    """A place the fake knows: its geocoding result as Open-Meteo sends it, and its weather now
    (metric, as Open-Meteo measures it)."""

    place: dict[str, Any]
    utc_offset_seconds: int
    timezone_abbreviation: str
    time: str  # local, ISO 8601 to the minute, as Open-Meteo sends it with timezone=auto
    temperature_c: float
    apparent_temperature_c: float
    weather_code: int
    wind_speed_kmh: float
    wind_direction: int
    humidity: int


CITIES: tuple[City, ...] = (
    City(
        place={
            "id": 2988507,
            "name": "Paris",
            "latitude": 48.85341,
            "longitude": 2.3488,
            "elevation": 42.0,
            "feature_code": "PPLC",
            "country_code": "FR",
            "admin1_id": 3012874,
            "admin2_id": 2968815,
            "timezone": "Europe/Paris",
            "population": 2138551,
            "country_id": 3017382,
            "country": "France",
            "admin1": "Île-de-France",
            "admin2": "Paris",
        },
        utc_offset_seconds=3600,
        timezone_abbreviation="GMT+1",
        time="2025-01-14T15:45",
        temperature_c=12.3,
        apparent_temperature_c=9.8,
        weather_code=61,
        wind_speed_kmh=14.4,
        wind_direction=225,
        humidity=87,
    ),
    City(
        place={
            "id": 1850147,
            "name": "Tokyo",
            "latitude": 35.6895,
            "longitude": 139.69171,
            "elevation": 44.0,
            "feature_code": "PPLC",
            "country_code": "JP",
            "admin1_id": 1850144,
            "timezone": "Asia/Tokyo",
            "population": 8336599,
            "country_id": 1861060,
            "country": "Japan",
            "admin1": "Tokyo",
        },
        utc_offset_seconds=32400,
        timezone_abbreviation="GMT+9",
        time="2025-01-14T23:45",
        temperature_c=4.1,
        apparent_temperature_c=0.6,
        weather_code=0,
        wind_speed_kmh=7.9,
        wind_direction=320,
        humidity=41,
    ),
    City(
        place={
            "id": 3448439,
            "name": "São Paulo",
            "latitude": -23.5475,
            "longitude": -46.63611,
            "elevation": 769.0,
            "feature_code": "PPLA",
            "country_code": "BR",
            "admin1_id": 3448433,
            "admin2_id": 3448439,
            "timezone": "America/Sao_Paulo",
            "population": 10021295,
            "country_id": 3469034,
            "country": "Brazil",
            "admin1": "São Paulo",
            "admin2": "São Paulo",
        },
        utc_offset_seconds=-10800,
        timezone_abbreviation="GMT-3",
        time="2025-01-14T11:45",
        temperature_c=26.4,
        apparent_temperature_c=28.9,
        weather_code=95,
        wind_speed_kmh=11.2,
        wind_direction=158,
        humidity=74,
    ),
    City(
        place={
            "id": 5746545,
            "name": "Portland",
            "latitude": 45.52345,
            "longitude": -122.67621,
            "elevation": 15.0,
            "feature_code": "PPLA2",
            "country_code": "US",
            "admin1_id": 5744337,
            "admin2_id": 5742126,
            "timezone": "America/Los_Angeles",
            "population": 652503,
            "country_id": 6252001,
            "country": "United States",
            "admin1": "Oregon",
            "admin2": "Multnomah",
        },
        utc_offset_seconds=-28800,
        timezone_abbreviation="GMT-8",
        time="2025-01-14T06:45",
        temperature_c=3.2,
        apparent_temperature_c=0.1,
        weather_code=45,
        wind_speed_kmh=5.0,
        wind_direction=90,
        humidity=96,
    ),
    City(
        place={
            "id": 4975802,
            "name": "Portland",
            "latitude": 43.66147,
            "longitude": -70.25533,
            "elevation": 9.0,
            "feature_code": "PPLA2",
            "country_code": "US",
            "admin1_id": 4971068,
            "admin2_id": 4958141,
            "timezone": "America/New_York",
            "population": 66881,
            "country_id": 6252001,
            "country": "United States",
            "admin1": "Maine",
            "admin2": "Cumberland",
        },
        utc_offset_seconds=-18000,
        timezone_abbreviation="GMT-5",
        time="2025-01-14T09:45",
        temperature_c=-6.5,
        apparent_temperature_c=-12.4,
        weather_code=73,
        wind_speed_kmh=22.7,
        wind_direction=10,
        humidity=80,
    ),
)


@dataclass(frozen=True)
class Status:
    """Answer with this status and an Open-Meteo-shaped error body."""

    status: int
    reason: str = "fake open-meteo: scripted failure"


@dataclass(frozen=True)
class Malformed:
    """Answer ``200`` with a body that is not the JSON Open-Meteo sends."""

    body: bytes = b'{"results": [{"name": "Par'


@dataclass(frozen=True)
class Hang:
    """Read the request and send nothing until :meth:`FakeOpenMeteo.release` or closing (then
    the connection is cut)."""


Fault = Status | Malformed | Hang


@dataclass(frozen=True, kw_only=True)
class RecordedQuery:
    """A request as the fake saw it: which endpoint, and its query parameters."""

    endpoint: str
    path: str
    params: dict[str, str]


class FakeOpenMeteo(LoopbackServer):
    """An aiohttp server on ``127.0.0.1`` serving both Open-Meteo endpoints; :attr:`url` is the
    base URL for both ``geocoding_url`` and ``forecast_url``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[RecordedQuery] = []
        self._faults: dict[str, deque[Fault]] = {"search": deque(), "forecast": deque()}
        self._wake = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/forecast", self._forecast)
        super().__init__(app, host=host, port=port)

    async def close(self) -> None:
        """Stop serving; hanging requests are cut, not waited for."""
        self._wake.set()
        await super().close()

    def fail(self, endpoint: Endpoint, *faults: Fault) -> None:
        """Script the next requests to ``endpoint``, one fault each, in order."""
        self._faults[endpoint].extend(faults)

    def release(self) -> None:
        """Cut every hanging request now (later :class:`Hang` faults hang again)."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def _search(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("search", request)) is not None:
            return fault
        wanted = _folded(request.query.get("name", ""))
        count = int(request.query.get("count", "10"))
        found = [city.place for city in CITIES if _folded(city.place["name"]) == wanted]
        found.sort(key=lambda place: -int(place["population"]))
        body: dict[str, Any] = {"results": found[:count]} if found and len(wanted) >= 2 else {}
        return web.json_response({**body, "generationtime_ms": 0.61})

    async def _forecast(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self._fault("forecast", request)) is not None:
            return fault
        query = request.query
        try:
            at = (float(query["latitude"]), float(query["longitude"]))
        except (KeyError, ValueError):
            return _error(400, "Parameter 'latitude' and 'longitude' must be floating points")
        city = next((c for c in CITIES if _near(c, at)), None)
        if city is None:
            return _error(400, f"fake open-meteo: no weather known at {at}")
        fahrenheit = query.get("temperature_unit") == "fahrenheit"
        mph = query.get("wind_speed_unit") == "mph"
        return web.json_response(_forecast_body(city, fahrenheit=fahrenheit, mph=mph))

    async def _fault(self, endpoint: str, request: web.Request) -> web.StreamResponse | None:
        self.requests.append(
            RecordedQuery(endpoint=endpoint, path=request.path, params=dict(request.query))
        )
        if not self._faults[endpoint]:
            return None
        match self._faults[endpoint].popleft():
            case Status(status, reason):
                return _error(status, reason)
            case Malformed(body):
                return web.Response(body=body, content_type="application/json")
            case Hang():
                await self._wake.wait()
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=599)


def _forecast_body(city: City, *, fahrenheit: bool, mph: bool) -> dict[str, Any]:
    def temperature(celsius: float) -> float:
        return round(celsius * 9 / 5 + 32, 1) if fahrenheit else celsius

    degrees = "°F" if fahrenheit else "°C"
    return {
        "latitude": round(city.place["latitude"], 2),
        "longitude": round(city.place["longitude"], 2),
        "generationtime_ms": 0.05,
        "utc_offset_seconds": city.utc_offset_seconds,
        "timezone": city.place["timezone"],
        "timezone_abbreviation": city.timezone_abbreviation,
        "elevation": city.place["elevation"],
        "current_units": {
            "time": "iso8601",
            "interval": "seconds",
            "temperature_2m": degrees,
            "apparent_temperature": degrees,
            "weather_code": "wmo code",
            "wind_speed_10m": "mp/h" if mph else "km/h",
            "wind_direction_10m": "°",
            "relative_humidity_2m": "%",
        },
        "current": {
            "time": city.time,
            "interval": 900,
            "temperature_2m": temperature(city.temperature_c),
            "apparent_temperature": temperature(city.apparent_temperature_c),
            "weather_code": city.weather_code,
            "wind_speed_10m": round(city.wind_speed_kmh / 1.609344, 1)
            if mph
            else city.wind_speed_kmh,
            "wind_direction_10m": city.wind_direction,
            "relative_humidity_2m": city.humidity,
        },
    }


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": True, "reason": reason}, status=status)


def _folded(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _near(city: City, at: tuple[float, float]) -> bool:
    latitude, longitude = at
    here = (float(city.place["latitude"]), float(city.place["longitude"]))
    return abs(here[0] - latitude) < 0.01 and abs(here[1] - longitude) < 0.01


async def _serve(port: int) -> None:
    async with FakeOpenMeteo(port=port) as fake:
        print(f"LISTENING {fake.url}", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Open-Meteo on loopback.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
