"""Discord's error answers, in its JSON shape: ``{"message": …, "code": …}``, and ``errors``
naming the field for 50035.

The codes the fake answers: 10003 Unknown Channel (a deleted thread), 10004 Unknown Guild,
10007 Unknown Member, 10008 Unknown Message, 10013 Unknown User, 10015 Unknown Webhook, 10062
Unknown interaction, 40060 already acknowledged, 50001 Missing Access, 50005 editing another's
message, 50006 empty message, 50008 sending to a forum, 50013 Missing Permissions (a thread in
"announcements"), 50024 not a thread, 50027 an expired interaction token, 50035 Invalid Form
Body (content over 2,000 characters, a thread name over 100, …), 50083 editing in an archived
thread, 160004 a second thread from one message, 160005 a locked thread.
"""

from __future__ import annotations

from typing import Any


class DiscordError(Exception):
    """An error answer in Discord's JSON shape."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.body = status, {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def invalid_form(field_name: str, code: str, message: str) -> DiscordError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return DiscordError(400, 50035, "Invalid Form Body", errors)
