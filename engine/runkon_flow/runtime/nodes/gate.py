"""`gate <type>` (engine.md §9.8, dsl.md §6.8): wait for a human decision, or evaluate a quality gate.

A human gate writes its row `waiting` with gate type, prompt (variables substituted), timeout and
options, so a UI can show it and the store can validate selections; the run is marked `waiting`
with what it is blocked on. The decision comes through the approval store (`GateApprovals`), or
from a registered GateResolver for the gate's type, asked while the store holds no decision and
whose verdict is then written into the store (ours: upstream used resolvers for validation
only). Waits use the cancel token and an in-process wake-up signal, so a cancel or an approval is
noticed immediately rather than at the next poll.
"""

from __future__ import annotations

import json
import logging
import time

from runkon_flow.approvals import GATE_SIGNALS
from runkon_flow.dsl.ast import GateNode
from runkon_flow.dsl.templating import substitute_variables
from runkon_flow.errors import WorkflowError
from runkon_flow.events import GateResolved, GateTimedOut, GateWaiting
from runkon_flow.persistence.models import (
    GateApprovalState,
    NewStep,
    RunStatus,
    StepRole,
    StepStatus,
    StepUpdate,
)
from runkon_flow.plugins.protocols import GateParams
from runkon_flow.runtime.state import ExecutionState
from runkon_flow.runtime.steps import StepTrace, describe_exception
from runkon_flow.runtime.variables import build_variable_map, warn_unknown_placeholders

__all__ = ["execute_gate", "resolve_gate_options"]

log = logging.getLogger("runkon_flow.engine")

_ROLE = StepRole.GATE.value
_WAKE_TICK = 0.1


def _restore_gate(st: ExecutionState, row: object) -> None:
    """A passed gate on resume: only its feedback carries over (a passed gate records no result)."""
    selections: list[str] = []
    raw = getattr(row, "gate_selections", None)
    if raw:
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                selections = [str(v) for v in value]
        except ValueError:
            selections = []
    if selections:
        st.last_gate_feedback = ", ".join(selections)
    elif getattr(row, "gate_feedback", None):
        st.last_gate_feedback = row.gate_feedback  # type: ignore[attr-defined]


def execute_gate(st: ExecutionState, node: GateNode, iteration: int, path: str) -> None:
    position = st.take_position()
    if st.resume_ctx is not None:
        row = st.resume_ctx.take(node.name, iteration)
        if row is not None:
            _restore_gate(st, row)
            return
    if node.is_quality_gate:
        _quality_gate(st, node, iteration, position, path)
        return
    if st.exec_config.dry_run:
        step_id = st.insert_step(
            NewStep(
                st.workflow_run_id,
                node.name,
                _ROLE,
                position=position,
                iteration=iteration,
                gate_type=node.gate_type,
                node_path=path,
            )
        )
        trace = StepTrace(st, "gate", node.name, node.name, path, iteration, position)
        trace.started(step_id)
        st.update_step(step_id, StepUpdate.completed(st.generation, result_text="dry-run: auto-approved"))
        trace.completed(StepStatus.COMPLETED)
        return
    _human_gate(st, node, iteration, position, path)


# --------------------------------------------------------------------------- options


def resolve_gate_options(st: ExecutionState, node: GateNode) -> dict[str, str]:
    """The gate's options as value → label. A `"step.field"` reference reads a field (JSON object of
    strings, or array of strings) of that step's structured output; problems raise WorkflowError."""
    options = node.options
    if options is None:
        return {}
    if isinstance(options, dict):
        return dict(options)
    ref = options
    where = f"gate '{node.name}': options reference '{ref}'"
    if "." not in ref:
        raise WorkflowError(f"{where} must be in the form step.field")
    step, field_name = ref.split(".", 1)
    result = st.step_results.get(step)
    if result is None or result.structured_output is None:
        raise WorkflowError(f"{where}: step '{step}' has no structured output")
    try:
        data = json.loads(result.structured_output)
    except ValueError as exc:
        raise WorkflowError(f"{where}: structured output of '{step}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or field_name not in data:
        raise WorkflowError(f"{where}: field '{field_name}' not found in the output of '{step}'")
    value = data[field_name]
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    if isinstance(value, list):
        return {v: v for v in value if isinstance(v, str)}
    raise WorkflowError(f"{where}: field '{field_name}' must be a JSON object or array of strings")


def _blocked_on(node: GateNode, prompt: str | None, options: dict[str, str]) -> dict:
    if node.gate_type == "pr_approval":
        return {"type": "pr_approval", "gate_name": node.name, "approvals_needed": node.min_approvals}
    if node.gate_type == "pr_checks":
        return {"type": "pr_checks", "gate_name": node.name}
    return {"type": node.gate_type, "gate_name": node.name, "prompt": prompt or "", "options": list(options)}


def _set_running(st: ExecutionState) -> None:
    try:
        st.persistence.update_run_status(st.workflow_run_id, RunStatus.RUNNING, None, None)
    except Exception as exc:
        log.warning("could not set run %s back to running: %s", st.workflow_run_id, exc)


# --------------------------------------------------------------------------- human gates


def _human_gate(st: ExecutionState, node: GateNode, iteration: int, position: int, path: str) -> None:
    store = st.persistence
    name = node.name
    prompt = None
    if node.prompt:
        variables = build_variable_map(st)
        warn_unknown_placeholders(st, f"gate '{name}'", name, [node.prompt], variables)
        prompt = substitute_variables(node.prompt, variables)
    options: dict[str, str] = {}
    options_error: WorkflowError | None = None
    try:
        options = resolve_gate_options(st, node)
    except WorkflowError as exc:
        options_error = exc
    options_json = json.dumps([{"value": k, "label": v} for k, v in options.items()]) if options else None
    step_id = st.insert_step(
        NewStep(
            st.workflow_run_id,
            name,
            _ROLE,
            position=position,
            iteration=iteration,
            gate_type=node.gate_type,
            gate_prompt=prompt,
            gate_timeout=str(node.timeout_secs),
            gate_options=options_json,
            node_path=path,
        )
    )
    trace = StepTrace(st, "gate", name, name, path, iteration, position)
    if options_error is not None:
        trace.started(step_id)
        st.update_step(step_id, StepUpdate.failed(st.generation, options_error.message))
        trace.completed(StepStatus.FAILED, options_error.message)
        st.all_succeeded = False
        raise options_error

    wake = GATE_SIGNALS.register(step_id)
    try:
        st.update_step(step_id, StepUpdate(generation=st.generation, status=StepStatus.WAITING))
        trace.started(step_id)
        try:
            store.set_waiting_blocked_on(st.workflow_run_id, _blocked_on(node, prompt, options))
        except Exception as exc:
            log.warning("could not mark run %s waiting: %s", st.workflow_run_id, exc)
        if st.event_sinks:
            st.emit(
                GateWaiting(
                    gate_name=name,
                    step_id=step_id,
                    gate_type=node.gate_type,
                    prompt=prompt,
                    options=options,
                    timeout_secs=node.timeout_secs,
                    node_path=path,
                )
            )
        _wait_for_decision(st, node, step_id, prompt, options, trace, wake)
    finally:
        GATE_SIGNALS.unregister(step_id)


class _GateLog:
    """Warnings of one waiting gate, each distinct message once: a store or resolver that keeps
    failing would otherwise repeat the same line at every poll for as long as the gate waits."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warn(self, message: str) -> None:
        if message in self._seen:
            log.debug("%s (again)", message)
            return
        self._seen.add(message)
        log.warning("%s", message)


def _read_decision(st: ExecutionState, step_id: str, gate_log: _GateLog, name: str) -> GateApprovalState:
    """The decision recorded in the store; pending when it cannot be read (the next poll retries)."""
    try:
        return st.persistence.get_gate_approval(step_id)
    except Exception as exc:
        gate_log.warn(f"reading approval of gate '{name}' failed: {describe_exception(exc)}")
        return GateApprovalState.pending()


class _GateResolverPoll:
    """The registered GateResolver of a gate's type, asked only while the store holds no decision.

    The store is the one record of a gate's decision. A resolver's verdict is written into it (as
    `resolver:<type>`); when a person's approval or rejection got there first, the store refuses
    the write ("already completed") and the recorded decision stands — that is a lost race, not a
    failure, so nothing is logged. A write that fails with the gate still undecided is warned about.
    """

    def __init__(self, st: ExecutionState, node: GateNode, params: GateParams, gate_log: _GateLog) -> None:
        resolvers = getattr(st.engine, "gate_resolvers", None)
        self._resolver = resolvers.get(node.gate_type) if resolvers is not None else None
        self._st = st
        self._node = node
        self._params = params
        self._log = gate_log

    def decide(self) -> bool:
        """Ask the resolver once; True when a decision (its own or an earlier one) is now recorded."""
        if self._resolver is None:
            return False
        st, node, step_id = self._st, self._node, self._params.step_id
        try:
            poll = self._resolver.poll(st.workflow_run_id, self._params, st.run_ctx)
        except Exception as exc:
            self._log.warn(f"gate resolver '{node.gate_type}' failed: {describe_exception(exc)}")
            return False
        state = getattr(poll, "state", "pending")
        if state not in ("approved", "rejected"):
            return False
        by = f"resolver:{node.gate_type}"
        try:
            if state == "approved":
                st.persistence.approve_gate(step_id, by, poll.feedback, None)
            else:
                st.persistence.reject_gate(step_id, by, poll.feedback)
        except Exception as exc:
            if not _read_decision(st, step_id, self._log, node.name).is_pending:
                return True
            self._log.warn(
                f"could not record resolver decision for gate '{node.name}': {describe_exception(exc)}"
            )
            return False
        return True


def _wait_for_decision(
    st: ExecutionState,
    node: GateNode,
    step_id: str,
    prompt: str | None,
    options: dict[str, str],
    trace: StepTrace,
    wake: object,
) -> None:
    name = node.name
    params = GateParams(
        gate_name=name,
        prompt=prompt,
        min_approvals=node.min_approvals,
        approval_mode=node.approval_mode,
        options=options,
        timeout_secs=node.timeout_secs,
        as_identity=node.as_identity or st.default_as_identity,
        step_id=step_id,
    )
    gate_log = _GateLog()
    resolver = _GateResolverPoll(st, node, params, gate_log)
    started = time.monotonic()
    timeout_at = started + node.timeout_secs
    while True:
        if time.monotonic() - started > node.timeout_secs:
            _timed_out(st, node, step_id, trace)
            return
        # The store first: a decision already recorded (a person's, through GateApprovals) is final,
        # and the resolver is not asked to repeat it.
        decision = _read_decision(st, step_id, gate_log, name)
        if decision.is_pending and resolver.decide():
            decision = _read_decision(st, step_id, gate_log, name)
        if decision.is_approved:
            if decision.selections:
                st.last_gate_feedback = ", ".join(decision.selections)
            elif decision.feedback:
                st.last_gate_feedback = decision.feedback
            _set_running(st)
            if st.event_sinks:
                st.emit(
                    GateResolved(
                        gate_name=name,
                        approved=True,
                        step_id=step_id,
                        resolved_by=decision.by,
                        feedback=decision.feedback,
                        resolved_at=time.time(),
                        selections=list(decision.selections or []),
                    )
                )
            trace.completed(StepStatus.COMPLETED)
            return
        if decision.is_rejected:
            st.all_succeeded = False
            _set_running(st)
            if st.event_sinks:
                st.emit(
                    GateResolved(
                        gate_name=name,
                        approved=False,
                        step_id=step_id,
                        resolved_by=decision.by,
                        feedback=decision.feedback,
                        resolved_at=time.time(),
                    )
                )
            # The reason says what happened and who did it; the note goes beside it, never instead.
            message = f"Gate '{name}' rejected" + (f" by {decision.by}" if decision.by else "")
            if decision.feedback:
                message += f": {decision.feedback}"
            trace.completed(StepStatus.FAILED, message)
            raise WorkflowError(message)
        # Sleep until the next poll, the timeout, an in-process approval, or a cancel.
        wait_until = min(time.monotonic() + st.exec_config.poll_interval, timeout_at + 0.001)
        while True:
            if st.cancellation.is_cancelled():
                _cancelled(st, step_id, trace)
            remaining = wait_until - time.monotonic()
            if remaining <= 0:
                break
            if wake.wait(min(_WAKE_TICK, remaining)):  # type: ignore[attr-defined]
                wake.clear()  # type: ignore[attr-defined]
                break


def _cancelled(st: ExecutionState, step_id: str, trace: StepTrace) -> None:
    cancelled = st.cancellation.error()
    st.update_step(
        step_id,
        StepUpdate(
            generation=st.generation,
            status=StepStatus.CANCELLED,
            result_text="gate cancelled",
            step_error=str(cancelled),
        ),
    )
    trace.completed(StepStatus.CANCELLED, str(cancelled))
    raise cancelled


def _timed_out(st: ExecutionState, node: GateNode, step_id: str, trace: StepTrace) -> None:
    name = node.name
    if node.on_timeout == "fail":
        message = f"Gate '{name}' timed out"
        st.update_step(
            step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.FAILED,
                result_text="gate timed out",
                step_error=message,
            ),
        )
        st.all_succeeded = False
        _set_running(st)
        if st.event_sinks:
            st.emit(GateTimedOut(gate_name=name, step_id=step_id, continued=False))
        trace.completed(StepStatus.FAILED, message)
        raise WorkflowError(message)
    st.update_step(
        step_id,
        StepUpdate(
            generation=st.generation, status=StepStatus.TIMED_OUT, result_text="gate timed out (continuing)"
        ),
    )
    _set_running(st)
    if st.event_sinks:
        st.emit(GateTimedOut(gate_name=name, step_id=step_id, continued=True))
    trace.completed(StepStatus.TIMED_OUT, "gate timed out (continuing)", succeeded=False)


# --------------------------------------------------------------------------- quality gates


def _confidence(structured_output: str | None) -> tuple[int, str | None]:
    """`confidence` of a structured output as an int in [0, 100], or 0 with the reason why."""
    if structured_output is None:
        return 0, "no structured output"
    try:
        data = json.loads(structured_output)
    except ValueError:
        return 0, "structured output is not valid JSON"
    if not isinstance(data, dict) or "confidence" not in data:
        return 0, "missing 'confidence' key"
    value = data["confidence"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0, "'confidence' is not a number"
    number = int(value)  # floats truncate toward zero
    return max(0, min(number, 100)), None


def _quality_gate(st: ExecutionState, node: GateNode, iteration: int, position: int, path: str) -> None:
    name = node.name
    if node.source is None or node.threshold is None:
        raise WorkflowError(
            f"Quality gate '{name}' is missing required quality_gate configuration (source, threshold)"
        )
    step_id = st.insert_step(
        NewStep(
            st.workflow_run_id,
            name,
            _ROLE,
            position=position,
            iteration=iteration,
            gate_type=node.gate_type,
            node_path=path,
        )
    )
    trace = StepTrace(st, "gate", name, name, path, iteration, position)
    trace.started(step_id)
    source = st.step_results.get(node.source)
    if source is None:
        message = f"Quality gate '{name}': source step '{node.source}' not found in step results"
        st.update_step(step_id, StepUpdate.failed(st.generation, message))
        trace.completed(StepStatus.FAILED, message)
        st.all_succeeded = False
        raise WorkflowError(message)
    confidence, reason = _confidence(source.structured_output)
    passed = confidence >= node.threshold
    verdict = "pass" if passed else "fail"
    context = f"quality_gate: confidence={confidence}, threshold={node.threshold}, result={verdict}"
    if reason:
        context += f" (confidence defaulted to 0: {reason})"
    if passed or node.on_fail_action == "continue":
        if not passed:
            context += " (on_fail=continue, proceeding)"
        st.update_step(step_id, StepUpdate.completed(st.generation, result_text=context, context_out=context))
        trace.completed(StepStatus.COMPLETED)
        return
    message = f"Quality gate '{name}' failed: confidence {confidence} is below threshold {node.threshold}"
    st.update_step(
        step_id,
        StepUpdate(
            generation=st.generation,
            status=StepStatus.FAILED,
            result_text=context,
            context_out=context,
            step_error=message,
        ),
    )
    trace.completed(StepStatus.FAILED, message)
    st.all_succeeded = False
    raise WorkflowError(message)
