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

    def __init__(self, keys: list[tuple[str, str, str]], config_path: str) -> None:
        super().__init__()
        self.keys = keys
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _, _ in self.keys), default=4) + 2
        lines = ["[b]Keys[/]  (remap by id in the settings file)", ""]
        for key, binding_id, description in self.keys:
            keys = f"[b $accent]{esc(key.ljust(width))}[/]"
            lines.append(f"  {keys}{esc(description.ljust(28))}[$text-muted]{binding_id}[/]")
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

    def action_dismiss_help(self) -> None:
        self.dismiss()
