"""The dependency tree as data: a WorkflowDef turned into labelled nodes addressed by node path.

Pure (no Textual) so the shape of the tree and the status roll-up are unit-tested on their own.
Paths follow the engine's `node_path` (`body.3`, `body.3.body.0`, `body.2.calls.1`, `always.0`),
so an event lands on its node without any lookup table. `call workflow` nodes carry the child
workflow's tree as their children, scoped by the chain of call paths that leads to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    StepMarkerCondition,
    UnlessNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.humanize import display_line, format_duration
from runkon_flow.observe.estimates import Estimates, people_wait

from runkon_tui.run_view import RunState, RunView, StepView
from runkon_tui.status import FAILED, TERMINAL, glyph

MAX_CHILD_DEPTH = 5

LEAF_KINDS = frozenset({"call", "call_workflow", "script", "gate", "foreach", "parallel_branch"})

Resolver = Callable[[str], WorkflowDef | None]


@dataclass
class NodeSpec:
    """One node of the dependency tree."""

    path: str
    kind: str
    label: str
    scope: tuple[str, ...] = ()
    children: list[NodeSpec] = field(default_factory=list)
    step_key: str | None = None
    workflow: str | None = None
    max_iterations: int | None = None
    min_success: int | None = None  # parallel: branches that must succeed (None: all)
    line: int | None = None
    note: str | None = None  # why a child workflow is not expanded

    @property
    def uid(self) -> str:
        """Unique across child-workflow scopes (the same path repeats inside each child)."""
        return "/".join((*self.scope, self.path))

    def walk(self) -> list[NodeSpec]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def _condition(cond: Any) -> str:
    if isinstance(cond, StepMarkerCondition):
        return f"{cond.step}.{cond.marker}"
    return str(getattr(cond, "input", cond))


def build_tree(
    wf: WorkflowDef,
    resolve: Resolver | None = None,
    *,
    scope: tuple[str, ...] = (),
    chain: tuple[str, ...] = (),
) -> list[NodeSpec]:
    """The tree of `wf`: body nodes, then the top-level always block as one group."""
    chain = (*chain, wf.name)
    nodes = [_node(n, f"body.{i}", resolve, scope, chain) for i, n in enumerate(wf.body)]
    if wf.always:
        group = NodeSpec(path="always", kind="always_group", label="always", scope=scope)
        group.children = [_node(n, f"always.{i}", resolve, scope, chain) for i, n in enumerate(wf.always)]
        nodes.append(group)
    return nodes


def _body(
    nodes: list[Any], base: str, resolve: Resolver | None, scope: tuple[str, ...], chain: tuple[str, ...]
):
    return [_node(n, f"{base}.body.{i}", resolve, scope, chain) for i, n in enumerate(nodes)]


def _node(
    node: Any, path: str, resolve: Resolver | None, scope: tuple[str, ...], chain: tuple[str, ...]
) -> NodeSpec:
    line = getattr(node, "line", None)
    if isinstance(node, CallNode):
        return NodeSpec(path, "call", node.agent.label(), scope, step_key=node.step_key(), line=line)
    if isinstance(node, ScriptNode):
        return NodeSpec(path, "script", f"script {node.name}", scope, step_key=node.name, line=line)
    if isinstance(node, GateNode):
        return NodeSpec(path, "gate", f"gate {node.name}", scope, step_key=node.name, line=line)
    if isinstance(node, ForEachNode):
        spec = NodeSpec(path, "foreach", f"foreach {node.name}", scope, step_key=node.step_key(), line=line)
        spec.workflow = node.workflow
        return spec
    if isinstance(node, CallWorkflowNode):
        spec = NodeSpec(path, "call_workflow", f"workflow {node.workflow}", scope, step_key=node.workflow)
        spec.workflow = node.workflow
        spec.line = line
        _expand_child(spec, resolve, scope, chain)
        return spec
    if isinstance(node, ParallelNode):
        spec = NodeSpec(path, "parallel", "parallel", scope, line=line)
        spec.min_success = node.min_success
        spec.children = [
            NodeSpec(f"{path}.calls.{i}", "parallel_branch", ref.label(), scope, step_key=ref.step_key())
            for i, ref in enumerate(node.calls)
        ]
        return spec
    if isinstance(node, IfNode):
        spec = NodeSpec(path, "if", f"if {_condition(node.condition)}", scope, line=line)
    elif isinstance(node, UnlessNode):
        spec = NodeSpec(path, "unless", f"unless {_condition(node.condition)}", scope, line=line)
    elif isinstance(node, WhileNode):
        spec = NodeSpec(path, "while", f"while {node.step}.{node.marker}", scope, line=line)
        spec.max_iterations = node.max_iterations
    elif isinstance(node, DoWhileNode):
        spec = NodeSpec(path, "do_while", f"do … while {node.step}.{node.marker}", scope, line=line)
        spec.max_iterations = node.max_iterations
    elif isinstance(node, DoNode):
        spec = NodeSpec(path, "do", "do", scope, line=line)
    elif isinstance(node, AlwaysNode):
        spec = NodeSpec(path, "always", "always", scope, line=line)
    else:  # a node kind this dashboard does not know yet: show it, never crash
        spec = NodeSpec(path, str(getattr(node, "type", "node")), str(getattr(node, "type", "node")), scope)
        return spec
    spec.children = _body(node.body, path, resolve, scope, chain)
    return spec


def _expand_child(
    spec: NodeSpec, resolve: Resolver | None, scope: tuple[str, ...], chain: tuple[str, ...]
) -> None:
    if resolve is None or spec.workflow is None:
        return
    if spec.workflow in chain:
        spec.note = "recursive reference"
        return
    if len(chain) >= MAX_CHILD_DEPTH:
        spec.note = "nested too deep"
        return
    child = resolve(spec.workflow)
    if child is None:
        spec.note = "not found"
        return
    spec.children = build_tree(child, resolve, scope=(*scope, spec.path), chain=chain)


# --------------------------------------------------------------------------- status roll-up


def run_for_scope(view: RunView, scope: tuple[str, ...]) -> RunState | None:
    """Follow `call workflow` links from the root run down to the child run of `scope`."""
    run = view.root
    for path in scope:
        if run is None:
            return None
        sv = run.steps.get(path)
        if sv is None:
            return None
        run = _called_run(view, run, sv)
    return run


def _called_run(view: RunView, run: RunState, sv: StepView) -> RunState | None:
    """The child run `run`'s step `sv` started (a `call workflow`'s), by the step's link or, before
    its row says so, by the child's own ChildRunStarted."""
    child_id = sv.child_run_id or (run.child_runs.get(sv.step_id) if sv.step_id else None)
    return view.run(child_id) if child_id else None


def node_status(
    spec: NodeSpec, run: RunState | None, run_finished: bool = False, *, root_completed: bool = False
) -> str:
    """The status a node shows: its step's status for leaves, a roll-up of children for blocks.

    A step that never ran in a run that *completed* was skipped — a branch not taken, a loop
    that never went round: the engine says nothing of it, and `·` (pending) read as "still to
    come" on a finished run. In a run that failed or was cancelled it stays pending: a resume
    may still run it. A block whose every step was skipped is skipped itself. So is a node of a
    workflow call never made (`run` None) once the root run completed (`root_completed`)."""
    if run is None:
        return "skipped" if root_completed else "pending"
    sv = run.steps.get(spec.path)
    if spec.kind in LEAF_KINDS or (sv is not None and spec.kind == "parallel"):
        if sv is not None:
            return sv.status
        if spec.kind != "parallel":
            return "skipped" if run.status == "completed" else "pending"
    statuses = [node_status(c, run, run_finished) for c in spec.children]
    if not statuses:
        return "pending"
    if all(s == "skipped" for s in statuses):
        return "skipped"
    if spec.kind == "parallel" and all(s in TERMINAL for s in statuses):
        return _parallel_outcome(spec, statuses)
    if "waiting" in statuses:
        return "waiting"
    if "running" in statuses:
        return "running"
    if any(s in FAILED for s in statuses):
        return "failed"
    started = [s for s in statuses if s != "pending"]
    if not started:
        return "pending"
    if "cancelled" in statuses:
        return "cancelled"
    if len(started) == len(statuses) and all(s in TERMINAL for s in started):
        return "completed"
    # Some children done, others never reached (a branch not taken, a loop that ended early).
    return "completed" if run_finished else "running"


def _parallel_outcome(spec: NodeSpec, statuses: list[str]) -> str:
    """A finished parallel without a step of its own (as reopened from the store), judged as the
    engine judges it (engine.md §9.5): skipped branches count as successes, and it completed when
    `min_success` (default: every branch) succeeded, failed branches or not."""
    succeeded = sum(1 for s in statuses if s in ("completed", "skipped"))
    required = spec.min_success if spec.min_success is not None else len(statuses)
    return "completed" if succeeded >= required else "failed"


def node_detail(
    spec: NodeSpec, view: RunView, run: RunState | None, now: float, estimates: Estimates | None = None
) -> str:
    """The live text after a node's label: counts, iterations, elapsed time, usage, and for a
    running step its ETA band from past runs or `⚠ over p95` (`observe.estimates`)."""
    if run is None:
        return spec.note or ""
    sv: StepView | None = run.steps.get(spec.path)
    fan = run.fanouts.get(spec.path) if spec.kind == "foreach" else None
    parts: list[str] = []
    if spec.kind == "parallel":
        statuses = [node_status(c, run) for c in spec.children]
        done = sum(1 for s in statuses if s in TERMINAL)
        failed = sum(1 for s in statuses if s in FAILED)
        parts.append(f"({done}/{len(spec.children)}{f' ✗{failed}' if failed else ''})")
    elif spec.kind in ("while", "do_while"):
        iteration = run.loops.get(spec.path)
        if iteration is not None:
            cap = f"/{spec.max_iterations}" if spec.max_iterations is not None else ""
            parts.append(f"iter {iteration + 1}{cap}")
    elif fan is not None:
        # Completed of total (a resume puts cancelled items back to pending: the count of
        # completed ones never goes backwards), then the items that ended otherwise.
        text = f"{fan.count('completed')}/{fan.total}"
        for status in ("failed", "cancelled"):
            if fan.count(status):
                text += f" {glyph(status)}{fan.count(status)}"
        parts.append(text)
    elif spec.kind == "gate":
        gate = next(
            (g for g in view.gates.values() if g.run_id == run.run_id and g.node_path == spec.path), None
        )
        if gate is not None:
            parts.append("awaiting approval")
        elif sv is not None and sv.decision:
            parts.append(sv.decision)
    spent = fan.usage if fan is not None else None
    if sv is not None:
        if sv.attempt:
            parts.append(f"attempt {sv.attempt + 1}")
        if sv.iteration and spec.kind in LEAF_KINDS:
            parts.append(f"#{sv.iteration + 1}")
        elapsed = sv.elapsed(now)
        if sv.reused_from:  # a rerun's reused step did not run here (docs/run-model.md)
            parts.append("reused")
        elif elapsed is not None:
            parts.append(format_duration(elapsed))
        if spec.kind != "foreach":
            spent = sv.usage
    if spent:
        parts.append(spent.short())
    # History keys a called workflow's steps by the call's node path, as the node uid does.
    if estimates is not None and sv is not None and sv.status in ("running", "waiting"):
        note = estimates.running_note(sv, now, fan, spec.uid, waited=people_wait(sv, now, view.runs.get))
        if note:
            parts.append(note)
    if spec.note:
        parts.append(f"({spec.note})")
    # A gate's decision quotes its note, which anyone answering it may have typed: shown safely.
    return display_line(" ".join(parts), None)


def _scoped_runs(view: RunView) -> list[tuple[tuple[str, ...], RunState]]:
    """The root run and its `call workflow` children (as the tree nests them), each with the
    scope its nodes have in the tree; fan-out children are not tree nodes and are left out."""
    out: list[tuple[tuple[str, ...], RunState]] = []
    todo: list[tuple[tuple[str, ...], RunState]] = [((), view.root)] if view.root is not None else []
    while todo:
        scope, run = todo.pop(0)
        out.append((scope, run))
        if len(scope) >= MAX_CHILD_DEPTH:
            continue
        for path, sv in run.steps.items():
            if path in run.fanouts:
                continue
            child = _called_run(view, run, sv)
            if child is not None and child is not run:
                todo.append(((*scope, path), child))
    return out


def hit_target(
    view: RunView, run_id: str, node_path: str | None, items: tuple[tuple[str, str], ...]
) -> tuple[str | None, str | None]:
    """Where a search hit lives on screen: the tree node's uid and, for a hit inside a fan-out
    item, that item's id (the grid shows it). `items` are the hit's (foreach step id, item id)
    pairs, outermost first: the outermost foreach is the tree node, since the tree does not go
    into items. (None, None) when the tree has no node for it."""
    scoped = _scoped_runs(view)
    if items:
        step_id, item_id = items[0]
        for scope, run in scoped:
            key = run.fanout_steps.get(step_id)
            if key is not None:
                fan = run.fanouts.get(key)
                path = (fan.node_path if fan is not None else None) or key
                return "/".join((*scope, path)), item_id
        for scope, run in scoped:  # a step row the model does not know (an older attempt, read back)
            for key, fan in run.fanouts.items():
                if item_id in fan.index:
                    return "/".join((*scope, fan.node_path or key)), item_id
        return None, None
    for scope, run in scoped:
        if run.run_id == run_id and node_path:
            return "/".join((*scope, node_path)), None
    return None, None


def history_key(view: RunView, run_id: str, node_path: str | None) -> str | None:
    """The key `observe.estimates` keeps a step's past durations under: its node path, prefixed
    by the `call workflow` node paths leading to its run (the tree node's uid); None when the run
    is not the root or one of its called workflows."""
    for scope, run in _scoped_runs(view):
        if run.run_id == run_id:
            return "/".join((*scope, node_path or ""))
    return None
