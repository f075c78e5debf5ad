"""The offline model's one skill: "the weather in <city>" becomes a ``get_weather`` call, and the
tool's result — or any tool's — is put back into words.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bots.offline.conversation import PlannedCall, Said, json_object, quote

__all__ = ["WEATHER_TOOL", "weather_city", "word_result", "word_weather"]

WEATHER_TOOL = "get_weather"

_WEATHER = re.compile(
    r"\b(?:weather|temperature|forecast|rain(?:ing)?|snow(?:ing)?|sunny|windy"
    r"|how (?:hot|cold|warm))\b[^?.!\n]{0,24}?\b(?:in|for)\s+(?P<rest>[^?!,;:\n]+)",
    re.IGNORECASE,
)
_NOT_CITY = re.compile(
    r"and|or|but|today|tomorrow|tonight|now|right|this|next|please|in|on|at|like|going|then|"
    r"for|with|currently|celsius|fahrenheit",
    re.IGNORECASE,
)


def weather_city(text: str) -> str | None:
    """The city in "weather in Paris", "Is it raining in Tokyo?", "temperature in São Paulo"."""
    match = _WEATHER.search(text)
    if match is None:
        return None
    words: list[str] = []
    for word in match["rest"].split()[:4]:
        bare = word.rstrip(".")
        if _NOT_CITY.fullmatch(bare) or not re.fullmatch(r"[^\W\d_][\w'\u2019-]*", bare):
            break
        abbreviation = word.endswith(".") and len(bare) <= 2  # "St. Louis", "Mt. Vernon"
        words.append((bare[:1].upper() + bare[1:] if bare.islower() else bare) + "." * abbreviation)
        if word != bare and not abbreviation:
            break
    return " ".join(words) or None


# --- Tool results ----------------------------------------------------------------------------


def word_result(result: Said, call: PlannedCall | None) -> str:
    """One sentence for a tool's result; ``call`` is the call it answers, if it is known."""
    name = call.name if call else "tool"
    error = _error_reason(result)
    if name != WEATHER_TOOL:
        if error is not None:
            return f"The {name} tool failed: {error}"
        return quote(f"The {name} tool answered", result.text)
    city = str(call.arguments.get("city") or "") if call else ""
    if error is None:
        return word_weather(result.text, city=city)
    if error.startswith("I "):
        return error  # "I couldn't find a place called 'Atlantis'."
    where = f" in {city}" if city else ""
    return f"I couldn't get the weather{where}: {error}"


_FAILURE = re.compile(
    r"\b(?:error|fail(?:ed|ure)?|couldn't|could not|can't|cannot|unreachable|unavailable"
    r"|not found|timed out|did not finish|no tool named|invalid|HTTP [45]\d\d)\b",
    re.IGNORECASE,
)


def _error_reason(result: Said) -> str | None:
    """Why a tool failed, as the end of a sentence; ``None`` if the result is no error."""
    text = result.text.strip()
    data = json_object(text)
    if data is not None and data.get("error") and isinstance(data["error"], str | dict):
        error = data["error"]
        text = str(error.get("message") or error) if isinstance(error, dict) else error
    elif match := re.match(r"(?:tool )?(?:error|failed)\b\s*[:—-]?\s*", text, re.IGNORECASE):
        text = text[match.end() :]
    elif not result.is_error and (data is not None or not _FAILURE.search(text)):
        return None  # OpenAI has no error flag: a plain-text result that reads as one counts
    reason = " ".join(text.split()) or "the tool reported an error"
    if reason[:1].isupper() and reason[1:2].islower():
        reason = reason[:1].lower() + reason[1:]
    return reason if reason.endswith((".", "!", "?")) else reason + "."


# --- A weather report ------------------------------------------------------------------------

_FIELDS = {
    "place": ("place", "place_name", "city", "name", "location", "resolved_name", "town"),
    "country": ("country", "country_name", "place_country"),
    "temperature": ("temperature", "temp", "temperature_2m", "temperature_c"),
    "feels": ("apparent_temperature", "feels_like", "apparent", "feelslike"),
    "unit": ("unit", "temperature_unit", "units"),
    "conditions": ("conditions", "condition", "description", "weather", "summary", "sky"),
    "wind": ("wind_speed", "windspeed", "wind_speed_10m", "wind_kmh", "wind", "speed"),
    "wind_unit": ("wind_unit", "wind_speed_unit", "speed_unit"),
    "direction": ("wind_direction", "wind_dir", "wind_direction_10m", "direction", "wind_from"),
    "time": ("local_time", "localtime", "time"),
}
_COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west",
            "north-west")  # fmt: skip
_ABBREVIATIONS = {"n": 0, "ne": 1, "e": 2, "se": 3, "s": 4, "sw": 5, "w": 6, "nw": 7}


def word_weather(content: str, *, city: str = "") -> str:
    """One sentence from a weather tool's result: known JSON fields picked out, text quoted."""
    data = json_object(content)
    if data is None:
        return quote("The weather tool says", content)
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    got = {key: _first(flat, names) for key, names in _FIELDS.items()}
    unit = "°F" if "f" in str(got["unit"] or "c").lower().replace("°", "") else "°C"
    place = str(got["place"] or city)
    country = str(got["country"] or "")
    where = f"{place}, {country}" if country and country not in place else place
    temperature, feels = _degrees(got["temperature"], unit), _degrees(got["feels"], unit)
    conditions = _lower_first(got["conditions"]) if isinstance(got["conditions"], str) else ""
    if not temperature and not conditions:
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return quote("The weather tool answered", compact)
    sentence = f"In {where} it is" if where else "It is"
    sentence += f" {temperature}" if temperature else f" {conditions}"
    if feels and temperature:
        sentence += f" (feels like {feels})"
    if conditions and temperature:
        sentence += f" with {conditions}"
    wind = _wind(got["wind"], got["wind_unit"], got["direction"], unit)
    sentence += f"; wind {wind}." if wind else "."
    if isinstance(got["time"], str) and got["time"]:
        sentence += f" The local time there is {got['time'].partition('T')[2][:5] or got['time']}."
    return sentence


def _flatten(value: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    """Scalars by their key and by their path (``wind_speed`` for ``{"wind": {"speed"}}``)."""
    for key, item in value.items():
        name = str(key).lower()
        path = f"{prefix}_{name}" if prefix else name
        if isinstance(item, dict):
            _flatten(item, path, out)
        elif item is not None and not isinstance(item, list):
            out.setdefault(path, item)
            out.setdefault(name, item)


def _first(flat: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((flat[name] for name in names if flat.get(name) not in (None, "")), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _degrees(value: Any, unit: str) -> str:
    if isinstance(value, str):
        return value.strip()
    return f"{round(value)} {unit}" if _is_number(value) else ""


def _wind(speed: Any, speed_unit: Any, direction: Any, unit: str) -> str:
    if isinstance(speed, str):
        return speed.strip()
    if not _is_number(speed):
        return ""
    text = f"{round(speed)} {speed_unit or ('mph' if unit == '°F' else 'km/h')}"
    if _is_number(direction):
        return f"{text} from the {_COMPASS[round(direction / 45) % 8]}"
    if isinstance(direction, str) and direction.strip():
        word = direction.strip().lower()
        if word in _ABBREVIATIONS:
            word = _COMPASS[_ABBREVIATIONS[word]]
        return f"{text} {word}" if word.startswith("from") else f"{text} from the {word}"
    return text


def _lower_first(text: str) -> str:
    text = text.strip()
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
