"""Images kept apart from the messages that carry them: what every store's blob table holds.

A user message's image (:class:`~core.messages.ImageContent` with ``data``) is saved without its
bytes; the bytes go to the store's blob table once, keyed by their sha256, in the transaction
that saves the message. So the same screenshot in ten messages is kept once, and no message's
JSON holds base64. Loading a message puts ``data`` back where its blob is still kept and leaves
``None`` where it is not: the protocols then tell the model an image was attached and is gone.

- :func:`set_apart` — before a write: the messages without image data, and the blobs to keep;
  :func:`fitting` — those of them a store may keep under its cap.
- :func:`wanted` — after a read: the hashes whose data the loaded messages lack.
- :func:`filled` — the messages with the data of the blobs found put back (base64).

An image whose ``data`` is not base64, or whose bytes do not hash to its ``sha256``, is saved
without data and a warning is logged (its name and declared hash, never its bytes). Keeping
the bytes under a hash they do not have would serve them for every later image of that hash;
refusing the write would lose the user's message, its text and other files, over one image
nobody can check. Its message is answered as if the image had expired.

Limits, kept by each store: the blobs' sizes add up to at most ``blob_max_bytes``
(:data:`BLOB_MAX_BYTES` by default; ``0`` keeps no image). A write that stores a blob then
deletes the least recently used blobs (by when a load or a write last used them) until the
rest fit. An image larger than the whole cap is not kept, and so pushes nothing out.
``prune(older_than=...)`` deletes the blobs last used before ``older_than``, with the history
the retention removes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.messages import ImageContent, Message, UserMessage

__all__ = ["BLOB_MAX_BYTES", "Blob", "filled", "fitting", "set_apart", "wanted"]

BLOB_MAX_BYTES = 1 << 30
"""The default cap on the bytes of the images a store keeps: 1 GiB."""

log = logging.getLogger("relaybot.store")


@dataclass(frozen=True, slots=True)
class Blob:
    """One image's raw bytes, under the sha256 they hash to."""

    sha256: str
    data: bytes


def set_apart(messages: Sequence[Message]) -> tuple[list[Message], list[Blob]]:
    """``messages`` with every image's ``data`` taken out, and the blobs to keep: each hash
    once, sorted by hash (writers that lock blob rows take them in one order)."""
    blobs: dict[str, bytes] = {}
    stripped: list[Message] = []
    for message in messages:
        if isinstance(message, UserMessage) and any(map(_carries_data, message.attachments)):
            attachments = []
            for attachment in message.attachments:
                if isinstance(attachment, ImageContent) and attachment.data is not None:
                    raw = _verified(attachment, attachment.data)
                    if raw is not None:
                        blobs[attachment.sha256] = raw
                    attachment = attachment.model_copy(update={"data": None})
                attachments.append(attachment)
            message = message.model_copy(update={"attachments": tuple(attachments)})
        stripped.append(message)
    return stripped, [Blob(sha256, blobs[sha256]) for sha256 in sorted(blobs)]


def fitting(blobs: Sequence[Blob], cap: int) -> list[Blob]:
    """The blobs a store with ``cap`` may keep: each no larger than the whole cap."""
    return [blob for blob in blobs if len(blob.data) <= cap]


def wanted(messages: Sequence[Message]) -> list[str]:
    """The hashes of the images in ``messages`` that have no data, each once, sorted."""
    return sorted(
        {
            attachment.sha256
            for message in messages
            if isinstance(message, UserMessage)
            for attachment in message.attachments
            if isinstance(attachment, ImageContent) and attachment.data is None
        }
    )


def filled(messages: Sequence[Message], blobs: Mapping[str, bytes]) -> list[Message]:
    """``messages`` with each image's ``data`` put back from ``blobs`` (raw bytes by hash); an
    image whose blob is not there keeps ``data=None``."""
    if not blobs:
        return list(messages)
    encoded: dict[str, str] = {}  # an image in several messages is encoded once

    def data_of(sha256: str) -> str:
        if sha256 not in encoded:
            encoded[sha256] = base64.b64encode(blobs[sha256]).decode("ascii")
        return encoded[sha256]

    result: list[Message] = []
    for message in messages:
        if isinstance(message, UserMessage) and any(
            isinstance(attachment, ImageContent) and attachment.sha256 in blobs
            for attachment in message.attachments
        ):
            attachments = tuple(
                attachment.model_copy(update={"data": data_of(attachment.sha256)})
                if isinstance(attachment, ImageContent) and attachment.sha256 in blobs
                else attachment
                for attachment in message.attachments
            )
            message = message.model_copy(update={"attachments": attachments})
        result.append(message)
    return result


def _carries_data(attachment: object) -> bool:
    return isinstance(attachment, ImageContent) and attachment.data is not None


def _verified(image: ImageContent, data: str) -> bytes | None:
    """The image's raw bytes, or ``None`` (with a warning) when they cannot be kept."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        log.warning("image %r is saved without its data: its data is not base64", image.name)
        return None
    if hashlib.sha256(raw).hexdigest() != image.sha256:
        log.warning(
            "image %r is saved without its data: its bytes do not hash to its sha256 %.16s…",
            image.name,
            image.sha256,
        )
        return None
    return raw
