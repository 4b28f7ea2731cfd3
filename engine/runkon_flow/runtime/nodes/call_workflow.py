"""`call workflow <name>` (engine.md §9.3, dsl.md §6.2): run a sub-workflow as a child run.

The child's inputs are the node's `inputs` with `{{var}}` expanded from the parent's variables,
unknown placeholders kept literally for the child to resolve. On success the parent records the
child's last completed step's markers/context under the workflow name, splices the child's
completed steps into its context history, and merges the child's step results into its own so
`if <child-step>.<marker>` works in the parent.

Ours: the result is stored under `<name>` whether fresh or restored on resume (upstream used
`workflow:<name>` when restored); a resume continues the unfinished child its own step row names
(`_resumable_child`: this node's latest row, by node path and iteration — not the newest child
run of that workflow, which could be a `foreach … workflow = <name>` item's), never one this run
already created or resumed; a cancelled child is recorded `cancelled`; StepStarted/StepCompleted
are emitted for every attempt. A child that stops because the run database can record nothing
more (`StoreUnavailable`, `ChildWorkflowInput.stops_for_store`) is not a failed attempt: the
error goes up unretried, the step row stays `running` naming the child, and the parent stops as
the child did — a top-level run left as stored (engine.py, `_stopped_for_store`), whose resume
continues the child (docs/persistence.md).
"""

from __future__ import annotations

from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.dsl.ast import MAX_WORKFLOW_DEPTH, CallWorkflowNode
from runkon_flow.dsl.templating import substitute_variables_keep_literal
from runkon_flow.errors import EngineError, StoreUnavailable, WorkflowError
from runkon_flow.persistence.models import RunStatus, StepRole, StepStatus, WorkflowRun, WorkflowRunStep
from runkon_flow.runtime.attempts import StepAttempt, cancellation_of
from runkon_flow.runtime.lease import abort, hold_lease, renew_lease
from runkon_flow.runtime.resume import parse_markers, restore_step
from runkon_flow.runtime.state import ContextEntry, ExecutionState, StepResult
from runkon_flow.runtime.steps import (
    child_metadata,
    describe_exception,
    handle_on_fail,
    record_step_success,
    result_usage,
)
from runkon_flow.runtime.types import NO_WORKFLOWS_HINT, ChildWorkflowInput, WorkflowResult
from runkon_flow.runtime.variables import build_variable_map

__all__ = ["execute_call_workflow", "merge_child_results"]

_ROLE = StepRole.WORKFLOW.value


def _completed_child_steps(st: ExecutionState, child_run_id: str) -> list[WorkflowRunStep]:
    steps = st.persistence.get_steps(child_run_id)
    done = [s for s in steps if StepStatus(s.status) is StepStatus.COMPLETED]
    done.sort(key=lambda s: s.position)
    return done


def splice_child_contexts(st: ExecutionState, child_steps: list[WorkflowRunStep]) -> None:
    """Append the child's completed steps to the parent's context history (iteration 0, in order)."""
    for step in child_steps:
        markers = parse_markers(step.markers_out)
        context = step.context_out or ""
        st.add_context(
            ContextEntry.make(step.step_name, 0, context, markers, step.structured_output, step.output_file)
        )


def merge_child_results(st: ExecutionState, child_steps: list[WorkflowRunStep]) -> None:
    """Copy the child's completed step results into the parent's by step name (later wins)."""
    for step in child_steps:
        st.step_results[step.step_name] = StepResult(
            step_name=step.step_name,
            status=StepStatus.COMPLETED,
            result_text=step.result_text,
            markers=parse_markers(step.markers_out),
            context=step.context_out or "",
            child_run_id=step.child_run_id,
            structured_output=step.structured_output,
            output_file=step.output_file,
        )


def _record_child_success(
    st: ExecutionState, node: CallWorkflowNode, step: StepAttempt, iteration: int, result: WorkflowResult
) -> None:
    name = node.workflow
    child_steps = _completed_child_steps(st, result.workflow_run_id)
    last = child_steps[-1] if child_steps else None
    markers = parse_markers(last.markers_out) if last is not None else []
    context = (last.context_out or "") if last is not None else ""
    step.completed(
        result_text=f"Sub-workflow '{name}' completed",
        context=context,
        markers=markers,
        child_run_id=result.workflow_run_id,
        usage=result_usage(result),  # the child's total
    )
    splice_child_contexts(st, child_steps)
    record_step_success(
        st,
        name,
        f"workflow:{name}",
        iteration,
        result_text=f"Sub-workflow '{name}' completed successfully",
        markers=markers,
        context=context,
        child_run_id=result.workflow_run_id,
        metadata=child_metadata(result),
    )
    merge_child_results(st, child_steps)


def _restore(
    st: ExecutionState, node: CallWorkflowNode, row: WorkflowRunStep, iteration: int, position: int
) -> None:
    """A completed call-workflow row on resume: restore the child's steps and the result under `<name>`."""
    child_steps: list[WorkflowRunStep] = []
    if row.child_run_id:
        try:
            child_steps = _completed_child_steps(st, row.child_run_id)
        except EngineError as exc:
            st.warn(f"resume: could not read steps of child run {row.child_run_id}: {exc}")
    splice_child_contexts(st, child_steps)
    restore_step(st, node.workflow, row, iteration, position)
    merge_child_results(st, child_steps)


def execute_call_workflow(st: ExecutionState, node: CallWorkflowNode, iteration: int, path: str) -> None:
    name = node.workflow
    db_name = f"workflow:{name}"
    position = st.take_position()
    if st.resume_ctx is not None:
        row = st.resume_ctx.take(db_name, iteration)
        if row is not None:
            _restore(st, node, row, iteration, position)
            return

    child_depth = st.depth + 1
    if child_depth > MAX_WORKFLOW_DEPTH:
        st.all_succeeded = False
        message = (
            f"Workflow nesting depth exceeds maximum of {MAX_WORKFLOW_DEPTH}: "
            f"parent '{st.workflow_name}' calling '{name}'"
        )
        if st.exec_config.fail_fast:
            raise WorkflowError(message)
        st.warn(message, db_name, level="error")
        return
    runner = st.child_runner
    if runner is None:
        raise WorkflowError(
            f"call_workflow '{name}': no ChildWorkflowRunner configured — cannot execute sub-workflow "
            f"({NO_WORKFLOWS_HINT})"
        )

    last_error = ""
    if st.resume_ctx is not None:
        outcome, message = _try_resume_child(st, node, iteration, position, path)
        if outcome == "succeeded":
            return
        if outcome == "failed":
            handle_on_fail(st, name, name, node.on_fail, message, 1, iteration, 1, path)
            return
        last_error = message

    max_attempts = 1 + node.retries
    for attempt in range(max_attempts):
        step = StepAttempt(
            st, "call_workflow", db_name, name, path, iteration, position, attempt, last_error, role=_ROLE
        )
        variables = build_variable_map(st)
        child_inputs = {k: substitute_variables_keep_literal(v, variables) for k, v in node.inputs.items()}
        token = st.cancellation.child()
        params = ChildWorkflowInput(
            inputs=child_inputs,
            iteration=iteration,
            as_identity=node.as_identity or st.default_as_identity,
            depth=child_depth,
            parent_step_id=step.step_id,
            cancellation=token,
            on_created=step.child_started,
            stops_for_store=True,
        )
        result: WorkflowResult | None = None
        error: BaseException | None = None
        try:
            hold_lease(st)  # no child is started by a run another engine took over
            result = runner.execute_child(name, st.child_workflow_context(), params)
        except Exception as exc:
            error = exc
        finally:
            token.detach()
        child_id = result.workflow_run_id if result is not None else None
        if result is not None:
            st.children_touched.add(result.workflow_run_id)
        if isinstance(error, StoreUnavailable):
            raise error  # not failed: the run stops, as the child did, to be resumed
        if _ended_from_outside(st, error):
            error = WorkflowError("its run was ended from outside while this engine stood still")
        if result is not None and result.all_succeeded:
            _record_child_success(st, node, step, iteration, result)
            return
        if st.cancellation.is_cancelled() or isinstance(error, EngineCancelled):
            raise step.cancelled(f"Sub-workflow '{name}' cancelled", cancellation_of(st, error), child_id)
        if result is not None:
            last_error = f"Sub-workflow '{name}' failed"
            if result.error:
                last_error += f": {result.error}"
        else:
            assert error is not None
            last_error = f"Sub-workflow '{name}' error: {describe_exception(error)}"
        step.failed(last_error, child_id, usage=result_usage(result))  # the child's total, as on success
    handle_on_fail(st, name, name, node.on_fail, last_error, node.retries, iteration, max_attempts, path)


def _resumable_child(st: ExecutionState, key: str, iteration: int, path: str) -> WorkflowRun | None:
    """The child run this node's latest unfinished row (same node path and iteration; a row from
    before node paths by its name) names, when that run is this run's own and did not complete.
    By the row, not by workflow name: a `foreach … workflow = <name>` beside the call makes
    children of the same workflow under the same parent."""
    assert st.resume_ctx is not None
    rows = st.resume_ctx.unfinished.get((key, iteration), ())
    for row in reversed(rows):  # position order: the latest execution last
        if row.node_path not in (path, None) or not row.child_run_id:
            continue
        run = st.persistence.get_run(row.child_run_id)
        if run is None or run.parent_workflow_run_id != st.workflow_run_id:
            return None  # gone (gc), or a copied row's (a rerun's): another run's child
        return run if RunStatus(run.status) is not RunStatus.COMPLETED else None
    return None


def _ended_from_outside(st: ExecutionState, error: BaseException | None) -> bool:
    """Whether the child stopped as `LeaseLost` (its end was refused: another engine or a user
    ended it while this process stood still) while this run's own lease is still its own — then
    the child counts as failed and this run goes on, as when a child is cancelled from outside
    while the engine runs. A run whose own lease is gone too stops with `LeaseLost` (False)."""
    if not isinstance(error, EngineCancelled) or st.cancellation.is_cancelled():
        return False
    if error.reason is None or error.reason.kind != "LeaseLost":
        return False
    if renew_lease(st):
        return True
    abort(st, CancellationReason.of("LeaseLost"))
    return False


def _try_resume_child(
    st: ExecutionState, node: CallWorkflowNode, iteration: int, position: int, path: str
) -> tuple[str, str]:
    """Resume an unfinished child run of this workflow (only when this run is a resume).

    Returns ("succeeded", "") when resumed and recorded; ("failed", message) when resumed but it
    failed (row written, the caller applies on_fail); ("none", text) when there was nothing to
    resume, `text` being the lookup error if the lookup itself failed (fresh attempts follow).
    """
    name = node.workflow
    runner = st.child_runner
    assert runner is not None
    try:
        prior = _resumable_child(st, f"workflow:{name}", iteration, path)
    except Exception as exc:
        return "none", f"failed to find resumable child run: {describe_exception(exc)}"
    if prior is None or prior.id in st.children_touched:
        return "none", ""
    st.children_touched.add(prior.id)
    step = StepAttempt(
        st, "call_workflow", f"workflow:{name}", name, path, iteration, position, 0, role=_ROLE
    )
    step.child_started(prior.id)
    try:
        result = runner.resume_child(prior.id, st.model, st.child_workflow_context())
    except EngineCancelled as exc:
        if _ended_from_outside(st, exc):
            return "failed", step.failed(
                f"Sub-workflow '{name}' resume error: its run was ended from outside", prior.id
            )
        step.cancelled(f"Sub-workflow '{name}' cancelled", exc, prior.id)
        raise
    except StoreUnavailable:
        raise  # not failed: the run stops, as the child did, to be resumed again
    except Exception as exc:
        return "failed", step.failed(
            f"Sub-workflow '{name}' resume error: {describe_exception(exc)}", prior.id
        )
    if result.all_succeeded:
        _record_child_success(st, node, step, iteration, result)
        return "succeeded", ""
    if st.cancellation.is_cancelled():
        cancelled = cancellation_of(st, None)
        raise step.cancelled(f"Sub-workflow '{name}' cancelled", cancelled, result.workflow_run_id)
    return "failed", step.failed(
        f"Sub-workflow '{name}' failed (resume)", result.workflow_run_id, usage=result_usage(result)
    )
