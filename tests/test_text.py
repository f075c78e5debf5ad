"""Splitting to a limit, closing interim Markdown, and defusing mass mentions (adapters.text)."""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.text import (
    close_markdown,
    fits,
    join_pieces,
    neutralize_mentions,
    restore_mentions,
    split_message,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one cluster, 7 code points
FLAG = "\U0001f1eb\U0001f1f7"  # France: two regional indicators
THUMB = "\U0001f44d\U0001f3fd"  # thumbs up, medium skin tone
E_ACUTE = "e\u0301"  # e and a combining acute accent


def split(text: str, limit: int) -> list[str]:
    """``split_message``, checked to be within the limit and to join back to ``text``."""
    pieces = split_message(text, limit)
    assert all(fits(piece, limit) for piece in pieces)
    assert join_pieces(pieces) == text
    return pieces


# --- boundaries, best first -------------------------------------------------------------------


def test_a_text_within_the_limit_is_one_piece() -> None:
    assert split("short", 40) == ["short"]
    assert split("", 40) == [""]


def test_a_paragraph_break_beats_a_later_line_break() -> None:
    text = "The first paragraph is here.\n\nThe second one, a line\nthen another line."
    assert split(text, 48) == [
        "The first paragraph is here.\n\n",
        "The second one, a line\nthen another line.",
    ]


def test_a_line_break_beats_a_later_sentence_end() -> None:
    text = "A line of text that runs on\nand the next line. And more text."
    assert split(text, 40) == ["A line of text that runs on\n", "and the next line. And more text."]


def test_a_sentence_end_beats_a_later_space() -> None:
    text = "One sentence here. Another one follows! And a third one? Yes."
    assert split(text, 40) == ["One sentence here. Another one follows! ", "And a third one? Yes."]


def test_cjk_sentence_ends_need_no_space() -> None:
    # The full-width marks are the point here; ruff's RUF001 takes them for look-alikes.
    text = "今天天气很好。我们去公园散步吧！你觉得怎么样？好的，我们走吧。路上小心。"  # noqa: RUF001
    first = "今天天气很好。我们去公园散步吧！你觉得怎么样？好的，我们走吧。"  # noqa: RUF001
    assert split(text, 32) == [first, "路上小心。"]
    question = "你觉得怎么样？"  # noqa: RUF001
    assert split(question * 6, 32) == [question * 4, question * 2]


def test_a_space_when_there_is_no_sentence_end() -> None:
    text = "many small words without any sentence end at all in this line"
    assert split(text, 40) == ["many small words without any sentence ", "end at all in this line"]


def test_a_hard_cut_when_there_is_no_space() -> None:
    assert split("x" * 70, 32) == ["x" * 32, "x" * 32, "x" * 6]


def test_a_break_in_the_first_half_loses_to_a_lesser_one_in_the_second() -> None:
    """A message is not left nearly empty: "Hi.\\n\\n" would be 5 of 44 characters."""
    text = "Hi.\n\nA long line that keeps going past half\nand the rest of it here."
    assert split(text, 44) == [
        "Hi.\n\nA long line that keeps going past half\n",
        "and the rest of it here.",
    ]


def test_but_any_break_beats_a_space() -> None:
    text = "Hi.\n\nThen a long line that keeps going and a second line to end."
    assert split(text, 40) == [
        "Hi.\n\n",
        "Then a long line that keeps going and a ",
        "second line to end.",
    ]


# --- grapheme clusters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "before"),
    [(FAMILY, 28), (FLAG, 31), (THUMB, 31), (E_ACUTE, 31)],
    ids=["zwj-family", "flag", "skin-tone", "combining-mark"],
)
def test_a_grapheme_cluster_across_the_limit_moves_whole(cluster: str, before: int) -> None:
    text = "a" * before + cluster + "b" * 10
    assert split(text, 32) == ["a" * before, cluster + "b" * 10]


def test_a_cluster_at_the_end_of_the_room_stays() -> None:
    assert split("a" * 30 + FLAG + "b" * 10, 32) == ["a" * 30 + FLAG, "b" * 10]


def test_a_cluster_longer_than_the_room_is_cut_as_a_last_resort() -> None:
    zalgo = "a" + "\u0301" * 40
    pieces = split(zalgo, 32)
    assert [len(piece) for piece in pieces] == [32, 9]


# --- code fences ------------------------------------------------------------------------------


def test_a_cut_inside_a_fence_closes_it_and_reopens_it_with_its_language() -> None:
    text = "```python\nx = 1\ny = 2\nz = 3\nprint(x + y + z)\n```"
    assert split(text, 40) == [
        "```python\nx = 1\ny = 2\nz = 3\n\n```",
        "```python\nprint(x + y + z)\n```",
    ]


def test_a_cut_just_before_a_fence_opens_rather_than_inside_it() -> None:
    text = "Some words to begin with.\n```python\nx = 1\ny = 2\n```\nDone."
    assert split(text, 40) == ["Some words to begin with.\n", "```python\nx = 1\ny = 2\n```\nDone."]


def test_a_cut_just_after_a_fence_closes() -> None:
    text = "Some words, then a block:\n```sh\nls\n```\nafter the block text"
    assert split(text, 40) == [
        "Some words, then a block:\n```sh\nls\n```\n",
        "after the block text",
    ]


def test_a_fence_opening_early_is_cut_inside_rather_than_leave_a_message_nearly_empty() -> None:
    text = "Code:\n```python\nx = 1\ny = 2\nz = 3\nprint(x + y + z)\n```\nDone."
    assert split(text, 40) == [
        "Code:\n```python\nx = 1\ny = 2\nz = 3\n\n```",
        "```python\nprint(x + y + z)\n```\nDone.",
    ]


def test_two_fences() -> None:
    text = "```py\na = 1\nb = 2\n```\n\n```sh\necho one\necho two\n```"
    assert split(text, 40) == ["```py\na = 1\nb = 2\n```\n\n", "```sh\necho one\necho two\n```"]
    text = "```py\na = 1\n```\n\n```sh\necho one\necho two\necho three\n```"
    assert split(text, 36) == [
        "```py\na = 1\n```\n\n```sh\necho one\n\n```",
        "```sh\necho two\necho three\n```",
    ]


def test_tilde_fences() -> None:
    text = "~~~js\nlet a = 1;\nlet b = 2;\nlet c = 3;\n~~~\nok"
    assert split(text, 32) == ["~~~js\nlet a = 1;\nlet b = 2;\n\n~~~", "~~~js\nlet c = 3;\n~~~\nok"]


def test_a_longer_fence_closes_and_reopens_with_its_own_run() -> None:
    text = "````md\n```\ninner\n```\nmore lines\nof text\n````"
    assert split(text, 32) == [
        "````md\n```\ninner\n```\n\n````",
        "````md\nmore lines\nof text\n````",
    ]


def test_an_overflow_at_2000_characters_inside_a_code_fence() -> None:
    lines = [f"print({i:03})\n" for i in range(200)]  # 11 characters each
    text = "Here you go:\n\n```python\n" + "".join(lines) + "```\nThat prints 200 lines."
    assert split(text, 2000) == [
        "Here you go:\n\n```python\n" + "".join(lines[:179]) + "\n```",
        "```python\n" + "".join(lines[179:]) + "```\nThat prints 200 lines.",
    ]


def test_the_pieces_before_the_last_stay_while_the_text_grows() -> None:
    lines = "".join(f"print({i:03})\n" for i in range(200))
    text = "```python\n" + lines + "```\n" + "Done. " * 300
    final = split(text, 2000)
    for end in range(2001, len(text), 97):
        *frozen, _ = split(text[:end], 2000)
        assert final[: len(frozen)] == frozen


def test_a_limit_too_small_for_fence_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("x" * 100, 20)


# --- interim Markdown -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("```python\nprint(1", "```python\nprint(1\n```"),
        ("```python\nprint(1)\n", "```python\nprint(1)\n```"),
        ("~~~~\ncode", "~~~~\ncode\n~~~~"),
        ("```py\nx\n``", "```py\nx\n```"),  # the closing line is arriving
        ("Intro:\n```", "Intro:\n```\n```"),  # the opening line is
        ("Use `foo", "Use `foo`"),
        ("``double `tick", "``double `tick``"),
        ("This is **bold", "This is **bold**"),
        ("This is __bold", "This is __bold__"),
        ("**bold text  \n", "**bold text**  \n"),
        ("**bold `code", "**bold `code`**"),
        ("x **a __b", "x **a __b__**"),
        ("***both", "***both***"),
    ],
)
def test_close_markdown_closes_what_is_open(partial: str, shown: str) -> None:
    assert close_markdown(partial) == shown


@pytest.mark.parametrize(
    "balanced",
    [
        "",
        "plain text",
        "**bold** and `code` and __init__",
        "```python\nprint(1)\n```\nafter",
        "a snake__case name",
        "a dangling **",  # nothing to make bold yet
        "a `b\n\nnew paragraph",  # a span never crosses a blank line
    ],
)
def test_close_markdown_leaves_balanced_text_alone(balanced: str) -> None:
    assert close_markdown(balanced) == balanced


def test_close_markdown_never_touches_markers_inside_code() -> None:
    assert close_markdown("`a ** b") == "`a ** b`"
    assert close_markdown("```\n**not bold `x\n") == "```\n**not bold `x\n```"
    assert close_markdown("`**` and `__`") == "`**` and `__`"


# --- mass mentions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "neutral"),
    [
        ("hi @everyone", "hi @\u200beveryone"),
        ("@here now", "@\u200bhere now"),
        ("@channel", "@\u200bchannel"),
        ("@Everyone", "@\u200bEveryone"),
        ("<!everyone>", "@\u2060everyone"),
        ("<!here> look", "@\u2060here look"),
        ("<!channel>", "@\u2060channel"),
        ("<!here|here>", "<\u2060!here|here>"),
        ("<!subteam^S123|@team>", "<\u2060!subteam^S123|@team>"),
        ("<!channel|@channel>", "<\u2060!channel|@\u200bchannel>"),
    ],
)
def test_mass_mentions_are_neutralized_and_restored(text: str, neutral: str) -> None:
    assert neutralize_mentions(text) == neutral
    assert neutralize_mentions(neutral) == neutral
    assert restore_mentions(neutral) == text


def test_user_and_role_mentions_are_left_alone() -> None:
    text = "<@123> <@!456> <@&789> <@U0123> <#C0123> mail@example.com <!date^1|x>"
    assert neutralize_mentions(text) == text


# --- properties -------------------------------------------------------------------------------

TOKENS = [
    "word", "words ", " ", "\t", "\n", "\n\n", "\r\n", ". ", "! ", "? ", "e.g.", "`", "``", "**",
    "```python\n", "```\n", "```", "~~~\n", "~~~js\n", "````\n", "   ```\n", "``` x\n", "``````\n",
    "```````\n", "`" * 45, "```" + "y" * 30 + "\n", "x" * 60, "你好。", "世界\uff01", "吗\uff1f",
    "」", FAMILY, FLAG + FLAG, THUMB, E_ACUTE, "@everyone", "@here", "<!here>", "<!channel|ch>",
    "<!subteam^S1>",
]  # fmt: skip
noise = st.text(
    st.characters(exclude_characters="\u200b\u2060"), max_size=6
)  # see restore_mentions
texts = st.lists(st.sampled_from(TOKENS) | noise, max_size=80).map("".join)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(texts, st.integers(min_value=40, max_value=300))
def test_pieces_fit_and_join_back(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    assert all(len(piece) <= limit for piece in pieces)
    assert join_pieces(pieces) == text


@fast
@given(texts, st.integers(min_value=40, max_value=120))
def test_cuts_are_grapheme_boundaries(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    boundaries = {0, *(m.end() for m in regex.finditer(r"\X", text))}
    cuts = [len(join_pieces([*pieces[:i], ""])) for i in range(1, len(pieces))]
    assert set(cuts) <= boundaries


@fast
@given(texts, st.integers(min_value=40, max_value=120), st.floats(0, 1))
def test_the_pieces_before_the_last_do_not_change_as_the_text_grows(
    text: str, limit: int, where: float
) -> None:
    *frozen, _ = split_message(text[: int(len(text) * where)], limit)
    assert split_message(text, limit)[: len(frozen)] == frozen


@fast
@given(texts)
def test_restore_undoes_neutralize(text: str) -> None:
    assert restore_mentions(neutralize_mentions(text)) == text
