"""The inputs form shown before running a workflow that declares inputs.

Values are checked with the host's `prepare_inputs` (defaults, required inputs, booleans) before
the form closes, so a run never starts with inputs the engine would reject. The error is shown
just above the buttons, which never scroll away (at the end of the fields it was out of view at
80x24, so ctrl+s seemed to do nothing), and focus moves to the field it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runkon_flow.dsl.ast import WorkflowDef
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Static

from runkon_tui.keys import dialog_key
from runkon_tui.widgets.markup import esc

Prepare = Callable[[Mapping[str, str]], dict[str, str]]


class InputsScreen(ModalScreen[dict[str, str] | None]):
    DEFAULT_CSS = """
    InputsScreen { align: center middle; }
    InputsScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        background: $panel; border: thick $primary;
    }
    InputsScreen VerticalScroll { height: auto; max-height: 1fr; }
    InputsScreen .field-label { margin-top: 1; }
    InputsScreen .field-help { color: $text-muted; }
    /* Docked: laid out first, so a form taller than the terminal scrolls its fields and the
       error and the buttons stay on screen (at 80x24 a five-input form pushed them below the edge). */
    InputsScreen #form-foot { dock: bottom; height: auto; }
    InputsScreen #form-error { color: $error; margin-top: 1; height: auto; max-height: 5; display: none; }
    InputsScreen #form-error.-shown { display: block; }
    InputsScreen #form-buttons { height: auto; align-horizontal: right; }
    InputsScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form_cancel"),
        Binding("ctrl+s", "submit", "Run", id="form_run"),
    ]

    def __init__(
        self,
        workflow: WorkflowDef,
        prepare: Prepare,
        initial: Mapping[str, str] | None = None,
        heading: str | None = None,
    ) -> None:
        super().__init__()
        self.workflow = workflow
        self.prepare = prepare
        self.initial = dict(initial or {})
        self.heading = heading  # e.g. "Rerun ship from deploy"; default "Run <workflow>"
        self._error_lines: list[str] = []  # the error shown, one problem a line

    def compose(self) -> ComposeResult:
        wf = self.workflow
        with Vertical():
            with VerticalScroll():  # the fields scroll; the buttons below never do
                # A Static wraps: a rerun's heading is longer than the form is wide at 80 columns.
                heading = self.heading or "Run " + (wf.title or wf.name)
                yield Static(f"[b]{esc(heading)}[/]", id="form-heading")
                if wf.description:
                    yield Static(esc(wf.description), classes="field-help")
                for i, decl in enumerate(wf.inputs):
                    if decl.input_type == "boolean":
                        value = self.initial.get(decl.name, decl.default or "false").lower() == "true"
                        yield Checkbox(decl.name, value=value, id=f"input-{i}", classes="field-label")
                    else:
                        required = decl.required
                        marker = " [$error]*[/]" if required else ""
                        yield Label(f"{esc(decl.name)}{marker}", classes="field-label")
                        placeholder = f"default: {decl.default}" if decl.default is not None else ""
                        box = Input(self.initial.get(decl.name, ""), placeholder=placeholder, id=f"input-{i}")
                        box.cursor_blink = getattr(self.app, "blink", True)
                        yield box
                    if decl.description:
                        yield Static(esc(decl.description), classes="field-help")
            with Vertical(id="form-foot"):
                yield Static("", id="form-error")
                with Horizontal(id="form-buttons"):
                    yield Button(f"Cancel ({dialog_key(self, 'form_cancel')})", id="cancel")
                    yield Button(f"Run ({dialog_key(self, 'form_run')})", id="run", variant="primary")

    def on_mount(self) -> None:
        fields = self.query("Input, Checkbox")
        if fields:
            fields.first().focus()

    def raw_values(self) -> dict[str, str]:
        """Typed values; empty text fields are left out so defaults apply."""
        raw: dict[str, str] = {}
        for i, decl in enumerate(self.workflow.inputs):
            widget = self.query_one(f"#input-{i}")
            if isinstance(widget, Checkbox):
                raw[decl.name] = "true" if widget.value else "false"
            elif isinstance(widget, Input) and widget.value != "":
                raw[decl.name] = widget.value
        return raw

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input) if event.input in inputs else -1
        if 0 <= index < len(inputs) - 1:
            inputs[index + 1].focus()
        else:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        try:
            prepared = self.prepare(self.raw_values())
        except Exception as exc:  # the host's message is meant for the user (missing input, …)
            self.show_error(str(exc))
            return
        self.dismiss(prepared)

    def show_error(self, message: str) -> None:
        """Show `message` above the buttons and move to the field it names (focus scrolls it
        into view), else to the first required field left empty."""
        self._error_lines = message.splitlines()
        self._show_error_lines()
        field = self._field_named_in(message) or self._first_empty_required()
        if field is not None:
            field.focus()

    def _show_error_lines(self) -> None:
        error = self.query_one("#form-error", Static)
        error.update(esc("\n".join(self._error_lines)))
        error.set_class(bool(self._error_lines), "-shown")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._edited(event.input)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._edited(event.checkbox)

    def _edited(self, field: Widget) -> None:
        """An edit of a field takes away the error's lines about it (one problem a line, each
        naming its input): they were said about the value just changed. Others wait for Run."""
        decl = next((d for i, d in enumerate(self.workflow.inputs) if field.id == f"input-{i}"), None)
        if decl is None or not self._error_lines:
            return
        kept = [line for line in self._error_lines if f"'{decl.name}'" not in line]
        if kept != self._error_lines:
            self._error_lines = kept
            self._show_error_lines()

    def _field_named_in(self, message: str) -> Widget | None:
        for line in message.splitlines():  # one problem a line, each naming its input 'so'
            for i, decl in enumerate(self.workflow.inputs):
                if f"'{decl.name}'" in line:
                    return self.query_one(f"#input-{i}")
        return None

    def _first_empty_required(self) -> Widget | None:
        for i, decl in enumerate(self.workflow.inputs):
            widget = self.query_one(f"#input-{i}")
            if decl.required and decl.default is None and isinstance(widget, Input) and not widget.value:
                return widget
        return None

    def action_cancel(self) -> None:
        self.dismiss(None)
