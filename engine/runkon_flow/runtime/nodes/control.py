"""Control flow (engine.md §9.6, §9.7): if/unless, while, do-while, do and nested always.

Decision (docs/engine.md): the loop iteration propagates into nested if/unless/do/always bodies
instead of resetting to 0, so every step inside a loop is recorded with the iteration it really
ran in. This is what lets resume tell iteration 2's `fix` from iteration 0's (upstream skipped it
in every re-executed iteration, engine.md §14 E). Loop bodies also check the cancel token between
nodes, so a cancel is never held up by a run of quick steps.
"""

from __future__ import annotations

import json
from collections import deque

from runkon_flow.dsl.ast import AlwaysNode, DoNode, DoWhileNode, IfNode, UnlessNode, WhileNode
from runkon_flow.errors import WorkflowError
from runkon_flow.events import LoopIteration
from runkon_flow.runtime.nodes import dispatch
from runkon_flow.runtime.resume import fast_forward_start
from runkon_flow.runtime.state import ExecutionState

__all__ = [
    "eval_condition",
    "execute_always",
    "execute_do",
    "execute_do_while",
    "execute_if",
    "execute_unless",
    "execute_while",
]


def eval_condition(st: ExecutionState, condition: object) -> bool:
    """`step.marker` → the step's latest result has the marker; `name` → input equals "true" (any case)."""
    kind = getattr(condition, "kind", None)
    if kind == "step_marker":
        step, marker = condition.step, condition.marker  # type: ignore[attr-defined]
        if st.has_marker(step, marker):
            return True
        _warn_if_a_field(st, step, marker)
        return False
    value = st.inputs.get(condition.input)  # type: ignore[attr-defined]
    return value is not None and value.lower() == "true"


def _warn_if_a_field(st: ExecutionState, step: str, marker: str) -> None:
    """`if planner.risk` where `risk` is a FLOW_OUTPUT *field* of `planner` (`"risk": "high"`), not
    one of its markers: the condition is false whatever the value, and nothing said why. Said
    once per run, step and name, as a warning on the step's log."""
    said = (st.workflow_name, step, f"{marker} (condition)")
    if said in st.settings.warned_placeholders:  # said already: a loop's condition is not parsed again
        return
    entry = next((e for e in reversed(st.contexts) if e.step == step), None)
    if entry is None or not entry.structured_output or f'"{marker}"' not in entry.structured_output:
        return
    try:
        fields = json.loads(entry.structured_output)
    except ValueError:
        return
    if not isinstance(fields, dict) or marker in ("markers", "context") or marker not in fields:
        return
    st.settings.warned_placeholders.add(said)
    st.warn(
        f"condition `{step}.{marker}` is false: `{marker}` is a FLOW_OUTPUT field of step '{step}'"
        f" (= {json.dumps(fields[marker], ensure_ascii=False)[:60]}), not one of its markers; a condition"
        f" tests the `markers` list (hint: have `{step}` emit the marker `{marker}`)",
        step,
    )


def execute_if(st: ExecutionState, node: IfNode, iteration: int, path: str) -> None:
    if eval_condition(st, node.condition):
        dispatch.execute_nodes(st, node.body, iteration, f"{path}.body", respect_fail_fast=True)


def execute_unless(st: ExecutionState, node: UnlessNode, iteration: int, path: str) -> None:
    if not eval_condition(st, node.condition):
        dispatch.execute_nodes(st, node.body, iteration, f"{path}.body", respect_fail_fast=True)


def execute_always(st: ExecutionState, node: AlwaysNode, iteration: int, path: str) -> None:
    """A nested `always` just runs its body in sequence (no run-even-after-failure semantics)."""
    dispatch.execute_nodes(st, node.body, iteration, f"{path}.body", respect_fail_fast=False)


def _run_body(st: ExecutionState, body: list, iteration: int, path: str) -> bool:
    """Run a loop/do body; False when the run failed under fail_fast (stop, no error)."""
    for index, child in enumerate(body):
        st.cancellation.error_if_cancelled()
        dispatch.execute_node(st, child, iteration, f"{path}.body.{index}")
        if not st.all_succeeded and st.exec_config.fail_fast:
            return False
    return True


def _stuck(window: deque[frozenset[str]], current: frozenset[str], k: int | None) -> bool:
    if k is None or k <= 0:
        return False
    window.append(current)
    return len(window) == k and all(w == current for w in window)


def execute_while(st: ExecutionState, node: WhileNode, iteration: int, path: str) -> None:
    """Test the marker, check the cap, run the body; `stuck_after` compares marker sets."""
    label = f"while {node.step}.{node.marker}"
    replay_until = fast_forward_start(st.resume_ctx, node.body, node.max_iterations)
    window: deque[frozenset[str]] = deque(maxlen=node.stuck_after or None)
    it = 0
    while True:
        if not st.has_marker(node.step, node.marker):
            return
        if it >= node.max_iterations:
            if node.on_max_iter == "fail":
                st.all_succeeded = False
                raise WorkflowError(f"{label} reached max_iterations ({node.max_iterations})")
            return
        if it >= replay_until and st.event_sinks:
            st.emit(LoopIteration(node_path=path, step=node.step, marker=node.marker, iteration=it))
        if not _run_body(st, node.body, it, path):
            return
        if _stuck(window, st.markers_of(node.step), node.stuck_after):
            st.all_succeeded = False
            raise WorkflowError(f"{label} stuck after {node.stuck_after} iterations with identical markers")
        it += 1


def execute_do_while(st: ExecutionState, node: DoWhileNode, iteration: int, path: str) -> None:
    """Body first, then the marker test; the cap is checked before every iteration."""
    label = f"do {node.step}.{node.marker}"
    window: deque[frozenset[str]] = deque(maxlen=node.stuck_after or None)
    it = 0
    while True:
        if it >= node.max_iterations:
            if node.on_max_iter == "fail":
                st.all_succeeded = False
                raise WorkflowError(f"{label} reached max_iterations ({node.max_iterations})")
            return
        if st.event_sinks:
            st.emit(LoopIteration(node_path=path, step=node.step, marker=node.marker, iteration=it))
        if not _run_body(st, node.body, it, path):
            return
        current = st.markers_of(node.step)
        if _stuck(window, current, node.stuck_after):
            st.all_succeeded = False
            raise WorkflowError(f"{label} stuck after {node.stuck_after} iterations with identical markers")
        if node.marker not in current:
            return
        it += 1


def execute_do(st: ExecutionState, node: DoNode, iteration: int, path: str) -> None:
    """A sequential group whose `output`/`with` apply to the calls inside (inner `with` first)."""
    saved_output, saved_with = st.block_output, st.block_with
    if node.output is not None:
        st.block_output = node.output
    if node.with_:
        st.block_with = [*node.with_, *saved_with]
    try:
        _run_body(st, node.body, iteration, path)
    finally:
        st.block_output, st.block_with = saved_output, saved_with
