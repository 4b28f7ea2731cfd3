"""`parallel` — block options, per-call options and per-call `if` (dsl.md §4 rule 4, §6.7)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import AgentRef, ParallelNode

from .wf_testing import body_error, only, parse


def parallel(source: str) -> ParallelNode:
    node = only(source)
    assert isinstance(node, ParallelNode)
    return node


def test_a_minimal_parallel_has_every_default() -> None:
    assert parallel("parallel { call a }").to_json() == {
        "type": "parallel",
        "fail_fast": True,
        "min_success": None,
        "calls": [{"kind": "name", "value": "a"}],
        "output": None,
        "call_outputs": {},
        "with": [],
        "call_with": {},
        "call_if": {},
        "call_retries": {},
    }


def test_block_and_per_call_options() -> None:
    node = parallel(
        """parallel {
             fail_fast   = false
             min_success = 2
             output      = "report"
             with        = ["house-style"]
             call lint-check   { retries = 1 }
             call type-check
             call doc-check    { if = "scan.has_docs" output = "doc-report" with = [extra] }
             call "agents/sec.md" { if = scan.has_code  retries = "3" with = [] }
           }"""
    )
    assert node.fail_fast is False
    assert node.min_success == 2
    assert node.output == "report"
    assert node.with_ == ["house-style"]
    assert node.calls == [
        AgentRef(kind="name", value="lint-check"),
        AgentRef(kind="name", value="type-check"),
        AgentRef(kind="name", value="doc-check"),
        AgentRef(kind="path", value="agents/sec.md"),
    ]
    assert node.call_outputs == {"2": "doc-report"}
    assert node.call_with == {"2": ["extra"], "3": []}
    assert node.call_if == {"2": ("scan", "has_docs"), "3": ("scan", "has_code")}
    assert node.call_retries == {"0": 1, "3": 3}
    assert node.to_json()["call_if"] == {"2": ["scan", "has_docs"], "3": ["scan", "has_code"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ('"true"', True),
        ("false", False),
        ("True", False),
        ("yes", False),
        ("1", False),
        ('""', False),
    ],
)
def test_fail_fast_is_true_only_for_the_exact_word_true(value: str, expected: bool) -> None:
    assert parallel(f"parallel {{ fail_fast = {value} call a }}").fail_fast is expected


def test_min_success_is_not_checked_against_the_number_of_calls() -> None:
    assert parallel("parallel { min_success = 9 call a }").min_success == 9


def test_the_per_call_if_splits_at_the_first_dot() -> None:
    assert parallel('parallel { call a { if = "s.m.x" } }').call_if == {"0": ("s", "m.x")}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('parallel { min_success = "two" call a }', "Invalid min_success: invalid digit found in string"),
        (
            'parallel { call a call b { if = "ready" } }',
            "if value `ready` must be in the form `step.marker` (no dot found)",
        ),
        (
            "parallel { call a { if = ready } }",
            "if value `ready` must be in the form `step.marker` (no dot found)",
        ),
        (
            'parallel { call a call b { retries = "x" } }',
            "parallel call 1: invalid retries: invalid digit found in string",
        ),
        (
            "parallel { call a { with = { a = b } } }",
            "parallel call 0: `with` must be a list of values, not a map",
        ),
        (
            "parallel { call a { output = [x] } }",
            "parallel call 0: `output` must be a single value, not a list",
        ),
        ("parallel { call a { if = [a.b] } }", "parallel call 0: `if` must be a single value, not a list"),
        ("parallel { fail_fast = [true] call a }", "`fail_fast` must be a single value, not a list"),
        ("parallel { }", "parallel block must contain at least one call"),
        ("parallel { output = x }", "parallel block must contain at least one call"),
        (
            "parallel { script s { run = x } }",
            "expected `call` in the `parallel` block, found keyword `script`",
        ),
        (
            "parallel { call a retries = 1 }",
            "expected `call` or `}` in the `parallel` block, found identifier `retries`",
        ),
        (
            "parallel { call a if a.b { } }",
            "expected `call` or `}` in the `parallel` block, found keyword `if`",
        ),
        ("parallel call a", "expected `{` after `parallel`, found keyword `call`"),
        ('parallel { call "../x.md" }', "agent path contains parent-directory traversal (..): ../x.md"),
    ],
)
def test_malformed_parallel_blocks(source: str, expected: str) -> None:
    assert body_error(f"  {source}").message == expected


def test_an_empty_parallel_is_reported_at_the_keyword() -> None:
    error = body_error("  parallel {\n  }")
    assert (error.line, error.column) == (2, 3)


def test_the_per_call_if_error_points_at_the_value() -> None:
    error = body_error('  parallel {\n    call a { if = "ready" }\n  }')
    assert (error.line, error.column) == (3, 19)


def test_other_per_call_keys_are_ignored() -> None:
    assert parallel('parallel { call a { as = "bot" on_fail = continue timeout = "5m" } }') == parallel(
        "parallel { call a }"
    )


def test_parallel_calls_count_toward_total_nodes() -> None:
    assert parse("workflow w { parallel { call a call b call c } }").total_nodes() == 4
