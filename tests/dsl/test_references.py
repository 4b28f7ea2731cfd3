"""Cycle and nesting-depth detection across workflows (dsl.md §10)."""

from __future__ import annotations

import itertools

import pytest
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.references import (
    WorkflowReferenceError,
    detect_workflow_cycles,
    find_workflow_cycle,
    reference_node,
    workflow_references,
)
from runkon_flow.errors import WorkflowNotFound
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver


def calling(name: str, *children: str, foreach: tuple[str, ...] = ()) -> WorkflowDef:
    body = " ".join(f"call workflow {c}" for c in children)
    body += " ".join(
        f" foreach f{i} {{ over = x max_parallel = 1 workflow = {c} }}" for i, c in enumerate(foreach)
    )
    return parse_workflow(f"workflow {name} {{ {body} }}", f"{name}.wf")


def chain(length: int) -> InMemoryWorkflowResolver:
    """w1 -> w2 -> … -> w<length>."""
    names = [f"w{i}" for i in range(1, length + 1)]
    return InMemoryWorkflowResolver(
        [calling(n, nxt) for n, nxt in itertools.pairwise(names)] + [calling(names[-1])]
    )


def test_references_include_foreach_children_and_nested_calls_sorted_and_unique() -> None:
    wf = parse_workflow(
        """workflow root {
             call workflow zeta
             if a.b { do { call workflow alpha } }
             always { foreach f { over = x max_parallel = 1 workflow = mid } call workflow alpha }
           }"""
    )
    assert workflow_references(wf) == ["alpha", "mid", "zeta"]


def test_a_chain_of_five_workflows_is_allowed() -> None:
    assert find_workflow_cycle("w1", chain(5)) is None
    detect_workflow_cycles("w1", chain(5))


def test_a_sixth_level_exceeds_the_depth_limit_and_the_message_lists_the_first_five() -> None:
    with pytest.raises(WorkflowReferenceError) as info:
        detect_workflow_cycles("w1", chain(6))
    assert str(info.value) == "Workflow nesting depth exceeds maximum of 5: w1 -> w2 -> w3 -> w4 -> w5"
    assert info.value.kind == "depth"


def test_the_depth_limit_applies_even_when_the_sixth_workflow_does_not_exist() -> None:
    resolver = chain(5)
    resolver.add(calling("w5", "does-not-exist"))
    error = find_workflow_cycle("w1", resolver)
    assert error is not None and error.kind == "depth"


def test_a_self_reference_is_a_cycle() -> None:
    resolver = InMemoryWorkflowResolver([calling("a", "a")])
    with pytest.raises(WorkflowReferenceError) as info:
        detect_workflow_cycles("a", resolver)
    assert str(info.value) == "Circular workflow reference: a -> a"
    assert info.value.kind == "cycle" and info.value.chain == ["a", "a"]


def test_an_indirect_cycle_names_the_repeated_workflow_at_both_ends() -> None:
    resolver = InMemoryWorkflowResolver([calling("a", "b"), calling("b", "c"), calling("c", "a")])
    error = find_workflow_cycle("a", resolver)
    assert error is not None and str(error) == "Circular workflow reference: a -> b -> c -> a"


def test_a_cycle_through_a_foreach_child_is_found() -> None:
    resolver = InMemoryWorkflowResolver([calling("a", foreach=("b",)), calling("b", "a")])
    assert str(find_workflow_cycle("a", resolver)) == "Circular workflow reference: a -> b -> a"


def test_a_diamond_is_not_a_cycle() -> None:
    resolver = InMemoryWorkflowResolver(
        [calling("a", "b", "c"), calling("b", "d"), calling("c", "d"), calling("d")]
    )
    assert find_workflow_cycle("a", resolver) is None


def test_references_are_visited_in_sorted_order_and_the_first_error_wins() -> None:
    resolver = InMemoryWorkflowResolver(
        [calling("root", "zz", "aa"), calling("aa", "aa"), calling("zz", "zz")]
    )
    assert str(find_workflow_cycle("root", resolver)) == "Circular workflow reference: root -> aa -> aa"


def test_workflows_that_fail_to_load_are_leaves_not_errors() -> None:
    def loader(name: str) -> WorkflowDef:
        if name == "root":
            return calling("root", "broken", "missing")
        if name == "broken":
            raise ValueError("Parse error in broken.wf: nope")
        raise WorkflowNotFound(name)

    assert find_workflow_cycle("root", loader) is None


def test_the_root_definition_given_is_served_for_its_own_name() -> None:
    """An edited (unsaved) root is checked, not the stale copy the loader has."""
    resolver = InMemoryWorkflowResolver([calling("a"), calling("b", "a")])
    edited = calling("a", "b")
    assert find_workflow_cycle("a", resolver) is None
    assert str(find_workflow_cycle("a", resolver, root=edited)) == "Circular workflow reference: a -> b -> a"


def test_a_plain_callable_is_accepted_as_loader() -> None:
    resolver = InMemoryWorkflowResolver([calling("a", "a")])
    assert find_workflow_cycle("a", resolver.resolve) is not None


def test_reference_node_points_at_the_first_node_naming_the_child() -> None:
    wf = parse_workflow(
        "workflow a {\n  call x\n  if x.y {\n    call workflow b\n  }\n  call workflow b\n}\n"
    )
    node = reference_node(wf, "b")
    assert node is not None and (node.line, node.column) == (4, 5)
    assert reference_node(wf, "zzz") is None
