"""`InProcessChildRunner`: runs `call workflow` and `foreach` children in the calling thread
(engine.md §3.7).

For each child it resolves the definition by name (cached for the runner's lifetime, so a file
edited mid-run never changes a running run), prepares the inputs, creates the child run row
(`parent_workflow_run_id` and `iteration` set; already `running` and leased, in one write),
tells the caller its id (`ChildWorkflowInput.on_created`: a `call workflow` row names it at once),
announces it with `ChildRunStarted` (linking the child to the parent step and foreach item) and
runs it with `FlowEngine.run_created_child` (`run_child` without a `ChildRunInput` per child).

Inputs of a child (host policy, docs/engine.md): the parent's inputs (minus engine-transient ones
and the parent's own `item.*` keys), overlaid with the inputs the engine passes; then the child's
declared defaults apply. Nothing is templated here: `call workflow` and `foreach` expand the
placeholders the author wrote, once, and a value is data — text inside it that looks like `{{x}}`
is never substituted again.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from runkon_flow.cancellation import CancellationToken
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.errors import AlreadyOwned, WorkflowError
from runkon_flow.events import ChildRunStarted
from runkon_flow.persistence.models import NewRun
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.persistence.snapshots import SharedSnapshots
from runkon_flow.plugins.protocols import WorkflowResolver
from runkon_flow.runtime.lease import lease_clock, new_owner_token
from runkon_flow.runtime.state import emit_to
from runkon_flow.runtime.types import (
    ChildRunInput,
    ChildWorkflowContext,
    ChildWorkflowInput,
    CreatedChild,
    WorkflowResult,
    dedupe_sinks,
)
from runkon_flow.runtime.variables import apply_workflow_input_defaults

if TYPE_CHECKING:
    from runkon_flow.runtime.engine import FlowEngine

__all__ = ["TRANSIENT_INPUTS", "InProcessChildRunner", "child_inputs"]

_LEASE_RETRY = 0.25

#: Inputs the engine sets for a moment (always block, on_fail agent); never inherited by a child.
TRANSIENT_INPUTS = frozenset({"workflow_status", "failed_step", "failure_reason", "retry_count"})


def child_inputs(parent_inputs: dict[str, str], passed: dict[str, str]) -> dict[str, str]:
    """Parent inputs (minus transient and `item.*` keys) overlaid with `passed`, taken as they are."""
    if not parent_inputs:
        return dict(passed)
    merged = {
        k: v for k, v in parent_inputs.items() if k not in TRANSIENT_INPUTS and not k.startswith("item.")
    }
    merged.update(passed)
    return merged


def child_run_started(
    run_id: str, workflow_name: str, parent_ctx: ChildWorkflowContext, params: ChildWorkflowInput
) -> ChildRunStarted:
    """The parent's announcement of a child run, the same wherever the child runs."""
    return ChildRunStarted(
        child_run_id=run_id,
        workflow_name=workflow_name,
        parent_run_id=parent_ctx.workflow_run_id,
        parent_step_id=params.parent_step_id,
        item_id=params.item_id,
    )


class InProcessChildRunner:
    """A ChildWorkflowRunner that runs children in this process, on the calling thread."""

    def __init__(
        self, engine: FlowEngine, resolver: WorkflowResolver | None, store: WorkflowPersistence
    ) -> None:
        self._engine = engine
        self._resolver = resolver if resolver is not None else engine.workflow_resolver
        self._store = store
        self._lock = threading.Lock()
        self._defs: dict[str, tuple[WorkflowDef, str]] = {}
        self._snapshots = SharedSnapshots()  # siblings' rows refer to one stored snapshot

    def _definition(self, name: str) -> tuple[WorkflowDef, str]:
        cached = self._defs.get(name)  # one dict read (atomic): no lock for every foreach child
        if cached is not None:
            return cached
        if self._resolver is None:
            raise WorkflowError(f"cannot run sub-workflow '{name}': no workflow resolver configured")
        definition = self._resolver.resolve(name)
        snapshot = json.dumps(definition.to_json(), ensure_ascii=False)
        with self._lock:
            return self._defs.setdefault(name, (definition, snapshot))

    def execute_child(
        self, workflow_name: str, parent_ctx: ChildWorkflowContext, params: ChildWorkflowInput
    ) -> WorkflowResult:
        definition, snapshot = self._definition(workflow_name)
        # Refuse before a run row exists, so an unrunnable child leaves no orphan `pending` run.
        self._engine.check_runnable(definition, parent_ctx.action_registry, parent_ctx.item_provider_registry)
        inputs = child_inputs(parent_ctx.inputs, params.inputs)
        if definition.inputs:
            inputs = apply_workflow_input_defaults(definition, inputs)
        # Created running and leased in one write (no window in which another engine could take it).
        token = new_owner_token(parent_ctx.exec_config.lease_ttl_secs)
        write_behind = params.write_behind or parent_ctx.write_behind
        stored, holds = self._snapshots.to_store(parent_ctx.workflow_run_id, definition.name, snapshot)
        leased_at = lease_clock()
        run = self._store.create_leased_run(
            NewRun(
                workflow_name=definition.name,
                parent_run_id=parent_ctx.workflow_run_id,
                dry_run=parent_ctx.exec_config.dry_run,
                trigger=definition.trigger,
                definition_snapshot=stored,
                parent_workflow_run_id=parent_ctx.workflow_run_id,
                inputs=inputs,
                iteration=params.iteration,
                workflow_title=definition.title,
            ),
            token,
            parent_ctx.exec_config.lease_ttl_secs,
            durable=not write_behind,
        )
        if holds:
            self._snapshots.held_by(parent_ctx.workflow_run_id, definition.name, run.id)
        if params.on_created is not None:
            params.on_created(run.id)
        sinks = (
            dedupe_sinks(self._engine.event_sinks, parent_ctx.event_sinks)
            if self._engine.event_sinks or parent_ctx.event_sinks
            else None
        )
        if sinks:
            gate = parent_ctx.report_gate
            (gate.hold if gate is not None and parent_ctx.write_behind else emit_to)(
                sinks,
                parent_ctx.workflow_run_id,
                child_run_started(run.id, definition.name, parent_ctx, params),
            )
        return self._engine.run_created_child(
            definition,
            parent_ctx,
            CreatedChild(
                self._store,
                run.id,
                inputs,  # the store copied them: from here on they are the child state's own
                params.depth,
                params.cancellation,
                params.as_identity,
                token,
                run.generation,
                leased_at,
                write_behind,
                self,
                params.stops_for_store,
            ),
        )

    def resume_child(
        self, workflow_run_id: str, model: str | None, parent_ctx: ChildWorkflowContext
    ) -> WorkflowResult:
        run = self._store.get_run(workflow_run_id)
        if run is None:
            raise WorkflowError(f"cannot resume child run '{workflow_run_id}': no such run")
        definition, _ = self._definition(run.workflow_name)
        token = (
            parent_ctx.cancellation.child() if parent_ctx.cancellation is not None else CancellationToken()
        )
        # After a crash the child's lease may outlive the parent's by up to one refresh interval:
        # wait for it to expire (the parent holds its own lease, so nobody else can be driving
        # this child legitimately) rather than give up on the child's completed work.
        deadline = time.monotonic() + parent_ctx.exec_config.lease_ttl_secs + 1
        try:
            while True:
                try:
                    return self._engine.resume_child(
                        definition,
                        # Only what is the child's own (depth, cancellation); its settings
                        # (registries, providers, labels, sinks) come from `parent_ctx.settings`.
                        ChildRunInput(
                            workflow_run_id=run.id,
                            persistence=self._store,
                            child_runner=self,
                            target_label=parent_ctx.target_label,
                            triggered_by_hook=parent_ctx.triggered_by_hook,
                            inputs_override=dict(run.inputs),
                            depth=parent_ctx.depth + 1,
                            cancellation=token,
                            stops_for_store=True,  # resumed for `call workflow`, which runs it again
                        ),
                        parent_ctx,
                    )
                except AlreadyOwned:
                    if time.monotonic() >= deadline or token.wait(_LEASE_RETRY):
                        raise
        finally:
            token.detach()
