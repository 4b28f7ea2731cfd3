"""What every step kind shares: recording results (engine.md §7.3), on_fail handling (§9.2),
metrics (§12.5), and the step lifecycle events of design.md §3.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from runkon_flow.cancellation import EngineCancelled
from runkon_flow.errors import EngineError, WorkflowError
from runkon_flow.events import OUTPUT_CUT_NOTE, EngineLog, StepCompleted, StepOutput, StepStarted
from runkon_flow.humanize import fit_headline
from runkon_flow.persistence.models import StepStatus
from runkon_flow.runtime.state import ContextEntry, ExecutionState, StepResult
from runkon_flow.runtime.types import LlmRunMetrics
from runkon_flow.usage import Usage

if TYPE_CHECKING:
    from runkon_flow.dsl.ast import OnFailAgent, OnFailContinue
    from runkon_flow.runtime.types import WorkflowResult

__all__ = [
    "OutputEmitter",
    "StepTimedOut",
    "StepTrace",
    "describe_exception",
    "handle_on_fail",
    "markers_json",
    "record_step_failure",
    "record_step_skipped",
    "record_step_success",
]

log = logging.getLogger("runkon_flow.engine")

_INT_METRICS = (
    ("num_turns", "total_turns"),
    ("duration_ms", "total_duration_ms"),
    ("input_tokens", "total_input_tokens"),
    ("output_tokens", "total_output_tokens"),
    ("cache_read_input_tokens", "total_cache_read_input_tokens"),
    ("cache_creation_input_tokens", "total_cache_creation_input_tokens"),
)


class StepTimedOut(WorkflowError):
    """A step exceeded its `timeout`: the step is `timed_out` and the run fails (design.md §5)."""


def markers_json(markers: list[str]) -> str:
    if not markers:
        return "[]"  # the common case, without a trip through the JSON encoder
    return json.dumps(markers, ensure_ascii=False, separators=(",", ":"))


def describe_exception(exc: BaseException) -> str:
    """The text a step records for an error: EngineErrors as themselves, others with their type."""
    if isinstance(exc, EngineError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- metrics


def apply_metrics(st: ExecutionState, metadata: Mapping[str, str] | None) -> None:
    """Add an executor's metric metadata to the run totals; non-numeric values are logged and ignored."""
    if not metadata:
        return
    parsed = False
    cost = metadata.get("cost_usd")
    if cost is not None:
        try:
            st.total_cost += float(cost)
            parsed = True
        except (TypeError, ValueError):
            log.warning("ignoring non-numeric cost_usd metadata %r", cost)
    for meta_key, attr in _INT_METRICS:
        raw = metadata.get(meta_key)
        if raw is None:
            continue
        try:
            value = int(str(raw).strip())
        except ValueError:
            try:
                value = int(float(raw))
            except (TypeError, ValueError):
                log.warning("ignoring non-numeric %s metadata %r", meta_key, raw)
                continue
        setattr(st, attr, getattr(st, attr) + value)
        parsed = True
    if parsed:
        st.has_llm_metrics = True


#: metric metadata key → the `LlmRunMetrics` total a finished child run reports it in.
_RUN_TOTALS = (
    ("cost_usd", "total_cost_usd"),
    ("num_turns", "total_turns"),
    ("input_tokens", "total_input_tokens"),
    ("output_tokens", "total_output_tokens"),
    ("cache_read_input_tokens", "total_cache_read_input_tokens"),
    ("cache_creation_input_tokens", "total_cache_creation_input_tokens"),
)


def child_metadata(result: WorkflowResult) -> dict[str, str]:
    """A finished child run's totals as metric metadata (what its `call workflow` step reports,
    so they count in the caller's totals): its duration and what it reported spending."""
    out: dict[str, str] = {"duration_ms": str(result.total_duration_ms)}
    metrics = result.extensions.get(LlmRunMetrics) if result.extensions is not None else None
    if metrics is not None:
        for key, total in _RUN_TOTALS:
            value = getattr(metrics, total)
            if value is not None:
                out[key] = str(value)
    return out


def result_usage(result: WorkflowResult | None) -> Usage | None:
    """What a finished child run spent (its `LlmRunMetrics`), as a Usage; None when nothing.
    (Called once per foreach item: the import is at the top, not here.)"""
    metrics = result.extensions.get(LlmRunMetrics) if result is not None and result.extensions else None
    if metrics is None:
        return None
    return Usage.from_metadata({key: getattr(metrics, total) for key, total in _RUN_TOTALS})


# --------------------------------------------------------------------------- recording


def record_step_success(
    st: ExecutionState,
    key: str,
    step_name: str,
    iteration: int,
    *,
    result_text: str | None,
    markers: list[str],
    context: str,
    structured_output: str | None = None,
    child_run_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    output_file: str | None = None,
) -> StepResult:
    """Store a completed result under `key` and append a context entry (engine.md §7.3)."""
    if metadata:
        apply_metrics(st, metadata)
    result = StepResult(
        step_name=step_name,
        status=StepStatus.COMPLETED,
        result_text=result_text,
        markers=list(markers),
        context=context,
        child_run_id=child_run_id,
        structured_output=structured_output,
        output_file=output_file,
    )
    st.step_results[key] = result
    st.add_context(ContextEntry.make(step_name, iteration, context, markers, structured_output, output_file))
    return result


def record_step_failure(
    st: ExecutionState, key: str, label: str, last_error: str, max_attempts: int, started: bool = True
) -> None:
    """Mark the run unsuccessful; with fail_fast raise `Step '<label>' failed after N attempts`
    (`after 1 attempt` for one), followed by why: the step's own error on one line
    (`: Script 'check' exited with code 3 · lint: 3 errors`, `step_failure_cause`)."""
    st.all_succeeded = False
    st.step_results[key] = StepResult(step_name=label, status=StepStatus.FAILED, result_text=last_error)
    if st.exec_config.fail_fast:
        cause = step_failure_cause(last_error)
        if not started:
            raise WorkflowError(f"Step '{label}' failed to start (never executed){cause}")
        plural = "" if max_attempts == 1 else "s"
        raise WorkflowError(f"Step '{label}' failed after {max_attempts} attempt{plural}{cause}")


#: The most characters of a step's error a run's error repeats (`step_failure_cause`).
MAX_CAUSE_CHARS = 240


def step_failure_cause(step_error: str | None) -> str:
    """`: <the step's error on one line>` for the run's error, else "": its first line and, when
    it has more, its last — where a script's stderr or a traceback says why (`Script 'check'
    exited with code 3 · lint: 3 errors`) — at most `MAX_CAUSE_CHARS` characters, the first line
    cut before the last (`humanize.fit_headline`). A run's error that only named the step sent
    every reader (a CI log's last line, `runs --json`, a hook) to look for the cause elsewhere."""
    cause = fit_headline(step_error, MAX_CAUSE_CHARS)
    return f": {cause}" if cause else ""


def record_step_skipped(st: ExecutionState, key: str, label: str) -> None:
    """`on_fail = continue`: the step counts as skipped, the run carries on as if nothing failed."""
    st.step_results[key] = StepResult(step_name=label, status=StepStatus.SKIPPED)


def handle_on_fail(
    st: ExecutionState,
    key: str,
    label: str,
    on_fail: OnFailAgent | OnFailContinue | None,
    last_error: str,
    retries: int,
    iteration: int,
    max_attempts: int,
    path: str,
) -> None:
    """After every attempt failed (engine.md §9.2): continue, run a fallback agent, or fail."""
    if on_fail is None:
        record_step_failure(st, key, label, last_error, max_attempts)
        return
    if on_fail.kind == "continue":
        record_step_skipped(st, key, label)
        return
    from runkon_flow.dsl.ast import CallNode
    from runkon_flow.runtime.nodes.call import execute_call

    extra = {"failed_step": label, "failure_reason": last_error, "retry_count": str(retries)}
    saved = {k: st.inputs.get(k) for k in extra}
    st.inputs.update(extra)
    try:
        execute_call(st, CallNode(agent=on_fail.value), iteration, f"{path}.on_fail", inherit_block=False)
    except EngineCancelled:
        raise
    except EngineError as exc:
        st.warn(f"on_fail agent '{on_fail.value.label()}' for step '{label}' failed: {exc}", label)
    finally:
        for k, v in saved.items():
            if v is None:
                st.inputs.pop(k, None)
            else:
                st.inputs[k] = v
    record_step_failure(st, key, label, last_error, max_attempts)


# --------------------------------------------------------------------------- events


class StepTrace:
    """Emits StepStarted/StepCompleted for one attempt of one step, with timing (design.md §3)."""

    __slots__ = ("attempt", "iteration", "key", "kind", "name", "path", "position", "st", "step_id", "t0")

    def __init__(
        self,
        st: ExecutionState,
        kind: str,
        name: str,
        key: str,
        path: str,
        iteration: int,
        position: int | None = None,
        attempt: int = 0,
    ) -> None:
        self.st = st
        self.kind = kind
        self.name = name
        self.key = key
        self.path = path
        self.iteration = iteration
        self.position = position
        self.attempt = attempt
        self.step_id: str | None = None
        self.t0 = time.monotonic()

    def started(self, step_id: str | None) -> None:
        self.step_id = step_id
        self.t0 = time.monotonic()
        if self.st.event_sinks:
            self.st.emit(
                StepStarted(
                    step_name=self.name,
                    step_key=self.key,
                    kind=self.kind,  # type: ignore[arg-type]
                    step_id=step_id,
                    node_path=self.path,
                    position=self.position,
                    iteration=self.iteration,
                    attempt=self.attempt,
                    started_at=time.time(),
                )
            )

    def completed(
        self,
        status: StepStatus,
        error: str | None = None,
        markers: list[str] | None = None,
        succeeded: bool | None = None,
        usage: Usage | None = None,
    ) -> None:
        if not self.st.event_sinks:
            return
        ok = status is StepStatus.COMPLETED if succeeded is None else succeeded
        self.st.emit(
            StepCompleted(
                step_name=self.name,
                succeeded=ok,
                step_key=self.key,
                kind=self.kind,  # type: ignore[arg-type]
                step_id=self.step_id,
                node_path=self.path,
                iteration=self.iteration,
                attempt=self.attempt,
                status=status.value,  # type: ignore[arg-type]
                error=error,
                markers=list(markers or ()),
                duration_ms=int((time.monotonic() - self.t0) * 1000),
                ended_at=time.time(),
                usage=usage.as_dict() if usage else None,
            )
        )


class OutputEmitter:
    """Turns output lines into StepOutput events, at most `limit` per step (then one notice)."""

    __slots__ = ("_count", "_finished", "_limit", "_lock", "st", "step_id", "step_name")

    def __init__(self, st: ExecutionState, step_id: str, step_name: str, limit: int) -> None:
        self.st = st
        self.step_id = step_id
        self.step_name = step_name
        self._limit = limit
        self._count = 0
        self._finished = False
        self._lock = threading.Lock()

    def __call__(self, line: str, stream: str = "stdout") -> None:
        if not self.st.event_sinks:
            return
        with self._lock:
            self._count += 1
            count = self._count
        if count <= self._limit:
            if stream not in ("stdout", "stderr", "agent"):
                stream = "agent"
            self.st.emit(StepOutput(step_id=self.step_id, step_name=self.step_name, line=line, stream=stream))  # type: ignore[arg-type]
        elif count == self._limit + 1:
            self.st.emit(
                EngineLog(
                    level="info",
                    message=f"output of step '{self.step_name}' truncated after {self._limit} lines",
                    step_name=self.step_name,
                )
            )

    def finish(self) -> None:
        """Once the step's output has ended: say how many lines the cap dropped. Only emitted lines
        reach the stored stream, so without this count a reader (`runkon-flow logs`) could not
        tell that the output went on past the cap."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            dropped = self._count - self._limit
        if dropped > 0 and self.st.event_sinks:
            self.st.emit(
                EngineLog(
                    level="info",
                    message=f"output of step '{self.step_name}': {dropped} {OUTPUT_CUT_NOTE} "
                    f"(the engine passes on at most {self._limit} lines per step)",
                    step_name=self.step_name,
                    step_id=self.step_id,
                )
            )
