"""Command palette: every dashboard action, searchable, listed only while it applies."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from runkon_tui.app import RunkonApp


class DashboardCommands(Provider):
    """Mirrors the main screen's key bindings (same ids, same check_action)."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app: RunkonApp = self.app  # type: ignore[assignment]
        screen = app.main_screen
        if screen is None:
            return []
        out = []
        for key, binding_id, description, action in app.key_table():
            if action in ("help",):
                continue
            if screen.check_action(action, ()) is not True:
                continue
            title = f"{description}  ({key})"
            out.append((title, f"binding id: {binding_id}", partial(screen.run_action, action)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)  # type: ignore[arg-type]
