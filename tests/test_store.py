"""The ConversationStore contract, run against every store; then what only a file can do."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import PydanticSerializationError

from core.messages import (
    AssistantMessage,
    ConversationKey,
    Message,
    RedactedThinking,
    SystemMessage,
    Thinking,
    TokenUsage,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.store import (
    ConversationStore,
    MemoryStore,
    SqliteStore,
    StoreError,
    open_store,
    validate_store_url,
)
from tests.conftest import Closing
from tests.support import stores
from tests.support.clock import FakeTime

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
OTHER = ConversationKey(platform="discord", workspace="dm", channel="42", thread="-")
COLON = ConversationKey(
    platform="slack", workspace="T1:C1", channel="1700000000.000100", thread="x"
)


clock, store = stores.clock, stores.store  # the contract fixtures, by the same names


def user(text: str) -> UserMessage:
    return UserMessage(text=text, author_id="U1", author_name="Ada")


def a_tool_exchange() -> list[Message]:
    """Every message type and every optional part, with text that JSON and SQL must not bend."""
    return [
        SystemMessage(text="You are a test bot. It is Tuesday."),
        UserMessage(text='Wie ist das Wetter in Köln? 🌦 "quoted" \\ back\nline\u2028sep\x00nul'),
        AssistantMessage(
            text="Let me look.",
            reasoning="The user wants the weather.",
            thinking=(
                Thinking(thinking="Call get_weather for Köln.", signature="c2lnbmF0dXJl=="),
                RedactedThinking(data="ZW5jcnlwdGVk"),
            ),
            tool_calls=(
                ToolCall(
                    id="toolu_01",
                    name="get_weather",
                    arguments={"city": "Köln", "unit": "celsius", "days": [1, 2], "x": None},
                    raw_arguments='{"city": "Köln", "unit": "celsius", "days": [1, 2], "x": null}',
                ),
                ToolCall(id="toolu_02", name="get_weather", arguments=None, raw_arguments="{oops"),
            ),
            finish_reason="tool_calls",
            usage=TokenUsage(input_tokens=120, output_tokens=30, cached_input_tokens=100),
        ),
        ToolResult(call_id="toolu_01", name="get_weather", content='{"temperature": 7.5}'),
        ToolResult(
            call_id="toolu_02", name="get_weather", content="bad arguments: not JSON", is_error=True
        ),
        AssistantMessage(text="In Köln sind es 7,5 °C und es reg", stopped=True),
    ]


# --- history ----------------------------------------------------------------------------------


async def test_a_new_conversation_is_empty(store: ConversationStore) -> None:
    assert await store.load(KEY) == []


async def test_every_message_type_round_trips(store: ConversationStore) -> None:
    messages = a_tool_exchange()
    await store.append(KEY, messages)
    loaded = await store.load(KEY)
    assert loaded == messages
    assert [type(m) for m in loaded] == [type(m) for m in messages]


async def test_appends_continue_the_conversation_and_keys_stay_apart(
    store: ConversationStore,
) -> None:
    await store.append(KEY, [user("one"), AssistantMessage(text="1")])
    await store.append(OTHER, [user("elsewhere")])
    await store.append(COLON, [user("colons inside a part")])
    await store.append(KEY, [user("two"), AssistantMessage(text="2")])
    assert await store.load(KEY) == [
        user("one"),
        AssistantMessage(text="1"),
        user("two"),
        AssistantMessage(text="2"),
    ]
    assert await store.load(OTHER) == [user("elsewhere")]
    assert await store.load(COLON) == [user("colons inside a part")]


async def test_an_empty_append_changes_nothing(store: ConversationStore) -> None:
    await store.append(KEY, [])
    assert await store.load(KEY) == []


async def test_a_batch_that_cannot_be_stored_is_not_stored_at_all(
    store: ConversationStore,
) -> None:
    await store.append(KEY, [user("before")])
    unstorable = AssistantMessage(
        tool_calls=(ToolCall(id="c1", name="t", arguments={"value": object()}),)
    )
    with pytest.raises(PydanticSerializationError):
        await store.append(KEY, [user("kept?"), unstorable, user("kept?")])
    assert await store.load(KEY) == [user("before")]


async def test_concurrent_appends_keep_each_batch_whole(store: ConversationStore) -> None:
    batches = [[user(f"{n}.{i}") for i in range(3)] for n in range(10)]
    await asyncio.gather(*(store.append(KEY, batch) for batch in batches))
    loaded = [m.text for m in await store.load(KEY) if isinstance(m, UserMessage)]
    groups = [loaded[i : i + 3] for i in range(0, len(loaded), 3)]
    assert sorted(groups) == sorted([m.text for m in batch] for batch in batches)


async def test_a_loaded_message_is_a_copy(store: ConversationStore) -> None:
    call = ToolCall(id="c1", name="t", arguments={"city": "Paris"})
    await store.append(KEY, [AssistantMessage(tool_calls=(call,))])
    assert call.arguments is not None
    call.arguments["city"] = "changed after saving"
    (loaded,) = await store.load(KEY)
    assert isinstance(loaded, AssistantMessage)
    assert loaded.tool_calls[0].arguments == {"city": "Paris"}


# --- claims -----------------------------------------------------------------------------------


async def test_an_event_is_claimed_once_within_its_ttl(
    store: ConversationStore, clock: FakeTime
) -> None:
    assert await store.claim("Ev1", ttl=60) is True
    assert await store.claim("Ev1", ttl=60) is False
    assert await store.claim("Ev2", ttl=60) is True
    clock.now += 59.9
    assert await store.claim("Ev1", ttl=60) is False
    clock.now += 0.1
    assert await store.claim("Ev1", ttl=60) is True  # expired: a new claim
    assert await store.claim("Ev1", ttl=60) is False


async def test_a_claim_needs_a_positive_ttl(store: ConversationStore) -> None:
    with pytest.raises(ValueError, match="positive ttl"):
        await store.claim("Ev1", ttl=0)


async def test_memory_store_prunes_expired_claims(clock: FakeTime) -> None:
    store = MemoryStore(clock=clock)
    for n in range(100):
        await store.claim(f"Ev{n}", ttl=10)
    clock.now += 10
    assert await store.claim("late", ttl=10) is True
    assert list(store._claims) == ["late"]  # the expired hundred are gone


async def test_sqlite_store_prunes_expired_claims(
    tmp_path: Path, clock: FakeTime, closing: Closing
) -> None:
    store = await closing(SqliteStore.open(tmp_path / "relaybot.db", clock=clock))
    for n in range(100):
        await store.claim(f"Ev{n}", ttl=10)
    clock.now += 10
    assert await store.claim("late", ttl=10) is True
    await store.close()
    assert rows(tmp_path / "relaybot.db", "SELECT event_id FROM claims") == [("late",)]


async def test_a_closed_store_says_so(store: ConversationStore) -> None:
    await store.close()
    with pytest.raises(StoreError, match=r"used after close\(\)"):
        await store.load(KEY)
    await store.close()  # closing twice is fine


# --- the SQLite file --------------------------------------------------------------------------


def rows(path: Path, sql: str) -> list[Any]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def make_database(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


async def open_error(path: Path | str) -> str:
    """The one-line error of opening ``path`` (a store that opens is closed, and fails)."""
    try:
        store = await SqliteStore.open(path)
    except StoreError as error:
        message = str(error)
        assert "\n" not in message
        return message
    await store.close()
    pytest.fail(f"{path} opened as a store: expected a StoreError")


async def test_a_new_store_survives_a_restart(
    tmp_path: Path, clock: FakeTime, closing: Closing
) -> None:
    path = tmp_path / "deep" / "er" / "relaybot.db"  # directories are made
    store = await closing(SqliteStore.open(path, clock=clock))
    await store.append(KEY, a_tool_exchange())
    assert await store.claim("Ev1", ttl=60) is True
    await store.close()

    again = await closing(SqliteStore.open(path, clock=clock))
    assert await again.load(KEY) == a_tool_exchange()
    assert await again.claim("Ev1", ttl=60) is False
    await again.append(KEY, [user("after the restart")])
    assert (await again.load(KEY))[-1] == user("after the restart")


async def test_the_file_is_wal_with_schema_version_5(tmp_path: Path, closing: Closing) -> None:
    path = tmp_path / "relaybot.db"
    store = await closing(SqliteStore.open(path))
    await store.append(KEY, [user("hi")])
    await store.close()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "PRAGMA user_version") == [(5,)]
    assert rows(path, "SELECT conversation, seq, turn FROM messages") == [(str(KEY), 1, None)]


async def test_an_empty_file_becomes_a_store(tmp_path: Path, closing: Closing) -> None:
    path = tmp_path / "relaybot.db"
    path.touch()
    store = await closing(SqliteStore.open(path))
    assert await store.load(KEY) == []


async def test_an_in_memory_database_works(closing: Closing) -> None:
    store = await closing(SqliteStore.open(":memory:"))
    await store.append(KEY, [user("hi")])
    assert await store.load(KEY) == [user("hi")]


async def test_a_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.db"
    path.write_bytes(b"\x00garbage, not SQLite\xff" * 200)
    assert await open_error(path) == (
        f"sqlite store {path}: not a SQLite database (or damaged beyond reading)"
    )
    assert path.read_bytes() == b"\x00garbage, not SQLite\xff" * 200  # left as it was


async def test_a_newer_schema_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.db"
    make_database(path, "PRAGMA user_version = 7")
    assert await open_error(path) == (
        f"sqlite store {path}: written by a newer relaybot (schema version 7, this one knows"
        " up to 5); upgrade relaybot or use another file"
    )


async def test_another_programs_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    make_database(path, "CREATE TABLE users (id INTEGER)", "CREATE TABLE orders (id INTEGER)")
    assert await open_error(path) == (
        f"sqlite store {path}: a SQLite database of another program (tables: orders, users)"
    )


async def test_a_directory_is_an_error(tmp_path: Path) -> None:
    assert await open_error(tmp_path) == f"sqlite store {tmp_path}: is a directory, not a file"


async def test_a_path_under_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "data" / "relaybot.db"
    assert await open_error(path) == (
        f"sqlite store {path}: cannot create its directory ({tmp_path / 'file'} is a file)"
    )


REPOSITORY = Path(__file__).resolve().parent.parent
OPEN_STORE = """
import asyncio, sys
from core.store import SqliteStore, StoreError
try:
    asyncio.run(SqliteStore.open(sys.argv[1]))
except StoreError as error:
    print(error)
"""

WITHOUT_DAC_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
"""Runs a command as root that file permissions bind (util-linux's ``setpriv``)."""


async def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    """The store opened from a process that permissions bind. Root ignores them, so as root the
    store is opened by a child process whose capabilities exclude overriding them."""
    path = tmp_path / "relaybot.db"
    make_database(path)
    path.chmod(0o200)
    expected = f"sqlite store {path}: this process may not read and write it (check permissions)"
    if os.geteuid() != 0:
        assert await open_error(path) == expected
        return
    if shutil.which(WITHOUT_DAC_OVERRIDE[0]) is None:
        pytest.fail("as root this test needs util-linux's setpriv to drop CAP_DAC_OVERRIDE")
    child = await asyncio.create_subprocess_exec(
        *WITHOUT_DAC_OVERRIDE, sys.executable, "-c", OPEN_STORE, str(path),
        cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), timeout=30)
    assert (out.decode().strip(), err.decode(), child.returncode) == (expected, "", 0)


OPENER = """
import asyncio, sys
from core.messages import ConversationKey, UserMessage
from core.store import SqliteStore

KEY = ConversationKey(platform="console", workspace="local", channel="race", thread=sys.argv[1])

async def open_and_write(path):
    store = await SqliteStore.open(path)
    try:
        await store.append(KEY, [UserMessage(text="hi")])
    finally:
        await store.close()

print("ready", flush=True)
for line in sys.stdin:  # a path: the parent sends it to every opener at once
    try:
        asyncio.run(open_and_write(line.strip()))
        print("ok", flush=True)
    except Exception as error:
        print(f"{type(error).__name__}: {error}".replace("\\n", " "), flush=True)
"""


async def start_opener(
    n: int,
) -> tuple[asyncio.subprocess.Process, asyncio.StreamWriter, asyncio.StreamReader]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OPENER, str(n),
        cwd=REPOSITORY, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    return process, process.stdin, process.stdout


async def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Three processes open each new file at the same instant: released together by one line
    on their stdin, once each has said it is ready. Twenty files, no error."""
    openers: list[tuple[asyncio.subprocess.Process, asyncio.StreamWriter, asyncio.StreamReader]]
    openers = []
    results: list[str] = []
    try:
        for n in range(3):
            openers.append(await start_opener(n))
        for _, _, stdout in openers:
            assert await asyncio.wait_for(stdout.readline(), 30) == b"ready\n"
        for round_ in range(20):
            path = tmp_path / f"{round_}.db"
            for _, stdin, _ in openers:
                stdin.write(f"{path}\n".encode())
            for _, stdin, stdout in openers:
                await asyncio.wait_for(stdin.drain(), 30)
                line = await asyncio.wait_for(stdout.readline(), 30)
                results.append(f"{path.name}: {line.decode().strip()}")
    finally:  # every opener ends and is reaped, its pipes drained, whatever happened
        for _, stdin, _ in openers:
            stdin.close()  # its loop ends: it exits
        for process, _, _ in openers:
            try:
                await asyncio.wait_for(process.communicate(), 30)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.communicate(), 30)
    assert [result for result in results if not result.endswith(": ok")] == []
    for round_ in range(20):
        path = tmp_path / f"{round_}.db"
        assert rows(path, "PRAGMA user_version") == [(5,)]
        assert rows(path, "SELECT count(*) FROM messages") == [(3,)]


async def test_a_message_that_no_longer_reads_back_is_an_error(
    tmp_path: Path, closing: Closing
) -> None:
    path = tmp_path / "relaybot.db"
    store = await closing(SqliteStore.open(path))
    await store.append(KEY, [user("fine"), user("about to be damaged")])
    with sqlite3.connect(path) as db:
        db.execute('UPDATE messages SET body = \'{"role": "user"}\' WHERE seq = 2')
    with pytest.raises(StoreError) as caught:
        await store.load(KEY)
    assert str(caught.value) == (
        f"sqlite store {path}: message 2 of conversation {KEY} cannot be read"
        " (user.text: Field required)"
    )


# --- store URLs -------------------------------------------------------------------------------


async def test_memory_url_opens_a_memory_store(closing: Closing) -> None:
    store = await closing(open_store("memory://"))
    assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("sqlite:///relaybot.db", "cwd/relaybot.db"),
        ("sqlite:///data/relaybot.db", "cwd/data/relaybot.db"),
        ("SQLite:///relaybot.db", "cwd/relaybot.db"),
        ("sqlite:///~/bot.db", "home/bot.db"),
        ("sqlite:////{tmp}/abs/relaybot.db", "abs/relaybot.db"),
    ],
)
async def test_sqlite_urls_name_a_file(
    url: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closing: Closing
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    store = await closing(open_store(url.replace("/{tmp}", str(tmp_path))))
    await store.append(KEY, [user("hi")])
    await store.close()
    assert rows(tmp_path / where, "SELECT count(*) FROM messages") == [(1,)]


async def test_sqlite_memory_url(closing: Closing) -> None:
    store = await closing(open_store("sqlite:///:memory:"))
    assert isinstance(store, SqliteStore)


async def test_open_store_reports_an_unusable_file(tmp_path: Path, closing: Closing) -> None:
    (tmp_path / "relaybot.db").write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        await closing(open_store(f"sqlite:///{tmp_path}/relaybot.db"))


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis://:hunter2@cache:6379/0", "the redis store is not available yet; use memory://"),
        ("rediss://cache", "the redis store is not available yet"),
        ("mysql://bot:hunter2@db/relaybot", "unknown store URL scheme 'mysql'; expected"),
        ("postgresql://bot:hunter2@/relaybot", "a postgresql URL names its host"),
        ("postgres://bot:hunter2@db:5o32/relaybot", "the postgresql URL's port is not a number"),
        ("/var/lib/relaybot.db", "a store URL starts with a scheme: memory://, sqlite:///"),
        ("sqlite:relaybot.db", "a store URL starts with a scheme"),
        ("sqlite://host/relaybot.db", "a sqlite URL has no host: write sqlite:///relative"),
        ("sqlite://", "a sqlite URL has no host"),
        ("sqlite:///", "the sqlite URL names no file"),
        ("sqlite:///relaybot.db?mode=ro", "a sqlite URL takes no query parameters"),
        ("memory://somewhere", "memory:// takes nothing after the scheme"),
        ("", "a store URL starts with a scheme"),
    ],
)
async def test_bad_store_urls_are_value_errors(url: str, error: str, closing: Closing) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("?", r"\?")) as caught:
        await closing(open_store(url))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="^" + error.replace("?", r"\?")):
        validate_store_url(url)


def test_validate_store_url_returns_a_good_url_and_touches_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/not/yet/relaybot.db"
    assert validate_store_url(url) == url
    assert validate_store_url("memory://") == "memory://"
    assert not (tmp_path / "not").exists()
