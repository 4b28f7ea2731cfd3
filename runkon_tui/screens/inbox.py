"""The gate inbox: every gate waiting in the store — runs of this dashboard and of other
processes — with how long each has waited and its timeout countdown. Mark several (space, or `A`
for all) and approve (`a`) or reject (`x`) them with one note; without marks the gate under the
cursor is answered.

Gates are read on a thread worker once a second (a busy store never freezes the UI); marks are
kept by step id across re-reads, and a gate answered elsewhere drops out of the list and the marks.
The decision goes through the store (`GateApprovals.decide_many`), which is what wakes the waiting
engine, here or in another process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from runkon_flow.approvals import Decision, GateApprovals, WaitingGate
from runkon_flow.humanize import display_line, format_duration
from runkon_flow.observe.liveness import lease_is_live
from runkon_flow.persistence.protocol import WorkflowPersistence
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from runkon_tui.keys import dialog_key
from runkon_tui.screens.bottom_toasts import ToastsAboveStatus
from runkon_tui.screens.gate import GateChoices, GateDecision
from runkon_tui.status import short_id
from runkon_tui.widgets.markup import esc, terminal_safe, tone_text
from runkon_tui.widgets.table_fit import fit_columns, refill
from runkon_tui.worker_failures import ShowsWorkerFailures

if TYPE_CHECKING:
    from runkon_tui.app import RunkonApp

# The prompt is cut to fit; `item` (which foreach child asks) only while some gate has one.
COLUMNS = ("", "workflow", "item", "gate", "waited", "times out in", "run", "prompt")
# Too narrow for every column (80 columns, long names): these go, in this order, before the
# workflow and gate names are cut (the note dialog lists each chosen gate with its run and prompt).
DROPPED_FIRST = ("run", "waited", "prompt", "times out in")
NAMES = ("workflow", "item", "gate")  # cut with "…" only when they do not fit even then
REFRESH_S = 1.0


def _of_item(gate: WaitingGate) -> str:
    """` [rec-05]` for a gate in a foreach child (markup-escaped, one line), else nothing."""
    return " " + esc(f"[{terminal_safe(gate.item)}]") if gate.item else ""


def countdown(gate: WaitingGate, now: float) -> str:
    """`57m57s`, `overdue 3s`, or `` when the gate has no timeout or start."""
    left = gate.time_left(now)
    if left is None:
        return ""
    return format_duration(left) if left >= 0 else f"overdue {format_duration(-left)}"


def shared_options(gates: list[WaitingGate]) -> dict[str, str]:
    """The options every one of `gates` offers identically (so one choice can apply to all)."""
    if not gates:
        return {}
    first = {o.value: o.label for o in gates[0].options}
    return first if all({o.value: o.label for o in g.options} == first for g in gates[1:]) else {}


class BatchNoteScreen(ModalScreen[GateDecision | None]):
    """One note (and, when they all offer the same options, one choice) for several gates."""

    DEFAULT_CSS = """
    BatchNoteScreen { align: center middle; }
    BatchNoteScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        background: $panel; border: thick $success;
    }
    BatchNoteScreen.-reject > Vertical { border: thick $error; }
    BatchNoteScreen VerticalScroll { height: auto; max-height: 1fr; }
    BatchNoteScreen #gates { margin: 1 0; max-height: 8; }
    BatchNoteScreen GateChoices { height: auto; max-height: 6; margin-bottom: 1; }
    BatchNoteScreen Horizontal { height: auto; }
    BatchNoteScreen Button { margin-right: 2; }
    """

    # The gate dialog's answer keys: ctrl+y approves, ctrl+r rejects, each only in its own face.
    BINDINGS = [
        Binding("escape", "close", "Close", id="inbox_note_close"),
        Binding("ctrl+y", "decide(True)", "Approve", id="inbox_note_approve"),
        Binding("ctrl+r", "decide(False)", "Reject", id="inbox_note_reject"),
    ]

    def __init__(self, gates: list[WaitingGate], approve: bool) -> None:
        super().__init__(classes="-approve" if approve else "-reject")
        self.gates = gates
        self.approve = approve

    def compose(self) -> ComposeResult:
        n = len(self.gates)
        what = f"{n} gate{'' if n == 1 else 's'}"
        for_all = " for all" if n > 1 else ""
        if self.approve:
            title, label = f"[b $success]✓ Approve[/] {what}", f"Note{for_all} (optional):"
        else:
            fails = "fails its run" if n == 1 else "fails their runs"
            title, label = f"[b $error]✗ Reject[/] {what} — {fails}", f"Reason{for_all} (optional):"
        listed = "\n".join(
            f"• {esc(g.workflow_name)}{_of_item(g)} · {esc(g.gate_name)} · run {short_id(g.run_id)}"
            + (f" — {esc(display_line(g.prompt))}" if g.prompt else "")
            for g in self.gates
        )
        options = shared_options(self.gates) if self.approve else {}
        with Vertical():
            with VerticalScroll():
                yield Label(title, id="title")
                yield Static(listed, id="gates")
                if options:
                    yield Label("Options ([b]space[/] toggles):")
                    yield GateChoices(options, id="choices")
                yield Label(label)
                note = Input(placeholder="why, or what to do next", id="note", select_on_focus=False)
                note.cursor_blink = getattr(self.app, "blink", True)
                yield note
            with Horizontal():
                if self.approve:
                    yield Button(
                        f"Approve {what} ({dialog_key(self, 'inbox_note_approve')})",
                        id="answer",
                        variant="success",
                    )
                else:
                    yield Button(
                        f"Reject {what} ({dialog_key(self, 'inbox_note_reject')})",
                        id="answer",
                        variant="error",
                    )
                yield Button(f"Back ({dialog_key(self, 'inbox_note_close')})", id="close")

    def on_mount(self) -> None:
        # As in the gate dialog: typing goes straight into the note, so a reason typed right
        # after `x` is the reason given (on the button it was dropped); options come first.
        choices = self.query(GateChoices)
        (choices.first() if choices else self.query_one("#note", Input)).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "decide" and parameters:
            return bool(parameters[0]) == self.approve  # only the answer this dialog gives
        return True

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_decide(self.approve)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "close":
            self.action_close()
        else:
            self.action_decide(self.approve)

    def action_decide(self, approved: bool) -> None:
        if approved != self.approve:
            return
        note = self.query_one("#note", Input).value.strip() or None
        choices = self.query(GateChoices)
        selections = list(choices.first().selected) if self.approve and choices else []
        self.dismiss(GateDecision(self.approve, note, selections))

    def action_close(self) -> None:
        self.dismiss(None)


class GateInboxScreen(ToastsAboveStatus, ShowsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    GateInboxScreen #inbox-title { height: 1; background: $panel; padding: 0 1; }
    GateInboxScreen DataTable { height: 1fr; }
    GateInboxScreen #inbox-status { height: auto; color: $text-muted; padding: 0 1; }
    """
    STATUS = "#inbox-status"

    BINDINGS = [
        Binding("space", "toggle_mark", "Mark", id="gate_inbox_mark"),
        Binding("A", "mark_all", "Mark all", id="gate_inbox_mark_all"),
        Binding("a", "answer(True)", "Approve", id="gate_inbox_approve"),
        Binding("x", "answer(False)", "Reject", id="gate_inbox_reject"),
        Binding("escape,i", "back", "Back", id="gate_inbox_back"),
        Binding("q", "app.quit", "Quit", id="gate_inbox_quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[WaitingGate] = []
        self.marked: set[str] = set()
        self.error: str | None = None
        self.loaded = False

    @property
    def rapp(self) -> RunkonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("[b]runkon[/] · gate inbox", id="inbox-title")
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True, id="inbox-table")
        yield table
        yield Static("loading…", id="inbox-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*(c for c in COLUMNS if c != "item"))
        table.focus()
        self._load()
        self.set_interval(REFRESH_S, self._load, name="inbox-refresh")
        self.call_after_refresh(self.place_toasts)

    @work(thread=True, exclusive=True, group="inbox", name="read the gate inbox", exit_on_error=False)
    def _load(self) -> None:
        try:
            gates, error = GateApprovals(self.rapp.store).inbox(), None
        except Exception as exc:  # an unreadable store is shown, never fatal
            gates, error = [], f"cannot read the waiting gates: {exc}"
        self.app.call_from_thread(self._fill, gates, error)

    def worker_failed(self, text: str) -> None:
        super().worker_failed(text)
        self.query_one("#inbox-status", Static).update(f"[$error]{esc(text)}[/]")

    def _fill(self, gates: list[WaitingGate], error: str | None) -> None:
        self.gates = gates
        self.error = error
        self.loaded = True
        self.marked &= {g.step_id for g in gates}
        now = self.rapp.clock()
        lines: list[list[Text]] = []
        for gate in gates:
            mark = "[x]" if gate.step_id in self.marked else "[ ]"
            waited = gate.waited(now)
            left = gate.time_left(now)
            due = tone_text(
                self.app, "failed" if left is not None and left < 300 else "waiting", countdown(gate, now)
            )
            lines.append(
                [
                    Text(mark, style="bold" if gate.step_id in self.marked else ""),
                    Text(terminal_safe(gate.workflow_name)),
                    Text(terminal_safe(gate.item or "")),
                    Text(terminal_safe(gate.gate_name)),
                    Text(format_duration(waited) if waited is not None else ""),
                    due,
                    Text(short_id(gate.run_id)),
                    # Untrusted (it quotes inputs and step output): no escape sequence reaches the
                    # terminal. The last column: refill fits it.
                    Text(display_line(gate.prompt or "")),
                ]
            )
        table = self.query_one(DataTable)
        columns = COLUMNS
        if not any(gate.item for gate in gates):
            at = COLUMNS.index("item")
            columns = COLUMNS[:at] + COLUMNS[at + 1 :]
            lines = [line[:at] + line[at + 1 :] for line in lines]
        names, cells = fit_columns(table, columns, lines, droppable=DROPPED_FIRST, cuttable=NAMES)
        refill(table, names, cells, [gate.step_id for gate in gates], fit_last=names[-1] == "prompt")
        status = self.query_one("#inbox-status", Static)
        if error:
            status.update(f"[$error]{esc(error)}[/]")
        elif not gates:
            status.update("no gate is waiting — gates of every run in the store show up here")
        else:
            marked = f" · {len(self.marked)} marked" if self.marked else ""
            key = self.rapp.key_for
            status.update(
                f"{len(gates)} gate{'' if len(gates) == 1 else 's'} waiting (oldest first){marked} · "
                f"{key('gate_inbox_mark')} marks · {key('gate_inbox_mark_all')} marks all · "
                f"{key('gate_inbox_approve')} approves · {key('gate_inbox_reject')} rejects "
                "(the marked ones, else the one here)"
            )
        self.refresh_bindings()
        self.call_after_refresh(self.place_toasts)  # the status may wrap to two rows

    def on_resize(self) -> None:
        # After the layout, which gives the table its new width: the columns that fit it.
        self.call_after_refresh(self._refill)
        self.call_after_refresh(self.place_toasts)

    def _refill(self) -> None:
        if self.loaded and self.is_mounted:
            self._fill(self.gates, self.error)

    def cursor_gate(self) -> WaitingGate | None:
        table = self.query_one(DataTable)
        if not self.gates or table.cursor_row is None or table.cursor_row >= len(self.gates):
            return None
        return self.gates[table.cursor_row]

    def chosen(self) -> list[WaitingGate]:
        """The marked gates, else the one under the cursor."""
        if self.marked:
            return [g for g in self.gates if g.step_id in self.marked]
        gate = self.cursor_gate()
        return [gate] if gate is not None else []

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_mark", "mark_all", "answer"):
            return True if self.gates else None
        return True

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def action_toggle_mark(self) -> None:
        gate = self.cursor_gate()
        if gate is None:
            return
        self.marked ^= {gate.step_id}
        table = self.query_one(DataTable)
        row = table.cursor_row
        self._fill(self.gates, self.error)
        if row is not None and row + 1 < len(self.gates):
            table.move_cursor(row=row + 1)  # mark the next one with the next space

    def action_mark_all(self) -> None:
        every = {g.step_id for g in self.gates}
        self.marked = set() if self.marked == every else every
        self._fill(self.gates, self.error)

    def action_answer(self, approve: bool) -> None:
        gates = self.chosen()
        if not gates:
            return

        def decided(decision: GateDecision | None) -> None:
            if decision is not None:
                self._decide(gates, decision)

        # Their "Gate" toasts are moot now (the dialog lists each gate, prompt and all): held
        # while it is up, they do not come back when it closes — the run on screen may show a
        # gate waiting until its engine tells the answer — and they are not announced again.
        self.rapp.session.saw_gates(gates)
        self.app.push_screen(BatchNoteScreen(gates, approve), decided)

    def _decide(self, gates: list[WaitingGate], decision: GateDecision) -> None:
        store, by = self.rapp.store, self.rapp.user
        ids = [g.step_id for g in gates]

        def job() -> None:
            approvals = GateApprovals(store)
            try:  # before deciding: a decision may end its run, and its lease, at once
                unheld = _unheld(store, gates)
            except Exception:  # only a warning depends on it
                unheld = []
            try:
                done = approvals.decide_many(
                    ids, decision.approved, by, decision.note, decision.selections or None
                )
            except Exception as exc:
                done = [Decision(i, None, str(exc)) for i in ids]
            decided = {d.gate.run_id for d in done if d.gate is not None}
            roots = list(dict.fromkeys(root for root, gate_run in unheld if gate_run in decided))
            self.app.call_from_thread(self._decided, done, decision.approved, roots)

        self.run_worker(job, thread=True, group="inbox-decide", name="decide the gates", exit_on_error=False)

    def _decided(self, decisions: list[Decision], approved: bool, unheld: list[str] | None = None) -> None:
        ok = [d for d in decisions if d.gate is not None]
        verb = "approved" if approved else "rejected"
        if ok:
            self.notify(f"{len(ok)} gate{'' if len(ok) == 1 else 's'} {verb}", timeout=4)
        if unheld:  # a decision for a run no engine holds wakes nobody until it is resumed
            more = f" +{len(unheld) - 3}" if len(unheld) > 3 else ""
            runs = ", ".join(short_id(r) for r in unheld[:3]) + more
            self.notify(
                f"run {runs} {'is' if len(unheld) == 1 else 'are'} interrupted (no engine holds "
                f"{'it' if len(unheld) == 1 else 'them'}): the decision takes effect on a resume "
                f"({self.rapp.key_for('runs')} lists the runs, {self.rapp.key_for('resume')} resumes)",
                severity="warning",
                timeout=10,
            )
        for failed in (d for d in decisions if d.gate is None):
            self.notify(f"{failed.step_id}: {failed.error}", severity="error", timeout=8)
        self.marked -= {d.step_id for d in decisions}
        self._load()

    def action_back(self) -> None:
        self.dismiss()


def _unheld(store: WorkflowPersistence, gates: list[WaitingGate]) -> list[tuple[str, str]]:
    """(top-level run, gate's run) for the gates whose run no engine holds (its process died)."""
    out: list[tuple[str, str]] = []
    for gate in gates:
        run = store.get_run(gate.run_id)
        if run is None or lease_is_live(run):
            continue
        while run.parent_workflow_run_id and (parent := store.get_run(run.parent_workflow_run_id)):
            run = parent
        out.append((run.id, gate.run_id))
    return out
