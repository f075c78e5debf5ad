"""Tools the model may call: plain typed functions, described to the model and run safely.

    @tool(activity="Checking the weather in {city}", timeout=10)
    async def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> Weather:
        \"\"\"Get the current weather in a city.

        Args:
            city: The city's name, e.g. "Paris".
        \"\"\"

    registry = ToolRegistry([get_weather])
    registry.specs()                        # ToolSpec(name, description, JSON Schema) per tool
    async with aclosing(registry.run_each(calls, context)) as finished:
        async for index, outcome in finished:  # as each call finishes; never raises
            ...
    await registry.run_all(calls, context)  # one ToolOutcome per call, in call order

The JSON Schema comes from the signature and docstring (see :mod:`core.tool_schema`). A parameter
typed :class:`ToolContext` is filled in by the registry and never shown to the model. A tool that
another program serves (an MCP server's, see :mod:`core.mcp_servers`) comes with its schema
ready: :meth:`Tool.from_schema`.

Each tool has a ``source`` (``built-in``, or the MCP server's name) and may be offered only in
some ``channels`` (``ConversationKey.channel``): ``specs(key)`` leaves the others out, and a
call to a tool not offered in the conversation's channel is refused like an unknown tool.

A bad call never raises: invalid JSON, arguments that fail validation, an unknown tool, an
exception, a timeout, a deliberate :class:`ToolFailure` and a result that cannot be serialized or
summarized each become a short error result the model can read and act on. Only cancellation
propagates; closing :meth:`ToolRegistry.run_each` early cancels the calls still running and
waits for them to end.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum
from typing import Any, overload

import pydantic_core
from pydantic import BaseModel, ValidationError

from core.messages import ConversationKey, ToolCall, ToolResult, ToolSpec
from core.tool_schema import ToolArguments, parse_docstring

__all__ = [
    "BUILT_IN",
    "Tool",
    "ToolContext",
    "ToolFailure",
    "ToolOutcome",
    "ToolRegistry",
    "ToolText",
    "describe_error",
    "tool",
]

log = logging.getLogger("relaybot.tools")

SUMMARY_CHARS = 100
_MESSAGE_CHARS = 300
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BUILT_IN = "built-in"
"""The ``source`` of a tool written in Python in relaybot's tree."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolContext:
    """Who asked and where. A tool gets it by declaring a parameter of this type."""

    key: ConversationKey
    user_id: str
    user_name: str
    platform: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """One finished call: the result the model reads, a one-line ``summary`` for a status
    display, and how long it took in seconds."""

    result: ToolResult
    summary: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return not self.result.is_error


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolText:
    """A result that is already the text the model reads (sent as is, size-capped), with the
    one-line ``summary`` a status display shows instead of its first line. ``frame`` is put
    around ``text`` (an untrusted-data wrapper's opening and closing lines) and never cut: a
    long text is cut inside it."""

    text: str
    summary: str
    frame: tuple[str, str] = ("", "")


class ToolFailure(Exception):
    """Raised by a tool to fail on purpose: the model reads exactly this message; a status
    display shows ``summary`` (default: the message shortened)."""

    def __init__(
        self, message: str = "", *, summary: str | None = None, frame: tuple[str, str] = ("", "")
    ) -> None:
        super().__init__(message)
        self.summary = summary
        self.frame = frame


class Tool:
    """A typed function offered to the model, with its JSON Schema. Calling it calls the
    function.

    ``source`` says where the tool comes from (:data:`BUILT_IN`, or an MCP server's name);
    ``channels``, when not empty, are the only channels it is offered in.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        activity: str | None = None,
        timeout: float | None = None,
        source: str = BUILT_IN,
        channels: Iterable[str] = (),
        _schema: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"a tool name is 1-64 letters, digits, _ or -: {self.name!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"{self.name}: timeout must be positive, not {timeout!r}")
        doc = parse_docstring(inspect.getdoc(fn)) if _schema is None else None
        self.description = (doc.summary if doc else "") if description is None else description
        self.activity = activity
        self.timeout = timeout
        self.source = source
        self.channels = frozenset(channels)
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__  # an object with an async __call__
        )
        self._arguments: ToolArguments | _AsGiven = (
            ToolArguments(fn, name=self.name, docs=doc.params, context=ToolContext)
            if doc is not None
            else _AsGiven(_schema or {})
        )
        self.parameters = self._arguments.schema
        self.__doc__ = fn.__doc__

    @classmethod
    def from_schema(
        cls,
        call: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        activity: str | None = None,
        timeout: float | None = None,
        source: str,
        channels: Iterable[str] = (),
    ) -> Tool:
        """A tool described by a ready JSON Schema (an MCP server's). ``await call(arguments,
        context)`` gets the model's arguments as they came (a JSON object): whoever serves the
        tool validates them. ``activity`` is shown as written (it is not a format string)."""
        if not inspect.iscoroutinefunction(call) and not inspect.iscoroutinefunction(
            type(call).__call__
        ):
            raise TypeError(f"{name}: a tool described by a schema is called with await")
        shown = None if activity is None else activity.replace("{", "{{").replace("}", "}}")
        return cls(
            call, name=name, description=description, activity=shown, timeout=timeout,
            source=source, channels=channels, _schema=parameters,
        )  # fmt: skip

    def offered_in(self, key: ConversationKey | None) -> bool:
        """Whether the model may see and call this tool in ``key``'s conversation (any
        conversation when ``key`` is ``None``)."""
        return key is None or not self.channels or key.channel in self.channels

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    def activity_for(self, arguments: dict[str, Any] | None) -> str:
        """The status line for a call, e.g. "Checking the weather in Paris"."""
        fallback = f"Running {self.name}"
        if self.activity is None:
            return fallback
        values = {**self._arguments.defaults, **(arguments or {})}
        try:
            text = self.activity.format_map({k: _display(v) for k, v in values.items()})
        except Exception:  # a bad format string or a value that will not format
            return fallback
        return _shorten(text, SUMMARY_CHARS) or fallback


@overload
def tool(fn: Callable[..., Any]) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    activity: str | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    activity: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function: ``@tool`` or ``@tool(activity="...", timeout=10)``.

    ``activity`` is a format string over the arguments for a status line ("Checking the
    weather in {city}"); the default is "Running <name>". ``timeout`` overrides the registry's.
    """

    def make(fn: Callable[..., Any]) -> Tool:
        return Tool(fn, name=name, description=description, activity=activity, timeout=timeout)

    return make if fn is None else make(fn)


class ToolRegistry:
    """The tools of a bot: their specs for the model, and a safe way to run the model's calls."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        default_timeout: float = 30.0,
        max_result_chars: int = 16_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._default_timeout = default_timeout
        self._max_result_chars = max_result_chars
        self._clock = clock
        for each in tools:
            self.add(each)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def specs(self, key: ConversationKey | None = None) -> tuple[ToolSpec, ...]:
        """What the model is shown: every tool, or those offered in ``key``'s channel."""
        return tuple(each.spec for each in self._tools.values() if each.offered_in(key))

    def activity(self, call: ToolCall, key: ConversationKey | None = None) -> str:
        """A status line for ``call`` ("Checking the weather in Paris")."""
        known = self._offered(call.name, key)
        if known is None:
            return _shorten(f"Running {call.name}", SUMMARY_CHARS)
        return known.activity_for(call.arguments)

    def _offered(self, name: str, key: ConversationKey | None) -> Tool | None:
        known = self._tools.get(name)
        return known if known is not None and known.offered_in(key) else None

    async def run_each(
        self, calls: Sequence[ToolCall], context: ToolContext
    ) -> AsyncGenerator[tuple[int, ToolOutcome], None]:
        """Run the calls of one round concurrently, yielding ``(index, outcome)`` as each
        finishes (``index`` is the call's position in ``calls``; calls that finish together
        come in call order). Closing the iterator early (``aclosing``) or cancelling its
        consumer cancels the calls still running and waits for them to end."""
        tasks = {
            asyncio.create_task(self.run(call, context), name=f"tool {call.name} {call.id}"): index
            for index, call in enumerate(calls)
        }
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=tasks.__getitem__):
                    yield tasks[task], task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_all(self, calls: Sequence[ToolCall], context: ToolContext) -> list[ToolOutcome]:
        """Run the calls of one round concurrently; outcomes come back in call order."""
        outcomes: dict[int, ToolOutcome] = {}
        async with aclosing(self.run_each(calls, context)) as finished:
            async for index, outcome in finished:
                outcomes[index] = outcome
        return [outcomes[index] for index in range(len(calls))]

    async def run(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        """Run one call. Every failure becomes an error result; only cancellation propagates."""
        started = self._clock()
        try:
            value = await self._call(call, context)
        except asyncio.CancelledError:
            if _cancelling():
                raise
            return self._failed(call, "Cancelled", f"{call.name} was cancelled", started)
        except _Refused as refused:
            return self._failed(call, refused.kind, str(refused), started)
        except ToolFailure as failure:
            message = str(failure) or f"{call.name} failed"
            return self._failed(
                call, "ToolFailure", message, started, summary=failure.summary,
                frame=failure.frame,
            )  # fmt: skip
        except Exception as exc:
            return self._failed(call, type(exc).__name__, _raised(call.name, exc), started)
        try:
            if isinstance(value, ToolText):
                content = _framed(value.text, value.frame, self._max_result_chars)
            else:
                content = _capped(_serialized(value), self._max_result_chars)
            result = ToolResult(call_id=call.id, name=call.name, content=content)
            summary = _summary(value, content)
        except (Exception, asyncio.CancelledError) as exc:  # synchronous: never a cancellation
            return self._failed(call, type(exc).__name__, _unreadable(call.name, exc), started)
        return ToolOutcome(result=result, summary=summary, elapsed=self._clock() - started)

    async def _call(self, call: ToolCall, context: ToolContext) -> Any:
        known = self._offered(call.name, context.key)
        if known is None:
            offered = [name for name, each in self._tools.items() if each.offered_in(context.key)]
            available = ", ".join(offered) or "none"
            name = _shorten(call.name, 64)
            raise _Refused("UnknownTool", f"there is no tool named {name}; available: {available}")
        if call.arguments is None:
            raise _Refused("InvalidJSON", _json_problem(call.raw_arguments))
        try:
            args, kwargs = known._arguments.bind(call.arguments, context)
        except ValidationError as invalid:
            raise _Refused("ValidationError", _validation_problem(call.name, invalid)) from None
        seconds = known.timeout or self._default_timeout
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                if known.is_async:
                    return await known.fn(*args, **kwargs)
                return await asyncio.to_thread(known.fn, *args, **kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # the tool's own TimeoutError, reported like any exception
            # A sync tool's thread cannot be stopped; it finishes in the background.
            raise _Refused("Timeout", f"{call.name} did not finish within {seconds:g} s") from None

    def _failed(
        self,
        call: ToolCall,
        kind: str,
        message: str,
        started: float,
        *,
        summary: str | None = None,
        frame: tuple[str, str] = ("", ""),
    ) -> ToolOutcome:
        elapsed = self._clock() - started
        log.warning("tool %s failed: %s (%.2f s)", _shorten(call.name, 64), kind, elapsed)
        content = _framed(message, frame, self._max_result_chars)
        result = ToolResult(call_id=call.id, name=call.name, content=content, is_error=True)
        shown = _shorten(summary or message, SUMMARY_CHARS)
        return ToolOutcome(result=result, summary=shown, elapsed=elapsed)

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(tuple(self._tools.values()))


class _AsGiven:
    """The arguments of a tool described by a ready schema: passed on as the model sent them,
    with the context after them."""

    defaults: Mapping[str, Any] = {}

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def bind(self, arguments: dict[str, Any], context: object) -> tuple[list[Any], dict[str, Any]]:
        return [dict(arguments), context], {}


class _Refused(Exception):
    """The registry would not (or could not) finish the call: ``kind`` names why, for the log."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- results and error messages -------------------------------------------------------------------


def _serialized(value: Any) -> str:
    if value is None:
        return "done"
    if isinstance(value, str):
        return value
    if isinstance(value, ToolText):
        return value.text
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return pydantic_core.to_json(value, fallback=str).decode()


def _framed(text: str, frame: tuple[str, str], limit: int) -> str:
    """``text`` inside ``frame``, the text cut so that the whole stays within ``limit``."""
    head, tail = frame
    return head + _capped(text, max(100, limit - len(head) - len(tail))) + tail


def _capped(content: str, limit: int) -> str:
    if len(content) <= limit:
        return content
    total = len(content)
    kept = max(0, limit - len(f"\n[result cut: {limit} of {total} characters]"))
    return f"{content[:kept]}\n[result cut: {kept} of {total} characters]"


def _summary(value: Any, content: str) -> str:
    """The result's own ``summary`` (an attribute or method), else its first line. A summary
    that raises fails the call: the registry reports it like any broken result."""
    summary = getattr(value, "summary", None)
    if callable(summary):
        summary = summary()
    if isinstance(summary, str) and summary.strip():
        return _shorten(summary, SUMMARY_CHARS)
    first_line = next((line for line in content.splitlines() if line.strip()), "")
    return _shorten(first_line, SUMMARY_CHARS) or "done"


def _json_problem(raw: str) -> str:
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        return f"the arguments were not valid JSON: {exc}; send one JSON object"
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    kind = kinds.get(type(parsed), "a number")
    return f"the arguments were {kind}, not a JSON object; send one JSON object"


def _validation_problem(name: str, error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in each['loc']) or 'arguments'}: {each['msg']}"
        for each in error.errors(include_url=False, include_input=False)
    ]
    more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
    return f"invalid arguments for {name}: {'; '.join(problems[:10])}{more}"


_URL_QUERY = re.compile(r"(https?://[^\s?#'\"]*)[?#][^\s'\"]*")
_URL_USERINFO = re.compile(r"(https?://)[^\s/@'\"]+@")


def _raised(name: str, exc: BaseException) -> str:
    """What a tool's exception says, without URL queries or credentials that could hold a key."""
    return f"{name} raised {describe_error(exc)}"


def _unreadable(name: str, exc: BaseException) -> str:
    """A tool returned, but its result could not be serialized or summarized."""
    return f"{name} returned a result that could not be read: {describe_error(exc)}"


def describe_error(exc: BaseException) -> str:
    """``"Kind: message"`` on one line, at most a few hundred characters, with URL queries and
    credentials (which could hold a key) taken out."""
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails still gets reported
        text = ""
    message = _shorten(_URL_USERINFO.sub(r"\1", _URL_QUERY.sub(r"\1?…", text)), _MESSAGE_CHARS)
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


def _display(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    return _shorten(value, 60) if isinstance(value, str) else value


def _shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _cancelling() -> bool:
    """Whether this task is being cancelled (rather than a tool raising CancelledError itself)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
