"""What the Slack and Discord bot harnesses share: the bot, the fake gateway it asks, and
waiting on them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from tests.fakes.llm_gateway import FakeGateway
from tests.support.waiting import until

__all__ = ["BotHarness"]


class Busy(Protocol):
    @property
    def busy(self) -> int:
        """Messages being handled right now."""
        ...


BotT = TypeVar("BotT", bound=Busy)


class BotHarness(Generic[BotT]):
    """A running bot and the fake gateway its model calls go to."""

    def __init__(self, bot: BotT, gateway: FakeGateway) -> None:
        self.bot, self.gateway = bot, gateway

    async def until(self, condition: Callable[[], object], what: str) -> None:
        await until(condition, what)

    async def settled(self) -> None:
        """Every message the bot took is handled: answered, refused or dropped."""
        await self.until(lambda: self.bot.busy == 0, "the bot is idle")

    def model_messages(self, index: int) -> list[tuple[str, str]]:
        """(role, content) of each message of the ``index``-th model request."""
        body = self.gateway.requests[index].json
        return [(m["role"], m.get("content") or "") for m in body["messages"][1:]]
