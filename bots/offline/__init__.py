"""relaybot's offline model: a loopback LLM server that needs no key and no network.

    async with OfflineLLMServer(pace=0) as server:
        LLMClient(base_url=server.openai_base_url, ...)     # POST {url}/v1/chat/completions
        LLMClient(base_url=server.anthropic_base_url, ...)  # POST {url}/v1/messages

- :mod:`~bots.offline.conversation`: what the model reads and writes, protocol-neutral.
- :mod:`~bots.offline.bodies`: request bodies of both protocols, read into a conversation.
- :mod:`~bots.offline.attached`: the images and files of a user message, told apart from what
  the user wrote, and put into words.
- :mod:`~bots.offline.model`: :class:`OfflineModel`, pure — a request body in, an
  :class:`Answer` out (the words to stream, the tool calls, the finish reason).
- :mod:`~bots.offline.weather`: "the weather in <city>", and tool results put into words.
- :mod:`~bots.offline.sse`: an answer as the SSE events of either protocol.
- :mod:`~bots.offline.server`: :class:`OfflineLLMServer`, the aiohttp app that streams them,
  and :func:`run_offline_llm` for ``relaybot offline-llm``.
"""

from bots.offline.conversation import Answer, PlannedCall, RequestRejected
from bots.offline.model import INTRO, MODEL_NAME, OfflineModel
from bots.offline.server import OfflineLLMServer, run_offline_llm
from bots.offline.sse import anthropic_events, openai_events
from bots.offline.weather import weather_city, word_weather

__all__ = [
    "INTRO",
    "MODEL_NAME",
    "Answer",
    "OfflineLLMServer",
    "OfflineModel",
    "PlannedCall",
    "RequestRejected",
    "anthropic_events",
    "openai_events",
    "run_offline_llm",
    "weather_city",
    "word_weather",
]
