"""A ``get_weather`` result the offline model puts into words, with a server or without."""

from __future__ import annotations

from typing import Any

__all__ = ["PARIS"]

PARIS: dict[str, Any] = {
    "place": "Paris",
    "country": "France",
    "temperature": 12,
    "apparent_temperature": 10,
    "unit": "celsius",
    "conditions": "Light rain",
    "wind_speed": 14,
    "wind_direction": 270,
}
