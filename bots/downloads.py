"""Files people attach, downloaded from the platform into memory and made ready for the model.

A platform's event names each file (:class:`RemoteFile`: name, reported type and size, URL);
:class:`Downloader` fetches them under the rules below and hands the bytes to
:func:`core.attachments.prepare_all`. Every file ends as something a user message carries — an
image, a text, or a note saying why it was skipped — never as an exception:

- only ``https`` URLs whose host is in ``allowed_hosts`` are fetched (plain ``http`` only for a
  loopback host or one in ``http_hosts``: a configured API address in tests); a URL elsewhere
  in an event is a note, not a request;
- the bearer ``token`` goes only to ``token_hosts``. Redirects are followed here, at most
  :data:`MAX_REDIRECTS`, each target checked against ``allowed_hosts`` again and given the
  token only when it is a token host (Slack's redirects would drop it; a redirect must never
  carry it elsewhere);
- a file whose reported size is over ``max_file_bytes`` is not requested; a body streams under
  that cap and is dropped the moment it crosses it. Nothing is written to disk;
- an HTML page where a file was expected, from a token host, is the login page Slack serves
  when the token may not read files (the ``files:read`` scope is missing): the note says so,
  and the log says it once, with the fix;
- a timeout, a refused connection or an error status is a note "… could not be downloaded: …".

The token never appears in a note or a log line: notes and logs name the file and the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx2

from core.attachments import (
    AttachedFile,
    AttachmentSettings,
    Skipped,
    SkipReason,
    as_attachment,
    display_name,
    prepare_all,
)
from core.messages import Attachment

__all__ = ["MAX_CONCURRENT", "MAX_REDIRECTS", "SCOPE_MISSING", "Downloader", "RemoteFile"]

log = logging.getLogger("relaybot.downloads")

MAX_REDIRECTS = 5
MAX_CONCURRENT = 4
"""Files of one message downloaded at once."""
SCOPE_MISSING = "Slack sent a sign-in page instead of the file: the app needs the files:read scope"
"""Why a file from a token host came back as HTML (Slack's answer to a token without
``files:read``)."""
_SCOPE_FIX = (
    "a file download got Slack's sign-in page: the bot token lacks the files:read scope. "
    "Add files:read to the app's bot scopes (the manifest in config/ has it) and reinstall "
    "the app to the workspace"
)
_DOWNLOAD: SkipReason = "download"
"""The reason of a file that could not be fetched."""
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFile:
    """A file a platform's event names: ``size`` as the event reports it (``None``: unknown)."""

    name: str
    mime: str | None
    url: str
    size: int | None = None


class _Refused(Exception):
    """Why one file is not downloaded; its message ends the note "… could not be downloaded:"."""


class Downloader:
    """Downloads the files of a message into memory (see the module docstring). Close it with
    :meth:`aclose` (or ``async with``) when it made its own HTTP client."""

    def __init__(
        self,
        *,
        settings: AttachmentSettings,
        allowed_hosts: Collection[str],
        token: str | None = None,
        token_hosts: Collection[str] = (),
        http_hosts: Collection[str] = (),
        timeout: float | None = None,
        http: httpx2.AsyncClient | None = None,
        max_concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self._settings = settings
        self._allowed = frozenset(host.lower() for host in allowed_hosts)
        self._token = token
        self._token_hosts = frozenset(host.lower() for host in token_hosts)
        self._http_hosts = frozenset(host.lower() for host in http_hosts)
        self._timeout = settings.download_timeout if timeout is None else timeout
        self._owns_http = http is None
        self._http = http or httpx2.AsyncClient(follow_redirects=False)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._scope_logged = False

    def __repr__(self) -> str:  # never the token
        return f"Downloader(allowed_hosts={sorted(self._allowed)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, if this downloader made it."""
        if self._owns_http:
            await self._http.aclose()

    async def fetch_all(self, files: Sequence[RemoteFile]) -> tuple[Attachment, ...]:
        """What a user message carries for ``files``, in order: downloaded (a few at once),
        prepared under the message's limits, a note for each file that was not."""
        fetched = await asyncio.gather(*(self.fetch(file) for file in files))
        downloaded = [file for file in fetched if isinstance(file, AttachedFile)]
        prepared = iter(await prepare_all(downloaded, settings=self._settings))
        return tuple(
            as_attachment(next(prepared) if isinstance(file, AttachedFile) else file)
            for file in fetched
        )

    async def fetch(self, file: RemoteFile) -> AttachedFile | Skipped:
        """The file's bytes, or a :class:`~core.attachments.Skipped` saying why not. Never
        raises for a bad file, host or network."""
        name = display_name(file.name)
        cap = self._settings.max_file_bytes
        if not file.url:
            why = "it could not be downloaded: no address was given for it"
            return Skipped(name=name, reason=_DOWNLOAD, why=why)
        if file.size is not None and file.size > cap:
            why = f"it is {_megabytes(file.size)}, over the {_megabytes(cap)} limit"
            return Skipped(name=name, reason="too_big", why=why)
        try:
            async with self._slots:
                async with asyncio.timeout(self._timeout):
                    data = await self._download(httpx2.URL(file.url), html=_is_html_type(file.mime))
        except _Refused as refused:
            return Skipped(
                name=name, reason=_DOWNLOAD, why=f"it could not be downloaded: {refused}"
            )
        except _TooBig:
            why = f"it is over the {_megabytes(cap)} limit"
            return Skipped(name=name, reason="too_big", why=why)
        except _LoginPage:
            self._log_scope_once()
            return Skipped(name=name, reason=_DOWNLOAD, why=SCOPE_MISSING)
        except TimeoutError:
            why = f"it could not be downloaded: no answer within {self._timeout:g} s"
            return Skipped(name=name, reason=_DOWNLOAD, why=why)
        except (httpx2.HTTPError, httpx2.InvalidURL) as error:
            log.info("download of %r failed: %s", name, type(error).__name__)
            why = f"it could not be downloaded: {_failure(error)}"
            return Skipped(name=name, reason=_DOWNLOAD, why=why)
        return AttachedFile(name=name, mime=file.mime, data=data)

    async def _download(self, url: httpx2.URL, *, html: bool) -> bytes:
        """The body at ``url``, following at most :data:`MAX_REDIRECTS` redirects by hand.
        ``html``: the file is an HTML page, so an HTML body is not a sign-in page."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check(url)
            headers = {}
            if self._token and url.host.lower() in self._token_hosts:
                headers["Authorization"] = f"Bearer {self._token}"
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.is_redirect and "location" in response.headers:
                    url = url.join(response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise _Refused(f"{url.host} answered HTTP {response.status_code}")
                login = not html and _is_html_type(response.headers.get("content-type"))
                if login and url.host.lower() in self._token_hosts:
                    raise _LoginPage
                return await self._body(response)
        raise _Refused(f"more than {MAX_REDIRECTS} redirects")

    def _check(self, url: httpx2.URL) -> None:
        host = url.host.lower()
        if host not in self._allowed:
            raise _Refused(f"relaybot does not fetch files from {host or 'that address'}")
        if url.scheme == "https" or (
            url.scheme == "http" and (host in self._http_hosts or _loopback(host))
        ):
            return
        raise _Refused(f"relaybot fetches files over https only, not {url.scheme}")

    async def _body(self, response: httpx2.Response) -> bytes:
        """The body, read under the byte cap: a reported length over it is not read at all."""
        cap = self._settings.max_file_bytes
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise _TooBig
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise _TooBig
        return bytes(body)

    def _log_scope_once(self) -> None:
        if not self._scope_logged:
            self._scope_logged = True
            log.warning(_SCOPE_FIX)


class _TooBig(Exception):
    """The body crossed the byte cap."""


class _LoginPage(Exception):
    """An HTML page came from a token host where a file was expected."""


def _is_html_type(mime: str | None) -> bool:
    kind = (mime or "").split(";")[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _failure(error: Exception) -> str:
    """A short reason for a failed request, without its URL (which may carry a secret)."""
    if isinstance(error, httpx2.TimeoutException):
        return "the connection timed out"
    if isinstance(error, httpx2.ConnectError):
        return "the connection was refused"
    if isinstance(error, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return "its address is not valid"
    return "the connection failed"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
