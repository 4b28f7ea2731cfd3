"""`runkon-flow watch RUN_ID`: follow any run from any process through its stored event stream.

The run may be executed by another `runkon-flow run` (in another terminal, a detached one, cron,
CI) or by the dashboard; all of them store the run's events (runkon_flow.event_log). `watch`
prints the stored events with the same printers `run` uses — live view on a terminal, plain lines
otherwise — then keeps reading new ones (every 0.2 s) until the run ends, and exits as `run`
would have: 0 completed, 1 failed (or interrupted: no engine holds it any more), 130 cancelled.
A reader that goes away while the run goes on (`watch ID | grep -m1 X`) ends the watch with 0.
A finished run is printed and the command exits at once. `--json` prints every event as one JSON
object per line (the `--events` file format, so `replay` reads it back). Ctrl-C stops watching;
the run goes on. A read the store refuses (a PostgreSQL server restarted or out of reach) is
said once on stderr and tried again every second, for up to `STORE_OUTAGE_SECONDS` — the reads
after the run ended too (observe/outage.py, the dashboard's rule): a restart of the server does
not end the watch of a run that goes on (it exited 1 at once, as for a failed run).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from functools import partial
from typing import Any

from runkon_flow.cli.common import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, StdoutGuard, print_err
from runkon_flow.cli.drive import add_progress_args, make_printer, print_what_next
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.output import RunOutcome
from runkon_flow.cli.report import lease_is_live
from runkon_flow.cli.store import add_db_args, get_run, opened_store, print_run_header
from runkon_flow.event_log import READ_ROWS, envelope_of, read_stored, top_level_run
from runkon_flow.events import EngineEventData
from runkon_flow.humanize import terminal_json
from runkon_flow.observe import RunModel
from runkon_flow.observe.compact import quiet_stored
from runkon_flow.observe.loader import settle_interrupted
from runkon_flow.observe.outage import StoreOutage
from runkon_flow.persistence import RunStatus, WorkflowRun
from runkon_flow.persistence.models import StoredEvent
from runkon_flow.persistence.pg_connect import leave_outages_to_the_reader
from runkon_flow.persistence.protocol import WorkflowPersistence

POLL_SECONDS = 0.2
#: After the run row says it ended, how long to wait for its final events (the writer stores them
#: a moment after the row is written) before going by the row alone.
END_GRACE_SECONDS = 3.0
#: How long an unfinished run whose lease was let go of (not lapsed) may stay unheld before it
#: counts as interrupted: a run handed over to a background runner (the dashboard's "keep
#: running") is unheld for a fraction of a second. A lapsed lease is interrupted at once.
RELEASED_GRACE_SECONDS = 5.0
_EXIT = {RunStatus.COMPLETED: EXIT_OK, RunStatus.CANCELLED: EXIT_CANCELLED}
#: How long reads the store refuses are tried again (every `outage.RETRY_SECONDS`) before the
#: watch gives up with the store's error.
STORE_OUTAGE_SECONDS = 300.0


def cmd_watch(args: argparse.Namespace) -> int:
    hints = Hints.of(args)
    # A store outage is waited out by `_outage` (said on stderr, tried every second, for 300 s).
    with leave_outages_to_the_reader(), opened_store(args, must_exist=True) as store:
        asked = get_run(store, args.run_id, args)
        run_id = top_level_run(store, asked.id)
        if run_id != asked.id:
            print_err(f"run {asked.id} is a child of run {run_id}; watching {run_id}")
        run = get_run(store, run_id, args)
        # A reader that goes away (`watch ID | grep -m1 X`) ends the watch as soon as it goes (the
        # pipe is asked between reads, not only at the next line); an ended run still exits with how
        # it ended, a run still going goes on unwatched and the watch exits 0.
        out = StdoutGuard(f"stdout closed; stopped watching run {run_id} (the run is not affected)")
        if args.json:
            printer = None
        else:
            printer, _live = make_printer(args.progress, sys.stdout, run_id, hints, answers=False)
            print_run_header(run_id, run.workflow_name, args, out)
            if isinstance(printer, LiveView):
                printer.expect(run.workflow_name, RunStatus(run.status).value)
        # The live view folds every event it is fed into its own model: it says how the run ended.
        outcome = printer.outcome if isinstance(printer, LiveView) else RunOutcome()
        fold = None if isinstance(printer, LiveView) else outcome.observe
        # What the live view and `--progress quiet` print never needs a fan-out child's quiet events.
        held = (
            _HeldChildren(outcome.model)
            if isinstance(printer, LiveView) or args.progress == "quiet"
            else None
        )
        last_seq = 0
        ended_since: float | None = None
        said_waiting = False
        released_since: float | None = None
        outage = _outage(run_id)
        try:
            while True:
                rows, last_seq, latest = outage.read(partial(_read, store, run_id, last_seq))
                for row in rows:
                    if held is not None and held.hold(row):
                        continue
                    data = envelope_of(row)
                    if data is None:
                        continue
                    if fold is not None:
                        fold(data)
                    if printer is None:
                        out(lambda data=data: sys.stdout.write(terminal_json(data.to_json_line()) + "\n"))
                    else:
                        out(lambda data=data: printer.feed(data))
                out(sys.stdout.flush if printer is None else printer.tick)
                if rows:
                    continue  # catch up before judging whether the run is over
                run = latest or run
                status = RunStatus(run.status)
                now = time.monotonic()
                if status.is_terminal:
                    ended_since = ended_since or now
                    if outcome.status is not None or now - ended_since > END_GRACE_SECONDS:
                        return _ended(store, run, printer, hints, out, outage, stored=last_seq > 0)
                elif out.reader_gone():
                    return EXIT_OK  # the reader has what it wanted; the run is none of its business
                elif status is RunStatus.PENDING:
                    if not said_waiting:
                        waiting = f"run {run_id} has not started yet; waiting for it…"
                        if isinstance(printer, LiveView):
                            out(partial(printer.note, waiting))  # above the live block, not through it
                        else:
                            print_err(waiting)
                        said_waiting = True
                elif lease_is_live(run):
                    released_since = None
                elif (
                    run.owner_token is None
                    and now - (released_since := released_since or now) <= RELEASED_GRACE_SECONDS
                ):
                    pass  # let go of, not lapsed: a hand-over to a background runner takes a moment
                else:
                    if isinstance(printer, LiveView):
                        # Its last frame reads as the run model's one rule has it: the run and
                        # its steps still running are interrupted, and so are its fan-outs'
                        # items (`RunModel.mark_interrupted`), their clocks stopped where it stopped.
                        steps = outage.read(partial(store.get_steps, run_id))
                        settle_interrupted(printer.model, run, steps)
                    _close(printer, out)
                    print_err(
                        f"run {run_id} is interrupted: no engine holds it any more "
                        f"(resume it with: {hints.resume(run_id)})"
                    )
                    return EXIT_FAILED
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            _close(printer, out)
            print_err(f"stopped watching; run {run_id} goes on ({hints.command('cancel', run_id)} stops it)")
            return EXIT_CANCELLED


def _outage(run_id: str) -> StoreOutage:
    """How this watch waits out a store that refuses its reads: said once on stderr, given up on
    after `STORE_OUTAGE_SECONDS`."""

    def tell(text: str | None) -> None:
        if text is None:
            print_err(f"reading run {run_id} again")
        else:
            print_err(f"{text} (Ctrl-C stops watching; the run is not affected)")

    return StoreOutage(run_id, tell, give_up_after=STORE_OUTAGE_SECONDS)


def _read(
    store: WorkflowPersistence, run_id: str, after: int
) -> tuple[list[StoredEvent], int, WorkflowRun | None]:
    """The run's stored events after `after` (and the new last seq); its row when there are none."""
    rows, last_seq = read_stored(store, run_id, after, READ_ROWS)
    return rows, last_seq, None if rows else store.get_run(run_id)


class _HeldChildren:
    """The quiet stored events (start, steps, output, notes, successful ends) of the fan-out children
    `model` folds lazily, kept as stored and decoded only if the model asks for them (its
    `upstream`: the child failed or warned, is running when a frame is drawn, or a line names
    it) — as the dashboard's bridge holds them. Neither the live view nor `--progress quiet`
    prints them, and decoding them was most of a finished 10,000-item run's `watch`."""

    def __init__(self, model: RunModel) -> None:
        self.model = model
        self._held: dict[str, list[StoredEvent]] = {}
        self._settled: OrderedDict[str, list[StoredEvent]] = OrderedDict()  # ended well, latest last
        model.upstream = self._release

    def hold(self, row: StoredEvent) -> bool:
        """Keep `row` (True) when it is a quiet event of a child the model folds lazily."""
        run_id = row.event_run_id
        if not self.model.folds_lazily(run_id) or not quiet_stored(row.kind, row.payload):
            return False
        self._held.setdefault(run_id, []).append(row)
        if row.kind == "RunCompleted":  # kept for a look as long as the model keeps such a child
            self._settled[run_id] = self._held.pop(run_id)
            if len(self._settled) > self.model.limits.child_runs:
                self._settled.popitem(last=False)
        return True

    def _release(self, run_id: str) -> list[EngineEventData]:
        rows = self._held.pop(run_id, None) or self._settled.pop(run_id, None) or []
        return [data for data in map(envelope_of, rows) if data is not None]


def _close(printer: Any, out: StdoutGuard) -> None:
    if printer is not None:
        out(printer.close)


def _ended(
    store: WorkflowPersistence,
    run: WorkflowRun,
    printer: Any,
    hints: Hints,
    out: StdoutGuard,
    outage: StoreOutage,
    *,
    stored: bool,
) -> int:
    """What `run` prints at the end (failed steps under the live view, the resume hint), read
    through `outage` as every read of the watch, and the exit status the run's final status gives."""
    _close(printer, out)
    status = RunStatus(run.status)
    if not stored:
        print_err(
            f"run {run.id} has no stored events (it ran before runkon kept them, or with event storage "
            f"off); it ended {status.value} — see: {hints.command('show', run.id)}"
        )
    if status is RunStatus.COMPLETED:
        return EXIT_OK
    print_what_next(
        store,
        run.id,
        run,
        status,
        hints,
        failed_steps=isinstance(printer, LiveView),
        next_steps=printer is not None,
        guard=out,
        read=outage.read,
    )
    return _EXIT.get(status, EXIT_FAILED)


def add_watch_parser(sub: Any) -> None:
    p = sub.add_parser(
        "watch",
        help="follow a run live from any process",
        description=(
            "Print RUN_ID's progress as `run` prints it — everything so far, then live until the run ends — "
            "whichever process executes it. Exit 0 when the run completes, 1 when it fails or is "
            "interrupted (no engine holds it any more), 130 when it is cancelled. A finished run is "
            "printed and the command exits. Ctrl-C stops watching; the run goes on."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    add_db_args(p)
    add_progress_args(p, events=False)
    p.add_argument(
        "--json",
        action="store_true",
        help="print every event as one JSON object per line (the --events format) instead",
    )
    p.set_defaults(handler=cmd_watch)
