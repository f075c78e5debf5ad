"""Text for chat messages: split to a platform's limit, close interim Markdown, defuse mass pings.

Pure functions, no I/O. Lengths are ``len()``: code points, as Discord counts them.

``split_message(text, limit)`` cuts ``text`` into pieces of at most ``limit`` characters:

- A cut is made at the best boundary that fits, preferring, in order: a paragraph break (a
  blank line) or the edge of a code fence (just before its opening line, just after its
  closing line); a line break; a sentence end (``. ``, ``! ``, ``? ``, or a CJK full stop,
  exclamation or question mark, which needs no space); a space; anywhere. Of one kind the last
  wins. So that no message is left nearly empty, the first three kinds count first in the
  second half of the room only, then anywhere, and only then spaces. Paragraph breaks and
  sentence ends count only outside code fences.
- A cut is never made inside a grapheme cluster (an emoji ZWJ sequence, a flag, a skin tone, a
  letter and its combining marks), unless one cluster alone is longer than the room.
- Boundary whitespace stays at the end of the piece before the cut (platforms trim it), so the
  pieces hold every character of ``text``: only fence markers are added.
- A fence opens at a line of 3 or more backticks or tildes (any indentation, an info string
  whose first word is the language) and closes at a line of at least as many of the same.
  A cut inside one closes it at the end of the piece with ``"\\n" + run`` (the opening's
  backticks or tildes) and reopens it at the start of the next with ``run + language + "\\n"``;
  the markers count toward the limit. Fences of more than 6 are cut as plain text (their
  markers would crowd small limits); a language over 16 characters is not repeated.
- Whether a cut is inside a fence is read from the whole lines before it, so ``join_pieces``
  tells the markers from the text: ``join_pieces(split_message(t, n)) == t`` for every ``t``.
- Each cut depends only on the text up to its piece's end, so while a streamed text grows the
  pieces before the last one stay the same (a code block's length is not known in advance).

``close_markdown`` makes a partial reply render cleanly for display; ``neutralize_mentions``
makes ``@everyone``, ``@here``, ``@channel`` and Slack's ``<!here>``-style commands never ping.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from itertools import accumulate, takewhile
from typing import NamedTuple

import regex

__all__ = [
    "MIN_LIMIT",
    "close_markdown",
    "fits",
    "join_pieces",
    "neutralize_mentions",
    "restore_mentions",
    "split_message",
]

MIN_LIMIT = 32
"""The smallest ``limit`` ``split_message`` accepts: room for fence markers and some text."""
_MAX_RUN = 6  # the longest fence run cut with markers
_MAX_LANG = 16  # the longest language repeated when a fence is reopened
_UNCLOSED = sys.maxsize

_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)
_TAIL_RUN = re.compile(r"\n(`{3,}|~{3,})\Z")  # a piece's last line is a bare fence run
_RUN = re.compile(r"`{3,}|~{3,}")
_PARAGRAPH = re.compile(r"\n(?:[ \t\r]*\n)+")
_LINE = re.compile(r"\n")
_CLOSING = "\"')\\]\u2019\u201d\u00bb\u300d\u300f\uff09"  # quotes and brackets after an end
_SENTENCE = re.compile(f"[.!?][{_CLOSING}]*[ \t]+|[\u3002\uff01\uff1f][{_CLOSING}]*[ \t]*")
_WORD = re.compile(r"[ \t]+")
_GRAPHEME = regex.compile(r"\X")
_EXTEND = regex.compile(r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}]")  # joins what precedes


# --- code fences -----------------------------------------------------------------------------


class _Fence(NamedTuple):
    start: int  # the opening line's first index
    body: int  # the first index after the opening line
    stop: int  # the first index after the closing line; _UNCLOSED while open
    run: str  # the opening's backticks or tildes
    lang: str  # the first word of the info string, "" if none


def _scan(text: str, pos: int, endpos: int, fence: _Fence | None = None) -> Iterator[_Fence]:
    """The fences of ``text[pos:endpos]`` (``pos`` a line start, ``fence`` open there), in
    order, the last one unclosed if it is still open at ``endpos``."""
    for line in _FENCE_LINE.finditer(text, pos, endpos):
        run, info = line.group(1, 2)
        if fence is None:
            if run[0] == "~" or "`" not in info:  # a backtick fence's info holds no backtick
                lang = info.split(maxsplit=1)[0] if info.strip() else ""
                fence = _Fence(line.start(), line.end() + 1, _UNCLOSED, run, lang)
        elif run[0] == fence.run[0] and len(run) >= len(fence.run) and not info.strip():
            yield fence._replace(stop=line.end() + 1)
            fence = None
    if fence is not None:
        yield fence


def _open_after(text: str, pos: int, fence: _Fence | None) -> tuple[_Fence | None, int]:
    """The fence open after the complete lines of ``text``, scanning from line start ``pos``
    with ``fence`` open there; and the line start scanned up to."""
    endpos = text.rfind("\n") + 1
    fence = _last(_scan(text, pos, endpos, fence))
    return (fence if fence is not None and fence.stop == _UNCLOSED else None), max(pos, endpos)


def _last(fences: Iterator[_Fence]) -> _Fence | None:
    last = deque(fences, maxlen=1)
    return last[0] if last else None


def _tracked(fence: _Fence) -> bool:
    """Whether a cut inside ``fence`` closes and reopens it (else it is cut as plain text)."""
    return len(fence.run) <= _MAX_RUN


def _reopen(fence: _Fence) -> str:
    return fence.run + (fence.lang if len(fence.lang) <= _MAX_LANG else "") + "\n"


# --- splitting -------------------------------------------------------------------------------


def split_message(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at the best boundaries; a fence
    cut open is closed and reopened (see the module's docstring)."""
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}, got {limit}")
    if len(text) <= limit:
        return [text]
    splitter = _Splitter(text)
    pieces: list[str] = []
    start = 0
    while True:
        fence = splitter.fence_at(start)
        head = _reopen(fence) if fence else ""
        room = limit - len(head)
        if len(text) - start <= room:
            pieces.append(head + text[start:])
            return pieces
        cut, close = splitter.cut(start, room)
        pieces.append(head + text[start:cut] + close)
        start = cut


_PASSES = ((0, True), (1, True), (2, True), (0, False), (1, False), (2, False), (3, None))
"""(kind, whether in the room's second half): blocks, lines, sentences, then spaces anywhere."""


class _Splitter:
    """The cuts of one text; ``cut`` finds the next one."""

    def __init__(self, text: str) -> None:
        self.text = text
        fences = _scan(text, 0, text.rfind("\n") + 1)  # complete lines only
        self.fences = [fence for fence in fences if _tracked(fence)]
        self.bodies = [fence.body for fence in self.fences]
        self.span = (0, 0)  # the window being cut
        self.clusters: set[int] | None = None  # its grapheme boundaries, once needed

    def fence_at(self, p: int) -> _Fence | None:
        """The fence a cut at ``p`` is inside of: open after the lines before ``p``'s line."""
        i = bisect_right(self.bodies, p) - 1
        return self.fences[i] if i >= 0 and p < self.fences[i].stop else None

    def cut(self, start: int, room: int) -> tuple[int, str]:
        """The best cut in ``(start, start + room]`` and the fence marker it needs."""
        end, half = start + room, start + room // 2
        self.span, self.clusters = (start, end), None
        found: dict[int, list[int]] = {}
        for kind, full in _PASSES:
            if kind not in found:
                found[kind] = self.boundaries(kind, start, end)
            for p in reversed(found[kind]):
                if full is None or (p >= half) is full:
                    close = self.marker(start, p, room)
                    if close is not None:
                        return p, close
        for whole in (True, False):  # the last resort; if need be, inside a long cluster
            for p in range(end, start, -1):
                close = self.marker(start, p, room, whole=whole)
                if close is not None:
                    return p, close
        raise AssertionError("a cut after one character always fits")  # pragma: no cover

    def window(self, start: int, end: int) -> list[_Fence]:
        """The fences that meet ``(start, end]``."""
        first = max(0, bisect_right(self.bodies, start) - 1)
        return list(takewhile(lambda fence: fence.start <= end, self.fences[first:]))

    def boundaries(self, kind: int, start: int, end: int) -> list[int]:
        """The boundaries of one kind in ``(start, end]``, ascending."""
        text = self.text
        pattern = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)[kind]
        found = [m.end() for m in pattern.finditer(text, start, end)]
        if kind == 1:  # not just after an opening: that leaves an empty code block
            bodies = {fence.body for fence in self.window(start, end)}
            return [p for p in found if p not in bodies]
        if kind == 0:
            window = self.window(start, end)
            edges = {f.start for f in window if start < f.start and f.body <= end + 1}
            edges.update(f.stop for f in window if start < f.stop <= end)
            return sorted(edges.union(p for p in found if not self.fence_at(p)))
        return found if kind == 3 else [p for p in found if not self.fence_at(p)]

    def boundary(self, p: int) -> bool:
        """Whether ``p`` is a grapheme cluster boundary (in the window being cut)."""
        before, after = self.text[p - 1], self.text[p]
        if before == "\n":
            return True
        if before.isascii() or before in "\u3002\uff01\uff1f":  # never joins what follows
            return not (before == "\r" and after == "\n") and not _EXTEND.match(after)
        if self.clusters is None:
            start, end = self.span
            clusters = _GRAPHEME.findall(self.text, start, end + 1)
            self.clusters = set(accumulate(map(len, clusters), initial=start))
        return p in self.clusters

    def marker(self, start: int, p: int, room: int, *, whole: bool = True) -> str | None:
        """The marker a cut at ``p`` needs ("" outside a fence), or ``None`` if it may not be
        made there: inside a grapheme cluster (when ``whole``), past the room with its marker,
        or after a bare fence run that ``join_pieces`` would take for a marker."""
        text = self.text
        if whole and not self.boundary(p):
            return None
        fence = self.fence_at(p)
        if fence is not None:
            close = "\n" + fence.run
            return close if p - start + len(close) <= room else None
        if text[p - 1] in "`~":
            line = text.rfind("\n", start, p)
            if line >= 0 and _RUN.fullmatch(text, line + 1, p):
                return None
        return ""


def join_pieces(pieces: list[str]) -> str:
    """The text ``split_message`` cut into ``pieces``: its fence markers removed."""
    text, pos, fence = "", 0, None
    for i, piece in enumerate(pieces):
        fence, pos = _open_after(text, pos, fence)
        if fence is not None and _tracked(fence) and piece.startswith(head := _reopen(fence)):
            piece = piece[len(head) :]
        if i < len(pieces) - 1 and (tail := _TAIL_RUN.search(piece)):
            body = piece[: tail.start()]
            inside, _ = _open_after(text + body, pos, fence)
            if inside is not None and _tracked(inside) and inside.run == tail[1]:
                piece = body
        text += piece
    return text


def fits(text: str, limit: int) -> bool:
    """Whether ``text`` is one message under ``limit``."""
    return len(text) <= limit


# --- interim Markdown ------------------------------------------------------------------------

_LAST_BLANK_LINE = re.compile(r"(?s:.*)\n[ \t\r]*\n")
_INLINE = re.compile(r"[`*_](?:(?<=`)`*|(?<=\*)\*+|(?<=_)_+)")
"""A backtick run, or a run of two or more ``*`` or ``_``. Written to start with a character
set, which the regex engine skips to, instead of trying three branches at every character
(four times faster on text with no Markdown at all)."""


def close_markdown(text: str) -> str:
    """``text`` with an unterminated code fence, inline code span or bold closed, so a partial
    reply renders cleanly; for display only. Balanced text comes back unchanged.

    Only the last paragraph is looked at for inline code and bold (neither spans a blank
    line); a delimiter with nothing after it yet is left alone; nothing inside code changes.
    """
    fence = _last(_scan(text, 0, len(text)))
    if fence is not None and fence.stop == _UNCLOSED:
        last = text[text.rfind("\n") + 1 :].strip()
        if last and fence.body <= len(text) and not last.strip(fence.run[0]):  # closing line
            return text + fence.run[len(last) :]
        return text + ("" if text.endswith("\n") else "\n") + fence.run
    pos = fence.stop if fence is not None else 0
    if blank := _LAST_BLANK_LINE.match(text, pos):
        pos = blank.end()
    closers = _inline_closers(text, pos)
    if not closers:
        return text
    body = text.rstrip()
    return body + closers + text[len(body) :]


def _inline_closers(text: str, pos: int) -> str:
    """What closes the code span and bold left open in ``text[pos:]``, innermost first."""
    code: re.Match[str] | None = None
    bold: dict[str, re.Match[str]] = {}  # "*" or "_" -> its open delimiter
    for m in _INLINE.finditer(text, pos):
        token = m[0]
        if code is not None:
            if token == code[0]:
                code = None
        elif token[0] == "`":
            code = m
        elif token[0] == "_" and _intraword(text, m.start(), m.end()):
            continue
        elif len(token) // 2 % 2 and bold.pop(token[0], None) is None:
            bold[token[0]] = m
    opened = list(bold.values())
    if code is not None:
        opened.append(code)
    opened.sort(key=lambda m: m.start(), reverse=True)
    return "".join(_closer(m[0]) for m in opened if text[m.end() :].strip())


def _closer(opener: str) -> str:
    """Backticks close with their own run, ``***`` (bold italic) with itself, bold with two."""
    return opener if opener[0] == "`" or len(opener) == 3 else opener[0] * 2


def _intraword(text: str, start: int, end: int) -> bool:
    return start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()


# --- mass mentions ---------------------------------------------------------------------------

_ZWSP = "\u200b"  # after the "@" of a plain @everyone / @here / @channel
_WJ = "\u2060"  # marks what was one of Slack's <!...> commands
_KEYWORDS = "everyone|here|channel"
_MASS = re.compile(
    rf"<!({_KEYWORDS})>|<!(?=(?:{_KEYWORDS})\||subteam\^)|@(?=(?:{_KEYWORDS}))", re.IGNORECASE
)
_NEUTRALIZED = re.compile(
    rf"@{_WJ}({_KEYWORDS})|<{_WJ}!|@{_ZWSP}(?=(?:{_KEYWORDS}))", re.IGNORECASE
)


def neutralize_mentions(text: str) -> str:
    """``text`` with its mass mentions made plain text that never pings.

    ``@everyone``, ``@here`` and ``@channel`` (any case) get a zero-width space after the
    ``@``; Slack's ``<!everyone>``, ``<!here>`` and ``<!channel>`` become ``@everyone`` etc.
    with a word joiner after the ``@``; the labelled forms (``<!here|here>``) and user groups
    (``<!subteam^ID>``) get a word joiner after the ``<``. User and role mentions are left
    alone: Discord's ``allowed_mentions`` covers those. Applying it twice changes nothing.
    """
    return _MASS.sub(_neutral, text)


def _neutral(m: re.Match[str]) -> str:
    if m[1]:
        return f"@{_WJ}{m[1]}"
    return f"<{_WJ}!" if m[0][0] == "<" else f"@{_ZWSP}"


def restore_mentions(text: str) -> str:
    """The inverse of ``neutralize_mentions``: ``restore_mentions(neutralize_mentions(t)) == t``
    for every ``t`` that does not itself hold a neutralized form (``@`` and a zero-width space
    or word joiner before a keyword, or ``<`` and a word joiner before ``!``)."""
    return _NEUTRALIZED.sub(_restored, text)


def _restored(m: re.Match[str]) -> str:
    if m[1]:
        return f"<!{m[1]}>"
    return "<!" if m[0][0] == "<" else "@"
