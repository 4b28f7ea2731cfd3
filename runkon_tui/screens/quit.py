"""Quitting with runs of ours active: keep them running in the background, cancel them, or stay.

The question is about every run started here that is still going, on screen or not (a run left
going in its runner when another was started, waiting at a gate, is asked about too). "Keep
running" leaves runs in their background runners (a run this process hosts is handed to one,
`Workspace.hand_over`): they go on after the dashboard closes, and `runkon-tui --attach RUN_ID`
or `runkon-flow watch RUN_ID` follows them again. Offered only when the runs are kept in a
database another process can open (not for an in-memory store). The answer is `"keep"`,
`"cancel"` or `"stay"`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from runkon_tui.keys import dialog_key
from runkon_tui.widgets.markup import esc

#: The buttons' row inside the dialog at 80 columns: its width of 76 less the thick border and the
#: padding (the CSS below).
BUTTON_ROW = 76 - 2 - 4


def _button_width(label: str) -> int:
    return max(16, len(label) + 2)  # Textual's Button: min-width 16, a column of padding each side


class QuitScreen(ModalScreen[str]):
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    /* 76: the three buttons (16 + 16 + 32 columns and their margins) inside the padding at 80 columns */
    QuitScreen > Vertical {
        width: 76; max-width: 95%; height: auto; padding: 1 2;
        background: $panel; border: thick $warning;
    }
    QuitScreen #question { width: 100%; margin-bottom: 1; }
    QuitScreen Horizontal { height: auto; align-horizontal: right; }
    QuitScreen Button { margin-left: 1; }
    """

    BINDINGS = [
        Binding("b", "answer('keep')", "Keep running", id="quit_keep"),
        Binding("c", "answer('cancel')", "Cancel run", id="quit_cancel"),
        Binding("s,escape", "answer('stay')", "Stay", id="quit_stay"),
    ]

    about_active_run = True  # withdrawn (answered "stay") when the run ends while it is open

    def __init__(self, label: str, *, runs: int = 1, can_keep: bool, why_not: str = "") -> None:
        super().__init__()
        self.label = label
        self.runs = runs
        self.can_keep = can_keep
        self.why_not = why_not

    def _question(self) -> str:
        text = f"{self.label} {'is' if self.runs == 1 else 'are'} active. Quit and"
        if not self.can_keep and self.why_not:
            text += f"\n(it cannot keep running here: {self.why_not})"
        return esc(text)

    def _cancel_label(self) -> str:
        what = "Cancel run" if self.runs == 1 else "Cancel all"  # fits 80 columns
        return f"{what} ({dialog_key(self, 'quit_cancel')})"

    def _keep_label(self, beside: list[str]) -> str:
        """`Keep running in background (b)`, shortened to `Keep running (ctrl+b)` when the keys
        the keymap gives would push it past the dialog's edge at 80 columns."""
        key = dialog_key(self, "quit_keep")
        label = f"Keep running in background ({key})"
        row = sum(_button_width(text) + 1 for text in [*beside, label])  # each with its margin
        return label if row <= BUTTON_ROW else f"Keep running ({key})"

    def compose(self) -> ComposeResult:
        stay = f"Stay ({dialog_key(self, 'quit_stay')})"
        with Vertical():
            yield Label(self._question(), id="question")
            with Horizontal():
                yield Button(stay, id="stay")
                yield Button(self._cancel_label(), id="cancel", variant="error")
                yield Button(
                    self._keep_label([stay, self._cancel_label()]),
                    id="keep",
                    variant="primary",
                    disabled=not self.can_keep,
                )

    def about(self, label: str, runs: int) -> None:
        """Some of the runs asked about ended while the question was open: ask about the rest."""
        self.label, self.runs = label, runs
        self.query_one("#question", Label).update(self._question())
        self.query_one("#cancel", Button).label = self._cancel_label()

    def on_mount(self) -> None:
        self.query_one("#keep" if self.can_keep else "#stay", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_answer(self, value: str) -> None:
        if value == "keep" and not self.can_keep:
            return
        self.dismiss(value)
