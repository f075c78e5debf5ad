"""The downloader against the fake Slack's file URLs: which hosts are fetched, where the token
goes across redirects, the size cap from the event and while streaming, Slack's sign-in page,
and failures (a timeout, a 404, a refused connection) as notes — never exceptions, never the
token in a note or a log line."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from PIL import Image

from bots.downloads import SCOPE_MISSING, Downloader, RemoteFile
from core.attachments import AttachedFile, AttachmentSettings, Skipped
from core.messages import FileNote, FileText, ImageContent
from tests.fakes.slack_api import FakeSlack

TOKEN = "xoxb-test-secret-4242"
LIMITS = AttachmentSettings(max_file_bytes=200_000)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(follow_redirects=False) as client:
        yield client


def downloader(
    http: httpx2.AsyncClient,
    *,
    allowed: tuple[str, ...] = ("127.0.0.1", "localhost"),
    token_hosts: tuple[str, ...] = ("127.0.0.1",),
    timeout: float = 10.0,
    settings: AttachmentSettings = LIMITS,
) -> Downloader:
    return Downloader(
        settings=settings, allowed_hosts=allowed, token=TOKEN, token_hosts=token_hosts,
        timeout=timeout, http=http,
    )  # fmt: skip


def remote(file: dict[str, Any], **changes: Any) -> RemoteFile:
    """The file as the Slack bot reads it from an event."""
    fields = {"name": file["name"], "mime": file["mimetype"], "url": file["url_private_download"],
              "size": file["size"]}  # fmt: skip
    return RemoteFile(**(fields | changes))


def seen(slack: FakeSlack) -> list[tuple[str, str | None, int]]:
    return [(r.host, r.authorization, r.status) for r in slack.file_requests]


async def test_a_file_on_a_token_host_is_fetched_with_the_token(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("notes.txt", b"hello", mimetype="text/plain")

    got = await downloader(http).fetch(remote(file))

    assert got == AttachedFile(name="notes.txt", mime="text/plain", data=b"hello")
    assert seen(slack) == [("127.0.0.1", f"Bearer {TOKEN}", 200)]


async def test_a_host_not_allowed_is_never_asked(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("notes.txt", b"hello", mimetype="text/plain")
    elsewhere = file["url_private"].replace("127.0.0.1", "localhost")

    got = await downloader(http, allowed=("127.0.0.1",)).fetch(remote(file, url=elsewhere))

    assert isinstance(got, Skipped)
    assert got.note == ('"notes.txt" was skipped: it could not be downloaded: '
                        "relaybot does not fetch files from localhost.")  # fmt: skip
    assert slack.file_requests == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://files.slack.com/files-pri/T1-F1/a.txt", "over https only, not http"),
        ("ftp://127.0.0.1/a.txt", "over https only, not ftp"),
        ("https://evil.example/a.txt", "does not fetch files from evil.example"),
        ("", "no address was given for it"),
    ],
)
async def test_only_https_from_an_allowed_host_is_fetched(
    http: httpx2.AsyncClient, url: str, why: str
) -> None:
    allowed = ("127.0.0.1", "files.slack.com")
    got = await downloader(http, allowed=allowed).fetch(
        RemoteFile(name="a.txt", mime=None, url=url, size=5)
    )
    assert isinstance(got, Skipped)
    assert why in got.note


async def test_a_redirect_to_another_host_does_not_carry_the_token(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("photo.png", png(), mimetype="image/png", redirect=True)

    got = await downloader(http).fetch(remote(file))

    assert isinstance(got, AttachedFile)
    assert got.data == png()
    assert seen(slack) == [("127.0.0.1", f"Bearer {TOKEN}", 302), ("localhost", None, 200)]


async def test_a_redirect_to_a_token_host_gets_the_token_again(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("photo.png", png(), mimetype="image/png", redirect=True)
    url = file["url_private"].replace("127.0.0.1", "localhost")  # it redirects to 127.0.0.1

    got = await downloader(http, token_hosts=("127.0.0.1", "localhost")).fetch(
        remote(file, url=url)
    )

    assert isinstance(got, AttachedFile)
    assert seen(slack) == [("localhost", f"Bearer {TOKEN}", 302),
                           ("127.0.0.1", f"Bearer {TOKEN}", 200)]  # fmt: skip


async def test_a_redirect_to_a_host_not_allowed_is_refused(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("photo.png", png(), mimetype="image/png", redirect=True)

    got = await downloader(http, allowed=("127.0.0.1",)).fetch(remote(file))

    assert isinstance(got, Skipped)
    assert got.why == "it could not be downloaded: relaybot does not fetch files from localhost"
    assert [r.host for r in slack.file_requests] == ["127.0.0.1"]


async def test_a_file_reported_over_the_cap_is_not_requested(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("big.log", b"x" * 300_000, mimetype="text/plain")

    got = await downloader(http).fetch(remote(file))

    assert got == Skipped(name="big.log", reason="too_big",
                          why="it is 0.3 MB, over the 0.2 MB limit")  # fmt: skip
    assert slack.file_requests == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
async def test_a_body_over_the_cap_is_dropped_whatever_the_event_said(
    slack: FakeSlack, http: httpx2.AsyncClient, chunked: bool
) -> None:
    file = slack.add_file("big.log", b"x" * 300_000, mimetype="text/plain", size=10,
                          chunked=chunked)  # fmt: skip

    got = await downloader(http).fetch(remote(file))

    assert got == Skipped(name="big.log", reason="too_big", why="it is over the 0.2 MB limit")
    assert len(slack.file_requests) == 1


async def test_slacks_sign_in_page_means_the_files_read_scope_is_missing(
    slack: FakeSlack, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    files = [slack.add_file(f"shot{n}.png", png(), mimetype="image/png") for n in (1, 2)]
    wrong = Downloader(settings=LIMITS, allowed_hosts=["127.0.0.1"], token="xoxb-no-files-read",
                       token_hosts=["127.0.0.1"], http=http)  # fmt: skip

    with caplog.at_level(logging.INFO, logger="relaybot"):
        got = [await wrong.fetch(remote(file)) for file in files]

    assert [g.note for g in got if isinstance(g, Skipped)] == [
        f'"shot1.png" was skipped: {SCOPE_MISSING}.',
        f'"shot2.png" was skipped: {SCOPE_MISSING}.',
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "said once"
    assert "Add files:read" in warnings[0].getMessage()
    assert "reinstall" in warnings[0].getMessage()
    assert "xoxb" not in caplog.text


async def test_an_html_file_the_user_sent_is_not_taken_for_the_sign_in_page(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    file = slack.add_file("page.html", b"<html><p>hi</p></html>", mimetype="text/html")
    got = await downloader(http).fetch(remote(file))
    assert isinstance(got, AttachedFile)


async def test_a_404_is_a_note(slack: FakeSlack, http: httpx2.AsyncClient) -> None:
    file = slack.add_file("gone.txt", b"bye", mimetype="text/plain")
    missing = file["url_private"].replace(file["id"], "F99999999")

    got = await downloader(http).fetch(remote(file, url=missing))

    assert isinstance(got, Skipped)
    assert got.why == "it could not be downloaded: 127.0.0.1 answered HTTP 404"


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback server that takes connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_timeout_is_a_note(http: httpx2.AsyncClient, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/files-pri/T1-F1/slow.txt"
    got = await downloader(http, timeout=0.2).fetch(
        RemoteFile(name="slow.txt", mime="text/plain", url=url, size=5)
    )
    assert isinstance(got, Skipped)
    assert got.why == "it could not be downloaded: no answer within 0.2 s"


async def test_a_refused_connection_is_a_note(http: httpx2.AsyncClient) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/files-pri/T1-F1/a.txt"
    got = await downloader(http).fetch(RemoteFile(name="a.txt", mime=None, url=url, size=5))
    assert isinstance(got, Skipped)
    assert got.why == "it could not be downloaded: the connection was refused"
    assert TOKEN not in got.note


async def test_fetch_all_keeps_the_order_and_prepares_each_file(
    slack: FakeSlack, http: httpx2.AsyncClient
) -> None:
    image = slack.add_file("shot.png", png(), mimetype="image/png")
    code = slack.add_file("main.py", b"print('hi')\n", mimetype="text/x-python")
    zipped = slack.add_file("a.zip", b"PK\x03\x04\x00\x00binary", mimetype="application/zip")
    big = slack.add_file("big.log", b"x" * 300_000, mimetype="text/plain")

    got = await downloader(http).fetch_all([remote(f) for f in (image, code, zipped, big)])

    assert [type(a) for a in got] == [ImageContent, FileText, FileNote, FileNote]
    assert isinstance(got[0], ImageContent)
    assert (got[0].width, got[0].height) == (64, 48)
    assert isinstance(got[1], FileText)
    assert "print('hi')" in got[1].text
    assert [a.note for a in got if isinstance(a, FileNote)] == [
        '"a.zip" was skipped: relaybot cannot read this type of file (application/zip).',
        '"big.log" was skipped: it is 0.3 MB, over the 0.2 MB limit.',
    ]
    assert [r.path.rpartition("/")[2] for r in slack.file_requests] == [
        "shot.png", "main.py", "a.zip"
    ]  # fmt: skip


async def test_a_downloader_closes_the_client_it_made() -> None:
    async with Downloader(settings=LIMITS, allowed_hosts=()) as own:
        assert "xoxb" not in repr(own)
    assert own._http.is_closed
