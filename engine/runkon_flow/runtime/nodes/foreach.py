"""`foreach <name>` (engine.md §9.4, dsl.md §6.10): fan a child workflow out over provider items.

Items are written as `pending` rows, then dispatched on a pool of `max_parallel` daemon workers
(each item is a real child run through the ChildWorkflowRunner), in dependency order when
`ordered = true` and the provider supports it. `on_child_fail` decides what a failed child does:
`halt` stops dispatching, `continue` carries on, `skip_dependents` marks its transitive
dependents `skipped`. The step's structured output is `{"items":[{item_id,status,output}…]}`.

Better than upstream (design.md §5, docs/engine.md):
* on resume the previous attempt's item rows are continued: completed items never run again,
  everything else is dispatched again, and dependencies on completed items count as satisfied;
* a cancel cancels in-flight children (child tokens), records them `cancelled`, records the
  step `cancelled` and ends the run cancelled — never `completed`;
* item writes are batched per loop pass; a child's output is taken from its result rather than
  re-read from the store, so there is no query per item;
* dependency cycles honour `on_cycle` (`fail` stops the step, `warn` breaks the cycle);
* item rows keep the real child run id.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.dsl.ast import ForEachNode
from runkon_flow.dsl.templating import substitute_variables_keep_literal
from runkon_flow.errors import EngineError, StoreUnavailable, WorkflowError
from runkon_flow.events import (
    FanOutItemCompleted,
    FanOutItemInfo,
    FanOutItemsCollected,
    FanOutItemSkipped,
    FanOutItemStarted,
)
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
    ItemLineage,
    NewStep,
    RunStatus,
    StepRole,
    StepStatus,
    StepUpdate,
)
from runkon_flow.plugins.protocols import ITEM_ID_INPUT, ProviderInfo, overlong_id, oversized_ref
from runkon_flow.runtime.lease import abort, hold_lease
from runkon_flow.runtime.report_gate import commit_and_deliver
from runkon_flow.runtime.resume import restore_step
from runkon_flow.runtime.state import ExecutionState
from runkon_flow.runtime.steps import (
    StepTrace,
    apply_metrics,
    describe_exception,
    record_step_failure,
    record_step_success,
    result_usage,
)
from runkon_flow.runtime.threads import WorkerPool
from runkon_flow.runtime.types import NO_WORKFLOWS_HINT, ChildWorkflowInput, WorkflowResult
from runkon_flow.runtime.variables import build_variable_map
from runkon_flow.usage import Usage

__all__ = ["execute_foreach"]

_ROLE = StepRole.FOREACH.value
_RECEIVE_TICK = 0.25
_TERMINAL_BAD = (FanOutItemStatus.FAILED, FanOutItemStatus.CANCELLED)
#: No `dispatching` placeholder (spec §5.3): the row names a child run only once one exists (the
#: ending update carries it), so an item whose workflow did not load ends with none (NULL).
_RUNNING = FanOutItemUpdate(FanOutItemStatus.RUNNING)
_new_fence = tuple.__new__  # a Fence without NamedTuple's Python-level __new__ (once per item)
_DISPATCHED = (FanOutItemStatus.RUNNING, FanOutItemStatus.FAILED, FanOutItemStatus.CANCELLED)
_FIRST = ItemLineage()
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ITEM_ID = attrgetter("item_id")
_STATUS_JSON = {s: _encode(s.value) for s in FanOutItemStatus}  # an aggregate entry's status, encoded once
_NO_CONTEXT: dict[str, str] = {}  # shared by every item without context fields (read only)


@dataclass(slots=True, eq=False)
class _Item:
    index: int
    row_id: str
    item_type: str
    item_id: str
    item_ref: str
    context: dict[str, str]
    status: FanOutItemStatus = FanOutItemStatus.PENDING
    child_run_id: str | None = None
    output: str | None = None
    output_known: bool = False
    error: str | None = None
    token: CancellationToken | None = None
    usage: Usage | None = None  # what its child run spent (summed once the fan-out is done)
    prior: Any = None  # the item's row in the previous attempt of this fan-out (resume, retry)


def execute_foreach(st: ExecutionState, node: ForEachNode, iteration: int, path: str) -> None:
    key = f"foreach:{node.name}"
    position = st.take_position()
    if st.resume_ctx is not None:
        row = st.resume_ctx.take(key, iteration)
        if row is not None:
            restore_step(st, key, row, iteration, position)
            return
    step_id = st.insert_step(
        NewStep(
            st.workflow_run_id,
            key,
            _ROLE,
            position=position,
            iteration=iteration,
            retry_count=0,
            node_path=path,
        )
    )
    trace = StepTrace(st, "foreach", key, key, path, iteration, position)
    trace.started(step_id)
    _FanOut(st, node, step_id, key, iteration, position, path, trace).run()


class _FanOut:
    """One execution of a foreach step: collect, dispatch, complete."""

    def __init__(
        self,
        st: ExecutionState,
        node: ForEachNode,
        step_id: str,
        key: str,
        iteration: int,
        position: int,
        path: str,
        trace: StepTrace,
    ) -> None:
        self.st = st
        self.node = node
        self.step_id = step_id
        self.key = key
        self.iteration = iteration
        self.position = position
        self.path = path
        self.trace = trace
        self.items: list[_Item] = []
        self._by_id: dict[str, _Item] | None = None  # see `by_id`
        self.deps: dict[str, set[str]] = {}
        self.dependents: dict[str, list[str]] = {}
        self.lock = threading.Lock()  # the scheduling state below, shared with the workers
        self.changed = threading.Condition(self.lock)  # a slot freed up or an item became ready
        self.updates: list[tuple[str, FanOutItemUpdate]] = []
        self.halted = False
        self.store_gone: StoreUnavailable | None = None  # the run database is away: `_store_gone`
        self._gone_once = threading.Lock()  # `_say_store_gone` says it once, from any thread
        self.stopped_for_store = 0  # items whose child stopped for the store (`_child_stopped`)
        self._said_left: int | None = None  # the items `_say_store_gone` said stay pending
        # A store that can say it records nothing now (its writes behind us fail unseen).
        self.unavailable = getattr(st.persistence, "unavailable", None)
        self.cancelled = False
        # A store that commits in groups lets a worker queue its item's end and go on
        # (`_queue_end`); then every item's end is reported through the report gate, so that it
        # never overtakes the item's start, which waits there for its commit.
        self.try_flush = getattr(st.persistence, "try_flush", None)
        self.queue_ends = st.report_gate is not None and self.try_flush is not None
        # Every item write is fenced by this engine's lease on the run: one woken after another
        # engine took the run over (SIGSTOP, Ctrl-Z) writes no item row of it (docs/persistence.md).
        token = st.owner_token
        self.fence = Fence(st.workflow_run_id, token, self._refused_behind) if token else None
        # Items whose queued end failed at its commit, with the error (`_unrecorded`).
        self.unrecorded: list[tuple[_Item, BaseException]] = []

    # ------------------------------------------------------------------ helpers

    @property
    def by_id(self) -> dict[str, _Item]:
        """Items by item id (the first of a repeated id), built when dependencies or a retry
        first need it: a plain fan-out never looks items up by id."""
        if self._by_id is None:
            by_id: dict[str, _Item] = {}
            for item in self.items:
                by_id.setdefault(item.item_id, item)
            self._by_id = by_id
        return self._by_id

    def _refused_behind(self) -> None:
        """A queued item write was refused at its commit: the run is another engine's now. Its
        lease is confirmed at once (no store call here: this runs inside the commit), and the run
        stops with `LeaseLost`; until then, no child is started unconfirmed (`hold_lease`)."""
        engine = self.st.engine
        if engine is not None:
            engine.doubt_lease(self.st)
        else:
            self.st.lease_sure_until = 0.0

    def _unrecorded(self, item: _Item, error: BaseException) -> None:
        """`item`'s queued end failed at its commit (the database took no writes): it was not
        recorded, so it is never reported completed (the report gate drops its end and its
        child's events) and the step is not done — the item runs again on resume. On the
        committing thread, inside the commit: no store call, no event here (`_complete` says it)."""
        gate = self.st.report_gate
        if gate is not None:
            gate.unrecorded(self.step_id, item.item_id, item.child_run_id)
        self.unrecorded.append((item, error))

    def _lost(self) -> None:
        """A durable item write was refused: another engine owns the run; stop it as `LeaseLost`."""
        self.st.warn(f"foreach '{self.node.name}': another engine took the run over; item not recorded")
        abort(self.st, CancellationReason.of("LeaseLost"))

    def _fail_setup(self, message: str) -> None:
        st = self.st
        st.update_step(self.step_id, StepUpdate.failed(st.generation, message, 0))
        self.trace.completed(StepStatus.FAILED, message)
        st.all_succeeded = False
        raise WorkflowError(message)

    # ------------------------------------------------------------------ phases

    def run(self) -> None:
        st, node = self.st, self.node
        provider = st.item_provider_registry.get(node.over)
        if provider is None:
            self._fail_setup(
                f"foreach '{node.name}': unknown provider '{node.over}' — "
                "no ItemProvider registered for this name"
            )
        if st.child_runner is None:
            self._fail_setup(
                f"foreach '{node.name}': no ChildWorkflowRunner configured — cannot dispatch child workflows "
                f"({NO_WORKFLOWS_HINT})"
            )
        self._collect(provider)
        total = len(self.items)
        if total == 0:
            if empty := _empty_items_file(node):
                st.warn(empty, self.key)
            text = f"foreach {node.name}: no items to process"
            aggregate = '{"items":[]}'
            update = StepUpdate.completed(
                st.generation, result_text=text, context_out=text, attempt=0, structured_output=aggregate
            )
            update.fan_out = (0, 0, 0, 0)
            st.update_step(self.step_id, update)
            st.note_output(self.position, aggregate)
            record_step_success(
                st,
                self.key,
                self.key,
                self.iteration,
                result_text=text,
                markers=[],
                context=text,
                structured_output=aggregate,
            )
            self.trace.completed(StepStatus.COMPLETED)
            return
        self._dispatch()
        self._complete()

    def _collect(self, provider: Any) -> None:
        st, node = self.st, self.node
        previous: list[Any] = []
        chosen: frozenset[str] | None = None
        if st.resume_ctx is not None:
            prior_row = st.resume_ctx.previous_attempt(self.key, self.iteration)
            if prior_row is not None:
                known = st.resume_ctx.take_items(prior_row.id)  # read by a retry's plan already
                previous = known if known is not None else st.persistence.get_fan_out_items(prior_row.id)
                chosen = st.resume_ctx.retry_items(prior_row.id)
        try:
            parse_scope = getattr(provider, "parse_scope", None)
            scope = parse_scope(node.scope) if parse_scope is not None else None
            fresh = provider.items(st.run_ctx, ProviderInfo(self.step_id), scope, dict(node.filter))
        except EngineError as exc:  # the provider's own words, said once: `foreach 'fan': provider is down`
            self._fail_setup(f"foreach '{node.name}': {_own_words(exc)}")
        except Exception as exc:
            self._fail_setup(
                f"foreach '{node.name}': item provider '{node.over}' failed: {describe_exception(exc)}"
            )

        merged: dict[tuple[str, str], tuple[str, str, str, dict[str, str], Any]] = {}
        for row in previous:
            merged.setdefault(
                (row.item_type, row.item_id),
                (row.item_type, row.item_id, row.item_ref, dict(row.context), row),
            )
        for number, item in enumerate(fresh or (), start=1):
            if not isinstance(getattr(item, "item_id", None), str):
                self._fail_setup(
                    f"foreach '{node.name}': item provider '{node.over}' returned an invalid item "
                    f"{item!r} (expected a FanOutItem)"
                )
            if too_long := overlong_id(item.item_id):
                self._fail_setup(_long_id(node, number, item, too_long))
            k = (str(item.item_type), item.item_id)
            if k not in merged:
                ref = str(item.item_ref or "")
                context = {str(a): str(b) for a, b in item.context.items()} if item.context else _NO_CONTEXT
                if too_big := oversized_ref(ref):
                    self._fail_setup(_item_problem(node, number, item, too_big))
                merged[k] = (str(item.item_type), item.item_id, ref, context, None)
        entries = list(merged.values())
        for index, (item_type, item_id, item_ref, context, prior) in enumerate(entries):
            item = _Item(index, "", item_type, item_id, item_ref, context)
            if prior is not None:
                item.status = _carried_status(prior, chosen)
                item.child_run_id = prior.child_run_id if item.status.is_terminal else None
                item.prior = prior
            self.items.append(item)
        if node.ordered and _supports_ordered(provider):
            try:
                edges = provider.dependencies(self.step_id)
            except Exception as exc:
                self._fail_setup(
                    f"foreach '{node.name}': item provider '{node.over}' failed to list dependencies: "
                    f"{_own_words(exc) if isinstance(exc, EngineError) else describe_exception(exc)}"
                )
            self._build_graph(edges or [])
        if chosen is not None:
            self._reopen_skipped_dependents()
        row_ids = st.persistence.insert_fan_out_items(
            self.step_id,
            [(i.item_type, i.item_id, i.item_ref, i.context) for i in self.items],
            [_lineage(i) for i in self.items],
        )
        carried: list[tuple[str, FanOutItemUpdate]] = []
        for item, row_id in zip(self.items, row_ids, strict=True):
            item.row_id = row_id
            if item.status.is_terminal:
                carried.append((row_id, FanOutItemUpdate.terminal(item.status, item.child_run_id)))
        if carried and not st.persistence.batch_update_fan_out_items(carried, fence=self.fence):
            self._lost()
            raise st.cancellation.error()
        if st.event_sinks:
            st.emit(
                FanOutItemsCollected(
                    count=len(self.items),
                    step_id=self.step_id,
                    foreach_name=node.name,
                    node_path=self.path,
                    max_parallel=node.max_parallel,
                    items=[
                        FanOutItemInfo(
                            item_id=i.item_id,
                            item_ref=i.item_ref,
                            status=i.status.value,  # type: ignore[arg-type]
                            depends_on=sorted(self.deps.get(i.item_id, ())),
                        )
                        for i in self.items
                    ],
                )
            )

    def _reopen_skipped_dependents(self) -> None:
        """A retry: an item skipped because something it depends on failed runs again when that
        blocker runs again (else a retried blocker's dependents would stay skipped for good)."""
        todo = [i.item_id for i in self.items if i.prior is not None and i.status is FanOutItemStatus.PENDING]
        while todo:
            for dep_id in self.dependents.get(todo.pop(), ()):
                dep = self.by_id[dep_id]
                if dep.status is FanOutItemStatus.SKIPPED:
                    dep.status, dep.child_run_id = FanOutItemStatus.PENDING, None
                    todo.append(dep_id)

    def _build_graph(self, edges: list[tuple[str, str]]) -> None:
        unknown: set[str] = set()
        for blocker, dependent in edges:
            if blocker not in self.by_id or dependent not in self.by_id:
                unknown.update(x for x in (blocker, dependent) if x not in self.by_id)
                continue
            if blocker == dependent:
                continue
            if blocker not in self.deps.setdefault(dependent, set()):
                self.deps[dependent].add(blocker)
                self.dependents.setdefault(blocker, []).append(dependent)
        if unknown:
            self.st.warn(
                f"foreach '{self.node.name}': dependencies on unknown items ignored: "
                + ", ".join(sorted(unknown))
            )
        self._check_cycles()

    def _check_cycles(self) -> None:
        """Depth-first search over blocker edges; `on_cycle = fail` stops, `warn` breaks each cycle."""
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        for start in [i.item_id for i in self.items]:
            if state.get(start):
                continue
            stack: list[tuple[str, list[str]]] = [(start, sorted(self.deps.get(start, ())))]
            state[start] = 1
            while stack:
                current, todo = stack[-1]
                if not todo:
                    state[current] = 2
                    stack.pop()
                    continue
                blocker = todo.pop()
                mark = state.get(blocker)
                if mark == 1:
                    chain = [name for name, _ in stack]
                    cycle = [*chain[chain.index(blocker) :], blocker]
                    text = " -> ".join(reversed(cycle))
                    if self.node.on_cycle == "fail":
                        self._fail_setup(f"foreach '{self.node.name}': dependency cycle among items: {text}")
                    self.st.warn(f"foreach '{self.node.name}': dependency cycle among items broken: {text}")
                    self.deps[current].discard(blocker)
                    deps_of = self.dependents.get(blocker, [])
                    if current in deps_of:
                        deps_of.remove(current)
                elif mark is None:
                    state[blocker] = 1
                    stack.append((blocker, sorted(self.deps.get(blocker, ()))))

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        """Run the ready items on `max_parallel` slots until every item is terminal (or the step
        halts or is cancelled).

        The parent starts the first wave (one durable write for its `running` rows); after that
        each worker takes its next ready item itself. A worker that finishes a child writes, in
        one write, its item's terminal row and the next item's `running` row, and records the
        item (dependents become ready). On a store that commits in groups (`try_flush`: SQLite)
        a completed item's write is queued and the worker goes on at once — committing the queue
        itself when no other thread is at the connection — while FanOutItemStarted and
        FanOutItemCompleted wait in the report gate for the commit; otherwise (and for a failed
        item) the write is durable and the events follow it. So:

        * reported means durable: an item is reported completed only once that is committed, and
          a resume never runs it again (docs/persistence.md, "What completed guarantees");
        * a slot passes from one item to the next in one transaction, so the store never shows
          more than `max_parallel` items running; an item whose end a crash lost is `running`
          (or, if its start was lost too, `pending`), and runs again.

        The parent only refills slots a worker left (no ready item at that moment, then a
        dependency finished) and watches for a cancel. The scheduling state is under `self.lock`.
        """
        st, node = self.st, self.node
        max_slots = self.max_slots = max(1, node.max_parallel)
        terminal: set[str] = {i.item_id for i in self.items if i.status.is_terminal}
        ready: deque[_Item] = deque()
        waiting: dict[str, _Item] = {}
        for item in self.items:
            if item.status is not FanOutItemStatus.PENDING:
                continue
            if self.deps.get(item.item_id, set()) <= terminal:
                ready.append(item)
            else:
                waiting[item.item_id] = item
        self.terminal, self.ready, self.waiting = terminal, ready, waiting
        self.in_flight: dict[str, _Item] = {}  # taken, not yet finished (row id → item)
        # The same items until someone finishes them: `_claim` pops here, so a worker and the
        # parent giving up on a worker never both finish one item (see `_run_children`).
        self.unclaimed: dict[str, _Item] = {}
        self.parent_ctx = st.child_workflow_context()
        # Placeholders in `inputs` are expanded here, once per item, from the parent's variables
        # and the item's keys; the values they bring in are data, never expanded again.
        self.variables = build_variable_map(st)
        self.pool = WorkerPool(max_slots, f"foreach-{node.name}")
        give_up_at: float | None = None
        try:
            while True:
                with self.lock:
                    if not self.cancelled and st.cancellation.is_cancelled():
                        self.cancelled = True
                        # A remote child runner needs longer: it force-cancels its tasks first.
                        grace = st.exec_config.cancel_grace
                        give_up_after = getattr(st.child_runner, "give_up_after", None)
                        if give_up_after is not None:
                            grace = max(grace, give_up_after(grace))
                        # From the cancel's moment: the remote runner's force-cancel is too.
                        give_up_at = (st.cancellation.cancelled_at() or time.monotonic()) + grace
                    starting = self._take(max_slots - len(self.in_flight))
                    if not starting:
                        if not self.in_flight:
                            break
                        if give_up_at is not None and time.monotonic() >= give_up_at:
                            # they ignored their token
                            self._abandon(list(self.in_flight.values()), st.cancellation.error())
                            self._queue_updates()
                            break
                        self.changed.wait(_RECEIVE_TICK)
                        continue
                self._start(starting)
        finally:
            self.pool.shutdown()
        with self.lock:
            if not self.halted and not self.cancelled and waiting:
                # Only reachable if a dependency can never be satisfied; never leave them pending.
                for item in list(waiting.values()):
                    self._skip(item, "dependency can never be satisfied")
            self._queue_updates()

    def _may_start(self) -> bool:
        if self.halted or self.cancelled or self.st.cancellation.is_cancelled():
            return False
        if self.unavailable is not None and (gone := self.unavailable()) is not None:
            self._say_store_gone(gone)
            return False
        return True

    def _take(self, free: int) -> list[_Item]:
        """Up to `free` ready items, now in flight (none once halted/cancelled). Safe without the
        lock: each step is one atomic operation (a worker of a plain fan-out calls it so)."""
        if free <= 0 or not self.ready or not self._may_start():
            return []
        taken: list[_Item] = []
        cancellation = self.st.cancellation
        while len(taken) < free:
            try:
                item = self.ready.popleft()
            except IndexError:  # another worker took the last one
                break
            item.status = FanOutItemStatus.RUNNING
            item.token = cancellation.child()
            self.in_flight[item.row_id] = item
            self.unclaimed[item.row_id] = item
            taken.append(item)
        return taken

    def _claim(self, item: _Item) -> bool:
        """Whether the caller is the one to finish `item` (one atomic pop: a worker, or the parent
        abandoning it after the cancel grace — never both)."""
        return self.unclaimed.pop(item.row_id, None) is not None

    def _settle(self, item: _Item) -> None:
        """`item` is finished: its slot is free (after `_finish`, so a parent that sees no item in
        flight sees every item's end)."""
        self.in_flight.pop(item.row_id, None)

    def _queue_updates(self) -> None:
        """Under the lock: hand the collected updates (skipped items, items abandoned after the
        cancel grace) to the store, write-behind; `_complete` commits them before the step ends."""
        if self.updates:
            updates, self.updates = self.updates, []
            if not self.st.persistence.batch_update_fan_out_items(updates, durable=False, fence=self.fence):
                self._refused_behind()

    def _start(self, starting: list[_Item]) -> None:
        """Commit `running` for `starting`, then hand them to the pool (outside the lock)."""
        if not self._commit([], starting):
            return
        for item in starting:
            self.pool.submit(self._run_children, item)

    def _commit(self, finished: list[tuple[_Item, FanOutItemStatus]], starting: list[_Item]) -> bool:
        """One durable write: the terminal rows of `finished`, the `running` rows of `starting`.
        Then FanOutItemStarted for `starting`. If the write fails, `starting` fails without
        running (False) and the terminal rows are queued again, to be committed with the step."""
        st = self.st
        updates = [(i.row_id, FanOutItemUpdate.terminal(status, i.child_run_id)) for i, status in finished]
        updates.extend((i.row_id, _RUNNING) for i in starting)
        gate = st.report_gate
        mark = gate.mark() if gate is not None else 0
        try:
            written = st.persistence.batch_update_fan_out_items(updates, fence=self.fence)
        except StoreUnavailable as exc:
            with self.lock:
                self.updates.extend(updates[: len(finished)])
                self._store_gone(starting, exc)
                self.changed.notify()
            return False
        except Exception as exc:
            st.warn(f"foreach '{self.node.name}': could not record item progress: {describe_exception(exc)}")
            with self.lock:
                self.updates.extend(updates[: len(finished)])
                self._abandon(starting, exc)
                self.changed.notify()
            return False
        if not written:  # another engine owns the run: nothing of it was written, nor will be
            self._lost()
            with self.lock:
                self._abandon(starting, st.cancellation.error())
                self.changed.notify()
            return False
        if gate is not None:  # the finished children's events: their rows are committed now
            gate.release(mark, wait=False)
        if st.event_sinks:
            for item in starting:
                st.emit(FanOutItemStarted(item_id=item.item_id, step_id=self.step_id))
        return True

    def _queue_end(self, item: _Item, following: list[_Item]) -> None:
        """A plain fan-out's completed item on a store that commits in groups: queue its end and
        the `running` row of the next item in one write, without waiting for the commit; the
        events that report them wait in the report gate until a commit covers them."""
        st = self.st
        updates = [(item.row_id, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, item.child_run_id))]
        updates.extend((i.row_id, _RUNNING) for i in following)
        fence = self.fence
        if fence is not None:  # told if this write fails at its commit (NamedTuple's _replace: 3× slower)
            fence = _new_fence(
                Fence, (fence.run_id, fence.token, fence.on_refused, partial(self._unrecorded, item))
            )
        if not st.persistence.batch_update_fan_out_items(updates, durable=False, fence=fence):
            self._refused_behind()
        if st.event_sinks:
            for i in following:
                self._report(FanOutItemStarted(item_id=i.item_id, step_id=self.step_id))

    def _run_children(self, item: _Item | None) -> None:
        """Worker thread: run `item`'s child; commit its end together with the start of the next
        ready item, which the worker then runs itself. Never raises.

        A plain fan-out (no dependencies between items) records a completed item without the
        lock: every worker would take it twice per item, and on two cores a lock that all the
        workers take becomes a queue of GIL hand-overs through the kernel (a convoy: ~8 context
        switches per item, twice the engine's own time). Taking the next item, claiming and
        settling one are single atomic operations; a failure (policies, dependents) takes the
        lock as before. docs/engine.md, "Why the fan-out takes no shared lock"."""
        plain = not self.dependents
        while item is not None:
            result, error = self._run_child(item)
            if isinstance(error, StoreUnavailable):
                self._child_stopped(item, error)
                return
            status = self._outcome(item, result, error)
            if plain and status is FanOutItemStatus.COMPLETED:
                item = self._record_completed(item, result)
            else:
                item = self._record_locked(item, result, error, status)

    def _record_completed(self, item: _Item, result: WorkflowResult | None) -> _Item | None:
        """A plain fan-out's completed item, without the lock; returns the next item to run."""
        if item.row_id not in self.unclaimed:
            return None  # abandoned after the cancel grace: already recorded as cancelled
        following = self._take(1)
        if self.queue_ends:
            self._queue_end(item, following)
            committed = True
        else:
            committed = self._commit([(item, FanOutItemStatus.COMPLETED)], following)
        if not self._claim(item):  # abandoned meanwhile
            with self.lock:
                self._drop(following)
            return None
        self._finish(item, result, None, FanOutItemStatus.COMPLETED)
        self._settle(item)
        if self.queue_ends:
            commit_and_deliver(self.st.report_gate, self.try_flush, wait=False)  # type: ignore[arg-type]
        if not self.in_flight or (self.ready and len(self.in_flight) < self.max_slots):
            with self.lock:
                self.changed.notify()  # the parent has slots to fill, or the step is done
        return following[0] if following and committed else None

    def _record_locked(
        self,
        item: _Item,
        result: WorkflowResult | None,
        error: BaseException | None,
        status: FanOutItemStatus,
    ) -> _Item | None:
        """Any other finished item, under the lock (failure policies, dependents); returns the
        next item to run."""
        with self.lock:
            if item.row_id not in self.unclaimed:
                return None  # abandoned after the cancel grace: already recorded as cancelled
            halts = status in _TERMINAL_BAD and self.node.on_child_fail == "halt"
            following = self._take(1) if not halts else []
        committed = self._commit([(item, status)], following)
        with self.lock:
            if not self._claim(item):  # abandoned meanwhile
                self._drop(following)
                return None
            self._finish(item, result, error, status)
            self._settle(item)
            if not self.in_flight or (self.ready and len(self.in_flight) < self.max_slots):
                self.changed.notify()  # the parent has slots to fill, or the step is done
        if self.queue_ends:
            commit_and_deliver(self.st.report_gate, self.try_flush, wait=False)  # type: ignore[arg-type]
        return following[0] if following and committed else None

    def _drop(self, following: list[_Item]) -> None:
        """Under the lock: a worker whose item was abandoned does not run the item it took."""
        self._abandon(following, self.st.cancellation.error())
        self._queue_updates()

    def _store_gone(self, starting: list[_Item], exc: StoreUnavailable) -> None:
        """Under the lock: the run database cannot be reached, so no item's start can be
        recorded. No further item starts (`halted`), and `starting` goes back to pending,
        unstarted — as the store has them; each runs when the run is resumed. Said once, not
        once per item: the items did not fail, the store is away."""
        for item in starting:
            if self._claim(item):
                if item.token is not None:
                    item.token.detach()
                    item.token = None
                item.status = FanOutItemStatus.PENDING
                self._settle(item)
        self._say_store_gone(exc)

    def _child_stopped(self, item: _Item, exc: StoreUnavailable) -> None:
        """Worker: the run database could record nothing more (`StoreUnavailable`) — `item`'s
        child stopped for it, left as stored (`ChildWorkflowInput.stops_for_store`), or could not
        be created. The item did not fail: it is not recorded (its row stays `running`, as the
        store has it; no end event, no failure policy) and runs again on resume, as a new child.
        No further item starts, and the run stops, to be resumed (`_complete`)."""
        with self.lock:
            if not self._claim(item):
                return  # abandoned after the cancel grace: already recorded as cancelled
            if item.token is not None:
                item.token.detach()
                item.token = None
            self.stopped_for_store += 1
            self._say_store_gone(exc)
            self._settle(item)
            self.changed.notify()

    def _say_store_gone(self, exc: StoreUnavailable) -> None:
        """Stop starting items, and say why once (any thread, with or without the lock), with
        the count of the items a resume runs so far (`_items_left`); `_say_still_left` corrects
        it at the step's end when children in flight stopped too."""
        with self._gone_once:
            if self.store_gone is not None:
                return
            self.store_gone, self.halted = exc, True
        left = self._said_left = self._items_left()
        self.st.warn(
            f"foreach '{self.node.name}': no further item starts — {describe_exception(exc)}; "
            f"{left} {'item stays' if left == 1 else 'items stay'} pending, to run on resume"
        )

    def _items_left(self) -> int:
        """The items a resume runs: the pending ones, and those whose child stopped for the store
        (`_child_stopped`: their rows stay `running`, and run again)."""
        return self.stopped_for_store + sum(1 for i in self.items if i.status is FanOutItemStatus.PENDING)

    def _say_still_left(self) -> None:
        """At the step's end, after the store went: when more items stay pending than
        `_say_store_gone` counted — children in flight then stopped for the store too, or items
        about to start went back — say the final count, once. Before, only the first count was
        said, short by every child that stopped after it."""
        said, left = self._said_left, self._items_left()
        if said is None or left <= said:
            return
        self.st.warn(
            f"foreach '{self.node.name}': {left} {'item stays' if left == 1 else 'items stay'} pending "
            f"in all, to run on resume ({left - said} more stopped for the run database after the "
            f"first {said})"
        )

    def _abandon(self, items: list[_Item], error: BaseException) -> None:
        """Under the lock: end each of `items` no one else has claimed with `error`, without its
        child's result (after the cancel grace, or when its start could not be recorded)."""
        for item in items:
            if self._claim(item):
                self._finish(item, None, error)
                self._settle(item)

    def _run_child(self, item: _Item) -> tuple[WorkflowResult | None, BaseException | None]:
        node = self.node
        item_keys = {f"item.{k}": v for k, v in item.context.items()} if item.context else {}
        item_keys[ITEM_ID_INPUT] = item.item_id
        item_keys["item.ref"] = item.item_ref
        if node.inputs:
            variables = {**self.variables, **item_keys}
            inputs = {k: substitute_variables_keep_literal(v, variables) for k, v in node.inputs.items()}
            inputs.update(item_keys)
        else:
            inputs = item_keys
        assert item.token is not None
        params = ChildWorkflowInput(
            inputs=inputs,
            iteration=self.iteration,
            as_identity=None,
            depth=self.st.depth + 1,
            parent_step_id=self.step_id,
            cancellation=item.token,
            item_id=item.item_id,
            write_behind=True,  # an unfinished item re-runs as a new child: its rows are history only
            on_created=partial(setattr, item, "child_run_id"),  # known even if the runner then fails
            stops_for_store=True,  # a database gone away stops the run, not fails the item
        )
        try:
            hold_lease(self.st)  # no child is started by a run another engine took over
            return self.st.child_runner.execute_child(node.workflow, self.parent_ctx, params), None  # type: ignore[union-attr]
        except BaseException as exc:
            return None, exc

    def _outcome(
        self, item: _Item, result: WorkflowResult | None, error: BaseException | None
    ) -> FanOutItemStatus:
        """The item's terminal status (and its child id, output and error, set on `item`)."""
        st = self.st
        if result is not None:
            item.child_run_id = result.workflow_run_id
            if result.output_known:
                item.output, item.output_known = result.final_structured_output, True
            item.error = result.error
            if result.all_succeeded:
                return FanOutItemStatus.COMPLETED
            if self.cancelled or st.cancellation.is_cancelled() or result.status is RunStatus.CANCELLED:
                return FanOutItemStatus.CANCELLED
            return FanOutItemStatus.FAILED
        cancelled = isinstance(error, EngineCancelled) or st.cancellation.is_cancelled()
        item.error = describe_exception(error) if error is not None else None
        return FanOutItemStatus.CANCELLED if cancelled else FanOutItemStatus.FAILED

    def _finish(
        self,
        item: _Item,
        result: WorkflowResult | None,
        error: BaseException | None,
        committed: FanOutItemStatus | None = None,
    ) -> None:
        """Record a finished item — its status, usage and event, the failure policy and the
        dependents it frees. Under the lock, except for a plain fan-out's completed item, which
        touches nothing another thread writes. `committed` is its status when its row is already
        committed; otherwise the row is queued (see `_queue_updates`)."""
        st = self.st
        if item.token is not None:
            item.token.detach()
            item.token = None
        status = committed if committed is not None else self._outcome(item, result, error)
        if result is None and status is FanOutItemStatus.FAILED:
            st.warn(f"foreach '{self.node.name}': item '{item.item_id}' could not run: {item.error}")
        item.status = status
        if committed is None:
            self.updates.append((item.row_id, FanOutItemUpdate.terminal(status, item.child_run_id)))
        usage = item.usage = result_usage(result)
        if st.event_sinks:
            self._report(
                FanOutItemCompleted(
                    item_id=item.item_id,
                    succeeded=status is FanOutItemStatus.COMPLETED,
                    step_id=self.step_id,
                    child_run_id=item.child_run_id,
                    status=status.value,  # type: ignore[arg-type]
                    error=item.error,
                    usage=usage.as_dict() if usage else None,
                )
            )
        if self.dependents:  # only dependencies look items up (a set entry per item otherwise)
            self.terminal.add(item.item_id)
        newly_terminal = [item.item_id]
        if status in _TERMINAL_BAD and not self.cancelled and not st.cancellation.is_cancelled():
            policy = self.node.on_child_fail
            if policy == "halt":
                self.halted = True
            elif policy == "skip_dependents":
                newly_terminal.extend(self._skip_dependents(item.item_id))
        self._promote(newly_terminal)

    def _report(self, event: Any) -> None:
        """An item event to the sinks. When item ends are queued (`_queue_end`) every item event
        waits in the report gate for the commit that covers it — also one whose row is already
        committed, so that none overtakes an item's start still waiting there."""
        st = self.st
        if self.queue_ends:
            st.report_gate.hold(st.event_sinks, st.workflow_run_id, event)  # type: ignore[union-attr]
        else:
            st.emit(event)

    def _skip(self, item: _Item, reason: str) -> None:
        item.status = FanOutItemStatus.SKIPPED
        self.updates.append((item.row_id, FanOutItemUpdate.terminal(FanOutItemStatus.SKIPPED)))
        if self.dependents:
            self.terminal.add(item.item_id)
        self.waiting.pop(item.item_id, None)
        if self.st.event_sinks:
            self._report(FanOutItemSkipped(item_id=item.item_id, step_id=self.step_id, reason=reason))

    def _skip_dependents(self, failed_id: str) -> list[str]:
        skipped: list[str] = []
        todo = list(self.dependents.get(failed_id, ()))
        while todo:
            dep_id = todo.pop(0)
            if dep_id in self.terminal:
                continue
            item = self.by_id[dep_id]
            if item.status is not FanOutItemStatus.PENDING:
                continue
            if item in self.ready:
                self.ready.remove(item)
            self._skip(item, f"depends on failed item '{failed_id}'")
            skipped.append(dep_id)
            todo.extend(self.dependents.get(dep_id, ()))
        return skipped

    def _promote(self, newly_terminal: list[str]) -> None:
        if not self.waiting:
            return
        candidates: dict[str, _Item] = {}
        for done in newly_terminal:
            for dep_id in self.dependents.get(done, ()):
                item = self.waiting.get(dep_id)
                if item is not None and self.deps.get(dep_id, set()) <= self.terminal:
                    candidates[dep_id] = item
        for item in sorted(candidates.values(), key=lambda i: i.index):
            del self.waiting[item.item_id]
            self.ready.append(item)

    # ------------------------------------------------------------------ completion

    def _unrecorded_ends(self) -> None:
        """Some items' queued ends failed at their commit (`_unrecorded`): the step is not done.
        The database took no writes (`StoreUnavailable`): the run stops, to be resumed, which runs
        those items again; any other failure fails the step."""
        count = len(self.unrecorded)
        error = self.unrecorded[0][1]
        for item, _ in self.unrecorded:
            item.status = FanOutItemStatus.RUNNING  # as the store has it
        words = f"{count} completed {'item' if count == 1 else 'items'}"
        self.st.warn(
            f"foreach '{self.node.name}': {words} could not be recorded ({describe_exception(error)}); "
            f"{'it runs' if count == 1 else 'they run'} again on resume"
        )
        if isinstance(error, StoreUnavailable):
            self._say_store_gone(error)
            return
        message = f"foreach '{self.node.name}': {words} could not be recorded: {describe_exception(error)}"
        self.st.update_step(self.step_id, StepUpdate.failed(self.st.generation, message, 0))
        self.trace.completed(StepStatus.FAILED, message)
        raise WorkflowError(message)

    def _child_output(self, item: _Item) -> Any:
        if not item.child_run_id:
            return None
        text = item.output
        if not item.output_known:
            text = None
            try:
                steps = self.st.persistence.get_steps(item.child_run_id)
            except Exception:
                steps = []
            for step in sorted(steps, key=lambda s: s.position):
                if step.structured_output is not None:
                    text = step.structured_output
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def _aggregate(self) -> str | None:
        """`{"items":[{"item_id":…,"status":…,"output":…},…]}` by item id, written entry by entry
        (the same text as `json.dumps` of the whole, without a dict per item: at 100,000 items
        those would be the fan-out's largest allocation, made just when the store is fullest)."""
        try:
            parts = [
                f'{{"item_id":{_encode(i.item_id)},"status":{_STATUS_JSON[i.status]},'
                f'"output":{_json_or_null(self._child_output(i))}}}'
                for i in sorted(self.items, key=_ITEM_ID)
                if i.status.is_terminal
            ]
            return '{"items":[' + ",".join(parts) + "]}"
        except (TypeError, ValueError) as exc:
            self.st.warn(f"foreach '{self.node.name}': could not build the aggregate output: {exc}")
            return None

    def _complete(self) -> None:
        st, node = self.st, self.node
        # The children's rows were written behind: commit them before the step is recorded done.
        commit_and_deliver(st.report_gate, st.persistence.flush)
        if self.unrecorded:  # ends that were reported nowhere, as they were recorded nowhere
            self._unrecorded_ends()
        if self.store_gone is not None:  # items left pending: the step is not done, even if the
            self._say_still_left()  # store is back by now — the run stops, to be resumed
            raise self.store_gone
        c = Counter(i.status for i in self.items)
        total = len(self.items)
        done, failed = c[FanOutItemStatus.COMPLETED], c[FanOutItemStatus.FAILED]
        skipped, cancelled = c[FanOutItemStatus.SKIPPED], c[FanOutItemStatus.CANCELLED]
        context = f"foreach {node.name}: {done} completed, {failed} failed, {skipped} skipped"
        if cancelled:
            context += f", {cancelled} cancelled"
        context += f" of {total} {node.over}"
        aggregate = self._aggregate()
        st.note_output(self.position, aggregate)
        fan_out = (total, done, failed + cancelled, skipped)  # a cancelled item counts as failed
        usage = Usage.total(i.usage for i in self.items)  # what this execution's children spent
        spent = usage.to_json() if usage else None
        if usage:  # the children's usage counts in this run's totals too (docs/agents.md "Usage")
            apply_metrics(st, {k: str(v) for k, v in usage.as_dict().items()})
        if self.cancelled:
            error = st.cancellation.error()
            st.update_step(
                self.step_id,
                StepUpdate(
                    generation=st.generation,
                    status=StepStatus.CANCELLED,
                    result_text=context,
                    context_out=context,
                    structured_output=aggregate,
                    step_error=str(error),
                    retry_count=0,
                    fan_out=fan_out,
                    usage=spent,
                ),
            )
            self.trace.completed(StepStatus.CANCELLED, str(error), usage=usage)
            raise error
        bad = failed + cancelled
        if bad:
            message = f"foreach '{node.name}': {bad} of {total} items failed"
            st.update_step(
                self.step_id,
                StepUpdate(
                    generation=st.generation,
                    status=StepStatus.FAILED,
                    result_text=message,
                    context_out=context,
                    structured_output=aggregate,
                    step_error=message,
                    retry_count=0,
                    fan_out=fan_out,
                    usage=spent,
                ),
            )
            self.trace.completed(StepStatus.FAILED, message, usage=usage)
            record_step_failure(st, self.key, node.name, message, 1)
            return
        update = StepUpdate.completed(
            st.generation,
            result_text=context,
            context_out=context,
            attempt=0,
            structured_output=aggregate,
            usage=spent,
        )
        update.fan_out = fan_out
        st.update_step(self.step_id, update)
        record_step_success(
            st,
            self.key,
            self.key,
            self.iteration,
            result_text=context,
            markers=[],
            context=context,
            structured_output=aggregate,
        )
        self.trace.completed(StepStatus.COMPLETED, usage=usage)


def _empty_items_file(node: ForEachNode) -> str | None:
    """The warning for a foreach whose items file gave no items, else None: an empty list may be
    meant (nothing to do today), so the step completes — but a file emptied by mistake, or one
    whose every item the filter drops, ran nothing without a word (`foreach 'each': items file
    'items.yaml' holds no items (0 items run)`). Only a scope naming a `file` is said: a glob or a
    command that finds nothing is the everyday case of those sources."""
    path = (node.scope or {}).get("file")
    if not path:
        return None
    if node.filter:
        return f"foreach '{node.name}': no item in items file '{path}' matches the filter (0 items run)"
    return f"foreach '{node.name}': items file '{path}' holds no items (0 items run)"


def _json_or_null(value: Any) -> str:
    """`value` as JSON; `null` without the encoder (most children leave no output)."""
    return "null" if value is None else _encode(value)


def _carried_status(prior: Any, chosen: frozenset[str] | None) -> FanOutItemStatus:
    """The status an item starts this attempt in: a completed item keeps its result; on a plain
    resume every other item runs again (pending); on a retry only the chosen items and the ones
    that never finished do, the rest keep their outcome."""
    status = FanOutItemStatus(prior.status)
    if status is FanOutItemStatus.COMPLETED:
        return status
    if chosen is None or prior.item_id in chosen or not status.is_terminal:
        return FanOutItemStatus.PENDING
    return status


def _lineage(item: _Item) -> ItemLineage:
    """A row's attempt number and the child run before it: an item that runs again after it ran
    (or was started) is a new attempt; one carried over or never started keeps its number."""
    prior = item.prior
    if prior is None:
        return _FIRST
    ran = FanOutItemStatus(prior.status) in _DISPATCHED and prior.child_run_id not in (None, "dispatching")
    if item.status is FanOutItemStatus.PENDING and ran:
        return ItemLineage(prior.attempt + 1, prior.child_run_id)
    return ItemLineage(prior.attempt, prior.previous_child_run_id)


def _long_id(node: ForEachNode, number: int, item: Any, why: str) -> str:
    """Why item `number` (1-based, in the provider's order) is refused: its id is too long (`why`,
    `overlong_id`); when short, its ref says which item it is too."""
    ref = str(item.item_ref or "")
    where = f" (ref {ref!r})" if ref and len(ref) <= 200 and ref != item.item_id else ""
    return f"foreach '{node.name}': item {number}{where} from item provider '{node.over}': {why}"


def _item_problem(node: ForEachNode, number: int, item: Any, why: str) -> str:
    """Why item `number` (1-based, in the provider's order), whose id is fine, is refused (`why`,
    `oversized_ref`): named by its id."""
    return f"foreach '{node.name}': item {number} ('{item.item_id}') from item provider '{node.over}': {why}"


def _own_words(exc: EngineError) -> str:
    """A provider's engine error as its message, without the `workflow error: ` prefix: the step's
    error is wrapped in a `WorkflowError` once more when the run fails, and one prefix is enough."""
    return exc.message if isinstance(exc, WorkflowError) else str(exc)


def _supports_ordered(provider: Any) -> bool:
    check = getattr(provider, "supports_ordered", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:
        return False
