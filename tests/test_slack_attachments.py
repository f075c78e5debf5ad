"""People's files in Slack, end to end: a message's files downloaded from the fake Slack's
``url_private`` with the bot token, saved with the question, sent to the model; skipped files
named to the asker; an oversized file never requested; a mention whose event left its files out
read back for them.

The bot, the fakes and Slack's payloads are those of ``tests/test_slack_bot.py``. The model's
view is checked on the stored question (``store.load``); the tests named
``..._reaches_the_gateway_...`` check the gateway's request body too, which depends on the image
and file parts of ``core.protocols`` (built alongside, in ``core/protocols/user_parts.py``).
"""

# ruff: noqa: F811 (the harness's fixtures, imported, are parameters here)
from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from bots.replies import ONLY_FILES
from bots.slack.answers import FILES_SKIPPED
from core.messages import (
    ConversationKey,
    FileNote,
    FileText,
    ImageContent,
    UserMessage,
)
from tests.fakes.slack_api import TEAM
from tests.test_slack_bot import (  # noqa: F401 (the fixtures)
    ADA,
    CHANNEL,
    TOKEN,
    Harness,
    answer,
    bot,
    mention,
    message,
    start,
)


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def pdf(text: str) -> bytes:
    """A one-page PDF whose page says ``text``."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })  # fmt: skip
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(content)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


async def question(bot: Harness, thread: str) -> UserMessage:
    """The thread's question as stored: what the model is sent."""
    key = ConversationKey(platform="slack", workspace=TEAM, channel=CHANNEL, thread=thread)
    first = (await bot.runtime.store.load(key))[0]
    assert isinstance(first, UserMessage)
    return first


def user_content(bot: Harness) -> list[dict[str, Any]]:
    """The parts of the first model request's last user message (OpenAI's shape)."""
    content = bot.gateway.requests[0].json["messages"][-1]["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


async def ask_with_files(bot: Harness, text: str, files: list[dict[str, Any]]) -> str:
    asked = bot.slack.seed_message(CHANNEL, ADA, text, files=files)
    await bot.send(message(asked, text, subtype="file_share", files=files, upload=False))
    return asked


async def test_a_png_reaches_the_question_as_an_image(bot: Harness) -> None:
    bot.gateway.enqueue(answer("A teal rectangle."))
    shot = bot.slack.add_file("shot.png", png(), mimetype="image/png")

    asked = await ask_with_files(bot, "<@UBOT> what is this?", [shot])

    assert await bot.answer(CHANNEL, asked) == "A teal rectangle."
    (image,) = (await question(bot, asked)).attachments
    assert isinstance(image, ImageContent)
    assert (image.name, image.media_type, image.width, image.height) == (
        "shot.png", "image/png", 64, 48,
    )  # fmt: skip
    assert [(r.authorization, r.status) for r in bot.slack.file_requests] == [
        (f"Bearer {TOKEN}", 200)
    ]
    assert [m.markdown or m.text for m in bot.replies(CHANNEL, asked)] == ["A teal rectangle."]


async def test_a_png_reaches_the_gateway_as_an_image_part(bot: Harness) -> None:
    bot.gateway.enqueue(answer("A teal rectangle."))
    shot = bot.slack.add_file("shot.png", png(), mimetype="image/png")
    asked = await ask_with_files(bot, "<@UBOT> what is this?", [shot])
    await bot.answer(CHANNEL, asked)
    images = [part for part in user_content(bot) if part["type"] == "image_url"]
    assert len(images) == 1
    assert images[0]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_a_large_screenshot_reaches_the_gateway_downscaled(bot: Harness) -> None:
    bot.gateway.enqueue(answer("A wide teal screenshot."))
    shot = bot.slack.add_file("wide.png", png(3200, 1800), mimetype="image/png")
    asked = await ask_with_files(bot, "<@UBOT> what is this?", [shot])
    await bot.answer(CHANNEL, asked)
    (part,) = [part for part in user_content(bot) if part["type"] == "image_url"]
    data = part["image_url"]["url"].partition(";base64,")[2]
    with Image.open(io.BytesIO(base64.b64decode(data))) as sent:
        assert sent.size == (1568, 882)  # the long side at the setting, the shape kept


async def test_a_pdf_and_a_python_file_become_text_with_their_names(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Both read."))
    files = [
        bot.slack.add_file("report.pdf", pdf("Quarterly numbers"), mimetype="application/pdf"),
        bot.slack.add_file("main.py", b"print('hello')\n", mimetype="text/x-python"),
    ]

    asked = await ask_with_files(bot, "<@UBOT> compare these", files)

    await bot.answer(CHANNEL, asked)
    texts = (await question(bot, asked)).attachments
    assert [type(part) for part in texts] == [FileText, FileText]
    assert all(isinstance(part, FileText) for part in texts)
    report, code = (part.text for part in texts if isinstance(part, FileText))
    assert report.startswith('File "report.pdf": a PDF, 1 page')
    assert "Quarterly numbers" in report
    assert code.startswith('File "main.py": a text file')
    assert "print('hello')" in code
    assert len(bot.replies(CHANNEL, asked)) == 1, "nothing skipped: no notice"


async def test_a_pdf_reaches_the_gateway_as_text_with_its_header(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Read."))
    report = bot.slack.add_file("report.pdf", pdf("Quarterly numbers"), mimetype="application/pdf")
    asked = await ask_with_files(bot, "<@UBOT> summarize", [report])
    await bot.answer(CHANNEL, asked)
    sent = " ".join(part.get("text", "") for part in user_content(bot))
    assert 'File "report.pdf"' in sent
    assert "Quarterly numbers" in sent


async def test_an_unsupported_file_is_a_note_and_the_asker_is_told(bot: Harness) -> None:
    bot.gateway.enqueue(answer("I read the notes."))
    files = [
        bot.slack.add_file("notes.md", b"# Notes\n", mimetype="text/markdown"),
        bot.slack.add_file("a.zip", b"PK\x03\x04\x00binary\x00", mimetype="application/zip"),
    ]

    asked = await ask_with_files(bot, "<@UBOT> look", files)

    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2, "a notice and an answer")
    await bot.answer(CHANNEL, asked)
    note = '"a.zip" was skipped: relaybot cannot read this type of file (application/zip).'
    assert [m.markdown or m.text for m in bot.replies(CHANNEL, asked)] == [
        FILES_SKIPPED.format(notes=note),
        "I read the notes.",
    ]
    attachments = (await question(bot, asked)).attachments
    assert [type(a) for a in attachments] == [FileText, FileNote]
    assert attachments[1] == FileNote(name="a.zip", note=note)


async def test_a_file_over_the_cap_is_never_requested(start: Any) -> None:
    bot: Harness = await start(attachments__max_file_bytes="100000")
    bot.gateway.enqueue(answer("Too big, sorry."))
    big = bot.slack.add_file("huge.log", b"x" * 300_000, mimetype="text/plain")

    asked = await ask_with_files(bot, "<@UBOT> read this", [big])

    await bot.answer(CHANNEL, asked)
    assert bot.slack.file_requests == []
    (note,) = (await question(bot, asked)).attachments
    assert isinstance(note, FileNote)
    assert note.note == '"huge.log" was skipped: it is 0.3 MB, over the 0.1 MB limit.'
    assert bot.replies(CHANNEL, asked)[0].text.startswith("I couldn't read everything")


async def test_a_message_of_files_alone_is_answered_about_them(bot: Harness) -> None:
    bot.gateway.enqueue(answer("A teal rectangle."))
    shot = bot.slack.add_file("shot.png", png(), mimetype="image/png")

    asked = await ask_with_files(bot, "<@UBOT>", [shot])

    assert await bot.answer(CHANNEL, asked) == "A teal rectangle."
    stored = await question(bot, asked)
    assert stored.text == ONLY_FILES
    assert [type(a) for a in stored.attachments] == [ImageContent]


async def test_a_mention_that_left_its_files_out_reads_them_back(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Got it."))
    shot = bot.slack.add_file("shot.png", png(), mimetype="image/png")
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> see this", files=[shot])

    await bot.send(mention(asked, "<@UBOT> see this") | {"upload": False})  # no "files"

    await bot.answer(CHANNEL, asked)
    reads = [c for c in bot.slack.calls if c.method == "conversations.replies"]
    assert [(c.args["ts"], c.args["oldest"], c.args["latest"]) for c in reads] == [
        (asked, asked, asked)
    ]
    assert [type(a) for a in (await question(bot, asked)).attachments] == [ImageContent]
    assert len(bot.slack.file_requests) == 1


async def test_a_mention_without_files_costs_no_read_back(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Hi."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    await bot.answer(CHANNEL, asked)
    assert "conversations.replies" not in bot.writes()
    assert (await question(bot, asked)).attachments == ()


async def test_a_file_url_on_another_host_is_never_fetched(bot: Harness) -> None:
    bot.gateway.enqueue(answer("Hm."))
    shot = bot.slack.add_file("shot.png", png(), mimetype="image/png")
    moved = shot | {"url_private_download": shot["url_private"].replace("127.0.0.1", "localhost")}

    asked = await ask_with_files(bot, "<@UBOT> what is this?", [moved])

    await bot.answer(CHANNEL, asked)
    assert bot.slack.file_requests == []
    (note,) = (await question(bot, asked)).attachments
    assert isinstance(note, FileNote)
    assert note.note.endswith("relaybot does not fetch files from localhost.")
