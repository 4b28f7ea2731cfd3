"""`?` help: every key with its binding id (for the keymap in the settings file) and the glyphs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from runkon_tui.status import GLYPH
from runkon_tui.widgets.markup import esc, paint

LEGEND = ("pending", "running", "waiting", "completed", "failed", "timed_out", "skipped", "cancelled")


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 84; max-width: 95%; height: auto; max-height: 90%; padding: 1 2;
        background: $panel; border: thick $primary;
    }
    """

    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "Close", id="close_help")]

    def __init__(
        self,
        keys: list[tuple[str, str, str]],
        config_path: str,
        pane_keys: list[tuple[str, str, str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.keys = keys
        self.config_path = config_path
        self.pane_keys = pane_keys or []  # (pane, key, binding id, description)

    def compose(self) -> ComposeResult:
        width = max((len(k) for _, k, _, _ in self._all_keys()), default=4) + 2
        lines = ["[b]Keys[/]  (remap by id in the settings file)", ""]
        for key, binding_id, description in self.keys:
            lines.append(self._line(key, binding_id, description, width))
        if self.pane_keys:
            lines += ["", "[b]On a focused pane[/]  (tab moves between panes)", ""]
            for pane, key, binding_id, description in self.pane_keys:
                lines.append(self._line(key, binding_id, f"{pane}: {description}", width))
        lines += [
            "",
            "  [b $accent]tab[/]  next pane   [b $accent]ctrl+p[/]  command palette (every action)",
            "",
            "[b]Status glyphs[/]",
            "  " + "   ".join(paint(s, GLYPH[s]) + f" {s}" for s in LEGEND),
            "",
            f"[$text-muted]settings: {esc(self.config_path)}[/]",
        ]
        with VerticalScroll():
            yield Static("\n".join(lines))

    def _all_keys(self) -> list[tuple[str, str, str, str]]:
        return [("", k, i, d) for k, i, d in self.keys] + self.pane_keys

    @staticmethod
    def _line(key: str, binding_id: str, description: str, width: int) -> str:
        keys = f"[b $accent]{esc(key.ljust(width))}[/]"
        return f"  {keys}{esc(description.ljust(28))}[$text-muted]{binding_id}[/]"

    def action_dismiss_help(self) -> None:
        self.dismiss()
