"""`runkon-flow run|resume|cancel|runs|show|approve|reject|replay`: durable runs from the shell.

Registered into `runkon_flow.cli.SUBCOMMANDS` when this module is imported (cli.py imports it on
its last line), so `runkon-flow` keeps one parser, one `main()` and one error policy: exit 2 when
the command line is wrong (argparse errors, `--input` syntax, unknown or missing inputs, an
unknown workflow, a missing `--dir`), exit 1 when the work failed (a broken or invalid workflow,
an unusable database, an unknown run, a run owned by a live engine, a failed run), 130 when a run
was cancelled. A user's mistake is one message on stderr, never a traceback.

Nothing is written half-way: the workflow is found, validated and its inputs prepared before the
run row is created, and an `--events` file is opened only once all of that succeeded.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

from runkon_flow.approvals import GateApprovals
from runkon_flow.cancellation import CancellationReason
from runkon_flow.cli import SUBCOMMANDS, UsageError, as_named, read_source, render_diagnostic
from runkon_flow.cli_output import (
    EventQueue,
    LiveView,
    PlainPrinter,
    Printer,
    RunOutcome,
    supports_live_view,
)
from runkon_flow.cli_report import display_status, lease_is_live, parse_time, run_json, runs_table, show_lines
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import FileError
from runkon_flow.errors import (
    AlreadyOwned,
    EngineCancelled,
    FlowError,
    Problem,
    SourceLocation,
    WfError,
    WorkflowNotFound,
)
from runkon_flow.events import EngineEventData, parse_event_line
from runkon_flow.humanize import format_duration, readable_error
from runkon_flow.persistence import InMemoryStore, RunStatus, SqliteStore, WorkflowRun, default_db_path
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runtime.types import WorkflowExecConfig, WorkflowResult
from runkon_flow.workspace import Workspace, cancel_unowned_run

__all__ = ["LEASE_TTL_ENV", "RUN_SUBCOMMANDS", "exec_config_for", "parse_inputs"]

LEASE_TTL_ENV = "RUNKON_LEASE_TTL"
"""Seconds a run's lease lasts without a refresh (default 30): how long a crashed run stays locked."""

DEFAULT_LEASE_TTL = 30
CTRL_C_MESSAGE = "interrupted (Ctrl-C)"
EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130


class CommandFailed(FlowError):
    """The command was understood but could not be carried out (exit 1); `str()` is the message."""


# --------------------------------------------------------------------------- shared options


def _add_db_args(p: argparse.ArgumentParser, *, memory: bool = False) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--db",
        metavar="PATH",
        help="run database (default: $RUNKON_DB, else $XDG_STATE_HOME/runkon/runs.db)",
    )
    if memory:
        group.add_argument(
            "--memory",
            action="store_true",
            help="keep the run in memory only (no history, cannot be resumed)",
        )


def _add_dir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        dest="dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="workflow directory (repeatable; default: ./sample_workflows if present, else the "
        "current directory)",
    )


def _add_progress_args(p: argparse.ArgumentParser, *, events: bool = True) -> None:
    p.add_argument(
        "--progress",
        choices=("auto", "live", "plain", "quiet"),
        default="auto",
        help="live: redrawn status block; plain: one line per event; quiet: only the run's outcome, gates "
        "and failures; auto (default): live on a terminal, plain otherwise",
    )
    if events:
        p.add_argument("--events", metavar="FILE", help="also write every event as one JSON object per line")


def _add_lease_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lease-ttl",
        type=_positive_int,
        metavar="SECONDS",
        help=f"how long the run's lease lasts without a refresh (default: ${LEASE_TTL_ENV}, else "
        f"{DEFAULT_LEASE_TTL}); a crashed run can be resumed once it lapses",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def exec_config_for(lease_ttl: int | None, env: dict[str, str] | None = None) -> WorkflowExecConfig:
    """The engine settings for this process: the lease TTL from the flag, else `$RUNKON_LEASE_TTL`,
    else 30 s; the lease is refreshed three times per TTL so a live run never loses it."""
    env = dict(os.environ) if env is None else env
    ttl = lease_ttl
    if ttl is None:
        raw = env.get(LEASE_TTL_ENV, "").strip()
        if raw:
            try:
                ttl = _positive_int(raw)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{LEASE_TTL_ENV}: {exc}") from None
    ttl = ttl or DEFAULT_LEASE_TTL
    return WorkflowExecConfig(lease_ttl_secs=ttl, lease_refresh_interval=min(10.0, ttl / 3))


def parse_inputs(raw: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs (the value may contain `=` and be empty). A malformed pair or a key given
    twice is a usage error: silently keeping one of two values would hide a typo."""
    out: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--input {item!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"--input {key} is given twice")
        out[key] = value
    return out


class _DeferredStore:
    """The run database of `run`, opened — and so created — only when first used: a run rejected
    before it starts (unknown workflow, bad inputs, a broken or invalid file) writes nothing, not
    even an empty database. `open()` opens it on purpose (to report an unusable database before
    anything else is written); every other attribute is the opened `SqliteStore`'s."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: SqliteStore | None = None

    def open(self) -> SqliteStore:
        if self._store is None:
            self._store = SqliteStore(self._path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.open(), name)
        if callable(value):  # bound methods do not change: later calls skip this lookup
            self.__dict__[name] = value
        return value


def _open_store(args: argparse.Namespace, *, must_exist: bool) -> WorkflowPersistence:
    """The store the command works on. Commands that only read or continue runs refuse to create a
    database that does not exist (a typo in --db must not look like an empty history); `run` gets
    one that is created only once the run is really started."""
    if getattr(args, "memory", False):
        return InMemoryStore()
    path = Path(args.db).expanduser() if args.db else default_db_path()
    if must_exist and not path.exists():
        raise CommandFailed(
            f"no run database at {path} (nothing has run with it yet; check --db / $RUNKON_DB)"
        )
    return SqliteStore(path) if must_exist else cast(WorkflowPersistence, _DeferredStore(path))


def _close(store: WorkflowPersistence) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        with suppress(Exception):
            close()


@contextmanager
def _store(args: argparse.Namespace, *, must_exist: bool) -> Iterator[WorkflowPersistence]:
    store = _open_store(args, must_exist=must_exist)
    try:
        yield store
    finally:
        _close(store)


def _db_label(args: argparse.Namespace) -> str:
    if getattr(args, "memory", False):
        return ":memory:"
    return str(Path(args.db).expanduser() if args.db else default_db_path())


def _get_run(store: WorkflowPersistence, run_id: str, args: argparse.Namespace) -> WorkflowRun:
    run = store.get_run(run_id)
    if run is None:
        raise CommandFailed(f"no workflow run '{run_id}' in {_db_label(args)}")
    return run


def _workflow_dirs(raw_dirs: Sequence[str], workflow_path: Path | None = None) -> list[Path]:
    """--dir values (each must be a directory); default ./sample_workflows if present else the cwd.
    A WORKFLOW given as a path puts its own folder first."""
    dirs: list[Path] = []
    for raw in raw_dirs:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UsageError(f"--dir {raw}: no such directory")
        dirs.append(path)
    if not dirs:
        samples = Path("sample_workflows")
        dirs.append(samples if samples.is_dir() else Path("."))
    if workflow_path is not None:
        dirs.insert(0, workflow_path.parent)
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def _looks_like_path(text: str) -> bool:
    return text.endswith(".wf") or os.sep in text or "/" in text


def _user(explicit: str | None) -> str:
    if explicit:
        return explicit
    name = os.environ.get("USER") or os.environ.get("USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- the workspace


def _workspace(
    dirs: Sequence[Path], store: WorkflowPersistence, exec_config: WorkflowExecConfig
) -> Workspace:
    return Workspace(dirs, store, exec_config=exec_config)


def _print_problems(problems: Sequence[Problem], dirs: Sequence[Path] = ()) -> None:
    """Each problem as `validate` prints it: file:line:col, message, source line and caret."""
    for problem in problems:
        location = problem.location
        source = None
        if location.file:
            if location.line:
                with suppress(WfError):
                    source = read_source(Path(location.file))
            location = SourceLocation(as_named(location.file, dirs), location.line, location.column)
        _err(render_diagnostic(location, problem.text(), source))


def _find_workflow(ws: Workspace, name_or_path: str, dirs: Sequence[Path]) -> WorkflowDef:
    """The workflow definition, or: a usage error when nothing by that name exists (exit 2), the
    file:line:col diagnostic when its file exists but does not load (exit 1)."""
    try:
        return ws.find(name_or_path)
    except WorkflowNotFound as exc:
        raise UsageError(str(exc)) from None
    except FlowError as exc:
        broken = _load_error_for(ws, name_or_path)
        if broken is None:
            raise CommandFailed(_plain(exc)) from None
        try:
            read_source(Path(broken.file))
        except WfError as unreadable:  # not UTF-8, unreadable: said the way `validate` says it
            broken = FileError(broken.file, unreadable.message)
        _print_problems(
            [Problem(broken.message, None, SourceLocation(broken.file, broken.line, broken.column))], dirs
        )
        raise CommandFailed(f"workflow '{name_or_path}' cannot be loaded; nothing was run") from None


def _load_error_for(ws: Workspace, name_or_path: str) -> FileError | None:
    """The load error of the file that would have defined `name_or_path`, if any."""
    if _looks_like_path(name_or_path):
        wanted = Path(name_or_path).resolve()
        matches = [e for e in ws.load_errors if Path(e.file).resolve() == wanted]
    else:
        matches = [e for e in ws.load_errors if Path(e.file).stem == name_or_path]
    return matches[0] if matches else None


_MISSING_INPUT = re.compile(r"Missing required input: '([^']+)'\.?$")


def _input_hint(problem: str) -> str:
    """engine.md §7.1's wording for a missing input: say how to pass it."""
    match = _MISSING_INPUT.match(problem)
    return f"Missing required input: '{match[1]}'. Use --input {match[1]}=<value>." if match else problem


def _plain(exc: BaseException) -> str:
    """An error's message without the engine's `workflow error: ` style prefix."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


# --------------------------------------------------------------------------- driving a run


class _Interrupted(FlowError):
    """Ctrl-C arrived before the engine had the run (e.g. while waiting for a lease): exit 130."""


class _Interrupts:
    """SIGINT/SIGTERM while a run executes: the first asks for a clean cancel, the second forces
    the process out (the run row stays as it is; resume it once its lease lapses)."""

    def __init__(self, on_force: Callable[[], None]) -> None:
        self.count = 0
        self._on_force = on_force
        self._saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count >= 2:
            self._on_force()
            os._exit(EXIT_CANCELLED)

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
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

    def pump(self) -> None:
        batch = self.queue.drain()
        for data in batch:
            if self.events_file is not None:
                self.events_file.write(data.to_json_line() + "\n")
            self.printer.feed(data)
        if batch and self.events_file is not None:
            self.events_file.flush()
        self.printer.tick()

    def close(self) -> None:
        self.pump()
        self.printer.close()
        if self.events_file is not None:
            self.events_file.close()


def _make_printer(mode: str, stream: TextIO, run_id: str | None) -> tuple[Printer, bool]:
    live = mode == "live" or (mode == "auto" and supports_live_view(stream))
    if live:
        return LiveView(stream, top_run_id=run_id), True
    return PlainPrinter(stream, quiet=mode == "quiet", top_run_id=run_id), False


def _open_events_file(path: str | None, *, append: bool) -> TextIO | None:
    if not path:
        return None
    try:
        return open(path, "a" if append else "w", encoding="utf-8")  # closed by _Session.close()
    except OSError as exc:
        raise CommandFailed(f"--events {path}: cannot write: {exc.strerror or exc}") from None


def _open_events_file_first(path: str | None, store: WorkflowPersistence) -> TextIO | None:
    """`run`'s --events file and its database, both checked before either is written: the file is
    opened without truncating it, then the database is opened (created); only when both work is
    the old content dropped. A failure leaves no new file behind and an existing one untouched."""
    existed = bool(path) and Path(path or "").exists()
    events_file = _open_events_file(path, append=True)
    try:
        if isinstance(store, _DeferredStore):
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
    session: _Session, run_id: str, target: Callable[[], WorkflowResult], cancel: Callable[[str], None]
) -> WorkflowResult:
    """Run `target` on a worker thread while this thread prints progress and handles Ctrl-C."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    def force() -> None:
        with suppress(Exception):
            session.close()
        _err(
            f"runkon-flow: forced exit; run {run_id} is left as it was "
            f"(resume it with: runkon-flow resume {run_id})"
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
                session.printer.note("cancelling the run… (press Ctrl-C again to force exit)")
                try:
                    cancel(run_id)
                except FlowError as exc:
                    session.printer.note(f"could not cancel: {exc}")
            session.pump()
        worker.join()
    session.pump()
    if "error" in box:
        error = box["error"]
        if cancelled and isinstance(error, FlowError) and not isinstance(error, EngineCancelled):
            why = readable_error(_plain(error))
            raise _Interrupted(f"interrupted before run {run_id} started: {why}") from error
        raise error
    return box["result"]


def _finish(
    session: _Session, store: WorkflowPersistence, run_id: str, result: WorkflowResult, durable: bool
) -> int:
    """Close the printers, print what a user needs next, and return the exit status."""
    session.close()
    status = result.status or (RunStatus.COMPLETED if result.all_succeeded else RunStatus.FAILED)
    if session.live:
        run = store.get_run(run_id)
        if run is not None and status is not RunStatus.COMPLETED:
            tail = show_lines(store, run)
            failed_at = next((i for i, line in enumerate(tail) if line == "failed steps"), None)
            if failed_at is not None:
                print("\n".join(tail[failed_at:]))
    if status is RunStatus.COMPLETED:
        return EXIT_OK
    if durable:
        _err(f"resume with: runkon-flow resume {run_id}")
    return EXIT_CANCELLED if status is RunStatus.CANCELLED else EXIT_FAILED


def _execute(
    args: argparse.Namespace,
    store: WorkflowPersistence,
    run_id: str,
    run: Callable[[EventQueue], WorkflowResult],
    cancel: Callable[[str], None],
    *,
    events_file: TextIO | None,
    durable: bool,
) -> int:
    """Drive one run in the foreground; `cancel` is what the first Ctrl-C calls."""
    printer, live = _make_printer(args.progress, sys.stdout, run_id)
    session = _Session(printer, EventQueue(), events_file, live)
    try:
        result = _drive(session, run_id, lambda: run(session.queue), cancel)
    except _Interrupted as exc:
        session.close()
        _err(f"runkon-flow: {exc}")
        return EXIT_CANCELLED
    except EngineCancelled as exc:
        session.close()
        if exc.reason.kind == "LeaseLost":
            raise CommandFailed(
                f"run {run_id} lost its lease to another engine and was stopped; "
                f"see: runkon-flow show {run_id}"
            ) from None
        _err(f"runkon-flow: run {run_id} cancelled: {exc.reason.describe()}")
        return EXIT_CANCELLED
    except BaseException:
        session.close()
        raise
    return _finish(session, store, run_id, result, durable)


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    raw_inputs = parse_inputs(args.input)
    workflow_path: Path | None = None
    if _looks_like_path(args.workflow) or Path(args.workflow).is_file():
        workflow_path = Path(args.workflow).expanduser()
        if not workflow_path.is_file():
            raise UsageError(f"no such workflow file: {args.workflow}")
    dirs = _workflow_dirs(args.dirs, workflow_path)
    config = exec_config_for(args.lease_ttl)
    with _store(args, must_exist=False) as store:
        ws = _workspace(dirs, store, config)
        definition = _find_workflow(ws, str(workflow_path) if workflow_path else args.workflow, dirs)
        name = definition.name
        problems = ws.validate(name)
        if problems:
            _print_problems(problems, dirs)
            raise CommandFailed(f"workflow '{name}' is not valid; nothing was run")
        try:
            inputs = ws.prepare_inputs(name, raw_inputs)
        except FlowError as exc:
            problems = getattr(exc, "problems", None) or [_plain(exc)]
            raise UsageError("\n".join(_input_hint(p) for p in problems)) from None
        events_file = _open_events_file_first(args.events, store)
        try:
            run_id = ws.create_run(name, inputs)
        except BaseException:
            if events_file is not None:
                events_file.close()
            raise
        print(f"run_id={run_id} workflow={name} db={_db_label(args)}", flush=True)
        return _execute(
            args,
            store,
            run_id,
            lambda queue: ws.execute(run_id, sinks=[queue]),
            lambda rid: ws.cancel(rid, CTRL_C_MESSAGE),
            events_file=events_file,
            durable=not args.memory,
        )


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a workflow and show its progress",
        description=(
            "Run WORKFLOW (a name found in the workflow directories, or a path to a .wf file whose folder "
            "then becomes a workflow directory). The run id is printed first; progress follows. "
            "Exit 0 when the run succeeds, 1 when it fails, 130 when it is cancelled. Ctrl-C cancels the "
            "run cleanly (it stays resumable); a second Ctrl-C exits at once."
        ),
    )
    p.add_argument("workflow", metavar="WORKFLOW", help="workflow name or path to a .wf file")
    p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a workflow input (repeatable)",
    )
    _add_dir_args(p)
    _add_db_args(p, memory=True)
    _add_progress_args(p)
    _add_lease_args(p)
    p.set_defaults(handler=cmd_run)


# --------------------------------------------------------------------------- resume


def _check_resumable(run: WorkflowRun) -> None:
    parent = run.parent_workflow_run_id or run.parent_run_id
    if parent:
        raise CommandFailed(f"run {run.id} is a child of run {parent}; resume that run instead")
    if RunStatus(run.status) is RunStatus.COMPLETED:
        raise CommandFailed(f"run {run.id} already completed; there is nothing to resume")


def _owned_message(run: WorkflowRun) -> str:
    """The engine's `owned by another engine` text plus what the user can do about it."""
    text = str(AlreadyOwned(run.id))
    until = parse_time(run.lease_until)
    if until is not None:
        left = max(0.0, (until - datetime.now(UTC)).total_seconds())
        text += (
            f" (its lease runs {format_duration(left)} more; if that process is gone, resume again "
            "then, or pass --wait)"
        )
    return text


def cmd_resume(args: argparse.Namespace) -> int:
    config = exec_config_for(args.lease_ttl)
    with _store(args, must_exist=True) as store:
        run = _get_run(store, args.run_id, args)
        _check_resumable(run)
        if lease_is_live(run) and not args.wait:
            raise CommandFailed(_owned_message(run))
        ws = _workspace(_workflow_dirs(args.dirs), store, config)
        if run.workflow_name not in ws.workflows:
            _err(
                f"note: workflow '{run.workflow_name}' is not in {', '.join(str(d) for d in ws.dirs)}; "
                "resuming with the definition stored with the run (use --dir to point at its folder)"
            )
        events_file = _open_events_file(args.events, append=True)
        give_up = threading.Event()

        def resume(queue: EventQueue) -> WorkflowResult:
            # Said from the worker, so a Ctrl-C right after it is already the "stop waiting" kind.
            if args.wait and lease_is_live(run):
                _err(f"run {run.id} is held by another engine; waiting for its lease to lapse…")
            while True:
                try:
                    # (Workspace.resume records a run abandoned while `cancelling` as cancelled.)
                    return ws.resume(run.id, sinks=[queue])
                except AlreadyOwned:
                    if not args.wait:
                        raise
                    if give_up.wait(0.2):
                        raise _Interrupted(f"stopped waiting for run {run.id}") from None

        def cancel(run_id: str) -> None:
            # Cancel only what runs here: while waiting, the run belongs to another engine.
            if run_id in ws.active_runs():
                ws.cancel(run_id, CTRL_C_MESSAGE)
            else:
                give_up.set()

        print(f"run_id={run.id} workflow={run.workflow_name} db={_db_label(args)}", flush=True)
        try:
            return _execute(args, store, run.id, resume, cancel, events_file=events_file, durable=True)
        except AlreadyOwned:
            raise CommandFailed(_owned_message(store.get_run(run.id) or run)) from None


def add_resume_parser(sub: Any) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a failed, cancelled or interrupted run",
        description=(
            "Continue RUN_ID where it stopped: completed steps (and completed fan-out items) are not run "
            "again. Fails with 'owned by another engine' while another process holds the run, unless "
            "--wait is given."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    _add_dir_args(p)
    _add_db_args(p)
    _add_progress_args(p)
    _add_lease_args(p)
    p.add_argument(
        "--wait", action="store_true", help="if another engine holds the run, wait until its lease lapses"
    )
    p.set_defaults(handler=cmd_resume)


# --------------------------------------------------------------------------- cancel


def cmd_cancel(args: argparse.Namespace) -> int:
    with _store(args, must_exist=True) as store:
        run = _get_run(store, args.run_id, args)
        status = RunStatus(run.status)
        if status is RunStatus.CANCELLED:
            print(f"run {run.id} is already cancelled")
            return EXIT_OK
        if status.is_terminal:
            raise CommandFailed(f"run {run.id} already finished ({status.value}); there is nothing to cancel")
        error = str(EngineCancelled(CancellationReason.user(args.message)))
        settled = cancel_unowned_run(store, run.id, error)  # no live engine: marked here
        if settled is RunStatus.CANCELLED:
            print(
                f"run {run.id} was not running (no engine holds it); marked cancelled — "
                "it can still be resumed"
            )
            return EXIT_OK
        if settled is not None:  # its engine finished it between our look and the lease
            raise CommandFailed(
                f"run {run.id} already finished ({settled.value}); there is nothing to cancel"
            )
        store.update_run_status(run.id, RunStatus.CANCELLING, None, None)
        if args.no_wait:
            print(f"run {run.id}: cancel requested; its engine stops it within a second or two")
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            current = store.get_run(run.id)
            if current is None:
                break
            now_status = RunStatus(current.status)
            if now_status is RunStatus.CANCELLED:
                print(f"run {run.id} cancelled")
                return EXIT_OK
            if now_status.is_terminal:
                raise CommandFailed(
                    f"run {run.id} finished as {now_status.value} before the cancel reached it"
                )
            if not lease_is_live(current):
                raise CommandFailed(
                    f"run {run.id}: its engine went away before confirming the cancel "
                    f"(status {display_status(current)})"
                )
        raise CommandFailed(
            f"run {run.id} is still cancelling after {args.timeout:g}s; its engine stops it at its next check"
        )


def add_cancel_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cancel",
        help="cancel a run (from any process)",
        description=(
            "Ask the engine that runs RUN_ID to stop it (it notices within a second or two) and wait until "
            "it is cancelled. A run no engine holds any more (its process died) is marked cancelled at "
            "once. Cancelled runs can be resumed."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    _add_db_args(p)
    p.add_argument("--message", metavar="TEXT", help="why (recorded with the cancellation)")
    p.add_argument("--no-wait", action="store_true", help="return once the cancel is requested")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="how long to wait for it (default 30)"
    )
    p.set_defaults(handler=cmd_cancel)


# --------------------------------------------------------------------------- runs / show


def cmd_runs(args: argparse.Namespace) -> int:
    db = Path(args.db).expanduser() if args.db else default_db_path()
    if not db.exists():
        if args.json:
            print("[]")
        else:
            _err(f"no runs yet ({db} does not exist)")
        return EXIT_OK
    with _store(args, must_exist=True) as store:
        runs = store.list_runs(limit=args.limit, parent_run_id=None if args.all else "")
        rows = [(run, store.get_steps(run.id)) for run in runs]
    if args.json:
        print(json.dumps([run_json(run, steps) for run, steps in rows], indent=2, ensure_ascii=False))
    elif not rows:
        _err("no runs yet")
    else:
        print("\n".join(runs_table(rows)))
    return EXIT_OK


def add_runs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "runs",
        help="list past and current runs, newest first",
        description="Run history: id, workflow, status, start, duration and step counts (ok/failed/skipped).",
    )
    _add_db_args(p)
    p.add_argument(
        "--limit", "-n", type=_positive_int, default=20, metavar="N", help="how many runs (default 20)"
    )
    p.add_argument("--all", action="store_true", help="include child runs (call workflow / foreach)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_runs)


def cmd_show(args: argparse.Namespace) -> int:
    with _store(args, must_exist=True) as store:
        run = _get_run(store, args.run_id, args)
        if args.json:
            print(
                json.dumps(
                    run_json(run, store.get_steps(run.id), with_steps=True), indent=2, ensure_ascii=False
                )
            )
        else:
            print("\n".join(show_lines(store, run)))
    return EXIT_OK


def add_show_parser(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="show one run: its steps, fan-out items, errors and waiting gates",
        description="Show RUN_ID: status, inputs, every step row, failed steps' errors and waiting gates.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    _add_db_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_show)


# --------------------------------------------------------------------------- approve / reject


def cmd_gate(args: argparse.Namespace) -> int:
    with _store(args, must_exist=True) as store:
        _get_run(store, args.run_id, args)
        gates = GateApprovals(store)
        by = _user(args.by)
        if args.command == "approve":
            gate = gates.approve(args.run_id, args.gate, by, args.note, args.select or None)
            verb = "approved"
        else:
            gate = gates.reject(args.run_id, args.gate, by, args.note)
            verb = "rejected"
    print(f"gate {gate.gate_name} of run {args.run_id} {verb} by {by}")
    return EXIT_OK


def _add_gate_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text.capitalize()}. GATE is the gate's name or its step id "
        "(`runkon-flow show RUN_ID` lists waiting gates).",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("gate", metavar="GATE")
    p.add_argument("--note", metavar="TEXT", help="feedback recorded with the decision")
    p.add_argument("--by", metavar="NAME", help="who decides (default: $USER)")
    _add_db_args(p)
    p.set_defaults(handler=cmd_gate)
    return p


def add_approve_parser(sub: Any) -> None:
    p = _add_gate_parser(sub, "approve", "approve a waiting gate")
    p.add_argument(
        "--select", action="append", metavar="VALUE", help="choose one of the gate's options (repeatable)"
    )


def add_reject_parser(sub: Any) -> None:
    _add_gate_parser(sub, "reject", "reject a waiting gate (the run then fails)")


# --------------------------------------------------------------------------- replay


def _replay_records(path: Path, handle: Any) -> Iterator[EngineEventData]:
    """The event records of an `--events` file, line by line; a line that is not UTF-8 JSON of an
    event stops the replay with its line number (unknown event types and blank lines are skipped)."""
    for number, raw in enumerate(handle, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandFailed(f"{path}:{number}: not a runkon event record (not UTF-8)") from None
        try:
            data = parse_event_line(line)
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "not an event"
            raise CommandFailed(f"{path}:{number}: not a runkon event record ({first})") from None
        if data is not None:
            yield data


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; decoded per line to name a bad line
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    printer, _live = _make_printer(args.progress, sys.stdout, None)
    outcome = RunOutcome()
    previous: float | None = None
    seen = 0
    try:
        with handle:
            for data in _replay_records(path, handle):
                if args.speed is not None and previous is not None:
                    time.sleep(min(1.0, max(0.0, data.ts - previous) / args.speed))
                previous = data.ts
                seen += 1
                outcome.observe(data)
                printer.feed(data)
                printer.tick()
    finally:
        printer.close()
    if not seen:
        raise CommandFailed(f"{path}: no events")
    return outcome.exit_code


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_replay_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="print a recorded --events file like a live run",
        description=(
            "Print the events of FILE (written by `run --events`) exactly as a live run prints them. "
            "Exit status: that of the recorded run (0 completed, 1 failed or unfinished, 130 cancelled); "
            "1 also when FILE holds no events or a line that is not an event record."
        ),
    )
    p.add_argument("file", metavar="FILE")
    _add_progress_args(p, events=False)
    p.add_argument(
        "--speed",
        type=_positive_float,
        default=None,
        metavar="X",
        help="replay the recorded timing X times faster (X > 0; pauses capped at 1 s); default: no pauses",
    )
    p.set_defaults(handler=cmd_replay)


# --------------------------------------------------------------------------- registration

RUN_SUBCOMMANDS: dict[str, Callable[[Any], None]] = {
    "run": add_run_parser,
    "resume": add_resume_parser,
    "cancel": add_cancel_parser,
    "runs": add_runs_parser,
    "show": add_show_parser,
    "approve": add_approve_parser,
    "reject": add_reject_parser,
    "replay": add_replay_parser,
}

SUBCOMMANDS.update(RUN_SUBCOMMANDS)
