"""`foreach` — fan a child workflow out over provider items (dsl.md §6.10)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import ForEachNode

from .wf_testing import body_error, only

REQUIRED = "over = tickets max_parallel = 3 workflow = triage-one"


def foreach(source: str) -> ForEachNode:
    node = only(source)
    assert isinstance(node, ForEachNode)
    return node


def test_the_required_keys_alone_give_every_default() -> None:
    node = foreach(f"foreach relabel {{ {REQUIRED} }}")
    assert node.to_json() == {
        "type": "for_each",
        "name": "relabel",
        "over": "tickets",
        "scope": None,
        "filter": {},
        "ordered": False,
        "on_cycle": "fail",
        "max_parallel": 3,
        "workflow": "triage-one",
        "inputs": {},
        "on_child_fail": "continue",
    }
    assert node.step_key() == "foreach:relabel"


def test_every_foreach_option() -> None:
    node = foreach(
        """foreach relabel-open {
             over          = tickets
             scope         = { label = "needs-triage" }
             filter        = { status = failed }
             max_parallel  = 0
             workflow      = "triage-one"
             inputs        = { ticket_id = "{{item.id}}" }
             ordered       = true
             on_cycle      = warn
             on_child_fail = skip_dependents
           }"""
    )
    assert node.scope == {"label": "needs-triage"}
    assert node.filter == {"status": "failed"}
    assert node.inputs == {"ticket_id": "{{item.id}}"}
    assert (node.max_parallel, node.ordered, node.on_cycle, node.on_child_fail) == (
        0,
        True,
        "warn",
        "skip_dependents",
    )


def test_an_empty_scope_map_is_kept_as_a_scope() -> None:
    assert foreach(f"foreach f {{ {REQUIRED} scope = {{}} }}").scope == {}


@pytest.mark.parametrize(("value", "expected"), [("true", True), ('"true"', True), ("false", False)])
def test_ordered_takes_true_or_false(value: str, expected: bool) -> None:
    assert foreach(f"foreach f {{ {REQUIRED} ordered = {value} }}").ordered is expected


@pytest.mark.parametrize("value", ["halt", "continue", "skip_dependents"])
def test_on_child_fail_words(value: str) -> None:
    assert foreach(f"foreach f {{ {REQUIRED} on_child_fail = {value} }}").on_child_fail == value


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("max_parallel = 3 workflow = c", "foreach 'f': missing required key 'over'"),
        ("over = repos workflow = c", "foreach 'f': missing required key 'max_parallel'"),
        ("over = repos max_parallel = 3", "foreach 'f': missing required key 'workflow'"),
        (
            'over = repos max_parallel = "x" workflow = c',
            "foreach 'f': invalid max_parallel: invalid digit found in string",
        ),
        (f"{REQUIRED} scope = x", "foreach 'f': scope must be a map"),
        (f"{REQUIRED} filter = [a]", "foreach 'f': filter must be a map { key = \"value\" }"),
        (f'{REQUIRED} inputs = "x"', "foreach 'f': inputs must be a map { key = \"value\" }"),
        (f"{REQUIRED} ordered = yes", "foreach 'f': invalid ordered value 'yes' (expected: true or false)"),
        (
            f"{REQUIRED} on_cycle = ignore",
            "foreach 'f': invalid on_cycle value 'ignore' (expected: fail, warn)",
        ),
        (
            f"{REQUIRED} on_child_fail = stop",
            "foreach 'f': invalid on_child_fail value 'stop' (expected: halt, continue, skip_dependents)",
        ),
        (
            "over = [a] max_parallel = 1 workflow = c",
            "foreach 'f': `over` must be a single value, not a list",
        ),
        # the checks run in the order of the spec's table
        ("workflow = c max_parallel = 3", "foreach 'f': missing required key 'over'"),
        ("over = a max_parallel = x", "foreach 'f': invalid max_parallel: invalid digit found in string"),
        (f"{REQUIRED} inputs = x filter = x scope = x", "foreach 'f': scope must be a map"),
        (
            f"{REQUIRED} on_child_fail = x on_cycle = x ordered = x",
            "foreach 'f': invalid ordered value 'x' (expected: true or false)",
        ),
    ],
)
def test_bad_foreach_options(options: str, expected: str) -> None:
    assert body_error(f"  foreach f {{ {options} }}").message == expected


def test_a_missing_key_points_at_the_foreach() -> None:
    error = body_error("  if a.b {\n    foreach f { over = x }\n  }")
    assert (error.line, error.column) == (3, 5)


def test_inputs_in_the_sub_block_form_is_not_foreach_syntax() -> None:
    error = body_error(f"  foreach f {{ {REQUIRED} inputs {{ a = b }} }}")
    assert error.message == "expected `key = value` or `}` in `foreach f`, found keyword `inputs`"


def test_unknown_foreach_keys_are_ignored() -> None:
    assert foreach(f"foreach f {{ {REQUIRED} as = bot }}") == foreach(f"foreach f {{ {REQUIRED} }}")
