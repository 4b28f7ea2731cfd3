"""Command palette: every dashboard action, searchable, listed only while it applies.

Textual's own system commands that duplicate ours (Theme, Quit, Keys, Maximize/Minimize) are left
out (`RunkonApp.get_system_commands`): two entries for one thing, one of them without our key or
our questions (Textual's Quit would not ask about a run going). Its Screenshot stays: nothing of
ours saves a picture of the screen, and one is what a bug report wants."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.theme import ThemeProvider

if TYPE_CHECKING:
    from runkon_tui.app import RunkonApp

#: Textual's system commands that a key of ours already does (`t`, `q`, `?`, `z`).
DUPLICATED_SYSTEM_COMMANDS = frozenset({"Theme", "Quit", "Keys", "Maximize", "Minimize"})

Command = tuple[str, str, Callable[[], object]]


class DashboardCommands(Provider):
    """Mirrors the main screen's key bindings (same ids, same check_action, and only those the
    focused pane does not take over), and the panes' own (rerun from the tree's step, retry items
    or a failure cluster) while they apply."""

    def _commands(self) -> list[Command]:
        app: RunkonApp = self.app  # type: ignore[assignment]
        screen = app.main_screen
        if screen is None:
            return []
        out: list[Command] = []
        # The main screen's keys the focused pane leaves to it, as the footer shows them: the
        # tree's enter opens a node, so Run (enter) is not offered while the tree has the focus.
        # A pane's command says what it acts on (`Retry failed items of foreach …  (E)`): the
        # screen's key for the same thing is not listed again.
        live = {active.binding.id for active in screen.active_bindings.values()}
        panes = screen.pane_commands()
        covered = {binding_id for _, binding_id, _ in panes}
        table = app.key_table()
        for key, binding_id, description, action in table:
            if binding_id not in live or binding_id in covered or screen.check_action(action, ()) is not True:
                continue
            title = f"{description}  ({key})"
            out.append((title, f"binding id: {binding_id}", partial(screen.run_action, action)))
        keys = {binding_id: key for key, binding_id, _, _ in table}
        keys.update((binding_id, key) for _, key, binding_id, _ in app.pane_key_table())
        for title, binding_id, callback in panes:
            out.append((f"{title}  ({keys.get(binding_id, '?')})", f"binding id: {binding_id}", callback))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


CURRENT_MARK = "  ✓ current"


class ThemeCommands(ThemeProvider):
    """Textual's theme list (`t`), with the theme in use marked: a picker that does not say
    where you are makes you remember it."""

    def _label(self, name: str) -> str:
        return name + CURRENT_MARK if name == self.app.theme else name

    async def discover(self) -> Hits:
        for name, callback in self.commands:
            yield DiscoveryHit(self._label(name), callback, text=name)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback in self.commands:
            score = matcher.match(name)
            if score > 0:
                shown = matcher.highlight(name)
                if name == self.app.theme:
                    shown = shown + CURRENT_MARK
                yield Hit(score, shown, callback, text=name)
