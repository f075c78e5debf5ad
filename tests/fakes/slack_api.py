"""A loopback Slack Web API that keeps the messages it was sent, answers as Slack does, and
injects faults.

    async with FakeSlack(token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        asked = slack.seed_message("C1", "U1", "<@UBOT> hello")
        slack.fail("chat.update", ratelimited(retry_after=2), error("msg_too_long"))
        ...
        assert [m.text for m in slack.thread("C1", asked)] == ["<@UBOT> hello", "Hi!"]
        assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update", ...]

Every method is ``GET`` or ``POST /api/<method>``; its arguments are read from the query, a
form body or a JSON body, as Slack reads them. The bot token goes in ``Authorization: Bearer``
(or a ``token`` argument): none answers ``not_authed``, another ``invalid_auth``. Methods:
``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.delete``, ``users.info``,
``conversations.replies``, ``assistant.threads.setStatus`` (its ``loading_messages``, at most
10, kept in :attr:`FakeSlack.loading_messages`), ``assistant.threads.setTitle``
(:attr:`FakeSlack.titles`), ``assistant.threads.setSuggestedPrompts`` (at most 4 prompts of
``title`` and ``message``; :attr:`FakeSlack.suggested_prompts`), ``reactions.add``,
``chat.postEphemeral``, and Slack's streaming — ``chat.startStream``, ``chat.appendStream``,
``chat.stopStream`` — any other answers ``unknown_method``. Answers are ``200`` with
``{"ok": ...}`` unless a fault says else.

Streaming (the rules in :mod:`tests.fakes.slack_streams`): ``chat.startStream`` posts a bot
reply in ``thread_ts`` (required: ``invalid_arguments``) in streaming state; outside a DM
(a channel id not starting "D") it needs ``recipient_user_id`` and ``recipient_team_id``
(``missing_recipient_user_id`` / ``missing_recipient_team_id``; an unknown user
``user_not_found``). ``FakeSlack(streaming="not_agent_app" | "feature_disabled")`` has every
start refused so (and ``setSuggestedPrompts`` answers ``not_agent_app``); in a channel whose id
starts "G" (a multi-person DM) starts answer ``channel_type_not_supported``. A stream lives
``stream_lifetime`` seconds (scaled by ``time_scale``, on ``clock``) from its start. While it
streams, ``chat.update`` answers ``streaming_state_conflict``; once it ended ``chat.update``
rewrites it as any message; ``chat.delete`` works either way. Tests read a stream with
:meth:`FakeSlack.stream`, press Slack's Stop with :meth:`FakeSlack.stop_stream_by_user`, and
compare what people see with :attr:`Message.shown`. Payloads Slack sends about these:
:func:`agent_session_stopped`, :func:`app_home_opened`, :func:`feedback_press`.

Rate limits: as on Slack, each method is limited per workspace (chat.postMessage per
channel). :data:`SLACK_LIMITS` holds Slack's published numbers, each a :class:`Limit`: at most
``calls`` calls in any sliding window of ``seconds``. A call over its limit is answered ``429``
with ``Retry-After`` (whole seconds until the oldest call in the window leaves it, at least 1)
and ``{"ok": false, "error": "ratelimited"}``, and changes nothing. Slack counts only the calls
it accepts: a call answered ``ratelimited`` does not fill the window, while one the method
refuses (``message_not_found``…) does. ``FakeSlack(limits=None)`` (or ``{}``) lifts every
limit; ``time_scale`` multiplies every window (``time_scale=0.05`` makes chat.update 50 per
3 s), and :meth:`FakeSlack.limit` tells a test the window it got, to set relaybot's budget by.
The windows (and a scripted 429's hold) are measured on ``clock``, which a test may drive;
:attr:`RecordedCall.at` stays ``time.monotonic()``.

Scripted faults (:func:`error`, :func:`ratelimited`, :func:`http_error`, :func:`disconnect`)
are taken per method, one per call, before the normal answer — and before the limits: a
scripted fault is answered even when the window is full, and is not counted in it. As on
Slack, a ``ratelimited`` answer holds for its ``Retry-After``: every call of that method before
then is ``ratelimited`` too, so a client that retries early is caught, whatever the machine's
speed. A bad token or an unknown method is refused before the limits and not counted either.
Every call is recorded in :attr:`FakeSlack.calls`, the error it was answered with included;
:meth:`FakeSlack.rate_limited` counts the ``ratelimited`` answers.

Files (:meth:`FakeSlack.add_file`): a file's ``url_private`` and ``url_private_download`` are
served under the fake's own address with the bearer-token check Slack makes — a missing or
wrong token gets Slack's sign-in page, HTML with status ``200``; ``add_file(redirect=True)``
answers the file's URLs with a ``302`` to the same file on another name of this host
(``localhost`` for ``127.0.0.1``), served there without a token, as Slack's signed file links
are. Every file request is recorded in :attr:`FakeSlack.file_requests`, with the
``Authorization`` it carried. A message seeded with ``files`` carries them in
``conversations.replies``, which reads ``oldest`` / ``latest`` / ``inclusive`` / ``limit`` as
Slack does (the thread's parent first, always).

As on Slack, an answer to the bot token carries the token's scopes in the ``x-oauth-scopes``
header: ``scopes``, by default those ``config/slack-app-manifest.yaml`` asks for
(:data:`MANIFEST_SCOPES`); ``FakeSlack(scopes=[...])`` installs the app with others.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from aiohttp import web

from bots.loopback import LoopbackServer
from tests.fakes.slack_streams import Refused as _Refused
from tests.fakes.slack_streams import (
    Stream,
    Streams,
    TaskCard,
    agent_session_stopped,
    app_home_opened,
    feedback_press,
)

__all__ = [
    "BOT_ID",
    "BOT_USER",
    "MANIFEST_SCOPES",
    "SLACK_LIMITS",
    "TEAM",
    "USERS",
    "FakeSlack",
    "Fault",
    "FileRequest",
    "Limit",
    "Message",
    "RecordedCall",
    "Stream",
    "TaskCard",
    "agent_session_stopped",
    "app_home_opened",
    "disconnect",
    "error",
    "feedback_press",
    "http_error",
    "ratelimited",
]

TEAM, BOT_USER, BOT_ID, APP_ID = "T1", "UBOT", "BBOT", "A1"
_FIRST_TS = 1_700_000_000_000_100  # microseconds: "1700000000.000100"
_MANIFEST = Path(__file__).resolve().parents[2] / "config" / "slack-app-manifest.yaml"

MANIFEST_SCOPES: tuple[str, ...] = tuple(
    yaml.safe_load(_MANIFEST.read_text(encoding="utf-8"))["oauth_config"]["scopes"]["bot"]
)
"""The bot scopes the Socket Mode manifest asks for: the app as it should be installed."""


def _user(uid: str, name: str, real: str, display: str, tz: str, **flags: bool) -> dict[str, Any]:
    return {
        "id": uid, "team_id": TEAM, "name": name, "real_name": real, "tz": tz, "deleted": False,
        "is_admin": False, "is_owner": False, "is_bot": False, **flags,
        "profile": {"real_name": real, "display_name": display, "team": TEAM},
    }  # fmt: skip


USERS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "U1": _user("U1", "ada", "Ada Lovelace", "ada", "Europe/London"),
        "U2": _user("U2", "jeanne", "Jeanne Martin", "Jeanne", "Europe/Paris"),
        "U3": _user("U3", "grace", "Grace Hopper", "", "America/New_York", is_admin=True),
        BOT_USER: _user(BOT_USER, "relaybot", "relaybot", "relaybot", "UTC", is_bot=True),
    }
)
"""Slack user objects as ``users.info`` returns them: U3 is a workspace admin with no display
name; UBOT is the bot itself."""


@dataclass(frozen=True)
class Limit:
    """At most ``calls`` calls of a method in any sliding window of ``seconds``, counted per
    workspace (``"team"``) or per channel (``"channel"``: the call's ``channel`` argument)."""

    calls: int
    seconds: float
    per: Literal["team", "channel"] = "team"


SLACK_LIMITS: Mapping[str, Limit] = MappingProxyType(
    {
        # The tier each method's page on docs.slack.dev/reference/methods gives; the tiers'
        # numbers from docs.slack.dev/apis/web-api/rate-limits (Tier 3: 50+ per minute,
        # Tier 4: 100+ per minute), taken at their floor. auth.test ("Special") is unlimited.
        "chat.update": Limit(50, 60),  # Tier 3
        "chat.delete": Limit(50, 60),  # Tier 3
        # "Special": about 1 per second per channel, short bursts allowed; as a 10 s window.
        "chat.postMessage": Limit(10, 10, per="channel"),
        "chat.postEphemeral": Limit(100, 60),  # Tier 4
        "users.info": Limit(100, 60),  # Tier 4
        "conversations.replies": Limit(50, 60),  # Tier 3 (internal and Marketplace apps)
        "assistant.threads.setStatus": Limit(50, 60),  # "Special", no number: as Tier 3
        "reactions.add": Limit(50, 60),  # Tier 3
        "assistant.threads.setTitle": Limit(100, 60),  # Tier 4
        "assistant.threads.setSuggestedPrompts": Limit(100, 60),  # Tier 4
        # Streaming: Tier 2 (20+ per minute) to start and stop, Tier 4 to append; per app per
        # workspace, as every tier (none of them is on the per-channel "Special" list).
        "chat.startStream": Limit(20, 60),  # Tier 2
        "chat.appendStream": Limit(100, 60),  # Tier 4
        "chat.stopStream": Limit(20, 60),  # Tier 2
    }
)
"""Slack's per-method rate limits, by method; a method not named is not limited."""


@dataclass(frozen=True, kw_only=True)
class Message:
    """A message as Slack keeps it now. A reply's ``thread_ts`` is its parent's ts (``None`` for
    a top-level message); the bot's own posts have ``bot_id``. A streamed message's ``text`` is
    its markdown so far and its ``blocks`` those set under it (``streamed`` until a
    ``chat.update`` rewrites it)."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    bot_id: str | None = None
    edited: bool = False
    streamed: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        """The text of its ``markdown`` blocks, joined ("" when it has none)."""
        return "".join(b["text"] for b in self.blocks if b.get("type") == "markdown")

    @property
    def shown(self) -> str:
        """The text people see, whichever way it was written: the streamed markdown, else the
        ``markdown`` blocks, else ``text``."""
        if self.streamed:
            return self.text
        return self.markdown or self.text

    def payload(self) -> dict[str, Any]:
        """The message as Slack sends it in API answers."""
        body: dict[str, Any] = {"type": "message", "user": self.user, "text": self.text}
        body |= {"ts": self.ts, "team": TEAM}
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
        if self.blocks:
            body["blocks"] = self.blocks
        if self.bot_id is not None:
            body |= {"bot_id": self.bot_id, "app_id": APP_ID}
        if self.edited:
            body["edited"] = {"user": self.user, "ts": self.ts}
        if self.files:
            body |= {"files": self.files, "upload": False}
        return body


@dataclass(frozen=True, kw_only=True)
class RecordedCall:
    """One call as the fake saw it: ``args`` merged from query, form and JSON (the token left
    out), ``at`` its ``time.monotonic()``, ``error`` the Slack error it was answered with
    (``"http 500"`` for a bare status, ``"disconnect"``), ``None`` when it succeeded."""

    method: str
    args: dict[str, Any]
    at: float
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileRequest:
    """One request for a file: its path, the ``Host`` it was sent to, its ``Authorization``
    header (``None`` when it had none), and the status it was answered with."""

    path: str
    host: str
    authorization: str | None
    status: int


SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to your workspace</h1></body></html>"
)
"""What Slack serves for a ``url_private`` fetched without a token that may read files."""


@dataclass(frozen=True)
class Fault:
    """An answer given instead of the normal one; ``status == 0`` cuts the connection."""

    status: int
    body: dict[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.body is not None:
            return str(self.body["error"])
        return f"http {self.status}" if self.status else "disconnect"


def error(code: str) -> Fault:
    """``200 {"ok": false, "error": code}``: ``message_not_found``, ``msg_too_long``…"""
    return Fault(200, {"ok": False, "error": code})


def ratelimited(retry_after: int = 1) -> Fault:
    """``429`` with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``."""
    return Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def http_error(status: int = 500) -> Fault:
    """A bare HTTP error with an HTML body, as a failing edge sends it."""
    return Fault(status, None)


def disconnect() -> Fault:
    """The connection is cut before any answer (slack_sdk's default handler retries once)."""
    return Fault(0, None)


class _Windows:
    """A sliding-window log per method and scope: when each call the limits accepted came."""

    def __init__(self, limits: Mapping[str, Limit]) -> None:
        self.limits = limits
        self._log: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def take(self, method: str, args: Mapping[str, Any], now: float) -> int | None:
        """Counts the call and returns ``None``, or — its window full, and then not counted —
        returns its ``Retry-After``: whole seconds until the oldest call leaves, at least 1."""
        if (limit := self.limits.get(method)) is None:
            return None
        scope = TEAM if limit.per == "team" else str(args.get("channel") or "")
        log = self._log[method, scope]
        while log and now - log[0] >= limit.seconds:
            log.popleft()
        if len(log) >= limit.calls:
            return max(1, math.ceil(round(log[0] + limit.seconds - now, 6)))  # to the µs
        log.append(now)
        return None


class FakeSlack(LoopbackServer):
    """An aiohttp server on ``127.0.0.1`` (port 0 = ephemeral); :attr:`api_url` is what
    ``AsyncWebClient(base_url=...)`` takes."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        users: Mapping[str, Mapping[str, Any]] = USERS,
        limits: Mapping[str, Limit] | None = SLACK_LIMITS,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        scopes: Sequence[str] = MANIFEST_SCOPES,
        stream_lifetime: float = 300.0,
        streaming: Literal["ok", "not_agent_app", "feature_disabled"] = "ok",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, not {time_scale}")
        scaled = {
            m: replace(lim, seconds=lim.seconds * time_scale) for m, lim in (limits or {}).items()
        }
        self.calls: list[RecordedCall] = []
        self.api_url = ""
        self.statuses: dict[tuple[str, str], str] = {}
        """The assistant status shown under each ``(channel, thread_ts)``; a reply clears it."""
        self.loading_messages: dict[tuple[str, str], list[str]] = {}
        """The ``loading_messages`` of each ``(channel, thread_ts)``'s last status."""
        self.titles: dict[tuple[str, str], str] = {}
        """Each assistant thread's title, by ``(channel, thread_ts)``."""
        self.suggested_prompts: dict[tuple[str, str | None], dict[str, Any]] = {}
        """``{"title": ..., "prompts": [{"title", "message"}, ...]}`` by ``(channel,
        thread_ts)``; ``thread_ts`` is ``None`` when the call named none (as an agent app must:
        Slack ignores a call with ``thread_ts`` outside the legacy assistant view)."""
        self._streams = Streams(lifetime=stream_lifetime * time_scale)
        self._streaming_refusal = None if streaming == "ok" else streaming
        self._token, self._users, self._clock = token, users, clock
        self._scopes = {"x-oauth-scopes": ",".join(scopes)}
        self._windows = _Windows(MappingProxyType(scaled))
        self._messages: dict[str, dict[str, Message]] = defaultdict(dict)
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._limited_until: dict[str, float] = {}  # method -> when its 429 window ends
        self._removed: set[str] = set()
        self._posted = 0
        self.file_requests: list[FileRequest] = []
        self._files: dict[str, _File] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.info": self._users_info,
            "conversations.replies": self._conversations_replies,
            "assistant.threads.setStatus": self._assistant_threads_set_status,
            "reactions.add": self._reactions_add,
            "assistant.threads.setTitle": self._assistant_threads_set_title,
            "assistant.threads.setSuggestedPrompts": self._assistant_threads_set_suggested_prompts,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
        }
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/files-pri/{team_file}/{name}", self._file)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._file)
        app.router.add_get("/files-edge/{file_id}/{name}", self._edge_file)
        super().__init__(app, host=host, port=port)

    async def start(self) -> None:
        await super().start()
        self.api_url = f"{self.url}/api/"

    # --- what tests use ------------------------------------------------------------------------

    def fail(self, method: str, *faults: Fault) -> None:
        """Script the next calls of ``method`` (e.g. ``"chat.update"``), one fault each."""
        self._faults[method].extend(faults)

    def remove_bot(self, channel: str) -> None:
        """The bot is removed from ``channel``: every later write there is ``not_in_channel``."""
        self._removed.add(channel)

    def seed_message(
        self, channel: str, user: str, text: str, thread_ts: str | None = None,
        files: Sequence[Mapping[str, Any]] = (),
    ) -> str:  # fmt: skip
        """A user's message, as if they had sent it (with ``files``, from :meth:`add_file`);
        its ``ts``."""
        return self._store(
            Message(channel=channel, ts="", text=text, user=user, thread_ts=thread_ts,
                    files=[dict(f) for f in files])
        )  # fmt: skip

    def add_file(
        self, name: str, data: bytes, *, mimetype: str, size: int | None = None,
        redirect: bool = False, chunked: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Upload a file: the file object Slack puts in a message event's ``files``, its URLs
        served by this fake. ``size`` is what the object reports (default: the real size);
        ``redirect``: its URLs answer with a redirect to another name of this host;
        ``chunked``: its body is sent in chunks with no ``Content-Length``."""
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = _File(data=data, mimetype=mimetype, redirect=redirect,
                                     chunked=chunked)  # fmt: skip
        base = f"{self.url}/files-pri/{TEAM}-{file_id}"
        kind = name.rpartition(".")[2].lower() if "." in name else "binary"
        return {
            "id": file_id, "created": 1_700_000_000, "timestamp": 1_700_000_000, "name": name,
            "title": name, "mimetype": mimetype, "filetype": kind, "user": "U1",
            "size": len(data) if size is None else size, "mode": "hosted",
            "is_external": False, "is_public": False, "file_access": "visible",
            "url_private": f"{base}/{name}", "url_private_download": f"{base}/download/{name}",
            "permalink": f"https://t1.slack.com/files/U1/{file_id}/{name}",
        }  # fmt: skip

    def message(self, channel: str, ts: str) -> Message | None:
        """The message as shown now, ``None`` when there is none (or it was deleted)."""
        return self._messages[channel].get(ts)

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The thread's parent and its replies, oldest first, as shown now."""
        kept = self._messages[channel].values()
        return [m for m in kept if thread_ts in (m.ts, m.thread_ts)]

    def stream(self, channel: str, ts: str) -> Stream | None:
        """The stream of the message ``ts`` as it stands now; ``None`` if it never streamed."""
        return self._streams.get(channel, ts, self._clock())

    def stop_stream_by_user(self, channel: str, ts: str) -> None:
        """The person pressed Slack's Stop: the stream ends, its next append is answered
        ``stopped_by_user`` (a stop is still taken, to end the session)."""
        self._streams.stop_by_user(channel, ts)

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [call.method for call in self.calls]

    def limit(self, method: str) -> Limit | None:
        """The limit ``method`` is held to, its window scaled; ``None`` when it has none."""
        return self._windows.limits.get(method)

    def rate_limited(self, method: str | None = None) -> int:
        """How many calls (of ``method``, or of all) were answered ``429 ratelimited``."""
        return sum(c.error == "ratelimited" and method in (None, c.method) for c in self.calls)

    # --- the HTTP side -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _args(request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = args.pop("token", None) or bearer or None
        call = RecordedCall(method=method, args=args, at=time.monotonic())
        if (fault := self._refusal(method, token, args)) is not None:
            self.calls.append(replace(call, error=fault.name))
            return _answer(request, fault)
        try:
            body = self._methods[method](args)
        except _Refused as refused:
            self.calls.append(replace(call, error=refused.code))
            return web.json_response({"ok": False, "error": refused.code}, headers=self._scopes)
        self.calls.append(call)
        return web.json_response({"ok": True, **body}, headers=self._scopes)

    def _refusal(self, method: str, token: str | None, args: dict[str, Any]) -> Fault | None:
        """The answer a call gets instead of its method's, in this order: a scripted 429 still
        holding, a scripted fault, a bad token or method, the method's limit; else ``None``."""
        now = self._clock()
        if (wait := self._limited_until.get(method, 0.0) - now) > 0:
            return ratelimited(retry_after=math.ceil(wait))
        if self._faults[method]:
            fault = self._faults[method].popleft()
            if fault.status == 429:
                self._limited_until[method] = now + float(fault.headers["Retry-After"])
            return fault
        if token is None:
            return error("not_authed")
        if token != self._token:
            return error("invalid_auth")
        if method not in self._methods:
            return error("unknown_method")
        if (retry_after := self._windows.take(method, args, now)) is not None:
            return ratelimited(retry_after)
        return None

    # --- files ---------------------------------------------------------------------------------

    async def _file(self, request: web.Request) -> web.StreamResponse:
        """A ``url_private``: the bytes for the bot token, Slack's sign-in page for anything
        else; a file added with ``redirect`` is moved to another name of this host."""
        authorization = request.headers.get("Authorization")
        _, _, file_id = request.match_info["team_file"].partition("-")
        found = self._files.get(file_id)
        if authorization != f"Bearer {self._token}":
            response: web.StreamResponse = web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        elif found is None:
            response = web.Response(status=404, text="File not found")
        elif found.redirect:
            other = "localhost" if request.url.host == "127.0.0.1" else "127.0.0.1"
            name = request.match_info["name"]
            target = f"http://{other}:{request.url.port}/files-edge/{file_id}/{name}"
            response = web.Response(status=302, headers={"Location": target})
        else:
            response = await _file_body(request, found)
        self._record_file(request, response.status)
        return response

    async def _edge_file(self, request: web.Request) -> web.StreamResponse:
        """Where a redirected file is served: no token needed (the link is the permission)."""
        found = self._files.get(request.match_info["file_id"])
        if found is None:
            response: web.StreamResponse = web.Response(status=404, text="File not found")
        else:
            response = await _file_body(request, found)
        self._record_file(request, response.status)
        return response

    def _record_file(self, request: web.Request, status: int) -> None:
        self.file_requests.append(FileRequest(
            path=request.path, host=request.url.host or "",
            authorization=request.headers.get("Authorization"), status=status,
        ))  # fmt: skip

    # --- the methods ---------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://t1.slack.com/", "team": "Team One", "user": "relaybot",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID,
                "is_enterprise_install": False}  # fmt: skip

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args)
        text, blocks = _content(args, text="", blocks=[])
        if not (text or blocks):
            raise _Refused("no_text")
        thread_ts = args.get("thread_ts") or None
        new = Message(channel=channel, ts="", text=text, user=BOT_USER, thread_ts=thread_ts,
                      blocks=blocks, bot_id=BOT_ID)  # fmt: skip
        ts = self._store(new)
        if thread_ts is not None:
            self.statuses.pop((channel, thread_ts), None)
        return {"channel": channel, "ts": ts, "message": self._messages[channel][ts].payload()}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._own(args)
        if self._streams.streaming(old.channel, old.ts, self._clock()):
            raise _Refused("streaming_state_conflict")
        text, blocks = _content(args, text=old.text, blocks=old.blocks)
        new = replace(old, text=text, blocks=blocks, edited=True, streamed=False)
        self._messages[old.channel][old.ts] = new
        return {"channel": old.channel, "ts": old.ts, "text": text, "message": new.payload()}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._own(args, "cant_delete_message")
        del self._messages[old.channel][old.ts]
        return {"channel": old.channel, "ts": old.ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        """Shown to one user only, and never stored: it is not part of the thread."""
        self._writable(args)
        if str(args.get("user")) not in self._users:
            raise _Refused("user_not_in_channel")
        return {"message_ts": f"{_FIRST_TS // 1_000_000}.999999"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        if (user := self._users.get(str(args.get("user")))) is None:
            raise _Refused("user_not_found")
        return {"user": dict(user)}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._channel(args), str(args.get("ts"))
        messages = [m.payload() for m in self.thread(channel, ts)]
        if not messages:
            raise _Refused("thread_not_found")
        if len(messages) > 1:
            messages[0] |= {"thread_ts": ts, "reply_count": len(messages) - 1}
        parent, replies = messages[0], [m for m in messages[1:] if _in_range(m["ts"], args)]
        messages = [parent, *replies][: int(args.get("limit") or 1000)]
        return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _assistant_threads_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args, key="channel_id")
        loading = _json_list(args.get("loading_messages", []))
        if len(loading) > 10 or not all(isinstance(m, str) for m in loading):
            raise _Refused("invalid_arguments")
        thread = (channel, str(args.get("thread_ts")))
        self.statuses[thread] = str(args.get("status", ""))
        self.loading_messages[thread] = loading
        return {}

    def _assistant_threads_set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args, key="channel_id")
        if not (thread_ts := str(args.get("thread_ts") or "")):
            raise _Refused("invalid_thread_ts")
        if not (title := str(args.get("title") or "")):
            raise _Refused("invalid_arguments")
        self.titles[(channel, thread_ts)] = title
        return {}

    def _assistant_threads_set_suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args, key="channel_id")
        if self._streaming_refusal == "not_agent_app":
            raise _Refused("not_agent_app")
        prompts = _json_list(args.get("prompts"))
        if not 0 < len(prompts) <= 4 or not all(_is_prompt(p) for p in prompts):
            raise _Refused("invalid_arguments")
        title = args.get("title")
        self.suggested_prompts[(channel, args.get("thread_ts") or None)] = {
            "title": None if title is None else str(title), "prompts": prompts}  # fmt: skip
        return {}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args)
        if self._streaming_refusal is not None:
            raise _Refused(self._streaming_refusal)
        if channel.startswith("G"):
            raise _Refused("channel_type_not_supported")
        if not (thread_ts := str(args.get("thread_ts") or "")):
            raise _Refused("invalid_arguments")
        if not channel.startswith("D"):
            self._check_recipient(args)
        opening = self._streams.opening(args)
        ts = self._store(Message(channel=channel, ts="", text="", user=BOT_USER,
                                 thread_ts=thread_ts, bot_id=BOT_ID, streamed=True))  # fmt: skip
        self._streams.start(channel, ts, opening, self._clock())
        self.statuses.pop((channel, thread_ts), None)
        return self._show_stream(channel, ts)

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._own(args, "message_not_owned_by_app")
        self._streams.append(old.channel, old.ts, args, self._clock())
        return self._show_stream(old.channel, old.ts)

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self._own(args, "message_not_owned_by_app")
        self._streams.stop(old.channel, old.ts, args, self._clock())
        shown = self._show_stream(old.channel, old.ts)
        return shown | {"message": self._messages[old.channel][old.ts].payload()}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("timestamp")) not in self._messages[self._writable(args)]:
            raise _Refused("message_not_found")
        return {}

    # --- helpers -------------------------------------------------------------------------------

    def _check_recipient(self, args: dict[str, Any]) -> None:
        """Outside a DM a stream names the person it is for, and their workspace."""
        if not (user := args.get("recipient_user_id")):
            raise _Refused("missing_recipient_user_id")
        if not args.get("recipient_team_id"):
            raise _Refused("missing_recipient_team_id")
        if str(user) not in self._users:
            raise _Refused("user_not_found")

    def _show_stream(self, channel: str, ts: str) -> dict[str, Any]:
        """The stored message made to show its stream as it stands; the answer's ids."""
        shown = self._streams.shown(channel, ts)
        assert shown is not None, "only a streamed message is shown from its stream"
        text, blocks = shown
        message = self._messages[channel][ts]
        self._messages[channel][ts] = replace(message, text=text, blocks=blocks, streamed=True)
        return {"channel": channel, "ts": ts}

    def _store(self, message: Message) -> str:
        micros = _FIRST_TS + 100 * self._posted
        self._posted += 1
        ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        self._messages[message.channel][ts] = replace(message, ts=ts)
        return ts

    def _channel(self, args: dict[str, Any], key: str = "channel") -> str:
        if not (channel := str(args.get(key) or "")):
            raise _Refused("channel_not_found")
        return channel

    def _writable(self, args: dict[str, Any], key: str = "channel") -> str:
        channel = self._channel(args, key)
        if channel in self._removed:
            raise _Refused("not_in_channel")
        return channel

    def _own(self, args: dict[str, Any], refusal: str = "cant_update_message") -> Message:
        """The bot's message named by ``channel`` and ``ts``, to change."""
        found = self._messages[self._writable(args)].get(str(args.get("ts")))
        if found is None:
            raise _Refused("message_not_found")
        if found.bot_id != BOT_ID:
            raise _Refused(refusal)
        return found


@dataclass(frozen=True, kw_only=True)
class _File:
    data: bytes
    mimetype: str
    redirect: bool
    chunked: bool


async def _file_body(request: web.Request, file: _File) -> web.StreamResponse:
    if not file.chunked:
        return web.Response(body=file.data, content_type=file.mimetype)
    response = web.StreamResponse(headers={"Content-Type": file.mimetype})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(file.data), 64 * 1024):
        await response.write(file.data[start : start + 64 * 1024])
    await response.write_eof()
    return response


def _in_range(ts: str, args: Mapping[str, Any]) -> bool:
    """Whether ``ts`` is inside the ``oldest`` / ``latest`` range of a history call (ends left
    out unless ``inclusive``)."""
    inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
    value = float(ts)
    oldest, latest = args.get("oldest"), args.get("latest")
    after = oldest is None or value > float(oldest) or (inclusive and value == float(oldest))
    before = latest is None or value < float(latest) or (inclusive and value == float(latest))
    return after and before


async def _args(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.method == "POST":
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args


def _json_list(raw: object) -> list[Any]:
    """A list argument, sent as JSON or (in a form) as a JSON string; else not a list."""
    found = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(found, list):
        raise _Refused("invalid_arguments")
    return found


def _is_prompt(prompt: object) -> bool:
    return isinstance(prompt, dict) and all(
        isinstance(prompt.get(k), str) and prompt[k] for k in ("title", "message")
    )


def _content(
    args: dict[str, Any], *, text: str, blocks: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    """The text and blocks a write asks for; what it leaves out stays as it was (``chat.update``
    keeps blocks not sent). Slack's size limits apply."""
    text = str(args.get("text", text))
    raw = args.get("blocks", blocks)
    blocks = json.loads(raw) if isinstance(raw, str) else list(raw)
    if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks):
        raise _Refused("invalid_blocks")
    if len(text) > 40_000:
        raise _Refused("msg_too_long")
    if sum(len(b.get("text", "")) for b in blocks if b["type"] == "markdown") > 12_000:
        raise _Refused("msg_blocks_too_long")
    return text, blocks


def _answer(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.status == 0:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=599)
    if fault.body is None:
        return web.Response(status=fault.status, text="<html>Server Error</html>",
                            content_type="text/html", headers=fault.headers)  # fmt: skip
    return web.json_response(fault.body, status=fault.status, headers=fault.headers)
