"""Files people attach on Discord: downloaded from the attachment's URL when the turn is prepared,
read, and carried on the question the model reads. Real discord.py against the loopback Discord
(whose CDN serves the files on its own address, the configured API host), as in
``tests/test_discord_bot.py``, whose harness this reuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from PIL import Image

from bots.discord.platform import DM
from bots.loopback import LoopbackServer
from bots.replies import ONLY_FILES
from core.messages import ConversationKey, FileNote, FileText, ImageContent, UserMessage
from tests.fakes.fake_discord import ADA, CHANNEL, GUILD, NO_THREADS_CHANNEL, Attachment
from tests.test_attachments import encoded, pdf
from tests.test_discord_bot import Harness, answer, mention, reference
from tests.test_discord_bot import start as start_fixture

start = start_fixture
"""The connected bot of ``tests/test_discord_bot.py``, a fixture here too."""


@pytest.fixture
async def bot(start: Callable[..., Awaitable[Harness]]) -> Harness:
    return await start()


PNG = encoded(Image.new("RGB", (640, 480), "teal"), "PNG")
SCRIPT = b'def greet(name):\n    return f"Hello, {name}!"\n'
ARCHIVE = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4
"""The start of a zip file: binary, of no type relaybot reads."""


def thread_key(thread: int) -> ConversationKey:
    return ConversationKey(
        platform="discord", workspace=str(GUILD), channel=str(CHANNEL), thread=str(thread)
    )


async def question(bot: Harness, thread: int) -> UserMessage:
    """The thread's first question as stored once answered (as the model read it)."""
    await bot.answer(thread)
    first = (await bot.runtime.store.load(thread_key(thread)))[0]
    assert isinstance(first, UserMessage)
    return first


async def ask_with(bot: Harness, text: str, *files: Attachment) -> int:
    """A mention carrying ``files``, answered "Got it."; the id of its thread."""
    bot.gateway.enqueue(answer("Got it."))
    asked = await bot.fake.user_message(CHANNEL, ADA, text, attachments=files)
    return asked.id


async def test_a_png_is_carried_as_an_image_and_fetched_without_a_token(bot: Harness) -> None:
    png = bot.fake.attachment(CHANNEL, "screenshot.png", PNG, content_type="image/png")
    thread = await ask_with(bot, mention("what is in this screenshot?"), png)

    asked = await question(bot, thread)
    assert asked.text == "what is in this screenshot?"
    (image,) = asked.attachments
    assert isinstance(image, ImageContent)
    assert (image.name, image.media_type, image.width, image.height) == (
        "screenshot.png", "image/png", 640, 480,
    )  # fmt: skip
    assert image.description == "an image, 640\N{MULTIPLICATION SIGN}480 PNG"
    assert [(r.status, r.authorization) for r in bot.fake.downloads(png)] == [(200, None)]
    assert [m.content for m in bot.replies(thread)] == ["Got it."], "no note: the file was read"


async def test_the_model_request_carries_the_image_part(bot: Harness) -> None:
    """The image reaches the gateway in the OpenAI protocol's shape (``core.protocols``)."""
    png = bot.fake.attachment(CHANNEL, "screenshot.png", PNG, content_type="image/png")
    thread = await ask_with(bot, mention("what is in this screenshot?"), png)
    await bot.answer(thread)

    (request,) = bot.gateway.requests
    content = request.json["messages"][-1]["content"]
    assert isinstance(content, list)
    images = [part for part in content if part.get("type") == "image_url"]
    assert len(images) == 1
    assert images[0]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_a_python_file_and_a_pdf_are_read_as_text_with_headers(bot: Harness) -> None:
    script = bot.fake.attachment(CHANNEL, "greet.py", SCRIPT, content_type="text/x-python")
    report = bot.fake.attachment(
        CHANNEL, "report.pdf", pdf("Quarterly revenue grew", "Costs fell"),
        content_type="application/pdf",
    )  # fmt: skip
    thread = await ask_with(bot, mention("review these"), script, report)

    first, second = (await question(bot, thread)).attachments
    assert isinstance(first, FileText)
    assert isinstance(second, FileText)
    assert first.text.startswith(f'File "greet.py": a text file, {len(SCRIPT)} characters\n')
    assert 'return f"Hello, {name}!"' in first.text
    assert second.text.startswith('File "report.pdf": a PDF, 2 pages, ')
    assert "Quarterly revenue grew" in second.text
    assert "Costs fell" in second.text
    assert '<user-file name="report.pdf">' in second.text, "wrapped as the user's data"


async def test_a_file_of_an_unsupported_type_is_a_note_the_user_sees(bot: Harness) -> None:
    archive = bot.fake.attachment(CHANNEL, "logs.zip", ARCHIVE, content_type="application/zip")
    thread = await ask_with(bot, mention("what is in the archive?"), archive)

    (note,) = (await question(bot, thread)).attachments
    skipped = '"logs.zip" was skipped: relaybot cannot read this type of file (application/zip).'
    assert note == FileNote(name="logs.zip", note=skipped)
    assert [m.content for m in bot.replies(thread)] == [skipped, "Got it."]


async def test_inline_the_note_replies_to_the_question(bot: Harness) -> None:
    archive = bot.fake.attachment(NO_THREADS_CHANNEL, "logs.zip", ARCHIVE)
    bot.gateway.enqueue(answer("Got it."))
    asked = await bot.fake.user_message(
        NO_THREADS_CHANNEL, ADA, mention("and this?"), attachments=[archive]
    )
    await bot.until(lambda: bot.finished(NO_THREADS_CHANNEL), "an inline answer")

    note, reply = bot.replies(NO_THREADS_CHANNEL)
    assert note.content.startswith('"logs.zip" was skipped: relaybot cannot read this type')
    assert note.reference == reply.reference == reference(NO_THREADS_CHANNEL, asked.id)
    assert not note.pings, "the note pings no one"
    assert reply.content == "Got it."


async def test_a_file_over_the_size_cap_is_never_requested(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(attachments__max_file_bytes="1000")
    big = bot.fake.attachment(CHANNEL, "big.png", PNG, content_type="image/png")
    small = bot.fake.attachment(CHANNEL, "greet.py", SCRIPT)
    thread = await ask_with(bot, mention("look"), big, small)

    note, text = (await question(bot, thread)).attachments
    assert isinstance(note, FileNote)
    assert isinstance(text, FileText)
    assert note.note.startswith('"big.png" was skipped: it is 0.0 MB, over the 0.0 MB limit')
    assert bot.fake.downloads(big) == [], "its size is in the event: it is not downloaded"
    assert len(bot.fake.downloads(small)) == 1
    assert bot.replies(thread)[0].content == note.note


async def test_a_url_on_another_host_is_never_fetched(bot: Harness, elsewhere: OtherHost) -> None:
    url = f"{elsewhere.url}/attachments/1/2/secret.png"
    foreign = bot.fake.attachment(CHANNEL, "secret.png", PNG, url=url)
    thread = await ask_with(bot, mention("look"), foreign)

    (note,) = (await question(bot, thread)).attachments
    assert isinstance(note, FileNote)
    assert "relaybot does not fetch files from 127.0.0.2" in note.note
    assert elsewhere.asked == [], "no request left for the other host"
    assert bot.fake.downloads(foreign) == []


async def test_a_message_of_files_alone_is_a_question_about_them(bot: Harness) -> None:
    png = bot.fake.attachment(CHANNEL, "cat.png", PNG, content_type="image/png")
    thread = await ask_with(bot, mention(""), png)

    asked = await question(bot, thread)
    assert asked.text == ONLY_FILES
    assert [type(a) for a in asked.attachments] == [ImageContent]
    opened = bot.fake.thread(thread)
    assert opened is not None
    assert opened.name == "cat.png", "named after the file"


async def test_a_file_in_a_dm_is_read(bot: Harness) -> None:
    dm = bot.fake.dm_channel(ADA)
    script = bot.fake.attachment(dm, "greet.py", SCRIPT)
    bot.gateway.enqueue(answer("It greets."))
    asked = await bot.fake.user_message(dm, ADA, "what does it do?", attachments=[script])

    assert await bot.answer(dm) == "It greets."
    key = ConversationKey(platform="discord", workspace=DM, channel=str(dm), thread=str(asked.id))
    stored = (await bot.runtime.store.load(key))[0]
    assert isinstance(stored, UserMessage)
    assert [a.name for a in stored.attachments] == ["greet.py"]
    assert isinstance(stored.attachments[0], FileText)


# --- helpers -----------------------------------------------------------------------------------


class OtherHost(LoopbackServer):
    """A server on another loopback address (127.0.0.2) that records every request it gets: a
    URL there is a host no attachment may come from."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        super().__init__(app, host="127.0.0.2")

    async def _serve(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        return web.Response(body=PNG, content_type="image/png")


@pytest.fixture
async def elsewhere() -> AsyncIterator[OtherHost]:
    async with OtherHost() as server:
        yield server
