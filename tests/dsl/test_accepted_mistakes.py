"""What the language accepts, as the spec says it must, but a person most likely did not mean:
option keys that do nothing, `fail_fast = maybe`, a call timeout the engine cannot read, a negative
number, duplicate inputs and step names, inputs a sub-workflow does not declare. Each is said where
it was written; none changes what parses or makes a valid workflow invalid."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.lexer import tokenize
from runkon_flow.dsl.parser import CALL_TIMEOUT, parse_workflow
from runkon_flow.dsl.validation import validate_workflow
from runkon_flow.errors import WfLexError

from tests.dsl.wf_testing import SOURCE, parse, parse_body


def warnings_of(
    text: str, children: dict[str, str] | None = None
) -> list[tuple[int | None, int | None, str]]:
    """`(line, column, message (hint: …))` of every warning validation gives `text`."""
    loaded = {name: parse_workflow(source, f"{name}.wf") for name, source in (children or {}).items()}
    report = validate_workflow(parse(text), loader=loaded)
    return [(p.location.line, p.location.column, p.text()) for p in report.warning_problems]


def body_warnings(body: str) -> list[tuple[int | None, int | None, str]]:
    return warnings_of(f"workflow w {{\n{body}\n}}\n")


# --------------------------------------------------------------------------- negative numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call a { retries = -1 }", "negative numbers are not allowed: retries must be 0 or more"),
        ("call a { max_turns =\n -3 }", "negative numbers are not allowed: max_turns must be 0 or more"),
        ("gate quality_gate { threshold = -5 }", "negative numbers are not allowed: threshold must be 0-100"),
        ("script s { timeout = -1 }", "negative numbers are not allowed: timeout must be 0 or more"),
        (
            "inputs { n default = -2 }",
            'negative numbers are not allowed: write "-2" in quotes if `default` is text',
        ),
    ],
)
def test_a_negative_number_after_a_key_says_so_instead_of_unexpected_character(
    text: str, expected: str
) -> None:
    with pytest.raises(WfLexError) as info:
        tokenize(f"workflow w {{ {text} }}", SOURCE)
    assert info.value.message == expected
    assert "Unexpected character" not in str(info.value)


def test_a_minus_anywhere_else_keeps_the_specs_message() -> None:
    with pytest.raises(WfLexError) as info:
        tokenize("workflow w { call a { with = [-1] } }", SOURCE)
    assert info.value.message == "Unexpected character '-' at line 1, col 31"


def test_what_parses_is_unchanged_a_minus_inside_a_name_or_a_string_is_fine() -> None:
    [call] = parse_body('  call re-try { retries = 1 as = "-1" }')
    assert (call.agent.value, call.retries, call.as_identity) == ("re-try", 1, "-1")


# --------------------------------------------------------------------------- unknown option keys


@pytest.mark.parametrize(
    ("body", "column", "message"),
    [
        (
            "  call a { retires = 2 }",
            12,
            "`retires` is not an option of `call a`; it is ignored (hint: did you mean `retries`?)",
        ),
        (
            "  call workflow c { retry = 2 }",
            21,
            "`retry` is not an option of `call workflow c`; it is ignored (hint: did you mean `retries`?)",
        ),
        (
            "  script s { run = x tiemout = 5 }",
            22,
            "`tiemout` is not an option of `script s`; it is ignored (hint: did you mean `timeout`?)",
        ),
        (
            "  gate human_approval { promt = x }",
            25,
            "`promt` is not an option of `gate human_approval`; it is ignored (hint: did you mean `prompt`?)",
        ),
        (
            "  gate human_approval { source = x }",
            25,
            "`source` is not an option of `gate human_approval`; it is ignored (hint: the options of `gate human_approval` are `prompt`, `min_approvals`, `mode`, `timeout`, `on_timeout`, `as`, `options`)",  # noqa: E501
        ),
        (
            "  gate quality_gate { source = a threshold = 1 promt = x }",
            48,
            "`promt` is not an option of `gate quality_gate`; it is ignored (hint: the options of `gate quality_gate` are `source`, `threshold`, `on_fail`, `as`)",  # noqa: E501
        ),
        (
            "  parallel { failfast = true call a }",
            14,
            "`failfast` is not an option of `parallel`; it is ignored (hint: did you mean `fail_fast`?)",
        ),
        (
            '  parallel { call a { timeout = "5m" } }',
            23,
            "`timeout` is not an option of a call inside `parallel`; it is ignored (hint: the options of a call inside `parallel` are `output`, `with`, `if`, `retries`)",  # noqa: E501
        ),
        (
            "  while a.b { max_iteration = 2 max_iterations = 2 call a }",
            15,
            "`max_iteration` is not an option of `while`; it is ignored (hint: did you mean `max_iterations`?)",  # noqa: E501
        ),
        (
            "  do { max_iterations = 2 output = x call a } while a.b",
            27,
            "`output` is not an option of a do-while loop; it is ignored (hint: the options of a do-while loop are `max_iterations`, `stuck_after`, `on_max_iter`)",  # noqa: E501
        ),
        (
            "  if a.b { retries = 2 call a }",
            12,
            "`retries` is not an option of `if` (it takes none); it is ignored",
        ),
        (
            "  foreach f { over = x max_parallel = 1 workflow = c orderd = true }",
            54,
            "`orderd` is not an option of `foreach f`; it is ignored (hint: did you mean `ordered`?)",
        ),
        (  # the per-call `if` of a parallel block, written on a plain call: say how it is written
            "  call a { if = b.ok }",
            12,
            "`if` is not an option of `call a`; it is ignored (hint: to run it only when b.ok is set, put it in a block: `if b.ok { … }` (an `if =` option exists only on the calls of a `parallel`))",  # noqa: E501
        ),
        (
            '  script s { run = "x" if = b.ok }',
            24,
            "`if` is not an option of `script s`; it is ignored (hint: to run it only when b.ok is set, put it in a block: `if b.ok { … }` (an `if =` option exists only on the calls of a `parallel`))",  # noqa: E501
        ),
    ],
)
def test_an_unknown_option_key_is_a_warning_at_the_key(body: str, column: int, message: str) -> None:
    found = [w for w in body_warnings(body) if "is not an option" in w[2]]
    assert found == [(2, column, message)]


def test_an_unknown_meta_key_is_a_warning_at_the_key() -> None:
    assert warnings_of('workflow w {\n  meta { titel = "x" }\n}\n') == [
        (2, 10, "`titel` is not an option of `meta`; it is ignored (hint: did you mean `title`?)")
    ]


def test_inputs_with_an_equals_sign_in_call_workflow_is_said_to_be_dropped() -> None:
    """dsl.md §4 rule 5: `inputs = { … }` is an ordinary key there, and the inputs are lost."""
    found = warnings_of(
        'workflow w {\n  call workflow c { inputs = { a = "1" } }\n}\n',
        {"c": 'workflow c { inputs { a default = "x" } }'},
    )
    assert found == [
        (
            2,
            21,
            "`inputs = { … }` in `call workflow c` is ignored: the inputs are not passed "
            "(hint: write `inputs { … }` without `=`)",
        )
    ]


def test_the_warning_names_the_step_it_belongs_to() -> None:
    wf = parse("workflow w {\n  call a\n  parallel { call b call c { frob = 1 } }\n}\n")
    report = validate_workflow(wf)
    assert [p.node_path for p in report.warning_problems] == ["body.1.calls.1"]


# --------------------------------------------------------------------------- option values


@pytest.mark.parametrize("value", ["maybe", "yes", "True", "1"])
def test_fail_fast_other_than_true_or_false_is_a_warning_and_still_false(value: str) -> None:
    [node] = parse_body(f"  parallel {{ fail_fast = {value} call a }}")
    assert node.fail_fast is False  # §3.4: what parses is unchanged
    assert body_warnings(f"  parallel {{ fail_fast = {value} call a }}") == [
        (
            2,
            26,
            f"`fail_fast = {value}` counts as false: only `true` turns it on "
            "(hint: write `fail_fast = true` or `fail_fast = false`)",
        )
    ]


@pytest.mark.parametrize("value", ['"5 parsecs"', '"1h30m"', '"1.5s"', '" 30s"', '"2d"', "soon"])
def test_a_call_timeout_the_engine_cannot_read_is_noted_at_the_value(value: str) -> None:
    wf = parse(f"workflow w {{\n  call a {{ timeout = {value} }}\n}}\n")
    [note] = wf.notes
    assert (note.code, note.line, note.column, note.node) == (CALL_TIMEOUT, 2, 22, wf.body[0])
    assert note.message.startswith("invalid timeout '")
    assert note.message.endswith(
        'expected a whole number of seconds or a duration like "500ms", "30s", "5m", "1h" (one number, one unit, no spaces)'  # noqa: E501
    )
    assert wf.body[0].timeout == value.strip('"')  # still stored as written (§3.5)


def test_a_call_timeout_too_large_says_so() -> None:
    [note] = parse('workflow w {\n  call a { timeout = "99999999999999999999h" }\n}\n').notes
    assert note.message == "invalid timeout '99999999999999999999h': the number is too large"


@pytest.mark.parametrize("value", ['"500ms"', '"30s"', '"5m"', '"1h"', '"90"', "90", '"+5s"'])
def test_every_call_timeout_the_engine_reads_is_quiet(value: str) -> None:
    assert body_warnings(f"  call a {{ timeout = {value} }}") == []


# --------------------------------------------------------------------------- duplicates


def test_an_input_declared_twice_is_a_warning_at_the_second() -> None:
    assert warnings_of("workflow w {\n  inputs { x }\n  inputs { y x }\n}\n") == [
        (3, 14, "input `x` is declared twice (first at line 2, column 12) (hint: remove one of them)")
    ]


def test_a_script_name_used_twice_or_shared_with_a_call_is_a_warning() -> None:
    found = body_warnings(
        '  call lint\n  if lint.ok { script lint { run = "x" } }\n  foreach f { over = a max_parallel = 1 workflow = c }\n  foreach f { over = a max_parallel = 1 workflow = c }'  # noqa: E501
    )
    assert [(line, column, text.split(":")[0]) for line, column, text in found] == [
        (3, 16, "step name `lint` is used twice (first at line 2, column 3)"),
        (5, 3, "step name `foreach"),
    ]


def test_an_agent_called_twice_and_a_gate_type_used_twice_are_not_warned_about() -> None:
    """dsl.md §6.0 calls one agent twice on purpose; a gate cannot be given another name (§13.10)."""
    assert body_warnings("  call verify\n  call verify\n  gate pr_checks {}\n  gate pr_checks {}") == []


def test_one_step_key_twice_in_a_parallel_block_is_a_warning_at_the_second_call() -> None:
    """In sequence the later call's result wins (dsl.md §6.0); in one parallel block both run at once,
    so which result `a.done` reads depends on which ends last. A path agent's key is its file stem."""
    found = body_warnings('  parallel {\n    call a\n    call b\n    call "agents/a.md" { retries = 1 }\n  }')
    assert found == [
        (
            5,
            10,
            "`a` is called twice in this parallel block (first at line 3, column 10): both run at once and "
            "whichever ends last replaces the other's result (hint: each call of a parallel block needs its "
            "own step key: call a copy of the agent under another name, or call it once)",
        )
    ]
    assert body_warnings("  call a\n  parallel {\n    call a\n    call b\n  }\n  call a") == []


# --------------------------------------------------------------------------- sub-workflow inputs


def test_an_input_the_child_does_not_declare_is_a_warning_with_a_suggestion() -> None:
    child = {"crash": "workflow crash { inputs { name other } call a }"}
    found = warnings_of(
        'workflow w {\n  call workflow crash { inputs { name = "a" other = "b" nmae = "1" zzz = "2" } }\n}\n',
        child,
    )
    assert found == [
        (2, 3, "Sub-workflow 'crash' declares no input 'nmae' (hint: did you mean `name`?)"),
        (2, 3, "Sub-workflow 'crash' declares no input 'zzz' (hint: 'crash' declares `name`, `other`)"),
    ]


def test_a_foreach_input_the_child_does_not_declare_is_a_warning() -> None:
    child = {"one": "workflow one { call a }"}
    body = '  foreach f { over = a max_parallel = 1 workflow = one inputs = { id = "{{item.id}}" } }'
    assert warnings_of(f"workflow w {{\n{body}\n}}\n", child) == [
        (2, 3, "foreach 'f': child workflow 'one' declares no input 'id' (hint: 'one' declares no inputs)")
    ]
