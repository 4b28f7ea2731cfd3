"""Host-registry validation (engine.md §13, dsl.md §9.3): can this engine run this workflow?

Checked before every run and by `FlowEngine.validate`: cycle/depth of workflow references (with a
resolver), an executor for every call and parallel call, a provider for every foreach, a gate
resolver for every non-quality gate type, and — recursively, once per name — every sub-workflow
called with `call workflow`. All problems are collected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
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
    UnlessNode,
    WhileNode,
    WorkflowDef,
    node_paths,
)
from runkon_flow.dsl.references import find_workflow_cycle, reference_node
from runkon_flow.errors import Problem, SourceLocation, in_sub_workflow
from runkon_flow.humanize import did_you_mean
from runkon_flow.plugins.protocols import WorkflowResolver
from runkon_flow.plugins.registries import ActionRegistry, GateResolverRegistry, ItemProviderRegistry

__all__ = ["validate_workflow_for_host"]

_BLOCKS = (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode)


def _at(node: Any) -> SourceLocation:
    """Where `node` is (the file is the caller's to fill in: the engine validates definitions)."""
    return SourceLocation(None, node.line, node.column)


def _gate_hint(gate_type: str, types: list[str]) -> str | None:
    """What a misspelt gate type could have been: the closest registered type and every one
    (`quality_gate` is built in). With no resolver registered, how to register one — the
    reference resolver a person answers through `GateApprovals` (an engine built by hand has
    none; a `Workspace` registers it for the four reference types)."""
    if not types:
        return (
            f"register a resolver for it via FlowEngineBuilder.gate_resolver(): ApprovalStoreResolver"
            f"('{gate_type}') waits for a decision made through GateApprovals"
        )
    known = sorted({*types, "quality_gate"})
    close = did_you_mean(gate_type, known)
    listed = f"the gate types are: {', '.join(known)}"
    return f"{close} {listed}" if close else listed


class _HostValidator:
    def __init__(
        self,
        actions: ActionRegistry,
        providers: ItemProviderRegistry,
        gates: GateResolverRegistry,
        resolver: WorkflowResolver | None,
    ) -> None:
        self.actions = actions
        self.providers = providers
        self.gates = gates
        self.resolver = resolver
        self.seen_workflows: set[str] = set()

    def nodes(self, nodes: Iterable[Any], out: list[Problem], paths: dict[int, str], owner: str) -> None:
        """Problems of `nodes` (of workflow `owner`), each at its node (`paths`: the workflow's
        `node_paths`)."""

        def problem(message: str, hint: str | None, node: Any) -> Problem:
            return Problem(message, hint, _at(node), paths.get(id(node)))

        for node in nodes:
            if isinstance(node, CallNode):
                label = node.agent.label()
                if not self.actions.has_action(label):
                    message = f"call '{node.step_key()}': no registered ActionExecutor for '{label}'"
                    out.append(problem(message, self.actions.missing_hint(label), node))
            elif isinstance(node, ParallelNode):
                for agent in node.calls:
                    label = agent.label()
                    if not self.actions.has_action(label):
                        message = (
                            f"parallel call '{agent.step_key()}': no registered ActionExecutor for '{label}'"
                        )
                        out.append(problem(message, self.actions.missing_hint(label), agent))
            elif isinstance(node, ForEachNode):
                if self.providers.get(node.over) is None:
                    message = f"foreach '{node.name}': no registered ItemProvider for '{node.over}'"
                    hint = (
                        f"register a provider with name '{node.over}' via FlowEngineBuilder.item_provider()"
                    )
                    out.append(problem(message, hint, node))
            elif isinstance(node, GateNode):
                if not node.is_quality_gate and not self.gates.has_type(node.gate_type):
                    message = f"gate '{node.name}': no registered GateResolver for type '{node.gate_type}'"
                    out.append(problem(message, _gate_hint(node.gate_type, self.gates.types()), node))
            elif isinstance(node, CallWorkflowNode):
                self.sub_workflow(node.workflow, out, problem("", None, node), owner)
            elif isinstance(node, _BLOCKS):
                self.nodes(node.body, out, paths, owner)

    def sub_workflow(self, name: str, out: list[Problem], at: Problem, caller: str) -> None:
        """A sub-workflow's problems belong to the `call workflow` that brings them in (`at`: its
        place and node path) and are placed where they are written — in the sub-workflow's file,
        the one to edit, with the call's line named — as the parser's notes of sub-workflows are
        (`dsl.validation.sub_workflow_notes`). A sub-workflow without a file (an in-memory
        resolver's) is placed at the call."""
        if self.resolver is None or name in self.seen_workflows:
            return
        self.seen_workflows.add(name)
        try:
            child = self.resolver.resolve(name)
        except Exception as exc:
            message = f"call workflow '{name}': sub-workflow could not be loaded: {exc}"
            out.append(dataclasses.replace(at, message=message))
            return
        inner: list[Problem] = []
        self.nodes([*child.body, *child.always], inner, node_paths(child), name)
        for p in inner:
            if p.location.file is not None:  # a deeper sub-workflow's, already placed in its file
                where, message = p.location, p.message
            elif child.source_path:
                where = dataclasses.replace(p.location, file=child.source_path)
                message = in_sub_workflow(name, caller, p.message, at.location.line)
            else:
                where, message = at.location, in_sub_workflow(name, caller, p.message)
            out.append(dataclasses.replace(at, message=message, hint=p.hint, location=where))


def validate_workflow_for_host(
    definition: WorkflowDef,
    actions: ActionRegistry,
    providers: ItemProviderRegistry,
    gates: GateResolverRegistry,
    resolver: WorkflowResolver | None,
) -> list[Problem]:
    """Every problem that would stop this host from running `definition` (empty list = fine)."""
    problems: list[Problem] = []
    paths = node_paths(definition)
    if resolver is not None:
        error = find_workflow_cycle(definition.name, resolver, root=definition)
        if error is not None:  # at the reference that starts the chain
            node = reference_node(definition, error.chain[1]) if len(error.chain) > 1 else None
            at = _at(node if node is not None else definition)
            problems.append(Problem(str(error), None, at, paths.get(id(node))))
    validator = _HostValidator(actions, providers, gates, resolver)
    validator.seen_workflows.add(definition.name)
    validator.nodes([*definition.body, *definition.always], problems, paths, definition.name)
    return problems
