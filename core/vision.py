"""Which models can see images, and what a model that cannot is sent instead.

A model cannot take images when its endpoint says so (``supports_images = false``) or when its
gateway refused a request for carrying them (:func:`refuses_images`): the engine then asks once
more without them, and :class:`ImageSupport` remembers that model as image-less for the rest of
the process. Such a model reads one sentence per image (:func:`without_images`), naming the file
and its size and format, so it can say what it was not shown instead of inventing it.

The user is told once per conversation that the model could not see their images, by a line
under the answer (:data:`UNSEEN_NOTE`), which is shown and saved as part of the final text but is
not the model's words. Who was told is a cache of this process (at most
:data:`REMEMBERED_THREADS` threads): after a restart, or on another worker, a thread may be
told once more.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from core.errors import BadRequest, ContextTooLong, LLMError, ServerError
from core.messages import ConversationKey, FileNote, ImageContent, Message, UserMessage
from core.models import ModelEndpoint
from core.protocols.base import looks_like_image_refusal

__all__ = [
    "REMEMBERED_THREADS",
    "UNSEEN_NOTE",
    "ImageSupport",
    "carries_images",
    "refuses_images",
    "without_images",
]

UNSEEN_NOTE = "\n\n_({model} cannot see images, so it was told only the name and size of yours.)_"
REMEMBERED_THREADS = 10_000


class ImageSupport:
    """What this process knows about images: the models that cannot take them (as configured,
    or as their gateway said), and the conversations already told so."""

    def __init__(self, *, remembered_threads: int = REMEMBERED_THREADS) -> None:
        self._refused: set[tuple[str, str, str]] = set()
        self._told: OrderedDict[ConversationKey, None] = OrderedDict()
        self._remembered = remembered_threads

    def sees_images(self, endpoint: ModelEndpoint) -> bool:
        """Whether requests to ``endpoint`` may carry images."""
        return endpoint.supports_images and _identity(endpoint) not in self._refused

    def refused(self, endpoint: ModelEndpoint) -> None:
        """The gateway said ``endpoint``'s model cannot take images: never send it any again."""
        self._refused.add(_identity(endpoint))

    def first_notice(self, key: ConversationKey) -> bool:
        """True the first time it is asked for ``key`` (the user is to be told), then False."""
        if key in self._told:
            self._told.move_to_end(key)
            return False
        self._told[key] = None
        if len(self._told) > self._remembered:
            self._told.popitem(last=False)
        return True


def _identity(endpoint: ModelEndpoint) -> tuple[str, str, str]:
    """A model as a gateway knows it: two names for one model share what was learned."""
    return endpoint.protocol, endpoint.base_url, endpoint.model


def carries_images(messages: Iterable[Message]) -> bool:
    """Whether any user message among ``messages`` has an image to send (its data kept)."""
    return any(
        isinstance(attachment, ImageContent) and attachment.data is not None
        for message in messages
        if isinstance(message, UserMessage)
        for attachment in message.attachments
    )


def without_images(message: Message) -> Message:
    """``message`` for a model that cannot see images: each image it carries becomes a note
    saying what it was (an image whose data is gone stays as it is: the protocols say so)."""
    if not isinstance(message, UserMessage) or not carries_images([message]):
        return message
    attachments = tuple(
        _unseen(attachment)
        if isinstance(attachment, ImageContent) and attachment.data is not None
        else attachment
        for attachment in message.attachments
    )
    return message.model_copy(update={"attachments": attachments})


def _unseen(image: ImageContent) -> FileNote:
    note = (
        f'The user attached "{image.name}", but the model in use cannot see images: '
        f"{image.description}."
    )
    return FileNote(name=image.name, note=note)


def refuses_images(error: LLMError) -> bool:
    """Whether ``error`` is the gateway saying the model cannot take images: a rejected request
    (a 4xx; some servers answer a 500) whose message says so."""
    return (
        isinstance(error, BadRequest | ServerError)
        and not isinstance(error, ContextTooLong)
        and looks_like_image_refusal(None, error.message)
    )
