"""Channel settings: the store contract run against every store, and the schema migrations that
add them to an older SQLite file and Postgres database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from core.messages import ConversationKey, UserMessage
from core.store import (
    MAX_PROMPT_CHARS,
    UNCHANGED,
    ChannelSettings,
    ConversationStore,
    PostgresStore,
    PromptTooLong,
    SqliteStore,
)
from tests.support import stores
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

clock, store = stores.clock, stores.store  # the contract fixtures, by the same names

CHANNEL = ("slack", "T1", "C1")
KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")


# --- the store contract -----------------------------------------------------------------------


async def test_a_channel_never_set_has_the_defaults(store: ConversationStore) -> None:
    assert await store.channel_settings(*CHANNEL) == ChannelSettings()
    assert ChannelSettings() == ChannelSettings(
        model=None, prompt=None, updated_by=None, updated_at=None
    )


async def test_setting_the_model_keeps_the_prompt_and_records_who_and_when(
    store: ConversationStore, clock: FakeTime
) -> None:
    clock.now = 1000.0
    await store.set_channel_settings(*CHANNEL, prompt="Answer in French.", by="U1")
    clock.now = 2000.0
    changed = await store.set_channel_settings(*CHANNEL, model="fast", by="U2")

    expected = ChannelSettings(
        model="fast", prompt="Answer in French.", updated_by="U2", updated_at=2000.0
    )
    assert changed == expected
    assert await store.channel_settings(*CHANNEL) == expected


async def test_setting_the_prompt_keeps_the_model(
    store: ConversationStore, clock: FakeTime
) -> None:
    await store.set_channel_settings(*CHANNEL, model="fast", by="U1")
    clock.now = 50.0
    await store.set_channel_settings(*CHANNEL, prompt="Be brief.", model=UNCHANGED, by="U1")
    assert await store.channel_settings(*CHANNEL) == ChannelSettings(
        model="fast", prompt="Be brief.", updated_by="U1", updated_at=50.0
    )


async def test_none_resets_one_field_and_leaves_the_other(
    store: ConversationStore, clock: FakeTime
) -> None:
    await store.set_channel_settings(*CHANNEL, model="fast", prompt="Be brief.", by="U1")
    clock.now = 70.0
    assert await store.set_channel_settings(*CHANNEL, prompt=None, by="U3") == ChannelSettings(
        model="fast", prompt=None, updated_by="U3", updated_at=70.0
    )
    clock.now = 80.0
    assert await store.set_channel_settings(*CHANNEL, model=None, by="U4") == ChannelSettings(
        model=None, prompt=None, updated_by="U4", updated_at=80.0
    )
    assert await store.channel_settings(*CHANNEL) == ChannelSettings(
        updated_by="U4", updated_at=80.0
    )


async def test_each_channel_has_its_own_settings(store: ConversationStore) -> None:
    await store.set_channel_settings("slack", "T1", "C1", prompt="One.", by="U1")
    await store.set_channel_settings("slack", "T2", "C1", prompt="Two.", by="U1")
    await store.set_channel_settings("discord", "T1", "C1", model="big", by="U1")

    assert (await store.channel_settings("slack", "T1", "C1")).prompt == "One."
    assert (await store.channel_settings("slack", "T2", "C1")).prompt == "Two."
    discord = await store.channel_settings("discord", "T1", "C1")
    assert (discord.model, discord.prompt) == ("big", None)
    assert await store.channel_settings("slack", "T1", "C2") == ChannelSettings()


async def test_a_prompt_keeps_its_exact_text(store: ConversationStore) -> None:
    prompt = "Réponds en français 🇫🇷.\n\n- short\n- 'quoted' \"twice\"\t; DROP TABLE x;"
    await store.set_channel_settings(*CHANNEL, prompt=prompt, by="U1")
    assert (await store.channel_settings(*CHANNEL)).prompt == prompt


async def test_a_prompt_at_the_cap_is_kept_and_one_over_is_refused_with_nothing_written(
    store: ConversationStore,
) -> None:
    longest = "x" * MAX_PROMPT_CHARS
    await store.set_channel_settings(*CHANNEL, prompt=longest, by="U1")
    assert (await store.channel_settings(*CHANNEL)).prompt == longest

    with pytest.raises(PromptTooLong) as refused:
        await store.set_channel_settings(*CHANNEL, model="fast", prompt=longest + "y", by="U2")
    assert str(refused.value) == (
        "A channel prompt can be at most 4,000 characters; this one has 4,001."
    )
    settings = await store.channel_settings(*CHANNEL)
    assert (settings.model, settings.prompt, settings.updated_by) == (None, longest, "U1")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, "needs a model or a prompt"),
        ({"model": UNCHANGED, "prompt": UNCHANGED}, "needs a model or a prompt"),
        ({"model": "  "}, "needs a name"),
        ({"prompt": "\n"}, "cannot be blank"),
    ],
)
async def test_a_change_that_makes_no_sense_is_refused(
    store: ConversationStore, change: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await store.set_channel_settings(*CHANNEL, by="U1", **change)  # type: ignore[arg-type]
    assert await store.channel_settings(*CHANNEL) == ChannelSettings()


# --- older schemas gain channel settings and usage --------------------------------------------


async def test_a_version_3_sqlite_file_gains_channel_settings_and_usage(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.db"
    opened = await SqliteStore.open(path)
    await opened.append(KEY, [UserMessage(text="kept", author_id="U1")])
    await opened.close()
    with sqlite3.connect(path) as db:  # as relaybot before channel settings left it
        db.execute("DROP TABLE channel_settings")
        db.execute("DROP TABLE token_usage")
        db.execute("DROP TABLE blobs")  # and what came after them
        db.execute("PRAGMA user_version = 3")

    again = await SqliteStore.open(path)
    try:
        await again.set_channel_settings(*CHANNEL, model="fast", by="U1")
        await again.add_usage("slack:T1:U1", 5, at=0.0)
        assert (await again.channel_settings(*CHANNEL)).model == "fast"
        assert (await again.usage("slack:T1:U1", now=0.0)).day == 5
        assert await again.load(KEY) == [UserMessage(text="kept", author_id="U1")]
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchall() == [(5,)]


async def test_a_version_2_postgres_schema_gains_channel_settings_and_usage(
    postgres_database: str,
) -> None:
    url = await fresh_schema(postgres_database)
    await (await PostgresStore.open(url)).close()
    connection = await asyncpg.connect(url)
    try:  # as relaybot before channel settings left it
        await connection.execute("DROP TABLE channel_settings, token_usage, blobs")
        await connection.execute("DELETE FROM relaybot_schema WHERE version >= 3")
    finally:
        await connection.close()

    again = await PostgresStore.open(url)
    try:
        await again.set_channel_settings(*CHANNEL, prompt="Be brief.", by="U1")
        assert (await again.channel_settings(*CHANNEL)).prompt == "Be brief."
    finally:
        await again.close()
    connection = await asyncpg.connect(url)
    try:
        versions = await connection.fetch("SELECT version FROM relaybot_schema ORDER BY version")
    finally:
        await connection.close()
    assert [row["version"] for row in versions] == [1, 2, 3, 4]
