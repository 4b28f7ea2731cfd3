"""Run history from the store: status, duration, step counts; open one read-only or resume it.

Rows are read on a thread worker (a busy SQLite file must not freeze the UI) and the table is
filled when they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from runkon_flow.humanize import format_duration, readable_error
from runkon_flow.persistence.models import RunStatus, WorkflowRun
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from runkon_tui.history import parse_time, run_counts
from runkon_tui.status import glyph
from runkon_tui.widgets.markup import esc, tone_text

if TYPE_CHECKING:
    from runkon_tui.app import RunkonApp

RUNS_LIMIT = 200
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.NEEDS_RESUME)


@dataclass
class RunRow:
    run: WorkflowRun
    counts: dict[str, int]


class RunsScreen(Screen[None]):
    DEFAULT_CSS = """
    RunsScreen #runs-title { height: 1; background: $panel; padding: 0 1; }
    RunsScreen DataTable { height: 1fr; }
    RunsScreen #runs-status { height: auto; color: $text-muted; padding: 0 1; }
    """

    BINDINGS = [
        Binding("enter", "open_run", "Open", id="open_run"),
        Binding("r", "resume_run", "Resume", id="resume"),
        Binding("g", "reload", "Refresh", id="reload_runs"),
        Binding("escape,h", "back", "Back", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.error: str | None = None

    @property
    def rapp(self) -> RunkonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("[b]runkon[/] · run history", id="runs-title")
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
        yield table
        yield Static("loading…", id="runs-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "workflow", "run id", "started", "duration", "steps", "error")
        table.focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.query_one("#runs-status", Static).update("loading…")
        self._load()

    @work(thread=True, exclusive=True, group="runs")
    def _load(self) -> None:
        store = self.rapp.store
        try:
            runs = store.list_runs(limit=RUNS_LIMIT)
            rows = [RunRow(run, run_counts(store, run.id)) for run in runs]
            error = None
        except Exception as exc:  # an unreadable store is shown, never fatal
            rows, error = [], f"cannot read the run history: {exc}"
        self.app.call_from_thread(self._fill, rows, error)

    def _fill(self, rows: list[RunRow], error: str | None) -> None:
        self.rows = rows
        self.error = error
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            run = row.run
            status = str(run.status)
            started = parse_time(run.started_at)
            ended = parse_time(run.ended_at)
            duration = format_duration(ended - started) if started and ended else ""
            counts = Text(" ").join(
                tone_text(self.app, s, f"{glyph(s)}{row.counts[s]}")
                for s in ("completed", "failed", "skipped", "cancelled", "waiting", "running")
                if row.counts.get(s)
            )
            table.add_row(
                tone_text(self.app, status, f"{glyph(status)} {status}"),
                Text(run.workflow_name),
                Text(run.id),
                Text((run.started_at or "")[:19].replace("T", " ")),
                Text(duration),
                counts,
                Text(readable_error(run.error)[:60]),
                key=run.id,
            )
        status = self.query_one("#runs-status", Static)
        if error:
            status.update(f"[$error]{esc(error)}[/]")
        elif not rows:
            status.update("no runs yet — run a workflow from the main screen (enter)")
        else:
            status.update(f"{len(rows)} runs (newest first) · enter opens read-only · r resumes")
        self.refresh_bindings()

    def selected(self) -> WorkflowRun | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row].run

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_run":
            return self.selected() is not None or None
        if action == "resume_run":
            run = self.selected()
            if run is None or self.rapp.host is None:
                return None
            resumable = RunStatus(run.status) in RESUMABLE
            return True if resumable and not self.rapp.run_active else None
        return True

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.rapp.open_past_run(run.id)
            self.dismiss()

    def action_resume_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.rapp.open_past_run(run.id, then_resume=True)
            self.dismiss()

    def action_back(self) -> None:
        self.dismiss()
