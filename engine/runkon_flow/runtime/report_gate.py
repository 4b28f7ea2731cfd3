"""`ReportGate`: the events of write-behind runs wait until the store has committed what they report.

A foreach child's rows are written behind (queued, committed in groups). Its events — above all
`StepCompleted` — must not reach a sink (live view, dashboard, `--events` file) before the rows
they describe are committed: "reported means durable" (docs/persistence.md). So a write-behind
run hands its events to the gate of its top-level run, in order, and they are delivered once a
commit that covers them has returned: a foreach worker's item write (which takes every queued
row along), a foreach step's end, a run's end, or the run monitor's flush (every 0.1 s).

Protocol: `mark()` before the commit, `release(mark)` after it returns — everything held before
the commit began is then delivered, in the order it was held; `commit_and_deliver` does both
around a store's `flush` or `try_flush`. A run whose queued final write was refused when it was
committed (another engine owns the run now, or a `cancel` ended it from outside) is `refuse`d: its
held `RunCompleted` is delivered as the end the store holds instead (`stopped_child_end`: the
outside cancel, else `RunCancelled(LeaseLost)`) — the end it reported is not the one the store
holds. A fan-out
item whose queued end failed at its commit (a full disk, a read-only file) is `unrecorded`: its
`FanOutItemCompleted` and its child's events are dropped, not delivered. A store
that applies every write at once (`applies_writes_at_once`, the in-memory store) needs no gate.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runkon_flow.cancellation import CancellationReason
from runkon_flow.events import EngineEventData, FanOutItemCompleted, RunCancelled, RunCompleted
from runkon_flow.persistence.models import RunStatus

if TYPE_CHECKING:
    from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = ["ReportGate", "commit_and_deliver", "needs_gate", "stopped_child_end"]

log = logging.getLogger("runkon_flow.engine")


def stopped_child_end(store: WorkflowPersistence, run_id: str, summary: str) -> RunCancelled:
    """The end event of a child run this engine stopped without writing its end (its lease was
    lost, or its final write was refused), for every sink: the cancel its row records when a
    `cancel` ended it from outside (`runkon-flow cancel <child>`, the dashboard's, while this
    engine stood still past its lease), with that cancel's reason and the row's summary — else
    `RunCancelled(LeaseLost)`: the run was handed over or taken over, its row is its new
    holder's (the stored stream keeps a note in its place, event_log.py). One read of the row,
    on this rare path only; a read that fails counts as a lost lease."""
    try:
        row = store.get_run(run_id)
    except Exception as exc:
        log.debug("run %s: could not read its row after its end was not written: %s", run_id, exc)
        row = None
    if row is not None and row.status == RunStatus.CANCELLED:
        reason = CancellationReason.from_error(row.error)
        if reason is not None and reason.kind != "LeaseLost":
            return RunCancelled(reason=reason, summary=row.result_summary)
    return RunCancelled(reason=CancellationReason.of("LeaseLost"), summary=summary)


def needs_gate(store: object) -> bool:
    """True unless the store says every write is applied before the call returns."""
    return not getattr(store, "applies_writes_at_once", False)


class ReportGate:
    """Events held until a commit covers them, delivered in the order they were held.

    No lock is taken to hold an event or to note a commit: every worker of a fan-out does both
    several times per item, and a lock they all take becomes a queue of GIL hand-overs between
    them (docs/engine.md, "Why the fan-out takes no shared lock"). An event gets its sequence
    number from an atomic counter *after* the rows it reports were queued, so a mark taken later
    (a higher number) belongs to a commit that takes those rows along.
    """

    __slots__ = ("_deliver", "_held", "_refused", "_seq", "_unrecorded_items", "_unrecorded_runs", "_wanted")

    def __init__(self) -> None:
        self._deliver = threading.Lock()  # one deliverer at a time, so delivery keeps the order
        self._held: deque[tuple[int, Sequence[Any], EngineEventData]] = deque()
        self._seq = itertools.count()  # event numbers and marks, from one atomic counter
        self._wanted = 0  # the highest mark a release asked for
        # Runs whose final write was refused (see `refuse`), with the store to read their row from.
        self._refused: dict[str, WorkflowPersistence] = {}
        # What a failed commit did not record (see `unrecorded`): never delivered.
        self._unrecorded_items: set[tuple[str, str]] = set()  # (foreach step id, item id)
        self._unrecorded_runs: set[str] = set()  # the child runs of those items

    def refuse(self, run_id: str, store: WorkflowPersistence) -> None:
        """The final write of `run_id` was refused when committed: its `RunCompleted`, held or
        still to come, is delivered as the end `store` holds (`stopped_child_end`, read when it
        is delivered: not here, inside the commit). Called from the commit that refused it,
        before that commit's release, so the event cannot have been delivered yet."""
        self._refused[run_id] = store

    def unrecorded(self, step_id: str, item_id: str, child_run_id: str | None) -> None:
        """A fan-out item's queued end failed at its commit (its database took no writes): its
        `FanOutItemCompleted` and its child run's events, held or still to come, are never
        delivered — reported means durable, and this was not recorded (the item runs again on
        resume). Called from that commit, before its release, like `refuse`; no lock: one set
        entry each, atomic in CPython."""
        self._unrecorded_items.add((step_id, item_id))
        if child_run_id:
            self._unrecorded_runs.add(child_run_id)

    def _recorded(self, data: EngineEventData) -> bool:
        """Whether `data` reports nothing a failed commit left unrecorded (`unrecorded`)."""
        if data.run_id in self._unrecorded_runs:
            return False
        event = data.event
        if isinstance(event, FanOutItemCompleted):
            return (event.step_id, event.item_id) not in self._unrecorded_items
        return True

    def hold(self, sinks: Sequence[Any], run_id: str, event: Any) -> None:
        """Keep `event` (timestamped now) for `sinks` until a commit that starts later returns."""
        if not sinks:
            return
        data = EngineEventData.now(run_id, event)
        self._held.append((next(self._seq), sinks, data))

    def mark(self) -> int:
        """Call before a commit: everything held so far is covered by it."""
        return next(self._seq)

    def release(self, mark: int, *, wait: bool = True) -> None:
        """Call after that commit returned: deliver every event held before `mark`.

        `wait=False` (a fan-out worker after its item's commit): when another thread is
        delivering, leave the events to it — it delivers up to the highest mark asked for before
        it stops — instead of queueing behind it. If two such calls race, an event can wait for
        the next release (the next item's, the step's end, or the run monitor's tick).

        `wait=True` returns only once nothing held before `mark` is still being delivered: with
        nothing left held it still waits for a deliverer that took the last events off (the run
        monitor's tick, slowed by a loaded machine). A run's end, emitted right after its final
        release, came before its last child's end — a hooks file saw the child's end as a second
        top-level `workflow_run.completed`."""
        if not self._held and not wait:
            return
        if mark > self._wanted:
            self._wanted = mark
        if not self._deliver.acquire(blocking=wait):
            return
        try:
            held = self._held
            while True:
                upto = max(self._wanted, mark)
                batch = []
                while held and held[0][0] < upto:
                    batch.append(held.popleft())
                if not batch:
                    return
                refused = self._refused
                unrecorded = self._unrecorded_items or self._unrecorded_runs
                for _, sinks, data in batch:
                    if unrecorded and not self._recorded(data):
                        continue
                    if refused and data.run_id in refused:
                        data = self._as_lost(data)
                    for sink in sinks:
                        try:
                            sink.emit(data)
                        except Exception:
                            log.exception(
                                "event sink %r raised on %s; continuing with remaining sinks",
                                sink,
                                data.event.type,
                            )
        finally:
            self._deliver.release()

    def _as_lost(self, data: EngineEventData) -> EngineEventData:
        """A refused run's end as what it is: cancelled from outside, or lost to another engine
        (`stopped_child_end`; after the refusing commit returned, so its row can be read)."""
        event = data.event
        if not isinstance(event, RunCompleted | RunCancelled):
            return data
        store = self._refused.pop(data.run_id)
        return data.model_copy(update={"event": stopped_child_end(store, data.run_id, event.summary)})


def commit_and_deliver(gate: ReportGate | None, commit: Callable[[], object], *, wait: bool = True) -> None:
    """Run `commit` (a store's `flush`, or `try_flush`), then deliver from `gate` what it covered
    — unless it answers False: `try_flush` left the queue to the thread at the connection, and
    that thread's caller (or the next one) delivers it. No gate: nothing is held, only commit."""
    if gate is None:
        commit()
        return
    mark = gate.mark()
    if commit() is not False:
        gate.release(mark, wait=wait)
