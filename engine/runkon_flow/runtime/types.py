"""Value types and registries of the engine's public API (engine.md §2.3–§2.6, §3.1–§3.3, §3.7).

Shapes follow the spec; defaults are chosen so a Python caller can start a run with little more
than a store (`RunInput(persistence=store)`): anything left as None is filled from the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from runkon_flow.cancellation import CancellationToken
from runkon_flow.persistence.models import FanOutItemRow, RunStatus
from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.protocols import (
    Extensions,
    OutputSchema,
    RunContext,
    ScriptEnvProvider,
)
from runkon_flow.plugins.registries import ActionRegistry, ItemProviderRegistry

if TYPE_CHECKING:
    from runkon_flow.events import EventSink
    from runkon_flow.persistence.protocol import WorkflowPersistence
    from runkon_flow.runtime.report_gate import ReportGate

__all__ = [
    "ChildRunInput",
    "ChildWorkflowContext",
    "ChildWorkflowInput",
    "ChildWorkflowRunner",
    "CreatedChild",
    "DefaultRunContext",
    "LlmRunMetrics",
    "NoOpScriptEnvProvider",
    "RunInput",
    "RunSettings",
    "SchemaResolver",
    "WorkflowExecConfig",
    "WorkflowResult",
]

SchemaResolver = Callable[[str], OutputSchema]
"""Resolves an `output = <schema>` name to its schema (engine.md §3.9)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LlmRunMetrics:
    """Token/cost totals of a run; a zero total is reported as None (engine.md §2.3)."""

    total_input_tokens: int | None = None
    total_output_tokens: int | None = None
    total_cache_read_input_tokens: int | None = None
    total_cache_creation_input_tokens: int | None = None
    total_turns: int | None = None
    total_cost_usd: float | None = None
    model: str | None = None


@dataclass
class WorkflowResult:
    """What a run returns — also for failed and cancelled runs (`all_succeeded=False`).

    `status` and `error` are ours (the final run status and error text, so callers need not read
    the store). `final_structured_output` is the structured output of the run's last step (by
    position) that had one; `output_known` says the engine computed it (a foreign child runner may
    not), so foreach aggregates need no extra query per item.
    """

    workflow_run_id: str
    workflow_name: str
    all_succeeded: bool
    total_duration_ms: int = 0
    extensions: Extensions = field(default_factory=Extensions)
    status: RunStatus | None = None
    error: str | None = None
    final_structured_output: str | None = None
    output_known: bool = False


# --------------------------------------------------------------------------- config


@dataclass
class WorkflowExecConfig:
    """Run-wide knobs (engine.md §2.6). Durations are seconds (float) unless a timedelta is named.

    Defaults that differ from upstream, on purpose: gates poll every second (not 5 s) and a run
    notices an external `cancelling` status within `cancel_poll_interval` (1 s, not 5 s).
    """

    poll_interval: float = 1.0
    step_timeout: timedelta = timedelta(hours=12)
    fail_fast: bool = True
    dry_run: bool = False
    shutdown: threading.Event | None = None
    lease_ttl_secs: int = 30
    lease_refresh_interval: float = 10.0
    # ours
    cancel_poll_interval: float = 1.0
    cancel_grace: float = 1.0
    max_output_lines: int = 2000
    max_parallel_branches: int | None = None  # None: every branch of a `parallel` at once (the spec)


# --------------------------------------------------------------------------- small defaults


class NoOpScriptEnvProvider:
    """Adds nothing to a script's environment (the spec's default)."""

    def env(self, ctx: RunContext, as_identity: str | None) -> dict[str, str]:
        return {}


class DefaultRunContext(LocalRunContext):
    """The RunContext used when a caller gives none: no injected variables, scripts run in
    `working_dir` (default: the current directory at construction)."""

    __slots__ = ()

    def __init__(
        self,
        working_dir: str | Path | None = None,
        run_id: str = "",
        workflow_name: str = "",
        variables: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(Path.cwd() if working_dir is None else working_dir, run_id, workflow_name, variables)


# --------------------------------------------------------------------------- run inputs


#: What a `call workflow` or `foreach` in a run without a child runner says to do: the runner is
#: made from the engine's workflow resolver, which an engine built by hand may lack.
NO_WORKFLOWS_HINT = (
    "give the engine its workflows: FlowEngineBuilder.workflow_dir() or .workflow_resolver(), "
    "or a RunInput.child_runner"
)


@dataclass
class RunInput:
    """Everything a top-level run needs (engine.md §2.4).

    Python-friendly defaults: `workflow_run_id=None` creates the run row for you;
    `workflow_name=None` uses the definition's name; registries, script env provider, run
    context, cancellation token and child runner left as None come from the engine (the child
    runner is an `InProcessChildRunner` over the engine's workflow resolver, when it has one).
    """

    persistence: WorkflowPersistence
    workflow_run_id: str | None = None
    workflow_name: str | None = None
    action_registry: ActionRegistry | None = None
    item_provider_registry: ItemProviderRegistry | None = None
    script_env_provider: ScriptEnvProvider | None = None
    run_ctx: RunContext | None = None
    cancellation: CancellationToken | None = None
    extra_plugin_dirs: list[str] = field(default_factory=list)
    model: str | None = None
    exec_config: WorkflowExecConfig = field(default_factory=WorkflowExecConfig)
    inputs: dict[str, str] = field(default_factory=dict)
    parent_run_id: str = ""
    depth: int = 0
    target_label: str | None = None
    default_as_identity: str | None = None
    triggered_by_hook: bool = False
    schema_resolver: SchemaResolver | None = None
    child_runner: ChildWorkflowRunner | None = None
    event_sinks: list[EventSink] = field(default_factory=list)
    # `resume_workflow` only: the run's `generation` when the caller looked at it and chose to
    # resume it. If another engine has taken the run since (and maybe resumed and finished it),
    # the resume is refused with `AlreadyOwned` instead of running the run once more.
    seen_generation: int | None = None
    # `resume_workflow` only: the resume retries this many fan-out items (`Workspace.retry`); its
    # start event says so (`RunResumed.retried_items`).
    retried_items: int = 0
    # `resume_workflow` only: the item rows of fan-out step rows the caller has read already, by
    # step row id (a retry's plan read them): the fan-out that continues one of those rows does
    # not read its items again — 10,000 rows for a 10,000-item fan-out.
    known_items: Mapping[str, list[FanOutItemRow]] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class RunSettings:
    """The configuration a run carries and hands down to its children, in one value.

    It replaces the field-by-field copies from `RunInput` into the state, from the state into the
    `ChildWorkflowContext`, into a `ChildRunInput` and back into the child's state. A child shares
    its parent's object unless something differs (`for_child`), so a foreach child costs no copy.
    `event_sinks` is every sink the run delivers to (the engine's first); `write_behind` says the
    run's rows are history only (see `ChildWorkflowInput.write_behind`), and then its events wait
    in the top-level run's `report_gate` until the rows they report are committed. The spec's shapes stay:
    `ExecutionState` and `ChildWorkflowContext` still answer `action_registry`, `run_ctx`, … by name.
    """

    action_registry: ActionRegistry = field(default_factory=ActionRegistry)
    item_provider_registry: ItemProviderRegistry = field(default_factory=ItemProviderRegistry)
    script_env_provider: ScriptEnvProvider = field(default_factory=NoOpScriptEnvProvider)
    run_ctx: RunContext | None = None
    extra_plugin_dirs: tuple[str, ...] = ()
    model: str | None = None
    exec_config: WorkflowExecConfig = field(default_factory=WorkflowExecConfig)
    schema_resolver: SchemaResolver | None = None
    target_label: str | None = None
    triggered_by_hook: bool = False
    event_sinks: tuple[EventSink, ...] = ()
    write_behind: bool = False
    report_gate: ReportGate | None = None  # where write-behind runs' events wait (report_gate.py)
    # (workflow, step, key) of each placeholder said to have no value (variables.py
    # `warn_unknown_placeholders`): shared down the tree, so 10,000 foreach children with one typo
    # say it once, not once each. A child's settings share the parent's set (`replace` keeps it).
    warned_placeholders: set[tuple[str, str, str]] = field(default_factory=set, repr=False, compare=False)
    # for_child's answers for children that override nothing (every foreach child): built once
    _children: dict[tuple, RunSettings] = field(default_factory=dict, init=False, repr=False, compare=False)

    def with_(self, **changes: Any) -> RunSettings:
        """A copy with `changes` applied; `self` when nothing would change (no allocation)."""
        for name, value in changes.items():
            if getattr(self, name) is not value:
                if name in _TUPLE_FIELDS:
                    changes[name] = tuple(value)
                return replace(self, **changes)
        return self

    def for_child(
        self,
        engine_sinks: Sequence[EventSink],
        *,
        action_registry: ActionRegistry | None = None,
        item_provider_registry: ItemProviderRegistry | None = None,
        script_env_provider: ScriptEnvProvider | None = None,
        schema_resolver: SchemaResolver | None = None,
        target_label: str | None = None,
        triggered_by_hook: bool = False,
        write_behind: bool = False,
    ) -> RunSettings:
        """A child's settings: this run's, with what the child's input overrides (None = inherit),
        the engine's sinks delivered first, write-behind once any ancestor is write-behind."""
        plain = not (action_registry or item_provider_registry or script_env_provider or schema_resolver)
        if plain:
            key = (id(engine_sinks), len(engine_sinks), target_label, triggered_by_hook, write_behind)
            known = self._children.get(key)
            if known is not None:
                return known
        sinks = self.event_sinks
        if engine_sinks and not _leads_with(sinks, engine_sinks):
            sinks = tuple(dedupe_sinks(engine_sinks, sinks))
        child = self.with_(
            action_registry=action_registry or self.action_registry,
            item_provider_registry=item_provider_registry or self.item_provider_registry,
            script_env_provider=script_env_provider or self.script_env_provider,
            schema_resolver=schema_resolver or self.schema_resolver,
            target_label=target_label,
            triggered_by_hook=triggered_by_hook,
            event_sinks=sinks,
            write_behind=write_behind or self.write_behind,
        )
        if plain and len(self._children) < 16:
            self._children[key] = child
        return child


_TUPLE_FIELDS = frozenset({"extra_plugin_dirs", "event_sinks"})
SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunSettings) if not f.name.startswith("_"))
_SETTINGS_NAMES = frozenset(SETTINGS_FIELDS)


def _leads_with(sinks: Sequence[Any], prefix: Sequence[Any]) -> bool:
    """`sinks` starts with exactly `prefix` (by identity), so deduplicating would change nothing."""
    if len(sinks) < len(prefix) or any(a is not b for a, b in zip(sinks, prefix, strict=False)):
        return False
    return len({id(s) for s in sinks}) == len(sinks)


def settings_properties(cls: type, *, writable: bool) -> type:
    """Give `cls` (which has a `settings: RunSettings` attribute) one property per settings field,
    so callers keep reading `state.action_registry`. With `writable`, an assignment replaces the
    holder's own settings object (never a parent's: settings are immutable), and the constructor
    also takes the fields as keyword arguments (`ExecutionState(..., action_registry=r)`, §2.7)."""
    if writable:
        generated_init = cls.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if _SETTINGS_NAMES.isdisjoint(kwargs):  # the engine's own calls: settings= only
                generated_init(self, *args, **kwargs)
                return
            given = {name: kwargs.pop(name) for name in SETTINGS_FIELDS if name in kwargs}
            generated_init(self, *args, **kwargs)
            self.settings = self.settings.with_(**given)

        cls.__init__ = __init__  # type: ignore[misc]
    for name in SETTINGS_FIELDS:
        getter = attrgetter(f"settings.{name}")  # C-speed: these are read on every step

        def setter(self: Any, value: Any, _name: str = name) -> None:
            self.settings = self.settings.with_(**{_name: value})

        setattr(cls, name, property(getter, setter if writable else None, doc=f"`settings.{name}`"))
    return cls


@dataclass(eq=False)
class ChildWorkflowContext:
    """The narrow projection of a parent run handed to a ChildWorkflowRunner (engine.md §2.5).

    The spec's fields (`run_ctx`, `extra_plugin_dirs`, `model`, `exec_config`, `event_sinks`) and
    ours (registries, script env provider, schema resolver, labels, `write_behind`) are read from
    the parent's `settings`; `workflow_run_id` is the parent's run id, `inputs` its current inputs,
    `depth` and `cancellation` its own (so a resumed child can be cancelled with its parent).
    """

    settings: RunSettings
    workflow_run_id: str
    inputs: dict[str, str] = field(default_factory=dict)
    depth: int = 0
    cancellation: CancellationToken | None = None

    if TYPE_CHECKING:  # the settings fields, by name (properties added below)
        action_registry: ActionRegistry
        item_provider_registry: ItemProviderRegistry
        script_env_provider: ScriptEnvProvider
        run_ctx: RunContext
        extra_plugin_dirs: tuple[str, ...]
        model: str | None
        exec_config: WorkflowExecConfig
        schema_resolver: SchemaResolver | None
        target_label: str | None
        triggered_by_hook: bool
        event_sinks: tuple[EventSink, ...]
        write_behind: bool
        report_gate: ReportGate | None


settings_properties(ChildWorkflowContext, writable=False)


@dataclass
class ChildWorkflowInput:
    """What the engine hands `ChildWorkflowRunner.execute_child` (engine.md §2.5).

    `item_id` (ours) names the foreach item the child runs for, so a runner can link them.
    `write_behind` (ours): the child's rows are history only — nothing recovers from them (a
    foreach re-runs an unfinished item as a new child) — so the runner may write them behind
    (`durable=False`, docs/persistence.md). The child's own children inherit it.
    `on_created` (ours): called with the child's run id once its row exists, before its first
    step, so `call workflow` names its child on its step row while the child runs.
    `stops_for_store` (ours): when the run database can record nothing more (`StoreUnavailable`)
    the child is not recorded failed but stops as a top-level run does — left as stored, to be
    resumed — and the runner raises the error, so its parent stops too (`call workflow`, whose
    resume continues the child; a foreach item, left unrecorded, whose resume runs it again).
    """

    inputs: dict[str, str]
    iteration: int
    as_identity: str | None
    depth: int
    parent_step_id: str | None
    cancellation: CancellationToken
    item_id: str | None = None
    write_behind: bool = False
    on_created: Callable[[str], None] | None = None
    stops_for_store: bool = False


@dataclass
class ChildRunInput:
    """Input of `FlowEngine.run_child` for a pre-created child run row (engine.md §2.5).

    The registries, script env provider and schema resolver left as None are inherited from the
    parent (`ChildWorkflowContext.settings`), so an in-process runner passes only what is the
    child's own.
    """

    workflow_run_id: str
    persistence: WorkflowPersistence
    action_registry: ActionRegistry | None = None
    item_provider_registry: ItemProviderRegistry | None = None
    script_env_provider: ScriptEnvProvider | None = None
    depth: int = 1
    cancellation: CancellationToken | None = None
    child_runner: ChildWorkflowRunner | None = None
    schema_resolver: SchemaResolver | None = None
    as_identity: str | None = None
    target_label: str | None = None
    triggered_by_hook: bool = False
    inputs_override: dict[str, str] | None = None
    # Set when the caller created the row with `create_leased_run` (ours): the lease it holds. The
    # engine then takes the run as new and already `running` — no acquire, no start marking.
    owner_token: str | None = None
    lease_generation: int | None = None
    write_behind: bool = False  # see ChildWorkflowInput.write_behind
    stops_for_store: bool = False  # see ChildWorkflowInput.stops_for_store


class CreatedChild(NamedTuple):
    """A child run `InProcessChildRunner` has just created running and leased, as
    `FlowEngine.run_created_child` takes it (a tuple: one is made per foreach item)."""

    store: WorkflowPersistence
    run_id: str
    inputs: dict[str, str]  # the child's own (the state keeps this dict)
    depth: int
    cancellation: CancellationToken | None
    as_identity: str | None
    owner_token: str
    generation: int
    leased_at: float  # lease_clock() just before the lease was written (lease_sure_until)
    write_behind: bool
    child_runner: ChildWorkflowRunner | None
    stops_for_store: bool = False  # see ChildWorkflowInput.stops_for_store


@runtime_checkable
class ChildWorkflowRunner(Protocol):
    """Runs nested workflows for `call workflow` and `foreach` (engine.md §3.7). Ours: no
    `find_resumable_child` — a resumed `call workflow` continues the child its own step row
    names (docs/engine.md, "Resume"), which a lookup by workflow name could not tell apart from a
    foreach item's child of the same workflow."""

    def execute_child(
        self, workflow_name: str, parent_ctx: ChildWorkflowContext, params: ChildWorkflowInput
    ) -> WorkflowResult: ...

    def resume_child(
        self, workflow_run_id: str, model: str | None, parent_ctx: ChildWorkflowContext
    ) -> WorkflowResult: ...


def dedupe_sinks(*groups: Sequence[Any]) -> list[Any]:
    """Concatenate sink lists keeping the first occurrence of each sink object (by identity), so a
    child run never delivers an event twice to a sink its parent already had."""
    seen: set[int] = set()
    out: list[Any] = []
    for group in groups:
        for sink in group:
            if id(sink) not in seen:
                seen.add(id(sink))
                out.append(sink)
    return out
