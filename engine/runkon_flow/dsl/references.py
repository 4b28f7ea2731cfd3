"""Cross-workflow references: cycle and nesting-depth detection (dsl.md §10).

A workflow that (directly or through others) calls itself would recurse until the runtime depth
limit stops it, and a chain that is too deep fails at run time; both are cheaper to report before
anything runs. Load failures are *not* reported here — semantic validation (§9.1) does that — so a
missing child is simply a leaf.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from runkon_flow.dsl.ast import MAX_WORKFLOW_DEPTH, CallWorkflowNode, ForEachNode, WorkflowDef, walk
from runkon_flow.errors import FlowError, in_sub_workflow

__all__ = [
    "MAX_WORKFLOW_DEPTH",
    "WorkflowReferenceError",
    "bringing_steps",
    "called_workflows",
    "detect_workflow_cycles",
    "find_workflow_cycle",
    "reference_node",
    "said_in_sub_workflow",
    "workflow_references",
]


class WorkflowReferenceError(FlowError):
    """A reference cycle or a too-deep chain. `str()` is exactly the spec's message."""

    def __init__(self, kind: Literal["cycle", "depth"], chain: list[str]) -> None:
        self.kind = kind
        self.chain = list(chain)
        if kind == "cycle":
            self.message = f"Circular workflow reference: {' -> '.join(chain)}"
        else:
            self.message = (
                f"Workflow nesting depth exceeds maximum of {MAX_WORKFLOW_DEPTH}: {' -> '.join(chain)}"
            )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def workflow_references(wf: WorkflowDef) -> list[str]:
    """Targets of every `call workflow` and `foreach … workflow =`, de-duplicated and sorted (§10.1)."""
    return wf.workflow_refs()


def called_workflows(root: WorkflowDef, loader: Callable[[str], WorkflowDef] | Any) -> list[WorkflowDef]:
    """Every workflow `root` runs as a sub-workflow (`call workflow`, `foreach … workflow =`), directly
    or through others, once each, in the order first reached; `root` itself and the ones that do not
    load (semantic validation reports those) are left out."""
    resolve = loader.resolve if hasattr(loader, "resolve") else loader
    seen = {root.name}
    found: list[WorkflowDef] = []
    pending = list(workflow_references(root))
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        try:
            child = resolve(name)
        except Exception:  # a load failure is §9.1's business
            continue
        found.append(child)
        pending.extend(workflow_references(child))
    return found


def bringing_steps(wf: WorkflowDef, children: list[WorkflowDef]) -> dict[str, CallWorkflowNode | ForEachNode]:
    """Each of `children` (`called_workflows(wf, …)`) by name → the step of `wf` that brings it in
    (`call workflow`, `foreach … workflow =`), directly or through others, the first such step in
    `wf`'s order: a problem found in a sub-workflow belongs to that step, and is said with its line
    (`errors.in_sub_workflow`)."""
    by_name = {child.name: child for child in children}
    brought: dict[str, CallWorkflowNode | ForEachNode] = {}
    for node in walk([*wf.body, *wf.always]):
        if not isinstance(node, (CallWorkflowNode, ForEachNode)) or not node.workflow:
            continue
        pending = [node.workflow]
        while pending:
            name = pending.pop(0)
            if name in brought or name not in by_name:
                continue
            brought[name] = node
            pending.extend(by_name[name].workflow_refs())
    return brought


def said_in_sub_workflow(
    wf: WorkflowDef, child: str, message: str, bringing: Mapping[str, CallWorkflowNode | ForEachNode]
) -> str:
    """`errors.in_sub_workflow` for a problem of sub-workflow `child` of `wf`, with the line of the
    step of `wf` that brings it in (`bringing_steps`): `(called at line 3)`, `(run by foreach at
    line 4)`."""
    step = bringing.get(child)
    line = step.line if step is not None else None
    return in_sub_workflow(child, wf.name, message, line, by_foreach=isinstance(step, ForEachNode))


def reference_node(wf: WorkflowDef, name: str) -> CallWorkflowNode | ForEachNode | None:
    """The first node of `wf` that refers to workflow `name` — where to point a cycle error."""
    for node in walk(list(wf.body) + list(wf.always)):
        if isinstance(node, (CallWorkflowNode, ForEachNode)) and node.workflow == name:
            return node
    return None


def find_workflow_cycle(
    root_name: str,
    loader: Callable[[str], WorkflowDef] | Any,
    *,
    root: WorkflowDef | None = None,
) -> WorkflowReferenceError | None:
    """Depth-first search of §10.2 from `root_name`; the first cycle or depth error, else None.

    `loader` is a callable `name -> WorkflowDef` or anything with `resolve(name)`. When `root` is
    given it is served for its own name (so an unsaved edit is checked, not the file on disk).
    """
    resolve = loader.resolve if hasattr(loader, "resolve") else loader
    cache: dict[str, WorkflowDef | None] = {}
    if root is not None:
        cache[root_name] = root

    def load(name: str) -> WorkflowDef | None:
        if name not in cache:
            try:
                cache[name] = resolve(name)
            except Exception:  # a load failure is §9.1's business: treat it as a leaf
                cache[name] = None
        return cache[name]

    stack: list[str] = []

    def visit(name: str) -> WorkflowReferenceError | None:
        if name in stack:
            return WorkflowReferenceError("cycle", [*stack, name])
        if len(stack) >= MAX_WORKFLOW_DEPTH:
            return WorkflowReferenceError("depth", list(stack))
        stack.append(name)
        try:
            wf = load(name)
            if wf is None:
                return None
            for ref in workflow_references(wf):
                error = visit(ref)
                if error is not None:
                    return error
            return None
        finally:
            stack.pop()

    return visit(root_name)


def detect_workflow_cycles(
    root_name: str,
    loader: Callable[[str], WorkflowDef] | Any,
    *,
    root: WorkflowDef | None = None,
) -> None:
    """Raise `WorkflowReferenceError` for the first cycle or over-deep chain from `root_name`."""
    error = find_workflow_cycle(root_name, loader, root=root)
    if error is not None:
        raise error
