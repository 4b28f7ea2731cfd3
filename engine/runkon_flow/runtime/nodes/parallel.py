"""`parallel { call a  call b … }` (engine.md §9.5, dsl.md §6.7): run agents concurrently.

Each call is a branch with its own row (role `agent`, position base+i), per-call `if`, `retries`,
`output` and `with`. Every branch runs at once, each on its own daemon thread, as the spec says:
branches may wait on each other, so a cap could deadlock them. `max_parallel_branches` (off by
default) caps the threads for hosts that must. Results are written on the run's thread as they
arrive, so a UI sees each branch finish.
`fail_fast` cancels the block's scope token: branches not yet started never start, running ones
see their `StepInfo.cancellation` fire; such branches are recorded `cancelled` (ours).
When fewer than `min_success` calls succeed the run fails, naming the shortfall (ours: upstream
failed the run with no error text).
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from types import MappingProxyType

from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.dsl.ast import AgentRef, ParallelNode
from runkon_flow.errors import EngineError, WorkflowError
from runkon_flow.events import StepRetrying
from runkon_flow.persistence.models import NewStep, StepRole, StepStatus, StepUpdate, new_id
from runkon_flow.plugins.protocols import ActionOutput, ActionParams, Extensions, OutputSchema, StepInfo
from runkon_flow.runtime.nodes.call import resolve_schema
from runkon_flow.runtime.resume import restore_step
from runkon_flow.runtime.state import ExecutionState, StepResult
from runkon_flow.runtime.steps import (
    OutputEmitter,
    StepTrace,
    describe_exception,
    markers_json,
    record_step_success,
)
from runkon_flow.runtime.threads import WorkerPool
from runkon_flow.runtime.variables import build_variable_map, variable_sources
from runkon_flow.usage import Usage

__all__ = ["execute_parallel"]

_ROLE = StepRole.AGENT.value
_RECEIVE_TICK = 0.25


@dataclass
class _Branch:
    index: int
    agent: AgentRef
    label: str
    key: str
    position: int
    schema: OutputSchema | None
    snippets: list[str]
    retries: int
    path: str
    step_id: str = ""
    trace: StepTrace | None = None
    attempt: int = 0
    outcome: str = ""  # "ok" | "failed" | "cancelled"
    output: ActionOutput | None = None
    error: str | None = None
    reason: CancellationReason | None = None


def execute_parallel(st: ExecutionState, node: ParallelNode, iteration: int, path: str) -> None:
    group_id = new_id()
    block_schema = resolve_schema(st, node.output, "parallel")
    base = st.position
    st.position += len(node.calls)
    merged: list[str] = []
    restored = 0
    branches: list[_Branch] = []
    for i, agent in enumerate(node.calls):
        label, key, position = agent.label(), agent.step_key(), base + i
        if st.resume_ctx is not None:
            row = st.resume_ctx.take(label, iteration)
            if row is not None:
                result = restore_step(st, key, row, iteration, position)
                merged.extend(m for m in result.markers if m not in merged)
                restored += 1
                continue
        idx = str(i)
        schema = (
            resolve_schema(st, node.call_outputs[idx], f"parallel call '{key}'")
            if idx in node.call_outputs
            else block_schema
        )
        branches.append(
            _Branch(
                index=i,
                agent=agent,
                label=label,
                key=key,
                position=position,
                schema=schema,
                snippets=[*node.with_, *node.call_with.get(idx, [])],
                retries=node.call_retries.get(idx, 0),
                path=f"{path}.calls.{i}",
            )
        )

    block = StepTrace(st, "parallel", "parallel", f"parallel:{group_id}", path, iteration, base)
    block.started(None)
    skipped = 0
    runnable: list[_Branch] = []
    for b in branches:
        cond = node.call_if.get(str(b.index))
        if cond is not None and not st.has_marker(cond[0], cond[1]):
            step_id = st.insert_step(
                NewStep(
                    st.workflow_run_id,
                    b.label,
                    _ROLE,
                    position=b.position,
                    iteration=iteration,
                    node_path=b.path,
                )
            )
            text = f"skipped: {cond[0]}.{cond[1]} not emitted"
            st.update_step(
                step_id, StepUpdate(generation=st.generation, status=StepStatus.SKIPPED, result_text=text)
            )
            trace = StepTrace(st, "parallel_branch", b.label, b.key, b.path, iteration, b.position)
            trace.step_id = step_id
            trace.completed(StepStatus.SKIPPED, succeeded=True)
            skipped += 1
            continue
        b.step_id = st.insert_step(
            NewStep(
                st.workflow_run_id,
                b.label,
                _ROLE,
                position=b.position,
                iteration=iteration,
                retry_count=0,
                node_path=b.path,
            )
        )
        b.trace = StepTrace(st, "parallel_branch", b.label, b.key, b.path, iteration, b.position)
        b.trace.started(b.step_id)
        runnable.append(b)

    successes = 0
    if runnable:
        successes = _run_branches(st, node, runnable, iteration, merged)

    if st.cancellation.is_cancelled():
        error = st.cancellation.error()
        block.completed(StepStatus.CANCELLED, str(error))
        raise error

    total = len(runnable) + skipped + restored
    required = node.min_success if node.min_success is not None else total
    effective = successes + skipped + restored
    ok = effective >= required
    st.step_results[f"parallel:{group_id}"] = StepResult(
        step_name="parallel", status=StepStatus.COMPLETED if ok else StepStatus.FAILED, markers=merged
    )
    if ok:
        block.completed(StepStatus.COMPLETED, markers=merged)
        return
    message = f"parallel block: {effective} of {total} calls succeeded (min_success {required})"
    st.all_succeeded = False
    block.completed(StepStatus.FAILED, message, markers=merged)
    if st.exec_config.fail_fast:
        raise WorkflowError(message)


def _run_branches(
    st: ExecutionState, node: ParallelNode, runnable: list[_Branch], iteration: int, merged: list[str]
) -> int:
    """Dispatch every branch on a pool and record results as they arrive; returns the successes."""
    variables = MappingProxyType(build_variable_map(st))
    scope = st.cancellation.child()
    results: queue.SimpleQueue[_Branch] = queue.SimpleQueue()
    cap = st.exec_config.max_parallel_branches
    pool = WorkerPool(len(runnable) if cap is None else min(cap, len(runnable)), "parallel")
    for b in runnable:
        pool.submit(_run_branch, st, b, scope, variables, results)
    pending = {id(b): b for b in runnable}
    successes = 0
    give_up_at: float | None = None
    try:
        while pending:
            try:
                b = results.get(timeout=_RECEIVE_TICK)
            except queue.Empty:
                if st.cancellation.is_cancelled():
                    now = time.monotonic()
                    if give_up_at is None:
                        give_up_at = now + st.exec_config.cancel_grace
                    elif now >= give_up_at:
                        break
                continue
            pending.pop(id(b), None)
            if b.outcome == "ok":
                successes += 1
                _record_success(st, b, iteration, merged)
            elif b.outcome == "cancelled":
                _record_cancelled(st, b, b.reason)
            else:
                st.update_step(b.step_id, StepUpdate.failed(st.generation, b.error or "", b.attempt))
                assert b.trace is not None
                b.trace.completed(StepStatus.FAILED, b.error)
                if node.fail_fast:
                    scope.cancel(CancellationReason.of("FailFast"))
        for b in pending.values():  # abandoned after the cancel grace: they ignored their token
            _record_cancelled(st, b, st.cancellation.reason())
    finally:
        pool.shutdown()
        scope.detach()
    return successes


def _record_success(st: ExecutionState, b: _Branch, iteration: int, merged: list[str]) -> None:
    out = b.output
    assert out is not None and b.trace is not None
    markers = list(out.markers or ())
    context = out.context or ""
    usage = Usage.from_metadata(out.metadata)
    st.update_step(
        b.step_id,
        StepUpdate.completed(
            st.generation,
            child_run_id=out.child_run_id,
            result_text=out.result_text,
            context_out=context,
            markers_out=markers_json(markers),
            attempt=b.attempt,
            structured_output=out.structured_output,
            usage=usage.to_json() if usage else None,
        ),
    )
    st.note_output(b.position, out.structured_output)
    record_step_success(
        st,
        b.key,
        b.label,
        iteration,
        result_text=out.result_text,
        markers=markers,
        context=context,
        structured_output=out.structured_output,
        child_run_id=out.child_run_id,
        metadata=out.metadata,
    )
    merged.extend(m for m in markers if m not in merged)
    b.trace.completed(StepStatus.COMPLETED, markers=markers, usage=usage)


def _record_cancelled(st: ExecutionState, b: _Branch, reason: CancellationReason | None) -> None:
    text = str(EngineCancelled(reason or CancellationReason.of("ParentCancelled")))
    st.update_step(
        b.step_id,
        StepUpdate(
            generation=st.generation,
            status=StepStatus.CANCELLED,
            result_text=text,
            step_error=text,
            retry_count=b.attempt,
        ),
    )
    assert b.trace is not None
    b.trace.completed(StepStatus.CANCELLED, text)


def _run_branch(
    st: ExecutionState,
    b: _Branch,
    scope: CancellationToken,
    variables: MappingProxyType[str, str],
    results: queue.SimpleQueue[_Branch],
) -> None:
    """Worker: attempts of one branch until success, cancel or exhaustion. Reports via `results`."""
    token = scope.child()
    attempts = 1 + b.retries
    last_error: str | None = None
    registry = st.action_registry
    try:
        for attempt in range(attempts):
            b.attempt = attempt
            if scope.is_cancelled():
                b.outcome, b.reason = "cancelled", scope.reason()
                return
            if attempt > 0 and st.event_sinks:
                st.emit(
                    StepRetrying(
                        step_name=b.label, attempt=attempt, step_key=b.key, node_path=b.path, error=last_error
                    )
                )
            extensions = Extensions()
            extensions.insert(variable_sources(st, b.label))
            if b.schema is not None:
                extensions.insert(b.schema)
            params = ActionParams(
                name=b.label,
                inputs=variables,
                retries_remaining=attempts - attempt - 1,
                retry_error=last_error,
                snippets=list(b.snippets),
                dry_run=st.exec_config.dry_run,
                gate_feedback=st.last_gate_feedback,
                extensions=extensions,
                model=st.model,
                as_identity=st.default_as_identity,
                plugin_dirs=list(st.extra_plugin_dirs),
            )
            emitter = (
                OutputEmitter(st, b.step_id, b.label, st.exec_config.max_output_lines)
                if st.event_sinks
                else None
            )
            info = StepInfo(
                step_id=b.step_id,
                step_timeout=st.exec_config.step_timeout,
                cancellation=token,
                emit_output=emitter,
                run_id=st.workflow_run_id,
            )
            st.current_executions[b.step_id] = b.label
            try:
                out = registry.dispatch(b.label, st.run_ctx, info, params)  # type: ignore[arg-type]
                if not isinstance(out, ActionOutput):
                    raise WorkflowError(
                        f"executor '{b.label}' returned {type(out).__name__}, expected ActionOutput"
                    )
                b.outcome, b.output = "ok", out
                return
            except EngineCancelled as exc:
                b.outcome, b.reason = "cancelled", exc.reason
                return
            except EngineError as exc:
                last_error = str(exc)
            except Exception as exc:
                last_error = f"executor '{b.label}' raised {describe_exception(exc)}"
            finally:
                st.current_executions.pop(b.step_id, None)
                if emitter is not None:
                    emitter.finish()
            if token.is_cancelled():
                b.outcome, b.reason = "cancelled", token.reason()
                return
        b.outcome, b.error = "failed", last_error
    finally:
        token.detach()
        results.put(b)
