"""`RemoteChildRunner`: foreach children run by another process (a Ray task, docs/scale-out.md).

The parent keeps the run's truth in the shared store; a remote executor is used only to *run* a
child. For each foreach item the parent creates the child run row (running, leased by a fresh
token, committed), announces it (`ChildRunStarted`) and hands the executor a `ChildTask` — plain
data: where the store is, the child's definition as stored with the run (and the definitions it
calls), its inputs, the lease to run it under and the parent's run id and lease generation. The
worker rebuilds the engine from its own working directory's plug-ins, runs the child under that
lease, writes the child's rows and events to the store, and returns a `ChildOutcome`.

Never twice by accident: the executor must not retry (a lost worker is an error, not a retry). A
lost worker fails the item with a clear reason — unless the child's row says it completed, then it
counts — and `resume` dispatches the item again as a new child. A child whose parent lost its
lease (a newer generation) or was cancelled stops itself (see `ChildTask.parent_generation`).

Cancelling: the item's token is cancelled (the run was cancelled, or the step halts); the parent
writes `cancelling` on the child's row, which the worker's engine notices within a second and
stops the child and its processes; `WorkflowExecConfig.cancel_grace` (at least
`FORCE_CANCEL_AFTER`) after the cancel the parent force-cancels the remote task, and the child's
row is recorded `cancelled`; the foreach gives up on it `CONFIRM_MARGIN` later.

`call workflow` children (no foreach item) run in this process with the in-process runner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.dsl.ast import CallWorkflowNode, ForEachNode, WorkflowDef, walk
from runkon_flow.errors import EngineError, WorkflowError
from runkon_flow.persistence.models import NewRun, RunStatus
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.persistence.snapshots import SharedSnapshots
from runkon_flow.plugins.protocols import WorkflowResolver
from runkon_flow.runtime.child_runner import InProcessChildRunner, child_inputs, child_run_started
from runkon_flow.runtime.lease import new_owner_token
from runkon_flow.runtime.state import emit_to
from runkon_flow.runtime.types import (
    ChildWorkflowContext,
    ChildWorkflowInput,
    WorkflowResult,
    dedupe_sinks,
)
from runkon_flow.runtime.variables import apply_workflow_input_defaults

if TYPE_CHECKING:
    from runkon_flow.runtime.engine import FlowEngine

__all__ = [
    "FORCE_CANCEL_AFTER",
    "ChildOutcome",
    "ChildTask",
    "RemoteChildRunner",
    "RemoteExecutor",
    "WorkerLost",
    "callees_of",
    "watch_parent",
]

#: Seconds between a cancel and the remote task being force-cancelled (if it has not stopped by
#: itself by then), at least: `WorkflowExecConfig.cancel_grace` when longer. Cancel must stop
#: in-flight items within 5 s.
FORCE_CANCEL_AFTER = 2.0
#: How much longer than the force-cancel a foreach waits for its in-flight remote children before
#: it gives up on them: the executor confirms the force-cancel (Ray: the task's `ray.get` raises)
#: and the parent records the child `cancelled` within it. Both waits are measured from the
#: cancel's own moment (`CancellationToken.cancelled_at`), not from when each side noticed it.
#: Had the foreach given up first, items were recorded `cancelled` while their tasks still ran (a
#: child that then completed was run again by `resume`), the run ended, and a process about to
#: exit (a detached runner) left force-cancelled children's rows `running` for good.
CONFIRM_MARGIN = 3.0


def force_cancel_after(cancel_grace: float) -> float:
    """Seconds after the cancel at which a remote child is force-cancelled."""
    return max(cancel_grace, FORCE_CANCEL_AFTER)


_WAIT_TICK = 0.2
log = logging.getLogger(__name__)
_PARENT_POLL = 0.5


@dataclass(frozen=True)
class ChildTask:
    """Everything a worker needs to run one foreach child: plain data, no live objects."""

    store_url: str
    run_id: str
    top_run_id: str
    parent_run_id: str
    parent_generation: int
    workflow_name: str
    definitions: dict[str, str]  # name → definition JSON: the child's and every one it calls
    inputs: dict[str, str]
    depth: int
    owner_token: str
    lease_generation: int
    lease_ttl_secs: int
    dry_run: bool
    item_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildTask:
        """The task a driver sent, read by a worker whose runkon may be another version (a
        cluster being upgraded node by node): fields this version does not know (a newer
        driver's) are ignored, with a log line naming them; a field added later has a default
        meaning what a worker without it does, so an older driver's task still reads. A task
        lacking a field this version needs fails its item with a clear reason."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning(
                "child task for run %s: ignoring field(s) %s this runkon does not know "
                "(the driver runs a newer version: deploy the same checkout to every node)",
                data.get("run_id", "?"),
                ", ".join(unknown),
            )
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING)
        if missing:
            raise WorkflowError(
                f"the driver sent a child task without {', '.join(missing)}: it runs an older runkon "
                "than this worker (deploy the same checkout to every node)"
            )
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ChildOutcome:
    """What a worker returns: the child's end, and where it ran."""

    status: str
    all_succeeded: bool
    error: str | None = None
    output: str | None = None
    output_known: bool = False
    duration_ms: int = 0
    node: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkerLost(EngineError):
    """The process (or machine) running a child went away before it answered."""


class RemoteExecutor(Protocol):
    """Runs `ChildTask`s somewhere else. `wait` returns the outcome (a dict, `ChildOutcome`'s
    fields) or None if not done within `timeout`; it raises `WorkerLost` when the worker died and
    `EngineCancelled` when the task was force-cancelled."""

    store_url: str

    def submit(self, task: ChildTask) -> Any: ...

    def wait(self, handle: Any, timeout: float) -> dict[str, Any] | None: ...

    def force_cancel(self, handle: Any) -> None: ...


@dataclass
class _Parent:
    generation: int
    top_run_id: str


class RemoteChildRunner:
    """A ChildWorkflowRunner that sends foreach children to a `RemoteExecutor`."""

    @staticmethod
    def give_up_after(cancel_grace: float) -> float:
        """After a cancel, how long a foreach waits for the children this runner has in flight:
        strictly past their force-cancel, by `CONFIRM_MARGIN`, whatever `cancel_grace` is."""
        return force_cancel_after(cancel_grace) + CONFIRM_MARGIN

    def __init__(
        self,
        engine: FlowEngine,
        resolver: WorkflowResolver | None,
        store: WorkflowPersistence,
        executor: RemoteExecutor,
    ) -> None:
        self._engine = engine
        self._store = store
        self._executor = executor
        self._local = InProcessChildRunner(engine, resolver, store)
        self._snapshots = SharedSnapshots()
        self._resolver = resolver if resolver is not None else engine.workflow_resolver
        self._lock = threading.Lock()
        self._closures: dict[str, tuple[WorkflowDef, dict[str, str]]] = {}
        self._parents: dict[str, _Parent] = {}

    # ------------------------------------------------------------------ ChildWorkflowRunner

    def resume_child(
        self, workflow_run_id: str, model: str | None, parent_ctx: ChildWorkflowContext
    ) -> WorkflowResult:
        return self._local.resume_child(workflow_run_id, model, parent_ctx)

    def execute_child(
        self, workflow_name: str, parent_ctx: ChildWorkflowContext, params: ChildWorkflowInput
    ) -> WorkflowResult:
        if params.item_id is None:  # `call workflow`: one child, here
            return self._local.execute_child(workflow_name, parent_ctx, params)
        definition, definitions = self._closure(workflow_name)
        self._engine.check_runnable(definition, parent_ctx.action_registry, parent_ctx.item_provider_registry)
        if params.cancellation.is_cancelled():
            raise params.cancellation.error()
        inputs = apply_workflow_input_defaults(definition, child_inputs(parent_ctx.inputs, params.inputs))
        parent = self._parent(parent_ctx.workflow_run_id)
        config = parent_ctx.exec_config
        token = new_owner_token(config.lease_ttl_secs)
        # The worker gets the definitions with its task; the row keeps them for readers, shared.
        stored, holds = self._snapshots.to_store(
            parent_ctx.workflow_run_id, definition.name, definitions[definition.name]
        )
        # Durable: the worker is another process and must find the row (and its lease) at once.
        run = self._store.create_leased_run(
            NewRun(
                workflow_name=definition.name,
                parent_run_id=parent_ctx.workflow_run_id,
                dry_run=config.dry_run,
                trigger=definition.trigger,
                definition_snapshot=stored,
                parent_workflow_run_id=parent_ctx.workflow_run_id,
                inputs=inputs,
                iteration=params.iteration,
                workflow_title=definition.title,
            ),
            token,
            config.lease_ttl_secs,
        )
        if holds:
            self._snapshots.held_by(parent_ctx.workflow_run_id, definition.name, run.id)
        if params.on_created is not None:
            params.on_created(run.id)
        sinks = dedupe_sinks(self._engine.event_sinks, parent_ctx.event_sinks)
        if sinks:
            emit_to(
                sinks,
                parent_ctx.workflow_run_id,
                child_run_started(run.id, definition.name, parent_ctx, params),
            )
        task = ChildTask(
            store_url=self._executor.store_url,
            run_id=run.id,
            top_run_id=parent.top_run_id,
            parent_run_id=parent_ctx.workflow_run_id,
            parent_generation=parent.generation,
            workflow_name=definition.name,
            definitions=definitions,
            inputs=inputs,
            depth=params.depth,
            owner_token=token,
            lease_generation=run.generation,
            lease_ttl_secs=int(config.lease_ttl_secs),
            dry_run=config.dry_run,
            item_id=params.item_id,
        )
        started = time.monotonic()
        try:
            handle = self._executor.submit(task)
        except Exception as exc:
            self._close_row(run.id, token, RunStatus.FAILED, f"could not submit the child: {exc}")
            raise WorkflowError(f"item '{params.item_id}': could not submit its child run: {exc}") from exc
        grace = force_cancel_after(config.cancel_grace)
        return self._await(handle, run.id, token, definition.name, params, grace, started)

    # ------------------------------------------------------------------ waiting

    def _await(
        self,
        handle: Any,
        run_id: str,
        token: str,
        name: str,
        params: ChildWorkflowInput,
        grace: float,
        started: float,
    ) -> WorkflowResult:
        cancel = params.cancellation
        force_at: float | None = None
        while True:
            try:
                outcome = self._executor.wait(handle, _WAIT_TICK)
            except EngineCancelled:
                reason = cancel.reason() or CancellationReason.user()
                self._close_row(run_id, token, RunStatus.CANCELLED, str(EngineCancelled(reason)))
                return self._result(run_id, name, RunStatus.CANCELLED, str(EngineCancelled(reason)), started)
            except WorkerLost as exc:
                return self._lost(run_id, token, name, params, exc, started)
            except Exception as exc:  # the worker could not run the child (e.g. an agent it lacks)
                self._close_row(run_id, token, RunStatus.FAILED, str(exc))
                raise
            if outcome is not None:
                return self._from_outcome(run_id, name, outcome)
            if cancel.is_cancelled():
                now = time.monotonic()
                if force_at is None:
                    # From the cancel's moment, as the foreach's give-up (`give_up_after`): an
                    # executor slow to answer must not push the force-cancel past it.
                    force_at = (cancel.cancelled_at() or now) + grace
                    self._request_cancel(run_id)
                    now = time.monotonic()
                    if now < force_at:
                        continue
                if now >= force_at:
                    # Again every grace period until the executor confirms: a cancel that
                    # reaches a task still being placed on a worker can be lost.
                    self._executor.force_cancel(handle)
                    force_at = now + grace

    def _lost(
        self,
        run_id: str,
        token: str,
        name: str,
        params: ChildWorkflowInput,
        exc: WorkerLost,
        started: float,
    ) -> WorkflowResult:
        """A dead worker: a child that recorded its completion counts; anything else fails the
        item with the reason (resume dispatches it again)."""
        row = self._store.get_run(run_id)
        if row is not None and RunStatus(row.status) is RunStatus.COMPLETED:
            return WorkflowResult(
                workflow_run_id=run_id,
                workflow_name=name,
                all_succeeded=True,
                status=RunStatus.COMPLETED,
                total_duration_ms=row.total_duration_ms or 0,
            )
        reason = f"the worker running item '{params.item_id}' was lost: {exc}"
        self._close_row(run_id, token, RunStatus.FAILED, reason)
        return self._result(run_id, name, RunStatus.FAILED, reason, started)

    def _from_outcome(self, run_id: str, name: str, outcome: dict[str, Any]) -> WorkflowResult:
        status = RunStatus(outcome["status"])
        return WorkflowResult(
            workflow_run_id=run_id,
            workflow_name=name,
            all_succeeded=bool(outcome["all_succeeded"]),
            total_duration_ms=int(outcome.get("duration_ms") or 0),
            status=status,
            error=outcome.get("error"),
            final_structured_output=outcome.get("output"),
            output_known=bool(outcome.get("output_known")),
        )

    @staticmethod
    def _result(run_id: str, name: str, status: RunStatus, error: str, started: float) -> WorkflowResult:
        return WorkflowResult(
            workflow_run_id=run_id,
            workflow_name=name,
            all_succeeded=False,
            total_duration_ms=int((time.monotonic() - started) * 1000),
            status=status,
            error=error,
        )

    def _request_cancel(self, run_id: str) -> None:
        """Through the store first: the worker's engine sees `cancelling` and stops the child. A
        child the worker has just ended keeps its end (the store's write is conditional)."""
        with contextlib.suppress(Exception):  # the force-cancel after the grace period still stops it
            self._store.request_cancel(run_id)

    def _close_row(self, run_id: str, token: str, status: RunStatus, error: str) -> None:
        """Record the end of a child whose worker cannot (it died, or was force-cancelled)."""
        try:
            row = self._store.get_run(run_id)
            if row is not None and not RunStatus(row.status).is_terminal:
                self._store.update_run_status(run_id, status, None, error)
            self._store.release_lease(run_id, token)
        except Exception:
            pass

    # ------------------------------------------------------------------ what travels with a task

    def _parent(self, parent_run_id: str) -> _Parent:
        with self._lock:
            known = self._parents.get(parent_run_id)
        if known is not None:
            return known
        row = self._store.get_run(parent_run_id)
        if row is None:
            raise WorkflowError(f"parent run '{parent_run_id}' is not in the store")
        top = parent_run_id
        seen = {top}
        current = row
        while current is not None and (current.parent_workflow_run_id or current.parent_run_id):
            up = current.parent_workflow_run_id or current.parent_run_id
            if up in seen:
                break
            seen.add(up)
            current = self._store.get_run(up)
            if current is not None:
                top = current.id
        parent = _Parent(row.generation, top)
        with self._lock:
            return self._parents.setdefault(parent_run_id, parent)

    def _closure(self, name: str) -> tuple[WorkflowDef, dict[str, str]]:
        """The child's definition and, as JSON, it and every workflow it calls (transitively), as
        this process resolved them once for this run: the worker runs exactly these."""
        with self._lock:
            known = self._closures.get(name)
        if known is not None:
            return known
        if self._resolver is None:
            raise WorkflowError(f"cannot run sub-workflow '{name}': no workflow resolver configured")
        root = self._resolver.resolve(name)
        definitions: dict[str, str] = {}
        todo = [root]
        while todo:
            wf = todo.pop()
            if wf.name in definitions:
                continue
            definitions[wf.name] = json.dumps(wf.to_json(), ensure_ascii=False)
            for callee in callees_of(wf):
                if callee not in definitions:
                    todo.append(self._resolver.resolve(callee))
        with self._lock:
            return self._closures.setdefault(name, (root, definitions))


def callees_of(wf: WorkflowDef) -> Iterator[str]:
    """Names of the workflows `wf` starts (`call workflow` and `foreach` targets)."""
    for node in walk([*wf.body, *wf.always]):
        if isinstance(node, (CallWorkflowNode, ForEachNode)):
            yield node.workflow


def watch_parent(store: WorkflowPersistence, task: ChildTask, token: CancellationToken) -> Callable[[], None]:
    """On the worker: stop the child (cancel `token`) once its parent run is taken over by another
    engine (its lease generation moved on: that engine dispatches the item again) or is being
    cancelled or has ended. Polls the parent's row twice a second; returns the stop function."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(_PARENT_POLL) and not token.is_cancelled():
            try:
                row = store.get_run(task.parent_run_id)
            except Exception:
                continue  # a store hiccup: the child's own lease refresh judges the store
            if row is None:
                token.cancel(CancellationReason.of("ParentCancelled"))
            elif row.generation != task.parent_generation:
                token.cancel(CancellationReason.of("LeaseLost"))
            elif RunStatus(row.status) is RunStatus.CANCELLING or RunStatus(row.status).is_terminal:
                token.cancel(CancellationReason.of("ParentCancelled"))

    thread = threading.Thread(target=loop, name=f"parent-watch-{task.run_id[-6:]}", daemon=True)
    thread.start()
    return stop.set
