"""The runkon-tui Textual app: the screens around a `RunSession`.

Data flow (design.md §2): the engine runs on a thread worker and emits events into the session's
`EventBridge` (a deque); a 10 Hz `set_interval` tick folds the queued batch into the `RunView`
(`RunSession.fold`) and repaints the changed widgets inside `batch_update()`. Urgent events (gate
waiting, run finished, crash) also post a message so they are shown at once. Keys never block the
UI: the session runs cancel, approve/reject, resume and history reads on thread workers and its
reports come back as `SessionReport` messages. Run handling itself (what starting, resuming,
cancelling, answering a gate, following or opening a run does) lives in `runkon_tui.session`;
this module binds keys to it and draws what it reports.
"""

from __future__ import annotations

import contextlib
import gc
import getpass
import importlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import LoadResult
from runkon_flow.events import EngineEventData
from runkon_flow.heap import settle_for_runs
from runkon_flow.hooks.terminal import notify_setting_problem
from runkon_flow.humanize import display_line, format_duration
from runkon_flow.persistence.pg_connect import tell_outages
from runkon_flow.persistence.protocol import WorkflowPersistence
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets._toast import ToastRack

from runkon_tui import catalog as catalog_mod
from runkon_tui.bridge import EventBridge
from runkon_tui.catalog import Catalog, WorkflowEntry
from runkon_tui.commands import DUPLICATED_SYSTEM_COMMANDS, DashboardCommands, ThemeCommands
from runkon_tui.config import TuiConfig, load_config, unknown_keymap_ids
from runkon_tui.host import DeferredHost, DeferredStore, EngineHost, UnmadeStore
from runkon_tui.keys import binding_key, key_of
from runkon_tui.problems import OpenProblems, ProblemKey
from runkon_tui.run_view import Changes, FanOutView, GateView, LogLine, RunState, RunView
from runkon_tui.screens.main import MainScreen
from runkon_tui.session import (
    Attached,
    AttachEnded,
    Checked,
    EngineDone,
    HandOverFailed,
    Launched,
    LaunchFailed,
    Notice,
    OursRead,
    PastRunLoaded,
    ReadyToLeave,
    Refused,
    Report,
    ResumeKnown,
    RunCreated,
    RunnerFailed,
    RunRejected,
    RunSession,
    WorkflowsChecked,
)
from runkon_tui.terminal import hung_up
from runkon_tui.themes import DEFAULT_THEME, load_themes, stylesheet_path, theme_variable_defaults
from runkon_tui.toasts import Toast, ToastHold
from runkon_tui.widgets.cluster_list import ClusterList
from runkon_tui.widgets.dep_tree import DependencyTree
from runkon_tui.widgets.fanout_grid import FanOutGrid
from runkon_tui.widgets.markup import esc, terminal_safe
from runkon_tui.worker_failures import ShowsWorkerFailures

if TYPE_CHECKING:  # the first frame needs only the main screen: the others load when shown
    from textual.actions import ActionParseResult
    from textual.dom import DOMNode

    from runkon_tui.follow import StoreFollower
    from runkon_tui.screens.gate import GateDecision
    from runkon_tui.watcher import WorkflowWatcher

#: Modules a run needs but the first frame does not (see `RunkonApp._settle_after_first_frame`).
_NEEDED_LATER = ("runkon_flow.hooks.terminal", "textual.scrollbar", "runkon_flow.observe.clusters")

Clock = Callable[[], float]

TICK_HZ = 10.0
BUSY_TICK_EVENTS = 500  # events folded in one tick from which repaints keep to the UI's budget
#: While a fan-out is busy, the share of a core the UI thread may use (folding, repainting,
#: Textual's rendering): a repaint waits while the UI thread has used more since the last one.
UI_BUSY_SHARE = 0.05
MAX_PAINT_GAP_S = 1.0  # however busy, the screen is repainted at least this often


# --------------------------------------------------------------------------- messages


class EngineAttention(Message):
    """Posted from the engine thread for urgent events (gate waiting, run end, crash)."""

    def __init__(self, data: EngineEventData) -> None:
        super().__init__()
        self.data = data


class SessionReport(Message):
    """A report from a session worker (run created, engine done, past run loaded, …) for the UI
    thread: the session takes it in, the app shows what it says."""

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report


class StoreOpened(Message):
    """The run store the app started with (a `DeferredStore`) is open (or fell back to memory)."""

    def __init__(self, deferred: DeferredStore) -> None:
        super().__init__()
        self.deferred = deferred


class EngineBuilt(Message):
    """The engine host the app started with (a `DeferredHost`) is built, or failed to be."""

    def __init__(self, deferred: DeferredHost) -> None:
        super().__init__()
        self.deferred = deferred


class CatalogLoaded(Message):
    def __init__(self, result: LoadResult, paths: set[Path]) -> None:
        super().__init__()
        self.result = result
        self.paths = paths


# --------------------------------------------------------------------------- the app


class RunkonApp(ShowsWorkerFailures, App[int]):
    """The dashboard. `host` is the engine host (a Workspace); None means browse-only."""

    TITLE = "runkon"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="quit_app")]

    def __init__(
        self,
        dirs: list[Path],
        *,
        host: EngineHost | None = None,
        store: WorkflowPersistence | None = None,
        problems: list[str] | None = None,
        theme: str | None = None,
        clock: Clock = time.time,
        watch: bool = True,
        config: TuiConfig | None = None,
        select: str | None = None,
        tick_hz: float = TICK_HZ,
        user: str | None = None,
        replay: Path | None = None,
        blink: bool = True,
        attach: str | None = None,
        store_note: str | None = None,
        runs_in_runner: bool = False,
    ) -> None:
        css = stylesheet_path()
        super().__init__(css_path=[css] if css.is_file() else None)
        if store is None:
            from runkon_flow.persistence.memory import InMemoryStore

            store = InMemoryStore()
        self.dirs = [Path(d) for d in dirs]
        # A `DeferredStore` (runkon-tui) until it is opened right after the first frame.
        self.store: WorkflowPersistence = store
        self.startup_problems = list(problems or [])
        self.requested_theme = theme
        self.clock = clock
        self.watch_files = watch
        self.config = config or load_config()
        self.select = select
        self.tick_hz = tick_hz
        self.user = user or _user_name()
        self.replay_path = replay
        self.attach_to = attach
        self.blink = blink  # text cursors blink; tests turn it off for stable screenshots
        # Said in the header for the whole session: e.g. runs kept in memory after an unusable --db.
        self._store_note = store_note
        self.catalog = Catalog(self.dirs)
        self.catalog.reload()
        self.catalog_version = 0
        self.session = RunSession(
            host=host,
            store=self.store,
            catalog=self.catalog,
            driver=_AppDriver(self),
            clock=clock,
            user=self.user,
            on_urgent=self._urgent,
            runs_in_runner=runs_in_runner,
            key_for=self.key_for,
        )
        self._watcher: WorkflowWatcher | None = None
        self._shown_root: str | None = None
        # The last repaint, by the wall clock and the UI thread's CPU clock (see `drain`).
        self._painted_wall = self._painted_cpu = 0.0
        self._shown_workflow: str | None = None  # workflow of the run on screen (filters belong to it)
        self._start_theme = ""
        self._exiting = False
        self._outage_news = contextlib.ExitStack()  # the store's outage news, while mounted
        self._terminal_gone = False  # the terminal hung up: leave with 129 whatever happens
        self.toasts = ToastHold()
        self._startup_problems_told = 0  # counted in the start-up toast's title, over all batches
        # A run whose inputs form opens once `check_before_inputs` finds nothing stopping it.
        self._form_waiting: tuple[str, WorkflowDef] | None = None
        # Parse errors and loader warnings (a name clash …): listed until a reload mends them.
        self.problems = OpenProblems()

    # ------------------------------------------------------------------ startup

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    async def run_action(
        self,
        action: str | ActionParseResult,
        default_namespace: DOMNode | None = None,
        namespaces: Mapping[str, DOMNode] | None = None,
    ) -> bool:
        """Textual's, but a dimmed key pressed anyway says why it does nothing (a screen that
        can tell has `unavailable_reason(action)`), instead of nothing happening at all. Once the
        dashboard is leaving, no action runs: a key typed just after `q` would push a screen that
        shutdown never composes, whose `on_mount` then fails on a traceback on the way out."""
        if self._shutting_down():
            return False
        if await super().run_action(action, default_namespace, namespaces):
            return True
        explain = getattr(default_namespace, "unavailable_reason", None)
        if isinstance(action, str) and callable(explain):
            name = action.split("(", 1)[0].rsplit(".", 1)[-1]
            reason = explain(name)
            if reason:
                self.notify(reason, timeout=3)
        return False

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette commands, less those a key of ours does (runkon_tui/commands.py)."""
        for command in super().get_system_commands(screen):
            if command.title not in DUPLICATED_SYSTEM_COMMANDS:
                yield command

    def search_themes(self) -> None:
        """The theme picker (`t`), with the theme in use marked."""
        from textual.command import CommandPalette

        self.push_screen(CommandPalette(providers=[ThemeCommands], placeholder="Search for themes…"))

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """runkon.tcss's own variables (`$pane-border`) for themes that do not set them."""
        return theme_variable_defaults(self.current_theme)

    @property
    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def on_mount(self) -> None:
        themes, theme_errors = load_themes()
        for theme in themes:
            self.register_theme(theme)
        wanted = self.requested_theme or self.config.theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            known = ", ".join(sorted(self.available_themes))
            theme_errors.append(f"unknown theme '{wanted}'; available: {known}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        self._start_theme = wanted
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        config_errors = [self.config.error] if self.config.error else []
        if self.config.keymap:  # binding_ids imports every screen and widget: not for a first frame
            config_errors += unknown_keymap_ids(self.config, binding_ids())
        notify_problem = notify_setting_problem()
        config_errors += [notify_problem] if notify_problem else []
        self._open_startup_problems([*self.startup_problems, *theme_errors, *config_errors])
        for entry in self.catalog:
            if entry.error is not None:
                self._open_problem(("parse", entry.path), entry.error.render(), "error")
        for warning in self.catalog.warnings:
            self._open_problem(("warning", warning), warning, "warning")
        # A run here whose store calls wait out a database outage: shown while they wait.
        self._outage_news.enter_context(tell_outages(self.session.store_outage))
        self.set_interval(1 / self.tick_hz, self.drain, name="drain")
        self.set_interval(1.0, self._every_second, name="clock")
        if not self.is_headless:
            self.set_interval(1.0, self._leave_if_terminal_gone, name="terminal")
        if self.watch_files:
            self.call_after_refresh(self._start_watcher)  # after the first frame
        if self.replay_path is not None:
            self.call_after_refresh(self.replay, self.replay_path)
        elif self.attach_to is not None:
            self.call_after_refresh(self.attach_run, self.attach_to)
        self.call_after_refresh(self._settle_after_first_frame)
        store = self.store if isinstance(self.store, DeferredStore) else None
        host = self.session.host if isinstance(self.session.host, DeferredHost) else None
        if store is not None or host is not None:
            self.call_after_refresh(self._open_after_first_frame, store, host)
        if host is None:
            self.call_after_refresh(self.session.check_workflows)

    @property
    def store_note(self) -> str | None:
        """What the header says about the run store all session (runs kept in memory, a folder
        created for the database), or until a run started here makes a database that held no runs
        one (`UnmadeStore`)."""
        store = self.store
        return store.note if isinstance(store, UnmadeStore) else self._store_note

    @store_note.setter
    def store_note(self, note: str | None) -> None:
        self._store_note = note

    def _open_after_first_frame(self, store: DeferredStore | None, host: DeferredHost | None) -> None:
        """After the first frame: open the run store, then build the engine host, on a worker
        (runs and past runs need them, the first frame does not). A key that needs either before
        then opens or builds it itself (and waits)."""

        def open_then_build() -> None:
            try:
                if store is not None:
                    try:
                        store.open()
                    finally:
                        self.post_message(StoreOpened(store))
            finally:
                if host is not None:
                    try:
                        host.build()
                    finally:
                        self.post_message(EngineBuilt(host))

        name = "open the store and the engine"
        self.run_worker(open_then_build, thread=True, group="engine", name=name, exit_on_error=False)

    def on_store_opened(self, message: StoreOpened) -> None:
        """The store is open: the app and session use it directly from now on, and what opening
        it found (an unusable database, a folder created for it) is said as at start-up."""
        deferred = message.deferred
        if self.store is not deferred or not deferred.opened:  # not opened: its next use says why
            return
        self.store = self.session.store = deferred.store
        if self._shutting_down():
            return
        if deferred.problem:
            self._open_startup_problems([deferred.problem])
        if deferred.note:
            self.store_note = deferred.note
            self.view.note(f"⚠ {deferred.note}", "warning")  # also in the engine log, whole
        screen = self.main_screen
        if (deferred.problem or deferred.note) and screen is not None and screen.is_mounted:
            self.drain()
            screen.refresh_header()

    def on_engine_built(self, message: EngineBuilt) -> None:
        deferred = message.deferred
        if self.session.host is not deferred:
            return
        self.session.host = deferred.host  # None: browse-only, the problems say why
        if self._shutting_down():
            return
        self.session.check_workflows()
        problems = deferred.problems if deferred.built else ["engine unavailable: it failed to start"]
        self._open_startup_problems(problems)
        screen = self.main_screen
        if problems and screen is not None and screen.is_mounted:
            self.drain()
            screen.update_bindings()

    @staticmethod
    def _settle_after_first_frame() -> None:
        """Import what a run needs later, then move everything built at start-up (Textual's
        widgets and stylesheets, the catalog, the engine host) out of the garbage collector's full
        scans. Those objects live as long as the app; without this, every full collection during a
        big fan-out re-scans them, and that is paid by the engine threads too (it measurably
        slowed a 10,000-item run).

        The modules are imported off the first frame: the scroll bar a long fan-out grid gains,
        the failure clusters under it, and the run's end alert (the hooks package, with its YAML
        and HTTP modules, ~20 ms on a quiet machine). Imported during a run instead, they hold
        the interpreter while the engine's threads work.

        `runkon-tui` starts with the collector off (cli.main); it is turned on here."""
        for module in _NEEDED_LATER:
            importlib.import_module(module)
        settle_for_runs()  # freeze, and young collections less often (runkon_flow.heap)
        gc.enable()

    def initial_selection(self) -> str | None:
        if self.select:
            entry = self.catalog.find(self.select)
            if entry is not None:
                return entry.path
        return None

    def idle_parts(self) -> list[tuple[int, str]]:
        """The header with no run on screen, as (priority, text): a narrow line leaves out the
        lowest first (docs/dashboard.md "80×24"). Runs of ours going out of sight are said there,
        or "idle" would pass for nothing going."""
        n = sum(1 for e in self.catalog if not e.broken)
        broken = sum(1 for e in self.catalog if e.broken)
        where = ", ".join(str(d) for d in self.dirs)
        parts = [(2, f"{n} workflow{'' if n == 1 else 's'} in {where}")]
        if broken:
            parts.append((3, f"{broken} broken"))
        # Files that parse but whose run the checks refuse (a missing agent …) are ✗ in the list too.
        stopped = sum(1 for e in self.catalog if not e.broken and e.problems)
        if stopped:
            parts.append((3, f"{stopped} cannot run"))
        going = self.ours_going_text()
        parts.append((9, f"idle here · {going}" if going else "idle"))
        return parts

    def ours_going_text(self, *, beside_a_run: bool = False) -> str:
        """`1 run of ours going (1 at a gate) — h lists it` ("" with none out of sight); beside
        a run on screen, where room is short, `+1 run of ours going (1 at a gate)`."""
        going, at_gate = self.session.ours_out_of_sight()
        if not going:
            return ""
        runs = "1 run" if going == 1 else f"{going} runs"
        gate = f" ({at_gate} at a gate)" if at_gate else ""
        if beside_a_run:
            return f"+{runs} of ours going{gate}"
        return f"{runs} of ours going{gate} — {self.key_for('runs')} lists it"

    def _theme_changed(self, theme: Any) -> None:
        """Remember a theme the user picked (not the one we started with, nor the fallback for
        a theme the settings name but nobody has: start-up said so, the file stays as written)."""
        if theme.name == self._start_theme and (
            self.config.theme in (None, theme.name) or self.config.theme not in self.available_themes
        ):
            return
        if self.config.theme != theme.name:
            self.config.theme = theme.name
            error = self.config.save("theme")
            if error:
                self.notify(error, severity="warning")

    # ------------------------------------------------------------------ toasts never cover a dialog

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
        relevant: Callable[[], bool] | None = None,
        key: str = "",
    ) -> None:
        """A toast, held while a dialog is up (runkon_tui/toasts.py); `relevant` drops a held one
        that no longer says anything true when the dialog closes; a toast with a `key` replaces
        one with the same key still up (the start-up problems').

        Always plain text, whatever `markup` says (`Widget.notify` passes True): a toast quotes
        gate prompts, errors and names that hold values, and Content markup in one (`[/b]`) made
        Textual raise while drawing it — the dashboard crashed — or (`[@click=app.quit]`) acted."""
        wait = self.NOTIFICATION_TIMEOUT if timeout is None else timeout
        message, title = terminal_safe(message), terminal_safe(title)
        if key:
            self._withdraw(self.toasts.withdraw(key))
        self._raise(Toast(message, title, severity, wait, False, relevant, key=key))

    def _raise(self, toast: Toast) -> None:
        """Show `toast` now, or hold it while a dialog is up (it keeps whether it came back already)."""
        if self.toasts.raise_now(toast) is not None:
            severity: Any = toast.severity
            super().notify(
                toast.message,
                title=toast.title,
                severity=severity,
                timeout=toast.timeout,
                markup=toast.markup,
            )

    def _gate_unseen(self, gate: GateView) -> bool:
        """A held "Gate" toast comes back only for a gate that still waits and whose dialog the
        user has not opened (the dialog said all the toast says)."""
        return not self.session.gate_seen(gate) and gate in self.view.gates.values()

    def clear_notifications(self) -> None:
        self.toasts.clear()
        super().clear_notifications()

    def _screen_changed(self, screen: Screen[Any]) -> None:
        modal = isinstance(screen, ModalScreen)
        if modal and not self.toasts.modal:
            if self.toasts.dialog_opened():
                super().clear_notifications()  # Textual redraws the rack of the dialog's screen only:
                for below in self.screen_stack[:-1]:  # the one under it kept them, peeking out beside
                    with contextlib.suppress(NoMatches):  # a dialog narrower than the screen
                        below.get_child_by_type(ToastRack).remove_children()
        elif not modal and self.toasts.modal:
            for toast in self.toasts.dialog_closed():
                self._raise(toast)

    def _withdraw_stale_toasts(self) -> None:
        """A gate answered (here, in the inbox, by another process) takes its "Gate" toast down."""
        self._withdraw(self.toasts.withdraw_stale())

    def _withdraw(self, kept: list[Toast] | None) -> None:
        """Toasts were taken down (`ToastHold.withdraw…`): Textual takes down all or none, so the
        screen's are cleared and `kept` put back, each for the time it had left."""
        if kept is not None:
            super().clear_notifications()
            for toast in kept:
                self._raise(toast)

    # ------------------------------------------------------------------ keys (help, palette, banners)

    def key_for(self, binding_id: str) -> str:
        """The key that triggers the binding `binding_id` now (`keys.binding_key`), for a note, hint
        or dialog button that names it: a main-screen binding, else one of a screen up — the runs
        list's and gate inbox's hints and the dialogs' buttons name their own keys through it (a
        keymap applies by id, anywhere)."""
        owners = [MainScreen, *(type(screen) for screen in reversed(self.screen_stack))]
        return key_of(owners, binding_id, self._keymap_now())

    def shown_key(self, binding: Binding) -> str:
        """The key that triggers `binding` now: the settings' keymap, else its own first key."""
        return binding_key(binding, self._keymap_now())

    def _keymap_now(self) -> Mapping[str, str]:
        return getattr(self, "_keymap", {}) or {}

    def key_table(self) -> list[tuple[str, str, str, str]]:
        """(key shown, binding id, description, action) for every main-screen binding."""
        rows = []
        for binding in MainScreen.BINDINGS:
            if not isinstance(binding, Binding) or binding.id is None:
                continue
            rows.append((self.shown_key(binding), binding.id, binding.description, binding.action))
        return rows

    def pane_key_table(self) -> list[tuple[str, str, str, str]]:
        """(pane, key shown, binding id, description) for the keys a pane has while focused:
        retrying items, rerunning from a step."""
        rows = []
        for pane, widget in (("grid", FanOutGrid), ("clusters", ClusterList), ("tree", DependencyTree)):
            for binding in widget.BINDINGS:
                if isinstance(binding, Binding) and binding.id is not None:
                    rows.append((pane, self.shown_key(binding), binding.id, binding.description))
        return rows

    def show_help(self) -> None:
        from runkon_tui.screens.help import HelpScreen

        keys = [(k, i, d) for k, i, d, _ in self.key_table()]
        self.push_screen(HelpScreen(keys, str(self.config.path), self.pane_key_table()))

    def show_runs(self) -> None:
        from runkon_tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    # ------------------------------------------------------------------ the session's state, read by screens

    @property
    def host(self) -> EngineHost | None:
        return self.session.host

    @property
    def view(self) -> RunView:
        return self.session.view

    @property
    def bridge(self) -> EventBridge:
        return self.session.bridge

    @property
    def run_active(self) -> bool:
        return self.session.run_active

    @property
    def active_run_id(self) -> str | None:
        return self.session.active_run_id

    @property
    def attached_run_id(self) -> str | None:
        return self.session.attached_run_id

    @property
    def run_in_view(self) -> str | None:
        """The live run on screen, whichever process executes it (None for a past run)."""
        return self.session.run_in_view

    @property
    def _follower(self) -> StoreFollower | None:
        return self.session.follower

    def can_resume(self) -> bool:
        return self.session.can_resume()

    def workflow_statuses(self) -> dict[str, str]:
        return self.session.workflow_statuses()

    def definition_for_tree(self, entry: WorkflowEntry) -> WorkflowDef | None:
        return self.session.definition_for_tree(entry)

    def definition_changed_under_run(self, entry: WorkflowEntry) -> bool:
        return self.session.definition_changed_under_run(entry)

    def run_entry(self, name: str) -> WorkflowEntry | None:
        return self.session.run_entry(name)

    def exit_code(self) -> int:
        return self.session.exit_code()

    def summary(self) -> str:
        return self.session.summary()

    # ------------------------------------------------------------------ the drain tick

    # The repaint budget's clocks (`drain`); a test replaces them.
    _wall_clock = staticmethod(time.monotonic)
    _ui_cpu_clock = staticmethod(time.thread_time)

    def _urgent(self, data: EngineEventData) -> None:
        """Engine thread: nudge the UI (thread-safe post), never touch widgets here."""
        self.post_message(EngineAttention(data))

    def on_engine_attention(self, _: EngineAttention) -> None:
        self.drain()

    def drain(self) -> None:
        """Fold queued events into the RunView and repaint what changed (one UI tick).

        The fold runs every tick. While a large fan-out streams events (`BUSY_TICK_EVENTS` or more
        in one tick) a repaint waits until the UI thread's CPU since the last one is within
        `UI_BUSY_SHARE` of the time passed (at most `MAX_PAINT_GAP_S`): every repaint costs the
        interpreter the engine's threads need, and on a slow machine the same repaint costs more,
        so the screen is drawn less often there instead of slowing the run more. A gate, a run's
        end, a new run or fan-out or an error among the changes is drawn at once.

        The tick is the UI's turn (`EventBridge.ui_turn`): engine threads wait at their next event
        until it ends, so a tick of 3 ms CPU is not stretched to 50–300 ms waiting for the
        interpreter lock behind eight busy engine threads."""
        with self.session.bridge.ui_turn():
            self._drain()

    def _drain(self) -> None:
        session = self.session
        folded = session.fold_only()
        wall, cpu = self._wall_clock(), self._ui_cpu_clock()
        if folded >= BUSY_TICK_EVENTS and not session.must_show_now():
            since = wall - self._painted_wall
            if since < MAX_PAINT_GAP_S and cpu - self._painted_cpu > UI_BUSY_SHARE * since:
                return
        changes = session.take_changes()
        if changes:
            self._painted_wall, self._painted_cpu = wall, cpu
            self._apply_changes(changes)

    def report_problem(self, text: str, title: str = "") -> None:
        """A toast and a line in the errors log: what went wrong, while the dashboard runs on.
        Also during `on_mount` (startup problems), before Textual counts the app as running."""
        if self._shutting_down() and self.is_mounted:
            return
        self.view.note(text, "error")
        self.notify(text, title=title, severity="error", timeout=8)

    def _shutting_down(self) -> bool:
        # `_running` goes False first: Textual then prunes the screens (children before their
        # parents) while queued messages may still be handled — a report then found the log pane
        # without its log view (seen once at the end of an attached cluster run's test).
        return self._exiting or self._closing or self._closed or not self._running

    def _apply_changes(self, changes: Changes) -> None:
        if self._shutting_down():
            return
        screen = self.main_screen
        root_id = self.view.root_run_id
        if root_id != self._shown_root and self.view.workflow_name:
            # A new run appeared (started here, replayed, or opened): show its workflow.
            self._shown_root = root_id
            self._new_run_shown(self.view.workflow_name)
            self._select_workflow(self.view.workflow_name)
        if screen is not None and screen.is_mounted:
            with self.batch_update(), contextlib.suppress(NoMatches):
                screen.refresh_view(changes, self.clock())
        if changes.gates:
            self._announce_gates()
            self._withdraw_stale_toasts()
        if changes.finished:
            self._announce_finish()

    def _new_run_shown(self, workflow: str | None) -> None:
        """A run of another workflow starts with no item or log filter left from the last one."""
        if workflow == self._shown_workflow:
            return
        self._shown_workflow = workflow
        screen = self.main_screen
        if screen is not None and screen.is_mounted:
            screen.clear_run_filters()

    def _leave_if_terminal_gone(self) -> None:
        """The terminal hung up (window closed, laptop lid shut over ssh): leave instead of
        spinning on its EOF. No one is left to ask what to do with a run this dashboard hosts, so
        it does what "keep running in the background" on quit does: the run goes on in a
        background runner, to be attached again (docs/dashboard.md, "Closing the terminal"). Where
        that cannot be (runs kept in memory, or the hand-over fails) the run stops with the
        process; its lease lapses and it shows as interrupted, resumable."""
        stdin = sys.__stdin__
        if self._terminal_gone or stdin is None or not hung_up(stdin.fileno()):
            return
        self._terminal_gone = True
        session = self.session
        if (
            session.runs_going()
            and not session.quitting
            and session.why_no_hand_over() is None
            and session.hand_over_and_leave()
        ):
            return  # `ReadyToLeave` (or `HandOverFailed`) follows, then the app leaves with 129
        self._leave()  # with 129, as if killed by SIGHUP

    def _every_second(self) -> None:
        screen = self.main_screen
        if screen is None or not screen.is_mounted or self._shutting_down():
            return
        self.session.poll_background()  # runs of ours out of sight: `OursRead` comes back
        if self.view.active or self.view.gates:
            with self.batch_update(), contextlib.suppress(NoMatches):
                screen.refresh_view(Changes(), self.clock(), second=True)

    def _announce_gates(self) -> None:
        for gate in self.session.new_gates():
            prompt = f": {esc(display_line(gate.prompt))}" if gate.prompt else ""  # untrusted text
            keys = f"{self.key_for('approve')} approve · {self.key_for('reject')} reject"
            self.notify(
                f"gate {gate.gate_name} waits for approval{prompt}\n{keys}",
                title="Gate",
                timeout=10,
                relevant=lambda gate=gate: self._gate_unseen(gate),  # type: ignore[misc]
            )
            self.alert(f"gate {gate.gate_name} waits", gate.prompt or "approve or reject it")

    def _show(self, notice: Notice | None) -> None:
        """A toast the session asked for."""
        if notice is None:
            return
        kwargs: dict[str, Any] = {"severity": notice.severity}
        if notice.title:
            kwargs["title"] = notice.title
        if notice.timeout is not None:
            kwargs["timeout"] = notice.timeout
        self.notify(notice.text, **kwargs)

    def _announce_finish(self) -> None:
        """The run on screen ended: a toast, the bell and a desktop notification."""
        notice = self.session.run_finished()
        root = self.view.root
        if notice is None or root is None:
            return
        self._show(notice)
        status = self.view.status
        took = format_duration(root.elapsed(self.clock()))
        self.alert(f"run {status}", f"{root.workflow_name} {status} after {took}")

    def alert(self, title: str, body: str) -> None:
        """The bell plus, where the terminal shows them, a desktop notification (OSC 9 / OSC 777;
        `$RUNKON_NOTIFY` chooses or turns it off — runkon_flow.hooks.terminal)."""
        from runkon_flow.hooks.terminal import alert_sequence

        text = alert_sequence(f"runkon: {title}", body)
        if text:
            self.write_to_terminal(text)

    def write_to_terminal(self, text: str) -> None:
        """Raw bytes for the terminal itself (not drawn on screen)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(text)

    def _ask(self, request: Callable[[], Any]) -> Any:
        """Call a session request; a refusal becomes a toast (and the result None)."""
        try:
            return request()
        except Refused as refused:
            self._show(refused.notice)
            return None

    # ------------------------------------------------------------------ running

    def request_run(self, entry: WorkflowEntry) -> None:
        session = self.session
        definition = self._ask(lambda: session.check_runnable(entry))
        if definition is None:
            return
        name = entry.name
        if definition.inputs:  # the form opens once the check finds nothing stopping the run
            self._form_waiting = (name, definition)
            session.check_before_inputs(name)
            return
        try:
            inputs = session.prepare_inputs(name, {})
        except Exception as exc:
            self.notify(str(exc), title=f"Cannot run {name}", severity="error")
            return
        self._start(name, definition, inputs)

    def _open_inputs_form(self, name: str, definition: WorkflowDef) -> None:
        from runkon_tui.screens.inputs import InputsScreen

        session = self.session

        def prepare(raw: Mapping[str, str]) -> dict[str, str]:
            return session.prepare_inputs(name, raw)

        def submitted(inputs: dict[str, str] | None) -> None:
            if inputs is not None:
                self._start(name, definition, inputs)

        self.push_screen(InputsScreen(definition, prepare), submitted)

    def _start(self, name: str, definition: WorkflowDef, inputs: dict[str, str]) -> None:
        self.clear_notifications()  # toasts about the previous run would cover this one's log
        screen = self.main_screen
        if screen is not None:
            screen.follow_the_new_run()
        self.session.start(name, definition, inputs)
        self.drain()
        self._refresh_screen()

    def request_resume(self, run_id: str | None = None) -> None:
        if self._ask(lambda: self.session.resume(run_id)):
            self.clear_notifications()  # "Run finished … cancelled" is about the attempt that ended
            self.drain()
            self._refresh_screen()

    def request_retry(self, fan: FanOutView, item_ids: list[str]) -> None:
        """Retry items of a finished run's fan-out, after a yes (RunSession.retry)."""
        from runkon_tui.screens.confirm import ConfirmScreen

        plan = self._ask(lambda: self.session.retry_plan(fan, item_ids))
        if plan is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.session.retry(plan)
                self.drain()
                self._refresh_screen()

        self.push_screen(ConfirmScreen(plan.question, yes="Retry"), answered)

    def request_rerun(self, node_path: str, label: str) -> None:
        """Rerun the finished run on screen from the step at `node_path` (docs/when-things-go-
        wrong.md): its inputs in a form to change, then a new run, linked to it, that reuses the
        steps before that step — with the definition the tree shows (stored with the run)."""
        from runkon_tui.screens.inputs import InputsScreen

        check = self._ask(self.session.rerun_check)
        if check is None:
            return
        run_id, definition, old_inputs = check

        def submitted(inputs: dict[str, str] | None) -> None:
            if inputs is not None:
                self.session.rerun(run_id, node_path, label, inputs)

        heading = f"Rerun {definition.name} from {label} (the steps before it are reused)"
        self.push_screen(InputsScreen(definition, dict, initial=old_inputs, heading=heading), submitted)

    def on_session_report(self, message: SessionReport) -> None:
        """A worker's report: the session takes it in, then the screens follow."""
        from runkon_tui.screens.confirm import ConfirmScreen
        from runkon_tui.screens.quit import QuitScreen

        report = message.report
        session = self.session
        if isinstance(report, EngineDone):
            self.drain()  # fold the run's last events first
        notice = session.handle(report)
        if self._shutting_down():
            return  # the session knows; there is no screen left to tell
        if isinstance(report, RunCreated):
            self._show(notice)  # the check's warnings
            self._select_workflow(report.name)
            self.drain()
        elif isinstance(report, ResumeKnown):
            screen = self.main_screen
            if session.resume_answered(report) and screen is not None and screen.is_mounted:
                screen.show_workflow(screen.shown_entry())  # its note says what r resumes with
        elif isinstance(report, WorkflowsChecked):
            if session.problems_changed:  # most checks find what the list already shows
                self._refresh_screen()
        elif isinstance(report, Checked):
            waiting, self._form_waiting = self._form_waiting, None
            if waiting is not None and waiting[0] == report.name and self.screen is self.main_screen:
                self._open_inputs_form(*waiting)
        elif isinstance(report, RunRejected):
            self._form_waiting = None
            self._show(notice)
            self.drain()
            self._refresh_screen()
        elif isinstance(report, EngineDone):
            self._show(notice)
            question = self.screen  # a question about the run that just ended has no subject any more
            if isinstance(question, ConfirmScreen) and question.about_active_run and not session.quitting:
                question.dismiss(False)
            elif isinstance(question, QuitScreen) and not session.quitting:
                question.dismiss("stay")
            self.drain()
            session.refresh_host()
            self._refresh_screen(force_tree=True)
        elif isinstance(report, PastRunLoaded):
            if report.view is None:
                self._show(notice)
                return
            self._bind_view()
            if report.then_resume:
                self.request_resume(report.view.root_run_id)
        elif isinstance(report, (Attached, Launched)):
            if session.attached_run_id != report.run_id:
                return
            self._show(notice)  # a launched run: the check's warnings
            self._bind_view()
            self._select_workflow(report.name)
            self._refresh_screen()
        elif isinstance(report, AttachEnded):
            self._ask_again_about_runs_going()  # the run on screen ended: one the question names
            self.drain()
            self._refresh_screen(force_tree=True)
        elif isinstance(report, (RunnerFailed, LaunchFailed)):
            self._show(notice)
            self.drain()
            self._refresh_screen(force_tree=True)
        elif isinstance(report, (Notice, HandOverFailed)):
            self._show(notice)
            self.drain()
            if isinstance(report, HandOverFailed) and self._terminal_gone:
                self._leave()  # no one to tell: the run stops with the process
        elif isinstance(report, OursRead):
            self._show(notice)  # one of them ended, or waits at a gate
            self._ask_again_about_runs_going()
            screen = self.main_screen
            if report.changed and screen is not None and screen.is_mounted:
                screen.workflow_list.statuses = self.workflow_statuses()
                screen.workflow_list.load(self.catalog)
                screen.refresh_header()  # `idle here · 1 run of ours going …` follows them
        elif isinstance(report, ReadyToLeave):
            self._leave()

    def request_cancel(self) -> None:
        from runkon_tui.screens.confirm import ConfirmScreen

        label = self.session.cancel_label()
        if label is None:
            return
        run_id = self.run_in_view

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(run_id)

        question = ConfirmScreen(
            f"Cancel {label}?", yes="Cancel run", no="Keep running", about_active_run=True
        )
        self.push_screen(question, answered)

    def _cancel(self, run_id: str | None) -> None:
        if self.host is None or run_id is None:
            return
        self.session.cancel(run_id)
        self.drain()
        self._refresh_screen()

    # ------------------------------------------------------------------ gates

    def request_gate(self, intent: str) -> None:
        from runkon_tui.screens.gate import GateScreen

        gate = self.session.gate_to_decide()
        if gate is None:
            return

        def decided(decision: GateDecision | None) -> None:
            if decision is not None:
                self.session.decide_gate(gate, decision.approved, decision.note, decision.selections)

        self.session.saw_gates([gate])  # its toast is moot now
        self.push_screen(GateScreen(gate, intent, self.session.gate_drafts), decided)

    # ------------------------------------------------------------------ history and runs held elsewhere

    def open_past_run(self, run_id: str, then_resume: bool = False) -> None:
        self._ask(lambda: self.session.open_past_run(run_id, then_resume))

    def attach_run(self, run_id: str) -> None:
        """Follow a run another process executes (RunSession.attach)."""
        self._ask(lambda: self.session.attach(run_id))

    def replay(self, path: Path) -> None:
        """Show a recorded JSON-lines event log read-only (`runkon-tui --replay FILE`)."""
        try:
            view = RunView.from_jsonl(path, clock=self.clock)
        except (OSError, ValueError) as exc:
            self.notify(f"cannot replay {path}: {exc}", severity="error", timeout=10)
            return
        view.read_only = True
        self.set_view(view)

    def set_view(self, view: RunView) -> None:
        """Show another RunView (a past run); widgets re-bind to its buffers."""
        self.session.show(view)
        self._bind_view()

    def _bind_view(self) -> None:
        """The session shows another view: widgets re-bind to its buffers."""
        view = self.view
        self._shown_root = view.root_run_id
        self._new_run_shown(view.workflow_name)
        screen = self.main_screen
        if screen is not None:
            screen.bind_view()
            if view.workflow_name:
                self._select_workflow(view.workflow_name)
            screen.refresh_view(Changes(header=True, structure=True, gates=True), self.clock())

    def open_child_run(self, run_id: str, then: Callable[[RunState | None], object]) -> None:
        """A child run missing from the live view (evicted, or a past run): read it from the store
        on a worker (a slow or unreachable store never freezes the screen), then — on the UI
        thread — put it into the view and call `then` with it (None: no such run, or the read
        failed, which is told). Only the view the read began on takes it."""
        session = self.session
        view = session.view

        def read() -> None:
            try:
                found, error = session.read_child_run(run_id), None
            except Exception as exc:
                found, error = None, exc
            self.call_from_thread(done, found, error)

        def done(found: RunView | None, error: Exception | None) -> None:
            if error is not None:
                self.notify(f"cannot read child run {run_id}: {error}", severity="error")
            if session.view is not view:
                return  # another run is on screen by now
            then(session.adopt_child_run(found, run_id) if found is not None else None)

        name = f"read child run {run_id}"
        self.run_worker(read, thread=True, group="child-run", name=name, exit_on_error=False)

    # ------------------------------------------------------------------ hot reload

    def _start_watcher(self) -> None:
        from runkon_tui.watcher import WorkflowWatcher

        def changed(paths: set[Path]) -> None:
            result = catalog_mod.load(self.dirs)  # parse off the UI thread
            self.post_message(CatalogLoaded(result, paths))

        self._watcher = WorkflowWatcher(self.dirs, changed)
        self.run_worker(
            self._watcher.run,
            thread=True,
            group="watcher",
            name="watch the workflow files",
            exit_on_error=False,
        )

    def on_catalog_loaded(self, message: CatalogLoaded) -> None:
        diff = self.catalog.merge(message.result)
        if not diff:
            return
        self.catalog_version += 1
        self.session.catalog_changed()
        warnings = self.catalog.warnings
        for key in self.problems.keys("warning"):
            if key[1] not in warnings:
                self.problems.close(key)
        for warning in warnings:  # a new clash is said as at start-up, and shown
            self._open_problem(("warning", warning), warning, "warning", title="Workflow files")
        for path in [*diff.fixed, *diff.removed, *diff.broken]:
            self.problems.close(("parse", path))
        entries = self.catalog.entries
        for path in [*diff.broken, *(p for p in diff.added if entries[p].broken)]:
            entry = entries[path]
            text = f"{entry.location()}: {entry.error.message if entry.error else ''}"
            self._open_problem(("parse", path), text, "error", title="Workflow has an error")
        for path in diff.fixed:
            self.notify(f"{Path(path).name} parses again", timeout=3)
        self.drain()
        self._refresh_screen(force_tree=True)

    def _open_problem(self, key: ProblemKey, text: str, level: str, title: str | None = None) -> bool:
        """A problem of the workspace: listed in the errors log until a reload mends it (a run
        start clears only the run's errors), told in the engine log, and in a toast with `title`
        (none for the files' problems at start-up, where the list and the errors count say it).
        False when it was open already."""
        line = LogLine(self.clock(), text, level)
        if not self.problems.open(key, line):
            return False
        self.view.engine_log.append(line)  # the engine log's story; not the run's errors log
        if title is not None:
            self.notify(text, title=title, severity="error" if level == "error" else "warning", timeout=8)
        return True

    def _open_startup_problems(self, problems: list[str]) -> None:
        """Start-up problems (settings, theme, store, hooks, engine): each in the errors log, and
        one toast with the first, its title saying how many there are. A toast each ran off a
        60×20 screen from the third on (toasts stop at a quarter of the height each).

        They come in batches — the settings' and theme's at mount, the store's and the engine's
        after the first frame — and each later batch's toast replaces the start-up toast still up,
        with its own first problem, numbered among all so far: `2 of 2 start-up problems …` after
        a bad theme and an unusable --db, not two toasts each titled as the only one."""
        opened = [p for p in problems if self._open_problem(("startup", p), p, "error")]
        if not opened:
            return
        first = self._startup_problems_told + 1
        self._startup_problems_told += len(opened)
        total = self._startup_problems_told
        # Said where the whole text is: a long one is cut at a quarter of the screen's height.
        title = (
            f"{first} of {total} start-up problems (all in the errors log)"
            if total > 1
            else "start-up problem (all in errors log)"
        )
        self.notify(opened[0], title=title, severity="error", timeout=8, key="startup")

    # ------------------------------------------------------------------ screen helpers

    def _select_workflow(self, name: str) -> None:
        screen = self.main_screen
        if screen is None:
            return
        entry = self.catalog.by_name(name)
        if entry is None:
            outside = self.run_entry(name)
            if outside is not None:
                screen.pin_entry(outside)
                screen.show_workflow(outside)
            return
        screen.pin_entry(None)
        screen.workflow_list.statuses = self.workflow_statuses()
        screen.workflow_list.load(self.catalog, select_path=entry.path)
        screen.show_workflow(entry)

    def _refresh_screen(self, force_tree: bool = False) -> None:
        screen = self.main_screen
        if screen is None or not screen.is_mounted:
            return
        screen.workflow_list.statuses = self.workflow_statuses()
        screen.workflow_list.load(self.catalog)
        screen.show_workflow(screen.shown_entry(), force=force_tree)
        screen.refresh_view(Changes(header=True, structure=True, gates=True), self.clock())
        screen.update_bindings()

    # ------------------------------------------------------------------ leaving

    async def action_quit(self) -> None:
        session = self.session
        if session.quitting:
            return
        if session.launching:  # its run id is not known yet: the quit question could not name it
            self._show(Notice("a run is being started in a background runner: quit in a moment"))
            return
        going = session.runs_going()
        if not going:  # nothing of ours is going (a followed run goes on)
            self._leave()
            return
        why_not = session.why_no_hand_over()

        def answered(choice: str | None) -> None:
            if choice == "cancel":
                session.cancel_and_leave()
                self.drain()
                self._refresh_screen()
            elif choice == "keep":
                if session.hand_over_and_leave():
                    self.drain()
                else:
                    self._leave()

        from runkon_tui.screens.quit import QuitScreen

        label = session.quit_label(going)
        question = QuitScreen(label, runs=len(going), can_keep=why_not is None, why_not=why_not or "")
        self.push_screen(question, answered)

    def _ask_again_about_runs_going(self) -> None:
        """An open quit question names the runs still going: none left, it is withdrawn."""
        from runkon_tui.screens.quit import QuitScreen

        question, session = self.screen, self.session
        if not isinstance(question, QuitScreen) or session.quitting:
            return
        going = session.runs_going()
        if not going:
            question.dismiss("stay")
        elif len(going) != question.runs:
            question.about(session.quit_label(going), len(going))

    def _leave(self) -> None:
        """Every way out goes through here: `app.run()` returns the result, not `return_code`,
        and the command's exit status is that result."""
        self.drain()
        self._exiting = True
        code = 129 if self._terminal_gone else self.exit_code()  # 129: as if killed by SIGHUP
        self.exit(code, return_code=code)

    def on_unmount(self) -> None:
        self._outage_news.close()
        self._exiting = True
        self.session.close()
        if self._watcher is not None:
            self._watcher.stop()


class _AppDriver:
    """The session's `Driver`: thread workers out, `SessionReport` messages back."""

    def __init__(self, app: RunkonApp) -> None:
        self.app = app

    def spawn(self, job: Callable[[], None], *, group: str, name: str = "") -> None:
        self.app.run_worker(job, thread=True, group=group, name=name, exit_on_error=False)

    def post(self, report: Report) -> None:
        self.app.post_message(SessionReport(report))


def binding_ids() -> set[str]:
    """Every binding id a keymap may name: those of the app, its screens and widgets (screens are
    imported lazily elsewhere, so they are imported here) and Textual's own."""
    import pkgutil

    from textual.dom import DOMNode

    from runkon_tui import screens, widgets

    for package in (screens, widgets):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    ids: set[str] = set()
    classes: list[type] = [DOMNode]
    seen: set[type] = set()
    while classes:
        cls = classes.pop()
        if cls in seen:
            continue
        seen.add(cls)
        classes.extend(cls.__subclasses__())
        ids.update(b.id for b in cls.__dict__.get("BINDINGS", ()) if isinstance(b, Binding) and b.id)
    return ids


def _user_name() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "runkon-tui"
