"""Run history from the store: status, duration, step counts; open one read-only or resume it.

Rows are read on a thread worker (a busy SQLite file must not freeze the UI) and the table is
filled when they arrive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from runkon_flow.humanize import fit_cause, format_duration
from runkon_flow.observe.counts import row_step_counts
from runkon_flow.observe.liveness import (
    display_status,
    lease_end,
    lease_is_live,
    run_seconds,
    started_time,
)
from runkon_flow.observe.loader import row_why, run_spend
from runkon_flow.persistence.holders import holder_of
from runkon_flow.persistence.models import RunStatus, WorkflowRun
from runkon_flow.usage import Usage
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from runkon_tui.host import UnmadeStore
from runkon_tui.screens.bottom_toasts import ToastsAboveStatus
from runkon_tui.session import Refused
from runkon_tui.status import glyph, short_id
from runkon_tui.widgets.markup import esc, terminal_safe, tone_text
from runkon_tui.widgets.table_fit import fit_columns, refill
from runkon_tui.worker_failures import ShowsWorkerFailures

if TYPE_CHECKING:
    from runkon_tui.app import RunkonApp

RUNS_LIMIT = 200
COLUMNS = ("", "workflow", "run id", "started", "duration", "steps")  # then those some run fills
WIDE = 120  # narrower: short run ids and dates, and no usage column (the first to go)
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.NEEDS_RESUME)
REFRESH_S = 1.0  # live status and holders of runs other processes execute


@dataclass
class RunRow:
    run: WorkflowRun
    counts: dict[str, int]
    duration: float | None = None  # to now while live, to where it stopped when interrupted
    usage: Usage | None = None  # what the run and its children spent (tokens, cost), if reported
    #: Why it ended so (`observe.loader.row_why`, as the `runs` command's WHY): a failed run's
    #: cause from its failed step, as `show` and the live view say it — its stored error only says
    #: which step failed; another run's error headline.
    why: str | None = None


LIVE = ("pending", "running", "waiting", "cancelling")


def live_status(run: WorkflowRun) -> str:
    """The stored status, or `interrupted` for an unfinished run no engine holds any more."""
    return display_status(run)


def holder_text(run: WorkflowRun) -> str:
    """Who executes a live run: `pid 4242 on build-7 · lease 24s` (the lease's time left)."""
    if not lease_is_live(run):
        return ""
    holder = holder_of(run.owner_token)
    until = lease_end(run)
    left = f" · lease {max(0, int(until - time.time()))}s" if until else ""
    who = str(holder) if holder is not None else "another engine"
    return who + left


class RunsScreen(ToastsAboveStatus, ShowsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    RunsScreen #runs-title { height: 1; background: $panel; padding: 0 1; }
    RunsScreen DataTable { height: 1fr; }
    RunsScreen #runs-status { height: auto; color: $text-muted; padding: 0 1; }
    """
    STATUS = "#runs-status"

    BINDINGS = [
        Binding("enter", "open_run", "Open", id="open_run"),
        Binding("r", "resume_run", "Resume", id="resume"),
        Binding("g", "reload", "Refresh", id="reload_runs"),
        Binding("escape,h", "back", "Back", id="back"),
        Binding("q", "app.quit", "Quit", id="runs_quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.error: str | None = None
        self._drawn_live = False  # some row was drawn with a live status

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
        table.add_columns(*COLUMNS)
        table.focus()
        self.action_reload()
        self.set_interval(REFRESH_S, self._refresh_live, name="runs-live")
        self.call_after_refresh(self.place_toasts)

    def _refresh_live(self) -> None:
        """Re-read while some row was drawn live, so statuses and holders stay current: a run
        whose holder died reads `interrupted` once its lease lapses, with nothing written to the
        store, and its row must say so too (a row drawn not live cannot turn live by itself)."""
        if self._drawn_live:
            self._load()

    def action_reload(self) -> None:
        self.query_one("#runs-status", Static).update("loading…")
        self._load()

    @work(thread=True, exclusive=True, group="runs", name="list the runs", exit_on_error=False)
    def _load(self) -> None:
        store = self.rapp.store
        try:
            runs = store.list_runs(limit=RUNS_LIMIT)
            rows = []
            for run in runs:
                steps = store.get_steps(run.id)
                rows.append(
                    RunRow(
                        run,
                        row_step_counts(steps, live_status(run) == "interrupted"),
                        run_seconds(run, steps),
                        run_spend(run, steps),
                        row_why(store, run, steps),
                    )
                )
            error = None
        except Exception as exc:  # an unreadable store is shown, never fatal
            rows, error = [], f"cannot read the run history: {exc}"
        self.app.call_from_thread(self._fill, rows, error)

    def worker_failed(self, text: str) -> None:
        super().worker_failed(text)
        self.query_one("#runs-status", Static).update(f"[$error]{esc(text)}[/] · g tries again")

    def _fill(self, rows: list[RunRow], error: str | None) -> None:
        self.rows = rows
        self.error = error
        self._drawn_live = any(live_status(row.run) in LIVE for row in rows)
        # 80 columns: the run id's tail and a short date keep room for names
        narrow = self.size.width < WIDE
        cells = [self._cells(row, narrow) for row in rows]
        filled = {name for row_cells in cells for name, cell in row_cells.items() if cell.plain}
        columns = self._wanted_columns(filled)
        lines = [[row_cells[name] for name in columns] for row_cells in cells]
        table = self.query_one(DataTable)
        # The error cut before its last ` · ` part, which says why: cut at its end, 80 columns kept
        # `import-repos: Script 'import' exited with co…` and lost the cause.
        # Long workflow names give way first (cut with `…`, never below 8 characters, as `runs`
        # cuts them), so the error keeps its room on the screen: at 80 columns an
        # `import-repositories` row left it less than its 12 columns, and the cell ran past the
        # edge — `schema`, no `…`, the table scrolling sideways.
        names, fitted = fit_columns(table, columns, lines, cuttable=("workflow",))
        keys = [row.run.id for row in rows]
        refill(table, names, fitted, keys, fit_last=names[-1] == "error", fit=fit_cause)
        status = self.query_one("#runs-status", Static)
        if error:
            status.update(f"[$error]{esc(error)}[/]")
        elif not rows:
            store = self.rapp.store  # a database left as it is until a run makes it one says why
            why = f" ({esc(store.why)})" if isinstance(store, UnmadeStore) and not store.made else ""
            run = self.rapp.key_for("run")
            status.update(f"no runs yet{why} — run a workflow from the main screen ({run})")
        else:
            key = self.rapp.key_for
            status.update(
                f"{len(rows)} run{'' if len(rows) == 1 else 's'} (newest first) · "
                f"{key('open_run')} follows a live run, opens a finished one "
                f"read-only · {key('resume')} resumes"
            )
        self.refresh_bindings()
        self.call_after_refresh(self.place_toasts)

    def _cells(self, row: RunRow, narrow: bool) -> dict[str, Text]:
        """One run's cells by column name."""
        run = row.run
        status = live_status(run)
        return {
            "": tone_text(self.app, status, f"{glyph(status)} {status}"),
            "workflow": Text(terminal_safe(run.workflow_name)),
            "run id": Text(short_id(run.id) if narrow else run.id),
            "started": Text(started_time(run, "%m-%d %H:%M" if narrow else "%Y-%m-%d %H:%M:%S", "")),
            "duration": Text(format_duration(row.duration) if row.duration is not None else ""),
            "steps": Text(" ").join(
                tone_text(self.app, s, f"{glyph(s)}{row.counts[s]}")
                for s in ("completed", "failed", "skipped", "cancelled", "waiting", "running", "interrupted")
                if row.counts.get(s)
            ),
            "usage": Text(row.usage.short() if row.usage else ""),
            "held by": Text(terminal_safe(holder_text(run))),  # the host is the token's, as stored
            # the last column: refill fits it, with "…"
            "error": Text(terminal_safe(row.why or "")),
        }

    def _wanted_columns(self, filled: set[str]) -> tuple[str, ...]:
        """The fixed columns, then those some run fills (`filled`): `held by` while a run is held,
        `error` when one failed, and `usage` when one reported it and the screen is wide enough
        (at narrow widths it goes first: names, status and counts matter more). An empty column
        only pushed the errors off an 80-column screen."""
        optional = ("usage",) if self.size.width >= WIDE else ()
        optional += ("held by", "error")
        return (*COLUMNS, *(name for name in optional if name in filled))

    def on_resize(self) -> None:
        # After the layout, which gives the table its new width: short or full ids and dates, the
        # usage column, errors cut to the new room.
        self.call_after_refresh(self._refill)
        self.call_after_refresh(self.place_toasts)

    def _refill(self) -> None:
        if self.rows and self.is_mounted:
            self.run_guarded("list the runs", lambda: self._fill(self.rows, self.error))

    def selected(self) -> WorkflowRun | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row].run

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_run":
            return self.selected() is not None or None
        if action == "resume_run":
            return True if self.unavailable_reason(action) is None else None
        return True

    def unavailable_reason(self, action: str) -> str | None:
        """Why `r` would not resume the highlighted run — it is dimmed then, and the app says this
        when it is pressed anyway (it used to do nothing, silently) — else None."""
        if action != "resume_run":
            return None
        run = self.selected()
        if run is None:
            return "no run to resume"
        status = live_status(run)
        name = f"run {short_id(run.id)} of {run.workflow_name}"
        if status == "completed":
            return f"{name} completed: there is nothing to resume"
        if status == "waiting":
            return f"{name} waits at a gate: {self.rapp.key_for('open_run')} opens it to answer the gate"
        if status in LIVE:
            return f"{name} is {status}: {self.rapp.key_for('open_run')} follows it"
        if RunStatus(run.status) not in RESUMABLE and status != "interrupted":
            return f"{name} is {status}: only a failed, cancelled or interrupted run resumes"
        nothing = self.rapp.session.nothing_to_resume_with(run.workflow_name, bool(run.definition_snapshot))
        if nothing is not None:
            return f"{name} cannot be resumed: {nothing}"
        try:
            self.rapp.session.refuse_if_busy()
        except Refused as refused:
            return refused.notice.text
        return None

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        run = self.selected()
        if run is None:
            return
        if run.id == self.rapp.active_run_id:
            pass  # it runs here and is on screen already
        elif live_status(run) in LIVE:
            self.rapp.attach_run(run.id)  # another process runs it: follow it live
        else:
            self.rapp.open_past_run(run.id)
        self.dismiss()

    def action_resume_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.rapp.open_past_run(run.id, then_resume=True)
            self.dismiss()

    def action_back(self) -> None:
        self.dismiss()
