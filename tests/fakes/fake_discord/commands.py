"""Application commands: what the bot registers, globally or in a guild, and what a person's
use of one looks like.

``PUT /applications/{app}/commands`` and ``PUT /applications/{app}/guilds/{guild}/commands``
replace the whole set (discord.py's ``CommandTree.sync``), checked as Discord checks a chat
input command: a lower-case name of 1 to 32 letters, digits, ``-`` or ``_``; a description of
1 to 100 characters; at most 25 options, required ones first; sub-commands only in a command or
a group, groups only in a command. A command keeps its id when a sync names it again. ``GET``
on either path lists them. Each sync is kept in :attr:`AppCommands.syncs`.

:meth:`AppCommands.options` is what a Discord client sends when someone picks a command: the
command found in the channel's guild (else globally; a guild command is not offered in a DM),
the path of sub-commands and the values typed, checked against what was registered — a name
nobody registered, a missing required value or an unknown one is the test's mistake
(``LookupError``, ``ValueError``): Discord's client never sends them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.fake_discord.errors import invalid_form, unknown
from tests.fakes.fake_discord.router import Answer, Params, Query, Route
from tests.fakes.fake_discord.world import APP_ID

_NAME = re.compile(r"^[-_\w]{1,32}$")
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
_VALUE_TYPES: dict[int, type] = {STRING: str, INTEGER: int, BOOLEAN: bool}
_BOT_DM = 1
"""The interaction context of a DM with the bot."""


@dataclass(frozen=True, kw_only=True)
class Sync:
    """One ``PUT``: where (``None``: globally) and the names it registered."""

    guild_id: int | None
    names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Used:
    """A command as a person used it: the registered command, and ``data`` as the
    INTERACTION_CREATE carries it."""

    command: dict[str, Any]
    data: dict[str, Any]


@dataclass
class AppCommands:
    """The registered commands, by scope (``None``: global), and their routes."""

    snowflake: Any
    """Makes ids (the state's :meth:`~tests.fakes.fake_discord.state.State.snowflake`)."""
    guilds: tuple[int, ...]
    registered: dict[int | None, list[dict[str, Any]]] = field(default_factory=dict)
    syncs: list[Sync] = field(default_factory=list)

    def routes(self) -> list[Route]:
        everywhere, guild = "/applications/{app_id}/commands", "/applications/{app_id}/guilds/"
        guild += "{guild_id}/commands"
        return [
            Route("GET", everywhere, self._list),
            Route("PUT", everywhere, self._put),
            Route("GET", guild, self._list),
            Route("PUT", guild, self._put),
        ]

    def options(self, guild_id: int | None, path: str, values: Mapping[str, Any]) -> Used:
        """What a client sends for ``/path`` (``"relaybot model"``) with ``values`` typed."""
        name, *subcommands = path.split()
        found = self._find(guild_id, name)
        data: dict[str, Any] = {"id": found["id"], "name": name, "type": 1}
        if found.get("guild_id") is not None:
            data["guild_id"] = found["guild_id"]
        options, into = found.get("options", []), data
        for sub in subcommands:
            chosen = next((o for o in options if o["name"] == sub
                           and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)  # fmt: skip
            if chosen is None:
                raise LookupError(f"/{path}: no sub-command {sub!r} was registered")
            nested: dict[str, Any] = {"type": chosen["type"], "name": sub, "options": []}
            into.setdefault("options", []).append(nested)
            options, into = chosen.get("options", []), nested
        if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
            raise LookupError(f"/{path} needs a sub-command: Discord offers no command here")
        into["options"] = _typed(path, options, values)
        return Used(command=found, data=data)

    def _find(self, guild_id: int | None, name: str) -> dict[str, Any]:
        scopes = ([guild_id] if guild_id is not None else []) + [None]
        for scope in scopes:
            for command in self.registered.get(scope, []):
                if command["name"] != name:
                    continue
                contexts = command.get("contexts")
                if guild_id is None and contexts is not None and _BOT_DM not in contexts:
                    continue
                return command
        raise LookupError(f"/{name} is not registered where it was used")

    # --- the routes ----------------------------------------------------------------------------

    async def _list(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, list(self.registered.get(self._scope(p), []))

    async def _put(self, p: Params, body: Any, q: Query) -> Answer:
        scope = self._scope(p)
        if not isinstance(body, list):
            raise invalid_form("_errors", "LIST_TYPE_CONVERT", "Only iterables may be used")
        if len(body) > 100:
            raise invalid_form("_errors", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer")
        old = {c["name"]: c for c in self.registered.get(scope, [])}
        kept = []
        for index, given in enumerate(body):
            _check_command(given, f"{index}")
            before = old.get(given["name"])
            kept.append(self._stored(given, scope, before))
        self.registered[scope] = kept
        self.syncs.append(Sync(guild_id=scope, names=tuple(c["name"] for c in kept)))
        return 200, kept

    def _scope(self, p: Params) -> int | None:
        if p["app_id"] != APP_ID:
            raise unknown("Application", 10002)
        guild = p.get("guild_id")
        if guild is not None and guild not in self.guilds:
            raise unknown("Guild", 10004)
        return guild

    def _stored(
        self, given: dict[str, Any], scope: int | None, before: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The command as Discord keeps and answers it."""
        command: dict[str, Any] = {
            "id": before["id"] if before else str(self.snowflake()),
            "application_id": str(APP_ID), "version": str(self.snowflake()),
            "type": int(given.get("type", 1)), "name": given["name"],
            "description": given.get("description", ""),
            "options": list(given.get("options") or []),
            "default_member_permissions": given.get("default_member_permissions"),
            "dm_permission": given.get("dm_permission", True), "nsfw": bool(given.get("nsfw")),
            "contexts": given.get("contexts"), "integration_types": given.get("integration_types"),
        }  # fmt: skip
        if scope is not None:
            command["guild_id"] = str(scope)
        return command


def _check_command(command: Any, at: str) -> None:
    """A chat input command, as Discord checks it (raises ``400 50035``)."""
    if not isinstance(command, dict):
        raise invalid_form(at, "DICT_TYPE_CONVERT", "Only dictionaries may be used")
    if int(command.get("type", 1)) != 1:
        raise invalid_form(f"{at}.type", "BASE_TYPE_CHOICES", "Only chat input commands here")
    _check_named(command, at)
    _check_options(command.get("options") or [], f"{at}.options", depth=0)


def _check_named(item: Mapping[str, Any], at: str) -> None:
    name = str(item.get("name", ""))
    if not _NAME.match(name) or name != name.lower():
        raise invalid_form(f"{at}.name", "APPLICATION_COMMAND_INVALID_NAME",
                           f"Command name is invalid: {name!r}")  # fmt: skip
    if not 1 <= len(str(item.get("description", ""))) <= 100:
        raise invalid_form(f"{at}.description", "BASE_TYPE_BAD_LENGTH",
                           "Must be between 1 and 100 in length.")  # fmt: skip


def _check_options(options: list[Any], at: str, *, depth: int) -> None:
    if len(options) > 25:
        raise invalid_form(at, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for index, option in enumerate(options):
        where = f"{at}.{index}"
        _check_named(option, where)
        kind = int(option.get("type", 0))
        if (kind == SUB_COMMAND_GROUP and depth > 0) or (kind == SUB_COMMAND and depth > 1):
            raise invalid_form(f"{where}.type", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                               "Sub-command groups nest only in a command")  # fmt: skip
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            _check_options(option.get("options") or [], f"{where}.options", depth=depth + 1)
            continue
        if kind not in _VALUE_TYPES and kind not in range(6, 12):
            raise invalid_form(f"{where}.type", "BASE_TYPE_CHOICES", f"Unknown type {kind}")
        if option.get("required"):
            if seen_optional:
                raise invalid_form(where, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                   "Required options go before optional ones")  # fmt: skip
        else:
            seen_optional = True


def _typed(path: str, options: list[dict[str, Any]], values: Mapping[str, Any]) -> list[Any]:
    """The values as the interaction's options, in the registered order."""
    known = {o["name"]: o for o in options}
    if unknown_names := set(values) - set(known):
        raise ValueError(f"/{path} has no option {sorted(unknown_names)}")
    typed = []
    for option in options:
        name = option["name"]
        if name not in values:
            if option.get("required"):
                raise ValueError(f"/{path} needs {name!r}: Discord's client asks for it")
            continue
        value = values[name]
        wanted = _VALUE_TYPES.get(option["type"])
        if wanted is not None and not isinstance(value, wanted):
            raise ValueError(f"/{path} {name}: {value!r} is not a {wanted.__name__}")
        typed.append({"type": option["type"], "name": name, "value": value})
    return typed
