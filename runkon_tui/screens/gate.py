"""The gate dialog: approve (with the gate's options and a note) or reject (with a reason).

`a` and `x` open two visibly different dialogs — green "Approve gate …" with the options first,
red "Reject gate …" with the reason — so the answer about to be given is never in doubt. Focus
starts on the options when the gate has some (space toggles one), otherwise in the note: a
reason typed right after `x` is the reason given (it was lost when focus sat on the button),
and Enter there still answers; the dialog's own keys (esc, ctrl+y, ctrl+r) are not the note's.
Typing a letter on the options moves to the note with it, so no keystroke is silently dropped.
A typed note is kept as a draft when the dialog is closed, and shown again when it reopens for
the same gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runkon_flow.humanize import safe_text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from runkon_tui.keys import dialog_key
from runkon_tui.run_view import GateView
from runkon_tui.widgets.markup import esc


@dataclass
class GateDecision:
    approved: bool
    note: str | None = None
    selections: list[str] = field(default_factory=list)


class GateChoices(OptionList):
    """The gate's options, each drawn `[x] label` when chosen and `[ ] label` when not (not only
    a colour change), toggled with space or enter."""

    BINDINGS = [Binding("space", "toggle", "Toggle", show=False)]

    def __init__(self, options: dict[str, str], *, id: str | None = None) -> None:
        self.labels = dict(options)
        self.selected: list[str] = []
        self._typing = False
        super().__init__(*(Option(self._prompt(v), id=v) for v in self.labels), id=id)

    def _prompt(self, value: str) -> str:
        label = esc(self.labels[value])
        if value in self.selected:
            return f"[b $success]\\[x][/] [b]{label}[/]"
        return f"[$text-muted]\\[ ][/] {label}"

    def toggle(self, value: str) -> None:
        if value in self.selected:
            self.selected.remove(value)
        else:
            self.selected.append(value)
        index = list(self.labels).index(value)
        self.replace_option_prompt_at_index(index, self._prompt(value))

    def action_toggle(self) -> None:
        if self.highlighted is not None:
            option = self.get_option_at_index(self.highlighted)
            if option.id is not None:
                self.toggle(option.id)

    def on_key(self, event: events.Key) -> None:
        """A character other than space is the start of a note: move there with it. Until the
        focus has moved (keys typed fast arrive first), every character — spaces too — is the
        note's."""
        if not (event.is_printable and event.character):
            return
        if event.character == " " and not self._typing:
            return
        self._typing = True
        event.stop()
        event.prevent_default()
        note = self.screen.query_one("#note", Input)
        note.focus()
        note.insert_text_at_cursor(event.character)

    def on_focus(self) -> None:
        self._typing = False  # back on the options (Tab): space toggles again

    def _on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.toggle(event.option.id)


class GateScreen(ModalScreen[GateDecision | None]):
    DEFAULT_CSS = """
    GateScreen { align: center middle; }
    GateScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        background: $panel; border: thick $success;
    }
    GateScreen VerticalScroll { height: auto; max-height: 1fr; }
    GateScreen.-reject > Vertical { border: thick $error; }
    GateScreen #title { width: 1fr; }
    GateScreen #prompt { margin: 1 0; max-height: 6; }
    GateScreen GateChoices { height: auto; max-height: 6; margin-bottom: 1; }
    GateScreen Horizontal { dock: bottom; height: auto; }  /* on screen however tall the rest */
    GateScreen Button { margin-right: 2; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="gate_close"),
        Binding("ctrl+y", "decide(True)", "Approve", id="gate_approve"),
        Binding("ctrl+r", "decide(False)", "Reject", id="gate_reject"),
    ]

    def __init__(self, gate: GateView, intent: str = "approve", drafts: dict[str, str] | None = None) -> None:
        super().__init__(classes="-reject" if intent == "reject" else "-approve")
        self.gate = gate
        self.intent = "reject" if intent == "reject" else "approve"
        self.drafts = drafts if drafts is not None else {}

    @property
    def draft_key(self) -> str:
        return f"{self.gate.run_id}:{self.gate.step_id or self.gate.gate_name}"

    @property
    def approving(self) -> bool:
        return self.intent == "approve"

    def compose(self) -> ComposeResult:
        gate = self.gate
        name = f"[b]gate {esc(gate.gate_name)}[/]"
        if gate.gate_type and gate.gate_type != gate.gate_name:
            name += f" ({esc(gate.gate_type)})"
        if self.approving:
            title, label = f"[b $success]✓ Approve[/] {name}", "Note (optional):"
        else:
            title = f"[b $error]✗ Reject[/] {name} — fails the run"
            label = "Reason (optional, kept with the rejection):"
        # Untrusted: a prompt quotes inputs and earlier steps' output; its escape sequences must
        # not reach the terminal (line breaks are kept).
        prompt = safe_text((gate.prompt or "").splitlines())
        prompt = prompt or "Approve to continue the run, reject to fail it."
        with Vertical():
            with VerticalScroll():  # a long prompt scrolls; the buttons stay in view
                yield Label(title, id="title")
                yield Static(esc(prompt), id="prompt")
                if self.approving and gate.options:
                    yield Label("Options ([b]space[/] toggles):")
                    yield GateChoices(gate.options, id="choices")
                yield Label(label)
                draft = self.drafts.get(self.draft_key, "")
                # select_on_focus off: a kept draft is added to, never replaced by the first key
                note = Input(draft, placeholder="why, or what to do next", id="note", select_on_focus=False)
                note.cursor_blink = getattr(self.app, "blink", True)
                yield note
            with Horizontal():
                if self.approving:
                    yield Button(
                        f"Approve ({dialog_key(self, 'gate_approve')})", id="approve", variant="success"
                    )
                else:
                    yield Button(f"Reject ({dialog_key(self, 'gate_reject')})", id="reject", variant="error")
                yield Button(f"Back ({dialog_key(self, 'gate_close')})", id="close")

    def on_mount(self) -> None:
        # Typing goes straight into the note (Enter in it still decides); with options to pick,
        # the choices come first (space toggles them).
        choices = self.query(GateChoices)
        if choices:
            choices.first().focus()
        else:
            self.query_one("#note", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "decide" and parameters:
            return bool(parameters[0]) == self.approving  # only the answer this dialog gives
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        self.drafts[self.draft_key] = event.value  # a typed note is never lost

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_decide(self.approving)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "close":
            self.action_close()
        else:
            self.action_decide(event.button.id == "approve")

    def action_decide(self, approved: bool) -> None:
        note = self.query_one("#note", Input).value.strip() or None
        selections: list[str] = []
        choices = self.query(GateChoices)
        if approved and choices:
            selections = list(choices.first().selected)
        self.dismiss(GateDecision(approved, note, selections))

    def action_close(self) -> None:
        self.dismiss(None)
