"""relaybot's offline model: a loopback LLM server that needs no key and no network.

    async with OfflineLLMServer(pace=0) as server:
        LLMClient(base_url=server.openai_base_url, ...)     # POST {url}/v1/chat/completions
        LLMClient(base_url=server.anthropic_base_url, ...)  # POST {url}/v1/messages

Two parts:

- :class:`OfflineModel` is pure: a request body (either protocol) in, an :class:`Answer` out —
  the text to stream word by word, the tool calls, the finish reason. It is deterministic (the
  same conversation gives the same answer): it introduces itself, echoes and sums up what it was
  told, counts turns, recalls earlier messages and a name, counts to N, asks ``get_weather``
  for "the weather in <city>" when that tool is offered, and words the tool's result.
- :class:`OfflineLLMServer` is an aiohttp server that streams an answer over SSE exactly as
  the real gateways do: OpenAI ``chat.completion.chunk`` events ending in ``data: [DONE]``, and
  Anthropic ``message_start`` … ``message_stop`` events with ``event:`` lines.
  ``relaybot offline-llm`` runs it through :func:`run_offline_llm`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

__all__ = [
    "INTRO",
    "MODEL_NAME",
    "Answer",
    "OfflineLLMServer",
    "OfflineModel",
    "PlannedCall",
    "RequestRejected",
    "anthropic_events",
    "openai_events",
    "run_offline_llm",
    "weather_city",
    "word_weather",
]

MODEL_NAME = "relaybot/offline"
INTRO = "I'm relaybot's offline model — no network or API key needed, so my answers are simple."
WEATHER_TOOL = "get_weather"

Wire = Literal["openai", "anthropic"]
Finish = Literal["stop", "tool_calls", "length"]


class RequestRejected(ValueError):
    """The request is not one the offline model can answer; the server answers 400."""


# --- The model: a request body in, an answer plan out ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedCall:
    """A tool call, made by the model or found in the history."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What to stream: ``pieces`` (words with their leading space) and then ``tool_calls``."""

    id: str
    pieces: tuple[str, ...]
    tool_calls: tuple[PlannedCall, ...] = ()
    finish: Finish = "stop"
    input_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces) + sum(_estimate(c.arguments_json) for c in self.tool_calls)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Said:
    """One message of the conversation, protocol-neutral. ``tool`` is one tool result."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    calls: tuple[PlannedCall, ...] = ()
    call_id: str = ""
    is_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Conversation:
    said: tuple[_Said, ...]
    system: str = ""
    tools: frozenset[str] = field(default_factory=frozenset)
    max_tokens: int | None = None


class OfflineModel:
    """Answers a request body deterministically from the conversation in it."""

    name = MODEL_NAME

    def answer(self, body: Any, *, protocol: Wire) -> Answer:
        """The answer to one request body; :class:`RequestRejected` when it is not one."""
        conversation = _read_openai(body) if protocol == "openai" else _read_anthropic(body)
        return self._plan(conversation)

    def _plan(self, conversation: _Conversation) -> Answer:
        said = conversation.said
        digest = hashlib.sha256(repr(said).encode()).hexdigest()[:24]
        sentences = [] if any(s.role == "assistant" for s in said) else [INTRO]
        calls: tuple[PlannedCall, ...] = ()
        results = _trailing_results(said)
        if results:
            sentences += [_word_result(result, _calls_by_id(said)) for result in results]
        else:
            reply, calls = _reply(said, conversation.tools, digest)
            sentences += reply
        pieces = tuple(re.findall(r"\s*\S+", " ".join(sentences)))
        finish: Finish = "tool_calls" if calls else "stop"
        budget = conversation.max_tokens
        if budget is not None and len(pieces) > budget:
            pieces, calls, finish = pieces[:budget], (), "length"
        words = conversation.system + " ".join(s.text for s in said)
        return Answer(
            id=digest,
            pieces=pieces,
            tool_calls=calls,
            finish=finish,
            input_tokens=max(1, _estimate(words) + 3 * len(said)),
        )


def _reply(
    said: tuple[_Said, ...], tools: frozenset[str], digest: str
) -> tuple[list[str], tuple[PlannedCall, ...]]:
    """The sentences (and tool calls) that answer the last user message."""
    said_by_user = [s.text for s in said if s.role == "user"]
    if not said_by_user:
        return ["You haven't said anything yet — send me a message and I'll echo it back."], ()
    last, earlier = said_by_user[-1], said_by_user[:-1]
    name = _name_in(said_by_user)
    city = weather_city(last)
    if city is not None:
        if WEATHER_TOOL not in tools:
            return [
                f"You asked about the weather in {city}, but I can't check the weather without "
                f"my {WEATHER_TOOL} tool, and it isn't available to me right now."
            ], ()
        arguments: dict[str, Any] = {"city": city}
        if re.search(r"fahrenheit", last, re.IGNORECASE):
            arguments["unit"] = "fahrenheit"
        call = PlannedCall(id=f"call_{digest}", name=WEATHER_TOOL, arguments=arguments)
        return [f"Let me check the weather in {city}."], (call,)
    if match := _COUNT.search(last):
        return [_count(match["n"])], ()
    if _ASK_FIRST.search(last):
        if not earlier:
            return [_say("This is your first message:", last)], ()
        return [_say("The first thing you said was", earlier[0])], ()
    if _ASK_BEFORE.search(last):
        if not earlier:
            return ["Nothing yet — this is your first message."], ()
        return [_say("Just before this, you said", earlier[-1])], ()
    if _ASK_NAME.search(last):
        known = _name_in(earlier)
        return [f"Your name is {known}." if known else "You haven't told me your name yet."], ()
    if (said_name := _name_in([last])) is not None:
        return [f"Nice to meet you, {said_name}! I'll remember that in this conversation."], ()
    if _GREETING.match(last):
        hello = f"Hello, {name}!" if name else "Hello!"
        return [hello, _TRY], ()
    if _FAREWELL.search(last):
        bye = f"Goodbye, {name}!" if name else "Goodbye!"
        return [bye, f"We talked for {len(said_by_user)} turns."], ()
    return _summary(last, earlier, name, said_by_user), ()


_TRY = (
    "Try asking me about the weather in a city, tell me your name, ask me to count to ten, "
    "or ask what you said first."
)


def _summary(last: str, earlier: list[str], name: str | None, everything: list[str]) -> list[str]:
    """Echo the last message, count the turns, recall what came before."""
    turn = len(everything)
    out = [_say("You said", last)]
    if last.rstrip().endswith("?") and not _ASK_SUMMARY.search(last):
        out.append("I can't really answer questions — I only repeat and sum up what you tell me.")
    if turn == 1:
        out.append("This is the first turn of our conversation.")
        return out
    out.append(f"This is turn {turn} of our conversation.")
    out.append(_say("Earlier you said", earlier[-1]))
    if len(earlier) > 1:
        out.append(_say("You started with", earlier[0]))
    if name:
        out.append(f"You told me your name is {name}.")
    topics = _topics(everything)
    if len(topics) > 1:
        out.append(f"So far we've talked about {', '.join(topics[:-1])} and {topics[-1]}.")
    return out


_GREETING = re.compile(
    r"\s*(?:hi|hello|hey|howdy|hiya|yo|greetings|good (?:morning|afternoon|evening))\b",
    re.IGNORECASE,
)
_FAREWELL = re.compile(r"\b(?:bye|goodbye|see you|good night)\b", re.IGNORECASE)
_COUNT = re.compile(
    r"\bcount (?:up )?(?:from (?:1|one) )?to (?P<n>\d+|one|two|three|four|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|twenty)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20,
}  # fmt: skip
_COUNT_LIMIT = 50
_ASK_FIRST = re.compile(
    r"\bwhat (?:did|was) (?:i|my) (?:say|said|ask|asked|write|wrote|tell you|message)? ?first\b"
    r"|\bmy first (?:message|question)\b",
    re.IGNORECASE,
)
_ASK_BEFORE = re.compile(
    r"\bwhat did i (?:just )?(?:say|ask|write)(?: before| earlier| last)?\s*\??\s*$", re.IGNORECASE
)
_ASK_SUMMARY = re.compile(r"\b(?:summari[sz]e|sum (?:it )?up|recap)\b", re.IGNORECASE)
_ASK_NAME = re.compile(r"\bwhat(?:'s| is) my name\b|\bwho am i\b", re.IGNORECASE)
_NAME = re.compile(r"(?i:\bmy name is|\bcall me|\bi am called)\s+(?P<name>[^\W\d_][\w'-]*)")
_NOT_TOPICS = re.compile(
    r"about|after|again|also|been|before|being|called|could|count|does|doing|first|from|going|"
    r"have|hello|here|into|just|know|like|make|more|much|name|only|over|please|really|said|"
    r"should|some|tell|thank|thanks|than|that|thats|their|them|then|there|these|they|this|"
    r"those|very|want|were|what|whats|when|where|which|while|will|with|would|your|yours"
)


def _count(word: str) -> str:
    n = int(word) if word.isdigit() else _NUMBER_WORDS[word.lower()]
    if n < 1:
        return "There's nothing to count to."
    numbers = ", ".join(str(i) for i in range(1, min(n, _COUNT_LIMIT) + 1)) + "."
    return numbers if n <= _COUNT_LIMIT else f"I'll stop at {_COUNT_LIMIT}: {numbers}"


def _name_in(texts: Iterable[str]) -> str | None:
    """The name the user gave last ("my name is Ana", "call me Ana")."""
    found = None
    for text in texts:
        for match in _NAME.finditer(text):
            found = match["name"][:1].upper() + match["name"][1:]
    return found


def _topics(texts: list[str], limit: int = 5) -> list[str]:
    """Distinct content words in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"[^\W\d_][\w'-]{3,}", text.lower()):
            if not _NOT_TOPICS.fullmatch(word.replace("'", "")):
                seen.setdefault(word, None)
    return list(seen)[:limit]


def _say(prefix: str, text: str, limit: int = 120) -> str:
    """``prefix “text”.``, the text on one line and shortened at a word boundary."""
    quoted = " ".join(text.split())
    if len(quoted) > limit:
        quoted = quoted[:limit].rsplit(" ", 1)[0] + "…"
    end = "" if quoted.endswith((".", "!", "?", "…")) else "."
    return f"{prefix} “{quoted}”{end}"


# --- Weather ---------------------------------------------------------------------------------

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


def _trailing_results(said: tuple[_Said, ...]) -> list[_Said]:
    results: list[_Said] = []
    for item in reversed(said):
        if item.role != "tool":
            break
        results.insert(0, item)
    return results


def _calls_by_id(said: tuple[_Said, ...]) -> dict[str, PlannedCall]:
    return {call.id: call for item in said for call in item.calls}


def _word_result(result: _Said, calls: dict[str, PlannedCall]) -> str:
    call = calls.get(result.call_id)
    name = call.name if call else "tool"
    city = str(call.arguments.get("city") or "") if call else ""
    error = _error_reason(result)
    if name == WEATHER_TOOL:
        where = f" in {city}" if city else ""
        if error is not None and error.startswith("I "):
            return error  # "I couldn't find a place called 'Atlantis'."
        if error is not None:
            return f"I couldn't get the weather{where}: {error}"
        return word_weather(result.text, city=city)
    if error is not None:
        return f"The {name} tool failed: {error}"
    return _say(f"The {name} tool answered", result.text)


def _error_reason(result: _Said) -> str | None:
    """Why a tool failed, as the end of a sentence; ``None`` if the result is no error."""
    text = result.text.strip()
    data = _json_object(text)
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


_FAILURE = re.compile(
    r"\b(?:error|fail(?:ed|ure)?|couldn't|could not|can't|cannot|unreachable|unavailable"
    r"|not found|timed out|did not finish|no tool named|invalid|HTTP [45]\d\d)\b",
    re.IGNORECASE,
)
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
    data = _json_object(content)
    if data is None:
        return _say("The weather tool says", content)
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    got = {key: _first(flat, names) for key, names in _FIELDS.items()}
    unit = "°F" if "f" in str(got["unit"] or "c").lower().replace("°", "") else "°C"
    place = str(got["place"] or city)
    country = str(got["country"] or "")
    where = f"{place}, {country}" if country and country not in place else place
    temperature, feels = _degrees(got["temperature"], unit), _degrees(got["feels"], unit)
    conditions = _lower_first(str(got["conditions"])) if isinstance(got["conditions"], str) else ""
    if not temperature and not conditions:
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return _say("The weather tool answered", compact)
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


def _degrees(value: Any, unit: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{_number(value)} {unit}"
    return ""


def _number(value: float) -> str:
    return str(round(value))


def _wind(speed: Any, speed_unit: Any, direction: Any, unit: str) -> str:
    if isinstance(speed, str):
        return speed.strip()
    if not isinstance(speed, int | float) or isinstance(speed, bool):
        return ""
    text = f"{_number(speed)} {speed_unit or ('mph' if unit == '°F' else 'km/h')}"
    if isinstance(direction, int | float) and not isinstance(direction, bool):
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


# --- Reading request bodies ------------------------------------------------------------------


def _read_openai(body: Any) -> _Conversation:
    messages = _messages_of(body)
    said: list[_Said] = []
    system: list[str] = []
    for message in messages:
        role, text = message.get("role"), _text_of(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            said.append(_Said(role="user", text=text))
        elif role == "assistant":
            calls = tuple(_openai_call(item) for item in message.get("tool_calls") or ())
            said.append(_Said(role="assistant", text=text, calls=calls))
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            said.append(_Said(role="tool", text=text, call_id=call_id))
        else:
            raise RequestRejected(f"messages: unknown role {role!r}")
    tools = _tool_names(body, lambda tool: _field(tool.get("function"), "name") or tool.get("name"))
    if body.get("tool_choice") == "none":
        tools = frozenset()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return _Conversation(
        said=tuple(said), system="\n".join(system), tools=tools, max_tokens=_limit(limit)
    )


def _openai_call(item: Any) -> PlannedCall:
    if not isinstance(item, dict):
        raise RequestRejected("messages: a tool call must be an object")
    function = item.get("function")
    if not isinstance(function, dict):
        raise RequestRejected("messages: a tool call needs a function object")
    arguments = _json_object(str(function.get("arguments") or "")) or {}
    return PlannedCall(
        id=str(item.get("id") or ""), name=str(function.get("name")), arguments=arguments
    )


def _read_anthropic(body: Any) -> _Conversation:
    messages = _messages_of(body)
    said: list[_Said] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise RequestRejected(f"messages: unknown role {role!r}")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise RequestRejected("messages: content must be a string or a list of blocks")
        texts: list[str] = []
        calls: list[PlannedCall] = []
        for block in content:
            if not isinstance(block, dict):
                raise RequestRejected("messages: a content block must be an object")
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_use":
                given = block.get("input")
                arguments: dict[str, Any] = given if isinstance(given, dict) else {}
                calls.append(
                    PlannedCall(
                        id=str(block.get("id")), name=str(block.get("name")), arguments=arguments
                    )
                )
            elif kind == "tool_result":
                said.append(
                    _Said(
                        role="tool",
                        text=_text_of(block.get("content")),
                        call_id=str(block.get("tool_use_id") or ""),
                        is_error=bool(block.get("is_error")),
                    )
                )
        if role == "assistant":
            said.append(_Said(role="assistant", text="".join(texts), calls=tuple(calls)))
        elif texts:
            said.append(_Said(role="user", text="\n".join(texts)))
    tools = _tool_names(body, lambda tool: tool.get("name"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        tools = frozenset()
    return _Conversation(
        said=tuple(said),
        system=_text_of(body.get("system")),
        tools=tools,
        max_tokens=_limit(body.get("max_tokens")),
    )


def _messages_of(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise RequestRejected("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("messages: a non-empty list of messages is required")
    if not all(isinstance(message, dict) for message in messages):
        raise RequestRejected("messages: each message must be an object")
    return messages


def _tool_names(body: dict[str, Any], name_of: Callable[[dict[str, Any]], Any]) -> frozenset[str]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise RequestRejected("tools: must be a list")
    return frozenset(str(name_of(tool)) for tool in tools if isinstance(tool, dict))


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestRejected("max_tokens: must be a positive integer")
    return value


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text of a list of parts / blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _estimate(text: str) -> int:
    """Tokens, roughly: one per word or punctuation run."""
    return len(re.findall(r"\w+|[^\w\s]+", text))


# --- The wire: SSE events of an answer, in both protocols ------------------------------------

_Event = tuple[bytes, bool]  # the bytes of one SSE event, and whether a pause comes before it


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    if not isinstance(data, str):
        data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def _fragments(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def openai_events(answer: Answer, *, include_usage: bool, created: int) -> Iterator[_Event]:
    """A ``chat.completion.chunk`` stream: role, text, tool calls, finish, usage, ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": f"chatcmpl-{answer.id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "system_fingerprint": "relaybot-offline",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return _sse(body)

    yield chunk({"role": "assistant", "content": "", "refusal": None}), False
    for piece in answer.pieces:
        yield chunk({"content": piece}), True
    for index, call in enumerate(answer.tool_calls):
        function = {"name": call.name, "arguments": ""}
        first = {"index": index, "id": call.id, "type": "function", "function": function}
        yield chunk({"tool_calls": [first]}), True
        for fragment in _fragments(call.arguments_json):
            yield (
                chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                True,
            )
    yield chunk({}, answer.finish), False
    if include_usage:
        usage = {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
        body = {
            "id": f"chatcmpl-{answer.id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "choices": [],
            "usage": usage,
        }
        yield _sse(body), False
    yield _sse("[DONE]"), False


def anthropic_events(answer: Answer) -> Iterator[_Event]:
    """A Messages stream: ``message_start``, text and ``tool_use`` blocks, ``message_delta``
    (stop reason, cumulative usage), ``message_stop`` — each with its ``event:`` line."""

    def ev(body: dict[str, Any]) -> bytes:
        return _sse(body, event=body["type"])

    message: dict[str, Any] = {
        "id": f"msg_{answer.id}",
        "type": "message",
        "role": "assistant",
        "model": MODEL_NAME,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1},
    }
    yield ev({"type": "message_start", "message": message}), False
    index = 0
    if answer.pieces or not answer.tool_calls:
        start = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        yield ev(start), False
        yield ev({"type": "ping"}), False
        for piece in answer.pieces:
            delta = {"type": "text_delta", "text": piece}
            yield ev({"type": "content_block_delta", "index": 0, "delta": delta}), True
        yield ev({"type": "content_block_stop", "index": 0}), False
        index = 1
    for offset, call in enumerate(answer.tool_calls, start=index):
        block = {
            "type": "tool_use",
            "id": f"toolu_{call.id.removeprefix('call_')}",
            "name": call.name,
            "input": {},
        }
        yield ev({"type": "content_block_start", "index": offset, "content_block": block}), True
        for fragment in ["", *_fragments(call.arguments_json)]:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield (
                ev({"type": "content_block_delta", "index": offset, "delta": delta}),
                bool(fragment),
            )
        yield ev({"type": "content_block_stop", "index": offset}), False
    stop = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}[answer.finish]
    usage = {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens}
    end = {"stop_reason": stop, "stop_sequence": None}
    yield ev({"type": "message_delta", "delta": end, "usage": usage}), False
    yield ev({"type": "message_stop"}), False


# --- The server ------------------------------------------------------------------------------


class OfflineLLMServer:
    """The offline model on loopback, speaking both protocols. Port 0 picks a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        pace: float = 0.03,
        *,
        model: OfflineModel | None = None,
    ) -> None:
        self.pace = pace
        self.url = ""
        self._host, self._port = host, port
        self._model = model or OfflineModel()
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/chat/completions", self._chat_completions)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    async def __aenter__(self) -> OfflineLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving; answers still streaming are cut at their next word."""
        self._closing.set()
        await self._runner.cleanup()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "openai")

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "anthropic")

    async def _models(self, request: web.Request) -> web.Response:
        if "anthropic-version" in request.headers:
            model = {"type": "model", "id": MODEL_NAME, "display_name": "relaybot offline model"}
            return web.json_response({"data": [model], "has_more": False})
        entry = {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "relaybot"}
        return web.json_response({"object": "list", "data": [entry]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": MODEL_NAME})

    async def _answer(self, request: web.Request, protocol: Wire) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _rejected(protocol, "the request body is not valid JSON")
        try:
            if isinstance(body, dict) and not body.get("stream"):
                raise RequestRejected('the offline model only streams: send "stream": true')
            answer = self._model.answer(body, protocol=protocol)
        except RequestRejected as error:
            return _rejected(protocol, str(error))
        if protocol == "openai":
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = openai_events(answer, include_usage=include_usage, created=int(time.time()))
        else:
            events = anthropic_events(answer)
        return await self._stream(request, events)

    async def _stream(self, request: web.Request, events: Iterable[_Event]) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            for data, paced in events:
                if paced and self.pace > 0:
                    await self._pause()
                if self._closing.is_set():
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(data)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-answer
        return response

    async def _pause(self) -> None:
        """One pace interval, cut short when the server closes."""
        try:
            async with asyncio.timeout(self.pace):
                await self._closing.wait()
        except TimeoutError:
            pass


def _rejected(protocol: Wire, message: str) -> web.Response:
    """A 400 in the protocol's error shape."""
    if protocol == "openai":
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=400)
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return web.json_response(body, status=400)


async def run_offline_llm(
    *, host: str, port: int, pace: float, announce: Callable[[str], None]
) -> None:
    """Serve the offline model until cancelled (``relaybot offline-llm --port N``)."""
    async with OfflineLLMServer(host=host, port=port, pace=pace) as server:
        announce(
            f"offline model listening on {server.url} "
            f"(OpenAI: {server.openai_base_url}, Anthropic: {server.anthropic_base_url})"
        )
        await asyncio.Event().wait()
