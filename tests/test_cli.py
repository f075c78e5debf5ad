"""``relaybot ask`` as a user runs it: a real process against the loopback gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass

from tests.fakes.llm_gateway import Error, FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.streams import anthropic_events, openai_chunks, without_end

KEY = "sk-cli-secret-0123456789"


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str


async def relaybot(*args: str, key: str | None = KEY, **settings: str) -> Run:
    """Run the command with a clean environment: only ``key`` and ``settings`` (as
    ``RELAYBOT_...`` variables) configure it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYBOT_", "OFOX_API_KEY"))}
    if key is not None:
        env["OFOX_API_KEY"] = key
    env.update({f"RELAYBOT_{name.upper()}": value for name, value in settings.items()})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


FAST = ("--timeout", "5", "--idle-timeout", "2")


async def test_once_json_openai(gateway: FakeGateway) -> None:
    gateway.enqueue(
        Stream(
            openai_chunks(
                "Let me check.",
                reasoning="User wants weather.",
                tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')],
                usage=(12, 34),
            )
        )
    )
    run = await relaybot(
        "ask", "--once", "--json", "--base-url", gateway.url + "/v1", *FAST, "Weather in Paris?"
    )
    assert (run.status, run.stderr) == (0, "")
    assert json.loads(run.stdout) == {
        "text": "Let me check.",
        "reasoning": "User wants weather.",
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        "finish_reason": "tool_calls",
        "usage": {"input_tokens": 12, "output_tokens": 34},
    }
    assert gateway.requests[0].json is not None
    assert gateway.requests[0].json["model"] == "openai/gpt-4o"


async def test_once_json_anthropic_has_the_same_shape(gateway: FakeGateway) -> None:
    gateway.enqueue(Stream(anthropic_events("Bonjour", stop_reason="max_tokens", usage=(5, 9))))
    run = await relaybot(
        "ask", "--once", "--json", "--protocol", "anthropic", "--base-url", gateway.url,
        *FAST, "Say hi",
    )  # fmt: skip
    assert run.status == 0, run.stderr
    assert json.loads(run.stdout) == {
        "text": "Bonjour",
        "reasoning": "",
        "tool_calls": [],
        "finish_reason": "length",
        "usage": {"input_tokens": 5, "output_tokens": 9},
    }


async def test_piped_answer_is_written_once_after_a_retry(gateway: FakeGateway) -> None:
    chunks = openai_chunks("A complete answer.")
    gateway.enqueue(Stream.cut(chunks, after=3), Stream(chunks))
    run = await relaybot("ask", "--base-url", gateway.url + "/v1", *FAST, "q")
    assert run.status == 0
    assert run.stdout == "A complete answer.\n"
    assert run.stderr == ""


async def test_rejected_key_is_one_line_without_the_key(gateway: FakeGateway) -> None:
    gateway.enqueue(Error.openai(401, f"Incorrect API key provided: {KEY}", code="invalid_api_key"))
    run = await relaybot("ask", "--base-url", gateway.url + "/v1", *FAST, "q")
    assert run.status == 1
    assert run.stdout == ""
    assert run.stderr == (
        "relaybot: I can't reach the language model: the gateway rejected my credentials. "
        "An admin needs to check the API key.\n"
    )
    assert KEY not in run.stderr
    assert "Traceback" not in run.stderr


async def test_partial_answer_is_never_success(gateway: FakeGateway) -> None:
    gateway.enqueue(*[Stream(without_end(openai_chunks("half")))] * 2)
    run = await relaybot("ask", "--attempts", "2", "--base-url", gateway.url + "/v1", *FAST, "q")
    assert run.status == 1
    assert run.stdout == ""
    assert run.stderr.splitlines()[-1] == (
        "relaybot: The language model is unavailable right now (the model's stream ended "
        "before it was complete). Please try again."
    )


async def test_unreachable_gateway() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = await relaybot("ask", "--attempts", "1", "--base-url", f"http://127.0.0.1:{port}", "q")
    assert run.status == 1
    assert run.stderr.startswith(
        "relaybot: The language model is unavailable right now (could not connect to the model "
        "gateway"
    )
    assert run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr


async def test_no_key_asks_the_offline_model_which_uses_get_weather() -> None:
    async with FakeOpenMeteo() as weather:
        run = await relaybot(
            "ask", "What's the weather in Paris?", key=None, llm__offline_pace="0",
            tools__weather_geocoding_url=weather.url, tools__weather_forecast_url=weather.url,
        )  # fmt: skip
        assert [query.params["name"] for query in weather.requests[:1]] == ["Paris"]
    assert run.status == 0, run.stderr
    announce, started, finished = run.stderr.splitlines()
    assert announce.startswith(
        "relaybot: no OFOX_API_KEY or base URL is configured, so the offline model answers"
    )
    assert started == "… Checking the weather in Paris"
    assert finished.startswith("✓ Paris, France: ")
    assert "In Paris, France it is " in run.stdout


async def test_offline_weather_without_network_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    run = await relaybot(
        "ask", "What's the weather in Paris?", key=None, llm__offline_pace="0",
        tools__weather_geocoding_url=closed, tools__weather_forecast_url=closed,
    )  # fmt: skip
    assert run.status == 0, run.stderr
    assert run.stderr.splitlines()[-1] == "✗ the weather service is unreachable right now"
    assert "the weather service is unreachable right now" in run.stdout


async def test_bad_setting_is_one_line() -> None:
    run = await relaybot("ask", "q", llm__max_tokens="-5")
    assert run.status == 2
    assert run.stderr == (
        "relaybot: config error: llm.max_tokens: Input should be greater than 0 (got '-5') "
        "[from RELAYBOT_LLM__MAX_TOKENS]\n"
    )


async def test_json_needs_once() -> None:
    run = await relaybot("ask", "--json", "q")
    assert (run.status, run.stderr) == (
        2,
        "relaybot: --json needs --once (tools are not run in JSON mode)\n",
    )
