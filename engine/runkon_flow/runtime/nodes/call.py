"""`call <agent>` (engine.md §9.1, dsl.md §6.1): dispatch an agent through the action registry
with retries, on_fail, timeout, identity, output schema and prompt snippets.

Differences from upstream, on purpose (design.md §5, docs/engine.md):
* the executor gets `StepInfo.cancellation` (a child of the run token) and `emit_output`, so a
  cancel or timeout reaches it at once; a call with a `timeout` runs on a helper thread and is
  abandoned (after a short grace) if it ignores its token — the timeout pre-empts it;
* a timeout marks the row `timed_out` and *fails* the run (upstream: cancelled as a user cancel);
* a cancelled attempt is recorded `cancelled`, and any non-EngineError exception from an
  executor is an attempt failure naming the executor, never a crash of the run thread.
"""

from __future__ import annotations

from runkon_flow.cancellation import EngineCancelled
from runkon_flow.dsl.ast import CallNode
from runkon_flow.dsl.durations import DurationError, parse_call_timeout
from runkon_flow.errors import EngineError, WorkflowError
from runkon_flow.persistence.models import StepStatus
from runkon_flow.plugins.protocols import (
    ActionFailed,
    ActionOutput,
    ActionParams,
    ClaudeActionParams,
    Extensions,
    OutputSchema,
    StepInfo,
)
from runkon_flow.runtime.attempts import StepAttempt, cancellation_of, run_retried_step
from runkon_flow.runtime.state import ExecutionState, StepResult
from runkon_flow.runtime.steps import OutputEmitter, describe_exception, handle_on_fail, record_step_success
from runkon_flow.runtime.threads import call_with_deadline, fire_and_forget
from runkon_flow.runtime.variables import build_variable_map, variable_sources
from runkon_flow.usage import Usage

__all__ = ["execute_call", "merge_plugin_dirs", "resolve_schema"]


def resolve_schema(st: ExecutionState, name: str | None, where: str) -> OutputSchema | None:
    """Load an `output = <schema>` name through the run's schema resolver (engine.md §3.9)."""
    if not name:
        return None
    if st.schema_resolver is None:
        raise WorkflowError(f"No schema resolver configured — cannot load schema '{name}'")
    try:
        return st.schema_resolver(name)
    except EngineError:
        raise
    except Exception as exc:
        raise WorkflowError(
            f"{where}: cannot load output schema '{name}': {describe_exception(exc)}"
        ) from exc


def merge_plugin_dirs(base: list[str], extra: list[str]) -> list[str]:
    """`base` followed by the entries of `extra` not already present (order kept)."""
    if not extra:
        return list(base)
    out = list(base)
    for d in extra:
        if d not in out:
            out.append(d)
    return out


def execute_call(
    st: ExecutionState, node: CallNode, iteration: int, path: str, *, inherit_block: bool = True
) -> None:
    label = node.agent.label()
    key = node.agent.step_key()
    schema_name = node.output or (st.block_output if inherit_block else None)
    snippets = [*st.block_with, *node.with_] if inherit_block else list(node.with_)
    schema: OutputSchema | None = None
    if node.retries == 0 and schema_name is None and st.resume_ctx is None:
        # One attempt, nothing to restore, no schema to load (most fan-out children): what
        # run_retried_step would do, without its closure and loop.
        position = st.take_position()
        error = _attempt(st, node, label, key, path, iteration, position, 0, 1, None, None, snippets)
        if error is not None:
            handle_on_fail(st, key, label, node.on_fail, error, 0, iteration, 1, path)
        return

    def attempt(position: int, n: int, last_error: str | None) -> str | None:
        nonlocal schema
        if n == 0:  # resolved once, and not for a step a resume restores
            schema = resolve_schema(st, schema_name, f"call '{key}'")
        max_attempts = 1 + node.retries
        return _attempt(
            st, node, label, key, path, iteration, position, n, max_attempts, last_error, schema, snippets
        )

    run_retried_step(
        st, key, label, iteration, path, retries=node.retries, on_fail=node.on_fail, attempt=attempt
    )


def _attempt(
    st: ExecutionState,
    node: CallNode,
    label: str,
    key: str,
    path: str,
    iteration: int,
    position: int,
    attempt: int,
    max_attempts: int,
    last_error: str | None,
    schema: OutputSchema | None,
    snippets: list[str],
) -> str | None:
    """One attempt; returns None on success or the error text (raises on timeout/cancel)."""
    step = StepAttempt(st, "call", label, key, path, iteration, position, attempt, last_error)
    step_id = step.step_id

    timeout_s: float | None = None
    if node.timeout is not None:
        try:
            timeout_s = parse_call_timeout(node.timeout)
        except DurationError as exc:
            message = step.failed(f"call '{key}': {exc}")
            st.all_succeeded = False
            st.step_results[key] = StepResult(label, StepStatus.FAILED, message)
            raise WorkflowError(message) from None

    extensions = Extensions()
    extensions.insert(variable_sources(st, label))
    if schema is not None:
        extensions.insert(schema)
    if node.max_turns is not None:
        extensions.insert(ClaudeActionParams(max_turns=node.max_turns))
    params = ActionParams(
        name=label,
        inputs=build_variable_map(st),
        retries_remaining=max_attempts - attempt - 1,
        retry_error=last_error,
        snippets=snippets,
        dry_run=st.exec_config.dry_run,
        gate_feedback=st.last_gate_feedback,
        extensions=extensions,
        model=st.model,
        as_identity=node.as_identity or st.default_as_identity,
        plugin_dirs=merge_plugin_dirs(st.extra_plugin_dirs, node.plugin_dirs),
    )
    # A step token of its own only when a timeout can cancel the step alone; otherwise the run's
    # token is the step's (no per-call allocation on the hot path).
    token = st.cancellation.child() if timeout_s is not None else st.cancellation
    emitter = OutputEmitter(st, step_id, label, st.exec_config.max_output_lines) if st.event_sinks else None
    info = StepInfo(
        step_id=step_id,
        step_timeout=st.exec_config.step_timeout,
        cancellation=token,
        emit_output=emitter,
        run_id=st.workflow_run_id,
    )
    registry = st.action_registry
    output: object = None
    error: BaseException | None = None
    timed_out = False
    st.current_executions[step_id] = label
    try:
        if timeout_s is None:
            try:
                output = registry.dispatch(label, st.run_ctx, info, params)  # type: ignore[arg-type]
            except Exception as exc:
                error = exc
        else:
            outcome = call_with_deadline(
                lambda: registry.dispatch(label, st.run_ctx, info, params),  # type: ignore[arg-type]
                token,
                timeout_s,
                st.exec_config.cancel_grace,
            )
            timed_out = outcome.timed_out
            if timed_out or not outcome.finished:
                fire_and_forget(registry.cancel, label, step_id, name="executor-cancel")
            if not outcome.finished and not timed_out:
                error = st.cancellation.error()
            else:
                output, error = outcome.value, outcome.error
    finally:
        st.current_executions.pop(step_id, None)
        if token is not st.cancellation:
            token.detach()
        if emitter is not None:
            emitter.finish()

    if timed_out:
        text = f"step '{label}' timed out after {node.timeout}"
        raise step.timed_out(f"timed out after {node.timeout}", text)

    if error is None and not isinstance(output, ActionOutput):
        error = WorkflowError(f"executor '{label}' returned {type(output).__name__}, expected ActionOutput")

    if error is None:
        assert isinstance(output, ActionOutput)
        markers = list(output.markers or ())
        context = output.context or ""
        step.completed(
            result_text=output.result_text,
            context=context,
            markers=markers,
            structured_output=output.structured_output,
            child_run_id=output.child_run_id,
            usage=Usage.from_metadata(output.metadata),
        )
        st.note_output(position, output.structured_output)
        record_step_success(
            st,
            key,
            label,
            iteration,
            result_text=output.result_text,
            markers=markers,
            context=context,
            structured_output=output.structured_output,
            child_run_id=output.child_run_id,
            metadata=output.metadata,
        )
        return None

    if isinstance(error, EngineCancelled) or st.cancellation.is_cancelled():
        raise step.cancelled("executor shutdown requested", cancellation_of(st, error))

    if isinstance(error, ActionFailed):  # the agent worked, then failed: what it spent counts
        return step.failed(str(error), usage=Usage.from_metadata(error.metadata))
    if isinstance(error, EngineError):
        return step.failed(str(error))
    return step.failed(f"executor '{label}' raised {describe_exception(error)}")
