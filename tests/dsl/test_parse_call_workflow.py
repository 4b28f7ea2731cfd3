"""`call workflow` — sub-workflow calls, the `inputs { … }` sub-block and options (dsl.md §4 rule 5, §6.2)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import AgentRef, CallWorkflowNode, OnFailAgent, OnFailContinue

from .wf_testing import body_error, only


def call_workflow(source: str) -> CallWorkflowNode:
    node = only(source)
    assert isinstance(node, CallWorkflowNode)
    return node


def test_a_plain_call_workflow_has_every_default() -> None:
    node = call_workflow("call workflow lint-fix")
    assert node.to_json() == {
        "type": "call_workflow",
        "workflow": "lint-fix",
        "inputs": {},
        "retries": 0,
        "on_fail": None,
        "as_identity": None,
    }
    assert node.step_key() == "lint-fix"


@pytest.mark.parametrize("name", ["gate", "workflow", "inputs", "call"])
def test_the_workflow_name_may_be_a_soft_keyword(name: str) -> None:
    assert call_workflow(f"call workflow {name}").workflow == name


def test_call_followed_by_workflow_is_always_a_sub_workflow_call() -> None:
    error = body_error('  call workflow "child"')
    assert error.message == 'expected a workflow name after `call workflow`, found string "child"'


def test_inputs_and_options() -> None:
    node = call_workflow(
        """call workflow publish-docs {
             retries = 1
             as      = "docs-bot"
             inputs {
               version = "{{release_version}}"
               channel = beta
               count   = 3
             }
             on_fail = continue
           }"""
    )
    assert node.inputs == {"version": "{{release_version}}", "channel": "beta", "count": "3"}
    assert (node.retries, node.as_identity, node.on_fail) == (1, "docs-bot", OnFailContinue())


@pytest.mark.parametrize(
    "block",
    [
        'inputs { a = "1" } retries = 2',
        'retries = 2 inputs { a = "1" }',
        'as = x inputs { a = "1" } retries = 2',
    ],
)
def test_the_inputs_sub_block_may_sit_anywhere_among_the_pairs(block: str) -> None:
    node = call_workflow(f"call workflow c {{ {block} }}")
    assert node.inputs == {"a": "1"}
    assert node.retries == 2


def test_pairs_after_the_inputs_block_override_earlier_ones() -> None:
    assert call_workflow("call workflow c { retries = 1 inputs {} retries = 3 }").retries == 3


def test_inputs_with_an_equals_sign_is_silently_ignored() -> None:
    assert call_workflow('call workflow c { inputs = { a = "1" } }').inputs == {}


def test_input_keys_may_be_the_key_keywords() -> None:
    node = call_workflow("call workflow c { inputs { if = a workflow = b required = c } }")
    assert node.inputs == {"if": "a", "workflow": "b", "required": "c"}


def test_a_second_inputs_block_is_an_error() -> None:
    error = body_error("  call workflow c { inputs { a = b } inputs { c = d } }")
    assert error.message == "`call workflow c` may contain only one `inputs { … }` block"
    assert (error.line, error.column) == (2, 38)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("inputs { a = [x] }", "`inputs`: map values must be single values, not a list"),
        ("inputs { a = { b = c } }", "`inputs`: map values must be single values, not a map"),
        ('inputs { "a" = b }', 'expected `key = value` or `}` in the `inputs` map, found string "a"'),
        ("inputs { gate = b }", "expected `key = value` or `}` in the `inputs` map, found keyword `gate`"),
        ("retries = [1]", "`retries` must be a single value, not a list"),
        ('retries = "x"', "invalid retries: invalid digit found in string"),
    ],
)
def test_malformed_call_workflow_blocks(block: str, expected: str) -> None:
    assert body_error(f"  call workflow c {{ {block} }}").message == expected


def test_on_fail_agent_and_unknown_keys() -> None:
    node = call_workflow("call workflow c { on_fail = rescue output = ignored with = [x] }")
    assert node.on_fail == OnFailAgent(value=AgentRef(kind="name", value="rescue"))


def test_a_call_workflow_inside_parallel_is_refused() -> None:
    error = body_error("  parallel { call a call workflow c }")
    assert error.message == "`call workflow` is not allowed inside `parallel`"
    assert (error.line, error.column) == (2, 26)
