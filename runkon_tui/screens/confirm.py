"""A yes/no question (cancel a run, retry items). `y` or enter confirms; `n`/esc not. Quitting with
a run active has its own three-way question (screens/quit.py).

A question about the active run (`about_active_run`) is withdrawn — answered "no" — when that run
ends while it is open: there is nothing left to cancel.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from runkon_tui.keys import dialog_key
from runkon_tui.widgets.markup import esc


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 60; max-width: 90%; height: auto; padding: 1 2;
        background: $panel; border: thick $warning;
    }
    ConfirmScreen #question { width: 100%; margin-bottom: 1; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm_no"),
    ]

    def __init__(
        self, question: str, yes: str = "Yes", no: str = "No", *, about_active_run: bool = False
    ) -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no
        self.about_active_run = about_active_run

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(esc(self.question), id="question")
            with Horizontal():
                yield Button(f"{self.no} ({dialog_key(self, 'confirm_no')})", id="no")
                yield Button(f"{self.yes} ({dialog_key(self, 'confirm_yes')})", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
