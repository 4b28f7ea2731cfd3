"""Rerun from a step: which step `--from` names, and which rows of the earlier run a new run reuses.

A rerun is a new run, linked to the one it reruns (`workflow_runs.rerun_of`, `rerun_from`), that
starts with copies of the earlier run's completed step rows that came before the chosen step, and
is then resumed: every copied step is skipped with its result restored (so outputs of earlier
steps feed the later ones, exactly as on `resume`), and the chosen step and everything after it
runs. "Before" is execution order — the row position — up to the first execution of the chosen
step in the earlier run; when that run never reached the step, every completed row is reused —
except the `always` block's, which comes after every body step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from runkon_flow.dsl.ast import (
    AgentRef,
    CallNode,
    CallWorkflowNode,
    ForEachNode,
    GateNode,
    ParallelNode,
    ScriptNode,
    WorkflowDef,
    node_paths,
    walk,
)
from runkon_flow.errors import WorkflowError
from runkon_flow.events import StepCompleted, StepKind
from runkon_flow.persistence.models import StepStatus, WorkflowRunStep
from runkon_flow.runtime.resume import leaf_skip_keys, parse_markers

__all__ = ["NoStepToRerunFrom", "RerunPlan", "plan_rerun", "reused_events", "step_names"]


@dataclass(frozen=True)
class RerunPlan:
    """`step`: the name `--from` resolved to; `node_path`: its place in the definition;
    `reused`: the earlier run's rows to copy, in execution order."""

    step: str
    node_path: str
    reused: tuple[WorkflowRunStep, ...]

    @property
    def reused_names(self) -> list[str]:
        return list(dict.fromkeys(row.step_name for row in self.reused))


def _named(wf: WorkflowDef) -> Iterator[tuple[str, Any, list[str]]]:
    """(name a user writes, node, the skip keys its rows are stored under) for every step."""
    for node in walk([*wf.body, *wf.always]):
        if isinstance(node, ScriptNode | GateNode):
            yield node.name, node, [node.name]
        elif isinstance(node, CallNode):
            yield node.agent.label(), node, [node.agent.label()]
        elif isinstance(node, ForEachNode):
            yield node.name, node, [f"foreach:{node.name}"]
        elif isinstance(node, CallWorkflowNode):
            yield node.workflow, node, [f"workflow:{node.workflow}"]
        elif isinstance(node, ParallelNode):
            for ref in node.calls:
                yield ref.label(), ref, [ref.label()]


class NoStepToRerunFrom(WorkflowError):
    """The step to rerun from names no step of the workflow (or more than one): the caller's
    mistake, which `runkon-flow rerun --from` reports as a usage error (exit 2), as an unknown input
    of the workflow (`logs RUN nosuch` is exit 1: a step the run's rows do not hold, docs/cli.md)."""


def step_names(wf: WorkflowDef) -> list[str]:
    """Every name `--from` accepts, in tree order (for error messages and completion)."""
    return list(dict.fromkeys(name for name, _, _ in _named(wf)))


def _resolve(wf: WorkflowDef, step: str) -> tuple[str, str, list[str]]:
    paths = node_paths(wf)
    by_path = {paths.get(id(node)): (name, node, keys) for name, node, keys in _named(wf)}
    if step in by_path:
        name, node, keys = by_path[step]
        return name, step, keys
    block = next((n for n in walk([*wf.body, *wf.always]) if paths.get(id(n)) == step), None)
    if block is not None:  # a block (if, while, do, parallel …): rerun from its first step
        keys = leaf_skip_keys([block])
        if not keys:
            raise NoStepToRerunFrom(f"node {step} of '{wf.name}' holds no step to rerun from")
        return f"{block.type} block at {step}", step, keys
    matches = [(name, node, keys) for name, node, keys in _named(wf) if name == step or step in keys]
    if not matches:
        known = ", ".join(step_names(wf)) or "none"
        raise NoStepToRerunFrom(f"no step '{step}' in workflow '{wf.name}' (it has: {known})")
    if len(matches) > 1:
        where = ", ".join(paths.get(id(node), "?") for _, node, _ in matches)
        raise NoStepToRerunFrom(
            f"step '{step}' appears {len(matches)} times in '{wf.name}'; name it by node path ({where})"
        )
    name, node, keys = matches[0]
    if not isinstance(node, AgentRef):
        keys = leaf_skip_keys([node]) or keys
    return name, paths.get(id(node), ""), keys


def _run_order(row: WorkflowRunStep) -> tuple[int, str, str]:
    """The order the earlier run executed its rows in: what a rerun reuses, and says it reuses."""
    return (row.position, row.started_at or "", row.id)


def plan_rerun(wf: WorkflowDef, rows: Sequence[WorkflowRunStep], step: str) -> RerunPlan:
    """Which of the earlier run's `rows` a rerun of `wf` from `step` reuses (see the module doc).
    `step` is a step's name as the tree shows it, or its node path (`body.2`)."""
    name, path, keys = _resolve(wf, step)
    starts = [row.position for row in rows if row.step_name in keys or (path and row.node_path == path)]
    cutoff = min(starts) if starts else None
    # The `always` block runs after the body, so after any body step: an earlier run that failed
    # before reaching STEP ran it, but a rerun from a body step runs it again at its end.
    from_body = not path.startswith("always")
    reused = sorted(
        (
            row
            for row in rows
            if StepStatus(row.status) is StepStatus.COMPLETED
            and (cutoff is None or row.position < cutoff)
            and not (from_body and (row.node_path or "").startswith("always"))
        ),
        key=_run_order,
    )
    return RerunPlan(name, path, tuple(reused))


_ROLE_KIND: dict[str, StepKind] = {"gate": "gate", "foreach": "foreach", "workflow": "call_workflow"}


def _kind(node: Any, row: WorkflowRunStep) -> StepKind:
    if isinstance(node, AgentRef):
        return "parallel_branch"
    if node is not None:
        return {"for_each": "foreach"}.get(node.type, node.type)
    return _ROLE_KIND.get(row.role, "call")


def reused_events(wf: WorkflowDef, rows: Sequence[WorkflowRunStep], rerun_of: str) -> list[StepCompleted]:
    """What a rerun's event stream says of the steps it reuses, right after its `RunStarted`: one
    `StepCompleted` per copied row (completed, `reused_from` the run it reruns, its position
    there), in execution order, so whoever folds the stream — the live view, `watch`, `replay`,
    the dashboard — shows them completed-and-reused, as `show` does from the rows."""
    paths = node_paths(wf)
    by_path = {paths[id(node)]: node for _, node, _ in _named(wf) if id(node) in paths}
    done = sorted(
        (row for row in rows if StepStatus(row.status) is StepStatus.COMPLETED),
        key=_run_order,
    )
    return [
        StepCompleted(
            step_name=row.step_name,
            succeeded=True,
            step_key=row.step_name,
            kind=_kind(by_path.get(row.node_path or ""), row),
            step_id=row.id,
            node_path=row.node_path,
            iteration=row.iteration,
            attempt=row.retry_count,
            status=StepStatus.COMPLETED,
            markers=parse_markers(row.markers_out),
            reused_from=rerun_of,
            position=row.position,
        )
        for row in done
    ]
