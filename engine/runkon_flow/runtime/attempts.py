"""One attempt of a retried step (`call`, `script`, `call workflow`): its row, its lifecycle events
and the one way it ends — so every step kind records completed, failed, cancelled and timed-out
attempts alike (engine.md §7.3, §9.2; design.md §3, §5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runkon_flow.cancellation import EngineCancelled
from runkon_flow.events import StepRetrying
from runkon_flow.persistence.models import NewStep, StepRole, StepStatus, StepUpdate
from runkon_flow.runtime.resume import restore_step
from runkon_flow.runtime.state import ExecutionState, StepResult
from runkon_flow.runtime.steps import StepTimedOut, StepTrace, apply_metrics, handle_on_fail, markers_json
from runkon_flow.usage import Usage

if TYPE_CHECKING:
    from runkon_flow.dsl.ast import OnFailAgent, OnFailContinue

__all__ = ["StepAttempt", "cancellation_of", "run_retried_step"]

_AGENT = StepRole.AGENT.value


def cancellation_of(st: ExecutionState, error: BaseException | None) -> EngineCancelled:
    """The cancel that stopped an attempt: the error's own reason, else the run token's."""
    if isinstance(error, EngineCancelled):
        return EngineCancelled(error.reason)
    return st.cancellation.error()


def run_retried_step(
    st: ExecutionState,
    key: str,
    label: str,
    iteration: int,
    path: str,
    *,
    retries: int,
    on_fail: OnFailAgent | OnFailContinue | None,
    attempt: Callable[[int, int, str | None], str | None],
) -> None:
    """Restore the step on resume, else up to `1 + retries` attempts, then on_fail (engine.md §9.2).

    `attempt(position, n, last_error)` returns None on success or the error text of a failed
    attempt; it raises for what ends the run (cancel, timeout). A resume matches rows by `label`
    and restores the result under `key`."""
    position = st.take_position()
    if st.resume_ctx is not None:
        row = st.resume_ctx.take(label, iteration)
        if row is not None:
            restore_step(st, key, row, iteration, position)
            return
    max_attempts = 1 + retries
    last_error: str | None = None
    for n in range(max_attempts):
        error = attempt(position, n, last_error)
        if error is None:
            return
        last_error = error
    handle_on_fail(st, key, label, on_fail, last_error or "", retries, iteration, max_attempts, path)


class StepAttempt:
    """The row and StepStarted/StepCompleted events of one attempt; end it with exactly one of
    `completed`, `failed`, `cancelled` or `timed_out`."""

    __slots__ = ("attempt", "key", "label", "st", "step_id", "trace")

    def __init__(
        self,
        st: ExecutionState,
        kind: str,
        label: str,
        key: str,
        path: str,
        iteration: int,
        position: int,
        attempt: int,
        last_error: str | None = None,
        *,
        role: str = _AGENT,
    ) -> None:
        if attempt > 0 and st.event_sinks:
            st.emit(
                StepRetrying(step_name=label, attempt=attempt, step_key=key, node_path=path, error=last_error)
            )
        self.st, self.label, self.key, self.attempt = st, label, key, attempt
        row = NewStep(
            st.workflow_run_id,
            label,
            role,
            position=position,
            iteration=iteration,
            retry_count=attempt,
            node_path=path,
        )
        self.step_id = st.insert_step(row)
        # Without sinks there is nothing to trace: no StepTrace per attempt (every foreach child).
        self.trace: StepTrace | None = None
        if st.event_sinks:
            self.trace = StepTrace(st, kind, label, key, path, iteration, position, attempt)
            self.trace.started(self.step_id)

    def child_started(self, child_run_id: str) -> None:
        """Name the child run on the row while it runs (a `call workflow`), so readers find the
        child by the row, not by its workflow's name."""
        self.st.update_step(
            self.step_id, StepUpdate(self.st.generation, StepStatus.RUNNING, child_run_id=child_run_id)
        )

    def completed(
        self,
        *,
        result_text: str | None,
        context: str,
        markers: list[str],
        structured_output: str | None = None,
        child_run_id: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        """Write the completed row and StepCompleted (recording the result is the caller's); `usage`
        is what the step spent (docs/agents.md "Usage")."""
        self.st.update_step(
            self.step_id,
            StepUpdate.completed(
                self.st.generation,
                child_run_id=child_run_id,
                result_text=result_text,
                context_out=context,
                markers_out=markers_json(markers),
                attempt=self.attempt,
                structured_output=structured_output,
                usage=usage.to_json() if usage else None,
            ),
        )
        if self.trace is not None:
            self.trace.completed(StepStatus.COMPLETED, markers=markers, usage=usage)

    def failed(self, message: str, child_run_id: str | None = None, *, usage: Usage | None = None) -> str:
        """Write the failed row; returns `message` (what a retry or on_fail sees). `usage`: what
        the attempt spent before it failed — kept on the row and its event and counted in the
        run's totals, as a completed attempt's is (docs/agents.md "Usage")."""
        spent = usage.to_json() if usage else None
        update = StepUpdate.failed(self.st.generation, message, self.attempt, child_run_id, spent)
        self.st.update_step(self.step_id, update)
        if usage:
            apply_metrics(self.st, {key: str(value) for key, value in usage.as_dict().items()})
        if self.trace is not None:
            self.trace.completed(StepStatus.FAILED, message, usage=usage)
        return message

    def cancelled(
        self, result_text: str, cancelled: EngineCancelled, child_run_id: str | None = None
    ) -> EngineCancelled:
        """Write the cancelled row; returns the error for the caller to raise."""
        self.st.update_step(
            self.step_id,
            StepUpdate(
                generation=self.st.generation,
                status=StepStatus.CANCELLED,
                result_text=result_text,
                step_error=str(cancelled),
                child_run_id=child_run_id,
                retry_count=self.attempt,
            ),
        )
        if self.trace is not None:
            self.trace.completed(StepStatus.CANCELLED, str(cancelled))
        return cancelled

    def timed_out(self, result_text: str, text: str) -> StepTimedOut:
        """Write the timed-out row and fail the run (design.md §5); returns the error to raise."""
        st = self.st
        st.update_step(
            self.step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.TIMED_OUT,
                result_text=result_text,
                step_error=text,
                retry_count=self.attempt,
            ),
        )
        if self.trace is not None:
            self.trace.completed(StepStatus.TIMED_OUT, text)
        st.all_succeeded = False
        st.step_results[self.key] = StepResult(self.label, StepStatus.TIMED_OUT, text)
        return StepTimedOut(text)
