"""The files a Discord message carries: downloaded when its turn is prepared, read, and carried on
the question the model reads.

Discord has no acknowledgement deadline, but a download must not hold up the other messages,
nor the message's acceptance in the journal (Discord never sends a message twice: it is
accepted first, at once). So the listener only notes the message's attachments
(:meth:`MessageFiles.expect`, by message id, in memory) and accepts the question with a
:func:`pending` note for each file; when the worker takes the turn, the platform's ``prepare``
downloads them (:meth:`MessageFiles.read`, holding the turn's lease meanwhile: a slow CDN must
not let another worker take it over) and saves the question again with what the model is sent
— an image, a file's text, or a note saying why a file was skipped (``store.revise_question``).
A turn recovered after a restart has no files in memory: its pending notes tell the model that
files were attached and not read.

Downloads come only from Discord's CDN (:data:`DISCORD_HOSTS`) and the host of
``[discord] api_url`` (a test server), without the bot token (attachment URLs are signed);
a file over ``[attachments] max_file_bytes`` by its reported size is never requested
(:class:`~bots.downloads.Downloader`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import discord
import httpx2

from bots.downloads import Downloader, RemoteFile
from core.attachments import AttachmentSettings, display_name
from core.messages import Attachment, FileNote
from core.store import ConversationStore, Lease

__all__ = [
    "DISCORD_HOSTS",
    "MessageFiles",
    "attached_hosts",
    "pending",
    "remote_files",
    "skipped_notice",
]

log = logging.getLogger("relaybot.discord")

DISCORD_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
"""Where Discord serves attachments (``url`` and ``proxy_url``)."""
NOTICE_LENGTH = 1_900
"""The longest skipped-files notice: one Discord message (2,000), with room to spare."""
_PENDING = "{name} was attached, but relaybot has not read it (it restarted before it could)."


def remote_files(attachments: Iterable[discord.Attachment]) -> tuple[RemoteFile, ...]:
    """A message's attachments as the downloader takes them, with the size Discord reports."""
    return tuple(
        RemoteFile(name=a.filename, mime=a.content_type, url=a.url, size=a.size)
        for a in attachments
    )


def pending(files: Sequence[RemoteFile]) -> tuple[Attachment, ...]:
    """What an accepted question carries until its files are read: a note for each."""
    return tuple(FileNote(name=display_name(f.name), note=_pending_note(f.name)) for f in files)


def attached_hosts(api_url: str | None) -> tuple[str, ...]:
    """The hosts files are downloaded from: Discord's CDN, and ``api_url``'s host when set."""
    host = httpx2.URL(api_url).host if api_url else ""
    return DISCORD_HOSTS + ((host,) if host else ())


def skipped_notice(attachments: Sequence[Attachment]) -> str | None:
    """The short line a user is shown when some of their files were not read: each one's note
    ("“a.zip” was skipped: relaybot cannot read this type of file."); ``None`` when all were."""
    notes = [a.note for a in attachments if isinstance(a, FileNote)]
    if not notes:
        return None
    line = " ".join(notes)
    return line if len(line) <= NOTICE_LENGTH else line[: NOTICE_LENGTH - 1] + "…"


class MessageFiles:
    """The files of accepted messages, by message id, until their turn is prepared (see the
    module docstring). Close it with :meth:`aclose`."""

    def __init__(
        self,
        *,
        settings: AttachmentSettings,
        api_url: str | None,
        journal: ConversationStore,
        downloader: Downloader | None = None,
    ) -> None:
        self._downloader = downloader or Downloader(
            settings=settings, allowed_hosts=attached_hosts(api_url)
        )
        self._journal = journal
        self._waiting: dict[int, tuple[RemoteFile, ...]] = {}

    def expect(self, message_id: int, files: tuple[RemoteFile, ...]) -> None:
        """The message (about to be accepted) carries ``files``: read them when its turn is
        prepared."""
        if files:
            self._waiting[message_id] = files

    def drop(self, message_id: int) -> None:
        """The message will not be answered (not accepted, refused): forget its files."""
        self._waiting.pop(message_id, None)

    async def read(self, lease: Lease, message_id: int) -> tuple[Lease, tuple[Attachment, ...]]:
        """Download and read the files of the turn's question, and save the question with
        them: the lease as revised, and what was read. A turn whose files are not waiting here
        (none, or a recovered turn) is left as it is."""
        files = self._waiting.pop(message_id, None)
        if not files:
            return lease, ()
        # The worker keeps the lease while a turn is prepared (bots.turns); a lease lost
        # meanwhile is refused by the fenced revise_question.
        attachments = await self._downloader.fetch_all(files)
        question = lease.turn.question.model_copy(update={"attachments": attachments})
        return await self._journal.revise_question(lease, question), attachments

    async def aclose(self) -> None:
        await self._downloader.aclose()


def _pending_note(name: str) -> str:
    return _PENDING.format(name=f'"{display_name(name)}"')
