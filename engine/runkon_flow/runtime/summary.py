"""The run summary text written to `workflow_runs.result_summary` (engine.md §7.5)."""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from runkon_flow.persistence.models import StepStatus, WorkflowRunStep

__all__ = ["build_summary"]


_LABELS = {s.value: s.short_label for s in StepStatus}
_TAIL = (
    (StepStatus.FAILED.value, "failed"),
    (StepStatus.SKIPPED.value, "skipped"),
    (StepStatus.TIMED_OUT.value, "timed out"),
    (StepStatus.CANCELLED.value, "cancelled"),
)


_POSITION = attrgetter("position")
# Summaries of small runs already built, by what the text depends on: the thousands of children of
# a fan-out mostly end alike, so each is a lookup, and the store keeps one string for all of them.
_KNOWN: dict[tuple, str] = {}
_KNOWN_MAX = 512
_KNOWN_ROWS = 4  # larger runs are rarely alike: built every time


def build_summary(workflow_name: str, steps: Iterable[WorkflowRunStep], succeeded: bool) -> str:
    """`Workflow '<name>': c/t steps completed[, n failed][, n skipped][, n timed out][, n cancelled]`,
    one line per row in position order, then `Status: SUCCESS|FAILED`. Every retry is a row."""
    rows = list(steps)
    if len(rows) > _KNOWN_ROWS:
        rows.sort(key=_POSITION)
        return _build(workflow_name, rows, succeeded)
    if len(rows) == 1:  # most fan-out children: no sort, no tuple of tuples
        r = rows[0]
        key: tuple = (workflow_name, succeeded, str(r.status), r.step_name, r.iteration, bool(r.started_at))
    else:
        rows.sort(key=_POSITION)
        key = (
            workflow_name,
            succeeded,
            tuple((str(r.status), r.step_name, r.iteration, bool(r.started_at)) for r in rows),
        )
    text = _KNOWN.get(key)
    if text is None:
        text = _build(workflow_name, rows, succeeded)
        if len(_KNOWN) < _KNOWN_MAX:
            _KNOWN[key] = text
    return text


def _build(workflow_name: str, rows: list[WorkflowRunStep], succeeded: bool) -> str:
    counts: dict[str, int] = {}
    lines = [""]
    for row in rows:
        status = str(row.status)
        counts[status] = counts.get(status, 0) + 1
        line = f"  [{_LABELS.get(status, status)}] {row.step_name}"
        if row.iteration > 0:
            line += f" (iter {row.iteration})"
        if status == StepStatus.FAILED.value and not row.started_at:
            line += " (never executed)"
        lines.append(line)
    head = (
        f"Workflow '{workflow_name}': {counts.get(StepStatus.COMPLETED.value, 0)}/{len(rows)} steps completed"
    )
    for status, word in _TAIL:
        if counts.get(status):
            head += f", {counts[status]} {word}"
    lines[0] = head
    lines.append("Status: SUCCESS" if succeeded else "Status: FAILED")
    return "\n".join(lines)
