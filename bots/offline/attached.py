"""What a user attached, as the offline model reads it from a request body, and in plain words.

relaybot sends a message's attachments before its text (``core.protocols.user_parts``): images
as image parts, a file's text as a text part that starts with its header line
(``File "report.pdf": a PDF, 3 pages, 12,000 characters``) and holds the text in a
``<user-file>`` block, and anything else as a bracketed note. :func:`split_parts` tells these
apart from what the user wrote; :func:`attachment_sentences` says what was sent ("You sent an
image, 640 by 480 PNG, and a PDF of 3 pages beginning “Quarterly report…”."), the image's size and
format read from its bytes with Pillow (the header only: nothing is decoded).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

__all__ = [
    "Attached",
    "AttachedFile",
    "AttachedImage",
    "AttachedNote",
    "attachment_sentences",
    "image_from_url",
    "split_parts",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedImage:
    """An image part: its base64 ``data`` (``None`` when it came as a link, not data)."""

    media_type: str = ""
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedFile:
    """A file's text part: its name, the kind its header gives, and the text it holds."""

    name: str
    kind: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedNote:
    """A file relaybot did not send, or an image it no longer keeps: the note, unbracketed."""

    text: str


Attached = AttachedImage | AttachedFile | AttachedNote

_HEADER = re.compile(r'File "(?P<name>[^\n]*)": (?P<kind>[^\n]*)\n')
_BLOCK = re.compile(r'<user-file name="[^"\n]*">\n(?P<text>.*)\n</user-file>', re.DOTALL)
_PAGE_MARK = re.compile(r"^\[page \d+\]$", re.MULTILINE)
_PDF = re.compile(r"a PDF, (?P<pages>[\d,]+ pages?)")
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "WEBP": "WebP"}
_BY = "\N{MULTIPLICATION SIGN}"


def image_from_url(url: str) -> AttachedImage:
    """An OpenAI ``image_url``: a ``data:`` URL carries the image; any other URL is a link."""
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        return AttachedImage()
    return AttachedImage(media_type=match["type"], data=match["data"])


def split_parts(parts: Sequence[str | AttachedImage]) -> tuple[list[str], tuple[Attached, ...]]:
    """The texts the user wrote, and what they attached, from a user message's parts in order.

    A text part is a file when it starts with a file header and holds a ``<user-file>`` block;
    a bracketed text before the last part is a note (the last part is the user's own text,
    which may well be in brackets).
    """
    texts: list[str] = []
    attached: list[Attached] = []
    for index, part in enumerate(parts):
        if isinstance(part, AttachedImage):
            attached.append(part)
        elif (file := _file(part)) is not None:
            attached.append(file)
        elif index < len(parts) - 1 and part.startswith("[") and part.endswith("]"):
            attached.append(AttachedNote(text=part[1:-1]))
        else:
            texts.append(part)
    return texts, tuple(attached)


def _file(text: str) -> AttachedFile | None:
    header = _HEADER.match(text)
    block = _BLOCK.search(text)
    if header is None or block is None:
        return None
    content = _PAGE_MARK.sub("", block["text"]).replace("&lt;", "<")
    return AttachedFile(name=header["name"], kind=header["kind"], text=content)


def attachment_sentences(attached: Sequence[Attached]) -> list[str]:
    """One sentence naming what was sent, then each note as a sentence of its own."""
    sent = [_described(item) for item in attached if not isinstance(item, AttachedNote)]
    notes = [item.text for item in attached if isinstance(item, AttachedNote)]
    sentences = [f"You sent {_listed(sent)}."] if sent else []
    return sentences + notes


def _described(item: AttachedImage | AttachedFile) -> str:
    if isinstance(item, AttachedImage):
        return _image(item)
    pdf = _PDF.match(item.kind)
    what = f"a PDF of {pdf['pages']}" if pdf else f"a text file ({item.name})"
    opening = _opening(item.text)
    return f"{what} beginning “{opening}”" if opening else f"{what}, empty"


def _image(image: AttachedImage) -> str:
    """ "an image, 640 by 480 PNG" (with a multiplication sign), from the image's own bytes
    whatever type the part claimed."""
    if image.data is None:
        return "an image as a link, which I cannot open"
    try:
        raw = base64.b64decode(image.data, validate=True)
        with Image.open(io.BytesIO(raw), formats=list(_FORMATS)) as opened:
            width, height, format = opened.width, opened.height, str(opened.format)
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):  # fmt: skip
        return "an image I could not read"
    return f"an image, {width}{_BY}{height} {_FORMATS.get(format, format)}"


def _opening(text: str, limit: int = 40) -> str:
    """The first words of ``text`` on one line, cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(",.;:") + "…"


def _listed(items: Sequence[str]) -> str:
    """ "a", "a, and b", "a, b, and c": every item here may hold a comma of its own."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]
