"""Trimming a conversation to a token budget: keep the system prompt, the newest messages that
fit, and every tool call with its result."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from core.messages import (
    AssistantMessage,
    FileNote,
    FileText,
    ImageContent,
    Message,
    RedactedThinking,
    SystemMessage,
    Thinking,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.store.trim import MAX_IMAGE_TOKENS, estimate_tokens, image_tokens, trim

SYSTEM = SystemMessage(text="You are a test bot.")  # 5 tokens: 4 overhead + 19 chars / 4


def user(text: str) -> UserMessage:
    return UserMessage(text=text)


def answer(text: str) -> AssistantMessage:
    return AssistantMessage(text=text)


def call(call_id: str, size: int = 0) -> AssistantMessage:
    return AssistantMessage(
        thinking=(Thinking(thinking="t" * size, signature="sig"),),
        tool_calls=(ToolCall(id=call_id, name="get_weather", arguments={"city": "Paris"}),),
    )


def result(call_id: str, size: int = 0) -> ToolResult:
    return ToolResult(call_id=call_id, name="get_weather", content="r" * size)


def cost(messages: Sequence[Message]) -> int:
    return sum(estimate_tokens(message) for message in messages)


# --- estimates --------------------------------------------------------------------------------


def test_estimate_is_a_quarter_of_the_characters_plus_overhead() -> None:
    assert estimate_tokens(user("x" * 400)) == 4 + 100
    assert estimate_tokens(user("x" * 401)) == 4 + 101
    assert estimate_tokens(user("")) == 4
    assert estimate_tokens(UserMessage(text="x" * 396, author_name="Ada!")) == 4 + 100
    assert estimate_tokens(result("c1", size=387)) == 4 + 100  # c1 + get_weather + 387 chars


def image(width: int, height: int, *, data: str | None = "A" * 400_000) -> ImageContent:
    """An image whose base64 (400,000 characters by default) must not count as text."""
    return ImageContent(
        name="shot.png", media_type="image/png", sha256="00" * 32, width=width, height=height,
        description=f"an image, {width} by {height} PNG", data=data,
    )  # fmt: skip


def test_an_image_costs_its_pixels_over_750_capped_never_its_base64() -> None:
    assert (image_tokens(640, 480), image_tokens(1, 1), image_tokens(1568, 1568)) == (
        410,
        1,
        MAX_IMAGE_TOKENS,
    )
    assert estimate_tokens(UserMessage(text="x" * 400, attachments=(image(640, 480),))) == (
        4 + 100 + 4 + 410
    )


def test_file_texts_and_notes_cost_their_text_and_a_gone_image_its_sentence() -> None:
    text = FileText(name="a.py", text="y" * 800, description="a text file, 800 characters")
    note = FileNote(name="b.exe", note="n" * 40)
    gone = image(640, 480, data=None)
    assert estimate_tokens(UserMessage(text="", attachments=(text, note))) == 4 + 204 + 14
    assert 4 + 4 + 20 <= estimate_tokens(UserMessage(text="", attachments=(gone,))) < 4 + 4 + 40


def test_a_thread_of_images_is_trimmed_to_the_newest_that_fit() -> None:
    """Ten screenshots of 1,600 tokens each do not fit 8,000 tokens: the oldest go."""
    thread: list[Message] = [SYSTEM]
    for number in range(10):
        thread += [
            UserMessage(text=f"shot {number}", attachments=(image(1568, 1000),)),
            answer("I see it."),
        ]
    kept = trim(thread, 8_000)
    assert cost(kept) <= 8_000
    assert [m.text for m in kept if isinstance(m, UserMessage)] == [
        f"shot {n}" for n in (6, 7, 8, 9)
    ]


def test_estimate_counts_tool_calls_and_thinking_but_not_reasoning() -> None:
    parsed = ToolCall(id="c1", name="get_weather", arguments={"city": "Köln"})  # 16 chars JSON
    unparsed = ToolCall(id="c2", name="get_weather", arguments=None, raw_arguments="{oops")
    message = AssistantMessage(
        text="x" * 8,
        reasoning="not sent back" * 100,
        thinking=(Thinking(thinking="y" * 40, signature="z" * 500), RedactedThinking(data="w" * 8)),
        tool_calls=(parsed, unparsed),
    )
    chars = 8 + 40 + 8 + (2 + 11 + 16) + (2 + 11 + 5)
    assert estimate_tokens(message) == 4 + 2 * 8 + -(-chars // 4)


# --- trimming, by example ---------------------------------------------------------------------


def test_a_conversation_that_fits_is_kept_whole() -> None:
    messages: list[Message] = [SYSTEM, user("hi"), answer("hello")]
    kept = trim(messages, cost(messages))
    assert kept == messages
    assert kept is not messages


def test_old_exchanges_go_first_and_the_system_prompt_stays() -> None:
    old: list[Message] = [user("a" * 400), answer("b" * 400)]
    new: list[Message] = [user("c"), answer("d")]
    assert trim([SYSTEM, *old, *new], budget=cost([SYSTEM, *new]) + 10) == [SYSTEM, *new]


def test_a_cut_never_lands_inside_a_tool_exchange() -> None:
    exchange: list[Message] = [user("weather?"), call("c1"), result("c1", 400), answer("sunny")]
    new: list[Message] = [user("thanks"), answer("welcome")]
    # Room for the tool result onwards, not for its call: the window moves on to "thanks".
    budget = cost([SYSTEM, *exchange[2:], *new])
    assert trim([SYSTEM, *exchange, *new], budget) == [SYSTEM, *new]


def test_when_nothing_fits_the_last_exchange_is_kept_anyway() -> None:
    last: list[Message] = [
        user("weather?"),
        call("c1", 2000),
        result("c1", 2000),
    ]  # mid-turn, in the tool loop
    kept = trim([SYSTEM, user("old"), answer("old"), *last], budget=10)
    assert kept == [SYSTEM, *last]
    assert cost(kept) > 10  # over budget: the caller decides


def test_system_messages_anywhere_are_kept_in_order() -> None:
    later = SystemMessage(text="The user's time zone changed.")
    messages: list[Message] = [
        SYSTEM,
        user("a" * 400),
        later,
        answer("b" * 400),
        user("c"),
        answer("d"),
    ]
    assert trim(messages, budget=cost([SYSTEM, later, user("c"), answer("d")])) == [
        SYSTEM,
        later,
        user("c"),
        answer("d"),
    ]


def test_call_ids_that_repeat_across_turns_pair_with_the_latest_call() -> None:
    turn1: list[Message] = [user("Paris?"), call("call_0"), result("call_0", 400), answer("hi")]
    turn2: list[Message] = [user("Rome?"), call("call_0"), result("call_0"), answer("hot")]
    assert trim([*turn1, *turn2], budget=cost(turn2)) == turn2


def test_without_a_user_message_the_cut_lands_on_an_assistant_message() -> None:
    messages: list[Message] = [answer("x" * 400), call("c1"), result("c1"), answer("y")]
    assert trim(messages, budget=cost(messages[1:])) == messages[1:]


def test_an_empty_conversation_stays_empty() -> None:
    assert trim([], budget=0) == []


# --- trimming, by property --------------------------------------------------------------------

# Only a text's length matters to trimming: long texts are cheap runs of one letter.
texts = st.text(max_size=20) | st.integers(20, 900).map(lambda n: "x" * n)
arguments = st.none() | st.dictionaries(st.sampled_from(["city", "unit"]), texts)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """System prompt, then turns: a user message, 0-3 tool rounds (an assistant message with
    1-3 calls, thinking perhaps, then their results in any order), a final answer — except
    that the last turn may stop inside its tool loop, as the engine's history does mid-turn.
    Call ids repeat from turn to turn, as some gateways make them."""
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(SystemMessage(text=draw(texts)))
    turns = draw(st.integers(0, 6))
    for turn in range(turns):
        messages.append(UserMessage(text=draw(texts)))
        for round_ in range(draw(st.integers(0, 3))):
            calls = tuple(
                ToolCall(id=f"call_{round_}_{n}", name="get_weather", arguments=draw(arguments))
                for n in range(draw(st.integers(1, 3)))
            )
            thinking = [Thinking(thinking=text, signature="sig") for text in draw(st.lists(texts))]
            messages.append(
                AssistantMessage(text=draw(texts), thinking=tuple(thinking), tool_calls=calls)
            )
            results = [ToolResult(call_id=c.id, name=c.name, content=draw(texts)) for c in calls]
            messages.extend(draw(st.permutations(results)))
        if turn < turns - 1 or draw(st.booleans()):
            messages.append(AssistantMessage(text=draw(texts)))
    return messages


def systems(messages: Sequence[Message]) -> list[Message]:
    return [message for message in messages if isinstance(message, SystemMessage)]


def tool_pairs_intact(window: Sequence[Message]) -> bool:
    """Every result answers a call made earlier in the window; every call there is answered."""
    open_calls: set[str] = set()
    for message in window:
        if isinstance(message, AssistantMessage):
            open_calls |= {c.id for c in message.tool_calls}
        elif isinstance(message, ToolResult):
            if message.call_id not in open_calls:
                return False
            open_calls.remove(message.call_id)
    return not open_calls


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(0, 5000))
def test_trim_keeps_a_whole_suffix_that_fits(messages: list[Message], budget: int) -> None:
    kept = trim(messages, budget)

    # The system messages, then a suffix of the conversation.
    starts = [i for i in range(len(messages) + 1) if kept == systems(messages[:i]) + messages[i:]]
    assert starts, "not a suffix plus the system messages"
    start = starts[-1]
    window = messages[start:]

    assert tool_pairs_intact(window)
    assert not window or isinstance(window[0], UserMessage | SystemMessage)

    # Within budget, unless only the minimal tail (from the last user message) is kept.
    users = [i for i, message in enumerate(messages) if isinstance(message, UserMessage)]
    assert cost(kept) <= budget or not users or start == users[-1]
    # And the longest such window: starting at any earlier user message would not fit.
    for i in users:
        if i < start:
            assert cost(systems(messages[:i]) + messages[i:]) > budget
