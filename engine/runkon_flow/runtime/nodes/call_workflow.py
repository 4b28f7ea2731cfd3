"""`call workflow <name>` (engine.md §9.3, dsl.md §6.2): run a sub-workflow as a child run.

The child's inputs are the node's `inputs` with `{{var}}` expanded from the parent's variables,
unknown placeholders kept literally for the child to resolve. On success the parent records the
child's last completed step's markers/context under the workflow name, splices the child's
completed steps into its context history, and merges the child's step results into its own so
`if <child-step>.<marker>` works in the parent.

Ours: the result is stored under `<name>` whether fresh or restored on resume (upstream used
`workflow:<name>` when restored); `find_resumable_child` is asked only when the run is a resume,
and never returns a child this run already created or resumed; a cancelled child is recorded
`cancelled`; StepStarted/StepCompleted are emitted for every attempt.
"""

from __future__ import annotations

from runkon_flow.cancellation import CancellationReason
from runkon_flow.dsl.ast import MAX_WORKFLOW_DEPTH, CallWorkflowNode
from runkon_flow.errors import EngineCancelled, EngineError, WorkflowError
from runkon_flow.events import StepRetrying
from runkon_flow.persistence.models import NewStep, StepRole, StepStatus, StepUpdate, WorkflowRunStep
from runkon_flow.runtime.resume import parse_markers, restore_step
from runkon_flow.runtime.state import ContextEntry, ExecutionState, StepResult
from runkon_flow.runtime.steps import (
    StepTrace,
    describe_exception,
    handle_on_fail,
    markers_json,
    record_step_success,
)
from runkon_flow.runtime.templating import substitute_variables_keep_literal
from runkon_flow.runtime.types import ChildWorkflowInput, WorkflowResult
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
    st: ExecutionState,
    node: CallWorkflowNode,
    step_id: str,
    iteration: int,
    result: WorkflowResult,
    trace: StepTrace,
) -> None:
    name = node.workflow
    child_steps = _completed_child_steps(st, result.workflow_run_id)
    last = child_steps[-1] if child_steps else None
    markers = parse_markers(last.markers_out) if last is not None else []
    context = (last.context_out or "") if last is not None else ""
    st.update_step(
        step_id,
        StepUpdate.completed(
            st.generation,
            child_run_id=result.workflow_run_id,
            result_text=f"Sub-workflow '{name}' completed",
            context_out=context,
            markers_out=markers_json(markers),
        ),
    )
    splice_child_contexts(st, child_steps)
    metadata = _child_metrics(result)
    record_step_success(
        st,
        name,
        f"workflow:{name}",
        iteration,
        result_text=f"Sub-workflow '{name}' completed successfully",
        markers=markers,
        context=context,
        child_run_id=result.workflow_run_id,
        metadata=metadata,
    )
    merge_child_results(st, child_steps)
    trace.completed(StepStatus.COMPLETED, markers=markers)


def _child_metrics(result: WorkflowResult) -> dict[str, str]:
    from runkon_flow.runtime.types import LlmRunMetrics

    out: dict[str, str] = {"duration_ms": str(result.total_duration_ms)}
    metrics = result.extensions.get(LlmRunMetrics) if result.extensions is not None else None
    if metrics is not None:
        for key, value in (
            ("cost_usd", metrics.total_cost_usd),
            ("num_turns", metrics.total_turns),
            ("input_tokens", metrics.total_input_tokens),
            ("output_tokens", metrics.total_output_tokens),
            ("cache_read_input_tokens", metrics.total_cache_read_input_tokens),
            ("cache_creation_input_tokens", metrics.total_cache_creation_input_tokens),
        ):
            if value is not None:
                out[key] = str(value)
    return out


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
            f"call_workflow '{name}': no ChildWorkflowRunner configured — cannot execute sub-workflow"
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
        if attempt > 0 and st.event_sinks:
            st.emit(
                StepRetrying(
                    step_name=db_name, attempt=attempt, step_key=name, node_path=path, error=last_error
                )
            )
        step_id = st.insert_step(
            NewStep(
                st.workflow_run_id,
                db_name,
                _ROLE,
                position=position,
                iteration=iteration,
                retry_count=attempt,
            )
        )
        trace = StepTrace(st, "call_workflow", db_name, name, path, iteration, position, attempt)
        trace.started(step_id)
        variables = build_variable_map(st)
        child_inputs = {k: substitute_variables_keep_literal(v, variables) for k, v in node.inputs.items()}
        token = st.cancellation.child()
        params = ChildWorkflowInput(
            inputs=child_inputs,
            iteration=iteration,
            as_identity=node.as_identity or st.default_as_identity,
            depth=child_depth,
            parent_step_id=step_id,
            cancellation=token,
        )
        result: WorkflowResult | None = None
        error: BaseException | None = None
        try:
            result = runner.execute_child(name, st.child_workflow_context(), params)
        except Exception as exc:
            error = exc
        finally:
            token.detach()
        if result is not None:
            st.children_touched.add(result.workflow_run_id)
        if result is not None and result.all_succeeded:
            _record_child_success(st, node, step_id, iteration, result, trace)
            return
        if st.cancellation.is_cancelled() or isinstance(error, EngineCancelled):
            reason = (
                error.reason
                if isinstance(error, EngineCancelled)
                else st.cancellation.reason() or CancellationReason.of("ParentCancelled")
            )
            cancelled = EngineCancelled(reason)
            st.update_step(
                step_id,
                StepUpdate(
                    generation=st.generation,
                    status=StepStatus.CANCELLED,
                    result_text=f"Sub-workflow '{name}' cancelled",
                    step_error=str(cancelled),
                    child_run_id=result.workflow_run_id if result is not None else None,
                    retry_count=attempt,
                ),
            )
            trace.completed(StepStatus.CANCELLED, str(cancelled))
            raise cancelled
        if result is not None:
            last_error = f"Sub-workflow '{name}' failed"
            if result.error:
                last_error += f": {result.error}"
            child_id: str | None = result.workflow_run_id
        else:
            assert error is not None
            last_error = f"Sub-workflow '{name}' error: {describe_exception(error)}"
            child_id = None
        st.update_step(step_id, StepUpdate.failed(st.generation, last_error, attempt, child_id))
        trace.completed(StepStatus.FAILED, last_error)
    handle_on_fail(st, name, name, node.on_fail, last_error, node.retries, iteration, max_attempts, path)


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
        prior = runner.find_resumable_child(st.workflow_run_id, name)
    except Exception as exc:
        return "none", f"failed to find resumable child run: {describe_exception(exc)}"
    if prior is None or prior.id in st.children_touched:
        return "none", ""
    st.children_touched.add(prior.id)
    db_name = f"workflow:{name}"
    step_id = st.insert_step(
        NewStep(st.workflow_run_id, db_name, _ROLE, position=position, iteration=iteration, retry_count=0)
    )
    trace = StepTrace(st, "call_workflow", db_name, name, path, iteration, position, 0)
    trace.started(step_id)
    try:
        result = runner.resume_child(prior.id, st.model, st.child_workflow_context())
    except EngineCancelled as exc:
        st.update_step(
            step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.CANCELLED,
                result_text=f"Sub-workflow '{name}' cancelled",
                step_error=str(exc),
                child_run_id=prior.id,
            ),
        )
        trace.completed(StepStatus.CANCELLED, str(exc))
        raise
    except Exception as exc:
        message = f"Sub-workflow '{name}' resume error: {describe_exception(exc)}"
        st.update_step(step_id, StepUpdate.failed(st.generation, message, 0, prior.id))
        trace.completed(StepStatus.FAILED, message)
        return "failed", message
    if result.all_succeeded:
        _record_child_success(st, node, step_id, iteration, result, trace)
        return "succeeded", ""
    if st.cancellation.is_cancelled():
        cancelled = EngineCancelled(st.cancellation.reason() or CancellationReason.of("ParentCancelled"))
        st.update_step(
            step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.CANCELLED,
                result_text=f"Sub-workflow '{name}' cancelled",
                step_error=str(cancelled),
                child_run_id=result.workflow_run_id,
            ),
        )
        trace.completed(StepStatus.CANCELLED, str(cancelled))
        raise cancelled
    message = f"Sub-workflow '{name}' failed (resume)"
    st.update_step(step_id, StepUpdate.failed(st.generation, message, 0, result.workflow_run_id))
    trace.completed(StepStatus.FAILED, message)
    return "failed", message
