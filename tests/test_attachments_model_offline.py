"""The offline model says what was attached: request bodies built by relaybot's own protocols
from files prepared by ``core.attachments``, read by the pure model and through its server."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from PIL import Image

from bots.offline import INTRO, MODEL_NAME, OfflineLLMServer, OfflineModel
from bots.offline.conversation import Wire
from core.assembly import MessageAssembler
from core.attachments import AttachmentSettings, as_attachment, prepare
from core.client import LLMClient, Timeouts
from core.messages import (
    AssistantMessage,
    Attachment,
    FileNote,
    ImageContent,
    ModelRequest,
    UserMessage,
)
from core.protocols import protocol_for
from core.retry import RetryPolicy, retrying_stream
from tests.test_attachments import pdf

PROTOCOLS: list[Wire] = ["openai", "anthropic"]
BY = "\N{MULTIPLICATION SIGN}"
CODE = "import os\n\n\ndef main() -> None:\n    print(os.getcwd())\n"


@pytest.fixture(autouse=True)
def _pillow_guard() -> Iterator[None]:
    """prepare sets Pillow's process-wide bomb guard; other tests get theirs back."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


def png(width: int, height: int, *, noisy: bool = False) -> bytes:
    if noisy:  # random pixels: a PNG about as large as its pixels
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), "teal")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def attached(name: str, data: bytes, **limits: int) -> Attachment:
    return as_attachment(await prepare(name, None, data, settings=AttachmentSettings(**limits)))


async def the_three() -> tuple[Attachment, ...]:
    """A screenshot, a three-page report and a Python file."""
    report = pdf("Quarterly report for the third quarter", "Revenue grew", "Outlook")
    return (
        await attached("screen.png", png(640, 480)),
        await attached("report.pdf", report),
        await attached("main.py", CODE.encode()),
    )


def body(protocol: str, *messages: UserMessage | AssistantMessage) -> dict[str, Any]:
    request = ModelRequest(model=MODEL_NAME, messages=messages)
    return protocol_for(protocol).request_body(request)


SENT = (
    f"You sent an image, 640{BY}480 PNG, a PDF of 3 pages beginning “Quarterly report for the "
    "third quarter…”, and a text file (main.py) beginning “import os def main() -> None…”."
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_image_a_pdf_and_a_python_file_are_described(protocol: Wire) -> None:
    message = UserMessage(text="", attachments=await the_three())
    answer = OfflineModel().answer(body(protocol, message), protocol=protocol)
    assert answer.text == f"{INTRO} {SENT}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_question_beside_the_files_is_answered_too(protocol: Wire) -> None:
    message = UserMessage(text="count to three", attachments=await the_three())
    answer = OfflineModel().answer(body(protocol, message), protocol=protocol)
    assert answer.text == f"{INTRO} {SENT} 1, 2, 3."


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_notes_are_repeated_and_the_image_is_read_from_its_bytes(protocol: Wire) -> None:
    """A skipped file and an image no longer kept are notes; a GIF named .png is a GIF."""
    gif = io.BytesIO()
    Image.new("P", (12, 34)).save(gif, format="GIF")
    image = await attached("looks.png", gif.getvalue())
    skipped = FileNote(name="tool.exe", note='"tool.exe" was skipped: relaybot cannot read it.')
    assert isinstance(image, ImageContent)
    gone = image.model_copy(update={"name": "old.png", "data": None})
    message = UserMessage(text="[see these]", attachments=(image, skipped, gone))
    answer = OfflineModel().answer(body(protocol, message), protocol=protocol)
    assert answer.text.startswith(
        f"{INTRO} You sent an image, 12{BY}34 GIF. "
        '"tool.exe" was skipped: relaybot cannot read it. An image the user attached earlier, '
        f'"old.png" (an image, 12{BY}34 GIF), is no longer kept. You said “[see these]”.'
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_follow_up_without_files_is_answered_as_before(protocol: Wire) -> None:
    first = UserMessage(text="", attachments=await the_three())
    request = body(
        protocol, first, AssistantMessage(text="Noted."), UserMessage(text="count to two")
    )
    answer = OfflineModel().answer(request, protocol=protocol)
    assert answer.text == "1, 2."


# --- through the server -------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[OfflineLLMServer]:
    async with OfflineLLMServer(pace=0) as running:
        yield running


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_server_takes_a_request_with_megabytes_of_image(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    """aiohttp refuses bodies over 1 MB unless told: one image is up to 5 MB of base64."""
    image = await attached("photo.png", png(1000, 800, noisy=True), image_long_side=1000)
    assert isinstance(image, ImageContent)
    assert image.data is not None
    assert len(image.data) > 2 * 1024 * 1024
    base = server.openai_base_url if protocol == "openai" else server.anthropic_base_url
    client = LLMClient(
        http=http, protocol=protocol_for(protocol), base_url=base, api_key="",
        timeouts=Timeouts(connect=10, read_idle=10, total=30),
    )  # fmt: skip
    request = ModelRequest(model=MODEL_NAME, messages=(UserMessage(text="", attachments=(image,)),))
    assembler = MessageAssembler()
    async with retrying_stream(client, request, RetryPolicy(max_attempts=1)) as events:
        async for event in events:
            assembler.feed(event)
    assert assembler.message().text == f"{INTRO} You sent {image.description}."
