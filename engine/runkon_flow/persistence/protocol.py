"""The persistence protocol (engine.md §6.2). Every store — in-memory, SQLite, and later
PostgreSQL — implements exactly this; the engine talks to nothing else.

Ours, beyond the spec (docs/persistence.md): `create_leased_run` and `finish_run` (a child run
costs two run writes instead of six), and write-behind — `durable=False` on the writes the engine
makes for rows nothing recovers from, plus `flush()`. A write-behind write may be queued instead of
committed before the call returns; queued writes are committed in call order, and before any read,
`flush()`, `close()`, or durable write of a row they write or depend on (a fan-out item update
also takes the queued run and step rows along). Its failure is logged instead of raised (a store
that writes at once may raise it). SQLite uses this for group commit; a PostgreSQL store would
pipeline such writes into a later transaction.

Optional, outside the protocol: `try_flush() -> bool` — commit the queue unless another thread is
at the connection, never waiting; True once everything queued before the call is committed. A
store that has it lets a foreach worker queue its item's end and go on (SqliteStore).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from runkon_flow.persistence.models import (
    DeletedRuns,
    FanOutItemRow,
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
    GateApprovalState,
    ItemLineage,
    NewEvent,
    NewRun,
    NewStep,
    RetryRequest,
    RunStatus,
    StepUpdate,
    StoredEvent,
    WorkflowRun,
    WorkflowRunStep,
)


@runtime_checkable
class GateApprovalStore(Protocol):
    def get_gate_approval(self, step_id: str) -> GateApprovalState: ...

    def approve_gate(
        self, step_id: str, approved_by: str, feedback: str | None, selections: list[str] | None
    ) -> None: ...

    def reject_gate(self, step_id: str, rejected_by: str, feedback: str | None) -> None: ...


@runtime_checkable
class WorkflowPersistence(GateApprovalStore, Protocol):
    def create_run(self, new_run: NewRun) -> WorkflowRun: ...

    def create_leased_run(
        self, new_run: NewRun, token: str, ttl_seconds: float, *, durable: bool = True
    ) -> WorkflowRun:
        """Create a run that is already `running` and leased by `token` (generation 1, lease until
        now + ttl) in one write: `create_run`, `acquire_lease` and `update_run_status(running)`
        without the round trips, and without the moment in which another engine could take the
        fresh run. The engine creates its child runs this way."""
        ...

    def get_run(self, run_id: str) -> WorkflowRun | None: ...

    def list_runs(self, limit: int = 500, parent_run_id: str | None = "") -> list[WorkflowRun]:
        """Newest first. `parent_run_id=""` → top-level runs only; None → all runs."""
        ...

    def find_run_ids(self, part: str) -> list[str]:
        """The ids (of all runs, children too) that begin or end with `part` in any case, newest
        first: a short id resolved without reading every run row."""
        ...

    def list_active_runs(self, statuses: list[RunStatus]) -> list[WorkflowRun]: ...

    def update_run_status(
        self, run_id: str, status: RunStatus, result_summary: str | None, error: str | None
    ) -> None: ...

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        result_summary: str | None,
        error: str | None,
        token: str,
        *,
        durable: bool = True,
        on_refused: Callable[[], object] | None = None,
        abandoned: str | None = None,
        ended: list[str] | None = None,
    ) -> bool:
        """Record a run's end and hand its lease back in one write: `update_run_status` with a
        terminal status (anything else is refused), then `release_lease(run_id, token)`. Fenced:
        only while `token` still owns the run (a lapsed lease nobody took counts); else nothing is
        written and False is returned — an engine paused before its end (SIGSTOP, Ctrl-Z) must not
        overwrite the status of the engine that took the run over. A queued write-behind finish
        returns True; if it is fenced when committed, the store logs it and calls `on_refused()`
        on the committing thread (which must not use the store from it), so the caller learns it.
        `abandoned`: when the finish is written, every unfinished run below this one (following
        `parent_workflow_run_id`, `call workflow` children included) is recorded `cancelled`
        with this error, unowned, in the same write — a resumed run ending leaves none of the
        children it did not reach again `running` for good. `ended` (with `abandoned`): filled
        with the ids of the runs it ended, when the finish is written (as
        `end_abandoned_descendants` returns them), so the engine sends each one's end event."""
        ...

    def set_waiting_blocked_on(self, run_id: str, blocked_on: dict) -> None: ...

    def set_rerun_link(
        self, run_id: str, rerun_of: str, rerun_from: str, definition: str = "current"
    ) -> None:
        """Record that `run_id` reruns run `rerun_of` from step `rerun_from` (ours, schema v7)
        with the `definition` chosen, "stored" or "current" (`rerun_definition`, schema v11).
        Unknown run → `PersistenceError`."""
        ...

    def copy_steps(self, source_run_id: str, target_run_id: str, step_ids: Sequence[str]) -> list[str]:
        """Copy the step rows `step_ids` of `source_run_id` into `target_run_id` as they are —
        status, outputs, gate decision, times, node path — under new ids (in the given order), in
        one transaction; returns the new ids. A rerun reuses earlier results this way (schema v7).
        A row of another run, or an unknown target run → `PersistenceError`."""
        ...

    def set_retry_request(self, run_id: str, request: RetryRequest) -> None:
        """Record the retry asked of `run_id` (ours, schema v4; replaces an earlier one). The
        caller holds the run's lease while it writes this; unknown run → `PersistenceError`."""
        ...

    def insert_step(self, new_step: NewStep, *, durable: bool = True) -> str: ...

    def update_step(self, step_id: str, update: StepUpdate, *, durable: bool = True) -> None: ...

    def get_steps(self, run_id: str) -> list[WorkflowRunStep]: ...

    def get_step(self, step_id: str) -> WorkflowRunStep | None: ...

    def find_gate_ids(self, part: str) -> list[str]:
        """The step ids of every gate row (waiting or answered, of any run) that begin or end with
        `part` in any case, oldest first: a short gate id is matched against all of them, so a
        part an answered gate shares is never taken for the one gate still waiting."""
        ...

    def insert_fan_out_item(
        self, step_run_id: str, item_type: str, item_id: str, item_ref: str, context: dict[str, str]
    ) -> str: ...

    def insert_fan_out_items(
        self,
        step_run_id: str,
        items: list[tuple[str, str, str, dict[str, str]]],
        lineage: Sequence[ItemLineage] | None = None,
    ) -> list[str]:
        """Batch form of `insert_fan_out_item` (one transaction); tuples are (type, id, ref, context).
        `lineage`, one per item, gives each new row its attempt number and the child run of the
        attempt before (ours, schema v4); None → every row is a first attempt."""
        ...

    def update_fan_out_item(self, item_id: str, update: FanOutItemUpdate) -> None: ...

    def batch_update_fan_out_items(
        self,
        updates: list[tuple[str, FanOutItemUpdate]],
        *,
        durable: bool = True,
        fence: Fence | None = None,
    ) -> bool:
        """Durable (the default): returns once committed, together with every write-behind write
        queued before it — the engine reports an item finished right after this returns
        (docs/persistence.md, "What completed guarantees after a crash").

        `fence`: the batch applies only while `fence.token` owns `fence.run_id`, checked in the
        transaction that writes it (one look-up per batch, not per item). A refused durable batch
        writes nothing and returns False; a write-behind one returns True at once and, if it is
        refused when committed, is dropped, logged, and `fence.on_refused()` is called. Without
        a fence (or when written) True."""
        ...

    def get_fan_out_items(
        self, step_run_id: str, status_filter: FanOutItemStatus | None = None
    ) -> list[FanOutItemRow]: ...

    def acquire_lease(self, run_id: str, token: str, ttl_seconds: int) -> int | None: ...

    def release_lease(self, run_id: str, token: str) -> None: ...

    def is_run_cancelled(self, run_id: str) -> bool: ...

    def start_run(self, run_id: str, *, resuming: bool) -> RunStatus | None:
        """Mark the run `running` (result, error and end cleared) in one conditional write: a run
        started (`resuming` False) only from `pending`, a resumed one unless it is `cancelling`.
        So a cancel written between an engine's look and this write is never overwritten, and a
        run another engine started meanwhile is not started again. None when this call marked
        it; else the row's status, left as it was. An unknown run is an error."""
        ...

    def end_abandoned_descendants(self, run_id: str, error: str) -> list[str]:
        """Record every unfinished run below `run_id` `cancelled` (with `error`, unowned) in one
        write — except a run a step row names as its child (`call workflow`: resumed in place);
        the ids of the runs it ended (the resuming engine sends each one's end event). Called by a
        resume that has taken `run_id` over: the engine that held it is gone, and its in-flight
        children with it."""
        ...

    def request_cancel(self, run_id: str, error: str | None = None) -> bool:
        """Mark the run `cancelling` unless it has ended, in one write (a run that ends between a
        caller's look and this write keeps its end); whether it was marked. An unknown run is
        an error. `error`: the cancel as the run will read once cancelled (`EngineCancelled`'s
        text, carrying a user's message), kept on the row for the engine that stops the run."""
        ...

    def flush(self) -> None:
        """Commit every queued write-behind (`durable=False`) write now."""
        ...

    # ------------------------------------------------------------------ event log (ours)

    def append_events(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        durable: bool = True,
        generation: int | None = None,
    ) -> bool:
        """Append `events` to the stored stream of the top-level run `run_id`, in order, in one
        write; the store numbers them on from the stream's last `seq` (so a resumed run's events
        follow the earlier ones). Unknown run → `PersistenceError`. Write-behind like the others.
        `generation`: appended only while the run's lease generation is still that one (no other
        engine took the run over since the writer's engine took it; its own end keeps it), checked
        in the append's transaction; else nothing is appended and False is returned (a write-
        behind append refused at its commit is dropped and logged)."""
        ...

    def read_events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The stream's events with `seq > after_seq`, oldest first, at most `limit` of them."""
        ...

    def read_events_at(self, run_id: str, seqs: Sequence[int]) -> list[StoredEvent]:
        """The stream's rows whose `seq` is one of `seqs`, oldest first (a seq the stream does not
        hold is left out), in one read: a reader that knows which rows it needs next (`logs` of a
        big run, `observe.outputs`) reads them together, not a run of rows from each one."""
        ...

    def last_event_seq(self, run_id: str) -> int:
        """The `seq` of the stream's last event (0: none, or no such run): where a reader that
        wants only what comes next starts (the dashboard following a run it just resumed)."""
        ...

    def delete_finished_runs(self, ended_before: str) -> DeletedRuns:
        """Delete every top-level run that ended (completed, failed, cancelled) before the RFC 3339
        time `ended_before`, with its child runs, steps, fan-out items and events, in one
        transaction. Active and interrupted runs are never deleted."""
        ...
