"""Resume support (engine.md §10, with design.md §5's fixes).

A resumed run re-walks its workflow from the top. Every leaf step asks the `ResumeContext`
whether a *completed* row exists for its skip key (the name it was stored under) and iteration;
if so it is skipped and its result restored instead of run again.

Better than upstream, on purpose:
* rows are matched by occurrence: the n-th execution of a key at an iteration takes the n-th
  completed row (in position order), so `call verify` written twice is not skipped twice when
  only the first one had completed;
* results are restored under the keys they were stored under (path-based agents by their
  step key, call-workflow results under the workflow name);
* a while loop's already-finished iterations are replayed silently (their results restored, so a
  condition step inside the body reads the right markers) instead of skipped blindly;
* a foreach finds the row of its previous attempt so its items can be continued (see
  nodes/foreach.py);
* a retry (`RetryRequest`, docs/when-things-go-wrong.md) reopens chosen fan-out rows: only the
  chosen items run again there, and completed rows that came after the earliest reopened fan-out
  and were written before the retry was asked are not reused — the steps after it run again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runkon_flow.approvals import latest_gate_rows
from runkon_flow.dsl.ast import (
    AlwaysNode,
    CallNode,
    CallWorkflowNode,
    DoNode,
    DoWhileNode,
    ForEachNode,
    GateNode,
    IfNode,
    ParallelNode,
    ScriptNode,
    UnlessNode,
    WhileNode,
)
from runkon_flow.persistence.models import FanOutItemRow, RetryRequest, StepStatus, WorkflowRunStep
from runkon_flow.runtime.state import ContextEntry, ExecutionState, StepResult

__all__ = [
    "ResumeContext",
    "fast_forward_start",
    "final_rejection",
    "leaf_skip_keys",
    "parse_markers",
    "rejection_refusal",
    "restore_step",
]

log = logging.getLogger("runkon_flow.engine")

Key = tuple[str, int]


def _order(row: WorkflowRunStep) -> tuple[int, str, str]:
    return (row.position, row.started_at or "", row.id)


class ResumeContext:
    """The completed rows of a run, by (step name, iteration), consumed in occurrence order."""

    def __init__(
        self,
        rows: Iterable[WorkflowRunStep],
        retry: RetryRequest | None = None,
        known_items: Mapping[str, list[FanOutItemRow]] | None = None,
    ) -> None:
        self.completed: dict[Key, list[WorkflowRunStep]] = {}
        self.unfinished: dict[Key, list[WorkflowRunStep]] = {}
        self._taken: dict[Key, int] = {}
        self.retry = retry
        self._known_items = dict(known_items) if known_items else {}
        rows = list(rows)
        stale_after = _retry_cutoff(rows, retry)
        for row in rows:
            if row.node_path is not None and row.node_path.startswith("always."):
                continue  # the always list runs again in every attempt: nothing of it is kept
            key = (row.step_name, row.iteration)
            done = StepStatus(row.status) is StepStatus.COMPLETED
            if done and stale_after is not None and _is_stale(row, stale_after, retry):
                done = False  # written before the retry, after a reopened fan-out: run it again
            bucket = self.completed if done else self.unfinished
            bucket.setdefault(key, []).append(row)
        for rows_ in self.completed.values():
            rows_.sort(key=_order)
        for rows_ in self.unfinished.values():
            rows_.sort(key=_order)

    @classmethod
    def from_steps(
        cls,
        rows: Sequence[WorkflowRunStep],
        retry: RetryRequest | None = None,
        known_items: Mapping[str, list[FanOutItemRow]] | None = None,
    ) -> ResumeContext:
        """Always a context on resume: even with nothing completed, unfinished child runs and
        foreach items are continued. (A run with nothing completed still emits RunStarted.)
        `known_items`: see `RunInput.known_items`."""
        return cls(rows, retry, known_items)

    def take_items(self, step_row_id: str) -> list[FanOutItemRow] | None:
        """The item rows of the fan-out row `step_row_id` when the resume's caller read them
        already (`RunInput.known_items`), once; None: read them from the store."""
        return self._known_items.pop(step_row_id, None)

    def retry_items(self, step_row_id: str) -> frozenset[str] | None:
        """The item ids a retry chose for the fan-out row `step_row_id`; None when no retry
        reopened that row (then every unfinished item is continued, as on any resume)."""
        if self.retry is None:
            return None
        chosen = self.retry.items.get(step_row_id)
        return frozenset(chosen) if chosen is not None else None

    @property
    def completed_count(self) -> int:
        return sum(len(v) for v in self.completed.values())

    def skippable_count(self, keys: Iterable[str]) -> int:
        """The completed rows a walk of the workflow can skip: those stored under a name one of
        its steps still has (`leaf_skip_keys`). `RunResumed.skipped_steps` says this number: a
        row of a step renamed or removed since, or of an `on_fail` agent (run again, never
        skipped), is kept as history but not skipped, so it is not counted either."""
        names = set(keys)
        return sum(len(rows) for (name, _), rows in self.completed.items() if name in names)

    def take(self, name: str, iteration: int) -> WorkflowRunStep | None:
        """The next unconsumed completed row for this key, or None (the step must run)."""
        key = (name, iteration)
        rows = self.completed.get(key)
        if not rows:
            return None
        index = self._taken.get(key, 0)
        if index >= len(rows):
            return None
        self._taken[key] = index + 1
        return rows[index]

    def is_completed(self, name: str, iteration: int) -> bool:
        """Non-consuming: does any completed row exist for this key?"""
        return bool(self.completed.get((name, iteration)))

    def previous_attempt(self, name: str, iteration: int) -> WorkflowRunStep | None:
        """The most recent non-completed row for this key (a foreach to continue)."""
        rows = self.unfinished.get((name, iteration))
        if not rows:
            return None
        return max(rows, key=lambda r: (r.started_at or "", r.id))


def _retry_cutoff(rows: Sequence[WorkflowRunStep], retry: RetryRequest | None) -> int | None:
    """The position of the earliest fan-out row the retry reopens (None: no retry here)."""
    if retry is None:
        return None
    positions = [row.position for row in rows if row.id in retry.items]
    return min(positions) if positions else None


def _is_stale(row: WorkflowRunStep, after: int, retry: RetryRequest | None) -> bool:
    assert retry is not None
    return row.position > after and (row.started_at or "") < retry.requested_at


def parse_markers(markers_out: str | None) -> list[str]:
    """`markers_out` JSON as a string list; malformed text reads as []."""
    if not markers_out:
        return []
    try:
        value = json.loads(markers_out)
    except ValueError:
        log.warning("malformed markers_out ignored: %.80r", markers_out)
        return []
    if not isinstance(value, list):
        return []
    return [m for m in value if isinstance(m, str)]


def restore_step(
    st: ExecutionState,
    key: str,
    row: WorkflowRunStep,
    iteration: int,
    position: int,
    *,
    add_context: bool = True,
) -> StepResult:
    """Re-create a skipped step's result from its stored row (engine.md §10.3). No events."""
    markers = parse_markers(row.markers_out)
    context = row.context_out or ""
    result = StepResult(
        step_name=row.step_name,
        status=StepStatus.COMPLETED,
        result_text=row.result_text,
        markers=markers,
        context=context,
        child_run_id=row.child_run_id,
        structured_output=row.structured_output,
        output_file=row.output_file,
    )
    st.step_results[key] = result
    if add_context:
        st.add_context(
            ContextEntry.make(
                row.step_name, iteration, context, markers, row.structured_output, row.output_file
            )
        )
    st.note_output(position, row.structured_output)
    return result


def leaf_skip_keys(nodes: Iterable[Any]) -> list[str]:
    """The names every leaf under `nodes` is stored under (engine.md §10.4), recursing into blocks."""
    keys: list[str] = []
    for node in nodes:
        if isinstance(node, CallNode):
            keys.append(node.agent.label())
        elif isinstance(node, ParallelNode):
            keys.extend(agent.label() for agent in node.calls)
        elif isinstance(node, GateNode):
            keys.append(node.name)
        elif isinstance(node, CallWorkflowNode):
            keys.append(f"workflow:{node.workflow}")
        elif isinstance(node, ScriptNode):
            keys.append(node.name)
        elif isinstance(node, ForEachNode):
            keys.append(f"foreach:{node.name}")
        elif isinstance(node, (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode)):
            keys.extend(leaf_skip_keys(node.body))
    return keys


def fast_forward_start(resume: ResumeContext | None, body: Sequence[Any], limit: int) -> int:
    """The first iteration of a while loop that is not complete for every body leaf (§10.4)."""
    if resume is None:
        return 0
    keys = leaf_skip_keys(body)
    if not keys:
        return 0
    iteration = 0
    while iteration < limit and all(resume.is_completed(k, iteration) for k in keys):
        iteration += 1
    return iteration


def final_rejection(rows: Iterable[WorkflowRunStep]) -> WorkflowRunStep | None:
    """The gate row whose rejection stands in a run (the latest answer to that gate was "no"), or
    None. A rejection is a person's answer for the run: resuming would only ask the same gate again,
    so a resume is refused and a rerun from the gate offered (docs/engine.md, "A rejected gate
    is final"). `rows`: the run's step rows as `get_steps` orders them."""
    for row in latest_gate_rows(rows):
        if StepStatus(row.status) is StepStatus.FAILED and row.gate_approved_by:
            return row  # reject_gate records who answered in gate_approved_by, status failed
    return None


def rejection_refusal(run_id: str, row: WorkflowRunStep) -> str:
    """Why a run ended by a rejected gate is not resumed, and what to do instead (CLI, API)."""
    note = f" ({row.gate_feedback})" if row.gate_feedback else ""
    return (
        f"run {run_id} ended when gate '{row.step_name}' was rejected by {row.gate_approved_by}{note}; "
        "a rejection is final for its run, so it is not resumed (that would only ask again). "
        f"To ask again in a new run that reuses the steps before the gate: "
        f"runkon-flow rerun {run_id} --from {row.step_name}"
    )
