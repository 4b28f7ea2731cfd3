"""How a run is counted — one rule for every renderer, from events and from rows alike.

A *step* is counted once per execution (a step inside a loop once per iteration) by how its
latest attempt ended: retries and resumed re-runs add attempts, not steps. Parallel blocks are
containers, not steps. Fan-out *items* are counted separately from steps, each by its own status:
completed, failed, skipped, cancelled, running, interrupted and pending are never lumped
together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runkon_flow.observe.liveness import utc_seconds
from runkon_flow.observe.records import FanOutView, StepView, execution_position, in_always_list
from runkon_flow.persistence.models import WorkflowRunStep

#: Step statuses in the order renderers list them.
STEP_ORDER = (
    "completed",
    "failed",
    "timed_out",
    "running",
    "waiting",
    "skipped",
    "cancelled",
    "interrupted",
    "pending",
)


def step_counts(steps: Iterable[StepView]) -> dict[str, int]:
    """Steps of one run per status, by the rule above."""
    counts: dict[str, int] = {}
    for sv in steps:
        if sv.kind == "parallel":
            continue
        for status in sv.outcomes.values() if sv.outcomes else (sv.status,):
            counts[status] = counts.get(status, 0) + 1
    return counts


def row_key(row: WorkflowRunStep) -> tuple[str, int, int | None]:
    """The execution a stored row is an attempt of: its node (the step name for rows written
    before node paths were stored), its loop iteration and its position in the run (none for the
    always list, counted once per run: `execution_position`)."""
    return (
        row.node_path or f"name:{row.step_name}",
        row.iteration,
        execution_position(row.node_path, row.position),
    )


def latest_attempts(rows: Iterable[WorkflowRunStep]) -> list[WorkflowRunStep]:
    """The latest attempt of each execution, in first-seen order (rows as `get_steps` orders them:
    by position, then insertion)."""
    latest: dict[tuple[str, int, int | None], WorkflowRunStep] = {}
    for row in rows:
        latest[row_key(row)] = row
    return list(latest.values())


def row_attempts(rows: Iterable[WorkflowRunStep]) -> dict[str, tuple[int, int]]:
    """Each stored row's attempt of its execution (`row_key`) by row id: (its number from 1, how
    many attempts that execution has), rows in `get_steps` order. A step's own retries (`retries
    = N`) and a resume or retry of the run that runs it again each add an attempt; the stored
    `retry_count` counts the first kind only, from 0 again in every attempt of the run."""
    rows = list(rows)
    numbers: dict[str, int] = {}
    seen: dict[tuple[str, int, int | None], int] = {}
    for row in rows:
        key = row_key(row)
        seen[key] = numbers[row.id] = seen.get(key, 0) + 1
    return {row.id: (numbers[row.id], seen[row_key(row)]) for row in rows}


def row_status(row: WorkflowRunStep, run_interrupted: bool = False) -> str:
    """A stored step's status as the run model reads it: in a run no engine holds any more
    (`interrupted`), a step still running or waiting (and not ended) is `interrupted` — nothing
    runs it any more, a resume starts it again (`RunModel.mark_interrupted`, the one rule)."""
    status = str(row.status)
    if run_interrupted and status in ("running", "waiting") and row.ended_at is None:
        return "interrupted"
    return status


def replaced_always(rows: Iterable[WorkflowRunStep]) -> set[str]:
    """The ids of a run's rows of its top-level always list that a later attempt of the run
    replaced and has not run again: pending, as `RunModel._always_again` puts them at the new
    attempt's start — the rows' reading of the same rule. The list runs at the end of an
    attempt, after every body step of it, so an always row is an earlier attempt's when a body
    row of the run started after it (times are stored to the millisecond: a body row started in
    the same one is not taken for later)."""
    rows = list(rows)
    body = [
        t
        for row in rows
        if not in_always_list(row.node_path) and (t := utc_seconds(row.started_at)) is not None
    ]
    if not body:
        return set()
    latest = max(body)
    return {
        row.id
        for row in rows
        if in_always_list(row.node_path)
        and (start := utc_seconds(row.started_at)) is not None
        and start < latest
    }


def row_step_counts(rows: Iterable[WorkflowRunStep], run_interrupted: bool = False) -> dict[str, int]:
    """`step_counts` straight from store rows (for a list of many runs, without a full model).
    `run_interrupted`: the run has no engine any more (`row_status`); the always list's steps an
    attempt after theirs has not run again are pending (`replaced_always`)."""
    rows = list(rows)
    again = replaced_always(rows)
    counts: dict[str, int] = {}
    for row in latest_attempts(rows):
        status = "pending" if row.id in again else row_status(row, run_interrupted)
        counts[status] = counts.get(status, 0) + 1
    return counts


@dataclass(frozen=True)
class ItemCounts:
    """A fan-out's items, each status on its own."""

    total: int
    completed: int
    failed: int
    skipped: int
    cancelled: int
    running: int
    pending: int
    #: Still running when their fan-out ended (`FanOutView.stop_running`): not finished — a
    #: resume runs them again.
    interrupted: int = 0

    @classmethod
    def of(cls, fan: FanOutView) -> ItemCounts:
        statuses = ("completed", "failed", "skipped", "cancelled", "running", "interrupted")
        counted = {s: fan.count(s) for s in statuses}
        # Items declared but not listed yet are pending too.
        return cls(total=fan.total, pending=fan.total - sum(counted.values()), **counted)

    @property
    def finished(self) -> int:
        """Items that will not run again in this attempt of the run (completed, failed, skipped,
        cancelled) — `finished` is not `done well`: see `completed`."""
        return self.completed + self.failed + self.skipped + self.cancelled
