"""The run summary text written to `workflow_runs.result_summary` (engine.md §7.5)."""

from __future__ import annotations

from collections.abc import Iterable

from runkon_flow.persistence.models import StepStatus, WorkflowRunStep

__all__ = ["build_summary"]


def build_summary(workflow_name: str, steps: Iterable[WorkflowRunStep], succeeded: bool) -> str:
    """`Workflow '<name>': c/t steps completed[, n failed][, n skipped][, n timed out][, n cancelled]`,
    one line per row in position order, then `Status: SUCCESS|FAILED`. Every retry is a row."""
    rows = sorted(steps, key=lambda s: s.position)
    counts: dict[StepStatus, int] = {}
    for row in rows:
        status = StepStatus(row.status)
        counts[status] = counts.get(status, 0) + 1
    head = f"Workflow '{workflow_name}': {counts.get(StepStatus.COMPLETED, 0)}/{len(rows)} steps completed"
    for status, word in (
        (StepStatus.FAILED, "failed"),
        (StepStatus.SKIPPED, "skipped"),
        (StepStatus.TIMED_OUT, "timed out"),
        (StepStatus.CANCELLED, "cancelled"),
    ):
        if counts.get(status):
            head += f", {counts[status]} {word}"
    lines = [head]
    for row in rows:
        status = StepStatus(row.status)
        line = f"  [{status.short_label}] {row.step_name}"
        if row.iteration > 0:
            line += f" (iter {row.iteration})"
        if status is StepStatus.FAILED and not row.started_at:
            line += " (never executed)"
        lines.append(line)
    lines.append("Status: SUCCESS" if succeeded else "Status: FAILED")
    return "\n".join(lines)
