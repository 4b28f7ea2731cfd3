"""`if` / `unless` and condition syntax (dsl.md §6.3, §7.1)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import BoolInputCondition, CallNode, IfNode, StepMarkerCondition, UnlessNode

from .wf_testing import body_error, only


def test_if_with_a_step_marker_condition() -> None:
    node = only("if verify.has_failures { call fix call verify }")
    assert isinstance(node, IfNode)
    assert node.condition == StepMarkerCondition(step="verify", marker="has_failures")
    assert [n.agent.value for n in node.body] == ["fix", "verify"]


def test_if_with_a_bare_input_name() -> None:
    node = only("if qualify { call workflow qualify-ticket }")
    assert node.condition == BoolInputCondition(input="qualify")
    assert node.to_json()["condition"] == {"kind": "bool_input", "input": "qualify"}


def test_unless_has_the_same_shape() -> None:
    node = only("unless push-and-pr.no_changes { call a }")
    assert isinstance(node, UnlessNode)
    assert node.to_json() == {
        "type": "unless",
        "condition": {"kind": "step_marker", "step": "push-and-pr", "marker": "no_changes"},
        "body": [node.body[0].to_json()],
    }


def test_condition_parts_may_contain_hyphens_and_be_soft_keywords() -> None:
    node = only("if sync-with-base.has-conflicts { }")
    assert node.condition == StepMarkerCondition(step="sync-with-base", marker="has-conflicts")
    assert only("if gate.call {}").condition == StepMarkerCondition(step="gate", marker="call")
    assert only("unless inputs {}").condition == BoolInputCondition(input="inputs")


def test_the_dot_may_be_surrounded_by_whitespace() -> None:
    assert only("if a . b {}").condition == StepMarkerCondition(step="a", marker="b")


def test_an_empty_body_is_allowed() -> None:
    assert only("if a.b {}").body == []


def test_options_at_the_top_of_the_body_are_accepted_and_discarded() -> None:
    node = only('if a.b { max_iterations = 3 if = "x.y" workflow = w call c }')
    assert node == only("if a.b { call c }")


def test_nested_blocks_and_positions() -> None:
    node = only("if a.b {\n  unless c.d {\n    call e\n  }\n}")
    inner = node.body[0]
    assert isinstance(inner, UnlessNode)
    assert (inner.line, inner.column) == (3, 3)
    assert isinstance(inner.body[0], CallNode)
    assert (inner.body[0].line, inner.body[0].column) == (4, 5)
    assert (node.condition.line, node.condition.column) == (2, 4)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("if { call a }", "expected a condition (`step.marker` or an input name) after `if`, found `{`"),
        (
            "unless 5 { }",
            "expected a condition (`step.marker` or an input name) after `unless`, found integer `5`",
        ),
        ("if a. { }", "expected a marker name after `a.`, found `{`"),
        ("if a.b.c { }", "expected `{` after the `if` condition, found `.`"),
        (
            'if "a.b" { }',
            'expected a condition (`step.marker` or an input name) after `if`, found string "a.b"',
        ),
        ("if a.b call c", "expected `{` after the `if` condition, found keyword `call`"),
        ("if a.b { call c } else { call d }", "expected `meta`, `inputs`, `always`, a step"),
        (
            "if a.b { x }",
            "expected a step (call, if, unless, while, do, parallel, gate, always, script, foreach)",
        ),
        ("if not a.b { }", "expected `{` after the `if` condition, found identifier `a`"),
        ("if a == b { }", "expected `{` after the `if` condition, found `=`"),
    ],
)
def test_malformed_conditions(source: str, expected: str) -> None:
    assert body_error(f"  {source}").message.startswith(expected)
