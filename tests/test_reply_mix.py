"""ReplyMix: Slack's ``auto`` balances native streams and edited answers over their budgets."""

from __future__ import annotations

from adapters.budget import DEFAULT_RATES, Rate, TokenBucketBudget
from adapters.reply_mix import ReplyMix
from tests.support.clock import FakeClock

START = ("slack.stream.start:T1",)
APPEND = "slack.stream.append:T1"
EDIT = "slack.workspace:T1"


async def choose(mix: ReplyMix) -> str:
    streams = await mix.streams(start=START, append=APPEND, edit=EDIT)
    scope = APPEND if streams else EDIT
    mix.began(scope)
    return "stream" if streams else "edit"


async def test_answers_go_where_their_budget_has_the_most_room_per_answer() -> None:
    """Appends (90 a minute) carry two streams for each edited answer (45 a minute)."""
    assert (
        DEFAULT_RATES["slack.stream.append"].per_second
        == 2 * DEFAULT_RATES["slack.workspace"].per_second
    )
    mix = ReplyMix(TokenBucketBudget(clock=FakeClock()))
    ways = [await choose(mix) for _ in range(9)]
    assert ways == ["stream", "stream", "edit"] * 3
    assert (mix.live_count(APPEND), mix.live_count(EDIT)) == (6, 3)


async def test_an_answer_ended_frees_its_way() -> None:
    mix = ReplyMix(TokenBucketBudget(clock=FakeClock()))
    with mix.live(APPEND), mix.live(APPEND):
        assert await choose(mix) == "edit"
        mix.ended(EDIT)
    assert mix.live_count(APPEND) == 0
    assert await choose(mix) == "stream"


async def test_no_start_free_means_an_edited_answer() -> None:
    clock = FakeClock()
    budget = TokenBucketBudget({"slack.stream.start": Rate.window(1, 60)}, clock=clock)
    mix = ReplyMix(budget)
    assert await choose(mix) == "stream"  # its start taken
    mix.ended(APPEND)
    assert await choose(mix) == "edit"  # the room is there, the start is not
    await clock.advance(60)
    assert await choose(mix) == "stream"
