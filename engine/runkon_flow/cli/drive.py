"""Driving one run in the foreground for `run` and `resume`: the engine works on a thread while the
main thread drains its events into a progress printer (and the `--events` file), turns the first
Ctrl-C into a clean cancel and the second into a forced exit, and picks the exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from runkon_flow.cancellation import EngineCancelled
from runkon_flow.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    CommandFailed,
    StdoutGuard,
    UsageError,
    plain,
    print_err,
)
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.output import EventQueue, PlainPrinter, Printer, supports_live_view
from runkon_flow.cli.report import brief_failures, failure_lines
from runkon_flow.cli.retry_plan import fanout_clusters, latest_fanouts, retry_hint
from runkon_flow.cli.store import DeferredStore
from runkon_flow.dsl.shell_text import refused_input
from runkon_flow.errors import FlowError, StoreUnavailable
from runkon_flow.event_log import each_envelope
from runkon_flow.heap import settle_for_runs
from runkon_flow.hooks import ConfigFileError, HookRunner, TerminalAlerts, notify_setting_problem, open_hooks
from runkon_flow.humanize import readable_error, safe_text
from runkon_flow.observe.clusters import failure_summaries
from runkon_flow.observe.estimates import history_of
from runkon_flow.observe.liveness import utc_seconds
from runkon_flow.persistence import RunStatus, WorkflowRun
from runkon_flow.persistence.location import DbLocation
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runtime.resume import final_rejection
from runkon_flow.runtime.state import SHOWN_AS_EVENT
from runkon_flow.runtime.types import WorkflowResult


def add_progress_args(p: argparse.ArgumentParser, *, events: bool = True) -> None:
    p.add_argument(
        "--progress",
        choices=("auto", "live", "plain", "quiet"),
        default="auto",
        help="live: redrawn status block; plain: one line per event; quiet: only the run's outcome, gates "
        "and failures; auto (default): live on a terminal, plain otherwise",
    )
    if events:
        p.add_argument("--events", metavar="FILE", help="also write every event as one JSON object per line")
    p.add_argument(
        "--hooks",
        metavar="FILE",
        help="hooks file: shell commands and HTTP posts on run and gate events "
        "(default: $RUNKON_HOOKS, else .runkon/hooks.yaml here; docs/notifications.md)",
    )
    p.add_argument(
        "--no-notify",
        dest="notify",
        action="store_false",
        help="no terminal bell or desktop notification when a gate waits or the run ends",
    )


def prepare_hooks(args: argparse.Namespace, store: WorkflowPersistence) -> HookRunner | None:
    """The hooks of this run, checked before anything is created: a wrong hooks file is a usage
    error naming file:line. A failed run's event carries its failure clusters, read from `store`."""
    try:
        return open_hooks(
            getattr(args, "hooks", None),
            on_problem=lambda text: print_err(f"runkon-flow: {text}"),
            failures=partial(failure_summaries, store),
        )
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None


def _same_place(a: TextIO, b: TextIO) -> bool:
    """Whether two streams write to one file, pipe or terminal (`2>&1`, a terminal for both)."""
    try:
        one, other = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, ValueError, OSError):  # no file descriptor (a test's capture): not known
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


class _SaidOnStdout(logging.Filter):
    """While a run's progress prints on stdout: an engine warning the progress shows as an
    `EngineLog` line (every progress mode does, `quiet` too) is not logged to stderr again when
    stderr goes where stdout goes — one terminal, `2>&1` — where it read as the same line twice.
    A stdout elsewhere (piped, `> file`, closed and silenced) leaves the stderr copy, asked again
    at each record. Docs: docs/cli.md (Warnings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, SHOWN_AS_EVENT, False):
            return True
        return not _same_place(sys.stdout, sys.stderr)


@contextmanager
def _warnings_said_once() -> Iterator[None]:
    engine_log = logging.getLogger("runkon_flow.engine")
    once = _SaidOnStdout()
    engine_log.addFilter(once)
    try:
        yield
    finally:
        engine_log.removeFilter(once)


def _tty() -> TextIO | None:
    """Where the terminal's bell and notifications go: the terminal the user watches, if any."""
    for stream in (sys.stderr, sys.stdout):
        with suppress(AttributeError, ValueError, OSError):
            if stream.isatty():
                return stream
    return None


class Interrupted(FlowError):
    """Ctrl-C arrived before the engine had the run (e.g. while waiting for a lease): exit 130."""


#: The cancel message a run gets from the signal that stopped it (what `show` and the events say).
CTRL_C_MESSAGE = "interrupted (Ctrl-C)"
SIGTERM_MESSAGE = "terminated (SIGTERM)"
SIGHUP_MESSAGE = "terminal closed (SIGHUP)"

#: SIGHUP where the system has one (not on Windows).
_SIGHUP: int | None = getattr(signal, "SIGHUP", None)


def interrupt_message(signum: int | None) -> str:
    """Why the run was cancelled, by the first signal the command got: Ctrl-C, SIGTERM, or
    SIGHUP (its terminal closed)."""
    if signum == signal.SIGTERM:
        return SIGTERM_MESSAGE
    return SIGHUP_MESSAGE if _SIGHUP is not None and signum == _SIGHUP else CTRL_C_MESSAGE


def _force_hint(signum: int | None) -> str:
    """What forces the exit while the run cancels, said in `cancelling the run… (…)`."""
    if signum == signal.SIGTERM:
        return "a second SIGTERM or Ctrl-C forces exit"
    if _SIGHUP is not None and signum == _SIGHUP:
        return "SIGTERM forces exit"
    return "Ctrl-C again forces exit"


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP while a run executes: the first asks for a clean cancel, a second
    SIGINT or SIGTERM forces the process out (the run row stays as it is; resume it once its lease
    lapses). A SIGHUP never forces: a hang-up comes twice as often as not (the kernel's to the
    terminal's process group, the shell's to its jobs) and no one is left to want it sooner. An
    ignored SIGHUP (`nohup`, the detached runner) stays ignored."""

    def __init__(self, on_force: Callable[[], None]) -> None:
        self.count = 0
        self.first: int | None = None  # the signal that asked for the cancel
        self._on_force = on_force
        self._saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == _SIGHUP and self.first is not None:
            return  # the cancel is under way; a hang-up only repeats it
        self.count += 1
        if self.first is None:
            self.first = signum
        if self.count >= 2:
            self._on_force()
            os._exit(EXIT_CANCELLED)

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
            if _SIGHUP is not None and signal.getsignal(_SIGHUP) is not signal.SIG_IGN:
                self._saved[_SIGHUP] = signal.signal(_SIGHUP, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


@dataclass
class _Session:
    """Everything one `run`/`resume` prints to: the progress printer and the optional events file."""

    printer: Printer
    queue: EventQueue
    events_file: TextIO | None
    live: bool
    alerts: TerminalAlerts | None = None
    hooks: HookRunner | None = None

    #: A reader that goes away (`run … | head -2`) must not stop the run: its truth is in the store.
    _print: StdoutGuard = field(
        default_factory=lambda: StdoutGuard("stdout closed; the run goes on, printing nothing more")
    )

    def pump(self) -> None:
        batch = self.queue.drain()
        for data in batch:
            if self.events_file is not None:
                self.events_file.write(data.to_json_line() + "\n")
            if self.hooks is not None:
                self.hooks.emit(data)
            self._print(lambda data=data: self.printer.feed(data))
            if self.alerts is not None:
                self.alerts.feed(data)
        if batch and self.events_file is not None:
            self.events_file.flush()
        self._print(self.printer.tick)

    def note(self, text: str) -> None:
        """A note for the user (`cancelling the run…`): in the live view, a line above its block
        (the view is stdout, a terminal: its guard); else on stderr, with the other notes, not
        through stdout's guard — stdout stays event lines only (`--events /dev/stdout`, a
        `| jq`-like reader), and a stderr no one reads must not silence the events on stdout."""
        if self.live:
            self._print(lambda: self.printer.note(text))
        else:
            print_err(text)

    def close(self) -> None:
        self.pump()
        self._print(self.printer.close)
        if self.events_file is not None:
            self.events_file.close()
        if self.hooks is not None:
            self.hooks.close()  # hooks already due finish first (each within its timeout)
            self.hooks = None


def make_printer(
    mode: str, stream: TextIO, run_id: str | None, hints: Hints | None = None, *, answers: bool = True
) -> tuple[Printer, bool]:
    """The live view or the plain printer `mode` asks for. `hints`: how to spell the commands a
    waiting gate is answered with. `answers=False`: plain lines say none (`watch` feeds a run's
    stored history, whose gates were mostly answered long ago; the live view draws the gates
    still waiting)."""
    live = mode == "live" or (mode == "auto" and supports_live_view(stream))
    if live:
        return LiveView(stream, top_run_id=run_id, hints=hints or Hints()), True
    commands = None
    if hints is not None and answers:  # a live run (not a replay): say how to answer its gates

        def commands(run: str, gate: str) -> tuple[str, str]:
            return hints.command("approve", run, gate), hints.command("reject", run, gate)

    printer = PlainPrinter(stream, quiet=mode == "quiet", top_run_id=run_id, answers=commands, say=print_err)
    return printer, False


@contextmanager
def closed_on_error(*opened: HookRunner | TextIO | None) -> Iterator[None]:
    """Close what was `opened` for a run (hooks, the --events file; None ones skipped, in the
    order given) when the block raises: the run never reaches `execute`, which would close them."""
    try:
        yield
    except BaseException:
        for thing in opened:
            if thing is not None:
                thing.close()
        raise


#: The run database's own files: SQLite keeps a WAL and its index beside it (a rollback journal
#: while a file is converted).
_SQLITE_FILES = ("", "-wal", "-shm", "-journal")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def refuse_database_as_events(path: str | None, database: DbLocation) -> None:
    """An --events file that is the run database (or one of SQLite's files beside it) would be
    truncated or appended to: every run's history lost. Refused before anything is opened."""
    db = database.path
    if not path or db is None:
        return
    target = Path(path).expanduser()
    for suffix in _SQLITE_FILES:
        if _same_file(target, db.with_name(db.name + suffix)):
            raise CommandFailed(
                f"--events {path}: that is the run database{f' ({suffix[1:]} file)' if suffix else ''} "
                f"{db}; choose another file for the events"
            )


def open_events_file(path: str | None, *, append: bool, database: DbLocation) -> TextIO | None:
    """The --events file (None without one), after `refuse_database_as_events`."""
    if not path:
        return None
    refuse_database_as_events(path, database)
    try:
        return open(path, "a" if append else "w", encoding="utf-8")  # closed by _Session.close()
    except OSError as exc:
        raise CommandFailed(f"--events {path}: cannot write: {exc.strerror or exc}") from None


def open_events_file_first(
    path: str | None, store: WorkflowPersistence, database: DbLocation
) -> TextIO | None:
    """`run`'s --events file and its database, both checked before either is written: the file is
    opened without truncating it, then the database is opened (created); only when both work is
    the old content dropped. A failure leaves no new file behind and an existing one untouched."""
    existed = bool(path) and Path(path or "").exists()
    events_file = open_events_file(path, append=True, database=database)
    try:
        if isinstance(store, DeferredStore):
            store.open()
    except BaseException:
        if events_file is not None:
            events_file.close()
            if not existed:
                with suppress(OSError):
                    Path(path or "").unlink()
        raise
    if events_file is not None:
        with suppress(OSError):  # a pipe or terminal (--events /dev/stderr) has nothing to drop
            events_file.seek(0)
            events_file.truncate()
    return events_file


def _drive(
    session: _Session,
    run_id: str,
    target: Callable[[], WorkflowResult],
    cancel: Callable[[str, str], None],
    hints: Hints,
) -> WorkflowResult:
    """Run `target` on a worker thread while this thread prints progress and handles Ctrl-C."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    def force() -> None:
        session.hooks = None  # a forced exit waits for no hook
        with suppress(Exception):
            session.close()
        print_err(
            f"runkon-flow: forced exit; run {run_id} is left as it was "
            f"(resume it with: {hints.resume(run_id)})"
        )

    worker = threading.Thread(target=work, name="runkon-flow-run", daemon=True)
    cancelled = False
    with _Interrupts(force) as interrupts:
        worker.start()
        while worker.is_alive():
            session.queue.wait(0.05)
            if interrupts.count and not cancelled:
                cancelled = True
                if isinstance(session.printer, LiveView):
                    session.printer.set_status("cancelling")
                session.note(f"cancelling the run… ({_force_hint(interrupts.first)})")
                try:
                    cancel(run_id, interrupt_message(interrupts.first))
                except FlowError as exc:
                    session.note(f"could not cancel: {exc}")
            session.pump()
        worker.join()
    session.pump()
    if "error" in box:
        error = box["error"]
        if cancelled and isinstance(error, FlowError) and not isinstance(error, EngineCancelled):
            why = readable_error(plain(error))
            raise Interrupted(f"interrupted before run {run_id} started: {why}") from error
        if isinstance(error, StoreUnavailable):  # nothing is lost: say how to go on
            raise StoreUnavailable(
                f"{error.message}; run {run_id} stays as it was stored — when the database works again, "
                f"resume it with: {hints.resume(run_id)}"
            ) from error
        raise error
    return box["result"]


def _finish(
    session: _Session,
    store: WorkflowPersistence,
    run_id: str,
    result: WorkflowResult,
    durable: bool,
    hints: Hints,
) -> int:
    """Close the printers, print what a user needs next, and return the exit status."""
    session.close()
    status = result.status or (RunStatus.COMPLETED if result.all_succeeded else RunStatus.FAILED)
    if status is RunStatus.COMPLETED:
        return EXIT_OK
    run = store.get_run(run_id) if session.live or durable else None
    print_what_next(
        store, run_id, run, status, hints, failed_steps=session.live, next_steps=durable, guard=session._print
    )
    return EXIT_CANCELLED if status is RunStatus.CANCELLED else EXIT_FAILED


WhatNext = tuple[str | None, list[str]]
"""What `print_what_next` prints: the text for stdout (None: nothing) and the lines for stderr."""


def print_what_next(
    store: WorkflowPersistence,
    run_id: str,
    run: WorkflowRun | None,
    status: RunStatus,
    hints: Hints,
    *,
    failed_steps: bool,
    next_steps: bool,
    guard: StdoutGuard | None = None,
    read: Callable[[Callable[[], WhatNext]], WhatNext] | None = None,
) -> None:
    """After a run that did not complete (`run`, `resume`, `retry`, `watch` alike): `_what_next`,
    printed. `guard`: the command's stdout guard (a closed stdout does not change the exit status).
    `read`: how its reads of the store are made (`watch`: through its `StoreOutage`); nothing is
    printed until all of them succeeded."""
    gather = partial(
        _what_next, store, run_id, run, status, hints, failed_steps=failed_steps, next_steps=next_steps
    )
    shown, advice = gather() if read is None else read(gather)
    if shown:
        (guard or StdoutGuard()).print(shown)
    for line in advice:
        print_err(line)


def _what_next(
    store: WorkflowPersistence,
    run_id: str,
    run: WorkflowRun | None,
    status: RunStatus,
    hints: Hints,
    *,
    failed_steps: bool,
    next_steps: bool,
) -> WhatNext:
    """What `print_what_next` prints — (stdout text or None, stderr lines), read and not yet
    printed, so a caller can read it again when the store refused (`watch`): its failure
    clusters and failed steps, as `show` lists them (`failed_steps`: under a live view, which
    showed no log lines), then what to type next (`next_steps`: the run is in a database): resume
    it, and retry its failed fan-out items — by cluster number from the list just printed, or,
    where none was (`--progress plain`, `quiet`), from the first clusters listed above the hint
    (`report.brief_failures`)."""
    shown: str | None = None
    advice: list[str] = []
    clusters_shown = False
    if failed_steps and run is not None:
        lines, clusters_shown = failure_lines(store, run, hints)
        if lines:
            shown = safe_text(lines[1:])  # the live view ends on its own line: no blank first
    if next_steps:
        failed = run is not None and status is RunStatus.FAILED
        rows = store.get_steps(run_id) if failed else []
        rejected = final_rejection(rows)
        refused = next(((row, key) for row in rows if (key := refused_input(row.step_error))), None)
        if rejected is not None:  # `resume` refuses it: a rejection is final for its run
            rerun = hints.command("rerun", run_id, "--from", rejected.step_name, definitions=True)
            advice.append(f"gate '{rejected.step_name}' was rejected; to ask again in a new run: {rerun}")
        elif refused is not None:  # the input is stored with the run: a resume refuses it again
            row, key = refused
            rerun = hints.command(
                "rerun", run_id, "--from", row.step_name, "-i", fill=f"{key}=…", definitions=True
            )
            advice.append(f"input '{key}' was refused; rerun with other inputs: {rerun}")
        else:
            advice.append(f"resume with: {hints.resume(run_id)}")
        if failed and run is not None and not run.parent_workflow_run_id:
            fanouts = latest_fanouts(store, run, rows)
            hint = retry_hint(store, run, hints, fanouts=fanouts)
            if hint and not clusters_shown:  # `--progress plain` or `quiet`: the clusters, briefly
                advice.extend(brief_failures(run, fanout_clusters(store, run, fanouts), hints))
            if hint:
                advice.append(hint)
    return shown, advice


def execute(
    args: argparse.Namespace,
    store: WorkflowPersistence,
    run_id: str,
    run: Callable[[EventQueue], WorkflowResult],
    cancel: Callable[[str, str], None],
    *,
    events_file: TextIO | None,
    durable: bool,
    hooks: HookRunner | None = None,
    hints: Hints | None = None,
    resumed: bool = False,
) -> int:
    """Drive one run in the foreground; `cancel(run_id, message)` is what the first Ctrl-C
    (or SIGTERM) calls, with the message the run is cancelled with. `hooks` (from
    `prepare_hooks`) are given every event of the run off the engine's thread. `hints`: how the
    commands it suggests are spelled (default: from `args`). `resumed`: a resume or retry of a run
    that started before — the live view's last line then says the whole run's time too."""
    hints = hints or Hints.of(args)
    if getattr(args, "owns_process", False):
        settle_for_runs()  # runkon_flow.heap: a process-wide choice, made only when we own it
    printer, live = make_printer(args.progress, sys.stdout, run_id, hints)
    if isinstance(printer, LiveView):
        run_row = store.get_run(run_id)
        if run_row is not None:
            printer.estimates = history_of(store, run_row.workflow_name, exclude=run_id)
            if resumed:  # the frame shows the whole run, not only the attempt it starts
                printer.first_started = utc_seconds(run_row.started_at)
                printer.recall(each_envelope(store, run_id))  # page by page: flat memory
    notify = getattr(args, "notify", True)
    problem = notify_setting_problem() if notify else None
    if problem is not None:
        print_err(f"runkon-flow: warning: {problem}")
    tty = _tty() if notify else None
    alerts = TerminalAlerts(tty, run_id) if tty is not None else None
    session = _Session(printer, EventQueue(), events_file, live, alerts, hooks)
    try:
        with _warnings_said_once():
            result = _drive(session, run_id, lambda: run(session.queue), cancel, hints)
    except Interrupted as exc:
        session.close()
        print_err(f"runkon-flow: {exc}")
        return EXIT_CANCELLED
    except EngineCancelled as exc:
        session.close()
        if exc.reason.kind == "LeaseLost":
            raise CommandFailed(
                f"run {run_id} lost its lease to another engine and was stopped; "
                f"see: {hints.command('show', run_id)}"
            ) from None
        print_err(f"runkon-flow: run {run_id} cancelled: {exc.reason.describe()}")
        return EXIT_CANCELLED
    except BaseException:
        session.close()
        raise
    return _finish(session, store, run_id, result, durable, hints)
