"""The gate dialog: what the gate asks, its options, an optional note, approve or reject."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static

from runkon_tui.run_view import GateView
from runkon_tui.widgets.markup import esc


@dataclass
class GateDecision:
    approved: bool
    note: str | None = None
    selections: list[str] = field(default_factory=list)


class GateScreen(ModalScreen[GateDecision | None]):
    DEFAULT_CSS = """
    GateScreen { align: center middle; }
    GateScreen > Vertical {
        width: 76; max-width: 95%; height: auto; max-height: 90%; padding: 1 2;
        background: $panel; border: thick $warning;
    }
    GateScreen #prompt { margin: 1 0; }
    GateScreen SelectionList { height: auto; max-height: 8; margin-bottom: 1; }
    GateScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    GateScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="gate_close"),
        Binding("ctrl+y", "decide(True)", "Approve", id="gate_approve"),
        Binding("ctrl+r", "decide(False)", "Reject", id="gate_reject"),
    ]

    def __init__(self, gate: GateView, intent: str = "approve") -> None:
        super().__init__()
        self.gate = gate
        self.intent = intent

    def compose(self) -> ComposeResult:
        gate = self.gate
        with Vertical():
            kind = f" ({esc(gate.gate_type)})" if gate.gate_type and gate.gate_type != gate.gate_name else ""
            yield Label(f"[b]Gate {esc(gate.gate_name)}[/]{kind}")
            yield Static(esc(gate.prompt or "Approve to continue the run, reject to fail it."), id="prompt")
            if gate.options:
                yield Label("Options (space toggles):")
                yield SelectionList[str](*((esc(label), value) for value, label in gate.options.items()))
            yield Label("Note (optional):")
            note = Input(placeholder="why, or what to do next", id="note")
            note.cursor_blink = getattr(self.app, "blink", True)
            yield note
            with Horizontal():
                yield Button("Close (esc)", id="close")
                yield Button("Reject (ctrl+r)", id="reject", variant="error")
                yield Button("Approve (ctrl+y)", id="approve", variant="success")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_decide(self.intent != "reject")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "close":
            self.action_close()
        else:
            self.action_decide(event.button.id == "approve")

    def action_decide(self, approved: bool) -> None:
        note = self.query_one("#note", Input).value.strip() or None
        selections: list[str] = []
        if self.gate.options:
            selections = list(self.query_one(SelectionList).selected)
        self.dismiss(GateDecision(approved, note, selections))

    def action_close(self) -> None:
        self.dismiss(None)
