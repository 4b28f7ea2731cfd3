"""`runkon-flow run|resume|retry|cancel`: durable runs from the shell.

One error policy for all three: exit 2 when the command line is wrong (argparse errors, `--input`
syntax, unknown or missing inputs, an unknown workflow, a missing `--dir`), exit 1 when the work
failed (a broken or invalid workflow, an unusable database, an unknown run, a run owned by a live
engine, a failed run), 130 when a run was cancelled. A user's mistake is one message on stderr,
never a traceback.

Nothing is written half-way: the workflow is found, validated and its inputs prepared before the
run row is created, and an `--events` file is opened only once all of that succeeded.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runkon_flow.approvals import WaitingGate
from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.cli import detach
from runkon_flow.cli.common import (
    EXIT_CANCELLED,
    EXIT_OK,
    CommandFailed,
    StdoutGuard,
    UsageError,
    as_named,
    plain,
    positive_int,
    print_err,
    read_source,
    render_diagnostic,
)
from runkon_flow.cli.drive import (
    Interrupted,
    add_progress_args,
    closed_on_error,
    execute,
    open_events_file,
    open_events_file_first,
    prepare_hooks,
    refuse_database_as_events,
)
from runkon_flow.cli.executor import add_executor_args, child_runner_for, detached_executor
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.output import EventQueue
from runkon_flow.cli.report import display_status, gate_where, lease_is_live, parse_time, waiting_gates
from runkon_flow.cli.retry_plan import (
    children_diffs,
    choose_items,
    cluster_items,
    definition_diff,
    latest_fanouts,
)
from runkon_flow.cli.store import add_db_args, get_run, location_of, opened_store, print_run_header
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import FileError
from runkon_flow.errors import (
    AlreadyOwned,
    FlowError,
    Problem,
    SourceLocation,
    ValidationErrors,
    WfError,
    WorkflowNotFound,
)
from runkon_flow.hooks import HookRunner
from runkon_flow.humanize import format_duration
from runkon_flow.observe.retrying import CALLED_FANOUT, retry_refusal
from runkon_flow.persistence import RunStatus, WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runtime.lease import holder_of
from runkon_flow.runtime.rerun import NoStepToRerunFrom
from runkon_flow.runtime.resume import final_rejection, rejection_refusal
from runkon_flow.runtime.types import WorkflowExecConfig, WorkflowResult
from runkon_flow.workspace import (
    ChildRunnerFactory,
    InputsError,
    ResumeSource,
    UnknownWorkflow,
    Workspace,
    end_unowned_run,
)

__all__ = ["LEASE_TTL_ENV", "exec_config_for", "parse_inputs"]


LEASE_TTL_ENV = "RUNKON_LEASE_TTL"
"""Seconds a run's lease lasts without a refresh (default 30): how long a crashed run stays locked."""

DEFAULT_LEASE_TTL = 30


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


def _add_lease_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lease-ttl",
        type=positive_int,
        metavar="SECONDS",
        help=f"how long the run's lease lasts without a refresh (default: ${LEASE_TTL_ENV}, else "
        f"{DEFAULT_LEASE_TTL}); a crashed run can be resumed once it lapses",
    )


def exec_config_for(lease_ttl: int | None, env: dict[str, str] | None = None) -> WorkflowExecConfig:
    """The engine settings for this process: the lease TTL from the flag, else `$RUNKON_LEASE_TTL`,
    else 30 s; the lease is refreshed three times per TTL so a live run never loses it."""
    env = dict(os.environ) if env is None else env
    ttl = lease_ttl
    if ttl is None:
        raw = env.get(LEASE_TTL_ENV, "").strip()
        if raw:
            try:
                ttl = positive_int(raw)
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


def refuse_non_workflow(raw: str, path: Path) -> None:
    """A WORKFLOW given as a path that is not a workflow file: a usage error saying what it is and
    what `run` takes — `items.yaml` said `workflow not found: items.yaml (available: …)`, as if the
    file were not there. A file with no suffix is taken as a workflow (`/dev/stdin`, as `validate`
    takes it)."""
    if path.is_dir():
        raise UsageError(
            f"{raw} is a directory; run takes a workflow name (with --dir {shlex.quote(raw)}) or a path to "
            "a .wf file"
        )
    if not path.exists():
        raise UsageError(f"no such workflow file: {raw}")
    if path.suffix and path.suffix != ".wf":
        raise UsageError(
            f"{raw} is not a workflow file (its name does not end in .wf); "
            "run takes a workflow name or a path to a .wf file"
        )


def _looks_like_path(text: str) -> bool:
    return text.endswith(".wf") or os.sep in text or "/" in text


def _workspace(
    dirs: Sequence[Path],
    store: WorkflowPersistence,
    exec_config: WorkflowExecConfig,
    workflow: str,
    child_runner: ChildRunnerFactory | None = None,
) -> Workspace:
    """Loads only `workflow` (a name or a path) and what it calls: running one workflow never
    parses or checks the other files of its directory. `child_runner`: see cli/executor.py."""
    try:
        return Workspace(dirs, store, exec_config=exec_config, only=[workflow], child_runner=child_runner)
    except ValueError as exc:  # a bad $RUNKON_STORED_OUTPUT_LINES, named in the message
        raise UsageError(str(exc)) from None


def problem_diagnostics(
    problems: Sequence[Problem], dirs: Sequence[Path] = (), *, severity: str | None = None
) -> list[str]:
    """Each problem as `validate` prints it: file:line:col, message, source line and caret
    (`severity`: `warning: ` before the message)."""
    texts = []
    for problem in problems:
        location = problem.location
        source = None
        if location.file:
            if location.line:
                with suppress(WfError):
                    source = read_source(Path(location.file))
            location = SourceLocation(as_named(location.file, dirs), location.line, location.column)
        texts.append(render_diagnostic(location, problem.text(), source, severity=severity))
    return texts


def _print_problems(
    problems: Sequence[Problem], dirs: Sequence[Path] = (), severity: str | None = None
) -> None:
    for text in problem_diagnostics(problems, dirs, severity=severity):
        print_err(text)


def _say_warnings(ws: Workspace, name: str, dirs: Sequence[Path]) -> None:
    """The warnings `validate --scripts` says for the workflow's file (`Workspace.check`), once on
    stderr before a run of it starts or goes on: they stop nothing."""
    _print_problems(ws.check(name)[1], dirs, "warning")


def unloadable_refusal(command: str) -> str:
    """Why a resume or retry stopped before writing anything (`Workspace.unloadable_workflows`), and
    what to do: the same words from the command line and from a background runner."""
    return (
        f"a workflow this {command} would run does not load; nothing was changed: "
        "fix the file and run the same command again"
    )


def _refuse_unloadable(problems: Sequence[Problem], dirs: Sequence[Path], command: str) -> None:
    """Stop `command` before it writes anything when a workflow it would start does not load
    (`Workspace.unloadable_workflows`): each at file:line:col, as `run` refuses them."""
    if problems:
        _print_problems(problems, dirs)
        raise CommandFailed(unloadable_refusal(command))


def _find_workflow(ws: Workspace, name_or_path: str, dirs: Sequence[Path]) -> WorkflowDef:
    """The workflow definition, or: a usage error when nothing by that name exists (exit 2), the
    file:line:col diagnostic when its file exists but does not load (exit 1)."""
    try:
        return ws.find(name_or_path)
    except WorkflowNotFound as exc:
        nothing_there = isinstance(exc, UnknownWorkflow) and not exc.known
        hint = "; name a .wf file, or its folder with --dir" if nothing_there else ""
        raise UsageError(f"{exc}{hint}") from None
    except FlowError as exc:
        broken = _load_error_for(ws, name_or_path)
        if broken is None:
            raise CommandFailed(plain(exc)) from None
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


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    raw_inputs = parse_inputs(args.input)
    workflow_path: Path | None = None
    if _looks_like_path(args.workflow) or Path(args.workflow).is_file():
        workflow_path = Path(args.workflow).expanduser()
        refuse_non_workflow(args.workflow, workflow_path)
    dirs = _workflow_dirs(args.dirs, workflow_path)
    config = exec_config_for(args.lease_ttl)
    if args.detach and args.memory:
        raise UsageError("--detach needs a run database (a background run cannot live in --memory)")
    child_runner = child_runner_for(args, dirs)
    hints = Hints.of(args, workflow_file=workflow_path)
    with opened_store(args, must_exist=False) as store:
        target = str(workflow_path) if workflow_path else args.workflow
        ws = _workspace(dirs, store, config, target, child_runner)
        definition = _find_workflow(ws, target, dirs)
        name = definition.name
        problems, warnings = ws.check(name)
        if problems:
            _print_problems(problems, dirs)
            raise CommandFailed(f"workflow '{name}' is not valid; nothing was run")
        _print_problems(warnings, dirs, "warning")  # as `_say_warnings` says them
        try:
            inputs = ws.prepare_inputs(name, raw_inputs)
        except FlowError as exc:
            problems = getattr(exc, "problems", None) or [plain(exc)]
            raise UsageError("\n".join(_input_hint(p) for p in problems)) from None
        hooks = prepare_hooks(args, store)  # a wrong hooks file stops here, before a run exists
        if args.detach:
            with closed_on_error(hooks):
                refuse_database_as_events(args.events, location_of(args))  # (the runner opens it)
                run_id = ws.create_run(name, inputs)
            return _start_detached(args, store, run_id, name, dirs, hints=hints, hooks=hooks)
        with closed_on_error(hooks):
            events_file = open_events_file_first(args.events, store, location_of(args))
        with closed_on_error(events_file, hooks):
            run_id = ws.create_run(name, inputs)
        print_run_header(run_id, name, args)
        return execute(
            args,
            store,
            run_id,
            lambda queue: ws.execute(run_id, sinks=[queue]),
            ws.cancel,
            events_file=events_file,
            durable=not args.memory,
            hooks=hooks,
            hints=hints,
        )


def _start_detached(
    args: argparse.Namespace,
    store: WorkflowPersistence,
    run_id: str,
    workflow: str,
    dirs: Sequence[Path],
    *,
    hints: Hints,
    hooks: HookRunner | None,
    resume: bool = False,
    retry: Mapping[str, Sequence[str]] | None = None,
    retry_definition: str = "stored",
) -> int:
    """--detach of `run`, `resume`, `retry` and `rerun`, once the command has checked (and asked)
    everything: hand the run to a background runner (`detach.start`) with this command's
    settings. Its --events file was refused here if it is the database (the runner opens it)."""
    if hooks is not None:
        hooks.close()  # the background runner runs them (it finds the same file)
    executor, ray_address = detached_executor(args)
    return detach.start(
        store,
        location_of(args),
        run_id,
        workflow,
        dirs,
        hints=hints,
        lease_ttl=args.lease_ttl,
        events=args.events,
        hooks=args.hooks,
        executor=executor,
        ray_address=ray_address,
        resume=resume,
        retry=retry,
        retry_definition=retry_definition,
    )


def _add_detach_arg(p: argparse.ArgumentParser, what: str = "run", note: str = "") -> None:
    p.add_argument(
        "--detach",
        action="store_true",
        help=f"{what} in a background process of its own (survives closing the terminal); print the run "
        f"id, its log file and the commands to watch and cancel it, then exit (0 once that process has "
        f"taken the run){note}",
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
    add_db_args(p, memory=True)
    add_progress_args(p)
    _add_lease_args(p)
    add_executor_args(p)
    _add_detach_arg(p)
    p.set_defaults(handler=cmd_run)


# --------------------------------------------------------------------------- resume


def _not_found(workflow: str, ws: Workspace) -> str:
    return f"workflow '{workflow}' is not in {', '.join(str(d) for d in ws.dirs)}"


def _check_resumable(run: WorkflowRun, store: WorkflowPersistence) -> None:
    parent = run.parent_workflow_run_id or run.parent_run_id
    if parent:
        raise CommandFailed(f"run {run.id} is a child of run {parent}; resume that run instead")
    if RunStatus(run.status) is RunStatus.COMPLETED:
        raise CommandFailed(f"run {run.id} already completed; there is nothing to resume")
    rejected = final_rejection(store.get_steps(run.id))
    if rejected is not None:
        raise CommandFailed(rejection_refusal(run.id, rejected))


def _owned_message(run: WorkflowRun, command: str = "resume") -> str:
    """The engine's `owned by another engine` text plus what the user can do about it with
    `command`: only `resume` has --wait; `retry` is simply given again once the lease lapsed."""
    text = str(AlreadyOwned(run.id))
    until = parse_time(run.lease_until)
    if until is not None:
        left = max(0.0, (until - datetime.now(UTC)).total_seconds())
        then = "resume again then, or pass --wait" if command == "resume" else f"{command} again then"
        # Who: on a shared PostgreSQL store the holder may be on another machine, and its lease
        # is renewed while it lives (the time left alone read as a countdown to a takeover).
        holder = holder_of(run.owner_token)
        who = f", renewed while {holder} runs it" if holder is not None else ""
        text += f" (its lease runs {format_duration(left)} more{who}; if that process is gone, {then})"
    return text


def _at_gate_message(run: WorkflowRun, gates: list[WaitingGate], hints: Hints, command: str = "retry") -> str:
    """Why `retry` or `resume` refuses a run whose engine waits at a gate: not another engine in
    the way that a later try gets past (`owned by another engine … retry again then` said that),
    but a person's answer. Each gate is named, with the commands that answer it, as `show` gives
    them."""
    holder = holder_of(run.owner_token)
    by = f" ({holder} runs it)" if holder is not None else ""
    names = []
    lines = []
    for gate in gates:
        names.append(f"'{gate.gate_name}'{gate_where(gate, run.id)}")
        for verb in ("approve", "reject"):
            lines.append(
                f"  {verb}:{' ' * (8 - len(verb))}{hints.command(verb, gate.run_id, gate.gate_name)}"
            )
    at = f"gate {names[0]}" if len(names) == 1 else f"{len(names)} gates: {', '.join(names)}"
    then = (
        "retry it once it has ended"
        if command == "retry"
        else "its engine goes on once the gate is answered; there is nothing to resume"
    )
    return "\n".join([f"run {run.id} is not finished: it is waiting at {at}{by}; {then}", *lines])


def cmd_resume(args: argparse.Namespace) -> int:
    config = exec_config_for(args.lease_ttl)
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        _check_resumable(run, store)
        if lease_is_live(run) and not args.wait:
            if gates := waiting_gates(store, run):
                raise CommandFailed(_at_gate_message(run, gates, Hints.of(args), "resume"))
            raise CommandFailed(_owned_message(run))
        if lease_is_live(run):
            # Wait here, before the `run_id=` header: the other engine may finish the run meanwhile,
            # and then there is nothing to resume — said as the only line, like any refusal.
            waited = _wait_for_lease(store, run)
            if waited is None:
                print_err(f"runkon-flow: stopped waiting for run {run.id}")
                return EXIT_CANCELLED
            run = waited
            _check_resumable(run, store)
        dirs = _workflow_dirs(args.dirs)
        ws = _workspace(dirs, store, config, run.workflow_name, child_runner_for(args, dirs))
        plan = ws.resume_plan(run.id)
        if plan.source is ResumeSource.STORED:  # the same here and in a runner (--detach)
            broken = ws.load_error(run.workflow_name)
            why, hint = (
                (f"workflow '{run.workflow_name}' does not parse now ({broken.render()})", "fix the file")
                if broken is not None
                else (_not_found(run.workflow_name, ws), "use --dir to point at its folder")
            )
            print_err(
                f"note: {why}; resuming with the definition stored with the run, and the workflows "
                f"it started as they ran ({hint} to resume with it)"
            )
        # Workspace.resume refuses this too (for every caller, and a file broken in between), but
        # only once `execute` has printed the run_id= header: said here first, with each position.
        _refuse_unloadable(ws.unloadable_workflows(run.id), dirs, "resume")
        if plan.source is ResumeSource.FILE:  # (a stored one has no file to show)
            _say_warnings(ws, run.workflow_name, dirs)
        hooks = prepare_hooks(args, store)
        if args.detach:
            with closed_on_error(hooks):
                refuse_database_as_events(args.events, location_of(args))  # (the runner opens it)
            hints = Hints.of(args)
            return _start_detached(
                args, store, run.id, run.workflow_name, dirs, hints=hints, hooks=hooks, resume=True
            )
        events_file = open_events_file(args.events, append=True, database=location_of(args))
        give_up = threading.Event()

        def resume(queue: EventQueue) -> WorkflowResult:
            while True:  # (with --wait, another engine may still take the run between check and resume)
                try:
                    # (Workspace.resume records a run abandoned while `cancelling` as cancelled.)
                    return ws.resume(run.id, sinks=[queue])
                except AlreadyOwned:
                    if not args.wait:
                        raise
                    if give_up.wait(0.2):
                        raise Interrupted(f"stopped waiting for run {run.id}") from None

        def cancel(run_id: str, message: str) -> None:
            # Cancel only what runs here: while waiting, the run belongs to another engine.
            if run_id in ws.active_runs():
                ws.cancel(run_id, message)
            else:
                give_up.set()

        print_run_header(run.id, run.workflow_name, args)
        try:
            return execute(
                args,
                store,
                run.id,
                resume,
                cancel,
                events_file=events_file,
                durable=True,
                hooks=hooks,
                resumed=True,
            )
        except AlreadyOwned:
            raise CommandFailed(_owned_message(store.get_run(run.id) or run)) from None


def _wait_for_lease(store: WorkflowPersistence, run: WorkflowRun) -> WorkflowRun | None:
    """Poll until no engine holds `run`; its row as it is then, or None on Ctrl-C."""
    print_err(f"run {run.id} is held by another engine; waiting for its lease to lapse…")
    try:
        while lease_is_live(run):
            time.sleep(0.2)
            run = store.get_run(run.id) or run
    except KeyboardInterrupt:
        return None
    return run


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
    add_db_args(p)
    add_progress_args(p)
    _add_lease_args(p)
    add_executor_args(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another engine holds the run, wait until its lease lapses (with --detach: here, in the "
        "foreground, before the background process is started)",
    )
    _add_detach_arg(p, "resume")
    p.set_defaults(handler=cmd_resume)


# --------------------------------------------------------------------------- retry


class _ExtendNoting(argparse._ExtendAction):
    """`--item`/`--cluster` take several values (`--item b d`), so argparse gives them every word
    up to the next option — `retry --item b RUN_ID` too, RUN_ID included. Notes which list was
    extended last, so `_settle_retry_args` can give that word back to RUN_ID."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.last_list = self.dest


def _settle_retry_args(args: argparse.Namespace) -> None:
    """RUN_ID after `--item ID…` or `--cluster N…` (`retry --item b 01J…`) is the run's id, not one
    more item: argparse read it into the list given last, so it is taken back from there. Then
    the cluster numbers are read (as strings until now: RUN_ID may have been among them)."""
    if args.run_id is None:
        last = getattr(args, "last_list", None) or "items"
        taken = getattr(args, last)
        # Only a word after at least one value, and for --cluster one that is not a number: a
        # command that names no run at all (`retry --cluster 2`) is told RUN_ID is missing.
        if len(taken) < 2 or (last == "clusters" and taken[-1].strip().isdigit()):
            raise UsageError("the following arguments are required: RUN_ID")
        args.run_id = taken.pop()
    try:
        args.clusters = [positive_int(text) for text in args.clusters]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"argument --cluster: {exc}") from None


def _no_fanout_message(run: WorkflowRun, hints: Hints, calls: bool) -> str:
    """`retry` of a run that has no foreach: say what retry is for, and what runs a failed step
    again instead. `calls`: the run has `call workflow` steps, whose fan-outs retry does not reach."""
    if calls:
        own = f"nothing to retry: run {run.id} ({run.workflow_name}) has no fan-out of its own"
        text = f"{own}; {CALLED_FANOUT}"
    else:
        text = (
            f"nothing to retry: run {run.id} ({run.workflow_name}) has no fan-out; "
            "retry runs failed foreach items again"
        )
    if RunStatus(run.status) in (RunStatus.FAILED, RunStatus.CANCELLED):
        rerun = hints.command("rerun", run.id, "--from", fill="STEP", definitions=True)
        text += f". To run its failed steps again: {hints.resume(run.id)} (or {rerun})"
    return text


def cmd_retry(args: argparse.Namespace) -> int:
    _settle_retry_args(args)
    if not args.failed and not args.items and not args.clusters:
        raise UsageError(
            "say what to retry: --failed, or --item ID (repeatable), or --cluster N (numbered by show)"
        )
    config = exec_config_for(args.lease_ttl)
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        refusal = retry_refusal(run.id, run.parent_workflow_run_id or run.parent_run_id)
        if refusal:
            raise CommandFailed(refusal)
        if not RunStatus(run.status).is_terminal:
            if lease_is_live(run) and (gates := waiting_gates(store, run)):
                raise CommandFailed(_at_gate_message(run, gates, Hints.of(args)))
            if lease_is_live(run):
                raise CommandFailed(_owned_message(run, "retry"))
            raise CommandFailed(
                f"run {run.id} is {display_status(run)}, not finished; resume it instead "
                f"({Hints.of(args).resume(run.id)})"
            )
        if lease_is_live(run):
            raise CommandFailed(_owned_message(run, "retry"))
        fanouts = latest_fanouts(store, run)
        if not fanouts:  # a failed script or agent step: "no failed items" read as "nothing failed"
            calls = any(step.role == "workflow" for step in store.get_steps(run.id))
            raise CommandFailed(_no_fanout_message(run, Hints.of(args), calls))
        per_step = cluster_items(store, run, args.clusters, fanouts) if args.clusters else None
        choice = choose_items(
            fanouts, failed=args.failed, item_ids=args.items, per_step=per_step, run_id=run.id
        )
        dirs = _workflow_dirs(args.dirs)
        ws = _workspace(dirs, store, config, run.workflow_name, child_runner_for(args, dirs))
        children = ws.stored_children(run.id)  # read once: the change check, the refusal, the plan
        definition = _retry_definition(args.definition, store, run, ws, children)
        _refuse_unloadable(
            ws.unloadable_workflows(run.id, retried=choice.items, definition=definition, children=children),
            dirs,
            "retry",
        )
        # The plan is a note for the person deciding (stderr): stdout stays the `run_id=` header
        # and event lines a script reads.
        print_err(f"run {run.id} ({run.workflow_name}, {display_status(run)}):")
        for line in choice.lines:
            print_err(f"  {line}")
        print_err(f"  with the {definition} definition; the steps after the retried fan-out run again")
        started = sorted(children)
        if started:
            which = "the definitions they ran with" if definition == "stored" else "today's files"
            print_err(f"  the workflows it starts ({', '.join(started)}) run {which}")
        if definition == "current":
            _say_warnings(ws, run.workflow_name, dirs)
        # A wrong hooks file stops here, before the question: a yes must not end in a usage error.
        hooks = prepare_hooks(args, store)
        # Asked here, with --detach too: the background process has no terminal to ask on.
        with closed_on_error(hooks):
            _confirm(args.yes, f"Retry {choice.count} item{'s' if choice.count != 1 else ''}?")
        if args.detach:
            with closed_on_error(hooks):
                refuse_database_as_events(args.events, location_of(args))  # (the runner opens it)
            return _start_detached(
                args,
                store,
                run.id,
                run.workflow_name,
                dirs,
                hints=Hints.of(args),
                hooks=hooks,
                retry=choice.items,
                retry_definition=definition,
            )
        events_file = open_events_file(args.events, append=True, database=location_of(args))
        print_run_header(run.id, run.workflow_name, args)
        try:
            return execute(
                args,
                store,
                run.id,
                lambda queue: ws.retry(
                    run.id,
                    choice.items,
                    definition=definition,
                    sinks=[queue],
                    children=children,
                    known_items={fan.step.id: fan.items for fan in fanouts},
                ),
                ws.cancel,
                events_file=events_file,
                durable=True,
                hooks=hooks,
                resumed=True,
            )
        except AlreadyOwned:
            raise CommandFailed(_owned_message(store.get_run(run.id) or run, "retry")) from None


def _retry_definition(
    wanted: str | None,
    store: WorkflowPersistence,
    run: WorkflowRun,
    ws: Workspace,
    children: dict[str, WorkflowDef],
) -> str:
    """`stored` or `current`, shown and chosen: when today's file (or one of `children`, the
    run's `Workspace.stored_children`) differs from what the run stored, print the diff and
    insist on an explicit `--definition`."""
    current = ws.workflows.get(run.workflow_name)
    if current is None:
        if wanted == "current":
            raise CommandFailed(
                f"{_not_found(run.workflow_name, ws)}; "
                "retry with --definition stored, or point --dir at its folder"
            )
        return "stored"
    diff = definition_diff(store, run, current, as_named(current.source_path, ws.dirs))
    if diff is None:  # nothing stored to compare with: today's file is all there is
        if wanted == "stored":
            raise CommandFailed(f"run {run.id} has no stored definition; retry with --definition current")
        return "current"
    # The workflows it started (`call workflow`, `foreach`) are part of what ran: a retry of the
    # stored definition runs them as they ran too, so an edit of one is a difference as well.
    changed = children_diffs(children, ws.workflows, lambda wf: as_named(wf.source_path, ws.dirs))
    if not diff and not changed:
        started = f" and the workflows it started ({', '.join(sorted(children))}) are" if children else " is"
        print_err(f"the definition of '{run.workflow_name}'{started} unchanged since the run")
        return wanted or "stored"
    if diff:
        print_err(f"the workflow file changed since run {run.id}:")
        for line in diff:
            print_err(f"  {line}")
    for name, child_diff in changed.items():
        if child_diff is None:
            print_err(
                f"the workflow '{name}' that run {run.id} started does not load now "
                "(stored runs it as it ran)"
            )
            continue
        print_err(f"the workflow '{name}' that run {run.id} started changed since the run:")
        for line in child_diff:
            print_err(f"  {line}")
    if wanted is None:
        raise UsageError("choose the definition the retry runs: --definition stored or --definition current")
    return wanted


def _say_changed_children(ws: Workspace, run_id: str, children: dict[str, WorkflowDef]) -> None:
    """A rerun of the stored definition starts the workflows the old run started as they ran
    (`children`, its `Workspace.stored_children`), not from today's files: each one edited (or
    broken) since is named, so an edit is not expected to show (docs/when-things-go-wrong.md)."""
    changed = children_diffs(children, ws.workflows, lambda wf: as_named(wf.source_path, ws.dirs))
    for name in changed:
        file = ws.workflows.get(name)
        where = f" ({as_named(file.source_path, ws.dirs)})" if file is not None else ""
        print_err(
            f"note: the workflow '{name}' changed since run {run_id} started it; "
            f"this rerun starts it as it ran, not from today's file{where}"
        )


def _confirm(yes: bool, question: str) -> None:
    """Ask on a terminal; without one, only --yes goes ahead (a script must not hang on a prompt)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — not asked without a terminal; pass --yes to go ahead")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandFailed("nothing retried")


# --------------------------------------------------------------------------- rerun


def cmd_rerun(args: argparse.Namespace) -> int:
    overrides = parse_inputs(args.input)
    config = exec_config_for(args.lease_ttl)
    with opened_store(args, must_exist=True) as store:
        old = get_run(store, args.run_id, args)
        dirs = _workflow_dirs(args.dirs)
        ws = _workspace(dirs, store, config, old.workflow_name, child_runner_for(args, dirs))
        definition = args.definition or ("current" if old.workflow_name in ws.workflows else "stored")
        if definition == "stored" and not args.definition:
            print_err(
                f"note: {_not_found(old.workflow_name, ws)}; "
                "rerunning the definition stored with the run (use --dir to point at its folder)"
            )
        hooks = prepare_hooks(args, store)
        with closed_on_error(hooks):
            if args.detach:  # before the new run exists (the runner opens the file)
                refuse_database_as_events(args.events, location_of(args))
            # Read once: the plan, and what is said of them below.
            children = ws.stored_children(old.id) if definition == "stored" else {}
            try:
                new_id, plan = ws.prepare_rerun(
                    old.id, args.from_step, overrides, definition=definition, children=children
                )
            except InputsError as exc:
                raise UsageError("\n".join(_input_hint(p) for p in exc.problems)) from None
            except NoStepToRerunFrom as exc:  # `--from nosuch`: a usage error, as an unknown input
                raise UsageError(exc.message) from None
            except ValidationErrors as exc:  # today's file, or a workflow it would start, is broken
                _refuse_unloadable(exc.errors, dirs, "rerun")
                raise
            events_file = (
                None
                if args.detach
                else open_events_file(args.events, append=False, database=location_of(args))
            )
        if definition == "current":
            _say_warnings(ws, old.workflow_name, dirs)
        else:
            _say_changed_children(ws, old.id, children)
        if not args.detach:
            print_run_header(new_id, old.workflow_name, args)
        names = plan.reused_names
        reused = (
            f"reusing {len(names)} step{'' if len(names) == 1 else 's'} ({', '.join(names)})"
            if names
            else "reusing no steps"
        )
        # A note for the person (stderr), as retry's plan: stdout stays the `run_id=` header and events.
        calls = ", ".join(sorted(children))
        started = f", and the workflows it starts ({calls}) as they ran" if children else ""
        print_err(f"rerun of {old.id} from {plan.step}: {reused}; {definition} definition{started}")
        if args.detach:  # the new run is pending: the background process resumes it, as below
            hints = Hints.of(args)
            return _start_detached(
                args, store, new_id, old.workflow_name, dirs, hints=hints, hooks=hooks, resume=True
            )
        return execute(
            args,
            store,
            new_id,
            lambda queue: ws.resume(new_id, sinks=[queue]),
            ws.cancel,
            events_file=events_file,
            durable=True,
            hooks=hooks,
        )


def add_rerun_parser(sub: Any) -> None:
    p = sub.add_parser(
        "rerun",
        help="rerun a finished run from one of its steps, reusing the results before it",
        description=(
            "Start a new run that reruns the finished run RUN_ID from STEP: the steps before STEP are "
            "not run again — their results (outputs, exported variables, gate answers) are copied from "
            "RUN_ID and feed the later steps — and STEP and everything after it runs. The new run "
            "keeps RUN_ID's inputs unless --input changes them, and records which run it reruns and "
            "from where (`show`). Runs today's file by default (--definition stored: the definition "
            "RUN_ID ran)."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        required=True,
        help="the step to rerun from (required): its name as `show` lists it, or its node path",
    )
    p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change an input of the run (repeatable); the others keep their values",
    )
    p.add_argument(
        "--definition",
        choices=("stored", "current"),
        help="current (default when the file is found): today's .wf file; stored: what RUN_ID ran",
    )
    _add_dir_args(p)
    add_db_args(p)
    add_progress_args(p)
    _add_lease_args(p)
    add_executor_args(p)
    _add_detach_arg(p, "rerun")
    p.set_defaults(handler=cmd_rerun)


def add_retry_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retry",
        help="run failed fan-out items of a finished run again",
        description=(
            "Retry items of the finished run RUN_ID (failed, cancelled, or completed with failed items): "
            "every failed or cancelled item (--failed) or the ones named (--item). Each retry is a new "
            "attempt: the earlier child run is kept and the item records it; completed items never run "
            "again; the fan-out's aggregate output and the steps after it are brought up to date and the "
            "run ends with their outcome. Shows what it will do (and how today's file differs from the "
            "definition stored with the run) and asks; --yes skips the question."
        ),
    )
    # Optional only for argparse: given before the options or after them, `_settle_retry_args`
    # finds it (the usage line below still says it is required).
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    p.add_argument("--failed", action="store_true", help="retry every failed or cancelled item")
    p.add_argument(
        "--item",
        "--items",  # as people write it (--items b d): an unknown option otherwise
        dest="items",
        action=_ExtendNoting,
        nargs="+",
        default=[],
        metavar="ID",
        help="retry these items (--item b d, or repeat the option)",
    )
    p.add_argument(
        "--cluster",
        "--clusters",
        dest="clusters",
        action=_ExtendNoting,
        nargs="+",
        default=[],
        metavar="N",
        help="retry the failed items of these failure clusters (numbered by show RUN_ID)",
    )
    p.add_argument(
        "--definition",
        choices=("stored", "current"),
        help="run the definition stored with the run, or today's file (required when they differ)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _add_dir_args(p)
    add_db_args(p)
    add_progress_args(p)
    _add_lease_args(p)
    add_executor_args(p)
    _add_detach_arg(
        p, "retry", "; the question is asked here first (without a terminal, only --yes goes ahead)"
    )
    p.usage = p.format_usage().removeprefix("usage: ").rstrip().replace("[RUN_ID]", "RUN_ID")
    p.set_defaults(handler=cmd_retry)


# --------------------------------------------------------------------------- cancel


def cmd_cancel(args: argparse.Namespace) -> int:
    out = StdoutGuard()
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        status = RunStatus(run.status)
        if status is RunStatus.CANCELLED:
            out.print(f"run {run.id} is already cancelled")
            return EXIT_OK
        if status.is_terminal:
            raise CommandFailed(f"run {run.id} already finished ({status.value}); there is nothing to cancel")
        error = str(EngineCancelled(CancellationReason.user(args.message)))
        settled = end_unowned_run(store, run.id, error)  # no live engine: marked here
        if settled is RunStatus.CANCELLED:
            out.print(
                f"run {run.id} was not running (no engine holds it); marked cancelled — "
                "it can still be resumed"
            )
            return EXIT_OK
        if settled is not None:  # its engine finished it between our look and the lease
            raise CommandFailed(
                f"run {run.id} already finished ({settled.value}); there is nothing to cancel"
            )
        if not store.request_cancel(run.id, error):  # it ended since our look: its end stands
            ended = store.get_run(run.id)
            status = RunStatus(ended.status).value if ended is not None else "finished"
            raise CommandFailed(f"run {run.id} already finished ({status}); there is nothing to cancel")
        if args.no_wait:
            out.print(f"run {run.id}: cancel requested; its engine stops it within a second or two")
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            current = store.get_run(run.id)
            if current is None:
                break
            now_status = RunStatus(current.status)
            if now_status is RunStatus.CANCELLED:
                out.print(f"run {run.id} cancelled")
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
    add_db_args(p)
    p.add_argument("--message", metavar="TEXT", help="why (recorded with the cancellation)")
    p.add_argument("--no-wait", action="store_true", help="return once the cancel is requested")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="how long to wait for it (default 30)"
    )
    p.set_defaults(handler=cmd_cancel)
