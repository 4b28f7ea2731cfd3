"""Per-run mutable state (engine.md §2.7): configuration, accumulated step results and context
history, counters, lease information and the cancellation token.

One `ExecutionState` per run; child runs get their own. It is only mutated on the run's own
thread (parallel branches and foreach children report back to that thread), except for
`current_executions`, which the engine's monitor thread reads to forward cancels to executors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runkon_flow.cancellation import CancellationToken
from runkon_flow.errors import StoreUnavailable
from runkon_flow.events import EngineEventData, EngineLog
from runkon_flow.persistence.models import NewStep, StepRole, StepStatus, StepUpdate, WorkflowRunStep
from runkon_flow.plugins.registries import ActionRegistry, ItemProviderRegistry
from runkon_flow.runtime.types import (
    ChildWorkflowContext,
    ChildWorkflowRunner,
    RunSettings,
    SchemaResolver,
    WorkflowExecConfig,
    settings_properties,
)

if TYPE_CHECKING:
    from runkon_flow.events import EventSink
    from runkon_flow.persistence.protocol import WorkflowPersistence
    from runkon_flow.plugins.protocols import RunContext, ScriptEnvProvider
    from runkon_flow.runtime.report_gate import ReportGate
    from runkon_flow.runtime.resume import ResumeContext

__all__ = ["RESERVED_EXPORT_NAMES", "ContextEntry", "ExecutionState", "LedgerRow", "StepResult", "emit_to"]

log = logging.getLogger("runkon_flow.engine")

#: The attribute of a `runkon_flow.engine` log record that says the same words went to the run's
#: event sinks as an `EngineLog` event (`ExecutionState.warn`).
SHOWN_AS_EVENT = "runkon_shown_as_event"

# Names a step's FLOW_OUTPUT may not export as variables: the host owns them (engine.md §12.2).
RESERVED_EXPORT_NAMES = frozenset(
    {
        "ticket_id",
        "ticket_source_id",
        "ticket_source_type",
        "ticket_title",
        "ticket_body",
        "ticket_url",
        "ticket_raw_json",
        "repo_id",
        "repo_path",
        "repo_name",
        "workflow_run_id",
    }
)


def emit_to(sinks: Sequence[Any], run_id: str, event: Any) -> None:
    """Deliver one event to `sinks` in order; a raising sink never stops delivery or the run."""
    if not sinks:
        return
    data = EngineEventData.now(run_id, event)
    for sink in sinks:
        try:
            sink.emit(data)
        except Exception:
            log.exception("event sink %r raised on %s; continuing with remaining sinks", sink, event.type)


_GATE = StepRole.GATE.value


@dataclass(slots=True, eq=False)
class LedgerRow:
    """What the run summary needs of one step row (the fields `build_summary` reads)."""

    position: int
    step_name: str
    iteration: int
    status: StepStatus
    started_at: str | None


@dataclass(slots=True)
class StepResult:
    """The in-memory result of a step, looked up by conditions (`step.marker`)."""

    step_name: str
    status: StepStatus
    result_text: str | None = None
    markers: list[str] = field(default_factory=list)
    context: str = ""
    child_run_id: str | None = None
    structured_output: str | None = None
    output_file: str | None = None


@dataclass(slots=True)
class ContextEntry:
    """One entry of the context history; serialised into `{{prior_contexts}}`.

    `exports` (not serialised) caches the string fields this entry's structured output exports,
    computed once when the entry is created instead of on every variable-map build.
    """

    step: str
    iteration: int
    context: str
    markers: list[str] = field(default_factory=list)
    structured_output: str | None = None
    output_file: str | None = None
    exports: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        step: str,
        iteration: int,
        context: str,
        markers: list[str],
        structured_output: str | None,
        output_file: str | None = None,
    ) -> ContextEntry:
        return cls(
            step,
            iteration,
            context,
            list(markers),
            structured_output,
            output_file,
            _exports(structured_output) if structured_output else {},
        )

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "iteration": self.iteration,
            "context": self.context,
            "markers": self.markers,
            "structured_output": self.structured_output,
            "output_file": self.output_file,
        }


def _exports(structured_output: str | None) -> dict[str, str]:
    """String-valued extra fields of a FLOW_OUTPUT-shaped object, minus reserved names (§12.2 item 10)."""
    if not structured_output:
        return {}
    try:
        value = json.loads(structured_output)
    except ValueError:
        log.debug("structured output is not JSON; nothing exported")
        return {}
    if not isinstance(value, dict):
        return {}
    markers = value.get("markers")
    context = value.get("context")
    if markers is not None and not (isinstance(markers, list) and all(isinstance(m, str) for m in markers)):
        log.warning("structured output has a malformed `markers` field; its exports are ignored")
        return {}
    if context is not None and not isinstance(context, str):
        log.warning("structured output has a malformed `context` field; its exports are ignored")
        return {}
    out: dict[str, str] = {}
    for key, val in value.items():
        if key in ("markers", "context") or not isinstance(val, str):
            continue
        if key in RESERVED_EXPORT_NAMES:
            log.warning("structured output field %r is reserved and not exported", key)
            continue
        out[key] = val
    return out


@dataclass(slots=True, eq=False)
class ExecutionState:
    """The state of one run. Build it with keyword arguments; everything but `persistence` and
    `workflow_run_id` has a usable default. The configuration it shares with its children lives in
    `settings` (`RunSettings`); its fields are also readable, assignable and constructor keywords
    by name (`state.action_registry`, `ExecutionState(..., run_ctx=ctx)`), as engine.md §2.7 has it."""

    persistence: WorkflowPersistence
    workflow_run_id: str
    workflow_name: str = ""
    settings: RunSettings = field(default_factory=RunSettings)
    inputs: dict[str, str] = field(default_factory=dict)
    parent_run_id: str = ""
    depth: int = 0
    default_as_identity: str | None = None
    child_runner: ChildWorkflowRunner | None = None
    cancellation: CancellationToken = field(default_factory=CancellationToken)

    if TYPE_CHECKING:  # the settings fields, by name (properties added below the class)
        action_registry: ActionRegistry
        item_provider_registry: ItemProviderRegistry
        script_env_provider: ScriptEnvProvider
        run_ctx: RunContext | None
        extra_plugin_dirs: tuple[str, ...]
        model: str | None
        exec_config: WorkflowExecConfig
        schema_resolver: SchemaResolver | None
        target_label: str | None
        triggered_by_hook: bool
        event_sinks: tuple[EventSink, ...]
        write_behind: bool
        report_gate: ReportGate | None

    # ---- runtime part (zeroed for a fresh run)
    step_results: dict[str, StepResult] = field(default_factory=dict)
    contexts: list[ContextEntry] = field(default_factory=list)
    position: int = 0
    all_succeeded: bool = True
    total_cost: float = 0.0
    total_turns: int = 0
    total_duration_ms: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cache_read_input_tokens: int = 0
    total_cache_creation_input_tokens: int = 0
    has_llm_metrics: bool = False
    last_gate_feedback: str | None = None
    block_output: str | None = None
    block_with: list[str] = field(default_factory=list)
    resume_ctx: ResumeContext | None = None
    #: A rerun's first start (ours): (run it reruns, step it reruns from, the rows it reuses).
    #: Its copied rows are restored like a resume's, but it starts with RunStarted: it is a new
    #: run, and says which steps it reuses (`rerun.reused_events`).
    rerun_start: tuple[str, str, tuple[WorkflowRunStep, ...]] | None = None
    #: A retry's resume (ours): how many fan-out items it runs again, said by its start event.
    retried_items: int = 0
    owner_token: str | None = None
    lease_generation: int | None = None
    # lease_clock() before which no other engine can have taken the run: when the last take or
    # renewal of its lease began, plus the TTL. Past it (this process stood still: SIGSTOP, Ctrl-Z)
    # a child is started only once the lease is confirmed (lease.hold_lease). 0 = confirm first.
    lease_sure_until: float = 0.0

    # ---- ours
    engine: Any = None  # the FlowEngine running this state (gate resolvers, monitor, workflow resolver)
    current_executions: dict[str, str] = field(default_factory=dict)  # step_id -> executor label
    last_output: tuple[int, str] | None = None  # (position, structured_output) of the latest such step
    children_touched: set[str] = field(default_factory=set)  # child run ids created/resumed by this run
    # Child runs this run's resume ended at its start (the engine before it left them in flight):
    # their end events follow the run's start event (`FlowEngine._end_abandoned_children`).
    abandoned_children: list[str] = field(default_factory=list)
    prior_contexts_json: str | None = None  # cache, invalidated when `contexts` grows
    # The run row was created already `running` and leased by this engine (create_leased_run):
    # nothing to acquire, nothing to mark started.
    created_leased: bool = False
    lease_released: bool = False  # finish_run handed the lease back
    lease_lost: bool = False  # another engine took the run over: it ends the run, not this one
    # Its lease could not be renewed because the run database can record nothing now: the run
    # stopped as after a lost lease (another engine may resume it once the lease lapses), and a
    # top-level run ends with this error, not `EngineCancelled(LeaseLost)` (no one took it over).
    lease_store_gone: StoreUnavailable | None = None
    # The run stopped because the run database could record nothing more (its body ended with
    # `StoreUnavailable`): a top-level run is not recorded failed — it stays as it was stored,
    # to be resumed — and ends with this error (engine.py, `_stopped_for_store`).
    store_stopped: StoreUnavailable | None = None
    # A child run that stops so, as a top-level run does, rather than being recorded failed: a
    # `call workflow` or foreach child (ChildWorkflowInput.stops_for_store); its parent stops too.
    stops_for_store: bool = False
    # Every step row of this run as (summary fields), kept as the engine writes them, so the run
    # summary needs no query. None = not known completely (a run that existed before this engine
    # took it, or one with gates, whose rows are also written by approvers): read the store.
    step_ledger: dict[str, LedgerRow] | None = None

    # ------------------------------------------------------------------ conveniences

    @property
    def registry(self) -> ItemProviderRegistry:
        """The spec's name for the item-provider registry."""
        return self.item_provider_registry

    @property
    def generation(self) -> int:
        """The lease generation for step writes; using it before a lease is held is a bug."""
        if self.lease_generation is None:
            raise RuntimeError("lease_generation is unset: step writes need an acquired lease")
        return self.lease_generation

    def take_position(self) -> int:
        pos = self.position
        self.position = pos + 1
        return pos

    def has_marker(self, step: str, marker: str) -> bool:
        result = self.step_results.get(step)
        return result is not None and marker in result.markers

    def markers_of(self, step: str) -> frozenset[str]:
        result = self.step_results.get(step)
        return frozenset(result.markers) if result is not None else frozenset()

    def add_context(self, entry: ContextEntry) -> None:
        self.contexts.append(entry)
        self.prior_contexts_json = None

    def note_output(self, position: int, structured_output: str | None) -> None:
        """Remember the structured output of the step with the highest position (foreach aggregates)."""
        if structured_output is None:
            return
        if self.last_output is None or position >= self.last_output[0]:
            self.last_output = (position, structured_output)

    def child_workflow_context(self) -> ChildWorkflowContext:
        """The projection handed to a ChildWorkflowRunner (engine.md §2.5)."""
        return ChildWorkflowContext(
            self.settings, self.workflow_run_id, dict(self.inputs), self.depth, self.cancellation
        )

    # ------------------------------------------------------------------ step rows

    def insert_step(self, new_step: NewStep) -> str:
        """`persistence.insert_step`, remembered in the step ledger. `durable` is passed only when
        it is False, so a store with the spec's plain signature still serves durable runs."""
        if self.write_behind:
            step_id = self.persistence.insert_step(new_step, durable=False)
        else:
            step_id = self.persistence.insert_step(new_step)
        ledger = self.step_ledger
        if ledger is not None:
            if new_step.role == _GATE:
                self.step_ledger = None  # approvers write gate rows too
            else:
                started = new_step.retry_count is not None
                ledger[step_id] = LedgerRow(
                    new_step.position,
                    new_step.step_name,
                    new_step.iteration,
                    StepStatus.RUNNING if started else StepStatus.PENDING,
                    "started" if started else None,
                )
        return step_id

    def update_step(self, step_id: str, update: StepUpdate) -> None:
        """`persistence.update_step`, mirrored in the step ledger with the store's rules (a terminal
        row never changes; a starting status marks the row started)."""
        if self.write_behind:
            self.persistence.update_step(step_id, update, durable=False)
        else:
            self.persistence.update_step(step_id, update)
        ledger = self.step_ledger
        if ledger is None:
            return
        row = ledger.get(step_id)
        if row is None:
            self.step_ledger = None  # a row this engine did not see inserted: stop trusting the ledger
        elif not row.status.is_terminal:
            status = update.status
            row.status = status if type(status) is StepStatus else StepStatus(status)
            if row.status.is_starting:
                row.started_at = "started"

    # ------------------------------------------------------------------ events

    def emit(self, event: Any, run_id: str | None = None) -> None:
        """Deliver `event` to every sink once, in order; a raising sink is logged and skipped.
        A write-behind run's events wait in the report gate until what they report is committed.
        `run_id`: the run the event is about when it is not this one (a child this run's resume
        ended: `FlowEngine._end_abandoned_children`)."""
        settings = self.settings
        if settings.event_sinks:
            about = run_id or self.workflow_run_id
            gate = settings.report_gate
            if gate is not None and settings.write_behind:
                gate.hold(settings.event_sinks, about, event)
            else:
                emit_to(settings.event_sinks, about, event)

    def warn(self, message: str, step_name: str | None = None, level: str = "warning") -> None:
        """Log a warning and show it to a human as an EngineLog event. The log record says whether
        the event carries it too (`SHOWN_AS_EVENT`): a client that prints the events where the log
        goes (the CLI, stdout and stderr one terminal) leaves the record out, not say it twice."""
        log.log(
            logging.WARNING if level == "warning" else logging.INFO,
            "%s: %s",
            self.workflow_run_id,
            message,
            extra={SHOWN_AS_EVENT: bool(self.event_sinks)},
        )
        if self.event_sinks:
            self.emit(EngineLog(level=level, message=message, step_name=step_name))  # type: ignore[arg-type]


settings_properties(ExecutionState, writable=True)
