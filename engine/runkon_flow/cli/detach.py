"""`--detach` of `run`, `resume`, `retry` and `rerun`: the run executes in a background process.

`run --detach` does everything `run` does before a run starts — finds and validates the workflow,
prepares the inputs, creates the run row — then starts `python -m runkon_flow.cli.background RUN_ID …`
in a new session (no controlling terminal: closing the terminal, or killing the starting shell's
process group, does not reach it), with stdin from /dev/null and stdout/stderr appended to a log
file beside the database (`<db dir>/logs/<run id>.log`, plain progress lines). It waits until that
process holds the run (or exits early, whose log tail is then shown) and prints the run id and the
commands to watch and cancel it. The background process is an ordinary engine: it renews the
run's lease, stores its events, stops cleanly on SIGTERM (as on a first Ctrl-C) and ignores SIGHUP.

`resume`, `retry` and `rerun` with --detach likewise do all their checks (and `retry` asks its
question) here, then hand the run to the same background process (`resume`, `retry`: the run as it
is; `rerun`: the new pending run it prepared). A run taken up again was not `pending`: the runner
has taken it once it stored an event after those the run had.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from runkon_flow.cli.common import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, CommandFailed, StdoutGuard, print_err
from runkon_flow.cli.hints import Hints
from runkon_flow.persistence import RunStatus
from runkon_flow.persistence.location import DbLocation
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runner import log_path, spawn_runner
from runkon_flow.workspace import end_unstarted_run

STARTUP_TIMEOUT = 30.0  # seconds the background process has to take the run
_EXIT_OF = {RunStatus.FAILED: EXIT_FAILED, RunStatus.CANCELLED: EXIT_CANCELLED}  # as `run` exits


def start(
    store: WorkflowPersistence,
    db: DbLocation,
    run_id: str,
    workflow: str,
    dirs: Sequence[Path],
    *,
    hints: Hints,
    lease_ttl: int | None,
    events: str | None,
    hooks: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    resume: bool = False,
    retry: Mapping[str, Sequence[str]] | None = None,
    retry_definition: str = "stored",
) -> int:
    """Start the background process for the run `run_id` and report how to follow it (`hints`:
    the commands carry the `--db` the user gave). A pending run is executed — or, with `resume`,
    resumed (`rerun`'s prepared run) —; a run that is not pending is resumed (`resume`) or has
    the items `retry` retried with `retry_definition`. A relative database path (`--db`, or
    `$RUNKON_DB`) is printed absolute — the log, the `db=` header, and as `--db` in the `watch`
    and `cancel` commands — so they work from any directory: the detached run outlives the
    shell's working directory."""
    if not db.is_server and not os.path.isabs(db.target):
        db = DbLocation(os.path.abspath(db.path), chosen=db.chosen)  # type: ignore[arg-type]
        hints = dataclasses.replace(hints, db=db.label)
    row = store.get_run(run_id)
    # A run taken up again: taken once the runner stored an event after these (None: a new run).
    after = None if row is None or row.status is RunStatus.PENDING else store.last_event_seq(run_id)
    try:
        proc, log = spawn_runner(
            db,
            run_id,
            dirs,
            resume=resume,
            lease_ttl=lease_ttl,
            events=events,
            hooks=hooks,
            executor=executor,
            ray_address=ray_address,
            retry=retry,
            retry_definition=retry_definition,
        )
    except OSError as exc:
        why = f"cannot write the log file {log_path(db, run_id)}: {exc.strerror or exc}"
        if after is None:
            with suppress(Exception):  # nothing will take the pending run up: it must not look startable
                end_unstarted_run(store, run_id, f"not started: {why}")
        raise CommandFailed(why) from None
    status = _wait_until_taken(store, run_id, proc, log, after=after)
    out = StdoutGuard("stdout closed; the run goes on in the background")  # `run --detach | head -1`
    out.print(f"run_id={run_id} workflow={workflow} db={db.label}")
    # A `cancel` while it was still `pending` ends it with no event: nothing runs in the background.
    if after is None and status is RunStatus.CANCELLED and store.last_event_seq(run_id) == 0:
        print_err(f"run {run_id} was cancelled before it started")
        print_err(f"resume with: {hints.resume(run_id)}")
        return EXIT_CANCELLED
    if status is not None and status.is_terminal:
        # The runner took the run and ended it between two looks: its outcome, not "running".
        out.print(f"{status.value} in the background (pid {proc.pid}); log: {log}")
        out.print(f"  see it:    {hints.command('show', run_id)}")
        return _EXIT_OF.get(status, EXIT_OK)
    out.print(f"running in the background (pid {proc.pid}); log: {log}")
    out.print(f"  watch it:  {hints.command('watch', run_id)}")
    out.print(f"  cancel it: {hints.command('cancel', run_id)}")
    return EXIT_OK


def _taken(store: WorkflowPersistence, run_id: str, after: int | None) -> RunStatus | None:
    """The run's status if the background process took it (a new run: no longer `pending`, which a
    `cancel` may also have ended; a run taken up again: an event after `after`), else None."""
    run = store.get_run(run_id)
    if run is None:
        return None
    if after is None:
        return run.status if run.status is not RunStatus.PENDING else None
    return run.status if store.last_event_seq(run_id) > after else None


def _wait_until_taken(
    store: WorkflowPersistence, run_id: str, proc: subprocess.Popen, log: Path, *, after: int | None = None
) -> RunStatus | None:
    """Return the run's status once the background process took it (`_taken`; None: not known in
    time); a process that exits first failed to start the run: say why, from its log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        status = _taken(store, run_id, after)
        if status is not None:
            return status
        code = proc.poll()
        if code is not None:
            # It may have taken the run and ended it since the look above: look once more, now
            # that it can write nothing else.
            status = _taken(store, run_id, after)
            if status is not None:
                return status
            tail = _tail(log)
            if after is not None:  # resumed or retried: the run is as it was, and can be again
                raise CommandFailed(
                    f"the background process for run {run_id} exited ({code}) before taking it up; "
                    f"the run is as it was; log {log}" + (":\n" + tail if tail else "")
                )
            left: RunStatus | None = RunStatus.FAILED
            with suppress(Exception):  # nobody took the pending run: it must not look startable
                # Only from `pending`: the runner may have run it to its end since the read above.
                why = f"the detached runner exited ({code}) before starting"
                left = end_unstarted_run(store, run_id, why)
            if left is not RunStatus.FAILED:  # taken after all (None: an engine holds it now)
                return left
            raise CommandFailed(
                f"the background process for run {run_id} exited ({code}) before starting it; "
                f"log {log}" + (":\n" + tail if tail else "")
            )
        if time.monotonic() > deadline:
            print_err(f"note: run {run_id} has not started after {STARTUP_TIMEOUT:g}s; see its log {log}")
            return None
        time.sleep(0.05)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
