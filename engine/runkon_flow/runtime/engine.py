"""`FlowEngineBuilder` and `FlowEngine` (engine.md §2, §7.1, §10.1, §11.2): the entry points.

A run: validate → acquire the lease → register with the run monitor → mark the run `running`
→ core loop (start event, body, always block, summary, metrics, final status, final event) →
release the lease. A failing workflow is a `WorkflowResult` with `all_succeeded=False`, never an
exception; exceptions are for callers' mistakes (validation, lease already owned) and for a lost
lease.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from os import PathLike
from typing import Any

from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.errors import (
    AlreadyOwned,
    EngineError,
    Problem,
    StoreUnavailable,
    ValidationErrors,
    WorkflowError,
    WorkflowInvalid,
    stopped_for_store,
)
from runkon_flow.events import (
    EventSink,
    MetricsUpdated,
    Panicked,
    RunCancelled,
    RunCompleted,
    RunResumed,
    RunStarted,
)
from runkon_flow.persistence.holders import stopped_holding
from runkon_flow.persistence.models import (
    FanOutItemRow,
    NewRun,
    RetryRequest,
    RunStatus,
    StepRole,
    StepStatus,
    StepUpdate,
)
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.plugins.protocols import (
    ActionExecutor,
    Extensions,
    GateResolver,
    ItemProvider,
    ScriptEnvProvider,
    WorkflowResolver,
)
from runkon_flow.plugins.registries import ActionRegistry, GateResolverRegistry, ItemProviderRegistry
from runkon_flow.runtime.lease import RunMonitor, abort, lease_clock, new_owner_token, take_lease
from runkon_flow.runtime.nodes.dispatch import execute_nodes
from runkon_flow.runtime.report_gate import ReportGate, commit_and_deliver, needs_gate, stopped_child_end
from runkon_flow.runtime.rerun import reused_events
from runkon_flow.runtime.resume import ResumeContext, leaf_skip_keys
from runkon_flow.runtime.state import ExecutionState, LedgerRow
from runkon_flow.runtime.steps import describe_exception
from runkon_flow.runtime.summary import build_summary
from runkon_flow.runtime.types import (
    ChildRunInput,
    ChildWorkflowContext,
    ChildWorkflowRunner,
    CreatedChild,
    DefaultRunContext,
    LlmRunMetrics,
    NoOpScriptEnvProvider,
    RunInput,
    RunSettings,
    WorkflowResult,
    dedupe_sinks,
)
from runkon_flow.runtime.validate import validate_workflow_for_host

__all__ = ["FlowEngine", "FlowEngineBuilder"]

log = logging.getLogger("runkon_flow.engine")

_VALIDATION_CACHE_SIZE = 256
_UNFINISHED = frozenset({StepStatus.PENDING.value, StepStatus.RUNNING.value, StepStatus.WAITING.value})
_ABANDONED = "interrupted: the engine running it stopped; the run was resumed"
#: Why a child a resume ended stopped: the engine running it did (it crashed, was killed, or
#: let go of the run — the dashboard's hand-over; the store's words, `_ABANDONED`, say the rest).
_ENGINE_STOPPED = CancellationReason.of("EngineShutdown")
# A called child a resumed run did not reach again (it took another branch, or failed first).
_UNREACHED = "not resumed: the run it belongs to ended without reaching it again"


class FlowEngineBuilder:
    """Collects plug-ins, then `build()`s a FlowEngine (engine.md §2.1)."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionExecutor] = {}
        self._fallback: ActionExecutor | None = None
        self._providers = ItemProviderRegistry()
        self._gates = GateResolverRegistry()
        self._script_env: ScriptEnvProvider = NoOpScriptEnvProvider()
        self._workflow_dirs: list[str] = []
        self._resolver: WorkflowResolver | None = None
        self._sinks: list[EventSink] = []
        self._explain_missing: Callable[[str], str] | None = None

    def action(self, executor: ActionExecutor) -> FlowEngineBuilder:
        """Register an executor under `executor.name()`; a later one with the same name replaces it."""
        self._actions[executor.name()] = executor
        return self

    def action_fallback(self, executor: ActionExecutor) -> FlowEngineBuilder:
        """The executor used for any label without a named one. Only one is allowed."""
        if self._fallback is not None:
            raise WorkflowError("action_fallback already set — only one fallback executor is allowed")
        self._fallback = executor
        return self

    def explain_missing_action(self, explain: Callable[[str], str]) -> FlowEngineBuilder:
        """How validation explains a call whose label has no executor (the hint of that problem),
        e.g. the agent catalog's reason; default: "register an executor named … or add a fallback"."""
        self._explain_missing = explain
        return self

    def item_provider(self, provider: ItemProvider) -> FlowEngineBuilder:
        self._providers.register(provider)
        return self

    def gate_resolver(self, resolver: GateResolver) -> FlowEngineBuilder:
        self._gates.register(resolver)
        return self

    def script_env_provider(self, provider: ScriptEnvProvider) -> FlowEngineBuilder:
        self._script_env = provider
        return self

    def workflow_dir(self, path: str | PathLike[str]) -> FlowEngineBuilder:
        """Resolve sub-workflows as `<path>/<name>.wf` (overridden by `workflow_resolver`)."""
        self._workflow_dirs.append(str(path))
        return self

    def workflow_resolver(self, resolver: WorkflowResolver) -> FlowEngineBuilder:
        self._resolver = resolver
        return self

    def event_sink(self, sink: EventSink) -> FlowEngineBuilder:
        self._sinks.append(sink)
        return self

    def with_event_sinks(self, sinks: Sequence[EventSink]) -> FlowEngineBuilder:
        self._sinks.extend(sinks)
        return self

    def build(self) -> FlowEngine:
        resolver = self._resolver
        if resolver is None and self._workflow_dirs:
            from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver

            resolver = DirectoryWorkflowResolver(*self._workflow_dirs)
        return FlowEngine(
            actions=ActionRegistry(dict(self._actions), self._fallback, self._explain_missing),
            item_providers=self._providers,
            gate_resolvers=self._gates,
            script_env_provider=self._script_env,
            workflow_resolver=resolver,
            event_sinks=list(self._sinks),
        )


def _not_taken(st: ExecutionState) -> EngineError:
    """Why the run's lease could not be taken: no such run (a wrong id, or `gc` deleted it
    meanwhile), else another engine holds it."""
    if st.persistence.get_run(st.workflow_run_id) is None:
        return WorkflowError(f"no workflow run '{st.workflow_run_id}'")
    return AlreadyOwned(st.workflow_run_id)


class FlowEngine:
    """Runs workflows. Thread-safe: many runs may execute at once on different threads."""

    def __init__(
        self,
        *,
        actions: ActionRegistry | None = None,
        item_providers: ItemProviderRegistry | None = None,
        gate_resolvers: GateResolverRegistry | None = None,
        script_env_provider: ScriptEnvProvider | None = None,
        workflow_resolver: WorkflowResolver | None = None,
        event_sinks: Sequence[EventSink] = (),
    ) -> None:
        self.action_registry = actions or ActionRegistry()
        self.item_provider_registry = item_providers or ItemProviderRegistry()
        self.gate_resolvers = gate_resolvers or GateResolverRegistry()
        self.script_env_provider: ScriptEnvProvider = script_env_provider or NoOpScriptEnvProvider()
        self.workflow_resolver = workflow_resolver
        self.event_sinks: list[EventSink] = list(event_sinks)
        self.monitor = RunMonitor()
        self._lock = threading.Lock()
        self._active: dict[str, ExecutionState] = {}
        self._validated: OrderedDict[tuple[int, int, int], WorkflowDef] = OrderedDict()

    # ------------------------------------------------------------------ validation

    def validate(self, definition: WorkflowDef) -> None:
        """Raise `ValidationErrors` with every problem this engine's registries find (engine.md §13),
        each placed in the file it is written in (the definition's `source_path`, or a
        sub-workflow's), so `Problem.render()` reads `file:line:col: message`."""
        problems = self._host_problems(definition, self.action_registry, self.item_provider_registry)
        if problems:
            raise ValidationErrors(problems)

    def _host_problems(
        self, definition: WorkflowDef, actions: ActionRegistry, providers: ItemProviderRegistry
    ) -> list[Problem]:
        """The host check's problems; those it found in `definition` itself carry its line and column
        only (it checks definitions, not files): they are placed in `definition`'s file here."""
        problems = validate_workflow_for_host(
            definition, actions, providers, self.gate_resolvers, self.workflow_resolver
        )
        if not definition.source_path:
            return problems
        return [
            p
            if p.location.file is not None
            else dataclasses.replace(p, location=dataclasses.replace(p.location, file=definition.source_path))
            for p in problems
        ]

    def check_runnable(
        self,
        definition: WorkflowDef,
        actions: ActionRegistry | None = None,
        providers: ItemProviderRegistry | None = None,
    ) -> None:
        """Raise `WorkflowInvalid` (a `WorkflowError`, text `workflow '<name>' failed validation: …`,
        and a `ValidationErrors` with the problems) unless this engine can run `definition` with
        these registries (default: the engine's). Cached per definition object."""
        self._check_valid(
            definition, actions or self.action_registry, providers or self.item_provider_registry
        )

    def _check_valid(
        self, definition: WorkflowDef, actions: ActionRegistry, providers: ItemProviderRegistry
    ) -> None:
        """Validate for a run with the run's registries; results are cached per definition object."""
        key = (id(definition), id(actions), id(providers))
        if self._validated.get(key) is definition:  # the hot path (every child run): no lock, no reorder
            return
        problems = self._host_problems(definition, actions, providers)
        if problems:
            raise WorkflowInvalid(definition.name, problems)
        with self._lock:
            self._validated[key] = definition
            while len(self._validated) > _VALIDATION_CACHE_SIZE:
                self._validated.popitem(last=False)

    # ------------------------------------------------------------------ public entry points

    def run_workflow(self, definition: WorkflowDef, inp: RunInput) -> WorkflowResult:
        """Run a top-level workflow. The run row must exist unless `inp.workflow_run_id` is None."""
        st = self._state_for_run(definition, inp)
        return self._execute(definition, st, validated=True)

    def resume_workflow(self, definition: WorkflowDef, inp: RunInput) -> WorkflowResult:
        """Resume the run `inp.workflow_run_id` (required): completed steps are skipped and restored.
        `inp.inputs` left empty: the inputs stored with the run, which it was started with."""
        if not inp.workflow_run_id:
            raise WorkflowError("resume_workflow: RunInput.workflow_run_id is required")
        if not inp.inputs:  # the rest of the run sees the values its first steps saw
            run = inp.persistence.get_run(inp.workflow_run_id)
            if run is not None and run.inputs:
                inp = dataclasses.replace(inp, inputs=dict(run.inputs))
        st = self._state_for_run(definition, inp)
        st.retried_items = inp.retried_items
        return self._resume(definition, st, inp.seen_generation, inp.known_items)

    def run_child(
        self, definition: WorkflowDef, inp: ChildRunInput, parent_ctx: ChildWorkflowContext
    ) -> WorkflowResult:
        """Run a pre-created child run row on behalf of a parent run (engine.md §2.5)."""
        st = self._state_for_child(definition, inp, parent_ctx)
        return self._execute(definition, st, validated=True)

    def resume_child(
        self, definition: WorkflowDef, inp: ChildRunInput, parent_ctx: ChildWorkflowContext
    ) -> WorkflowResult:
        """Resume an unfinished child run on behalf of a (resumed) parent."""
        st = self._state_for_child(definition, inp, parent_ctx)
        return self._resume(definition, st)

    def run(self, definition: WorkflowDef, state: ExecutionState) -> WorkflowResult:
        """Low-level: run with a caller-built state. Engine sinks are delivered first, then the state's."""
        state.event_sinks = dedupe_sinks(self.event_sinks, state.event_sinks)
        return self._execute(definition, state)

    def resume(self, definition: WorkflowDef, state: ExecutionState) -> WorkflowResult:
        """Low-level resume (engine.md §10.1) with a caller-built state."""
        state.event_sinks = dedupe_sinks(self.event_sinks, state.event_sinks)
        return self._resume(definition, state)

    def cancel_run(self, run_id: str, reason: CancellationReason | None = None) -> None:
        """Cancel a run active in this engine (a child run id works too). It stops within a second
        or two — gates and scripts at once — and ends `cancelled` with RunCancelled(reason)."""
        st = self._active.get(run_id)
        if st is None:
            raise WorkflowError(f"cancel_run: run '{run_id}' is not active in this engine instance")
        if not _is_lease_lost(reason):  # a lost lease: the run is another engine's to mark (see _run)
            try:
                st.persistence.request_cancel(run_id)  # a run that just ended keeps its end
            except Exception as exc:
                log.warning("cancel_run: could not mark run %s cancelling: %s", run_id, exc)
        abort(st, reason or CancellationReason.user())
        self.monitor.forward_now(st)

    def active_runs(self) -> list[str]:
        """Ids of the runs (including child runs) executing in this engine right now."""
        return list(self._active)

    def close(self) -> None:
        """Engine shutdown: every active run is cancelled with EngineShutdown."""
        states = list(self._active.values())
        for st in states:
            abort(st, CancellationReason.of("EngineShutdown"))

    def __enter__(self) -> FlowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state construction

    def _state_for_run(self, definition: WorkflowDef, inp: RunInput) -> ExecutionState:
        actions = inp.action_registry or self.action_registry
        providers = inp.item_provider_registry or self.item_provider_registry
        self._check_valid(definition, actions, providers)
        run_id = inp.workflow_run_id
        token: str | None = None
        if run_id is None:
            token = new_owner_token(inp.exec_config.lease_ttl_secs)
            leased_at = lease_clock()
            run = inp.persistence.create_leased_run(
                NewRun(
                    workflow_name=definition.name,
                    parent_run_id=inp.parent_run_id,
                    dry_run=inp.exec_config.dry_run,
                    trigger=definition.trigger,
                    definition_snapshot=json.dumps(definition.to_json(), ensure_ascii=False),
                    inputs=dict(inp.inputs),
                ),
                token,
                inp.exec_config.lease_ttl_secs,
            )
            run_id = run.id
        st = ExecutionState(
            persistence=inp.persistence,
            workflow_run_id=run_id,
            workflow_name=inp.workflow_name or definition.name,
            settings=RunSettings(
                action_registry=actions,
                item_provider_registry=providers,
                script_env_provider=inp.script_env_provider or self.script_env_provider,
                run_ctx=inp.run_ctx or DefaultRunContext(run_id=run_id, workflow_name=definition.name),
                extra_plugin_dirs=tuple(inp.extra_plugin_dirs),
                model=inp.model,
                exec_config=inp.exec_config,
                schema_resolver=inp.schema_resolver,
                target_label=inp.target_label,
                triggered_by_hook=inp.triggered_by_hook,
                event_sinks=tuple(dedupe_sinks(self.event_sinks, inp.event_sinks)),
            ),
            inputs=dict(inp.inputs),
            parent_run_id=inp.parent_run_id,
            depth=inp.depth,
            default_as_identity=inp.default_as_identity,
            child_runner=inp.child_runner or self._default_child_runner(inp.persistence),
            cancellation=inp.cancellation or CancellationToken(),
        )
        if token is not None:
            _held(st, token, 1, leased_at)
        return st

    def _state_for_child(
        self, definition: WorkflowDef, inp: ChildRunInput, parent_ctx: ChildWorkflowContext
    ) -> ExecutionState:
        settings = parent_ctx.settings.for_child(
            self.event_sinks,
            action_registry=inp.action_registry,
            item_provider_registry=inp.item_provider_registry,
            script_env_provider=inp.script_env_provider,
            schema_resolver=inp.schema_resolver,
            target_label=inp.target_label,
            triggered_by_hook=inp.triggered_by_hook,
            write_behind=inp.write_behind,
        )
        self._check_valid(definition, settings.action_registry, settings.item_provider_registry)
        inputs = dict(inp.inputs_override) if inp.inputs_override is not None else dict(parent_ctx.inputs)
        st = _child_state(
            definition,
            inp.persistence,
            inp.workflow_run_id,
            settings,
            inputs,
            parent_ctx,
            inp.depth,
            inp.as_identity,
            inp.child_runner,
            inp.cancellation,
        )
        st.stops_for_store = inp.stops_for_store
        if inp.owner_token is not None and inp.lease_generation is not None:
            _held(st, inp.owner_token, inp.lease_generation)
        return st

    def run_created_child(
        self,
        definition: WorkflowDef,
        parent_ctx: ChildWorkflowContext,
        created: CreatedChild,
    ) -> WorkflowResult:
        """`run_child` for a child the in-process runner has just created running and leased
        (`create_leased_run`), inheriting every setting but its labels from the parent: the same
        run, without a `ChildRunInput` per child and validated once (the runner checked the
        definition against the parent's registries, which the child keeps)."""
        settings = parent_ctx.settings.for_child(
            self.event_sinks,
            target_label=parent_ctx.target_label,
            triggered_by_hook=parent_ctx.triggered_by_hook,
            write_behind=created.write_behind,
        )
        st = _child_state(
            definition,
            created.store,
            created.run_id,
            settings,
            created.inputs,
            parent_ctx,
            created.depth,
            created.as_identity,
            created.child_runner,
            created.cancellation,
        )
        st.stops_for_store = created.stops_for_store
        _held(st, created.owner_token, created.generation, created.leased_at)
        return self._execute(definition, st, validated=True)

    def _default_child_runner(self, store: WorkflowPersistence) -> ChildWorkflowRunner | None:
        if self.workflow_resolver is None:
            return None
        from runkon_flow.runtime.child_runner import InProcessChildRunner

        return InProcessChildRunner(self, self.workflow_resolver, store)

    # ------------------------------------------------------------------ execution

    def _resume(
        self,
        definition: WorkflowDef,
        st: ExecutionState,
        seen_generation: int | None = None,
        known_items: Mapping[str, list[FanOutItemRow]] | None = None,
    ) -> WorkflowResult:
        if st.resume_ctx is not None:
            raise WorkflowError("resume() requires resume_ctx to be None on entry")
        self._check_valid(definition, st.action_registry, st.item_provider_registry)
        generation = take_lease(st, new_owner_token(st.exec_config.lease_ttl_secs))
        if generation is None:
            raise _not_taken(st)
        if seen_generation is not None and generation != seen_generation + 1:
            # Each new holder moves the generation by one: another engine held the run since the
            # caller looked at it (two resumes at once, the other one quicker).
            self._release(st)
            raise AlreadyOwned(st.workflow_run_id)
        try:
            steps = st.persistence.get_steps(st.workflow_run_id)
        except Exception as exc:
            self._release(st)
            raise WorkflowError(
                f"resume: failed to load steps for run '{st.workflow_run_id}': {exc}"
            ) from exc
        run = st.persistence.get_run(st.workflow_run_id) if not st.parent_run_id else None
        retry = RetryRequest.from_json(run.retry_request) if run is not None else None
        st.resume_ctx = ResumeContext.from_steps(steps, retry, known_items)
        if run is not None and run.rerun_of and run.status is RunStatus.PENDING:  # never started
            st.rerun_start = (run.rerun_of, run.rerun_from or "", tuple(steps))
        if not any(row.role == StepRole.GATE.value for row in steps):
            st.step_ledger = {
                row.id: LedgerRow(
                    row.position, row.step_name, row.iteration, StepStatus(row.status), row.started_at
                )
                for row in steps
            }
        self._close_interrupted_steps(st, steps)
        if not st.parent_run_id:
            self._end_abandoned_children(st)
        return self._execute(definition, st, lease_held=True, validated=True)

    def _end_abandoned_children(self, st: ExecutionState) -> None:
        """Child runs the engine that held the run left unfinished (a foreach's in-flight items,
        a crash) will never finish: fan-outs start such items again as new children. Record them
        `cancelled`, in one write for the whole tree, or they read `running` under an ended run
        for good; a `call workflow` child is resumed in place and left alone. Each one ended is
        said as its `RunCancelled(EngineShutdown)` — the engine that ran it stopped — with the
        store's words for a summary, right after the run's start event (`_core`): the stream
        stored no end for it (a child stopped for a lost lease is stored as a note: event_log.py),
        so `watch`, `logs` and a dashboard following the run read it `running` for good before."""
        try:
            st.abandoned_children = st.persistence.end_abandoned_descendants(st.workflow_run_id, _ABANDONED)
        except Exception as exc:
            log.warning("resume: could not end run %s's abandoned child runs: %s", st.workflow_run_id, exc)

    def _close_interrupted_steps(self, st: ExecutionState, steps: list[Any]) -> None:
        """Rows a dead engine left `pending`/`running`/`waiting` will never finish: record them
        `cancelled` so the run's history (and the approval API) shows only live steps."""
        for row in steps:
            if str(row.status) in _UNFINISHED:
                try:
                    st.update_step(
                        row.id,
                        StepUpdate(
                            generation=st.generation,
                            status=StepStatus.CANCELLED,
                            result_text=_ABANDONED,
                        ),
                    )
                except EngineError as exc:
                    log.warning("resume: could not close interrupted step %s: %s", row.id, exc)

    def _execute(
        self,
        definition: WorkflowDef,
        st: ExecutionState,
        *,
        lease_held: bool = False,
        validated: bool = False,
    ) -> WorkflowResult:
        st.engine = self
        if st.run_ctx is None:
            st.run_ctx = DefaultRunContext(run_id=st.workflow_run_id, workflow_name=definition.name)
        if st.child_runner is None:
            st.child_runner = self._default_child_runner(st.persistence)
        if not st.workflow_name:
            st.workflow_name = definition.name
        if not validated:
            self._check_valid(definition, st.action_registry, st.item_provider_registry)
        no_lease = not lease_held and not st.created_leased
        if (
            no_lease
            and take_lease(st, st.owner_token or new_owner_token(st.exec_config.lease_ttl_secs)) is None
        ):
            raise _not_taken(st)
        if st.depth == 0 and st.lease_generation is not None:
            # A stored event stream is fenced by this lease (event_log.StoredEventWriter.lease_taken).
            for sink in st.event_sinks:
                lease_taken = getattr(sink, "lease_taken", None)
                if lease_taken is not None:
                    lease_taken(st.workflow_run_id, st.lease_generation, partial(self.doubt_lease, st))
        if st.report_gate is None and not st.write_behind and needs_gate(st.persistence):
            st.report_gate = ReportGate()  # shared by this run's descendants (report_gate.py)
        if st.exec_config.shutdown is None:
            st.exec_config.shutdown = threading.Event()
        # Single dict operations, atomic in CPython: a foreach's workers start and end thousands
        # of child runs here, and a lock they all share would make them queue.
        active = self._active
        active[st.workflow_run_id] = st
        self.monitor.register(st)
        try:
            if not st.created_leased:  # a run created running and leased just now needs neither
                self._mark_started(st)
            result = self._core(definition, st)
        finally:
            if not st.lease_released:  # else _finish let go of it already
                self.monitor.unregister(st)
            if active.get(st.workflow_run_id) is st:
                active.pop(st.workflow_run_id, None)
            if not st.lease_released:
                self._release(st)
        if st.store_stopped is not None:
            raise st.store_stopped  # stopped, left as stored: to resume once the database works
        if st.lease_lost and st.depth == 0 and st.lease_store_gone is not None:
            raise st.lease_store_gone  # stopped, left as stored: to resume once the database works
        if st.lease_lost:
            raise EngineCancelled(CancellationReason.of("LeaseLost"))
        return result

    def _release(self, st: ExecutionState) -> None:
        try:
            st.persistence.release_lease(st.workflow_run_id, st.owner_token or "")
        except Exception as exc:
            log.warning("could not release the lease of run %s: %s", st.workflow_run_id, exc)
            # This engine runs it no more: a resume in this process takes it at once (holders.py).
            stopped_holding(st.workflow_run_id, st.owner_token or "")

    def _mark_started(self, st: ExecutionState) -> None:
        """Mark the run `running` (a `cancelled` run being resumed becomes `running` again), in one
        conditional write: a look and a write would lose what lands between them. Honour a cancel
        written before we started — a `cancelling` run, and a `cancelled` one that is started
        rather than resumed (its runner read it `pending`, then it was cancelled before the runner
        took its lease). A run to start that is neither pending nor cancelled was started by
        another engine meanwhile (two runners of one pending run): `AlreadyOwned`, nothing written."""
        store = st.persistence
        try:
            status = store.start_run(st.workflow_run_id, resuming=st.resume_ctx is not None)
        except Exception as exc:
            log.warning("could not mark run %s running: %s", st.workflow_run_id, exc)
            return
        if status is None:
            return
        if status not in (RunStatus.CANCELLING, RunStatus.CANCELLED):
            raise AlreadyOwned(st.workflow_run_id)
        try:
            run = store.get_run(st.workflow_run_id)
        except Exception as exc:
            log.warning("could not read why run %s was cancelled: %s", st.workflow_run_id, exc)
            run = None
        left = CancellationReason.from_error(run.error) if run is not None else None
        abort(st, left or CancellationReason.user())

    def _core(self, definition: WorkflowDef, st: ExecutionState) -> WorkflowResult:
        """engine.md §7.1: start event, body, always, summary, metrics, final status, final event."""
        if st.event_sinks:
            parent = st.parent_run_id or None
            if st.rerun_start is not None:
                rerun_of, rerun_from, reused = st.rerun_start
                st.emit(
                    RunStarted(
                        workflow_name=definition.name,
                        parent_run_id=parent,
                        inputs=dict(st.inputs),
                        rerun_of=rerun_of,
                        rerun_from=rerun_from,
                    )
                )
                for event in reused_events(definition, reused, rerun_of):
                    st.emit(event)
            elif st.resume_ctx is not None and st.resume_ctx.completed_count:
                st.emit(
                    RunResumed(
                        workflow_name=definition.name,
                        parent_run_id=parent,
                        skipped_steps=st.resume_ctx.skippable_count(leaf_skip_keys(definition.body)),
                        retried_items=st.retried_items,
                    )
                )
            else:
                st.emit(
                    RunStarted(
                        workflow_name=definition.name,
                        parent_run_id=parent,
                        inputs=dict(st.inputs),
                        retried_items=st.retried_items,
                    )
                )
            for child_id in st.abandoned_children:  # ended by this resume: as the store has them
                st.emit(RunCancelled(reason=_ENGINE_STOPPED, summary=_ABANDONED), run_id=child_id)
        body_error: EngineError | None = None
        try:
            execute_nodes(st, definition.body, 0, "body", respect_fail_fast=True)
        except EngineError as exc:
            st.all_succeeded = False
            body_error = exc
            if isinstance(exc, EngineCancelled) and _is_lease_lost(exc.reason):
                st.cancellation.cancel(CancellationReason.of("LeaseLost"))
        except Exception as exc:  # a bug in the engine or a plug-in contract violation
            st.all_succeeded = False
            body_error = self._crashed(st, exc)
            _fail_running_steps(st, str(body_error))

        if definition.always and st.cancellation.is_cancelled():
            log.info("run %s: always block skipped, the run was cancelled", st.workflow_run_id)
        elif definition.always:
            st.inputs["workflow_status"] = "completed" if st.all_succeeded else "failed"
            saved = st.all_succeeded
            # The always list runs again at the end of every attempt, a resumed one included: what
            # it reports must describe how this attempt ended (docs/engine.md, "Resume").
            resume_ctx, st.resume_ctx = st.resume_ctx, None
            try:
                execute_nodes(st, definition.always, 0, "always", respect_fail_fast=False)
            except EngineError as exc:
                st.warn(f"always block failed: {exc}")
            except Exception as exc:
                st.warn(f"always block failed: {self._crashed(st, exc)}")
            finally:
                st.resume_ctx = resume_ctx
            st.all_succeeded = saved

        try:
            rows = st.step_ledger.values() if st.step_ledger is not None else None
            summary = build_summary(
                st.workflow_name,
                rows if rows is not None else st.persistence.get_steps(st.workflow_run_id),
                st.all_succeeded,
            )
        except Exception as exc:
            log.warning("could not build the summary of run %s: %s", st.workflow_run_id, exc)
            summary = f"Workflow '{st.workflow_name}'\nStatus: {'SUCCESS' if st.all_succeeded else 'FAILED'}"
        if body_error is not None:
            summary += f"\nError: {body_error}"
        # A fan-out child that spent nothing (no cost, turns or agent time) sends no MetricsUpdated:
        # it would say nothing, once per item, to every sink and into the stored stream (an eighth
        # of a no-op fan-out's events). Every other run sends it, as the spec (engine.md §4.2) says.
        if st.event_sinks and not (
            st.write_behind and not (st.total_cost or st.total_turns or st.total_duration_ms)
        ):
            st.emit(
                MetricsUpdated(
                    total_cost=st.total_cost,
                    total_turns=st.total_turns,
                    total_duration_ms=st.total_duration_ms,
                )
            )

        error_text = str(body_error) if body_error is not None else None
        # The final event follows the final write: an engine whose fenced finish was refused (it
        # stood still past its lease and another engine took the run over and ended it) did not
        # end the run, so it says RunCompleted to nobody and stops as having lost its lease.
        if st.all_succeeded:
            status = RunStatus.COMPLETED
            if self._finish(st, status, summary, None):
                if st.event_sinks:
                    st.emit(RunCompleted(succeeded=True, summary=summary))
            else:
                status = self._lost(st, summary)
        elif isinstance(body_error, EngineCancelled) or st.cancellation.is_cancelled():
            status = RunStatus.CANCELLED
            reason = st.cancellation.reason()
            if reason is None and isinstance(body_error, EngineCancelled):
                reason = body_error.reason
            if _is_lease_lost(reason):
                # Another engine owns the run now: writing its status would clobber (and, through
                # its cancel poll, stop) the live run. The stale engine only reports. A lease the
                # run database could not renew (`lease_store_gone`): no one took the run over; it
                # ends with that error (`_run`), as when its final write fails — no end event.
                st.lease_lost = True
                if st.depth > 0 or st.lease_store_gone is None:
                    log.warning("run %s: lease lost; final status left to the new owner", st.workflow_run_id)
                    if st.event_sinks:
                        st.emit(self._stopped_end(st, summary))
            elif self._finish(st, status, summary, error_text):
                if st.event_sinks:
                    st.emit(RunCancelled(reason=reason or CancellationReason.user(), summary=summary))
            else:
                self._lost(st, summary)
        elif isinstance(body_error, StoreUnavailable) and (st.depth == 0 or st.stops_for_store):
            # The run database could record nothing more: the run did not fail. Even if it takes
            # this write (on a full disk an update in place may fit where an insert does not), the
            # run is not recorded failed but stays as it was stored, resumable (no end event). A
            # `call workflow` or foreach child stops so too, and its parent with it
            # (nodes/call_workflow.py, nodes/foreach.py).
            status = self._stopped_for_store(st, body_error)
        else:
            status = RunStatus.FAILED
            if self._finish(st, status, summary, error_text):
                if st.event_sinks:
                    st.emit(RunCompleted(succeeded=False, error=error_text, summary=summary))
            else:
                status = self._lost(st, summary)
        return WorkflowResult(
            workflow_run_id=st.workflow_run_id,
            workflow_name=definition.name,
            all_succeeded=st.all_succeeded,
            total_duration_ms=st.total_duration_ms,
            extensions=_extensions(st),
            status=status,
            error=error_text,
            final_structured_output=st.last_output[1] if st.last_output is not None else None,
            output_known=True,
        )

    def _finish(self, st: ExecutionState, status: RunStatus, summary: str, error: str | None) -> bool:
        """Write the final status and hand the lease back in one write; whether it was written.
        The monitor lets go of the run first, so no late refresh can take the released lease
        again. The write is fenced: an engine paused past its lease (SIGSTOP, Ctrl-Z) whose run
        another engine took over writes nothing, and says so."""
        self.monitor.unregister(st)
        if not st.write_behind:  # what this run's children wrote behind is committed before its end
            commit_and_deliver(st.report_gate, st.persistence.flush)
        token = st.owner_token or ""
        if st.write_behind:
            # Queued: a refusal is known only when it is committed, after this run has returned.
            written = st.persistence.finish_run(
                st.workflow_run_id,
                status,
                summary,
                error,
                token,
                durable=False,
                on_refused=partial(self._refused_behind, st),
            )
        elif st.resume_ctx is not None:
            # Resumed: a child an earlier attempt left unfinished and this one did not reach
            # again would read `running` for good. Ended with the run, in its (fenced) write;
            # a later resume still continues a called one in place. Each one ended is said as its
            # `RunCancelled(EngineShutdown)` with the store's words, before the run's own end, as
            # `_end_abandoned_children` says a foreach's: the stream stored no end for it.
            ended: list[str] = []
            written = st.persistence.finish_run(
                st.workflow_run_id, status, summary, error, token, abandoned=_UNREACHED, ended=ended
            )
            if written and st.event_sinks:
                for child_id in ended:
                    st.emit(RunCancelled(reason=_ENGINE_STOPPED, summary=_UNREACHED), run_id=child_id)
        else:
            written = st.persistence.finish_run(st.workflow_run_id, status, summary, error, token)
        st.lease_released = True
        if not written:
            log.warning(
                "run %s: lease lost; final status %s not written, left to the new owner",
                st.workflow_run_id,
                status.value,
            )
        return written

    def _stopped_for_store(self, st: ExecutionState, exc: StoreUnavailable) -> RunStatus:
        """A top-level run whose body stopped because the run database could record nothing more
        (`StoreUnavailable`): no final status is written — the run stays unfinished, as it was
        stored, so `resume` continues it — and `_execute` raises `exc` once the lease is let go
        of. What the run wrote behind is committed if it can be, and when the database takes a
        write still, the row says why the run stopped (`show`, `runs --json`, the dashboard read
        it; a resume clears it); only while this engine still holds the run (it renews its lease
        first), so a run another engine took over is never written."""
        self.monitor.unregister(st)
        st.store_stopped = exc
        store = st.persistence
        try:  # a failure here is the one the run stops for, said once by its caller: not logged
            if not st.write_behind:
                commit_and_deliver(st.report_gate, store.flush)
            ttl = st.exec_config.lease_ttl_secs
            if store.acquire_lease(st.workflow_run_id, st.owner_token or "", ttl) == st.lease_generation:
                store.update_run_status(st.workflow_run_id, RunStatus.RUNNING, None, stopped_for_store(exc))
        except Exception as write_exc:
            log.debug("run %s: could not record why it stopped: %s", st.workflow_run_id, write_exc)
        return RunStatus.RUNNING

    def _lost(self, st: ExecutionState, summary: str) -> RunStatus:
        """The run's final write was refused: another engine owns the run and ends it, or a
        `cancel` ended it from outside. This engine stops as one that lost its lease (the caller
        gets `EngineCancelled(LeaseLost)`) and says how the run ended (`_stopped_end`), and the
        runs above it that run here confirm their own leases at once (`_doubt_ancestors`)."""
        st.lease_lost = True
        st.cancellation.cancel(CancellationReason.of("LeaseLost"))
        if st.event_sinks:
            st.emit(self._stopped_end(st, summary))
        self._doubt_ancestors(st)
        return RunStatus.CANCELLED

    @staticmethod
    def _stopped_end(st: ExecutionState, summary: str) -> RunCancelled:
        """The end event of a run this engine stopped without writing its end (its lease was
        lost, or its final write refused), for every sink alike. A child's row is read once
        (`stopped_child_end`): when a `cancel` from outside ended it while this engine stood
        still past its lease, its end is that cancel — not a lease lost, which the run printer,
        a dashboard in this process and hooks said before while the stored stream said the
        cancel. Else, and for a top-level run (whose `RunCancelled(LeaseLost)` the stored
        stream leaves out), `RunCancelled(LeaseLost)`. No read when the database is away."""
        if st.depth > 0 and st.lease_store_gone is None:
            return stopped_child_end(st.persistence, st.workflow_run_id, summary)
        return RunCancelled(reason=CancellationReason.of("LeaseLost"), summary=summary)

    def _refused_behind(self, st: ExecutionState) -> None:
        """A write-behind run's queued final write was refused when committed (on the committing
        thread: no store calls here). The run had returned as ended: its held end event is
        delivered as the end its row holds instead (`stopped_child_end`, report_gate.py), and
        the runs above it confirm their own leases at once (`_doubt_ancestors`)."""
        log.warning("run %s: lease lost; its final status was not written", st.workflow_run_id)
        if st.report_gate is not None:
            st.report_gate.refuse(st.workflow_run_id, st.persistence)
        self._doubt_ancestors(st)

    def _doubt_ancestors(self, st: ExecutionState) -> None:
        """A run's end was refused: mostly because another engine took its tree over (a resume
        of the top run ends the runs below it, `end_abandoned_descendants`) — or only this run
        was ended from outside (a cancel while this process stood still). So every run above it
        that this engine runs confirms its lease before it starts another child, and at the
        monitor's next tick: stopped with `LeaseLost` if it is gone, going on if it is still its
        own. No store call here (this may run inside a store's commit)."""
        seen = {st.workflow_run_id}
        parent_id = st.parent_run_id
        while parent_id and parent_id not in seen:
            seen.add(parent_id)
            parent = self._active.get(parent_id)
            if parent is None:
                return
            self.doubt_lease(parent)
            parent_id = parent.parent_run_id

    def doubt_lease(self, st: ExecutionState) -> None:
        """`st`'s lease may be gone (a write of its was refused by the store's fence): confirm it
        before the run starts another child (`lease.hold_lease`) and at the monitor's next tick,
        which stops the run with `LeaseLost` if it is. No store call (may run inside a commit)."""
        st.lease_sure_until = 0.0
        self.monitor.refresh_now(st)

    def _crashed(self, st: ExecutionState, exc: Exception) -> WorkflowError:
        """An unexpected exception: log it, tell the sinks (Panicked), and fail the run with its text."""
        log.exception("run %s: unexpected error", st.workflow_run_id)
        st.emit(Panicked(message=describe_exception(exc), backtrace=traceback.format_exc()))
        return WorkflowError(f"internal error: {describe_exception(exc)}")


def _fail_running_steps(st: ExecutionState, message: str) -> None:
    """After a crash, no row of this run may stay `running` inside a failed run: the attempt that
    was under way failed with the crash's text."""
    if st.step_ledger is not None:
        running = [step_id for step_id, row in st.step_ledger.items() if row.status is StepStatus.RUNNING]
    else:
        try:
            rows = st.persistence.get_steps(st.workflow_run_id)
        except Exception as exc:
            log.warning("run %s: could not read steps after a crash: %s", st.workflow_run_id, exc)
            return
        running = [row.id for row in rows if StepStatus(row.status) is StepStatus.RUNNING]
    for step_id in running:
        st.update_step(step_id, StepUpdate.failed(st.generation, message))


def _child_state(
    definition: WorkflowDef,
    store: WorkflowPersistence,
    run_id: str,
    settings: RunSettings,
    inputs: dict[str, str],
    parent_ctx: ChildWorkflowContext,
    depth: int,
    as_identity: str | None,
    child_runner: ChildWorkflowRunner | None,
    cancellation: CancellationToken | None,
) -> ExecutionState:
    """The state of a child run of `parent_ctx`'s run (`inputs` become the state's own)."""
    return ExecutionState(
        persistence=store,
        workflow_run_id=run_id,
        workflow_name=definition.name,
        settings=settings,
        inputs=inputs,
        parent_run_id=parent_ctx.workflow_run_id,
        depth=depth,
        default_as_identity=as_identity,
        child_runner=child_runner,
        cancellation=cancellation or CancellationToken(),
    )


def _held(st: ExecutionState, token: str, generation: int, leased_at: float | None = None) -> None:
    """`st`'s run row was created running and leased by `token` (create_leased_run): a new run, so
    every step row it will have is one this engine writes (the step ledger starts complete).
    `leased_at`: lease_clock() just before the lease was written (None: not known here)."""
    st.owner_token, st.lease_generation = token, generation
    if leased_at is not None:
        st.lease_sure_until = leased_at + st.exec_config.lease_ttl_secs
    st.created_leased = True
    st.step_ledger = {}


def _is_lease_lost(reason: CancellationReason | None) -> bool:
    return reason is not None and reason.kind == "LeaseLost"


def _extensions(st: ExecutionState) -> Extensions:
    ext = Extensions()
    if st.has_llm_metrics:
        metrics = LlmRunMetrics(
            total_input_tokens=st.total_input_tokens or None,
            total_output_tokens=st.total_output_tokens or None,
            total_cache_read_input_tokens=st.total_cache_read_input_tokens or None,
            total_cache_creation_input_tokens=st.total_cache_creation_input_tokens or None,
            total_turns=st.total_turns or None,
            total_cost_usd=st.total_cost or None,
            model=st.model,
        )
        if any(
            v is not None
            for v in (
                metrics.total_input_tokens,
                metrics.total_output_tokens,
                metrics.total_cache_read_input_tokens,
                metrics.total_cache_creation_input_tokens,
                metrics.total_turns,
                metrics.total_cost_usd,
                metrics.model,
            )
        ):
            ext.insert(metrics)
    return ext
