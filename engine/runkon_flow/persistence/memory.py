"""An in-memory `WorkflowPersistence` for tests, dry runs and single-process use.

Every write is applied before the call returns (`durable=False` changes nothing here).

It follows the same rules as the SQLite store (engine.md §6.2, docs/persistence.md) so behaviour
tests written against one hold for the other. Rows are copied on the way in and out, so callers
can never mutate stored state by accident.

Locking: there is no lock over the whole store. A fan-out's workers write rows of different child
runs all at once, and one lock taken by all of them (five times per item) turned into a queue of
GIL hand-overs between two cores — most of the fan-out's time (docs/engine.md, "Why the fan-out
takes no shared lock"). Instead:

* a run's rows — the run, its steps, their index, its events, its lease — change under that
  run's lock, one of `_STRIPES` locks chosen by the run id (runs of one fan-out rarely share one);
  a fan-out item row under the lock its own id picks (the workers of one fan-out write items of
  one step at once);
* the tables themselves are dicts changed by single operations, which the GIL makes atomic, and
  read whole only through a copy made in one step (`list(d.values())`), never by iterating them
  while another thread may insert;
* a row is copied out under its lock, so a reader never sees half of a write.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

from runkon_flow.errors import PersistenceError
from runkon_flow.persistence import _shared as sh
from runkon_flow.persistence.models import (
    FAILED_STEP_STATUSES,
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
    StepRole,
    StepStatus,
    StepUpdate,
    StoredEvent,
    WorkflowRun,
    WorkflowRunStep,
    events_in_row,
)

_ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING)
_NO_CONTEXT: dict[str, str] = {}  # the context of every item row without one (never changed in place)
_STARTED_AT = operator.attrgetter("started_at")  # newest first: by start, then by creation (dict order)
_new_tuple = tuple.__new__  # a StoredEvent without NamedTuple's Python-level __new__
_STRIPES = 64  # row locks; with 8 workers two rarely want the same one at once


class InMemoryStore:
    """Thread-safe in-process store; `clock` is injectable so lease expiry can be tested instantly."""

    applies_writes_at_once = True  # every write, durable=False included, is applied before returning

    def __init__(self, *, clock: sh.Clock = sh.system_clock) -> None:
        self._clock = clock
        self._now = sh.now_function(clock)
        self._lock = threading.Lock()  # operations over many runs (deleting) among themselves
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        self._runs: dict[str, WorkflowRun] = {}
        self._lease_expiry: dict[str, float] = {}  # run id -> lease end, Unix seconds
        self._steps: dict[str, WorkflowRunStep] = {}
        # run id -> its step ids in insertion order: one id as a plain string (most child runs have
        # one step; a list per run is ~90 bytes of a 100,000-item fan-out's memory each), a list from
        # the second on. Read it through `_step_ids`.
        self._steps_by_run: dict[str, str | list[str]] = {}
        self._items: dict[str, FanOutItemRow] = {}
        self._items_by_step: dict[str, list[str]] = {}
        self._item_keys: dict[tuple[str, str, str], str] = {}
        self._events: dict[str, list[StoredEvent]] = {}

    def _guard(self, key: str) -> threading.Lock:
        """The lock of a run's rows (key: the run id) or of one fan-out item row (its id)."""
        return self._stripes[hash(key) % _STRIPES]

    def _guards(self, keys: Sequence[str]) -> contextlib.AbstractContextManager[object]:
        """The locks of several runs' rows at once, taken in one order (no other write holds two
        stripes, so this cannot deadlock). One run's (every fan-out child's `finish_run`) is its
        stripe's lock itself: no generator and ExitStack per child run."""
        if len(keys) == 1:
            return self._guard(keys[0])
        return self._stripes_held(sorted({hash(key) % _STRIPES for key in keys}))

    @contextlib.contextmanager
    def _stripes_held(self, stripes: list[int]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for i in stripes:
                stack.enter_context(self._stripes[i])
            yield

    def _copied_run(self, run: WorkflowRun) -> WorkflowRun:
        with self._guard(run.id):
            return _copy_run(run)

    # ------------------------------------------------------------------ runs

    def create_run(self, new_run: NewRun) -> WorkflowRun:
        return self._insert_run(sh.new_run_row(new_run, self._now()))

    def create_leased_run(
        self, new_run: NewRun, token: str, ttl_seconds: float, *, durable: bool = True
    ) -> WorkflowRun:
        """A new run already `running`, leased by `token` (generation 1) — one write."""
        sh.check_ttl(ttl_seconds)
        if self._clock is sh.system_clock:
            until, until_text = sh.rfc3339_in(ttl_seconds)
        else:
            moment = self._clock() + timedelta(seconds=ttl_seconds)
            until, until_text = moment.timestamp(), sh.rfc3339(moment)
        run = sh.new_run_row(
            new_run,
            self._now(),
            status=RunStatus.RUNNING,
            owner_token=token,
            lease_until=until_text,
            generation=1,
        )
        return self._insert_run(run, until)

    def _insert_run(self, run: WorkflowRun, lease_expiry: float | None = None) -> WorkflowRun:
        with self._guard(run.id):
            if self._runs.setdefault(run.id, run) is not run:
                raise PersistenceError(f"run {run.id} already exists")
            if lease_expiry is not None:
                self._lease_expiry[run.id] = lease_expiry
            return _copy_run(run)

    def get_run(self, run_id: str) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        return self._copied_run(run) if run is not None else None

    def list_runs(self, limit: int = 500, parent_run_id: str | None = "") -> list[WorkflowRun]:
        """Newest first; "" → runs without a parent, None → all runs, an id → that run's children."""
        runs = [r for r in reversed(list(self._runs.values())) if _parent_matches(r, parent_run_id)]
        runs.sort(key=_STARTED_AT, reverse=True)  # stable: equal times stay newest-created first
        return [self._copied_run(r) for r in runs[: max(limit, 0)]]

    def find_run_ids(self, part: str) -> list[str]:
        """Ids beginning or ending with `part` in any case, newest first (see the protocol)."""
        part = part.upper()
        runs = [
            r
            for r in reversed(list(self._runs.values()))
            if r.id.upper().startswith(part) or r.id.upper().endswith(part)
        ]
        runs.sort(key=_STARTED_AT, reverse=True)
        return [r.id for r in runs]

    def list_active_runs(self, statuses: list[RunStatus]) -> list[WorkflowRun]:
        """Runs in any of `statuses` (empty list → pending/running/waiting), newest first."""
        wanted = {RunStatus(s) for s in statuses} or set(_ACTIVE)
        runs = [self._copied_run(r) for r in reversed(list(self._runs.values())) if r.status in wanted]
        runs = [r for r in runs if r.status in wanted]  # as copied: a status may have moved meanwhile
        runs.sort(key=_STARTED_AT, reverse=True)
        return runs

    def update_run_status(
        self, run_id: str, status: RunStatus, result_summary: str | None, error: str | None
    ) -> None:
        status = RunStatus(status)
        if status is RunStatus.WAITING:
            raise PersistenceError(sh.WAITING_REJECTED)
        ended_at = self._now() if status.is_terminal else None
        with self._guard(run_id):
            _record_status(self._run(run_id), status, result_summary, error, ended_at)

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
        """The final status and the lease release in one step (terminal statuses only), while
        `token` owns the run. Every write applies at once: a refused finish returns False, and
        `on_refused` is never called. `abandoned`: the runs below are ended in the same step (under
        their locks and the run's, taken together), as the SQL stores' one transaction: a reader
        that sees the run ended sees them ended — before, they were ended after it, and a resume in
        between could take over a child still running that was then cancelled under it."""
        status = sh.check_finish_status(status)
        now = self._now()
        below = self._below(run_id, called_too=True) if abandoned is not None else []
        with self._guards([run_id, *below]):
            run = self._run(run_id)
            if run.owner_token != token:
                return False
            _record_status(run, status, result_summary, error, now)
            self._release(run_id, token)
            if abandoned is not None:
                below = self._end(below, abandoned, now)
                if ended is not None:
                    ended[:] = below
        return True

    def set_retry_request(self, run_id: str, request: RetryRequest) -> None:
        with self._guard(run_id):
            self._run(run_id).retry_request = request.to_json()

    def set_rerun_link(
        self, run_id: str, rerun_of: str, rerun_from: str, definition: str = "current"
    ) -> None:
        with self._guard(run_id):
            run = self._run(run_id)
            run.rerun_of, run.rerun_from, run.rerun_definition = rerun_of, rerun_from, definition

    def copy_steps(self, source_run_id: str, target_run_id: str, step_ids: Sequence[str]) -> list[str]:
        with self._guard(source_run_id):  # the source rows, read whole
            rows = [self._steps.get(step_id) for step_id in step_ids]
            for step_id, row in zip(step_ids, rows, strict=True):
                if row is None or row.workflow_run_id != source_run_id:
                    raise PersistenceError(f"step {step_id} is not a step of run {source_run_id}")
            copies = [
                dataclasses.replace(row, id=sh.new_ordered_id(), workflow_run_id=target_run_id)  # type: ignore[arg-type]
                for row in rows
            ]
        with self._guard(target_run_id):
            self._run(target_run_id)
            for copy_ in copies:
                self._steps[copy_.id] = copy_
                self._index_step(target_run_id, copy_.id)
        return [c.id for c in copies]

    def set_waiting_blocked_on(self, run_id: str, blocked_on: dict) -> None:
        """The only way into `waiting`: status and what the run waits for change together."""
        snapshot = copy.deepcopy(blocked_on)
        with self._guard(run_id):
            run = self._run(run_id)
            run.status = RunStatus.WAITING
            run.blocked_on = snapshot
            run.ended_at = None

    def end_abandoned_descendants(self, run_id: str, error: str) -> list[str]:
        below = self._below(run_id, called_too=False)
        with self._guards(below):
            return self._end(below, error, self._now())

    def _below(self, run_id: str, *, called_too: bool) -> list[str]:
        """The runs below `run_id` (by `parent_workflow_run_id`, as the SQL backends'
        ABANDONED_DESCENDANTS follows) — less those a step row names as its child (`call
        workflow`, resumed in place) unless `called_too`."""
        with self._lock:
            steps = [] if called_too else list(self._steps.values())
            resumed_in_place = {s.child_run_id for s in steps if s.child_run_id}
            below = sh.descendants([run_id], self._children_index(workflow_parent_only=True))[1:]
        return [child_id for child_id in below if child_id not in resumed_in_place]

    def _end(self, run_ids: list[str], error: str, now: str) -> list[str]:
        """Under the runs' locks: record the unfinished ones cancelled (unowned); their ids."""
        ended = []
        for child_id in run_ids:
            run = self._runs.get(child_id)
            if run is None or run.status.is_terminal:
                continue
            _record_status(run, RunStatus.CANCELLED, run.result_summary, error, now)
            self._release(child_id, run.owner_token)
            ended.append(child_id)
        return ended

    def request_cancel(self, run_id: str, error: str | None = None) -> bool:
        with self._guard(run_id):
            run = self._run(run_id)
            if run.status.is_terminal:
                return False
            _record_status(run, RunStatus.CANCELLING, None, error, None)
            return True

    def start_run(self, run_id: str, *, resuming: bool) -> RunStatus | None:
        with self._guard(run_id):
            run = self._run(run_id)
            only, statuses = sh.startable(resuming)
            if (run.status.value in statuses) != only:
                return run.status
            _record_status(run, RunStatus.RUNNING, None, None, None)
            if not resuming:
                run.started_at = self._now()  # the run starts now, not when its row was written
            return None

    def is_run_cancelled(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        return run is not None and run.status in (RunStatus.CANCELLED, RunStatus.CANCELLING)

    def flush(self) -> None:
        """Nothing to do: every write, `durable=False` included, is applied before the call returns."""

    def _run(self, run_id: str) -> WorkflowRun:
        run = self._runs.get(run_id)
        if run is None:
            raise PersistenceError(f"run {run_id} not found")
        return run

    # ------------------------------------------------------------------ leases

    def acquire_lease(self, run_id: str, token: str, ttl_seconds: float) -> int | None:
        """Take or renew the run's lease; the generation moves only when the owner changes."""
        sh.check_ttl(ttl_seconds)
        now = self._clock()
        with self._guard(run_id):
            run = self._runs.get(run_id)
            if run is None:
                return None
            expiry = self._lease_expiry.get(run_id)
            free = run.owner_token is None or expiry is None or expiry < now.timestamp()
            if not free and run.owner_token != token:
                return None
            if run.owner_token != token:
                run.generation += 1
            run.owner_token = token
            until = now + timedelta(seconds=ttl_seconds)
            self._lease_expiry[run_id] = until.timestamp()
            run.lease_until = sh.rfc3339(until)
            return run.generation

    def release_lease(self, run_id: str, token: str) -> None:
        """Hand the run back (clean shutdown) so another engine can take it without waiting."""
        with self._guard(run_id):
            self._release(run_id, token)

    def _release(self, run_id: str, token: str | None) -> None:
        """Under the run's lock: clear the lease if `token` still holds it."""
        run = self._runs.get(run_id)
        if run is not None and run.owner_token == token:
            run.owner_token = None
            run.lease_until = None
            self._lease_expiry.pop(run_id, None)

    # ------------------------------------------------------------------ steps

    def insert_step(self, new_step: NewStep, *, durable: bool = True) -> str:
        sh.check_role(new_step.role)
        running = new_step.retry_count is not None
        step = WorkflowRunStep(
            id=sh.new_ordered_id(),
            workflow_run_id=new_step.workflow_run_id,
            step_name=new_step.step_name,
            role=new_step.role,
            can_commit=new_step.can_commit,
            status=StepStatus.RUNNING if running else StepStatus.PENDING,
            position=new_step.position,
            iteration=new_step.iteration,
            started_at=self._now() if running else None,
            retry_count=new_step.retry_count or 0,
            gate_type=new_step.gate_type,
            gate_prompt=new_step.gate_prompt,
            gate_timeout=new_step.gate_timeout,
            gate_options=new_step.gate_options,
            node_path=new_step.node_path,
        )
        with self._guard(step.workflow_run_id):
            self._run(step.workflow_run_id)
            self._steps[step.id] = step
            self._index_step(step.workflow_run_id, step.id)
        return step.id

    def _index_step(self, run_id: str, step_id: str) -> None:
        """Record `step_id` under its run (a run with one step keeps the bare id: no list)."""
        known = self._steps_by_run.get(run_id)
        if known is None:
            self._steps_by_run[run_id] = step_id
        elif type(known) is str:
            self._steps_by_run[run_id] = [known, step_id]
        else:
            known.append(step_id)

    def update_step(self, step_id: str, update: StepUpdate, *, durable: bool = True) -> None:
        """Generation-guarded (stale → LeaseLost); a terminal row is never overwritten."""
        status = update.status
        if type(status) is not StepStatus:  # the engine passes members: no Enum lookup per write
            status = StepStatus(status)
        now = self._now()
        step = self._step(step_id)
        with self._guard(step.workflow_run_id):
            if self._runs[step.workflow_run_id].generation != update.generation:
                raise sh.lease_cancelled()
            if step.status.is_terminal:
                return
            step.status = status
            if status.is_starting:
                step.child_run_id = update.child_run_id
                step.started_at = now
            elif status.is_terminal:
                step.ended_at = now
                step.result_text = update.result_text
                step.context_out = update.context_out
                step.markers_out = update.markers_out
                step.structured_output = update.structured_output
                step.step_error = update.step_error
                if update.child_run_id is not None:
                    step.child_run_id = update.child_run_id
                if update.retry_count is not None:
                    step.retry_count = update.retry_count
                if update.usage is not None:
                    step.usage = update.usage
                if update.fan_out is not None:
                    total, completed, failed, skipped = update.fan_out
                    step.fan_out_total, step.fan_out_completed = total, completed
                    step.fan_out_failed, step.fan_out_skipped = failed, skipped

    def get_steps(self, run_id: str) -> list[WorkflowRunStep]:
        """Ordered by position; rows at the same position (retries) in insertion order."""
        with self._guard(run_id):
            steps = [copy.copy(self._steps[i]) for i in self._step_ids(run_id)]
        steps.sort(key=lambda s: s.position)
        return steps

    def get_step(self, step_id: str) -> WorkflowRunStep | None:
        step = self._steps.get(step_id)
        if step is None:
            return None
        with self._guard(step.workflow_run_id):
            return copy.copy(step)

    def find_gate_ids(self, part: str) -> list[str]:
        """Gate step ids beginning or ending with `part` in any case, oldest first (the protocol)."""
        part = part.upper()
        ids = [
            s.id
            for s in list(self._steps.values())
            if s.role == StepRole.GATE.value
            and (s.id.upper().startswith(part) or s.id.upper().endswith(part))
        ]
        return sorted(ids)

    def _step_ids(self, run_id: str) -> Sequence[str]:
        ids = self._steps_by_run.get(run_id, ())
        return (ids,) if type(ids) is str else ids

    def _step(self, step_id: str) -> WorkflowRunStep:
        step = self._steps.get(step_id)
        if step is None:
            raise PersistenceError(f"step {step_id} not found")
        return step

    # ------------------------------------------------------------------ gates

    def get_gate_approval(self, step_id: str) -> GateApprovalState:
        step = self._steps.get(step_id)
        if step is None:
            return GateApprovalState.pending()
        with self._guard(step.workflow_run_id):
            return sh.approval_state(
                step.gate_approved_at,
                step.status,
                step.gate_feedback,
                step.gate_selections,
                step.gate_approved_by,
            )

    def approve_gate(
        self, step_id: str, approved_by: str, feedback: str | None, selections: list[str] | None
    ) -> None:
        now = self._now()
        step = self._step(step_id)
        with self._guard(step.workflow_run_id):
            if step.status.is_terminal:
                raise sh.gate_already_resolved(step_id, step.status)
            sh.validate_gate_selections(step_id, step.gate_options, selections or [])
            step.gate_approved_at = now
            step.gate_approved_by = approved_by
            step.gate_feedback = feedback
            step.gate_selections = sh.dump_json(list(selections)) if selections is not None else None
            if selections:
                step.context_out = sh.selection_context(selections)
            step.status = StepStatus.COMPLETED
            step.ended_at = now

    def reject_gate(self, step_id: str, rejected_by: str, feedback: str | None) -> None:
        now = self._now()
        step = self._step(step_id)
        with self._guard(step.workflow_run_id):
            if step.status.is_terminal:
                raise sh.gate_already_resolved(step_id, step.status)
            step.gate_approved_by = rejected_by
            step.gate_feedback = feedback
            step.status = StepStatus.FAILED
            step.ended_at = now

    # ------------------------------------------------------------------ fan-out items

    def insert_fan_out_item(
        self, step_run_id: str, item_type: str, item_id: str, item_ref: str, context: dict[str, str]
    ) -> str:
        """Idempotent on (step, type, id): a repeat returns the existing row's id untouched."""
        return self.insert_fan_out_items(step_run_id, [(item_type, item_id, item_ref, context)])[0]

    def insert_fan_out_items(
        self,
        step_run_id: str,
        items: list[tuple[str, str, str, dict[str, str]]],
        lineage: Sequence[ItemLineage] | None = None,
    ) -> list[str]:
        ids: list[str] = []
        lines = lineage if lineage is not None else [ItemLineage()] * len(items)
        if len(lines) != len(items):
            raise ValueError("insert_fan_out_items: one lineage per item")
        with self._guard(self._step(step_run_id).workflow_run_id):
            order = self._items_by_step.setdefault(step_run_id, [])
            for (item_type, item_id, item_ref, context), line in zip(items, lines, strict=True):
                key = (step_run_id, item_type, item_id)
                existing = self._item_keys.get(key)
                if existing is not None:
                    ids.append(existing)
                    continue
                row = FanOutItemRow(
                    id=sh.new_ordered_id(),
                    step_run_id=step_run_id,
                    item_type=item_type,
                    item_id=item_id,
                    item_ref=item_ref,
                    context=dict(context) if context else _NO_CONTEXT,
                    attempt=line.attempt,
                    previous_child_run_id=line.previous_child_run_id,
                )
                self._items[row.id] = row
                self._item_keys[key] = row.id
                order.append(row.id)
                ids.append(row.id)
        return ids

    def update_fan_out_item(self, item_id: str, update: FanOutItemUpdate) -> None:
        now = self._now()
        row = self._items.get(item_id)
        if row is None:
            raise PersistenceError(f"fan-out item {item_id} not found")
        with self._guard(item_id):
            _apply_item_update(row, update, now)

    def batch_update_fan_out_items(
        self,
        updates: list[tuple[str, FanOutItemUpdate]],
        *,
        durable: bool = True,
        fence: Fence | None = None,
    ) -> bool:
        """All or nothing: an unknown item id fails the batch before any row changes. Every write
        applies at once: a fenced batch is refused with False (`on_refused` is never called).
        The owner is checked, then the rows written: one run's guard is not held across the
        items' (two batches of two runs could wait for each other's stripes), and nothing but
        this process can take a run over between the two."""
        if fence is not None:
            with self._guard(fence.run_id):
                run = self._runs.get(fence.run_id)
                if run is None or run.owner_token != fence.token:
                    sh.log.warning(sh.ITEMS_FENCED, fence.run_id, len(updates))
                    return False
        now = self._now()
        items = self._items
        rows = [items.get(item_id) for item_id, _ in updates]
        for (item_id, _), row in zip(updates, rows, strict=True):
            if row is None:
                raise PersistenceError(f"fan-out item {item_id} not found")
        for (item_id, update), row in zip(updates, rows, strict=True):
            with self._guard(item_id):
                _apply_item_update(row, update, now)  # type: ignore[arg-type]
        return True

    def get_fan_out_items(
        self, step_run_id: str, status_filter: FanOutItemStatus | None = None
    ) -> list[FanOutItemRow]:
        """Insertion order; optionally only items in `status_filter`."""
        wanted = FanOutItemStatus(status_filter) if status_filter is not None else None
        out: list[FanOutItemRow] = []
        items = self._items
        for item_id in list(self._items_by_step.get(step_run_id, ())):
            row = items.get(item_id)
            if row is None:
                continue  # deleted meanwhile
            with self._guard(item_id):
                if wanted is None or row.status == wanted:
                    out.append(_copy_item(row))
        return out

    def item_child_usage(self, step_run_id: str) -> list[tuple[str, str]]:
        """(child run id, usage JSON) of the step rows of a foreach step row's items' child runs
        that reported usage (as `SqliteStore.item_child_usage`)."""
        children = {row.child_run_id for row in self.get_fan_out_items(step_run_id) if row.child_run_id}
        return [(run_id, s.usage) for run_id in children for s in self.get_steps(run_id) if s.usage]

    def item_child_failed_steps(self, step_run_id: str) -> list[WorkflowRunStep]:
        """The step rows that failed with an error in the child runs of a foreach step row's
        items (as `SqliteStore.item_child_failed_steps`)."""
        children = {row.child_run_id for row in self.get_fan_out_items(step_run_id) if row.child_run_id}
        return [
            s
            for run_id in children
            for s in self.get_steps(run_id)
            if str(s.status) in FAILED_STEP_STATUSES and s.step_error
        ]

    # ------------------------------------------------------------------ event log

    def append_events(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        durable: bool = True,
        generation: int | None = None,
    ) -> bool:
        """Numbered on from the stream's last `seq`; an unknown run is an error; with a
        `generation`, appended only while the run's is that one."""
        with self._guard(run_id):
            run = self._run(run_id)
            if generation is not None and run.generation != generation:
                sh.log.warning(sh.EVENTS_FENCED, run_id, len(events))
                return False
            stream = self._events.setdefault(run_id, [])
            seq = stream[-1].seq if stream else 0
            stream.extend(
                _new_tuple(StoredEvent, (run_id, seq + offset, e.ts, e.event_run_id, e.kind, e.payload))
                for offset, e in enumerate(events, 1)
            )
        return True

    def read_events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        with self._guard(run_id):
            stream = self._events.get(run_id, [])
            start = bisect.bisect_right(stream, after_seq, key=lambda e: e.seq)
            end = len(stream) if limit is None else start + max(limit, 0)
            return stream[start:end]

    def read_events_at(self, run_id: str, seqs: Sequence[int]) -> list[StoredEvent]:
        with self._guard(run_id):
            stream = self._events.get(run_id, [])
            out = []
            for seq in sorted(set(seqs)):
                at = bisect.bisect_left(stream, seq, key=lambda e: e.seq)
                if at < len(stream) and stream[at].seq == seq:
                    out.append(stream[at])
            return out

    def last_event_seq(self, run_id: str) -> int:
        with self._guard(run_id):
            stream = self._events.get(run_id)
            return stream[-1].seq if stream else 0

    def delete_finished_runs(self, ended_before: str) -> DeletedRuns:
        """Terminal top-level runs ended before `ended_before`, with every descendant and its rows;
        a run whose lease is live is kept (a retry or resume has taken it)."""
        now = self._clock().timestamp()
        with self._lock:
            roots = [
                r.id
                for r in list(self._runs.values())
                if r.status.is_terminal
                and r.ended_at is not None
                and r.ended_at < ended_before
                and _parent_matches(r, "")
                and (r.owner_token is None or self._lease_expiry.get(r.id, now - 1) < now)
            ]
            doomed = sh.descendants(roots, self._children_index())
            steps = [s for run_id in doomed for s in self._step_ids(run_id)]
            items = [i for s in steps for i in self._items_by_step.get(s, ())]
            events = sum(
                events_in_row(e.kind, e.event_run_id, e.payload)
                for run_id in doomed
                for e in self._events.get(run_id, ())
            )
            for item_id in items:
                row = self._items.pop(item_id)
                self._item_keys.pop((row.step_run_id, row.item_type, row.item_id), None)
            for step_id in steps:
                self._items_by_step.pop(step_id, None)
                del self._steps[step_id]
            for run_id in doomed:
                del self._runs[run_id]
                self._lease_expiry.pop(run_id, None)
                self._steps_by_run.pop(run_id, None)
                self._events.pop(run_id, None)
            return DeletedRuns(len(roots), len(doomed) - len(roots), len(steps), len(items), events)

    def _children_index(self, *, workflow_parent_only: bool = False) -> dict[str, list[str]]:
        """Parent run id → child run ids (either parent column, or `parent_workflow_run_id` only)."""
        children: dict[str, list[str]] = {}
        for run in list(self._runs.values()):
            parents = {run.parent_workflow_run_id}
            if not workflow_parent_only:
                parents.add(run.parent_run_id)
            for parent in parents - {"", None}:
                children.setdefault(parent, []).append(run.id)  # type: ignore[arg-type]
        return children


def _apply_item_update(row: FanOutItemRow, update: FanOutItemUpdate, now: str) -> None:
    status = update.status
    if type(status) is not FanOutItemStatus:
        status = FanOutItemStatus(status)
    row.status = status
    if status is FanOutItemStatus.RUNNING:
        row.child_run_id = update.child_run_id
        row.dispatched_at = now
        row.completed_at = None
    elif status is FanOutItemStatus.PENDING:
        row.child_run_id = None
        row.dispatched_at = None
        row.completed_at = None
    else:
        if update.child_run_id is not None:
            row.child_run_id = update.child_run_id
        row.completed_at = now


def _parent_matches(run: WorkflowRun, parent: str | None) -> bool:
    if parent is None:
        return True
    if parent == "":
        return not run.parent_run_id and not run.parent_workflow_run_id
    return parent in (run.parent_run_id, run.parent_workflow_run_id)


def _record_status(
    run: WorkflowRun, status: RunStatus, result_summary: str | None, error: str | None, ended_at: str | None
) -> None:
    """A status change of `update_run_status`/`finish_run` (leaving `waiting` clears what it waited on)."""
    run.status = status
    run.result_summary = result_summary
    run.error = error
    run.ended_at = ended_at
    run.blocked_on = None


def _run_copier() -> Callable[[WorkflowRun], WorkflowRun]:
    """A copy of a run row, field by field (generated once): `copy.copy` of a slots dataclass goes
    through `__reduce_ex__` and costs several times more, on every child run of a fan-out."""
    names = [f.name for f in dataclasses.fields(WorkflowRun) if f.name not in ("inputs", "blocked_on")]
    body = "".join(f"    out.{n} = run.{n}\n" for n in names)
    source = (
        "def copy_run(run):\n"
        "    out = new(WorkflowRun)\n"
        f"{body}"
        "    out.inputs = dict(run.inputs)\n"
        "    blocked = run.blocked_on\n"
        "    out.blocked_on = deepcopy(blocked) if blocked is not None else None\n"
        "    return out\n"
    )
    scope = {"new": object.__new__, "WorkflowRun": WorkflowRun, "deepcopy": copy.deepcopy}
    exec(source, scope)
    return scope["copy_run"]


_copy_run = _run_copier()


def _copy_item(row: FanOutItemRow) -> FanOutItemRow:
    out = copy.copy(row)
    out.context = dict(row.context)
    return out
