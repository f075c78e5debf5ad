"""Where settings come from: the variables of a given environment, as pydantic-settings sources.

:class:`EnvironSource` reads ``RELAYBOT_*`` variables (``RELAYBOT_LLM__TIMEOUTS__TOTAL`` sets
``llm.timeouts.total``; a section or a list is JSON, and a longer name wins over the section it
is in); :class:`TokenSource` reads the secrets' usual names, which each section declares on its
own fields with :class:`TokenVariable`. Both read the mapping they are given — ``os.environ``
or a test's dict — and count an empty variable as unset. Neither knows any section: they follow
whatever model they are given, so a layer that adds a section adds its variables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.settings_errors import section_type

__all__ = [
    "ENV_PREFIX",
    "EnvironSource",
    "Location",
    "NotJSON",
    "TokenSource",
    "TokenVariable",
    "merged",
    "setting_variables",
    "token_variables",
]

ENV_PREFIX = "RELAYBOT_"
_NESTED = "__"

Location = tuple[str, ...]
"""Where a setting is: ``("llm", "timeouts", "total")``."""


@dataclass(frozen=True, slots=True)
class TokenVariable:
    """Marks a secret setting that is also read from a variable of its own, under the name its
    platform's tools use: ``bot_token: Annotated[Secret, TokenVariable("SLACK_BOT_TOKEN")]``.
    The setting's ``RELAYBOT_*`` name wins over it."""

    name: str


class NotJSON(ValueError):
    """A section or a list given in one variable is not valid JSON."""

    def __init__(self, loc: Location, variable: str) -> None:
        super().__init__(f"{'.'.join(loc)}: not valid JSON [from {variable}]")
        self.loc = loc
        self.variable = variable


def setting_variables(
    model: type[BaseModel], prefix: str = ENV_PREFIX, loc: Location = ()
) -> Iterator[tuple[str, Location, FieldInfo]]:
    """Every ``RELAYBOT_*`` name a setting or a section answers to, with its place and field."""
    for name, field in model.model_fields.items():
        variable = prefix + name.upper()
        yield variable, (*loc, name), field
        section = section_type(field.annotation)
        if section is not None:
            yield from setting_variables(section, variable + _NESTED, (*loc, name))


def token_variables(model: type[BaseModel], loc: Location = ()) -> dict[str, Location]:
    """The :class:`TokenVariable` names the model's sections declare, and where each one goes."""
    found: dict[str, Location] = {}
    for name, field in model.model_fields.items():
        section = section_type(field.annotation)
        if section is not None:
            found.update(token_variables(section, (*loc, name)))
        found.update(
            {mark.name: (*loc, name) for mark in field.metadata if isinstance(mark, TokenVariable)}
        )
    return found


class EnvironSource(PydanticBaseSettingsSource):
    """The ``RELAYBOT_*`` variables of ``environ`` that name a setting, case-insensitively
    (the others: ``core.settings.unknown_variables``)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        settings = {
            name.lower(): (loc, field) for name, loc, field in setting_variables(self.settings_cls)
        }
        given: dict[Location, tuple[FieldInfo, str, str]] = {}
        for name, text in self._environ.items():
            if text != "" and (setting := settings.get(name.lower())) is not None:
                loc, field = setting
                given[loc] = (field, name, text)
        values: dict[str, Any] = {}
        # Shorter names first, so that RELAYBOT_LLM__RETRY__DEADLINE wins over RELAYBOT_LLM__RETRY.
        for loc, (field, name, text) in sorted(given.items(), key=lambda item: len(item[0])):
            _put(values, loc, self._decoded(loc, field, name, text))
        return values

    def _decoded(self, loc: Location, field: FieldInfo, name: str, text: str) -> Any:
        """A section or a list is JSON; anything else is left to validation."""
        if not self.field_is_complex(field):
            return text
        try:
            return self.decode_complex_value(loc[-1], field, text)
        except ValueError:
            raise NotJSON(loc, name) from None


class TokenSource(PydanticBaseSettingsSource):
    """The :class:`TokenVariable` variables of ``environ`` (names as written)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, loc in token_variables(self.settings_cls).items():
            if text := self._environ.get(name):
                _put(values, loc, text)
        return values


def merged(weaker: Mapping[str, Any], stronger: Mapping[str, Any]) -> dict[str, Any]:
    """``stronger`` over ``weaker``, section by section."""
    result = dict(weaker)
    for key, value in stronger.items():
        old = result.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            value = merged(old, value)
        result[key] = value
    return result


def _put(values: dict[str, Any], loc: Location, value: Any) -> None:
    """Set ``loc`` in the nested ``values``, over what a shorter name put there."""
    node = values
    for key in loc[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return  # the section was given as something else: validating it says so
    node.update(merged(node, {loc[-1]: value}))
