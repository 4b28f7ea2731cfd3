"""The dashboard's run session: the run on screen and everything a user does to it.

Plain Python, no Textual: it starts, resumes, retries and cancels runs through the engine host
(`EngineHost`, a `Workspace`) — on a database in a background runner it then follows
(`runs_in_runner`, `Launched`), else on an engine thread here — answers gates, follows a run held
by another process (`StoreFollower`), opens past runs from the store and hands a run hosted here
over to a background runner. It
keeps the state that goes with that — which run is in view (`view`, a `RunView`), whether an
engine runs here (`run_active`, `active_run_id`), which run is followed (`attached_run_id`), how
the last runs ended — and the bridge the engine's events arrive on.

The app is a shell around it. Work that must not block the UI runs through `Driver.spawn` (a
thread worker in the app, a plain thread in tests); what such work learns comes back as a
*report* (`RunCreated`, `EngineDone`, `Notice`, …) through `Driver.post`, and the UI thread hands
it to `handle()`, which updates the session and returns what to tell the user. A request the
session refuses (a run is already active, a broken workflow, …) raises `Refused` with the words
to show.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import FileError
from runkon_flow.errors import StoreUnavailable
from runkon_flow.event_log import top_level_run
from runkon_flow.events import EngineEventData
from runkon_flow.humanize import format_duration
from runkon_flow.observe.liveness import display_status
from runkon_flow.observe.run_ids import find_run, why_not_found
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runner import hook_problems, log_path, runner_error

from runkon_tui.bridge import EventBridge
from runkon_tui.catalog import Catalog, WorkflowEntry
from runkon_tui.follow import StoreFollower
from runkon_tui.history import definition_of, load_run_state, past_run_view
from runkon_tui.host import EngineHost
from runkon_tui.run_view import Changes, Clock, FanOutView, GateView, RunState, RunView
from runkon_tui.status import TERMINAL, short_id

if TYPE_CHECKING:  # the engine is imported once it is built (`DeferredHost`), not to start
    from runkon_flow.approvals import WaitingGate
    from runkon_flow.workspace import ResumeSource

#: A `Notice`'s severity (Textual's) as the engine log's level.
_LOG_LEVEL = {"error": "error", "warning": "warning"}
DRAIN_LIMIT = 50_000  # events folded per tick at most; the rest waits one tick
QUIT_WAIT_S = 10.0
RESUMABLE = ("failed", "cancelled", "crashed", "needs_resume", "interrupted")
WARNING_TOAST_CHARS = 100
"""The first of a run's check warnings is cut to this in its toast (five rows of its 24 columns on
a big screen; at 80×24 the toast's quarter of the height cuts it sooner)."""

FINISHED = ("failed", "cancelled", "completed")  # a retry or a rerun starts from these
ENDED_BADLY = ("failed", "crashed", "cancelled", "cancelling")


# --------------------------------------------------------------------------- what comes back


@dataclass
class Notice:
    """Something to tell the user (a toast); `log_error` also writes it to the engine log at its
    severity — an error to the errors log too (a warning, such as a store out of reach for a
    while, is not one of the run's errors: the errors count would keep it once it is over)."""

    text: str
    severity: str = "information"
    log_error: bool = False
    title: str = ""
    timeout: float | None = None


class Refused(Exception):
    """A request the session turned down, in the words to show the user."""

    def __init__(self, text: str, severity: str = "warning", title: str = "") -> None:
        super().__init__(text)
        self.notice = Notice(text, severity, title=title)


@dataclass
class RunCreated:
    """Engine thread: the run exists (or is about to resume); `ack` once the view knows it."""

    run_id: str
    name: str
    resumed: bool
    definition: WorkflowDef | None = None  # what a resume runs (the file as it is now), to draw
    ack: threading.Event = field(default_factory=threading.Event)
    warnings: tuple[str, ...] = ()  # the check's warnings, said before the run as `run` says them


@dataclass
class EngineDone:
    """The engine job returned (normally, or with an exception to show)."""

    run_id: str | None
    error: str | None = None
    detail: str = ""
    user_error: bool = False  # an error written for users (e.g. "already completed")
    store_unavailable: bool = False  # the run database could record nothing more: the run stopped


@dataclass
class RunRejected:
    """The run never started: validation problems or a host error, in the user's words."""

    name: str
    problems: list[str]
    run_id: str | None = None  # a resume or retry refused up front: that run stays as it was


@dataclass
class Checked:
    """`check_before_inputs` found nothing that would stop a run of `name`: its form may open."""

    name: str


@dataclass
class WorkflowsChecked:
    """`check_workflows` ran the host's checks: workflow name → what would stop its run."""

    generation: int
    problems: dict[str, list[FileError]]


@dataclass
class ResumeKnown:
    """The host said which definition a resume of a run runs (`resume_source`): `key` is what it
    was asked about; `source` None when it could not say (the resume itself then says why)."""

    key: tuple[object, ...]
    source: ResumeSource | None
    #: With `STORED`: the workflow's file is there but does not parse now (False: no file of the
    #: watched folders declares it now — gone, renamed). As the CLI's note tells them apart.
    broken: bool = False


@dataclass
class PastRunLoaded:
    view: RunView | None
    error: str | None
    then_resume: bool
    #: Shown only if this run is still the one on screen (a redraw after an answer; None: always).
    only_if_shown: str | None = None


@dataclass
class Attached:
    """The run to follow is known (its top-level id, workflow and definition)."""

    run_id: str
    name: str
    definition: WorkflowDef | None


@dataclass
class AttachEnded:
    """The followed run ended (`completed`/`failed`/`cancelled`) or lost its engine (`interrupted`,
    its clock stopped at `stopped_at`: the stop time `runs` and `show` give it)."""

    run_id: str
    status: str
    stopped_at: float | None = None
    why: str | None = None  # an interrupted run's row says its database could record nothing more


@dataclass
class Launched:
    """A background runner took a run started, resumed or retried here (`runs_in_runner`): the
    run is followed like any other, drawn on `definition`."""

    run_id: str
    name: str
    definition: WorkflowDef | None
    runner: subprocess.Popen
    log: Path
    after_seq: int | None = None  # a resume or retry: the stream's end before the runner started
    warnings: tuple[str, ...] = ()  # the check's warnings, said before the run as `run` says them


@dataclass
class RunnerFailed:
    """A background runner started here (process `pid`) stopped on an error of its own (a refused
    resume, a run it could not open …): `text` is its last error line, `log` its log file;
    `started`: whether it had taken the run up (the store has its events or status)."""

    run_id: str
    text: str
    log: Path
    pid: int
    started: bool


@dataclass
class LaunchFailed:
    """No background runner could be started (nothing runs): `text` says why."""

    text: str


@dataclass
class HandOverFailed:
    """Quitting with "keep running" failed: the dashboard stays."""

    text: str


@dataclass
class RetryPlan:
    """Items to retry (foreach step row id → item ids) of a finished run, and the question to ask."""

    question: str
    run_id: str
    items: dict[str, list[str]]


@dataclass
class OursRead:
    """How the runs of ours out of sight stand in the store (`poll_background`): run id →
    (its display status, whether its runner had exited, the launch it was read for).
    `changed`: the workflow list must be drawn again (set by `handle`)."""

    statuses: dict[str, tuple[str, bool, Launched]]
    changed: bool = False


@dataclass
class ReadyToLeave:
    """Quitting: the runs of ours were cancelled (each stopped, or `QUIT_WAIT_S` passed) or left
    running (handed over, or already in their runners), and no engine thread of ours holds one."""


Report = (
    RunCreated
    | EngineDone
    | RunRejected
    | Checked
    | WorkflowsChecked
    | ResumeKnown
    | PastRunLoaded
    | Attached
    | AttachEnded
    | Launched
    | RunnerFailed
    | LaunchFailed
    | Notice
    | HandOverFailed
    | OursRead
    | ReadyToLeave
)


class Driver(Protocol):
    """How the session gets work off the UI thread and hears back on it."""

    def spawn(self, job: Callable[[], None], *, group: str, name: str = "") -> None:
        """Run `job` on a thread (never the UI thread)."""

    def post(self, report: Report) -> None:
        """From any thread: deliver `report` to `RunSession.handle` on the UI thread."""


# --------------------------------------------------------------------------- the session


#: The main screen's own keys for the bindings a note names, for a session no app gave its
#: `key_for` (this module imports no screen: it never imports Textual). A test holds them to
#: `MainScreen.BINDINGS`.
DEFAULT_KEYS = {"runs": "h", "gate_inbox": "i", "log_mode": "l", "resume": "r"}


def default_key(binding_id: str) -> str:
    """The main screen's own key for a binding id a note names (`DEFAULT_KEYS`)."""
    return DEFAULT_KEYS.get(binding_id, "?")


class RunSession:
    """The run on screen and the runs this dashboard executes, follows or opens."""

    def __init__(
        self,
        *,
        host: EngineHost | None,
        store: WorkflowPersistence,
        catalog: Catalog,
        driver: Driver,
        clock: Clock,
        user: str,
        on_urgent: Callable[[EngineEventData], None] | None = None,
        runs_in_runner: bool = False,
        key_for: Callable[[str], str] | None = None,
    ) -> None:
        self.host = host
        #: The key that triggers a main-screen binding now, by its id (the app's `key_for`: the
        #: settings' keymap, else the default): every note and toast that names a key asks it, so
        #: a remapped key is the one it names (docs/dashboard.md, "Settings, themes").
        self.key_for: Callable[[str], str] = key_for or default_key
        #: Runs started, resumed or retried here execute in a background runner process and are
        #: followed through the store (docs/dashboard.md, "Where a run runs"); only with a store
        #: another process can open — an in-memory store keeps them in this process.
        self.runs_in_runner = runs_in_runner
        self.store = store
        self.catalog = catalog
        self.driver = driver
        self.clock = clock
        self.user = user
        self.bridge = EventBridge(on_urgent=on_urgent)
        self.view = RunView(clock)
        self.view.upstream = self.bridge.release
        self.run_active = False  # a run executes in this process
        self.active_run_id: str | None = None
        self.attached_run_id: str | None = None  # a run another process executes, followed live
        self.follower: StoreFollower | None = None
        self.launched: Launched | None = None  # the followed run, when a runner started here runs it
        self.launching = False  # a runner is being started: no second start, resume or retry yet
        #: Quitting with "keep": the runs of ours left going, each as (run, runner pid, log).
        self.left_running: list[tuple[str, int, Path]] = []
        #: Quitting with "cancel": the other runs of ours it cancelled, with how each stood at exit.
        self.cancelled_on_quit: list[tuple[str, str, str]] = []  # (run, workflow, status)
        #: Every run a runner started here runs (the latest runner of each): quitting asks about
        #: those still going, on screen or not, and the workflow list shows how they stand.
        self._ours: dict[str, Launched] = {}
        self._background_status: dict[str, str] = {}  # run of ours not on screen → its last status
        self._ours_ended: set[str] = set()  # runs of ours whose end `poll_background` has seen
        self._polling_ours = False
        self.run_definition: WorkflowDef | None = None
        self.run_workflow_name: str | None = None
        self.last_outcome: str | None = None  # status of the last run that ended while open
        self.quitting = False
        self.gate_drafts: dict[str, str] = {}  # notes typed into a gate dialog, kept until answered
        self.host_stale = False
        self._check_generation = 0  # of `check_workflows`: an older check's findings are dropped
        self._check_due = False  # the files changed during a run: check them once it ends
        self.problems_changed = False  # the last `WorkflowsChecked` changed what the list shows
        self._files_version = 0  # counts the changes of the workflow files (`catalog_changed`)
        #: What the host said a resume of the run on screen runs (`resume_source`): what it was
        #: asked about and its answer; and the last question put to it.
        self._resume_known: ResumeKnown | None = None
        self._resume_asked: tuple[object, ...] | None = None
        self._reloading = threading.Lock()  # one host reload at a time; a second caller waits
        self.engine_idle = threading.Event()  # no engine thread of ours is running
        self.engine_idle.set()
        self._known_gates: set[tuple[str, str]] = set()
        #: Gates whose dialog the user opened (the gate dialog, the inbox's note dialog), by run,
        #: name and step row: told already, and answered there or about to be (`saw_gates`).
        self._gates_seen: set[tuple[str, str, str | None]] = set()
        self._workflow_status: dict[str, str] = {}

    # ------------------------------------------------------------------ the view

    @property
    def run_in_view(self) -> str | None:
        """The live run on screen, whichever process executes it (None for a past run)."""
        return self.active_run_id if self.run_active else self.attached_run_id

    def fold(self, limit: int | None = DRAIN_LIMIT) -> Changes:
        """Fold the events queued on the bridge into the view; what changed since last time."""
        self.fold_only(limit)
        return self.view.take_changes()

    def fold_only(self, limit: int | None = DRAIN_LIMIT) -> int:
        """Fold the queued events into the view, leaving what changed for `take_changes`; how
        many were folded."""
        events = self.bridge.drain(limit)
        if events:
            self.view.apply_all(events)
        return len(events)

    def take_changes(self) -> Changes:
        """What changed in the view since the last take."""
        return self.view.take_changes()

    def must_show_now(self) -> bool:
        """Whether what changed includes something a person must see at once: a gate waiting, a
        run's end, a new run or fan-out, an error."""
        pending = self.view.pending_changes()
        return pending.gates or pending.finished or pending.structure or pending.error_log

    def show(self, view: RunView) -> None:
        """Put another view on screen (a past run, a replay, a followed run)."""
        self.view = view
        view.upstream = self.bridge.release
        self._known_gates = set(view.gates)

    def new_gates(self) -> list[GateView]:
        """Gates that started waiting since the last call (each announced once); never one whose
        dialog was opened — a stale read (an event or a row from before the answer) that brings
        an answered gate back for a moment does not announce it again."""
        current = set(self.view.gates)
        fresh = [self.view.gates[key] for key in current - self._known_gates]
        self._known_gates = current
        return [gate for gate in fresh if not self.gate_seen(gate)]

    def saw_gates(self, gates: Iterable[GateView | WaitingGate]) -> None:
        """The user opened the dialog that answers `gates`: it said all their "Gate" toasts say."""
        self._gates_seen.update((g.run_id, g.gate_name, g.step_id) for g in gates)

    def gate_seen(self, gate: GateView) -> bool:
        return (gate.run_id, gate.gate_name, gate.step_id) in self._gates_seen

    def run_finished(self) -> Notice | None:
        """The run on screen ended: remember how, and say so (None for a read-only view)."""
        view = self.view
        root = view.root
        if root is None or view.read_only:
            return None
        status = view.status
        self._workflow_status[root.workflow_name] = status
        self.last_outcome = status
        follower = self.follower
        if follower is not None and root.ended_at is not None and root.ended_at < follower.started_at:
            return None  # an end from the followed run's history (the attempt before a resume)
        if status == "completed":
            took = format_duration(root.elapsed(self.clock()))
            return Notice(f"{root.workflow_name} completed in {took}", title="Run finished", timeout=6)
        why = root.why_failed(view.runs) if status == "failed" else root.error
        reason = f": {why}" if why else ""
        return Notice(f"{root.workflow_name} {status}{reason}", "error", title="Run finished", timeout=10)

    def workflow_statuses(self) -> dict[str, str]:
        """The last known outcome per workflow, the current status of the run on screen and of
        each run of ours going elsewhere included (`poll_background`)."""
        statuses = dict(self._workflow_status)
        on_screen = self._shown_run()
        for run_id, status in self._background_status.items():
            if run_id != on_screen:
                statuses[self._ours[run_id].name] = status
        if self.view.root is not None and not self.view.read_only:
            statuses[self.view.workflow_name] = self.view.status
        return statuses

    def ours_out_of_sight(self) -> tuple[int, int]:
        """How many runs of ours go on out of sight, and how many of those wait at a gate (as
        `poll_background` last read them): the header says so, or "idle" would pass for nothing
        going."""
        on_screen = self._shown_run()
        going = [
            status
            for run_id, status in self._background_status.items()
            if run_id != on_screen and run_id not in self._ours_ended
        ]
        return len(going), sum(1 for status in going if status == "waiting")

    def poll_background(self) -> None:
        """Read, on a worker, how each run of ours out of sight stands (the UI asks once a
        second): a run left going in its runner when another was started or opened still shows
        in the workflow list — waiting at a gate, running, then how it ended (`OursRead`)."""
        if self._polling_ours:
            return
        on_screen = self._shown_run()
        wanted = [
            (run_id, launched)
            for run_id, launched in self._ours.items()
            if run_id != on_screen and run_id not in self._ours_ended
        ]
        if not wanted:
            return
        self._polling_ours = True
        store = self.store

        def job() -> None:
            seen: dict[str, tuple[str, bool, Launched]] = {}
            try:
                for run_id, launched in wanted:
                    gone = launched.runner.poll() is not None  # first: a runner gone is read at its end
                    run = store.get_run(run_id)
                    if run is not None:
                        seen[run_id] = (display_status(run), gone, launched)
            except Exception:  # the store is away for a moment: the next second asks again
                pass
            finally:
                self.driver.post(OursRead(seen))

        self.driver.spawn(job, group="ours", name="runs of ours")

    def _ours_read(self, report: OursRead) -> Notice | None:
        """Take in how the runs of ours out of sight stand; a toast when one of them ended or
        started waiting at a gate since the last read (the person who started it moved on)."""
        self._polling_ours = False
        on_screen = self._shown_run()
        news: list[str] = []
        bad = gate = False
        for run_id, (status, runner_gone, read_for) in report.statuses.items():
            launched = self._ours.get(run_id)
            if launched is not read_for or run_id in self._ours_ended or run_id == on_screen:
                continue  # resumed or retried since the read (a new runner), or on screen now
            before = self._background_status.get(run_id)
            which = f"{launched.name} (run {short_id(run_id)})"
            if status in TERMINAL or (runner_gone and status == "interrupted"):
                self._ours_ended.add(run_id)
                self._background_status.pop(run_id, None)
                self._workflow_status[launched.name] = status
                report.changed = True
                news.append(f"{which} {status} — {self.key_for('runs')} lists it")
                bad = bad or status != "completed"
                continue
            if runner_gone and status in ("pending", "needs_resume"):
                # Its runner died before running anything (the engine log said why): no outcome.
                self._ours_ended.add(run_id)
                report.changed |= self._background_status.pop(run_id, None) is not None
            elif before != status:
                self._background_status[run_id] = status
                report.changed = True
                if status == "waiting" and before is not None:  # not when it was left waiting
                    inbox = self.key_for("gate_inbox")
                    news.append(f"{which} waits at a gate — {inbox} opens the gate inbox")
                    gate = True
        if not news:
            return None
        severity = "error" if bad else "warning" if gate else "information"
        return Notice("\n".join(news), severity, title="Runs started here", timeout=10)

    def read_child_run(self, run_id: str) -> RunView | None:
        """A child run missing from the view (evicted, or a past run), read from the store into a
        model of its own (its `call workflow` children with it) — on a worker: it reads the store,
        and never touches the view on screen (`adopt_child_run` puts it there, on the UI thread).
        None: no such run."""
        run = self.store.get_run(run_id)
        if run is None:
            return None
        read = RunView(self.view.clock)
        load_run_state(self.store, run, read, self.catalog.definition)
        return read

    def adopt_child_run(self, read: RunView, run_id: str) -> RunState | None:
        """`read_child_run`'s runs and waiting gates into the view on screen (the UI thread); a run
        the view came to hold meanwhile (its events arrived) is kept as the view has it."""
        view = self.view
        for key, state in read.runs.items():
            if view.run(key) is None:
                view.runs[key] = state
        for key, gate in read.gates.items():
            view.gates.setdefault(key, gate)
        return view.run(run_id)

    # ------------------------------------------------------------------ which definition the tree shows

    def shown_run_definition(self, name: str) -> WorkflowDef | None:
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
        run_definition = self.shown_run_definition(entry.name)
        if run_definition is None or same_definition(run_definition, entry.definition):
            return entry.definition  # the same tree: keep the entry's object (no needless rebuild)
        return run_definition

    def definition_changed_under_run(self, entry: WorkflowEntry) -> bool:
        """The tree shows the run's definition and the file on disk now says something else."""
        run_definition = self.shown_run_definition(entry.name)
        return run_definition is not None and not same_definition(run_definition, entry.definition)

    def resume_source(self) -> ResumeSource | None:
        """Which definition `r` resumes the run on screen with, as the engine decides
        (`Workspace.resume_plan`): asked of the host on a worker, for the files as they are now
        (the same wherever the resume runs). None until the answer comes (`ResumeKnown`: then
        the screen draws again), or when there is none."""
        view, host = self.view, self.host
        run_id = view.root_run_id
        if run_id is None or host is None:
            return None
        key: tuple[object, ...] = (run_id, view.status, self._files_version)
        if self._resume_known is not None and self._resume_known.key == key:
            return self._resume_known.source
        if self._resume_asked == key:
            return None
        self._resume_asked = key
        name = view.workflow_name

        def job() -> None:
            from runkon_flow.workspace import ResumeSource  # (the host has imported it: it is built)

            source, broken = None, False
            with contextlib.suppress(Exception):  # the resume itself says what stops it
                if not self.run_active:  # the host is not reloaded under a run
                    self.reload_host_now()
                source = host.resume_plan(run_id).source
                if source is ResumeSource.STORED and name is not None:
                    broken = host.load_error(name) is not None
            self.driver.post(ResumeKnown(key, source, broken))

        self.driver.spawn(job, group="resume-plan", name=f"what a resume of {run_id} runs")
        return None

    def resume_answered(self, report: ResumeKnown) -> bool:
        """Whether `report` answers the question the screen last asked (draw it again then)."""
        return report.key == self._resume_asked

    def resumes_with(self) -> str | None:
        """`resume_source` in words (None until it is known)."""
        source = self.resume_source()
        if source is None:
            return None
        from runkon_flow.workspace import ResumeSource  # imported by now: the engine answered

        return {
            ResumeSource.FILE: "the file as it is now",
            ResumeSource.STORED: "its own definition (the file does not parse now)"
            if self._resume_known is not None and self._resume_known.broken
            else "its own definition (no file in the watched folders declares its workflow now)",
            ResumeSource.RERUN: "its own definition (a rerun keeps the one it was made with)",
            ResumeSource.RETRY: "its own definition (it goes on with a retry of that definition)",
        }[source]

    def run_entry(self, name: str) -> WorkflowEntry | None:
        """An entry for the shown run's workflow when the watched folders do not hold it (a run
        started elsewhere, opened from history): its tree comes from the run's stored definition.
        A run with none (its row holds no snapshot: written through the store API, or by an older
        runkon) gets an entry without a definition, so the tree says so instead of showing
        another workflow's."""
        if self.catalog.by_name(name) is not None:
            return None
        definition = self.shown_run_definition(name)
        if definition is None:
            view = self.view
            shown = view.root is not None and view.workflow_name == name
            return WorkflowEntry(f"run:{name}", name) if shown else None
        return WorkflowEntry(definition.source_path or f"run:{name}", name, definition)

    # ------------------------------------------------------------------ starting, resuming, retrying

    def check_runnable(self, entry: WorkflowEntry) -> WorkflowDef:
        """The definition to run `entry` with, or `Refused` saying why it cannot run now."""
        self.refuse_if_busy()
        unused = self.catalog.not_run(entry)
        if unused:
            raise Refused(unused, title="Not the file a run uses")
        if entry.broken or entry.definition is None:
            where = entry.location() or entry.path
            message = entry.error.message if entry.error else "does not parse"
            raise Refused(f"{where}: {message}", "error", title="Cannot run a broken workflow")
        return entry.definition

    def check_before_inputs(self, name: str) -> None:
        """Check `name` as its run would be checked (agents, sub-workflows, schemas …) before its
        inputs form opens, off the UI thread: a missing agent said only after the form was
        filled in wasted the typing. Posts `Checked`, or `RunRejected` with the problems."""
        host = self.host
        assert host is not None

        def job() -> None:
            try:
                self.reload_host_now()  # edits saved since the last reload count
                problems = [p.render() for p in host.validate(name)]
            except Exception:  # the run's own check, when it starts, says what is wrong
                problems = []
            self.driver.post(RunRejected(name, problems) if problems else Checked(name))

        self.driver.spawn(job, group="check", name=f"check {name}")

    def check_workflows(self) -> None:
        """Check every workflow that parses as its run would be checked, on a worker, so the list
        flags a missing agent or sub-workflow before Enter is pressed. Not while a run is active
        (the host is not reloaded under a run): then once it ends (`refresh_host`)."""
        host = self.host
        if host is None:
            return
        if self.run_active:
            self._check_due = True
            return
        self._check_due = False
        self._check_generation += 1
        generation = self._check_generation
        names = sorted({e.name for e in self.catalog if not e.broken and e.definition is not None})

        def job() -> None:
            found: dict[str, list[FileError]] = {}
            try:
                self.reload_host_now()  # the files as they are now
                for name in names:
                    problems = [FileError.of(p) for p in host.validate(name)]
                    if problems:
                        found[name] = problems
            except Exception:  # no engine: Enter says why; nothing to flag in the list
                return
            self.driver.post(WorkflowsChecked(generation, found))

        self.driver.spawn(job, group="check-workflows", name="check the workflows")

    def prepare_inputs(self, name: str, raw: Mapping[str, str]) -> dict[str, str]:
        """The inputs a run of `name` starts with (defaults filled; raises on a bad value)."""
        assert self.host is not None
        return self.host.prepare_inputs(name, raw)

    def start(self, name: str, definition: WorkflowDef, inputs: Mapping[str, str]) -> None:
        """Create and execute a run of `name`: in a background runner (`launches`), else on an
        engine thread."""
        if self.launches:
            self._launch(f"run {name}", name, definition, inputs=dict(inputs))
            return
        self._begin_engine(name, definition)
        self.view.note(f"starting {name}…")
        self._spawn_engine(f"run {name}", name, dict(inputs), None)

    def can_resume(self) -> bool:
        view = self.view
        return (
            not self.run_active
            and not self.launching
            and self.attached_run_id is None
            and view.root is not None
            and view.status in RESUMABLE
            and view.rejected_gate() is None
        )

    def nothing_to_resume_with(self, name: str, has_definition: bool) -> str | None:
        """Why a run of `name` cannot be resumed, when nothing can define it: a resume runs the
        workflow's file as it is now, else the definition stored with the run
        (`Workspace.resume_plan`) — a run with neither (its workflow in no watched folder, no
        definition on its row: written through the store API, or by an older runkon) would only
        fail with `workflow not found`. None when one of them is there. No store call."""
        if has_definition or self.catalog.by_name(name) is not None:
            return None
        return (
            f"{name} is in no watched folder and no definition is stored with this run: nothing "
            f"to resume it with — put {name}'s .wf file in a watched folder to resume it"
        )

    def why_not_resumable(self) -> str | None:
        """`nothing_to_resume_with` for the run on screen (None when there is none)."""
        view = self.view
        if view.root is None:
            return None
        return self.nothing_to_resume_with(view.workflow_name, view.definition is not None)

    def resume(self, run_id: str | None = None) -> bool:
        """Resume `run_id` (default: the run on screen) in a background runner (`launches`) or on
        an engine thread here; False when there is nothing to resume."""
        view = self.view
        run_id = run_id or view.root_run_id
        if self.host is None or run_id is None:
            return False
        self.refuse_if_busy()
        why = self.why_not_resumable() if run_id == view.root_run_id else None
        if why is not None:
            raise Refused(why, title="Not resumed")
        rejected = view.rejected_gate() if run_id == view.root_run_id else None
        if rejected is not None:
            raise Refused(
                f"gate {rejected.name} was {rejected.decision}: a rejection is final for its run, "
                "so it is not resumed (that would only ask again). To ask again, rerun from the "
                "gate (R on it in the tree): a new run that reuses the steps before it.",
                title="Not resumed",
            )
        root = view.runs.get(run_id)
        name = root.workflow_name if root is not None else ""
        if self.launches:
            self._launch(f"resume {run_id}", name, None, run_id=run_id, resume=True)
            return True
        entry = self.catalog.by_name(name)
        # The tree keeps the run's definition until the engine says which one it resumes with
        # (`RunCreated.definition`: the file as it is now, when it parses).
        self._begin_engine(name, view.definition or (entry.definition if entry is not None else None))
        view.read_only = False
        view.note(f"resuming run {short_id(run_id)}…")
        self._spawn_engine(f"resume {run_id}", name, {}, run_id)
        return True

    def finished_on_screen(self) -> bool:
        """Whether the run on screen has finished (failed, cancelled or completed) and nothing
        runs here: what retry and rerun start from. The footer lights `E` and `R` by it too."""
        view = self.view
        return not self.run_active and not self.launching and not view.active and view.status in FINISHED

    def _refuse_unless_finished(self, done: str) -> None:
        """Retry and rerun start from a finished run on screen: `Refused` otherwise."""
        if not self.finished_on_screen():
            raise Refused(f"only a finished run can be {done}")

    def retry_plan(self, fan: FanOutView, item_ids: Sequence[str]) -> RetryPlan | None:
        """What retrying these items of the run on screen means, to ask before `retry` (None:
        nothing to retry; `Refused` when this fan-out cannot be retried now)."""
        view = self.view
        run_id = view.root_run_id
        if self.host is None or run_id is None:
            return None
        self._refuse_unless_finished("retried")
        refusal = view.retry_refusal(fan)  # the grid does not offer it either: the CLI's rule
        if refusal is not None:
            raise Refused(refusal)
        if not fan.step_id:
            raise Refused("this fan-out's step is not known: resume the run instead")
        shown = ", ".join(item_ids[:5]) + (f" … ({len(item_ids) - 5} more)" if len(item_ids) > 5 else "")
        kept = fan.count("completed")
        plural = "s" if len(item_ids) != 1 else ""
        question = (
            f"Retry {len(item_ids)} item{plural} of foreach '{fan.name}' ({shown})?\n"
            f"{kept} completed items are kept; the definition stored with the run is used."
        )
        return RetryPlan(question, run_id, {fan.step_id: list(item_ids)})

    def retry(self, plan: RetryPlan) -> None:
        """Retry items of a finished run (docs/when-things-go-wrong.md): a new attempt for each,
        completed items kept, with the definition stored with the run (the one the tree shows)."""
        root = self.view.runs.get(plan.run_id)
        name = root.workflow_name if root is not None else ""
        if self.launches:
            label = f"retry {plan.run_id}"
            self._launch(label, name, self.view.definition, run_id=plan.run_id, retry=plan.items)
            return
        self._begin_engine(name, self.view.definition)
        self.view.read_only = False
        count = sum(len(ids) for ids in plan.items.values())
        self.view.note(f"retrying {count} items of run {short_id(plan.run_id)}…")
        self._spawn_engine(f"retry {plan.run_id}", name, {}, plan.run_id, plan.items)

    def rerun_check(self) -> tuple[str, WorkflowDef, dict[str, str]] | None:
        """Can the run on screen be rerun from a step? (its id, the definition its tree shows, its
        inputs); None without an engine; `Refused` while it is not finished."""
        view = self.view
        run_id = view.root_run_id
        if self.host is None or run_id is None or view.definition is None:
            return None
        self._refuse_unless_finished("rerun")
        return run_id, view.definition, dict(view.root.inputs) if view.root is not None else {}

    def rerun(self, run_id: str, node_path: str, label: str, inputs: dict[str, str]) -> None:
        """Create the rerun of `run_id` from the step at `node_path` (Workspace.prepare_rerun, with
        the stored definition the tree shows), then open it and resume it like a past run."""
        host, store, resolve, clock = self.host, self.store, self.catalog.definition, self.clock
        assert host is not None

        def job() -> None:
            try:
                new_id, plan = host.prepare_rerun(run_id, node_path, inputs, definition="stored")
                view = past_run_view(store, new_id, resolve, clock)
            except Exception as exc:
                self.driver.post(Notice(f"rerun from {label}: {exc}", "error", log_error=True))
                return
            reused = len(plan.reused_names)
            self.driver.post(Notice(f"rerun of {short_id(run_id)} from {plan.step}: {reused} steps reused"))
            self.driver.post(PastRunLoaded(view, None, True))

        self.driver.spawn(job, group="control", name=f"rerun {run_id}")

    # ------------------------------------------------------------------ runs in a background runner

    def runner_db(self) -> Path | str | None:
        """Where a background runner finds the runs: the SQLite file, or the server URL (kept
        whole: the runner gets it through its environment); None for an in-memory store."""
        dsn = getattr(self.store, "dsn", None)
        if dsn:
            return str(dsn)
        path = getattr(self.store, "path", None)
        return Path(path) if path is not None else None

    @property
    def launches(self) -> bool:
        """Whether runs started here go to a background runner (`runs_in_runner` and a store
        another process can open)."""
        return (
            self.runs_in_runner
            and self.host is not None
            and self.runner_db() is not None
            and not self._plugins_of_this_program()
        )

    def _plugins_of_this_program(self) -> list[str]:
        """The host's own plug-ins (`Workspace(actions=…)`, `own_plugins`): a runner process does
        not have them, so runs that use them run here and cannot be handed over."""
        own = getattr(self.host, "own_plugins", None)
        return list(own()) if callable(own) else []

    def _launch(
        self,
        label: str,
        name: str,
        definition: WorkflowDef | None,
        *,
        inputs: dict[str, str] | None = None,
        run_id: str | None = None,
        resume: bool = False,
        retry: dict[str, list[str]] | None = None,
    ) -> None:
        """Create the run (when `inputs` are given) and hand it to a background runner that
        executes, resumes or retries it; the run is then followed (`Launched`). If the runner
        stops on an error of its own, `RunnerFailed` says why."""
        host, db = self.host, self.runner_db()
        assert host is not None and db is not None
        going = self.launched_run_going()
        self.stop_following()
        if going is not None:
            self.view.note(
                f"run {short_id(going)} goes on in its background runner ({self.key_for('runs')} lists it)"
            )
        self.view.note(f"{label}: starting a background runner…")
        self.launching = True
        post = self.driver.post

        def job() -> None:
            target = run_id
            try:
                self.reload_host_now()  # edits saved since the last reload apply to this run
                refused = _unloadable(host, target, retry) if target is not None else []
                if refused:  # no runner started, nothing written: the run stays resumable once fixed
                    post(RunRejected(name, refused, target))
                    return
                warnings = _warnings(host, name)
                if target is None:
                    # create_run validates first (language + host checks) and writes nothing on failure.
                    target = host.create_run(name, inputs or {})
                # What the runner resumes with (`resume_plan`: the same here and there).
                shown = host.resume_plan(target).definition if resume else definition
                log = log_path(db, target)
                seen = log.stat().st_size if log.exists() else 0
                # A run taken up again is drawn on as it stands; only what the runner adds is read.
                after = self.store.last_event_seq(target) if inputs is None else None
                proc, log = host.launch(target, db, resume=resume, retry=retry)
            except Exception as exc:
                if target is None:
                    post(RunRejected(name, problems_of(exc) or [str(exc)]))
                else:
                    self._end_unstarted(target, f"cannot start a background runner: {exc}")
                    post(LaunchFailed(f"{label}: cannot start a background runner: {exc}"))
                return
            post(Launched(target, name, shown, proc, log, after, warnings))

            def watch_runner() -> None:
                code = proc.wait()
                failed_hooks = hook_problems(log, seen)  # the runner ran the hooks: said in its log
                if failed_hooks:
                    more = len(failed_hooks) - 1
                    text = failed_hooks[0] + (
                        f" (and {more} more: log {_home_as_tilde(log)})" if more else ""
                    )
                    post(Notice(text, "warning", title="Hook failed", timeout=12))
                error = runner_error(log, seen)
                started = self._started_since(target, after)
                if error is None and code != 0 and not started:
                    error = f"it exited with status {code} before taking the run up"  # killed, or worse
                if error is not None:
                    if not started:
                        self._end_unstarted(target, f"its background runner stopped: {error}")
                    post(RunnerFailed(target, error, log, proc.pid, started))

            # A daemon thread: the dashboard may exit while the run goes on in its runner.
            threading.Thread(target=watch_runner, name=f"runner {target}", daemon=True).start()

        self.driver.spawn(job, group="launch", name=label)

    def _end_unstarted(self, run_id: str, why: str) -> None:
        """Worker thread: the run was to start in a runner that never took it up ("Run not
        started"). A new run left `pending` would wait for ever: it is recorded failed with why
        (`Workspace.end_unstarted`; a resumed or retried run is not pending, and stays as it was)."""
        host = self.host
        if host is None:
            return
        try:
            host.end_unstarted(run_id, f"not started: {why}")
        except Exception as exc:  # the store is gone (the dashboard is closing), or worse: say it
            note = f"run {short_id(run_id)} stays pending: {exc}"
            self.driver.post(Notice(note, "warning", log_error=True))

    def _started_since(self, run_id: str, after_seq: int | None) -> bool:
        """Whether a runner took the run up: a new run left `pending`, a resumed or retried one
        has events after `after_seq`. True when the store cannot say (nothing to tell then)."""
        try:
            if after_seq is not None:
                return self.store.last_event_seq(run_id) > after_seq
            run = self.store.get_run(run_id)
        except Exception:  # the store is gone (the dashboard is closing)
            return True
        return run is None or run.status is not RunStatus.PENDING

    def refuse_if_busy(self) -> None:
        """`Refused` when no run can start or resume now: no engine, a run already active, or one
        being started in a background runner (running and resuming, here and on the runs screen)."""
        if self.host is None:
            raise Refused("no engine available: see the errors log", "error")
        if self.run_active:
            raise Refused("a run is already active; cancel it or wait for it to finish")
        self._refuse_while_launching()

    def _refuse_while_launching(self) -> None:
        if self.launching:
            raise Refused("a run is being started in a background runner: a moment")

    def launched_run_going(self) -> str | None:
        """The run on screen, when a runner started here runs it and its follower has not seen
        it end (also before its first event is drawn)."""
        launched = self.launched
        if launched is None or self.attached_run_id != launched.run_id:
            return None
        return launched.run_id

    def _launched(self, report: Launched) -> None:
        self.launching = False
        self._ours.pop(report.run_id, None)
        self._ours[report.run_id] = report  # last: the latest run of a workflow gives its status
        self._ours_ended.discard(report.run_id)  # resumed or retried: going again
        self._follow(Attached(report.run_id, report.name, report.definition), report.runner, report.after_seq)
        self.launched = report
        self.view.note(
            # The point first: an 80-column log pane cuts the line after it (the pid and log last).
            f"run {short_id(report.run_id)} is in a background runner: quitting leaves it running "
            f"(pid {report.runner.pid}; log {_home_as_tilde(report.log)})"
        )

    def _say_warnings(self, name: str, warnings: Sequence[str]) -> Notice | None:
        """The check's warnings (a program not on PATH here, a quoted placeholder …), which stop
        nothing: in the engine log, at the run's start, and in a toast — as `run` prints them
        before it starts. Unsaid, such a run only showed its step failing later."""
        for warning in warnings:
            self.view.note(warning, "warning")
        if not warnings:
            return None
        # The toast stays short (three whole warnings with their locations and hints ran off the
        # toast's rows at 80×24): where they all are first — a quarter of the height cuts a toast's
        # end, never that —, then the first one's message (its file:line:col is in the log).
        first = (warnings[0].partition(": warning: ")[2] or warnings[0]).splitlines()[0]
        text = _cut_at_word(first, WARNING_TOAST_CHARS)
        log = self.key_for("log_mode")
        if len(warnings) > 1:
            text = f"all {len(warnings)} in the engine log ({log}); the first:\n{text}"
        elif text != first:
            text = f"all of it in the engine log ({log}):\n{text}"
        title = f"{name}: {len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
        return Notice(text, "warning", title=title, timeout=10)

    def _runner_failed(self, report: RunnerFailed) -> Notice:
        """Its runner stopped on an error: when it never took the run up, stop following (nothing
        will happen); otherwise the follower judges the run's end as for any holder that died."""
        text = f"the background runner of run {short_id(report.run_id)} stopped: {report.text}"
        launched = self.launched
        never_started = (
            not report.started
            and launched is not None
            and self.follower is not None
            and launched.runner.pid == report.pid
        )
        if never_started:
            self.view.apply_all(self.bridge.drain())
            self.stop_following()
            self.bridge.watch(None)
        self.view.note(f"{text} (log {_home_as_tilde(report.log)})", "error")
        title = "Run not started" if never_started else "Background runner"
        return Notice(text, "error", title=title, timeout=12)

    def _begin_engine(self, name: str, definition: WorkflowDef | None) -> None:
        self.stop_following()
        self.run_active = True
        self.run_workflow_name = name
        self.run_definition = definition
        self.engine_idle.clear()

    def _spawn_engine(
        self,
        label: str,
        name: str,
        inputs: dict[str, str],
        run_id: str | None,
        retry: dict[str, list[str]] | None = None,
    ) -> None:
        self.driver.spawn(lambda: self._engine_job(name, inputs, run_id, retry), group="engine", name=label)

    def _engine_job(
        self,
        name: str,
        inputs: dict[str, str],
        resume_run_id: str | None,
        retry: dict[str, list[str]] | None,
    ) -> None:
        """Engine thread: validate, create, execute (or resume, or retry); report back only."""
        host = self.host
        assert host is not None
        post = self.driver.post
        run_id = resume_run_id
        try:
            self.reload_host_now()  # edits saved since the last reload apply to this run
            refused = _unloadable(host, resume_run_id, retry) if resume_run_id is not None else []
            if refused:
                post(RunRejected(name, refused, resume_run_id))
                return
            warnings = _warnings(host, name)
            if resume_run_id is None:
                # create_run validates first (language + host checks) and writes nothing on failure.
                run_id = host.create_run(name, inputs)
            assert run_id is not None
            self.bridge.watch(run_id)
            # A resume runs the workflow's file as it is now: the tree must show that, not the
            # definition the run started with (a retry runs the stored one, which is on screen).
            resumes_with = host.resume_plan(run_id).definition if resume_run_id and retry is None else None
            created = RunCreated(run_id, name, resume_run_id is not None, resumes_with, warnings=warnings)
            post(created)
            created.ack.wait(5.0)  # the view must know the run before its first event is folded
            if resume_run_id is None:
                host.execute(run_id, sinks=[self.bridge])
            elif retry is not None:
                host.retry(run_id, retry, definition="stored", sinks=[self.bridge])
            else:
                host.resume(run_id, sinks=[self.bridge])
            post(EngineDone(run_id))
        except Exception as exc:
            user_error = is_user_error(exc)
            message = str(exc) if user_error else f"{type(exc).__name__}: {exc}"
            if run_id is None:
                post(RunRejected(name, problems_of(exc) or [message]))
            else:
                gone = isinstance(exc, StoreUnavailable)  # said without "persistence error: "
                said = exc.message if isinstance(exc, StoreUnavailable) else message
                post(EngineDone(run_id, said, traceback.format_exc(), user_error, store_unavailable=gone))
        finally:
            self.engine_idle.set()

    # ------------------------------------------------------------------ cancel and gates

    def cancel_label(self) -> str | None:
        """`run 01HZ… of name` for the cancel question (None when no live run is on screen)."""
        run_id = self.run_in_view
        if run_id is None:
            return None
        name = str(self.run_workflow_name or self.view.workflow_name)
        return f"run {short_id(run_id)} of {name}"

    def cancel(self, run_id: str | None = None) -> None:
        """Ask the engine holding the run (here or elsewhere, through the store) to cancel it."""
        run_id = run_id or self.run_in_view
        host = self.host
        if host is None or run_id is None:
            return
        if run_id == self.run_in_view:
            self.view.mark_cancelling()

        def job() -> None:
            try:
                host.cancel(run_id, "cancelled from the dashboard")
            except Exception as exc:
                self.driver.post(Notice(f"cancel failed: {exc}", "error", log_error=True))

        self.driver.spawn(job, group="control", name=f"cancel {run_id}")

    def gate_to_decide(self) -> GateView | None:
        """The gate the user answers next: the one waiting longest."""
        gates = self.view.waiting_gates()
        return gates[0] if gates and self.host is not None else None

    def decide_gate(
        self, gate: GateView, approved: bool, note: str | None = None, selections: Sequence[str] = ()
    ) -> None:
        """Approve or reject `gate` as this user, through the store (the engine waiting on it may
        be in this process or another); a draft note is dropped once the answer is stored."""
        host = self.host
        assert host is not None
        target = gate.step_id or gate.gate_name
        by = self.user
        drafts = self.gate_drafts
        draft_key = f"{gate.run_id}:{target}"
        # No engine runs the run on screen (it is interrupted): none will tell the answer, so the
        # run is drawn again from the store, where it is (`settle_decided_gates`).
        view = self.view
        redraw = view.root_run_id if view.root is not None and not view.active else None
        store, resolve, clock = self.store, self.catalog.definition, self.clock

        def job() -> None:
            try:
                if approved:
                    host.gates.approve(gate.run_id, target, by, note, list(selections) or None)
                else:
                    host.gates.reject(gate.run_id, target, by, note)
            except Exception as exc:
                self.driver.post(Notice(f"gate {gate.gate_name}: {exc}", "error", log_error=True))
                return
            drafts.pop(draft_key, None)  # answered: the note is in the store now
            verb = "approved" if approved else "rejected"
            self.driver.post(Notice(f"gate {gate.gate_name} {verb}"))
            if redraw is not None:
                try:
                    drawn = past_run_view(store, redraw, resolve, clock)
                except Exception as exc:
                    self.driver.post(Notice(f"cannot redraw run {redraw}: {exc}", "error", log_error=True))
                    return
                self.driver.post(PastRunLoaded(drawn, None, False, only_if_shown=redraw))

        self.driver.spawn(job, group="control", name=f"gate {gate.gate_name}")

    # ------------------------------------------------------------------ past runs and runs held elsewhere

    def open_past_run(self, run_id: str, then_resume: bool = False) -> None:
        """Read a past run from the store (its stored events, else its rows) on a thread."""
        if self.run_active:
            raise Refused("a run is active; open past runs when it has finished")
        self._refuse_while_launching()
        self.stop_following()
        store, resolve, clock = self.store, self.catalog.definition, self.clock

        def job() -> None:
            try:
                view = past_run_view(store, run_id, resolve, clock)
            except Exception as exc:
                self.driver.post(PastRunLoaded(None, f"cannot open run {run_id}: {exc}", then_resume))
                return
            self.driver.post(PastRunLoaded(view, None, then_resume))

        self.driver.spawn(job, group="history", name=f"open {run_id}")

    def attach(self, run_id: str) -> None:
        """Follow a run another process executes (or any stored run): its stored events feed the
        bridge as the engine's would, so it is drawn, cancelled and approved like a run started
        here (docs/dashboard.md, "Runs held elsewhere")."""
        if self.run_active:
            raise Refused("a run is active here; attach to another run when it has finished")
        self._refuse_while_launching()
        store, resolve = self.store, self.catalog.definition

        def job() -> None:
            try:
                named = find_run(store, run_id)  # the short id the dashboard shows works too
                if named is None:
                    raise LookupError(f"no run {run_id} in the run store{why_not_found(run_id)}")
                root = top_level_run(store, named.id)
                run = named if root == named.id else store.get_run(root)
                if run is None:
                    raise LookupError(f"no run {root} in the run store")
                definition = definition_of(store, run, resolve)
            except Exception as exc:
                self.driver.post(Notice(f"cannot attach to run {run_id}: {exc}", "error", log_error=True))
                return
            self.driver.post(Attached(root, run.workflow_name, definition))

        self.driver.spawn(job, group="history", name=f"attach {run_id}")

    def _follow(
        self, report: Attached, runner: subprocess.Popen | None = None, after_seq: int | None = None
    ) -> None:
        """Follow `report.run_id` through the store from its first event, on a new view — or, for
        a run on screen a runner resumes or retries (`after_seq`: the stream's end before it
        started), on the view as it stands, as a resume in this process goes on (`runner`: the
        runner started here to take the run up, not judged before it has)."""
        self.stop_following()
        self.bridge.drain()  # nothing of a previous run may be folded into this one
        run_id = report.run_id
        if after_seq is not None and self.view.root_run_id == run_id:
            self.view.begin(run_id, report.name, resumed=True)
            if report.definition is not None:
                self.view.definition = report.definition
        else:
            view = RunView(self.clock)
            view.definition = report.definition
            self.show(view)
            after_seq = 0
        self.attached_run_id = run_id
        self.bridge.watch(run_id)
        post = self.driver.post

        def ended(status: str) -> None:
            post(AttachEnded(run_id, status, follower.stopped_at, follower.stopped_why))

        def problem(text: str | None) -> None:
            # The store out of reach (a PostgreSQL restart): said once, and once when it is back.
            if text is None:
                post(Notice(f"reading run {short_id(run_id)} from the store again", log_error=True))
            else:
                post(Notice(text, "warning", log_error=True, title="Run store"))

        follower = StoreFollower(
            self.store, run_id, self.bridge, ended, runner=runner, after_seq=after_seq, on_problem=problem
        )
        self.follower = follower
        self.driver.spawn(follower.run, group="follow", name=f"follow {run_id}")

    def _shown_run(self) -> str | None:
        """The run whose picture is on screen, going or ended (a run of ours there is drawn from
        its events, not polled: `poll_background`)."""
        return self.run_in_view or self.view.root_run_id

    def store_outage(self, text: str, back: bool) -> None:
        """A store call of this process waits out a run database outage, or the database is back
        (`pg_connect.tell_outages`: on the thread whose call waits, so only posted from here) —
        told as a followed run's outage is: a toast and the engine log, not the errors log."""
        severity = "information" if back else "warning"
        self.driver.post(Notice(text, severity, log_error=True, title="Run store"))

    def stop_following(self) -> None:
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        launched = self.launched
        if launched is not None and self.view.root_run_id == launched.run_id and self.view.active:
            # Going out of sight: how it stood is where its out-of-sight reads start from (so
            # that it starting to wait at a gate a moment later is told).
            self._background_status[launched.run_id] = self.view.status
        self.attached_run_id = None
        self.launched = None

    # ------------------------------------------------------------------ reports, on the UI thread

    def handle(self, report: Report) -> Notice | None:
        """Take in what a worker learnt (on the UI thread); what to tell the user, if anything."""
        if isinstance(report, RunCreated):
            self.active_run_id = report.run_id
            self.view.begin(report.run_id, report.name, resumed=report.resumed)
            if report.definition is not None:
                self.run_definition = self.view.definition = report.definition
            elif self.view.definition is None:
                self.view.definition = self.run_definition
            report.ack.set()
            return self._say_warnings(report.name, report.warnings)
        if isinstance(report, RunRejected):
            self.launching = False
            self.run_active = False
            self.run_definition = None
            if report.run_id is not None and report.run_id == self.view.root_run_id:
                self.view.read_only = True  # still the past run it was: nothing ran here
            for problem in report.problems:
                self.view.note(f"{report.name}: {problem}", "error")
            text = "\n".join(report.problems[:6])
            return Notice(text, "error", title=f"{report.name} did not start", timeout=12)
        if isinstance(report, EngineDone):
            return self._engine_done(report)
        if isinstance(report, Checked):
            return None
        if isinstance(report, ResumeKnown):
            if self.resume_answered(report):  # an earlier question's answer, come last, is dropped
                self._resume_known = report
            return None
        if isinstance(report, WorkflowsChecked):
            # An outdated check's findings are dropped: they change nothing on screen.
            current = report.generation == self._check_generation
            self.problems_changed = current and self.catalog.set_problems(report.problems)
            return None
        if isinstance(report, PastRunLoaded):
            if report.only_if_shown is not None and report.only_if_shown != self.view.root_run_id:
                return None
            if report.view is None:
                return Notice(report.error or "cannot open run", "error")
            self.show(report.view)
            return None
        if isinstance(report, Attached):
            if not self.run_active:
                self._follow(report)
                # One of ours, opened again from the runs screen (on screen or out of sight before).
                self.launched = self._ours.get(report.run_id)
            return None
        if isinstance(report, AttachEnded):
            return self._attach_ended(report)
        if isinstance(report, Launched):
            if not self.run_active:
                self._launched(report)
                return self._say_warnings(report.name, report.warnings)
            return None
        if isinstance(report, RunnerFailed):
            return self._runner_failed(report)
        if isinstance(report, LaunchFailed):
            self.launching = False
            self.view.note(report.text, "error")
            return Notice(report.text, "error", title="Run not started", timeout=12)
        if isinstance(report, Notice):
            if report.log_error:
                self.view.note(report.text, _LOG_LEVEL.get(report.severity, "info"))
            return report
        if isinstance(report, OursRead):
            return self._ours_read(report)
        if isinstance(report, HandOverFailed):
            self.quitting = False
            self.view.note(report.text, "error")
            return Notice(report.text, "error")
        return None

    def _engine_done(self, report: EngineDone) -> Notice | None:
        self.view.apply_all(self.bridge.drain())  # fold the run's last events first
        notice = None
        if report.error is not None and report.user_error and not self.view.active:
            # Refused before anything ran (a resume of a completed run, …): say why, change nothing.
            self.view.note(report.error, "error")
            notice = Notice(report.error, "error", title="Nothing to do", timeout=10)
        elif report.error is not None and report.store_unavailable:
            # Not a crash: the engine stopped the run, which stays as it was stored (its lease
            # lapses) — resumable once the database works again (docs/persistence.md).
            self.view.mark_interrupted(
                f"the run database can record nothing more ({report.error}); the run stays as it was "
                f"stored — when the database works again, {self.key_for('resume')} resumes it",
                said="run stopped",
            )
        elif report.error is not None:
            self.view.mark_crashed(report.error)
            for line in report.detail.splitlines()[-15:]:
                self.view.error_detail(line)
            notice = Notice(report.error, "error", title="Engine error", timeout=12)
        elif self.view.root is not None and self.view.active and report.run_id == self.view.root_run_id:
            # The engine returned without a final event (should not happen): do not show "running".
            self.view.mark_crashed("the engine returned without reporting how the run ended")
        self.run_active = False
        self.active_run_id = None
        self.run_definition = None
        self.run_workflow_name = None
        self.bridge.watch(None)
        return notice

    def _attach_ended(self, report: AttachEnded) -> Notice | None:
        if self.follower is None or self.follower.run_id != report.run_id:
            return None
        self.view.apply_all(self.bridge.drain())
        if report.status == "interrupted" and report.why is not None:
            # Its engine stopped it because the run database could record nothing more: said as
            # for a run this dashboard runs itself (`_engine_done`), not as a vanished process.
            said = report.why.removeprefix("stopped: ").replace(
                "resume it when the database works again",
                f"when the database works again, {self.key_for('resume')} resumes it",
            )
            self.view.mark_interrupted(said, at=report.stopped_at, said="run stopped")
        elif report.status == "interrupted":
            self.view.mark_interrupted(
                f"no engine holds this run any more (its process went away); {self.key_for('resume')} "
                "resumes it here",
                at=report.stopped_at,
            )
        self.follower = None
        self.attached_run_id = None
        self.launched = None
        self.bridge.watch(None)
        if report.run_id in self._ours:
            self._ours_ended.add(report.run_id)  # its end was drawn here: nothing to poll or tell
        return None

    # ------------------------------------------------------------------ the engine host's workflows

    def catalog_changed(self) -> None:
        """The workflow files changed: the host re-reads them before the next run — the check of
        the workflows does it first (during a run: once it ends, `refresh_host`)."""
        self.host_stale = True
        self._files_version += 1
        self.check_workflows()

    def refresh_host(self) -> None:
        """Let the host re-read the workflow files on a thread (it parses them again and rebuilds
        its engine). Never while a run is active: that run keeps its definition; the next run or
        resume reloads first (`reload_host_now`). A check put off by the run reloads first too."""
        if self.run_active:
            return
        if self._check_due:
            self.check_workflows()
            return
        if self.host is None or not self.host_stale:
            return
        self.driver.spawn(self.reload_host_now, group="host-reload", name="reload workflows")

    def reload_host_now(self) -> None:
        """Any thread: reload the host if the files changed since its last load. A reload already
        under way (the watcher's) is waited for, so a run started right after an edit runs it."""
        host = self.host
        with self._reloading:
            if host is None or not self.host_stale:
                return
            self.host_stale = False
            try:
                host.reload()
            except Exception as exc:
                self.host_stale = True
                text = f"engine could not reload the workflows: {exc}"
                self.driver.post(Notice(text, "error", log_error=True))

    # ------------------------------------------------------------------ leaving

    def why_no_hand_over(self) -> str | None:
        """Why the run quitting asks about could not keep running after the dashboard exits (None:
        it can — a run in its runner always can)."""
        if self.runner_db() is None:
            return "its runs are kept in memory, which no other process can read"
        if not hasattr(self.host, "hand_over"):
            return "this engine host cannot hand runs over"
        if self._plugins_of_this_program():
            return "it runs on plug-ins of this program, which a background runner does not have"
        return None

    def runs_going(self) -> list[str]:
        """Every run of ours still going, the one on screen first (empty: quit at once; a run
        merely followed goes on without us). Runs are hosted here or given to runners, never
        both in one session (`launches`): the run this process executes, or each run a runner
        started here runs, on screen or not, while its runner is alive and its row has not ended."""
        if self.run_active:
            return [self.active_run_id] if self.active_run_id is not None else []
        going = [r for r, ours in self._ours.items() if ours.runner.poll() is None and not self._ended(r)]
        going.sort(key=lambda run_id: run_id != self.run_in_view)  # stable: the rest as started
        return going

    def _ended(self, run_id: str) -> bool:
        try:
            run = self.store.get_run(run_id)
        except Exception:  # cannot tell: ask about it rather than leave it unmentioned
            return False
        return run is not None and RunStatus(run.status).is_terminal

    def _workflow_of(self, run_id: str) -> str:
        """The workflow a run of ours runs (the one hosted here: the run on screen's)."""
        ours = self._ours.get(run_id)
        return ours.name if ours is not None else str(self.run_workflow_name or self.view.workflow_name)

    def quit_label(self, going: Sequence[str]) -> str:
        """What the quit question about `going` (`runs_going()`) says: `Run 01HZ… of name`, or
        `3 runs started here (name …1A2B, …)`."""
        if len(going) == 1:
            return f"Run {short_id(going[0])} of {self._workflow_of(going[0])}"
        labels = [f"{self._workflow_of(run_id)} {short_id(run_id)}" for run_id in going[:3]]
        more = f" and {len(going) - 3} more" if len(going) > 3 else ""
        return f"{len(going)} runs started here ({', '.join(labels)}{more})"

    def cancel_and_leave(self) -> None:
        """Quitting: cancel every run of ours still going, then report `ReadyToLeave` once each
        stopped — the engine here idle, each runner exited — or after `QUIT_WAIT_S`, so what is
        printed on the way out says how they ended, not `cancelling`."""
        self.quitting = True
        going = self.runs_going()
        on_screen = self.run_in_view  # now: the follower's end clears it while the job waits
        runners = [self._ours[run_id] for run_id in going if run_id in self._ours]
        for run_id in going:
            self.cancel(run_id)
        if len(going) > 1:
            self.view.note(f"cancelling {len(going)} runs started here; waiting for them to stop…", "warning")
        follower = self.follower if self.launched_run_going() else None

        def job() -> None:
            deadline = time.monotonic() + QUIT_WAIT_S
            self.engine_idle.wait(QUIT_WAIT_S)
            for launched in runners:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    launched.runner.wait(max(0.0, deadline - time.monotonic()))
            # The run on screen: its follower reads the cancel's last events before we go.
            while follower is not None and not follower.stopped and time.monotonic() < deadline:
                time.sleep(0.05)
            for launched in runners:
                if launched.run_id != on_screen:
                    self.cancelled_on_quit.append((launched.run_id, launched.name, self._status_of(launched)))
            self.driver.post(ReadyToLeave())

        self.driver.spawn(job, group="quit", name="quit")

    def _status_of(self, launched: Launched) -> str:
        """How a run of ours stands as the dashboard leaves (its runner may still be stopping)."""
        try:
            run = self.store.get_run(launched.run_id)
        except Exception:
            run = None
        if run is None:
            return "unknown"
        if launched.runner.poll() is None and not RunStatus(run.status).is_terminal:
            return f"{run.status}, still stopping (runner pid {launched.runner.pid})"
        return str(run.status)

    def hand_over_and_leave(self) -> bool:
        """Quitting: keep every run of ours going — the one this process executes is handed to a
        background runner (`Workspace.hand_over`), a run a runner started here already is in
        one — then report `ReadyToLeave`. False when no run is going (leave at once)."""
        going = self.runs_going()
        if not going:
            return False
        self.quitting = True
        here = self.active_run_id if self.run_active else None
        in_runners = [self._ours[run_id] for run_id in going if run_id in self._ours]
        self.left_running = [(ours.run_id, ours.runner.pid, ours.log) for ours in in_runners]
        if here is None:
            self.driver.post(ReadyToLeave())
            return True
        host: Any = self.host
        db = self.runner_db()
        assert db is not None
        self.view.note("handing the run over to a background runner…", "warning")

        def job() -> None:
            try:
                pid, log = host.hand_over(here, db)
            except Exception as exc:
                self.left_running = []
                self.driver.post(HandOverFailed(f"cannot keep the run going in the background: {exc}"))
                return
            self.left_running.insert(0, (here, pid, log))
            self._leave_when_idle()

        self.driver.spawn(job, group="quit", name="hand over")
        return True

    def _leave_when_idle(self) -> None:
        self.engine_idle.wait(QUIT_WAIT_S)
        self.driver.post(ReadyToLeave())

    def _on_screen_left_running(self) -> bool:
        return any(run_id == self.view.root_run_id for run_id, _, _ in self.left_running)

    def exit_code(self) -> int:
        """0 when no run ended badly here (the run on screen left running has not); 1 when the
        last run failed, crashed or was cancelled, or quitting cancelled a run out of sight."""
        if any(status in ENDED_BADLY for _, _, status in self.cancelled_on_quit):
            return 1
        if self._on_screen_left_running():
            return 0
        view = self.view
        live = view.root is not None and not view.read_only
        status = view.status if live else self.last_outcome
        return 1 if status in ENDED_BADLY else 0

    def summary(self) -> str:
        """Plain text printed after the dashboard closes (empty when no run happened)."""
        parts: list[str] = []
        if self.view.root is not None and not self.view.read_only and not self._on_screen_left_running():
            parts.append(self.view.summary_text())  # how the run on screen ended
        parts.extend(
            f"run {run_id} keeps running in the background (pid {pid}; log {log})\n"
            f"  follow it: runkon-tui --attach {run_id}   or   runkon-flow watch {run_id}\n"
            f"  cancel it: runkon-flow cancel {run_id}"
            for run_id, pid, log in self.left_running
        )
        if self.cancelled_on_quit:
            parts.append("also cancelled on the way out:")
            parts.extend(f"  run {run} of {name}: {status}" for run, name, status in self.cancelled_on_quit)
        return "\n".join(part for part in parts if part)

    def close(self) -> None:
        """The dashboard is going away: stop following."""
        if self.follower is not None:
            self.follower.stop()


# --------------------------------------------------------------------------- helpers


def same_definition(a: WorkflowDef, b: WorkflowDef | None) -> bool:
    """The same workflow, whatever path it was read through (`wf/x.wf` here, `/abs/wf/x.wf` in the
    run's snapshot): the source path is not part of what ran. False when `b` is missing."""
    if b is None:
        return False
    return a is b or a == b or a.model_copy(update={"source_path": b.source_path}) == b


def _cut_at_word(text: str, room: int) -> str:
    """`text` in at most `room` characters, cut after a whole word with `…` (a word cut in two
    reads as a typo)."""
    if len(text) <= room:
        return text
    head = text[: room - 1]
    space = head.rfind(" ")
    return (head[:space] if space > room // 2 else head).rstrip(" ,;:") + "…"


def _warnings(host: EngineHost, name: str) -> tuple[str, ...]:
    """What the check warns of for a run of `name` (stops nothing); none when the check itself
    cannot run — the run's own check then says what is wrong."""
    try:
        return tuple(f"{p.location.render()}: warning: {p.text()}" for p in host.check(name)[1])
    except Exception:
        return ()


def _unloadable(host: EngineHost, run_id: str, retry: Mapping[str, Sequence[str]] | None) -> list[str]:
    """What stops a resume (or a retry of the items `retry`) of `run_id` up front: the called or
    fan-out workflows it would start that do not load from today's files, at file:line:col.
    Refused here like a new run's problems, not by a runner or engine after it was started."""
    if retry is None:
        found = host.unloadable_workflows(run_id)
    else:
        found = host.unloadable_workflows(run_id, retried=list(retry), definition="stored")
    return [p.render() for p in found]


def _problem_text(problem: Any) -> str:
    render = getattr(problem, "render", None)
    return render() if callable(render) else str(problem)


def problems_of(exc: BaseException) -> list[str]:
    """Every finding of a validation/inputs error, with `file:line:col` where known."""
    problems = getattr(exc, "errors", None) or getattr(exc, "problems", None)
    if isinstance(problems, list):
        return [_problem_text(p) for p in problems]
    return []


def is_user_error(exc: BaseException) -> bool:
    """Errors whose text is written for users (bad inputs, validation, unknown workflow)."""
    from runkon_flow.errors import FlowError

    return isinstance(exc, (FlowError, ValueError, LookupError))


def _home_as_tilde(path: Path) -> str:
    """`path` with the home folder as `~`: the runner's log sits deep under it (XDG state)."""
    with contextlib.suppress(ValueError):
        return f"~/{path.relative_to(Path.home())}"
    return str(path)
