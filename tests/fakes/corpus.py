"""The differential corpus: model streams as gateways send them, in literal SSE bytes.

Each constant is a :class:`~tests.fakes.llm_gateway.Stream` for the fake gateway: one item of
``writes`` per network write, one SSE event per line of this file, as it looks on the wire
(recorded-style ids, ``created``, ``model``, ``system_fingerprint``, ``obfuscation``...).

- :data:`OPENAI_STREAMS` and :data:`ANTHROPIC_STREAMS` — streams a correct client and the
  official SDKs' accumulators read alike (``tests/test_differential.py`` checks both against
  the expected answer).
- The constants after them are streams on which the SDKs go wrong: compatible servers bending
  the protocol (an id repeated in every chunk, no ``index``, parallel calls sharing one index,
  no ``event:`` lines, ``id:`` lines and blank ``data:`` lines, a byte order mark), streams
  that stop early, and a tool_use block cut by ``max_tokens``.
- :data:`ANTHROPIC_SERVER_TOOL_USE` — a web search run by Anthropic, which relaybot reads as a
  client tool call (a known core bug, pinned by an ``xfail`` test).

Where a builder of :mod:`tests.fakes.streams` is faithful enough (the point of the stream is
how its bytes are cut, not what they say) it is used instead of literal bytes.
"""

# ruff: noqa: E501  -- one SSE event per line, as on the wire

from __future__ import annotations

import re
from dataclasses import replace

from tests.fakes.llm_gateway import Stream
from tests.fakes.streams import anthropic_events, openai_chunks

__all__ = [
    "ANTHROPIC_AFTER_BOM",
    "ANTHROPIC_CUT_BEFORE_MESSAGE_STOP",
    "ANTHROPIC_MAX_TOKENS_IN_TOOL_USE",
    "ANTHROPIC_PINGS",
    "ANTHROPIC_RESET_MID_STREAM",
    "ANTHROPIC_SERVER_TOOL_USE",
    "ANTHROPIC_STREAMS",
    "ANTHROPIC_TEXT",
    "ANTHROPIC_THINKING",
    "ANTHROPIC_TOOL_USE",
    "ANTHROPIC_WITHOUT_EVENT_LINES",
    "BOM",
    "MULTIBYTE_TEXT",
    "OPENAI_AFTER_BOM",
    "OPENAI_BLANK_DATA_AFTER_ID",
    "OPENAI_CUT_BEFORE_DONE",
    "OPENAI_KEEPALIVE_AFTER_ID",
    "OPENAI_PARALLEL_CALLS_SHARING_INDEX",
    "OPENAI_REPEATED_TOOL_CALL_ID",
    "OPENAI_STREAMS",
    "OPENAI_TEXT",
    "OPENAI_TOOL_CALLS_WITHOUT_INDEX",
    "OPENAI_USAGE_ONLY_FINAL_CHUNK",
]

MULTIBYTE_TEXT = "Grüße aus Köln 🌧️ — 東京は晴れ、気温は２１度。Ça va? Ελλάδα ☀"
"""Text whose characters are 1 to 4 bytes long in UTF-8 (and one with a variation selector)."""


def _without_event_lines(stream: Stream) -> Stream:
    return replace(stream, writes=[re.sub(rb"(?m)^event: [^\n]*\n", b"", w) for w in stream.writes])


def _no_space_after_colon(stream: Stream) -> Stream:
    return replace(
        stream, writes=[re.sub(rb"(?m)^(data|event): ", rb"\1:", w) for w in stream.writes]
    )


# --- OpenAI Chat Completions: streams everyone reads alike ----------------------------------

OPENAI_TEXT = Stream(
    [
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"obfuscation":"mV3t"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":"Paris"},"logprobs":null,"finish_reason":null}],"obfuscation":"q0"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}],"obfuscation":"Zk8sW"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"obfuscation":"7Hd"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" capital"},"logprobs":null,"finish_reason":null}],"obfuscation":"x"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" of"},"logprobs":null,"finish_reason":null}],"obfuscation":"pQ4m"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" France."},"logprobs":null,"finish_reason":null}],"obfuscation":"n2"}\n\n',
        b'data: {"id":"chatcmpl-CI7wLw2Qv3mYk1hTn0sRa9ZeXbFdP","object":"chat.completion.chunk","created":1758528813,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"obfuscation":"Yw1c"}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""gpt-4o, no ``stream_options``: no ``usage`` field at all."""

OPENAI_USAGE_ONLY_FINAL_CHUNK = Stream(
    [
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Hc9"}\n\n',
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[{"index":0,"delta":{"content":"Done"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"a1Pq"}\n\n',
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[{"index":0,"delta":{"content":" \xe2\x80\x94 see"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"0"}\n\n',
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[{"index":0,"delta":{"content":" the summary above."},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Vt"}\n\n',
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"kE2r"}\n\n',
        b'data: {"id":"chatcmpl-CI7xR0pHc4eJ2mZb8uQk5tWnVy1Lg","object":"chat.completion.chunk","created":1758528871,"model":"gpt-4.1-mini-2025-04-14","service_tier":"default","system_fingerprint":"fp_4fce0778af","choices":[],"usage":{"prompt_tokens":1187,"completion_tokens":9,"total_tokens":1196,"prompt_tokens_details":{"cached_tokens":1152,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"u7Bz3"}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""``stream_options.include_usage``: ``"usage":null`` in every chunk, then a chunk with
``"choices":[]`` and the usage (cached prompt tokens included)."""

OPENAI_PARALLEL_TOOL_CALLS = Stream(
    [
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Dcuer5y2RowXl7Ig47gCS9Ft","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_7QmZ0bXk2Yp9Lw4eRt1NvHsA","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\\"city\\": \\"T"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\\": \\"Z\xc3\xbcr"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"okyo\\", \\"unit\\": \\"celsius\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ich\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7yT4mXo1bKq9Wd2sLh6fRg0PaJe","object":"chat.completion.chunk","created":1758528930,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":48,"total_tokens":130,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""Two ``get_weather`` calls whose argument fragments interleave (as a gateway that merges
upstream streams sends them); one argument holds a two-byte character."""

OPENAI_REFUSAL = Stream(
    [
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"refusal":"I\xe2\x80\x99m"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"refusal":" sorry,"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"refusal":" I can\xe2\x80\x99t help with that."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI7zP2nVr8cHw5Kx0mTb3jYq6LdGs","object":"chat.completion.chunk","created":1758528992,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[],"usage":{"prompt_tokens":61,"completion_tokens":11,"total_tokens":72,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""A structured-output refusal: ``delta.refusal`` pieces, ``content`` null throughout."""

OPENAI_FINISH_LENGTH = Stream(
    [
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":"Once upon"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" a time, in"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI80a9TgKs3Lq7Xv1pRz5mWc2NyHb","object":"chat.completion.chunk","created":1758529050,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":8,"total_tokens":27,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""``max_tokens: 8``: the text stops mid-sentence, ``finish_reason: "length"``."""

OPENAI_FINISH_LENGTH_IN_TOOL_CALL = Stream(
    [
        b'data: {"id":"chatcmpl-CI81c3WqHd8Nx2Tb6kLp0sYr4MvEj","object":"chat.completion.chunk","created":1758529112,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Hn2wq9XbLk4Tz0Rv7YsMe1Pd","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI81c3WqHd8Nx2Tb6kLp0sYr4MvEj","object":"chat.completion.chunk","created":1758529112,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI81c3WqHd8Nx2Tb6kLp0sYr4MvEj","object":"chat.completion.chunk","created":1758529112,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Reykjav"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI81c3WqHd8Nx2Tb6kLp0sYr4MvEj","object":"chat.completion.chunk","created":1758529112,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI81c3WqHd8Nx2Tb6kLp0sYr4MvEj","object":"chat.completion.chunk","created":1758529112,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[],"usage":{"prompt_tokens":77,"completion_tokens":6,"total_tokens":83,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""``max_tokens`` hit inside a tool call's arguments: the JSON is cut off."""

OPENAI_REASONING_CONTENT = Stream(
    [
        b": keep-alive\n\n",
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"The user"},"logprobs":null,"finish_reason":null}]}\n\n',
        b": keep-alive\n\n",
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" asks for 9.11 vs 9.9;"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" 0.90 > 0.11."},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"9.9","reasoning_content":null},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" is larger.","reasoning_content":null},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"0f3d7c52-6a1e-4b8f-9c2d-5e7a8b1c4d6f","object":"chat.completion.chunk","created":1758529170,"model":"deepseek-reasoner","system_fingerprint":"fp_7e0991cad4_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":29,"total_tokens":47,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":21},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":18}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""DeepSeek: ``reasoning_content`` before ``content``, ``: keep-alive`` comments, and the usage
on the finish chunk itself."""

OPENAI_REASONING = Stream(
    [
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Short","reasoning_details":[{"type":"reasoning.text","text":"Short","format":"unknown","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" answer:","reasoning_details":[{"type":"reasoning.text","text":" answer:","format":"unknown","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" greet back.","reasoning_details":[{"type":"reasoning.text","text":" greet back.","format":"unknown","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello","reasoning":null,"reasoning_details":[]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":" there!","reasoning":null,"reasoning_details":[]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":null,"reasoning_details":[]},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]}\n\n',
        b'data: {"id":"gen-1758529231-Qw8ZbT3mKx1LpV7cRn0H","provider":"xAI","model":"x-ai/grok-3-mini","object":"chat.completion.chunk","created":1758529231,"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":31,"total_tokens":40,"cost":0.0000182,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null},"completion_tokens_details":{"reasoning_tokens":27,"image_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""OpenRouter: ``reasoning`` (with ``reasoning_details``), ``role`` repeated in every delta,
``: OPENROUTER PROCESSING`` comments."""

OPENAI_CRLF = Stream(
    [
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"content":"Checking."},"logprobs":null,"finish_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"tool_calls":[{"id":"chatcmpl-tool-5b8e0f3c2a714d6e9f1b","type":"function","index":0,"function":{"name":"get_weather"}}]},"logprobs":null,"finish_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": \\""}}]},"logprobs":null,"finish_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"S\xc3\xa3o Paulo\\"}"}}]},"logprobs":null,"finish_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}]}\r\n\r\n',
        b'data: {"id":"chatcmpl-8d2f6c1a9b3e4f70a5c8e2d1b6f4a9c3","object":"chat.completion.chunk","created":1758529290,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[],"usage":{"prompt_tokens":212,"total_tokens":241,"completion_tokens":29,"prompt_tokens_details":null}}\r\n\r\n',
        b"data: [DONE]\r\n\r\n",
    ],
    write_size=7,
)
"""vLLM behind a proxy that ends lines with CRLF, in 7-byte writes (so a CRLF, and the
``ã``, fall across writes); its first tool-call delta has no ``arguments``."""

OPENAI_KEEPALIVES = Stream(
    [
        b": keep-alive\n\n",
        b'data: {"id":"chatcmpl-CI82e7YsNf0Pw4Vd8mRq2uAt6OxKl","object":"chat.completion.chunk","created":1758529350,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b": keep-alive\n\n: keep-alive\n\n",
        b'data: {"id":"chatcmpl-CI82e7YsNf0Pw4Vd8mRq2uAt6OxKl","object":"chat.completion.chunk","created":1758529350,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":"Still"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n: keep-alive\n\n',
        b'data: {"id":"chatcmpl-CI82e7YsNf0Pw4Vd8mRq2uAt6OxKl","object":"chat.completion.chunk","created":1758529350,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{"content":" here."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b": keep-alive\n\n",
        b'data: {"id":"chatcmpl-CI82e7YsNf0Pw4Vd8mRq2uAt6OxKl","object":"chat.completion.chunk","created":1758529350,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-CI82e7YsNf0Pw4Vd8mRq2uAt6OxKl","object":"chat.completion.chunk","created":1758529350,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_cbf1785567","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b": keep-alive\n\n",
        b"data: [DONE]\n\n",
    ]
)
"""A proxy's ``: keep-alive`` comments before, between and after the chunks."""

OPENAI_MULTIBYTE_SMALL_WRITES = Stream(
    openai_chunks(MULTIBYTE_TEXT, pieces=3, usage=(21, 17), model="gpt-4o-2024-08-06"),
    write_size=3,
)
"""Multi-byte text in 3-byte writes: characters fall across writes at every offset."""

OPENAI_AZURE_CONTENT_FILTER = Stream(
    [
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1758529710,"id":"chatcmpl-CI83gA1xTq6Lm9Rw2Vb5Nk8Ys0PcJ","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"Azure"},"finish_reason":null,"index":0,"logprobs":null}],"created":1758529710,"id":"chatcmpl-CI83gA1xTq6Lm9Rw2Vb5Nk8Ys0PcJ","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" says hi."},"finish_reason":null,"index":0,"logprobs":null}],"created":1758529710,"id":"chatcmpl-CI83gA1xTq6Lm9Rw2Vb5Nk8Ys0PcJ","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1758529710,"id":"chatcmpl-CI83gA1xTq6Lm9Rw2Vb5Nk8Ys0PcJ","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}\n\n',
        b'data: {"choices":[{"content_filter_offsets":{"check_offset":44,"start_offset":44,"end_offset":59},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"finish_reason":null,"index":0}],"created":0,"id":"","model":"","object":""}\n\n',
        b'data: {"choices":[],"created":1758529710,"id":"chatcmpl-CI83gA1xTq6Lm9Rw2Vb5Nk8Ys0PcJ","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0","usage":{"completion_tokens":4,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":13,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":17}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""Azure OpenAI: a first chunk of ``prompt_filter_results`` and a late asynchronous-filter
chunk, both with ``"object":""`` and no ``delta``; ``content_filter_results`` in every choice."""


OPENAI_NO_SPACE_AFTER_COLON = _no_space_after_colon(OPENAI_PARALLEL_TOOL_CALLS)
""":data:`OPENAI_PARALLEL_TOOL_CALLS` as a Spring ``SseEmitter`` writes it: ``data:{...}``."""

OPENAI_STREAMS: dict[str, Stream] = {
    "text": OPENAI_TEXT,
    "usage-only-final-chunk": OPENAI_USAGE_ONLY_FINAL_CHUNK,
    "parallel-tool-calls-interleaved": OPENAI_PARALLEL_TOOL_CALLS,
    "refusal": OPENAI_REFUSAL,
    "finish-length": OPENAI_FINISH_LENGTH,
    "finish-length-in-tool-call": OPENAI_FINISH_LENGTH_IN_TOOL_CALL,
    "reasoning-content": OPENAI_REASONING_CONTENT,
    "reasoning": OPENAI_REASONING,
    "crlf": OPENAI_CRLF,
    "keep-alive-comments": OPENAI_KEEPALIVES,
    "multibyte-3-byte-writes": OPENAI_MULTIBYTE_SMALL_WRITES,
    "azure-content-filter": OPENAI_AZURE_CONTENT_FILTER,
    "no-space-after-colon": OPENAI_NO_SPACE_AFTER_COLON,
}


# --- Anthropic Messages: streams everyone reads alike ---------------------------------------

ANTHROPIC_TEXT = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":2,"service_tier":"standard"}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" ! Je suis Claude, ravi de"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" vous aider."}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":14}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)

ANTHROPIC_TOOL_USE = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":2,"service_tier":"standard"}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let\'s check the weather for San Francisco, CA:"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\\""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"unit\\": \\"fah"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":89}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
"""Text, then a ``tool_use`` block whose input arrives as ``input_json_delta`` pieces (the first
one empty); cache reads in the usage, repeated in ``message_delta`` as the API now does."""

ANTHROPIC_THINKING = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01QmB2vYxZ8HcWp5nRk3JtLs","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":44,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":4,"service_tier":"standard"}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"27 * 453 = 27 * 400 + 27 * 53"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" = 10800 + 1431 = 12231."}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds6dLZ3O0eFX1lZk2FlkKM8mOHLnE3r7aJq6RxqSt9mcXfkM6b2Lw7Wk="}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB3URj2pB"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"27 \xc3\x97 453 = **12,231**"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":141}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
"""Extended thinking: a thinking block closed by a ``signature_delta``, a ``redacted_thinking``
block, then the text."""

ANTHROPIC_PINGS = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-haiku-4-5-20251001","id":"msg_01HkR7vTq3NwZpX2bYcL9mFs","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":16,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Still"}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\nevent: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" thinking about it."}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
"""``ping`` events before, inside and after the content."""

ANTHROPIC_CRLF_BYTE_WRITES = Stream(
    [
        event.replace(b"\n", b"\r\n")
        for event in anthropic_events(
            MULTIBYTE_TEXT,
            tool_uses=[("toolu_01Ab3kZ9wQpR2sT4uV6xY8zC", "get_weather", '{"city": "東京"}')],
            usage=(30, 52),
            model="claude-sonnet-4-5-20250929",
            id="msg_01CrLfByTeWr1tEsZx9QpLmN",
            pieces=5,
        )
    ],
    write_size=1,
)
"""Multi-byte text and tool input, CRLF line ends, one byte per write."""

ANTHROPIC_NO_SPACE_AFTER_COLON = _no_space_after_colon(ANTHROPIC_THINKING)
""":data:`ANTHROPIC_THINKING` with ``event:name`` and ``data:{...}`` lines."""

ANTHROPIC_STREAMS: dict[str, Stream] = {
    "text": ANTHROPIC_TEXT,
    "tool-use-input-json-delta": ANTHROPIC_TOOL_USE,
    "thinking-signature-redacted": ANTHROPIC_THINKING,
    "pings": ANTHROPIC_PINGS,
    "crlf-1-byte-writes": ANTHROPIC_CRLF_BYTE_WRITES,
    "no-space-after-colon": ANTHROPIC_NO_SPACE_AFTER_COLON,
}


# --- Streams on which the SDKs go wrong -----------------------------------------------------

OPENAI_REPEATED_TOOL_CALL_ID = Stream(
    [
        b'data: {"id":"chatcmpl-2c61f0e5-7b4d-4a8e-b1f9-3d0c6e9a5b72","object":"chat.completion.chunk","created":1758529410,"model":"accounts/fireworks/models/qwen3-235b-a22b","choices":[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-2c61f0e5-7b4d-4a8e-b1f9-3d0c6e9a5b72","object":"chat.completion.chunk","created":1758529410,"model":"accounts/fireworks/models/qwen3-235b-a22b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_kQ3vB7xZ1mWn9RtY","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\": "}}]},"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-2c61f0e5-7b4d-4a8e-b1f9-3d0c6e9a5b72","object":"chat.completion.chunk","created":1758529410,"model":"accounts/fireworks/models/qwen3-235b-a22b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_kQ3vB7xZ1mWn9RtY","type":"function","function":{"name":"get_weather","arguments":"\\"Lisbon\\"}"}}]},"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-2c61f0e5-7b4d-4a8e-b1f9-3d0c6e9a5b72","object":"chat.completion.chunk","created":1758529410,"model":"accounts/fireworks/models/qwen3-235b-a22b","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":154,"total_tokens":175,"completion_tokens":21}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""Fireworks / DeepSeek / Qwen style: the call's ``id`` and ``name`` repeated whole in every
fragment."""

OPENAI_TOOL_CALLS_WITHOUT_INDEX = Stream(
    [
        b'data: {"choices":[{"delta":{"role":"assistant","tool_calls":[{"function":{"arguments":"{\\"city\\":\\"Sydney\\"}","name":"get_weather"},"id":"function-call-4431597201934551203","type":"function"}]},"index":0}],"created":1758529470,"id":"Ti7NaK2dB8mQvP0zr5WcL","model":"gemini-2.5-flash","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"delta":{"role":"assistant","tool_calls":[{"function":{"arguments":"{\\"city\\":\\"Perth\\"}","name":"get_weather"},"id":"function-call-4431597201934551204","type":"function"}]},"index":0}],"created":1758529470,"id":"Ti7NaK2dB8mQvP0zr5WcL","model":"gemini-2.5-flash","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"delta":{"role":"assistant"},"finish_reason":"stop","index":0}],"created":1758529470,"id":"Ti7NaK2dB8mQvP0zr5WcL","model":"gemini-2.5-flash","object":"chat.completion.chunk","usage":{"completion_tokens":18,"prompt_tokens":63,"total_tokens":81}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""Gemini's OpenAI-compatible endpoint: tool calls without ``index``, each whole in one
chunk, and ``finish_reason: "stop"`` after them."""

OPENAI_PARALLEL_CALLS_SHARING_INDEX = Stream(
    [
        b'data: {"id":"chatcmpl-9f7e2d4c1b0a","object":"chat.completion.chunk","created":1758529530,"model":"gemini-2.5-pro","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-9f7e2d4c1b0a","object":"chat.completion.chunk","created":1758529530,"model":"gemini-2.5-pro","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_b2d1e8f0","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Oslo\\"}"}}]},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-9f7e2d4c1b0a","object":"chat.completion.chunk","created":1758529530,"model":"gemini-2.5-pro","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_4c7a9e13","type":"function","function":{"name":"get_time","arguments":"{\\"tz\\":\\"Europe/Oslo\\"}"}}]},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-9f7e2d4c1b0a","object":"chat.completion.chunk","created":1758529530,"model":"gemini-2.5-pro","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":96,"completion_tokens":24,"total_tokens":120}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""A Gemini-to-OpenAI adapter that numbers every parallel call ``index: 0``; each call has
its own ``id``."""

OPENAI_BLANK_DATA_AFTER_ID = Stream(
    [
        b'id: 1\ndata: {"id":"chatcmpl-7a1c","object":"chat.completion.chunk","created":1758529590,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n',
        b"id: 2\ndata:\n\n",
        b'id: 3\ndata: {"id":"chatcmpl-7a1c","object":"chat.completion.chunk","created":1758529590,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{"content":" there."},"finish_reason":null}]}\n\n',
        b'id: 4\ndata: {"id":"chatcmpl-7a1c","object":"chat.completion.chunk","created":1758529590,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""A gateway that numbers its events with ``id:`` and once sends an event with a blank
``data:`` line (an empty event: nothing to read)."""

OPENAI_KEEPALIVE_AFTER_ID = Stream(
    [
        b'id: 1\ndata: {"id":"chatcmpl-7a1d","object":"chat.completion.chunk","created":1758529650,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n',
        b": keep-alive\n\n",
        b'id: 2\ndata: {"id":"chatcmpl-7a1d","object":"chat.completion.chunk","created":1758529650,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{"content":" there."},"finish_reason":null}]}\n\n',
        b'id: 3\ndata: {"id":"chatcmpl-7a1d","object":"chat.completion.chunk","created":1758529650,"model":"llama-3.3-70b","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""The same gateway's ``: keep-alive`` comment after an event that had an ``id:`` line."""

OPENAI_CUT_BEFORE_DONE = Stream(OPENAI_USAGE_ONLY_FINAL_CHUNK.writes[:3])
"""The body ends cleanly (a proxy's idle timeout, a gateway restart) after ``"Done — see"``:
no finish chunk, no ``[DONE]``."""

ANTHROPIC_CUT_BEFORE_MESSAGE_STOP = Stream(ANTHROPIC_TEXT.writes[:5])
"""The body ends cleanly in the middle of the text block: no ``message_stop``."""

ANTHROPIC_RESET_MID_STREAM = Stream(ANTHROPIC_TEXT.writes[:5], then="reset")
"""The connection is cut in the middle of the text block (an incomplete chunked body)."""


ANTHROPIC_WITHOUT_EVENT_LINES = _without_event_lines(ANTHROPIC_TOOL_USE)
""":data:`ANTHROPIC_TOOL_USE` through a gateway that drops the ``event:`` lines (each event
still says its ``type`` in its JSON)."""

ANTHROPIC_MAX_TOKENS_IN_TOOL_USE = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01Lm4xQ8vRb2NcTy7KpW3hZd","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":388,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01NbV5cX7zQwE3rT9yUiOp2A","name":"get_weather","input":{}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": \\"San Francisco, CA\\""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \\"unit\\": \\"fahr"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":32}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
"""``max_tokens: 32`` reached inside the tool_use block: its input JSON is cut off."""

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark a .NET ``StreamWriter`` (``Encoding.UTF8``) writes first."""

OPENAI_AFTER_BOM = Stream(
    [
        BOM
        + b'data: {"id":"chatcmpl-512","object":"chat.completion.chunk","created":1758529770,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-512","object":"chat.completion.chunk","created":1758529770,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":" from Ollama."},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-512","object":"chat.completion.chunk","created":1758529770,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}\n\n',
        b'data: {"id":"chatcmpl-512","object":"chat.completion.chunk","created":1758529770,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":27,"completion_tokens":5,"total_tokens":32}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
"""Ollama (its first chunk already carries text) behind a .NET proxy that starts the body with
a byte order mark."""

ANTHROPIC_AFTER_BOM = Stream([BOM + ANTHROPIC_TEXT.writes[0], *ANTHROPIC_TEXT.writes[1:]])
""":data:`ANTHROPIC_TEXT` behind the same proxy."""

ANTHROPIC_SERVER_TOOL_USE = Stream(
    [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01GjV8wWq2rHx7Tn4ZbKc3Ys","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2679,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":3,"service_tier":"standard"}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I\'ll look up the weather in Paris."}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_014hJH82Qum7Td6UV8gDXThB","name":"web_search","input":{}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"query\\": \\"weather Paris today\\"}"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"web_search_tool_result","tool_use_id":"srvtoolu_014hJH82Qum7Td6UV8gDXThB","content":[{"type":"web_search_result","title":"Paris, France 10-day weather forecast","url":"https://www.meteo-paris.example/forecast","encrypted_content":"EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3YjcSDNV4SLpLMK2","page_age":"September 22, 2025"}]}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":3,"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,"delta":{"type":"citations_delta","citation":{"type":"web_search_result_location","cited_text":"Cloudy, 18 \xc2\xb0C this afternoon.","url":"https://www.meteo-paris.example/forecast","title":"Paris, France 10-day weather forecast","encrypted_index":"Eo8BCioIAhgBIiQ3YTAwMjY1Mi1mZjM5"}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"It is cloudy and 18 \xc2\xb0C in Paris."}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":3}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10682,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":510,"server_tool_use":{"web_search_requests":1}}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
)
"""Anthropic's web search (a server tool: Anthropic runs it): a ``server_tool_use`` block, its
``web_search_tool_result``, then text with a ``citations_delta``. Nothing is left for the
client to run; ``stop_reason`` is ``end_turn``."""
