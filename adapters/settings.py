"""The ``[edit_budget]`` settings: how fast replies may edit their messages, shared by every
reply in a scope (see :mod:`adapters.budget`) — Slack's native streams included: their starts and
stops (``slack_stream_start``, ``slack_stream_stop``) and their appends
(``slack_stream_append``). ``bots.settings``
puts this section into relaybot's settings; ``bots.runtime.edit_rates`` turns it into
:class:`~adapters.budget.Rate`s.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from core.settings import Section

__all__ = ["EditBudgetSettings", "RateSettings"]


class RateSettings(Section):
    """``count`` calls per ``seconds``, with bursts of up to ``burst`` (a token bucket); or,
    ``sliding``, at most ``count`` calls in any ``seconds`` (``burst`` unused)."""

    count: float = Field(gt=0)
    seconds: float = Field(gt=0)
    burst: float = Field(default=1.0, ge=1)
    sliding: bool = False

    @model_validator(mode="after")
    def _whole_window(self) -> RateSettings:
        if self.sliding and self.count != int(self.count):
            raise ValueError(f"a sliding window's count must be whole, not {self.count:g}")
        return self


class EditBudgetSettings(Section):
    """The shared rate budgets of message edits, by scope kind (``slack_workspace`` is
    ``slack.workspace``). Keep ``burst + count`` (a sliding window's ``count``) within the
    platform's limit for its window, or edits will meet 429s."""

    slack_workspace: RateSettings = RateSettings(count=45, seconds=60, burst=5)
    slack_channel: RateSettings = RateSettings(count=8, seconds=10, burst=2)
    slack_stream_start: RateSettings = RateSettings(count=19, seconds=61, sliding=True)
    slack_stream_stop: RateSettings = RateSettings(count=19, seconds=61, sliding=True)
    slack_stream_append: RateSettings = RateSettings(count=90, seconds=60, burst=10)
    discord_channel: RateSettings = RateSettings(count=4, seconds=5, burst=1)
    discord_global: RateSettings = RateSettings(count=30, seconds=1, burst=10)
