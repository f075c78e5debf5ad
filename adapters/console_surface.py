"""A terminal as a ``Surface``: the reply re-renders in place with rich, or prints once piped.

On a terminal (``live=True``) every post and edit redraws the reply — Markdown, then a dim
status line, or a red one for an error — in a rich ``Live`` region that stays on screen when
the reply is final. Piped (``live=False``), nothing is drawn while the answer grows: each
message is printed as plain text when it is final, so output read by a program holds every
answer exactly once.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from adapters.surface import Draft, MessageRef, SurfaceLimits

__all__ = ["ConsoleSurface"]


class ConsoleSurface:
    """One reply in a terminal. Make one per reply; it owns its rich ``Live`` region."""

    def __init__(self, console: Console, *, live: bool, edit_interval: float = 0.05) -> None:
        self._console = console
        self._live_mode = live
        self._limits = SurfaceLimits(max_length=1_000_000, edit_interval=edit_interval)
        self._drafts: dict[MessageRef, Draft] = {}
        self._live: Live | None = None

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    def render(self, markdown: str) -> str:
        return markdown

    async def post(self, draft: Draft) -> MessageRef:
        ref = f"console-{len(self._drafts) + 1}"
        self._drafts[ref] = draft
        self._show()
        return ref

    async def edit(self, ref: MessageRef, draft: Draft) -> None:
        self._drafts[ref] = draft
        self._show()

    async def delete(self, ref: MessageRef) -> None:
        self._drafts.pop(ref, None)
        self._show()

    def _show(self) -> None:
        finished = bool(self._drafts) and all(d.final for d in self._drafts.values())
        if not self._live_mode:
            if finished:
                self._print_plain()
            return
        if self._live is None:
            self._live = Live(
                console=self._console, auto_refresh=False, vertical_overflow="visible"
            )
            self._live.start()
        self._live.update(self._renderable(), refresh=True)
        if finished:
            self._live.stop()
            self._live = None

    def _renderable(self) -> RenderableType:
        parts: list[RenderableType] = []
        for draft in self._drafts.values():
            if draft.text:
                parts.append(Markdown(draft.text))
            if draft.status:
                style = "bold red" if draft.error else "dim italic"
                parts.append(Text(draft.status, style=style))
        return Group(*parts)

    def _print_plain(self) -> None:
        for draft in self._drafts.values():
            if draft.text:
                self._console.print(draft.text, markup=False, highlight=False, soft_wrap=True)
            if draft.status and draft.error:
                self._console.print(f"error: {draft.status}", markup=False, highlight=False)
            elif draft.status:
                self._console.print(f"({draft.status})", markup=False, highlight=False)
        self._drafts.clear()
