"""Reporting a configuration that cannot be used, in one line that names the key, what is wrong
and where the value came from — never a secret's value.

This module knows nothing of relaybot's settings: :class:`Origins` carries the settings model,
the variable prefix and the token variables along with the sources of one load, so that
``core.settings`` can import it without a cycle.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

__all__ = ["Origins", "SettingsError", "describe", "problem", "section_type"]

# Prefixes of API keys and chat tokens (OpenAI-style, Slack's xox?- and xapp-).
_TOKEN_SHAPES = re.compile(r"\b(?:sk|pk|rk|key|xox[abposr]|xapp)-[A-Za-z0-9_\-]{3,}")


class SettingsError(Exception):
    """The configuration cannot be used. ``str(error)`` is one line, safe to print."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Origins:
    """Which source supplied the value at a location, to say where to fix it. ``model`` is the
    settings model, ``env_prefix`` its variables' prefix, and ``token_variables`` the secrets'
    own variables with the location each one fills."""

    model: type[BaseModel]
    env_prefix: str
    token_variables: Mapping[str, tuple[str, ...]]
    overrides: Mapping[str, Any]
    environ: Mapping[str, str]
    toml_data: Mapping[str, Any]
    toml_file: Path | None

    def of(self, loc: Sequence[str]) -> str | None:
        if _holds(self.overrides, loc):
            return "arguments"
        if (name := self._variable(loc)) is not None:
            return name
        if self.toml_file is not None and _holds(self.toml_data, loc):
            return str(self.toml_file)
        return None

    def _variable(self, loc: Sequence[str]) -> str | None:
        present = {name.lower(): name for name, value in self.environ.items() if value != ""}
        for end in range(len(loc), 0, -1):
            wanted = (self.env_prefix + "__".join(loc[:end])).lower()
            if wanted in present:
                return present[wanted]
        below = (self.env_prefix + "__".join(loc) + "__").lower()
        for lowered, name in sorted(present.items()):
            if lowered.startswith(below):
                return name
        for name, target in self.token_variables.items():
            if tuple(loc[: len(target)]) == target and self.environ.get(name):
                return name
        return None

    def secrets(self) -> set[str]:
        """Every value given for a secret setting, from any source."""
        found: set[str] = set()
        for loc in _secret_settings(self.model):
            names = [self.env_prefix + "__".join(loc)]
            names += [name for name, target in self.token_variables.items() if target == loc]
            found.update(self.environ.get(name) or "" for name in names)
            found.update(_value_at(data, loc) for data in (self.overrides, self.toml_data))
        return {value.strip() for value in found if len(value.strip()) >= 4}


def _secret_settings(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        section = section_type(field.annotation)
        if section is not None:
            yield from _secret_settings(section, (*prefix, name))
        elif _is_secret(field.annotation):
            yield (*prefix, name)


def _value_at(data: Mapping[str, Any], loc: Sequence[str]) -> str:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    return node if isinstance(node, str) else ""


def _holds(data: Mapping[str, Any], loc: Sequence[str]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def describe(error: ValidationError, origins: Origins) -> str:
    """``config error: `` and one :func:`problem` per error, joined by ``; ``."""
    problems = []
    secrets = origins.secrets()
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        if item["type"] == "extra_forbidden":
            what = "unknown setting" + _suggestion(origins.model, loc)
        else:
            shown = _shown_input(origins.model, loc, item.get("input"), secrets)
            what = _message(item["msg"]) + shown
        problems.append(problem(loc, what, origins))
    return "config error: " + "; ".join(problems)


def problem(loc: Sequence[str], what: str, origins: Origins) -> str:
    """``key: what is wrong [from source]``."""
    source = origins.of(loc)
    return f"{'.'.join(loc)}: {what}" + (f" [from {source}]" if source else "")


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _suggestion(settings: type[BaseModel], loc: Sequence[str]) -> str:
    model = _model_at(settings, loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _shown_input(
    settings: type[BaseModel], loc: Sequence[str], value: object, secrets: set[str]
) -> str:
    """``(got …)`` for a plain value of a plain setting; nothing for secrets, sections,
    anything unknown (a misnamed key may well hold a token), a value holding a secret given
    elsewhere, or a value shaped like a key or a token."""
    model = _model_at(settings, loc[:-1])
    field = model.model_fields.get(loc[-1]) if model is not None and loc else None
    if field is None or _is_secret(field.annotation) or section_type(field.annotation):
        return ""
    if not isinstance(value, str | int | float | bool):
        return ""
    if isinstance(value, str) and (
        _TOKEN_SHAPES.search(value) or any(secret in value for secret in secrets)
    ):
        return ""
    shown = re.sub(r"(://[^/@\s:]*:)[^/@\s]*@", r"\1***@", repr(value))
    return f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"


def _model_at(settings: type[BaseModel], loc: Sequence[str]) -> type[BaseModel] | None:
    model = settings
    for part in loc:
        field = model.model_fields.get(part)
        section = section_type(field.annotation) if field is not None else None
        if section is None:
            return None
        model = section
    return model


def section_type(annotation: Any) -> type[BaseModel] | None:
    """The model of a section setting, ``None`` for a plain one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))
