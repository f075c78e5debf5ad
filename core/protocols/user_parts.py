"""What a user message with attachments says to a model, in order, whatever the protocol.

A user message with files becomes a list of parts: each attachment in the order it came, then
the message's own text — images and documents before the question, as Anthropic advises. An
image with its data is an image part; everything else is text:

- a file's text (:class:`~core.messages.FileText`) as it was rendered: header, the untrusted-data
  wrapper, any cut note;
- a file the model is not sent (:class:`~core.messages.FileNote`): its note, in brackets, so it
  reads as relaybot's remark and not as the user's words;
- an image the store no longer keeps (``data`` is ``None``): one bracketed sentence naming it.

Each protocol shapes these parts (``core.protocols.openai``, ``core.protocols.anthropic``); a
message without attachments is not a list at all there, so its body stays a plain string.
"""

from __future__ import annotations

from core.messages import FileNote, FileText, ImageContent, UserMessage

__all__ = ["UserPart", "gone_image", "user_parts"]

UserPart = ImageContent | str
"""An image to send (its ``data`` set), or a text part."""


def user_parts(message: UserMessage) -> list[UserPart]:
    """The parts of ``message``: its attachments in order, then its text (left out when
    empty)."""
    parts: list[UserPart] = []
    for attachment in message.attachments:
        match attachment:
            case ImageContent(data=None):
                parts.append(gone_image(attachment))
            case ImageContent():
                parts.append(attachment)
            case FileText(text=text):
                parts.append(text)
            case FileNote(note=note):
                parts.append(note if note.startswith("[") and note.endswith("]") else f"[{note}]")
    if message.text:
        parts.append(message.text)
    return parts


def gone_image(image: ImageContent) -> str:
    """What the model reads for an image whose bytes the store no longer keeps."""
    return (
        f'[An image the user attached earlier, "{image.name}" ({image.description}), '
        "is no longer kept.]"
    )
