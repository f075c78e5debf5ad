"""``relaybot console`` piped, as a user scripts it: a real process, the offline model, SQLite."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.open_meteo import FakeOpenMeteo


async def console(lines: list[str], *, store: Path, weather_url: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYBOT_", "OFOX_"))}
    env |= {
        "RELAYBOT_STORE__URL": f"sqlite:///{store}",
        "RELAYBOT_LLM__OFFLINE_PACE": "0",
        "RELAYBOT_TOOLS__WEATHER_GEOCODING_URL": weather_url,
        "RELAYBOT_TOOLS__WEATHER_FORECAST_URL": weather_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "console", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdin = "".join(line + "\n" for line in lines).encode()
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_piped_console_answers_offline_uses_weather_and_remembers(tmp_path: Path) -> None:
    async with FakeOpenMeteo() as weather:
        status, out, err = await console(
            ["Hello, my name is Ada.", "", "What's the weather in Paris?", "What did I say first?"],
            store=tmp_path / "relaybot.db",
            weather_url=weather.url,
        )
        assert [query.params["name"] for query in weather.requests[:1]] == ["Paris"]
    assert status == 0
    assert err.startswith(  # the notice goes to stderr, as ask's: stdout holds only the chat
        "relaybot: no OFOX_API_KEY or base URL is configured, so the offline model answers"
    )
    assert len(err.splitlines()) == 1
    lines = out.splitlines()
    assert lines[0].startswith("I'm relaybot's offline model")
    assert "Ada" in lines[0]
    assert any(line.startswith("In Paris, France it is ") for line in lines)
    assert lines[-1] == "The first thing you said was “Hello, my name is Ada.”"


async def test_reset_starts_a_new_conversation(tmp_path: Path) -> None:
    _, out, _ = await console(
        ["My name is Grace.", "/reset", "What did I say first?"],
        store=tmp_path / "relaybot.db",
        weather_url="http://127.0.0.1:9",
    )
    assert out.splitlines()[1:] == [
        "Starting a new conversation.",
        "I'm relaybot's offline model — no network or API key needed, so my answers are simple. "
        "This is your first message: “What did I say first?”",
    ]


async def test_commands_are_answered_and_never_sent_to_the_model(tmp_path: Path) -> None:
    _, out, _ = await console(
        ["/model", "/usage", "/frobnicate", "What did I say first?"],
        store=tmp_path / "relaybot.db",
        weather_url="http://127.0.0.1:9",
    )
    lines = out.splitlines()
    assert lines[0].startswith("This channel is answered by offline (")
    assert lines[1].startswith("Configured models: `offline`")
    assert lines[2:4] == ["Your tokens: 0 today, 0 this month.", "There are no limits."]
    assert lines[4] == "Type a message. /new (or /reset) starts a new conversation, /exit leaves."
    assert lines[5] == "relaybot commands:"
    assert lines[-1].endswith("This is your first message: “What did I say first?”")
