"""Images in turns over a real loopback gateway: sent to a model that sees them, a sentence for
one that cannot (by its setting, or because its gateway said so with a 400, after which the
turn asks once more without them and the model is remembered), and the user told once per
conversation."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import sqlite3
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import EngineEvent, TextDelta, TurnFailed, TurnFinished
from core.messages import AssistantMessage, ConversationKey, ImageContent, UserMessage
from core.models import ConfiguredModel, ModelEndpoint, ModelRegistry
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy
from core.store.base import ConversationStore
from core.store.memory import MemoryStore
from core.store.sqlite import SqliteStore
from core.tools import ToolRegistry
from core.vision import UNSEEN_NOTE
from tests.fakes.llm_gateway import Error, FakeGateway, RecordedRequest, Reply, Stream
from tests.fakes.streams import anthropic_events, openai_chunks

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
OTHER = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000099.000100")
CONFIG = EngineConfig(model="unused", system_prompt="You are a test bot.")
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=10.0)
BY = "\N{MULTIPLICATION SIGN}"
_orders = itertools.count(1)


def png(width: int = 64, height: int = 48) -> ImageContent:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()  # the store checks it
    return ImageContent(
        name="shot.png", media_type="image/png", sha256=digest, width=width, height=height,
        description=f"an image, {width}{BY}{height} PNG",
        data=base64.b64encode(buffer.getvalue()).decode(),
    )  # fmt: skip


UNSEEN = (
    '[The user attached "shot.png", but the model in use cannot see images: '
    f"an image, 64{BY}48 PNG.]"
)
TEXT_ONLY_NOTE = UNSEEN_NOTE.format(model="text-only")
VISION_NOTE = UNSEEN_NOTE.format(model="vision")


class Images:
    """An engine over two models on one gateway: ``vision`` (the default, configured to take
    images) and ``text-only`` (configured not to)."""

    def __init__(
        self,
        gateway: FakeGateway,
        http: httpx2.AsyncClient,
        *,
        anthropic: bool,
        store: ConversationStore | None = None,
    ) -> None:
        self.gateway, self.http, self.anthropic = gateway, http, anthropic
        self.store = store or MemoryStore()
        self.engine = ConversationEngine(
            models=ModelRegistry(
                [self.model("vision", images=True), self.model("text-only", images=False)],
                default="vision",
            ),
            store=self.store, tools=ToolRegistry(), config=CONFIG, retry=NO_WAIT,
            now=lambda: datetime(2026, 11, 25, 14, 30, tzinfo=UTC),
        )  # fmt: skip

    def model(self, name: str, *, images: bool) -> ConfiguredModel:
        base_url = self.gateway.url if self.anthropic else self.gateway.url + "/v1"
        endpoint = ModelEndpoint(
            name=name, protocol="anthropic" if self.anthropic else "openai", base_url=base_url,
            model=f"{name}/model-id", supports_images=images,
        )  # fmt: skip
        client = LLMClient(
            http=self.http,
            protocol=AnthropicProtocol() if self.anthropic else OpenAIProtocol(),
            base_url=base_url,
            api_key="sk-test",
            timeouts=Timeouts(connect=10, read_idle=10, total=30),
        )
        return ConfiguredModel(endpoint=endpoint, client=client)

    def answer(self, text: str) -> Stream:
        return Stream(anthropic_events(text) if self.anthropic else openai_chunks(text))

    async def turn(
        self,
        text: str,
        *images: ImageContent,
        model: str | None = None,
        key: ConversationKey = KEY,
        author: str = "Ada",
    ) -> list[EngineEvent]:
        order = f"{next(_orders):06d}"
        question = UserMessage(
            text=text, author_id=f"U-{author}", author_name=author, attachments=images
        )
        await self.store.accept(
            event_id=f"test:{order}", key=key, order=order, question=question,
            platform="slack", timezone=None, claim_ttl=60,
        )  # fmt: skip
        lease = await self.store.take(key, owner="worker-1", lease_seconds=60)
        assert lease is not None
        async with aclosing(self.engine.run_turn(lease, model=model)) as events:
            out = [event async for event in events]
        final = out[-1]
        if isinstance(final, TurnFinished):
            await self.store.delivered(lease.turn.id, [])
        return out

    def last_question(self, request: RecordedRequest) -> list[dict[str, Any]]:
        """The content parts of the request's last user message."""
        user = [m for m in request.json["messages"] if m["role"] == "user"][-1]
        content: list[dict[str, Any]] = user["content"]
        return content


def kinds(parts: list[dict[str, Any]]) -> list[str]:
    return [part["type"] for part in parts]


def carries_an_image(request: RecordedRequest) -> bool:
    body = json.dumps(request.json)
    return '"image_url"' in body or '"type": "image"' in body


def final(events: list[EngineEvent]) -> TurnFinished:
    last = events[-1]
    assert isinstance(last, TurnFinished), last
    assert last.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    return last


@pytest.fixture(params=["openai", "anthropic"])
def images(
    request: pytest.FixtureRequest, gateway: FakeGateway, http: httpx2.AsyncClient
) -> Images:
    return Images(gateway, http, anthropic=request.param == "anthropic")


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
async def test_a_follow_up_still_sends_the_image_from_the_sqlite_store(
    gateway: FakeGateway, http: httpx2.AsyncClient, tmp_path: Path, anthropic: bool
) -> None:
    """The image is kept once in the store's blob table, not in the message row, and a later
    turn of the thread sends it again, in the protocol's shape."""
    store = await SqliteStore.open(tmp_path / "relaybot.db")
    try:
        images = Images(gateway, http, anthropic=anthropic, store=store)
        images.gateway.enqueue(images.answer("A teal rectangle."), images.answer("Teal."))
        await images.turn("What is this?", png())
        events = await images.turn("What colour was the image?")
        assert final(events).text == "Teal."
    finally:
        await store.close()
    first, second = images.gateway.requests
    users = [m for m in second.json["messages"] if m["role"] == "user"]
    assert kinds(users[0]["content"]) == ["image" if anthropic else "image_url", "text"]
    assert carries_an_image(second)
    assert json.dumps(images.last_question(first)) in json.dumps(second.json)  # the same image
    with sqlite3.connect(tmp_path / "relaybot.db") as db:
        rows = db.execute("SELECT body FROM messages").fetchall()
        assert all(png().data not in row[0] for row in rows)  # not in the message rows
        assert db.execute("SELECT COUNT(*) FROM blobs").fetchone() == (1,)


async def test_a_model_that_sees_images_is_sent_them_before_the_question(images: Images) -> None:
    images.gateway.enqueue(images.answer("A teal rectangle."))
    events = await images.turn("What is this?", png())

    assert final(events).text == "A teal rectangle."
    [request] = images.gateway.requests
    parts = images.last_question(request)
    assert kinds(parts) == ["image_url" if not images.anthropic else "image", "text"]
    assert parts[-1]["text"] == "What is this?"


async def test_a_model_configured_without_images_reads_a_sentence_and_the_user_is_told_once(
    images: Images,
) -> None:
    images.gateway.enqueue(images.answer("I can't see it."), images.answer("Still can't."))
    first = await images.turn("What is this?", png(), model="text-only")
    second = await images.turn("And what colour was it?", model="text-only")

    assert [carries_an_image(request) for request in images.gateway.requests] == [False, False]
    asked = images.last_question(images.gateway.requests[0])
    assert [part["text"] for part in asked] == [UNSEEN, "What is this?"]
    earlier = next(m for m in images.gateway.requests[1].json["messages"] if m["role"] == "user")
    assert earlier["content"][0] == {"type": "text", "text": UNSEEN}  # again, with no image
    assert final(first).text == "I can't see it." + TEXT_ONLY_NOTE
    assert final(second).text == "Still can't."  # told once per conversation
    # The line is for the user: saved with the answer, never as the model's words.
    history = await images.store.load(KEY)
    assert [m.text for m in history if isinstance(m, AssistantMessage)] == [
        "I can't see it.",
        "Still can't.",
    ]


async def test_a_gateway_refusing_images_is_asked_again_without_them_and_remembered(
    images: Images,
) -> None:
    refusal = (
        Error.anthropic(400, "invalid_request_error", "this model does not support image input")
        if images.anthropic
        else Error.openai(
            400,
            "Invalid content type. image_url is only supported by certain models.",
            type="invalid_request_error",
        )
    )

    def respond(request: RecordedRequest) -> Reply:
        return refusal if carries_an_image(request) else images.answer("From the note only.")

    async with FakeGateway(respond=respond) as text_only:  # the gateway of a text-only model
        images = Images(text_only, images.http, anthropic=images.anthropic)
        await refused_then_remembered(images)


async def refused_then_remembered(images: Images) -> None:
    first = await images.turn("What is this?", png())
    assert [carries_an_image(request) for request in images.gateway.requests] == [True, False]
    assert final(first).text == "From the note only." + VISION_NOTE
    retried = images.last_question(images.gateway.requests[1])
    assert [part["text"] for part in retried] == [UNSEEN, "What is this?"]

    # Remembered for the process: later turns send no image at all, and the thread was told.
    second = await images.turn("And this one?", png())
    assert final(second).text == "From the note only."
    elsewhere = await images.turn("Look", png(), key=OTHER)
    assert final(elsewhere).text == "From the note only." + VISION_NOTE  # another thread
    assert [carries_an_image(request) for request in images.gateway.requests] == [
        True,
        False,
        False,
        False,
    ]


async def test_an_image_refusal_for_a_request_without_images_fails_the_turn(
    images: Images,
) -> None:
    """Nothing to take out: the error is the user's to read, after one request."""
    images.gateway.enqueue(Error.openai(400, "this model does not support image input"))
    events = await images.turn("Hello")

    assert len(images.gateway.requests) == 1
    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert "does not support image input" in failed.message


async def test_several_people_keep_their_names_beside_their_images(images: Images) -> None:
    images.gateway.enqueue(images.answer("Hi Ada."), images.answer("A teal rectangle, Bob."))
    await images.turn("Hello", author="Ada")
    await images.turn("What is this?", png(), author="Bob")

    parts = images.last_question(images.gateway.requests[1])
    assert kinds(parts)[0] in ("image_url", "image")
    assert parts[-1] == {"type": "text", "text": "Bob: What is this?"}
