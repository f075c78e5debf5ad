"""Discord's CDN for message attachments, on the fake's own address.

A file a test's message carries is kept here and served as ``cdn.discordapp.com`` serves it:
``GET /attachments/{channel}/{attachment}/{filename}`` (and the media proxy's
``/media/attachments/…``, as ``media.discordapp.net``), with its ``Content-Type`` and
``Content-Length``, signed as Discord signs the URLs (``?ex=&is=&hm=``: not checked here). An
unknown path is ``404``. Every request is recorded (:class:`CdnRequest`), served or not, so a
test can say a file was never asked for, and that no token went with one.

The attachment object a message carries (:class:`Attachment`) reports the file's ``size`` and
``url``; a test may give others (a size over a cap, a URL on another host) to see what a bot
does with what an event says before it downloads anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

CDN_PREFIX = "/attachments"
MEDIA_PREFIX = "/media/attachments"


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """An attachment object, as a message carries it."""

    id: int
    filename: str
    size: int
    url: str
    proxy_url: str
    content_type: str | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(self.id), "filename": self.filename, "size": self.size, "url": self.url,
            "proxy_url": self.proxy_url,
        }  # fmt: skip
        if self.content_type is not None:
            body["content_type"] = self.content_type
        return body


@dataclass(frozen=True, kw_only=True)
class CdnRequest:
    """One request to the CDN: its path (below the host, no query), whether it was served
    (``200``) or not (``404``), and the ``Authorization`` header it carried (none, from a bot
    that sends no token where it is not needed)."""

    path: str
    status: int
    authorization: str | None = None


@dataclass(frozen=True)
class _File:
    data: bytes
    content_type: str | None


@dataclass
class Cdn:
    """The files attachments point at, and every request for one."""

    snowflake: Callable[[], int]
    base_url: str = ""
    """The fake's ``http://host:port``; set once it is serving."""
    requests: list[CdnRequest] = field(default_factory=list)
    _files: dict[str, _File] = field(default_factory=dict)

    def install(self, app: web.Application) -> None:
        for prefix in (CDN_PREFIX, MEDIA_PREFIX):
            app.router.add_get(prefix + "/{channel_id}/{attachment_id}/{filename}", self._serve)

    def add(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        size: int | None = None,
        url: str | None = None,
    ) -> Attachment:
        """Keep ``data`` and describe it as an attachment object: its ``size`` is the data's
        length and its ``url`` the CDN's, unless given."""
        attachment_id = self.snowflake()
        path = f"/{channel_id}/{attachment_id}/{quote(filename)}"
        self._files[path] = _File(data, content_type)
        signature = f"?ex={attachment_id % 10**8:x}&is={attachment_id % 10**7:x}&hm={'0' * 64}&"
        return Attachment(
            id=attachment_id, filename=filename, content_type=content_type,
            size=len(data) if size is None else size,
            url=url or f"{self.base_url}{CDN_PREFIX}{path}{signature}",
            proxy_url=f"{self.base_url}{MEDIA_PREFIX}{path}{signature}",
        )  # fmt: skip

    def asked(self, attachment: Attachment) -> list[CdnRequest]:
        """The requests for that attachment's file, by either URL."""
        return [r for r in self.requests if f"/{attachment.id}/" in r.path]

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?")[0]
        kept = self._files.get(path.removeprefix(MEDIA_PREFIX).removeprefix(CDN_PREFIX))
        authorization = request.headers.get("Authorization")
        self.requests.append(
            CdnRequest(path=path, status=404 if kept is None else 200, authorization=authorization)
        )
        if kept is None:
            return web.Response(status=404, text="Not Found")
        headers = {"Content-Type": kept.content_type or "application/octet-stream"}
        return web.Response(body=kept.data, headers=headers)
