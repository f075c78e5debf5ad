"""Usage limits: who may start a turn, the one line a refused user reads, the token estimate
for a gateway that reports none, and the ``[limits]`` settings section."""

from __future__ import annotations

import calendar

import pytest
from pydantic import ValidationError

from core.limits import LimitsSettings, Refusal, UsageLimits, check, estimate_tokens
from core.store.usage import Usage, periods


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, 0)))


NOW = utc(2025, 3, 14, 20, 48)
LIMITS = UsageLimits(daily_tokens=50_000, monthly_tokens=1_000_000, exempt=frozenset({"UADMIN"}))


def used(day: int, month: int, *, now: float = NOW) -> Usage:
    return periods(now).usage(day=day, month=month)


def test_a_user_under_both_limits_may_start_a_turn() -> None:
    assert check(used(49_999, 999_999), LIMITS, "U1", now=NOW) is None


def test_a_user_at_the_daily_limit_is_told_when_it_resets() -> None:
    assert check(used(50_000, 60_000), LIMITS, "U1", now=NOW) == Refusal(
        message=(
            "You've used your 50,000 tokens for today; it resets at 00:00 UTC (in 3 h 12 min)."
        ),
        period="day",
        resets_at=utc(2025, 3, 15),
    )


def test_a_user_over_the_monthly_limit_is_told_the_date_it_resets() -> None:
    refusal = check(used(0, 1_000_001), LIMITS, "U1", now=NOW)
    assert refusal == Refusal(
        message=(
            "You've used your 1,000,000 tokens for this month;"
            " it resets on 1 April at 00:00 UTC (in 17 days 3 h)."
        ),
        period="month",
        resets_at=utc(2025, 4, 1),
    )


def test_with_both_used_up_the_month_is_named_since_tomorrow_would_not_help() -> None:
    refusal = check(used(80_000, 2_000_000), LIMITS, "U1", now=NOW)
    assert refusal is not None
    assert refusal.period == "month"


def test_an_exempt_user_is_never_refused() -> None:
    assert check(used(10**9, 10**9), LIMITS, "UADMIN", now=NOW) is None


def test_no_limits_refuse_nobody() -> None:
    off = UsageLimits()
    assert not off.active
    assert check(used(10**9, 10**9), off, "U1", now=NOW) is None
    assert UsageLimits(daily_tokens=1).active
    assert UsageLimits(monthly_tokens=1).active


def test_only_a_daily_limit() -> None:
    daily = UsageLimits(daily_tokens=100)
    assert check(used(99, 10**9), daily, "U1", now=NOW) is None
    assert check(used(100, 100), daily, "U1", now=NOW) is not None


@pytest.mark.parametrize(
    ("now", "in_words"),
    [
        (utc(2025, 3, 14, 23, 59) + 30, "in 1 min"),  # rounded up: never "in 0 min"
        (utc(2025, 3, 14, 23, 0), "in 1 h"),
        (utc(2025, 3, 14, 23, 15), "in 45 min"),
        (utc(2025, 3, 14, 0, 0) + 1, "in 1 day"),  # 23 h 59 min 59 s, rounded up
    ],
)
def test_how_long_until_the_day_resets(now: float, in_words: str) -> None:
    refusal = check(used(50_000, 0, now=now), LIMITS, "U1", now=now)
    assert refusal is not None
    assert refusal.message.endswith(f"resets at 00:00 UTC ({in_words}).")


@pytest.mark.parametrize(
    ("now", "in_words"),
    [
        (utc(2025, 3, 31, 0, 0), "on 1 April at 00:00 UTC (in 1 day)"),
        (utc(2025, 3, 30, 22, 0), "on 1 April at 00:00 UTC (in 1 day 2 h)"),
        (utc(2025, 12, 31, 12, 0), "on 1 January at 00:00 UTC (in 12 h)"),
    ],
)
def test_how_long_until_the_month_resets(now: float, in_words: str) -> None:
    refusal = check(used(0, 1_000_000, now=now), LIMITS, "U1", now=now)
    assert refusal is not None
    assert refusal.message.endswith(f"resets {in_words}.")


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 4000, 1000)]
)
def test_estimate_tokens_is_about_four_characters_each(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_the_settings_are_off_by_default() -> None:
    assert LimitsSettings().usage_limits() == UsageLimits()


def test_the_settings_give_the_limits() -> None:
    settings = LimitsSettings.model_validate(
        {"daily_tokens": 50_000, "monthly_tokens": 1_000_000, "exempt_users": ["U1", "U2"]}
    )
    assert settings.usage_limits() == UsageLimits(
        daily_tokens=50_000, monthly_tokens=1_000_000, exempt=frozenset({"U1", "U2"})
    )


@pytest.mark.parametrize(
    "given", [{"daily_tokens": 0}, {"monthly_tokens": -5}, {"daily_token": 10}]
)
def test_settings_refuse_a_limit_of_nothing_and_unknown_keys(given: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LimitsSettings.model_validate(given)
