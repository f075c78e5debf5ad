"""A user message's attachments in both protocols' request bodies, and the gateway errors that
say a model cannot take images."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import BadRequest, ContextTooLong, RateLimited, ServerError
from core.messages import (
    FileNote,
    FileText,
    ImageContent,
    ModelRequest,
    UserMessage,
)
from core.protocols import AnthropicProtocol, OpenAIProtocol, WireProtocol
from core.protocols.base import classify_error, looks_like_image_refusal
from core.vision import refuses_images

PNG = ImageContent(
    name="screen.png", media_type="image/png", sha256="ab" * 32, width=640, height=480,
    description="an image, 640 by 480 PNG", data="iVBORw0KGgo=",
)  # fmt: skip
GONE = PNG.model_copy(update={"name": "old.png", "data": None})
REPORT = FileText(
    name="report.pdf",
    text='File "report.pdf": a PDF, 3 pages, 120 characters\n<user-file name="report.pdf">\n…',
    description="a PDF, 3 pages, 120 characters",
)
SKIPPED = FileNote(name="tool.exe", note='"tool.exe" was skipped: relaybot cannot read it.')
GONE_TEXT = (
    '[An image the user attached earlier, "old.png" (an image, 640 by 480 PNG), is no longer kept.]'
)
MESSAGE = UserMessage(text="What do these show?", attachments=(PNG, REPORT, SKIPPED, GONE))


def body(protocol: WireProtocol, *messages: UserMessage) -> list[dict[str, Any]]:
    messages_of: list[dict[str, Any]] = protocol.request_body(
        ModelRequest(model="m", messages=messages)
    )["messages"]
    return messages_of


def test_openai_sends_attachments_as_parts_before_the_text() -> None:
    assert body(OpenAIProtocol(), MESSAGE) == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": REPORT.text},
                {"type": "text", "text": '["tool.exe" was skipped: relaybot cannot read it.]'},
                {"type": "text", "text": GONE_TEXT},
                {"type": "text", "text": "What do these show?"},
            ],
        }
    ]


def test_anthropic_sends_attachments_as_blocks_before_the_text() -> None:
    assert body(AnthropicProtocol(), MESSAGE) == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "text", "text": REPORT.text},
                {"type": "text", "text": '["tool.exe" was skipped: relaybot cannot read it.]'},
                {"type": "text", "text": GONE_TEXT},
                {"type": "text", "text": "What do these show?"},
            ],
        }
    ]


def test_an_image_alone_has_no_empty_text_part() -> None:
    only = UserMessage(text="", attachments=(PNG,))
    openai = body(OpenAIProtocol(), only)[0]["content"]
    anthropic = body(AnthropicProtocol(), only)[0]["content"]
    assert ([part["type"] for part in openai], [block["type"] for block in anthropic]) == (
        ["image_url"],
        ["image"],
    )


def test_a_message_without_attachments_keeps_its_plain_string_body() -> None:
    plain = UserMessage(text="hi")
    assert body(OpenAIProtocol(), plain) == [{"role": "user", "content": "hi"}]
    assert body(AnthropicProtocol(), plain) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]


def test_anthropic_merges_a_follow_up_after_an_attachment_message() -> None:
    """Two user messages in a row (an unanswered turn) still make one Anthropic message."""
    follow_up = UserMessage(text="And now?")
    blocks = body(AnthropicProtocol(), UserMessage(text="Look", attachments=(PNG,)), follow_up)
    assert [[block["type"] for block in message["content"]] for message in blocks] == [
        ["image", "text", "text"]
    ]


@pytest.mark.parametrize(
    "message",
    [
        "Invalid content type. image_url is only supported by certain models.",  # OpenAI
        "this model does not support image input (ref: 1b2c)",  # Ollama, Anthropic-compatible
        "Model do not support image input.",
        "No endpoints found that support image input",  # OpenRouter, a 404
        "Qwen2ForCausalLM is not a multimodal model",  # vLLM
        "At most 0 image(s) may be provided in one request.",  # vLLM
        "this model is missing data required for image input",  # older Ollama
        "Image inputs are not supported by this model.",
        "claude-x does not support images",
        "The model doesn't support vision",
    ],
)
def test_gateway_wordings_for_a_model_that_cannot_take_images(message: str) -> None:
    assert looks_like_image_refusal("invalid_request_error", message)
    assert refuses_images(classify_error(status=400, kind="invalid_request_error", message=message))


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("max_tokens: must be a positive integer", status=400),
        BadRequest("Could not process image: the data is not a valid PNG", status=400),
        ContextTooLong("prompt is too long: image input counts too", status=400),
        RateLimited("this model does not support image input", status=429),
        ServerError("upstream failed", status=500),
    ],
)
def test_other_errors_are_not_an_image_refusal(error: BadRequest) -> None:
    assert not refuses_images(error)


def test_a_server_error_that_says_so_is_a_refusal_too() -> None:
    """Some local servers answer a text-only model's image with a 500."""
    assert refuses_images(ServerError("this model does not support image input", status=500))
