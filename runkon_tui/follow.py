"""Following a run the dashboard does not host: its stored events, read from the store on a thread
and handed to the same EventBridge the dashboard's own engine feeds, so an attached run is drawn
by exactly the code that draws a run started here (docs/dashboard.md, "Runs held elsewhere").

`StoreFollower.run()` loops on its own thread: read the stream after the last `seq` (every
`interval` seconds, at once again while there is more), emit each event into the sink, and judge
the run from its row when caught up: ended (its final event read, or the row ended a few seconds
ago), or interrupted (its lease lapsed, or was let go of and nobody took it within `grace`). It then calls
`on_end(status)` once — `completed`, `failed`, `cancelled` or `interrupted` — and stops; for an
interrupted run `stopped_at` then holds where its clock stopped (`liveness.stopped_at`, the time
`runs` and `show` give it). A read the store refuses (a PostgreSQL server restarted or out of
reach) does not end the following — `watch`'s rule, runkon_flow.observe.outage, without its time
limit: `on_problem(text)` is told once, the reads are tried again every second, and
`on_problem(None)` once they succeed again — the run is then judged from its row as ever (its
runner may have died meanwhile: interrupted). Before, the follower's thread died on the first such
error and the run stayed "running" on screen for good.
A run a runner started here is about to resume or retry (`runner`) is not judged at all until
that runner holds its lease (or has exited). Pure: no Textual.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from runkon_flow.errors import STORE_STOPPED
from runkon_flow.event_log import READ_ROWS, read_stored
from runkon_flow.observe.liveness import lease_is_live, stopped_at
from runkon_flow.observe.outage import StoreOutage
from runkon_flow.persistence.holders import holder_of
from runkon_flow.persistence.models import RunStatus, StoredEvent, WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence

END_GRACE_S = 3.0


class Runner(Protocol):
    """The background runner process a run was handed to (a `subprocess.Popen`)."""

    pid: int

    def poll(self) -> int | None: ...


class StoredEventSink(Protocol):
    """Takes a followed run's events as stored (the dashboard's `EventBridge`), so that it decodes
    only what it draws."""

    def emit_stored(self, row: StoredEvent) -> None: ...


class StoreFollower:
    """Feeds `sink` with run `run_id`'s stored events until the run ends or `stop()`."""

    def __init__(
        self,
        store: WorkflowPersistence,
        run_id: str,
        sink: StoredEventSink,
        on_end: Callable[[str], None],
        *,
        interval: float = 0.25,
        grace: float = 5.0,
        runner: Runner | None = None,
        after_seq: int = 0,
        on_problem: Callable[[str | None], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.sink = sink
        self.on_end = on_end
        self.interval = interval
        self.grace = grace
        self.last_seq = after_seq
        self._stop = threading.Event()
        self.started_at = time.time()  # wall time: a run's end stamped before it is history
        self._final_seen = False
        self.stopped_at: float | None = None
        #: Why an interrupted run stopped, when its row says its run database could record nothing
        #: more (`runkon_flow.errors.stopped_for_store`); None otherwise.
        self.stopped_why: str | None = None
        #: A run just handed to a runner (started, resumed or retried) still reads as it was —
        #: pending, ended, or held by a dead engine's lapsed lease — until that runner holds its
        #: lease: nothing is judged while the runner is alive and has not been seen holding it.
        self.runner = runner
        self._taken = runner is None
        self.on_problem = on_problem
        self._outage = StoreOutage(run_id, self._tell)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        # A failed read starts the following again from the last event read.
        self._outage.read(self._follow, wait=self._stop.wait)

    def _tell(self, text: str | None) -> None:
        if self.on_problem is not None and not self._stop.is_set():
            self.on_problem(text)

    def _follow(self) -> None:
        ended_since: float | None = None
        released_since: float | None = None
        emit_stored = self.sink.emit_stored
        while not self._stop.is_set():
            rows, self.last_seq = read_stored(self.store, self.run_id, self.last_seq, READ_ROWS)
            self._outage.over()
            for row in rows:
                if row.event_run_id == self.run_id:
                    kind = row.kind
                    if kind in ("RunCompleted", "RunCancelled"):
                        self._final_seen = True
                    elif kind in ("RunStarted", "RunResumed"):
                        self._final_seen = False
                emit_stored(row)
            if rows:
                continue
            run = self.store.get_run(self.run_id)
            if run is None:
                return self._end("interrupted")
            status = RunStatus(run.status)
            now = time.monotonic()
            self._taken = self._taken or self._runner_holds(run) or self._runner_gone()
            if not self._taken:
                ended_since = released_since = None  # as it was before: the runner has not taken it
            elif status.is_terminal:
                ended_since = ended_since or now
                if self._final_seen or now - ended_since > END_GRACE_S:
                    return self._end(status.value)
            elif status is not RunStatus.PENDING and not lease_is_live(run):
                # A lapsed lease: its engine is gone. A lease let go of (no owner): a hand-over to
                # a background runner, which takes the run within a moment — wait `grace` for it.
                released_since = released_since or now
                if run.owner_token is not None or now - released_since > self.grace:
                    self.stopped_at = stopped_at(run, self.store.get_steps(self.run_id))
                    if run.error and run.error.startswith(STORE_STOPPED):
                        self.stopped_why = run.error
                    return self._end("interrupted")
            else:
                released_since = None
            self._stop.wait(self.interval)
        return None

    def _runner_holds(self, run: WorkflowRun) -> bool:
        holder = holder_of(run.owner_token)
        return (
            self.runner is not None
            and holder is not None
            and holder.pid == self.runner.pid
            and lease_is_live(run)
        )

    def _runner_gone(self) -> bool:
        return self.runner is not None and self.runner.poll() is not None

    def _end(self, status: str) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.on_end(status)
