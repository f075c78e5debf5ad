"""Fixtures every test module may ask for by name; helpers imported by name are in
``tests/support/``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from tests.fakes.llm_gateway import FakeGateway

# Before any test module imports them: asserts in the shared helpers report like a test's own.
pytest.register_assert_rewrite("tests.support")


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    """The loopback LLM gateway, speaking both protocols; ``enqueue`` what it answers."""
    async with FakeGateway() as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """An ``httpx2`` client for ``LLMClient`` and the tools, closed after the test."""
    async with httpx2.AsyncClient() as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What ``sdk_quirk`` recorded (tests/test_differential.py): an SDK newer than the one a
    quirk was pinned on, and whether it still has it. A note for the next pin refresh."""
    notes = [
        f"{report.nodeid.rpartition('::')[2]}: {value}"
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", ())
        if name == "sdk_quirk"
    ]
    if notes:
        terminalreporter.section("SDK behaviour past its pin")
        for note in notes:
            terminalreporter.line(note)
