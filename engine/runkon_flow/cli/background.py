"""The background process of `runkon-flow run --detach` (`python -m runkon_flow.cli.background`):
executes one pending run — or resumes it (`--resume`: also `resume`/`rerun --detach`), or retries
items of it (`--retry-file`, `retry --detach`) —
printing plain progress lines to its log file (see `cli.detach`, `runkon_flow.runner`).

Kept out of the `runkon_flow.cli` package's imports so `python -m` runs it fresh.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runkon_flow.cli.common import print_line
from runkon_flow.cli.drive import execute, open_events_file, prepare_hooks
from runkon_flow.cli.executor import add_executor_args, child_runner_for
from runkon_flow.cli.output import EventQueue
from runkon_flow.cli.run import exec_config_for, problem_diagnostics, unloadable_refusal
from runkon_flow.errors import AlreadyOwned, ValidationErrors, WorkflowError
from runkon_flow.persistence import RunStatus
from runkon_flow.persistence.location import db_location
from runkon_flow.runner import ERROR_PREFIX
from runkon_flow.runtime.types import WorkflowResult
from runkon_flow.workspace import Workspace

TAKE_OVER_SLACK_S = 10.0  # beyond one lease TTL, how long --resume waits for the holder to let go
SIGNAL_MESSAGE = "the detached runner was sent SIGTERM or SIGINT"


def main(argv: Sequence[str] | None = None) -> int:
    """Execute the pending run in this process. SIGTERM (or SIGINT) cancels it cleanly, a second
    one forces the exit, as for `run`; SIGHUP is ignored."""
    parser = argparse.ArgumentParser(prog="runkon_flow.cli.background")
    parser.add_argument("run_id")
    parser.add_argument("--db")  # absent: $RUNKON_DB (a server URL comes that way, never on argv)
    parser.add_argument("--dir", dest="dirs", action="append", default=[])
    parser.add_argument("--lease-ttl", type=int)
    parser.add_argument("--events")
    parser.add_argument("--resume", action="store_true", help="resume the run once its holder lets go")
    parser.add_argument(
        "--retry-file",
        help="retry these items (a JSON file: fan-out step row -> item ids; deleted once read)",
    )
    parser.add_argument(
        "--retry-definition", choices=("stored", "current"), default="stored", help="what the retry runs"
    )
    parser.add_argument("--no-hooks", action="store_true", help="run no hooks (the host's file is wrong)")
    add_executor_args(parser)
    args = parser.parse_args(argv)
    args.progress = "plain"
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose; `execute` keeps it ignored
    print_line(sys.stdout, f"detached runner pid {os.getpid()} for run {args.run_id}")
    action = "retry" if args.retry_file else "resume" if args.resume else "run"
    try:
        store = db_location(args.db).open()
    except Exception as exc:
        print_line(sys.stdout, f"{ERROR_PREFIX}{exc}")
        return 1
    try:
        pending = store.get_run(args.run_id)
        dirs = [Path(d) for d in args.dirs]
        ws = Workspace(  # only the run's workflow and its callees are read (docs/cli.md)
            dirs,
            store,
            exec_config=exec_config_for(args.lease_ttl),
            only=[pending.workflow_name] if pending is not None else [],
            child_runner=child_runner_for(args, dirs),  # --executor ray: joins the cluster here
        )
        # A run taken up again (resumed, retried) adds to its events file; a new one — `run`, or
        # `rerun`'s pending run, started with --resume — begins it, as in the foreground.
        fresh = pending is not None and pending.status is RunStatus.PENDING
        continuing = bool(args.resume or args.retry_file) and not fresh
        events_file = open_events_file(args.events, append=continuing, database=db_location(args.db))
        wait_until = time.monotonic() + ws.exec_config.lease_ttl_secs + TAKE_OVER_SLACK_S

        def resume(queue: EventQueue) -> WorkflowResult:
            while True:  # the engine handing the run over lets go of its lease in a moment
                try:
                    return ws.resume(args.run_id, sinks=[queue])
                except AlreadyOwned:
                    if time.monotonic() > wait_until:
                        raise
                    time.sleep(0.1)

        items = _read_retry_file(args.retry_file) if args.retry_file else None

        def drive(queue: EventQueue) -> WorkflowResult:
            if items is not None:
                return ws.retry(args.run_id, items, definition=args.retry_definition, sinks=[queue])
            return resume(queue) if args.resume else ws.execute(args.run_id, sinks=[queue])

        return execute(
            args,
            store,
            args.run_id,
            drive,
            lambda rid, _signal: ws.cancel(rid, SIGNAL_MESSAGE),
            events_file=events_file,
            durable=True,
            hooks=None if args.no_hooks else prepare_hooks(args, store),
            resumed=continuing,
        )
    except ValidationErrors as exc:  # a workflow the resume or retry would start does not load
        if isinstance(exc, WorkflowError):  # the engine's own refusal of the run: its one error line
            print_line(sys.stdout, f"{ERROR_PREFIX}{exc}")
            return 1
        _refuse(exc, action, [Path(d) for d in args.dirs])
        return 1
    except Exception as exc:
        print_line(sys.stdout, f"{ERROR_PREFIX}{exc}")
        return 1
    finally:
        store.close()


def _refuse(exc: ValidationErrors, action: str, dirs: list[Path]) -> None:
    """Say it as `resume`/`retry` would: each problem with its source line and caret, then the
    error line `runner_error` gives the dashboard — one line, so every problem is named there at
    its file:line:col, followed by what to do."""
    for text in problem_diagnostics(exc.errors, dirs):
        print_line(sys.stdout, text)
    places = "; ".join(p.render() if p.location.file else p.text() for p in exc.errors)
    print_line(sys.stdout, f"{ERROR_PREFIX}{places}; {unloadable_refusal(action)}")


def _read_retry_file(path: str) -> dict[str, list[str]]:
    """The items to retry, from the file `spawn_runner` wrote; the file is removed once read."""
    request = Path(path)
    try:
        return {
            str(step): [str(i) for i in ids] for step, ids in json.loads(request.read_text("utf-8")).items()
        }
    finally:
        request.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
