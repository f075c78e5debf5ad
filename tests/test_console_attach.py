"""``/attach PATH`` in ``relaybot console``: a local file read, prepared and carried on the next
message. The console runs in-process against the loopback gateway (what the model is sent is
read off the wire), and once as a piped process with the offline model."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from bots.console.chat import ConsoleBot
from bots.console.files import ATTACH_HELP
from bots.runtime import Runtime
from bots.settings import load_settings
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.test_attachments import encoded
from tests.test_console import console as piped_console

PNG = encoded(Image.new("RGB", (640, 480), "teal"), "PNG")
ATTACHED_PNG = (
    'Attached "cat.png": an image, 640\N{MULTIPLICATION SIGN}480 PNG. '
    "It goes with your next message."
)


@dataclass
class Session:
    """A console that ran ``lines``: what it printed, and the model requests it made."""

    bot: ConsoleBot
    printed: list[str]
    requests: list[dict[str, Any]]


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await chat(lines, **settings)`` runs a console over those input lines, each model
    call answered "Seen."; ``settings`` become ``RELAYBOT_*`` variables."""
    async with FakeGateway() as gateway:

        async def run(lines: list[str], **settings: str) -> Session:
            environ = {
                "OFOX_API_KEY": "sk-test",
                "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
                "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "1",
                "RELAYBOT_STORE__URL": "memory://",
                "RELAYBOT_TOOLS__WEATHER_ENABLED": "false",
                **{f"RELAYBOT_{name.upper()}": value for name, value in settings.items()},
            }
            gateway.enqueue(*(Stream(openai_chunks("Seen.")) for _ in lines))
            out = io.StringIO()
            screen = Console(file=out, width=400, force_terminal=False)
            async with Runtime.start(load_settings(environ=environ), announce=print) as runtime:
                bot = ConsoleBot(runtime, screen, interactive=False)
                await bot.run(_reader(lines))
            requests = [request.json for request in gateway.requests]
            return Session(bot, out.getvalue().splitlines(), requests)

        yield run


def _reader(lines: list[str]) -> Callable[[], str | None]:
    """The console's line reader over ``lines``, then the end of input."""
    left = iter(lines)
    return lambda: next(left, None)


def user_content(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of the request's last user message (a plain string as one text part)."""
    content = request["messages"][-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cat.png").write_bytes(PNG)
    (tmp_path / "my notes").mkdir()
    (tmp_path / "my notes" / "todo.md").write_text("# Todo\nBuy milk.\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(64)))
    return tmp_path


async def test_an_attached_image_and_text_go_with_the_next_message_only(
    chat: Callable[..., Any], files: Path
) -> None:
    session = await chat([
        f"/attach {files / 'cat.png'}",
        f'/attach "{files / "my notes" / "todo.md"}"',
        "what are these?",
        "and now?",
    ])  # fmt: skip

    assert session.printed[:2] == [
        ATTACHED_PNG,
        'Attached "todo.md": a text file, 17 characters. It goes with your next message.',
    ]
    first, second = session.requests
    parts = user_content(first)
    images = [p for p in parts if p["type"] == "image_url"]
    assert [p["image_url"]["url"][:22] for p in images] == ["data:image/png;base64,"]
    texts = "\n".join(p["text"] for p in parts if p["type"] == "text")
    assert 'File "todo.md": a text file, 17 characters' in texts
    assert "Buy milk." in texts
    assert "what are these?" in texts
    assert user_content(second) == [{"type": "text", "text": "and now?"}], "taken once"


async def test_a_file_that_cannot_go_is_said_and_not_attached(
    chat: Callable[..., Any], files: Path
) -> None:
    session = await chat(
        [
            f"/attach {files / 'missing.png'}",
            f"/attach {files}",
            f"/attach {files / 'blob.bin'}",
            f"/attach {files / 'cat.png'}",
            "/attach",
            "hello",
        ],
        attachments__max_file_bytes="100",
    )

    assert session.printed[:5] == [
        'Cannot attach "missing.png": there is no such file.',
        f'Cannot attach "{files.name}": it is a folder.',
        '"blob.bin" was skipped: relaybot cannot read this type of file '
        "(application/octet-stream), so it is not attached.",
        'Cannot attach "cat.png": it is 0.0 MB, over the 0.0 MB limit.',
        "No files attached. " + ATTACH_HELP,
    ]
    assert user_content(session.requests[0]) == [{"type": "text", "text": "hello"}]


async def test_the_prompt_names_what_is_attached_and_detach_drops_it(
    chat: Callable[..., Any], files: Path
) -> None:
    odd = files / "[red]odd.md"
    odd.write_text("text\n")
    session = await chat([f"/attach {files / 'cat.png'}", f"/attach {odd}"])
    bot = session.bot
    shown = Console().render_str(bot.prompt())
    assert shown.plain == "you [cat.png, [red]odd.md] \u203a ", "a name is never markup"

    detached = await chat([f"/attach {files / 'cat.png'}", "/detach", "/detach", "hi"])
    assert detached.printed[1:3] == ["Dropped 1 attached file.", "No files were attached."]
    assert user_content(detached.requests[0]) == [{"type": "text", "text": "hi"}]
    assert detached.bot.prompt() == "[bold cyan]you \u203a[/] "


async def test_a_path_with_a_tilde_is_the_home_folder(
    chat: Callable[..., Any], files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(files))
    session = await chat(["/attach ~/cat.png", "/attach '~/my notes/todo.md'", "/attach"])
    assert session.printed[0] == ATTACHED_PNG
    assert session.printed[2] == (
        'Attached to your next message: "cat.png": an image, 640\N{MULTIPLICATION SIGN}480 PNG; '
        '"todo.md": a text file, 17 characters.'
    )


async def test_help_tells_how_to_attach(chat: Callable[..., Any]) -> None:
    session = await chat(["/help"])
    assert session.printed[-1] == ATTACH_HELP


async def test_the_offline_model_answers_about_an_attached_image(files: Path) -> None:
    status, out, _ = await piped_console(
        [f"/attach {files / 'cat.png'}", "What is this?"],
        store=files / "relaybot.db",
        weather_url="http://127.0.0.1:9",
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == ATTACHED_PNG
    answer = " ".join(lines[1:])
    assert "You sent an image, 640\N{MULTIPLICATION SIGN}480 PNG" in answer  # it saw the image
    assert "cannot see images" not in answer
