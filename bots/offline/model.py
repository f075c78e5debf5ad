"""The offline model: a request body in, an :class:`Answer` out — pure and deterministic.

The same conversation always gets the same answer. The model introduces itself in its first
answer, says what was attached to the last message (images by size and format, files by kind and
first words: :mod:`~bots.offline.attached`), echoes and sums up what it was told, counts turns,
recalls earlier messages and a name, counts to N, asks ``get_weather`` for "the weather in
<city>" when that tool is offered, and puts tool results into words.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from itertools import takewhile
from typing import Any

from bots.offline.attached import attachment_sentences
from bots.offline.bodies import read_conversation
from bots.offline.conversation import (
    Answer,
    Conversation,
    Finish,
    PlannedCall,
    Said,
    Wire,
    estimate_tokens,
    quote,
    words,
)
from bots.offline.weather import WEATHER_TOOL, weather_city, word_result

__all__ = ["INTRO", "MODEL_NAME", "OfflineModel"]

MODEL_NAME = "relaybot/offline"
INTRO = "I'm relaybot's offline model — no network or API key needed, so my answers are simple."

Reply = tuple[list[str], tuple[PlannedCall, ...]]  # sentences, then the tool calls to make


class OfflineModel:
    """Answers a request body deterministically from the conversation in it."""

    name = MODEL_NAME

    def answer(self, body: Any, *, protocol: Wire) -> Answer:
        """The answer to one request body; :class:`RequestRejected` when it is not one."""
        return _plan(read_conversation(body, protocol=protocol))


def _plan(conversation: Conversation) -> Answer:
    said = conversation.said
    digest = hashlib.sha256(repr(said).encode()).hexdigest()[:24]
    sentences = [] if any(s.role == "assistant" for s in said) else [INTRO]
    results = list(takewhile(lambda s: s.role == "tool", reversed(said)))[::-1]
    calls: tuple[PlannedCall, ...] = ()
    if results:
        made = {call.id: call for s in said for call in s.calls}
        sentences += [word_result(result, made.get(result.call_id)) for result in results]
    else:
        reply, calls = _reply(said, conversation.tools, digest)
        sentences += reply
    pieces = tuple(words(" ".join(sentences)))
    finish: Finish = "tool_calls" if calls else "stop"
    budget = conversation.max_tokens
    if budget is not None and len(pieces) > budget:
        pieces, calls, finish = pieces[:budget], (), "length"
    told = conversation.system + " ".join(s.text for s in said)
    return Answer(
        id=digest,
        pieces=pieces,
        tool_calls=calls,
        finish=finish,
        input_tokens=max(1, estimate_tokens(told) + 3 * len(said)),
    )


def _reply(said: tuple[Said, ...], tools: frozenset[str], digest: str) -> Reply:
    """The sentences (and tool calls) that answer the last user message: what it attached,
    then the answer to what it says."""
    users = [s for s in said if s.role == "user"]
    if not users or not users[-1].attachments:
        return _answer(said, tools, digest)
    attached = attachment_sentences(users[-1].attachments)
    if not users[-1].text.strip():
        return attached, ()
    sentences, calls = _answer(said, tools, digest)
    return attached + sentences, calls


def _answer(said: tuple[Said, ...], tools: frozenset[str], digest: str) -> Reply:
    """The sentences (and tool calls) that answer what the last user message says. Messages
    that only attached files are not recalled as things said."""
    said_by_user = [s.text for s in said if s.role == "user" and (s.text or not s.attachments)]
    if not said_by_user:
        return ["You haven't said anything yet — send me a message and I'll echo it back."], ()
    last, earlier = said_by_user[-1], said_by_user[:-1]
    name = _name_in(said_by_user)
    if (city := weather_city(last)) is not None:
        return _ask_weather(city, last, tools, digest)
    if match := _COUNT.search(last):
        return [_count(match["n"])], ()
    if _ASK_FIRST.search(last):
        if not earlier:
            return [quote("This is your first message:", last)], ()
        return [quote("The first thing you said was", earlier[0])], ()
    if _ASK_BEFORE.search(last):
        if not earlier:
            return ["Nothing yet — this is your first message."], ()
        return [quote("Just before this, you said", earlier[-1])], ()
    if _ASK_NAME.search(last):
        known = _name_in(earlier)
        return [f"Your name is {known}." if known else "You haven't told me your name yet."], ()
    if (said_name := _name_in([last])) is not None:
        return [f"Nice to meet you, {said_name}! I'll remember that in this conversation."], ()
    if _GREETING.match(last):
        return [f"Hello, {name}!" if name else "Hello!", _TRY], ()
    if _FAREWELL.search(last):
        bye = f"Goodbye, {name}!" if name else "Goodbye!"
        return [bye, f"We talked for {len(said_by_user)} turns."], ()
    return _summary(last, earlier, name, said_by_user), ()


def _ask_weather(city: str, asked: str, tools: frozenset[str], digest: str) -> Reply:
    """A ``get_weather`` call for ``city``, or why there can be none."""
    if WEATHER_TOOL not in tools:
        return [
            f"You asked about the weather in {city}, but I can't check the weather without "
            f"my {WEATHER_TOOL} tool, and it isn't available to me right now."
        ], ()
    arguments: dict[str, Any] = {"city": city}
    if re.search(r"fahrenheit", asked, re.IGNORECASE):
        arguments["unit"] = "fahrenheit"
    call = PlannedCall(id=f"call_{digest}", name=WEATHER_TOOL, arguments=arguments)
    return [f"Let me check the weather in {city}."], (call,)


_TRY = (
    "Try asking me about the weather in a city, tell me your name, ask me to count to ten, "
    "or ask what you said first."
)


def _summary(last: str, earlier: list[str], name: str | None, everything: list[str]) -> list[str]:
    """Echo the last message, count the turns, recall what came before."""
    turn = len(everything)
    out = [quote("You said", last)]
    if last.rstrip().endswith("?") and not _ASK_SUMMARY.search(last):
        out.append("I can't really answer questions — I only repeat and sum up what you tell me.")
    if turn == 1:
        out.append("This is the first turn of our conversation.")
        return out
    out.append(f"This is turn {turn} of our conversation.")
    out.append(quote("Earlier you said", earlier[-1]))
    if len(earlier) > 1:
        out.append(quote("You started with", earlier[0]))
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
