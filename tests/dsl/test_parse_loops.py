"""`while`, do-while and plain `do` (dsl.md §4 rule 2, §6.4–§6.6)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import DoNode, DoWhileNode, WhileNode

from .wf_testing import body_error, only, parse_body

# --------------------------------------------------------------------------- while


def test_while_with_every_option() -> None:
    node = only("while review.again { max_iterations = 5 stuck_after = 2 on_max_iter = continue call fix }")
    assert isinstance(node, WhileNode)
    assert node.to_json() == {
        "type": "while",
        "step": "review",
        "marker": "again",
        "max_iterations": 5,
        "stuck_after": 2,
        "on_max_iter": "continue",
        "body": [node.body[0].to_json()],
    }


def test_while_defaults() -> None:
    node = only("while a.b { max_iterations = 0 }")
    assert (node.max_iterations, node.stuck_after, node.on_max_iter, node.body) == (0, None, "fail", [])


HOW = (
    " (write `max_iterations = N` first inside the loop's braces: the most times its body may run, a guard "
    "against a loop that never ends)"
)


def test_while_requires_max_iterations_and_points_at_the_loop() -> None:
    """The spec's words, then what to write: `while loop requires max_iterations` alone did not say
    where it goes or what it means."""
    error = body_error("  while a.b {\n    call fix\n  }")
    assert error.message == "while loop requires max_iterations" + HOW
    assert (error.line, error.column) == (2, 3)


@pytest.mark.parametrize(
    ("source", "message", "at"),
    [
        (
            "  while a.b {\n    max_iteration = 3\n    call fix\n  }",
            "while loop requires max_iterations (`max_iteration` is written: did you mean `max_iterations`?)",
            (3, 5),
        ),
        (
            "  foreach f { over = lines  max_paralel = 2  workflow = one }",
            "foreach 'f': missing required key 'max_parallel' (`max_paralel` is written: did you mean "
            "`max_parallel`?)",
            (2, 29),
        ),
        (
            '  script b { rn = "echo hi" }',
            "script 'b' is missing required `run` field (`rn` is written: did you mean `run`?)",
            (2, 14),
        ),
        (
            "  gate quality_gate { source = review treshold = 70 }",
            "quality_gate requires a `threshold` field (0-100) (`treshold` is written: did you mean "
            "`threshold`?)",
            (2, 39),
        ),
    ],
)
def test_a_misspelt_required_key_is_named_where_it_is_written(
    source: str, message: str, at: tuple[int, int]
) -> None:
    # It said only `while loop requires max_iterations` at the loop, over a line that (to the
    # eye) has it: the misspelling was left to be found.
    error = body_error(source)
    assert error.message == message
    assert (error.line, error.column) == at


def test_while_requires_a_step_marker_condition() -> None:
    error = body_error("  while ready { max_iterations = 2 call a }")
    assert error.message == "while condition must be `step.marker`, not a bare identifier `ready`"
    assert (error.line, error.column) == (2, 9)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('max_iterations = "three"', "Invalid max_iterations: invalid digit found in string"),
        ('max_iterations = "4294967296"', "Invalid max_iterations: number too large to fit in target type"),
        ("max_iterations = 3 stuck_after = soon", "Invalid stuck_after: invalid digit found in string"),
        ("max_iterations = 3 on_max_iter = warn", "Invalid on_max_iter: warn"),
        ("max_iterations = 3 on_max_iter = Fail", "Invalid on_max_iter: Fail"),
        ("max_iterations = [3]", "`max_iterations` must be a single value, not a list"),
    ],
)
def test_bad_loop_options(options: str, expected: str) -> None:
    assert body_error(f"  while a.b {{ {options} }}").message == expected
    assert body_error(f"  do {{ {options} }} while a.b").message == expected


def test_unknown_while_options_are_ignored() -> None:
    assert only("while a.b { max_iterations = 1 output = x retries = 9 }") == only(
        "while a.b { max_iterations = 1 }"
    )


# --------------------------------------------------------------------------- do-while


def test_do_while_with_options_at_the_top_of_the_block() -> None:
    node = only(
        "do {\n  max_iterations = 10\n  on_max_iter = fail\n  call push\n} while push.pushed_new_commits"
    )
    assert isinstance(node, DoWhileNode)
    assert (node.step, node.marker, node.max_iterations, node.on_max_iter) == (
        "push",
        "pushed_new_commits",
        10,
        "fail",
    )
    assert node.to_json()["type"] == "do_while"


def test_the_while_may_follow_on_another_line() -> None:
    assert isinstance(only("do { max_iterations = 1 call a }\n\n   while\n a.b"), DoWhileNode)


def test_do_while_requires_max_iterations() -> None:
    error = body_error("  do { call a } while a.b")
    assert error.message == "do loop requires max_iterations" + HOW
    assert (error.line, error.column) == (2, 3)


def test_do_while_requires_a_step_marker_condition() -> None:
    error = body_error("  do { max_iterations = 2 call a } while ready")
    assert error.message == "do-while condition must be `step.marker`, not a bare identifier `ready`"
    assert (error.line, error.column) == (2, 42)


def test_output_and_with_in_a_do_while_are_ignored() -> None:
    node = only('do { max_iterations = 1 output = "x" with = [y] stuck_after = 4 call a } while a.b')
    assert isinstance(node, DoWhileNode)
    assert node.stuck_after == 4
    assert "output" not in node.to_json()


def test_a_plain_do_directly_followed_by_a_while_loop_becomes_a_do_while() -> None:
    error = body_error("  do { call a }\n  while b.c { max_iterations = 1 }")
    assert error.message.startswith(
        "do loop requires max_iterations (a `while` right after `do { … }` always"
    )
    assert (error.line, error.column) == (2, 3)
    error = body_error("  do { max_iterations = 2 call a }\n  while b.c { call d }")
    assert error.message.startswith("expected `meta`, `inputs`, `always`, a step")
    assert error.message.endswith("found `{`")
    assert (error.line, error.column) == (3, 13)


def test_a_do_while_may_be_followed_by_a_while_loop() -> None:
    nodes = parse_body("do { max_iterations = 1 } while a.b while c.d { max_iterations = 2 }")
    assert [type(n) for n in nodes] == [DoWhileNode, WhileNode]


# --------------------------------------------------------------------------- plain do


def test_plain_do_groups_nodes_with_output_and_with() -> None:
    node = only('do { with = ["docs-voice"] output = "doc-patch" call draft call review }')
    assert isinstance(node, DoNode)
    assert node.to_json() == {
        "type": "do",
        "output": "doc-patch",
        "with": ["docs-voice"],
        "body": [n.to_json() for n in node.body],
    }


def test_plain_do_defaults_and_single_value_with() -> None:
    assert only("do { }").to_json() == {"type": "do", "output": None, "with": [], "body": []}
    assert only("do { with = voice }").with_ == ["voice"]


@pytest.mark.parametrize("key", ["retries", "max_iterations", "if", "inputs"])
def test_any_other_option_in_a_plain_do_is_an_error_at_the_key(key: str) -> None:
    error = body_error(f"  do {{\n    output = x\n    {key} = 2\n    call a\n  }}")
    assert (
        error.message == f"unknown option `{key}` in plain `do` block (only `output` and `with` are allowed)"
    )
    assert (error.line, error.column) == (4, 5)


def test_the_old_named_do_form_is_refused_with_a_hint() -> None:
    error = body_error("  do build { call a }")
    assert error.message.startswith("expected `{` after `do`, found identifier `build`")
    assert "do { ... } while" in error.message
    assert (error.line, error.column) == (2, 6)


def test_do_must_open_a_block() -> None:
    assert body_error("  do 5").message == "expected `{` after `do`, found integer `5`"


def test_do_is_not_a_name() -> None:
    assert body_error("  if do.x {}").message.startswith("expected a condition")
