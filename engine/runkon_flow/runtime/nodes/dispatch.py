"""Routes AST nodes to their executors and runs node sequences (engine.md §7.2).

`node_path` is a stable address of a node in the workflow tree ("body.3.body.0", "always.0",
"body.2.calls.1") carried by step events so a UI can map events onto its tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runkon_flow.dsl import ast
from runkon_flow.runtime.state import ExecutionState

__all__ = ["execute_node", "execute_nodes"]

Handler = Callable[[ExecutionState, Any, int, str], None]
_HANDLERS: dict[type, Handler] = {}


def execute_node(st: ExecutionState, node: Any, iteration: int, path: str) -> None:
    handler = _HANDLERS.get(type(node))
    if handler is None:
        raise TypeError(f"no executor for node type {type(node).__name__}")
    handler(st, node, iteration, path)


def execute_nodes(
    st: ExecutionState, nodes: Sequence[Any], iteration: int, prefix: str, respect_fail_fast: bool
) -> None:
    """Run `nodes` in order: stop silently once the run failed (fail_fast), raise on cancel."""
    for index, node in enumerate(nodes):
        if respect_fail_fast and not st.all_succeeded and st.exec_config.fail_fast:
            return
        st.cancellation.error_if_cancelled()
        execute_node(st, node, iteration, _path(prefix, index))


# Node paths (`body.0`) are the same few strings in every child run of a fan-out: built once each.
_PATHS: dict[tuple[str, int], str] = {}


def _path(prefix: str, index: int) -> str:
    path = _PATHS.get((prefix, index))
    if path is None:
        path = f"{prefix}.{index}"
        if len(_PATHS) < 4096:
            _PATHS[(prefix, index)] = path
    return path


def _register() -> None:
    from runkon_flow.runtime.nodes import call, call_workflow, control, foreach, gate, parallel, script

    _HANDLERS.update(
        {
            ast.CallNode: call.execute_call,
            ast.CallWorkflowNode: call_workflow.execute_call_workflow,
            ast.ParallelNode: parallel.execute_parallel,
            ast.ForEachNode: foreach.execute_foreach,
            ast.GateNode: gate.execute_gate,
            ast.ScriptNode: script.execute_script,
            ast.IfNode: control.execute_if,
            ast.UnlessNode: control.execute_unless,
            ast.WhileNode: control.execute_while,
            ast.DoWhileNode: control.execute_do_while,
            ast.DoNode: control.execute_do,
            ast.AlwaysNode: control.execute_always,
        }
    )


_register()
