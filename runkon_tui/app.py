"""The runkon-tui Textual app: hosts the engine in a thread worker and drives the screens.

Data flow (design.md §2): the engine runs on a thread worker and emits events into the
`EventBridge` (a deque); a 10 Hz `set_interval` tick drains the deque, folds the batch into the
`RunView` and repaints the changed widgets inside `batch_update()`. Urgent events (gate waiting,
run finished, crash) also post a message so they are shown at once. Keys never block the UI:
cancel, approve/reject, resume and history reads all run on thread workers.
"""

from __future__ import annotations

import contextlib
import gc
import getpass
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import LoadResult
from runkon_flow.event_log import top_level_run
from runkon_flow.events import EngineEventData
from runkon_flow.humanize import format_duration
from runkon_flow.persistence.protocol import WorkflowPersistence
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen

from runkon_tui import catalog as catalog_mod
from runkon_tui.bridge import EventBridge
from runkon_tui.catalog import Catalog, WorkflowEntry
from runkon_tui.commands import DashboardCommands
from runkon_tui.config import TuiConfig, load_config
from runkon_tui.follow import StoreFollower
from runkon_tui.history import definition_of, load_run_state, past_run_view
from runkon_tui.host import EngineHost
from runkon_tui.run_view import Changes, FanOutView, GateView, RunState, RunView
from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.gate import GateDecision, GateScreen
from runkon_tui.screens.help import HelpScreen
from runkon_tui.screens.inputs import InputsScreen
from runkon_tui.screens.main import MainScreen
from runkon_tui.screens.quit import QuitScreen
from runkon_tui.screens.runs import RunsScreen
from runkon_tui.status import short_id
from runkon_tui.themes import DEFAULT_THEME, load_themes, stylesheet_path
from runkon_tui.watcher import WorkflowWatcher

Clock = Callable[[], float]

TICK_HZ = 10.0
DRAIN_LIMIT = 50_000  # events folded per tick at most; the rest waits one tick
QUIT_WAIT_S = 10.0


# --------------------------------------------------------------------------- messages


class EngineAttention(Message):
    """Posted from the engine thread for urgent events (gate waiting, run end, crash)."""

    def __init__(self, data: EngineEventData) -> None:
        super().__init__()
        self.data = data


class RunCreated(Message):
    def __init__(self, run_id: str, name: str, resumed: bool, ack: threading.Event) -> None:
        super().__init__()
        self.run_id = run_id
        self.name = name
        self.resumed = resumed
        self.ack = ack


class EngineDone(Message):
    """The engine worker returned (normally, or with an exception we show)."""

    def __init__(
        self, run_id: str | None, error: str | None = None, detail: str = "", user_error: bool = False
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.error = error
        self.detail = detail
        self.user_error = user_error  # an error written for users (e.g. "already completed")


class RunRejected(Message):
    """The run never started: validation problems or a host error, in the user's words."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__()
        self.name = name
        self.problems = problems


class CatalogLoaded(Message):
    def __init__(self, result: LoadResult, paths: set[Path]) -> None:
        super().__init__()
        self.result = result
        self.paths = paths


class PastRunLoaded(Message):
    def __init__(self, view: RunView | None, error: str | None, then_resume: bool) -> None:
        super().__init__()
        self.view = view
        self.error = error
        self.then_resume = then_resume


class Attached(Message):
    """The run to follow is known (its top-level id, workflow and definition)."""

    def __init__(self, run_id: str, name: str, definition: WorkflowDef | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.name = name
        self.definition = definition


class AttachEnded(Message):
    """The followed run ended (`completed`/`failed`/`cancelled`) or lost its engine (`interrupted`)."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status


class Notice(Message):
    """A notification from a worker thread (gate decision done, cancel failed, …)."""

    def __init__(self, text: str, severity: str = "information", log_error: bool = False) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.log_error = log_error


# --------------------------------------------------------------------------- the app


class RunkonApp(App[int]):
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
    ) -> None:
        css = stylesheet_path()
        super().__init__(css_path=[css] if css.is_file() else None)
        from runkon_flow.persistence.memory import InMemoryStore

        self.dirs = [Path(d) for d in dirs]
        self.host = host
        self.store: WorkflowPersistence = store if store is not None else InMemoryStore()
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
        self.store_note = store_note
        self.catalog = Catalog(self.dirs)
        self.catalog.reload()
        self.catalog_version = 0
        self.view = RunView(clock)
        self.bridge = EventBridge(on_urgent=self._urgent)
        self.run_active = False  # a run executes in this process
        self.active_run_id: str | None = None
        self.attached_run_id: str | None = None  # a run another process executes, followed live
        self._follower: StoreFollower | None = None
        self.handed_over: tuple[str, int, Path] | None = None  # (run, runner pid, its log) on quit
        self.run_definition: WorkflowDef | None = None
        self.run_workflow_name: str | None = None
        self.last_outcome: str | None = None  # status of the last run that ended while open
        self._host_stale = False
        self._known_gates: set[tuple[str, str]] = set()
        self.gate_drafts: dict[str, str] = {}  # notes typed into a gate dialog, kept until answered
        self._watcher: WorkflowWatcher | None = None
        self._engine_thread_done = threading.Event()
        self._engine_thread_done.set()
        self._quitting = False
        self._workflow_status: dict[str, str] = {}
        self._shown_root: str | None = None
        self._shown_workflow: str | None = None  # workflow of the run on screen (filters belong to it)
        self._start_theme = ""
        self._exiting = False

    # ------------------------------------------------------------------ startup

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

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
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        config_errors = [self.config.error] if self.config.error else []
        for problem in [*self.startup_problems, *theme_errors, *config_errors]:
            self.view.note(problem, "error")
            self.notify(problem, severity="error", timeout=8)
        for entry in self.catalog:
            if entry.error is not None:
                self.view.note(entry.error.render(), "error")
        for warning in self.catalog.warnings:
            self.view.note(warning, "warning")
        self.set_interval(1 / self.tick_hz, self.drain, name="drain")
        self.set_interval(1.0, self._every_second, name="clock")
        if self.watch_files:
            self._start_watcher()
        if self.replay_path is not None:
            self.call_after_refresh(self.replay, self.replay_path)
        elif self.attach_to is not None:
            self.call_after_refresh(self.attach_run, self.attach_to)
        self.call_after_refresh(self._freeze_startup_heap)

    @staticmethod
    def _freeze_startup_heap() -> None:
        """Move everything built at start-up (Textual's widgets and stylesheets, the catalog, the
        engine host) out of the garbage collector's full scans. Those objects live as long as the
        app; without this, every full collection during a big fan-out re-scans them, and that is
        paid by the engine threads too (it measurably slowed a 10,000-item run)."""
        gc.collect()
        gc.freeze()

    def initial_selection(self) -> str | None:
        if self.select:
            entry = self.catalog.find(self.select)
            if entry is not None:
                return entry.path
        return None

    def idle_text(self) -> str:
        n = sum(1 for e in self.catalog if not e.broken)
        broken = sum(1 for e in self.catalog if e.broken)
        where = ", ".join(str(d) for d in self.dirs)
        text = f"{n} workflows in {where}"
        if broken:
            text += f" · {broken} broken"
        return text + " · idle"

    def _theme_changed(self, theme: Any) -> None:
        """Remember a theme the user picked (not the one we started with)."""
        if theme.name == self._start_theme and self.config.theme in (None, theme.name):
            return
        if self.config.theme != theme.name:
            self.config.theme = theme.name
            error = self.config.save()
            if error:
                self.notify(error, severity="warning")

    # ------------------------------------------------------------------ keys (help, palette, banners)

    def key_for(self, binding_id: str) -> str:
        keymap = getattr(self, "_keymap", {}) or {}
        if binding_id in keymap:
            return keymap[binding_id].split(",")[0]
        for binding in MainScreen.BINDINGS:
            if isinstance(binding, Binding) and binding.id == binding_id:
                return binding.key_display or _pretty_key(binding.key.split(",")[0])
        return "?"

    def key_table(self) -> list[tuple[str, str, str, str]]:
        """(key shown, binding id, description, action) for every main-screen binding."""
        rows = []
        for binding in MainScreen.BINDINGS:
            if not isinstance(binding, Binding) or binding.id is None:
                continue
            key = _pretty_key(self.key_for(binding.id))
            rows.append((key, binding.id, binding.description, binding.action))
        return rows

    def show_help(self) -> None:
        keys = [(k, i, d) for k, i, d, _ in self.key_table()]
        self.push_screen(HelpScreen(keys, str(self.config.path)))

    def show_runs(self) -> None:
        self.push_screen(RunsScreen())

    # ------------------------------------------------------------------ the drain tick

    def _urgent(self, data: EngineEventData) -> None:
        """Engine thread: nudge the UI (thread-safe post), never touch widgets here."""
        self.post_message(EngineAttention(data))

    def on_engine_attention(self, _: EngineAttention) -> None:
        self.drain()

    def drain(self) -> None:
        """Fold queued events into the RunView and repaint what changed (one UI tick)."""
        events = self.bridge.drain(DRAIN_LIMIT)
        if events:
            self.view.apply_all(events)
        changes = self.view.take_changes()
        if changes:
            self._apply_changes(changes)

    def _shutting_down(self) -> bool:
        return self._exiting or self._closing or self._closed

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

    def _every_second(self) -> None:
        screen = self.main_screen
        if screen is None or not screen.is_mounted or self._shutting_down():
            return
        if self.view.active or self.view.gates:
            with self.batch_update(), contextlib.suppress(NoMatches):
                screen.refresh_view(Changes(), self.clock(), second=True)

    def _announce_gates(self) -> None:
        current = set(self.view.gates)
        for key in current - self._known_gates:
            gate = self.view.gates[key]
            prompt = f": {gate.prompt}" if gate.prompt else ""
            keys = f"{self.key_for('approve')} approve · {self.key_for('reject')} reject"
            self.notify(f"gate {gate.gate_name} waits for approval{prompt}\n{keys}", title="Gate", timeout=10)
            self.alert(f"gate {gate.gate_name} waits", gate.prompt or "approve or reject it")
        self._known_gates = current

    def _announce_finish(self) -> None:
        view = self.view
        root = view.root
        if root is None or view.read_only:
            return
        status = view.status
        took = format_duration(root.elapsed(self.clock()))
        self._workflow_status[root.workflow_name] = status
        if status == "completed":
            self.notify(f"{root.workflow_name} completed in {took}", title="Run finished", timeout=6)
        else:
            reason = f": {root.error}" if root.error else ""
            text = f"{root.workflow_name} {status}{reason}"
            self.notify(text, title="Run finished", severity="error", timeout=10)
        self.last_outcome = status
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

    def workflow_statuses(self) -> dict[str, str]:
        statuses = dict(self._workflow_status)
        if self.view.root is not None and not self.view.read_only:
            statuses[self.view.workflow_name] = self.view.status
        return statuses

    # ------------------------------------------------------------------ which definition the tree shows

    def _shown_run_definition(self, name: str) -> WorkflowDef | None:
        """The definition the shown run (live or past) started with, when it is a run of `name`."""
        view = self.view
        if view.root is not None and view.workflow_name == name and view.definition is not None:
            return view.definition
        if self.run_active and self.run_workflow_name == name:
            return self.run_definition
        return None

    def definition_for_tree(self, entry: WorkflowEntry) -> WorkflowDef | None:
        """The shown run's own definition when it is a run of this workflow (its statuses belong to
        that tree, even after the file changed or for a file outside the watched folders);
        otherwise the latest good one."""
        run_definition = self._shown_run_definition(entry.name)
        if run_definition is None or _same_definition(run_definition, entry.definition):
            return entry.definition  # the same tree: keep the entry's object (no needless rebuild)
        return run_definition

    def definition_changed_under_run(self, entry: WorkflowEntry) -> bool:
        """The tree shows the run's definition and the file on disk now says something else."""
        run_definition = self._shown_run_definition(entry.name)
        return run_definition is not None and not _same_definition(run_definition, entry.definition)

    def run_entry(self, name: str) -> WorkflowEntry | None:
        """An entry for the shown run's workflow when the watched folders do not hold it (a run
        started elsewhere, opened from history): its tree comes from the run's stored definition."""
        definition = self._shown_run_definition(name)
        if definition is None or self.catalog.by_name(name) is not None:
            return None
        return WorkflowEntry(definition.source_path or f"run:{name}", name, definition)

    # ------------------------------------------------------------------ running

    def request_run(self, entry: WorkflowEntry) -> None:
        host = self.host
        if host is None:
            self.notify("no engine available: see the errors log", severity="error")
            return
        if self.run_active:
            self.notify("a run is already active; cancel it or wait for it to finish", severity="warning")
            return
        if entry.broken or entry.definition is None:
            where = entry.location() or entry.path
            message = entry.error.message if entry.error else "does not parse"
            self.notify(f"{where}: {message}", title="Cannot run a broken workflow", severity="error")
            return
        definition = entry.definition
        name = entry.name

        def prepare(raw: Mapping[str, str]) -> dict[str, str]:
            return host.prepare_inputs(name, raw)

        if definition.inputs:

            def submitted(inputs: dict[str, str] | None) -> None:
                if inputs is not None:
                    self._start(name, definition, inputs)

            self.push_screen(InputsScreen(definition, prepare), submitted)
            return
        try:
            inputs = prepare({})
        except Exception as exc:
            self.notify(str(exc), title=f"Cannot run {name}", severity="error")
            return
        self._start(name, definition, inputs)

    def _start(self, name: str, definition: WorkflowDef, inputs: dict[str, str]) -> None:
        self._stop_following()
        self.run_active = True
        self.run_workflow_name = name
        self.run_definition = definition
        self._engine_thread_done.clear()
        self.clear_notifications()  # toasts about the previous run would cover this one's log
        self.view.note(f"starting {name}…")
        self.drain()
        self.run_worker(
            lambda: self._engine_job(name, inputs, None),
            thread=True,
            group="engine",
            name=f"run {name}",
            exit_on_error=False,
        )
        self._refresh_screen()

    def request_resume(self, run_id: str | None = None) -> None:
        view = self.view
        run_id = run_id or view.root_run_id
        if self.host is None or run_id is None:
            return
        if self.run_active:
            self.notify("a run is already active", severity="warning")
            return
        self._stop_following()
        root = view.runs.get(run_id)
        name = root.workflow_name if root is not None else ""
        entry = self.catalog.by_name(name)
        self.run_active = True
        self.run_workflow_name = name
        # The engine resumes with the definition stored with the run, so the tree keeps it too.
        self.run_definition = view.definition or (entry.definition if entry is not None else None)
        self._engine_thread_done.clear()
        self.view.read_only = False
        self.clear_notifications()  # "Run finished … cancelled" is about the attempt that ended
        self.view.note(f"resuming run {short_id(run_id)}…")
        self.drain()
        self.run_worker(
            lambda: self._engine_job(name, {}, run_id),
            thread=True,
            group="engine",
            name=f"resume {run_id}",
            exit_on_error=False,
        )
        self._refresh_screen()

    def request_retry(self, fan: FanOutView, item_ids: list[str]) -> None:
        """Retry items of a finished run's fan-out (docs/when-things-go-wrong.md), after a yes:
        a new attempt for each, completed items kept, with the definition stored with the run
        (the one the tree shows)."""
        view = self.view
        run_id = view.root_run_id
        if self.host is None or run_id is None:
            return
        if self.run_active or view.active or view.status not in ("failed", "cancelled", "completed"):
            self.notify("only a finished run can be retried", severity="warning")
            return
        if fan.run_id != run_id or not fan.step_id:
            self.notify("this fan-out belongs to a sub-workflow: resume the run instead", severity="warning")
            return
        step_id = fan.step_id
        shown = ", ".join(item_ids[:5]) + (f" … ({len(item_ids) - 5} more)" if len(item_ids) > 5 else "")
        kept = fan.count("completed")
        plural = "s" if len(item_ids) != 1 else ""
        question = (
            f"Retry {len(item_ids)} item{plural} of foreach '{fan.name}' ({shown})?\n"
            f"{kept} completed items are kept; the definition stored with the run is used."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._start_retry(run_id, {step_id: list(item_ids)})

        self.push_screen(ConfirmScreen(question, yes="Retry"), answered)

    def _start_retry(self, run_id: str, items: dict[str, list[str]]) -> None:
        view = self.view
        root = view.runs.get(run_id)
        name = root.workflow_name if root is not None else ""
        self._stop_following()
        self.run_active = True
        self.run_workflow_name = name
        self.run_definition = view.definition
        self._engine_thread_done.clear()
        self.view.read_only = False
        self.view.note(f"retrying {sum(len(v) for v in items.values())} items of run {short_id(run_id)}…")
        self.drain()
        self.run_worker(
            lambda: self._engine_job(name, {}, run_id, retry=items),
            thread=True,
            group="engine",
            name=f"retry {run_id}",
            exit_on_error=False,
        )
        self._refresh_screen()

    def can_resume(self) -> bool:
        view = self.view
        return (
            not self.run_active
            and self.attached_run_id is None
            and view.root is not None
            and view.status in ("failed", "cancelled", "crashed", "needs_resume", "interrupted")
        )

    def _engine_job(
        self,
        name: str,
        inputs: dict[str, str],
        resume_run_id: str | None,
        retry: dict[str, list[str]] | None = None,
    ) -> None:
        """Engine thread: validate, create, execute (or resume); report through messages only."""
        host = self.host
        assert host is not None
        run_id = resume_run_id
        try:
            self._reload_host_now()  # edits saved since the last reload apply to this run
            if resume_run_id is None:
                # create_run validates first (language + host checks) and writes nothing on failure.
                run_id = host.create_run(name, inputs)
            assert run_id is not None
            self.bridge.watch(run_id)
            ack = threading.Event()
            self.post_message(RunCreated(run_id, name, resume_run_id is not None, ack))
            ack.wait(5.0)  # the view must know the run before its first event is folded
            if resume_run_id is None:
                host.execute(run_id, sinks=[self.bridge])
            elif retry is not None:
                host.retry(run_id, retry, definition="stored", sinks=[self.bridge])
            else:
                host.resume(run_id, sinks=[self.bridge])
            self.post_message(EngineDone(run_id))
        except Exception as exc:
            detail = traceback.format_exc()
            message = f"{type(exc).__name__}: {exc}" if not _is_user_error(exc) else str(exc)
            if run_id is None:
                self.post_message(RunRejected(name, _problems_of(exc) or [message]))
            else:
                self.post_message(EngineDone(run_id, message, detail, user_error=_is_user_error(exc)))
        finally:
            self._engine_thread_done.set()

    def on_run_created(self, message: RunCreated) -> None:
        self.active_run_id = message.run_id
        self.view.begin(message.run_id, message.name, resumed=message.resumed)
        if self.view.definition is None:
            self.view.definition = self.run_definition
        message.ack.set()
        self._select_workflow(message.name)
        self.drain()

    def on_run_rejected(self, message: RunRejected) -> None:
        self.run_active = False
        self.run_definition = None
        for problem in message.problems:
            self.view.note(f"{message.name}: {problem}", "error")
        text = "\n".join(message.problems[:6])
        self.notify(text, title=f"{message.name} did not start", severity="error", timeout=12)
        self.drain()
        self._refresh_screen()

    def on_engine_done(self, message: EngineDone) -> None:
        self.drain()  # fold the run's last events first
        if message.error is not None and message.user_error and not self.view.active:
            # Refused before anything ran (a resume of a completed run, …): say why, change nothing.
            self.view.note(message.error, "error")
            self.notify(message.error, title="Nothing to do", severity="error", timeout=10)
        elif message.error is not None:
            self.view.mark_crashed(message.error)
            for line in message.detail.splitlines()[-15:]:
                self.view.error_detail(line)
            self.notify(message.error, title="Engine error", severity="error", timeout=12)
        elif self.view.root is not None and self.view.active and message.run_id == self.view.root_run_id:
            # The engine returned without a final event (should not happen): do not show "running".
            self.view.mark_crashed("the engine returned without reporting how the run ended")
        self.run_active = False
        self.active_run_id = None
        self.run_definition = None
        self.run_workflow_name = None
        question = self.screen  # a question about the run that just ended has no subject any more
        if isinstance(question, ConfirmScreen) and question.about_active_run and not self._quitting:
            question.dismiss(False)
        elif isinstance(question, QuitScreen) and not self._quitting:
            question.dismiss("stay")
        self.bridge.watch(None)
        self.drain()
        self._refresh_host()
        self._refresh_screen(force_tree=True)

    @property
    def run_in_view(self) -> str | None:
        """The live run on screen, whichever process executes it (None for a past run)."""
        return self.active_run_id if self.run_active else self.attached_run_id

    def request_cancel(self) -> None:
        if self.run_in_view is None:
            return
        run_id = self.run_in_view
        name = str(self.run_workflow_name or self.view.workflow_name)
        label = f"run {short_id(run_id)} of {name}" if run_id else name

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
        self.view.mark_cancelling()
        self.drain()
        host = self.host

        def job() -> None:
            try:
                host.cancel(run_id, "cancelled from the dashboard")
            except Exception as exc:
                self.post_message(Notice(f"cancel failed: {exc}", "error", log_error=True))

        self.run_worker(job, thread=True, group="control", exit_on_error=False)
        self._refresh_screen()

    # ------------------------------------------------------------------ gates

    def request_gate(self, intent: str) -> None:
        gates = self.view.waiting_gates()
        if not gates or self.host is None:
            return
        gate = gates[0]

        def decided(decision: GateDecision | None) -> None:
            if decision is not None:
                self._decide_gate(gate, decision)

        self.push_screen(GateScreen(gate, intent, self.gate_drafts), decided)

    def _decide_gate(self, gate: GateView, decision: GateDecision) -> None:
        host = self.host
        assert host is not None
        target = gate.step_id or gate.gate_name
        by = self.user
        drafts = self.gate_drafts
        draft_key = f"{gate.run_id}:{target}"

        def job() -> None:
            try:
                if decision.approved:
                    host.gates.approve(gate.run_id, target, by, decision.note, decision.selections or None)
                else:
                    host.gates.reject(gate.run_id, target, by, decision.note)
            except Exception as exc:
                self.post_message(Notice(f"gate {gate.gate_name}: {exc}", "error", log_error=True))
                return
            drafts.pop(draft_key, None)  # answered: the note is in the store now
            verb = "approved" if decision.approved else "rejected"
            self.post_message(Notice(f"gate {gate.gate_name} {verb}"))

        self.run_worker(job, thread=True, group="control", exit_on_error=False)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity)  # type: ignore[arg-type]
        if message.log_error:
            self.view.note(message.text, "error")
            self.drain()

    # ------------------------------------------------------------------ history

    def open_past_run(self, run_id: str, then_resume: bool = False) -> None:
        if self.run_active:
            self.notify("a run is active; open past runs when it has finished", severity="warning")
            return
        self._stop_following()
        store = self.store
        resolve = self.catalog.definition
        clock = self.clock

        def job() -> None:
            try:
                view = past_run_view(store, run_id, resolve, clock)
            except Exception as exc:
                self.post_message(PastRunLoaded(None, f"cannot open run {run_id}: {exc}", then_resume))
                return
            self.post_message(PastRunLoaded(view, None, then_resume))

        self.run_worker(job, thread=True, group="history", exit_on_error=False)

    def on_past_run_loaded(self, message: PastRunLoaded) -> None:
        if message.view is None:
            self.notify(message.error or "cannot open run", severity="error")
            return
        self.set_view(message.view)
        if message.then_resume:
            self.request_resume(message.view.root_run_id)

    # ------------------------------------------------------------------ runs held elsewhere

    def attach_run(self, run_id: str) -> None:
        """Follow a run another process executes (or any stored run): its stored events feed the
        bridge as the engine's would, so it is drawn, cancelled and approved like a run started
        here (docs/dashboard.md, "Runs held elsewhere")."""
        if self.run_active:
            self.notify(
                "a run is active here; attach to another run when it has finished", severity="warning"
            )
            return
        store = self.store
        resolve = self.catalog.definition

        def job() -> None:
            try:
                root = top_level_run(store, run_id)
                run = store.get_run(root)
                if run is None:
                    raise LookupError(f"no run {run_id} in the run store")
                definition = definition_of(run, resolve)
            except Exception as exc:
                self.post_message(Notice(f"cannot attach to run {run_id}: {exc}", "error", log_error=True))
                return
            self.post_message(Attached(root, run.workflow_name, definition))

        self.run_worker(job, thread=True, group="history", exit_on_error=False)

    def on_attached(self, message: Attached) -> None:
        if self.run_active:
            return
        self._stop_following()
        self.bridge.drain()  # nothing of a previous run may be folded into this one
        view = RunView(self.clock)
        view.definition = message.definition
        self.set_view(view)
        self.attached_run_id = message.run_id
        self.bridge.watch(message.run_id)
        run_id = message.run_id
        follower = StoreFollower(
            self.store, run_id, self.bridge, lambda status: self.post_message(AttachEnded(run_id, status))
        )
        self._follower = follower
        self.run_worker(follower.run, thread=True, group="follow", exit_on_error=False)
        self._select_workflow(message.name)
        self._refresh_screen()

    def on_attach_ended(self, message: AttachEnded) -> None:
        if self._follower is None or self._follower.run_id != message.run_id:
            return
        self.drain()
        if message.status == "interrupted":
            self.view.mark_interrupted(
                "no engine holds this run any more (its process went away); r resumes it here"
            )
        self._follower = None
        self.attached_run_id = None
        self.bridge.watch(None)
        self.drain()
        self._refresh_screen(force_tree=True)

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        self.attached_run_id = None

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
        self.view = view
        self._known_gates = set(view.gates)
        self._shown_root = view.root_run_id
        self._new_run_shown(view.workflow_name)
        screen = self.main_screen
        if screen is not None:
            screen.bind_view()
            if view.workflow_name:
                self._select_workflow(view.workflow_name)
            screen.refresh_view(Changes(header=True, structure=True, gates=True), self.clock())

    def load_child_run(self, run_id: str) -> RunState | None:
        """A child run missing from the live view (evicted, or a past run): read it from the store."""
        try:
            run = self.store.get_run(run_id)
            if run is None:
                return None
            return load_run_state(self.store, run, self.view, self.catalog.definition)
        except Exception as exc:
            self.notify(f"cannot read child run {run_id}: {exc}", severity="error")
            return None

    # ------------------------------------------------------------------ hot reload

    def _start_watcher(self) -> None:
        def changed(paths: set[Path]) -> None:
            result = catalog_mod.load(self.dirs)  # parse off the UI thread
            self.post_message(CatalogLoaded(result, paths))

        self._watcher = WorkflowWatcher(self.dirs, changed)
        self.run_worker(self._watcher.run, thread=True, group="watcher", exit_on_error=False)

    def on_catalog_loaded(self, message: CatalogLoaded) -> None:
        diff = self.catalog.merge(message.result)
        if not diff:
            return
        self.catalog_version += 1
        self._host_stale = True
        self._refresh_host()
        for path in diff.broken:
            entry = self.catalog.entries[path]
            text = f"{entry.location()}: {entry.error.message if entry.error else ''}"
            self.view.note(text, "error")
            self.notify(text, title="Workflow has an error", severity="error", timeout=8)
        for path in diff.fixed:
            self.notify(f"{Path(path).name} parses again", timeout=3)
        self.drain()
        self._refresh_screen(force_tree=True)

    def _refresh_host(self) -> None:
        """Let the engine host re-read the workflow files, on a thread worker (it parses them
        again and rebuilds its engine: not work for the UI thread). Never while a run is active:
        that run keeps its definition; the next run or resume reloads first (`_reload_host_now`)."""
        if self.host is None or not self._host_stale or self.run_active:
            return
        self.run_worker(self._reload_host_now, thread=True, group="host-reload", exit_on_error=False)

    def _reload_host_now(self) -> None:
        """Any thread: reload the host if the files changed since its last load."""
        host = self.host
        if host is None or not self._host_stale:
            return
        self._host_stale = False
        try:
            host.reload()
        except Exception as exc:
            self._host_stale = True
            text = f"engine could not reload the workflows: {exc}"
            self.post_message(Notice(text, "error", log_error=True))

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
        if self._quitting:
            return
        if not self.run_active:  # nothing runs here (a followed run goes on in its own process)
            self._leave()
            return
        run_id = self.active_run_id
        name = str(self.run_workflow_name or self.view.workflow_name)
        label = f"Run {short_id(run_id)} of {name}" if run_id else name
        why_not = self._why_no_hand_over()

        def answered(choice: str | None) -> None:
            if choice == "cancel":
                self._quitting = True
                self._cancel(self.active_run_id)
                self.run_worker(self._wait_then_exit, thread=True, group="quit", exit_on_error=False)
            elif choice == "keep":
                self._quitting = True
                self._hand_over()

        self.push_screen(QuitScreen(label, can_keep=why_not is None, why_not=why_not or ""), answered)

    def _why_no_hand_over(self) -> str | None:
        """Why the active run could not keep running after the dashboard exits (None: it can)."""
        if getattr(self.store, "path", None) is None and getattr(self.store, "dsn", None) is None:
            return "its runs are kept in memory, which no other process can read"
        if not hasattr(self.host, "hand_over"):
            return "this engine host cannot hand runs over"
        return None

    def _hand_over(self) -> None:
        """Quit, keeping the run going in a background runner (`Workspace.hand_over`)."""
        host: Any = self.host
        run_id = self.active_run_id
        # A SQLite file, or a PostgreSQL URL (kept whole: the runner gets it through its environment).
        db = getattr(self.store, "dsn", None) or Path(self.store.path)  # type: ignore[attr-defined]
        if run_id is None:
            self._leave()
            return
        self.view.note("handing the run over to a background runner…", "warning")

        def job() -> None:
            try:
                pid, log = host.hand_over(run_id, db)
            except Exception as exc:
                self._quitting = False
                self.post_message(
                    Notice(f"cannot keep the run going in the background: {exc}", "error", True)
                )
                return
            self.handed_over = (run_id, pid, log)
            self._engine_thread_done.wait(QUIT_WAIT_S)
            self.call_from_thread(self._leave)

        self.run_worker(job, thread=True, group="quit", exit_on_error=False)

    def _wait_then_exit(self) -> None:
        self._engine_thread_done.wait(QUIT_WAIT_S)
        self.call_from_thread(self._leave)

    def _leave(self) -> None:
        self.drain()
        self._exiting = True
        code = self.exit_code()
        self.exit(code, return_code=code)

    def exit_code(self) -> int:
        """0 when no run ended badly here; 1 when the last run failed, crashed or was cancelled."""
        if self.handed_over is not None:
            return 0
        live = self.view.root is not None and not self.view.read_only
        status = self.view.status if live else self.last_outcome
        return 1 if status in ("failed", "crashed", "cancelled", "cancelling") else 0

    def summary(self) -> str:
        """Plain text printed after the dashboard closes (empty when no run happened)."""
        if self.handed_over is not None:
            run_id, pid, log = self.handed_over
            return (
                f"run {run_id} keeps running in the background (pid {pid}; log {log})\n"
                f"  follow it: runkon-tui --attach {run_id}   or   runkon-flow watch {run_id}\n"
                f"  cancel it: runkon-flow cancel {run_id}"
            )
        if self.view.root is None or self.view.read_only:
            return ""
        return self.view.summary_text()

    def on_unmount(self) -> None:
        self._exiting = True
        if self._follower is not None:
            self._follower.stop()
        if self._watcher is not None:
            self._watcher.stop()


def _same_definition(a: WorkflowDef, b: WorkflowDef | None) -> bool:
    """The same workflow, whatever path it was read through (`wf/x.wf` here, `/abs/wf/x.wf` in the
    run's snapshot): the source path is not part of what ran. False when `b` is missing."""
    if b is None:
        return False
    return a is b or a == b or a.model_copy(update={"source_path": b.source_path}) == b


def _pretty_key(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "enter": "enter", "escape": "esc"}.get(key, key)


def _problem_text(problem: Any) -> str:
    render = getattr(problem, "render", None)
    return render() if callable(render) else str(problem)


def _problems_of(exc: BaseException) -> list[str]:
    """Every finding of a validation/inputs error, with `file:line:col` where known."""
    problems = getattr(exc, "errors", None) or getattr(exc, "problems", None)
    if isinstance(problems, list):
        return [_problem_text(p) for p in problems]
    return []


def _is_user_error(exc: BaseException) -> bool:
    """Errors whose text is written for users (bad inputs, validation, unknown workflow)."""
    from runkon_flow.errors import FlowError

    return isinstance(exc, (FlowError, ValueError, LookupError))


def _user_name() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "runkon-tui"
